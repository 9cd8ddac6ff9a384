//! HS256 access tokens, 15 minutes. Only HS256 is accepted: `alg: none` and
//! every other algorithm are refused, and so is a token past its `exp` (no
//! leeway).

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const ACCESS_TTL_SECS: i64 = 15 * 60;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// Always `access`; guards against other token kinds signed with the key.
    pub typ: String,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("invalid token")]
    Invalid,
    #[error("cannot sign token")]
    Sign,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs an access token for `user_id`; returns it with its lifetime.
    pub fn issue_access(&self, user_id: Uuid) -> Result<(String, i64), JwtError> {
        let now = Utc::now().timestamp();
        let claims = AccessClaims {
            sub: user_id,
            iat: now,
            exp: now + ACCESS_TTL_SECS,
            typ: "access".into(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| JwtError::Sign)?;
        Ok((token, ACCESS_TTL_SECS))
    }

    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, JwtError> {
        let data = decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|_| JwtError::Invalid)?;
        if data.claims.typ != "access" {
            return Err(JwtError::Invalid);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn keys() -> JwtKeys {
        JwtKeys::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn round_trip() {
        let id = Uuid::new_v4();
        let (t, ttl) = keys().issue_access(id).unwrap();
        assert_eq!(ttl, 900);
        assert_eq!(keys().verify_access(&t).unwrap().sub, id);
    }

    #[test]
    fn other_key_and_alg_none_are_refused() {
        let (t, _) = JwtKeys::new(b"another-secret-another-secret-xx")
            .issue_access(Uuid::new_v4())
            .unwrap();
        assert!(keys().verify_access(&t).is_err());
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let now = Utc::now().timestamp();
        let body = b64.encode(
            format!(
                r#"{{"sub":"{}","iat":{now},"exp":{},"typ":"access"}}"#,
                Uuid::new_v4(),
                now + 600
            )
            .as_bytes(),
        );
        assert!(keys().verify_access(&format!("{header}.{body}.")).is_err());
    }
}
