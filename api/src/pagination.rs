//! Opaque keyset cursors and query-string parameters.
//!
//! A cursor is the sort key of the last item a page showed, as base64url
//! JSON. The next page starts strictly after it, so items that arrive in the
//! meantime never shift a page (no offsets).

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use base64::Engine;
use lokiz_domain::values::FieldError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 50;

/// A cursor [`encode_cursor`] made, or `None`.
pub fn decode_cursor<T: DeserializeOwned>(raw: &str) -> Option<T> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

pub fn encode_cursor<T: Serialize>(key: &T) -> String {
    let json = serde_json::to_vec(key).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The query string, read as text so every bad parameter is reported in the
/// error envelope.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadRequest {
                code: "INVALID_QUERY",
                message: "The query string could not be parsed.".into(),
            })?;
        let mut map = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            // every parameter is a single value: a repeated one is refused,
            // not silently read as its first or last copy
            if map.insert(name, value).is_some() {
                return Err(ApiError::BadRequest {
                    code: "INVALID_QUERY",
                    message: "A query parameter is repeated; send each at most once.".into(),
                });
            }
        }
        Ok(Params(map))
    }
}

impl Params {
    /// A parameter's value as sent. An empty value is a value (`count=`
    /// is not a number), not an absent parameter; only `cursor` reads empty
    /// as "the first page".
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `cursor`, decoded into the page's sort key.
    pub fn cursor<T: DeserializeOwned>(&self, errors: &mut Vec<FieldError>) -> Option<T> {
        let raw = self.get("cursor").filter(|c| !c.is_empty())?;
        let decoded = decode_cursor(raw);
        if decoded.is_none() {
            errors.push(FieldError::new(
                "cursor",
                "format",
                "is not a cursor this server issued",
            ));
        }
        decoded
    }

    /// A whole number parameter within `min..=max`, `default` when absent.
    pub fn number(
        &self,
        name: &'static str,
        default: i64,
        min: i64,
        max: i64,
        errors: &mut Vec<FieldError>,
    ) -> i64 {
        match self.get(name) {
            None => default,
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    errors.push(FieldError::new(
                        name,
                        "range",
                        format!("must be a whole number from {min} to {max}"),
                    ));
                    default
                }
            },
        }
    }

    pub fn limit(&self, errors: &mut Vec<FieldError>) -> i64 {
        self.number("limit", DEFAULT_LIMIT, 1, MAX_LIMIT, errors)
    }
}

/// `Err(422)` when `errors` is not empty.
pub fn check(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Splits a fetched `limit + 1` rows into the page and whether more follow.
pub fn page<T>(mut rows: Vec<T>, limit: i64) -> (Vec<T>, bool) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    (rows, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(&("2026-11-23T12:00:00Z", "id"));
        let p = Params(HashMap::from([("cursor".to_owned(), c)]));
        let mut errors = Vec::new();
        let back: Option<(String, String)> = p.cursor(&mut errors);
        assert_eq!(back.unwrap().1, "id");
        let p = Params(HashMap::from([("cursor".to_owned(), "%%%".to_owned())]));
        let _: Option<(String, String)> = p.cursor(&mut errors);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn pages_split() {
        let (rows, more) = page(vec![1, 2, 3], 2);
        assert_eq!((rows, more), (vec![1, 2], true));
        let (rows, more) = page(vec![1, 2], 2);
        assert_eq!((rows, more), (vec![1, 2], false));
    }
}
