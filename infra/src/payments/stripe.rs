//! A Stripe-compatible provider: one PaymentIntent per purchase, created
//! with `Idempotency-Key: lokiz-purchase-<purchase id>` (a retried purchase
//! is the same intent, never a second charge), and the `Stripe-Signature`
//! check of its webhooks (`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`).

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{Charge, ChargeError, ChargeRequest, ChargeStatus, PaymentProvider};
use crate::config::{Secret, StripeConfig};

type HmacSha256 = Hmac<Sha256>;

/// How far a webhook's timestamp may be from now (either way), in seconds.
pub const WEBHOOK_TOLERANCE: i64 = 300;

pub struct StripePayments {
    http: reqwest::Client,
    base: url::Url,
    secret_key: Secret,
    webhook_secret: Secret,
}

impl StripePayments {
    pub fn new(config: &StripeConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            base: config.base_url.clone(),
            secret_key: config.secret_key.clone(),
            webhook_secret: config.webhook_secret.clone(),
        })
    }
}

/// The part of a PaymentIntent LOKIZ reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Intent {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub metadata: std::collections::HashMap<String, String>,
    #[serde(default)]
    pub last_payment_error: Option<StripeErrorBody>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StripeErrorBody {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<Box<Intent>>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: StripeErrorBody,
}

#[async_trait]
impl PaymentProvider for StripePayments {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn webhook_secret(&self) -> Option<&str> {
        Some(self.webhook_secret.expose())
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ChargeError> {
        let url = self
            .base
            .join("v1/payment_intents")
            .map_err(|e| ChargeError::Unavailable(e.to_string()))?;
        let mut form: Vec<(&str, String)> = vec![
            ("amount", request.amount_cents.to_string()),
            ("currency", request.currency.to_owned()),
            ("payment_method_types[]", "card".to_owned()),
            ("description", format!("LOKIZ {}", request.item)),
            ("metadata[purchase_id]", request.purchase_id.to_string()),
            ("metadata[user_id]", request.user_id.to_string()),
            ("metadata[package_id]", request.item.clone()),
        ];
        if let Some(pm) = &request.payment_method {
            form.push(("payment_method", pm.clone()));
            form.push(("confirm", "true".to_owned()));
        }
        let resp = self
            .http
            .post(url)
            .bearer_auth(self.secret_key.expose())
            .header(
                "Idempotency-Key",
                format!("lokiz-purchase-{}", request.purchase_id),
            )
            .form(&form)
            .send()
            .await
            .map_err(|e| ChargeError::Unavailable(e.without_url().to_string()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ChargeError::Unavailable(e.without_url().to_string()))?;
        if status.is_success() {
            let intent: Intent = serde_json::from_slice(&body)
                .map_err(|e| ChargeError::Unavailable(format!("intent does not decode: {e}")))?;
            return Ok(Charge {
                status: if intent.status == "succeeded" {
                    ChargeStatus::Succeeded
                } else {
                    ChargeStatus::Pending
                },
                payment_id: intent.id,
                client_secret: intent.client_secret,
                amount_cents: intent.amount,
                currency: intent.currency,
            });
        }
        // 402: the card was declined (Stripe's `card_error`)
        if status == reqwest::StatusCode::PAYMENT_REQUIRED {
            let error = serde_json::from_slice::<ErrorEnvelope>(&body).ok();
            let (code, payment_id) = match error {
                Some(ErrorEnvelope { error }) => (
                    error
                        .decline_code
                        .or(error.code)
                        .unwrap_or_else(|| "card_declined".to_owned()),
                    error.payment_intent.map(|i| i.id),
                ),
                None => ("card_declined".to_owned(), None),
            };
            return Err(ChargeError::Declined { code, payment_id });
        }
        Err(ChargeError::Unavailable(format!(
            "payment intent answered {status}"
        )))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("timestamp outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks a `Stripe-Signature` header: a `v1` HMAC-SHA256 of
/// `"<t>.<body>"` under `secret`, compared in constant time, with `t`
/// within `tolerance` seconds of `now`.
pub fn verify_webhook(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(WebhookError::Malformed)?;
        match k {
            "t" => timestamp = Some(v.parse::<i64>().map_err(|_| WebhookError::Malformed)?),
            "v1" => signatures.push(hex::decode(v).map_err(|_| WebhookError::Malformed)?),
            _ => {}
        }
    }
    let t = timestamp.ok_or(WebhookError::Malformed)?;
    if signatures.is_empty() {
        return Err(WebhookError::Malformed);
    }
    if (now - t).abs() > tolerance {
        return Err(WebhookError::Stale);
    }
    let mac = mac(secret, t, body).ok_or(WebhookError::Mismatch)?;
    // verify_slice compares in constant time
    if signatures
        .iter()
        .any(|sig| mac.clone().verify_slice(sig).is_ok())
    {
        Ok(())
    } else {
        Err(WebhookError::Mismatch)
    }
}

fn mac(secret: &str, t: i64, body: &[u8]) -> Option<HmacSha256> {
    // HMAC takes keys of any length: this never fails
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The `Stripe-Signature` value Stripe would send (the fake provider in
/// tests signs with it).
pub fn sign_webhook(secret: &str, t: i64, body: &[u8]) -> String {
    let sig = mac(secret, t, body)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("t={t},v1={sig}")
}

/// The part of a webhook event LOKIZ reads.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: WebhookData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookData {
    pub object: serde_json::Value,
}

impl WebhookEvent {
    /// The PaymentIntent of a `payment_intent.*` event.
    pub fn intent(&self) -> Option<Intent> {
        if !self.kind.starts_with("payment_intent.") {
            return None;
        }
        serde_json::from_value(self.data.object.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_and_a_changed_one_does_not() {
        let h = sign_webhook("whsec_x", 1_000, b"{\"a\":1}");
        assert_eq!(
            verify_webhook("whsec_x", Some(&h), b"{\"a\":1}", 1_010, 300),
            Ok(())
        );
        assert_eq!(
            verify_webhook("whsec_x", Some(&h), b"{\"a\":2}", 1_010, 300),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            verify_webhook("whsec_y", Some(&h), b"{\"a\":1}", 1_010, 300),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            verify_webhook("whsec_x", Some(&h), b"{\"a\":1}", 1_301, 300),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            verify_webhook("whsec_x", None, b"", 1_000, 300),
            Err(WebhookError::Missing)
        );
        assert_eq!(
            verify_webhook("whsec_x", Some("t=abc,v1=00"), b"", 1_000, 300),
            Err(WebhookError::Malformed)
        );
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let good = sign_webhook("whsec_x", 5, b"b");
        let header = format!("t=5,v1={},{}", "ab".repeat(32), &good[4..]);
        assert_eq!(
            verify_webhook("whsec_x", Some(&header), b"b", 5, 300),
            Ok(())
        );
    }
}
