//! A Stripe-compatible provider: one PaymentIntent per purchase, created
//! with `Idempotency-Key: lokiz-purchase-<purchase id>` (a retried purchase
//! is the same intent, never a second charge), and the `Stripe-Signature`
//! check of its webhooks (`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`).
//! Subscriptions: the plan's Product (`lokiz_plan_<plan>`, created once), a
//! Customer per start attempt with the payment method as its default, then
//! `POST /v1/subscriptions` (a monthly price, the first invoice paid at once
//! or the request refused: `payment_behavior=error_if_incomplete`), the
//! customer and the subscription created under the attempt's idempotency key
//! ([`super::subscription_key`]); canceling sets `cancel_at_period_end`. Renewals and failures arrive as `invoice.*` events.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{
    Charge, ChargeError, ChargeRequest, ChargeStatus, PaymentProvider, ProviderSubscription,
    SubscribeError, SubscriptionRequest,
};
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
    /// POSTs a form; the answer's status and body.
    async fn post_form(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        form: &[(&str, String)],
    ) -> Result<(reqwest::StatusCode, Vec<u8>), SubscribeError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| SubscribeError::Unavailable(e.to_string()))?;
        let mut req = self
            .http
            .post(url)
            .bearer_auth(self.secret_key.expose())
            .form(form);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SubscribeError::Unavailable(e.without_url().to_string()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| SubscribeError::Unavailable(e.without_url().to_string()))?;
        Ok((status, body.to_vec()))
    }

    /// The Product a plan's prices belong to, `lokiz_plan_<plan>`, created
    /// the first time (an existing one is fine).
    async fn plan_product(&self, plan: &str) -> Result<String, SubscribeError> {
        let id = format!("lokiz_plan_{plan}");
        let form = [("id", id.clone()), ("name", format!("LOKIZ {plan}"))];
        let (status, body) = self.post_form("v1/products", None, &form).await?;
        let exists = status == reqwest::StatusCode::BAD_REQUEST
            && serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .is_some_and(|v| v["error"]["code"] == "resource_already_exists");
        if status.is_success() || exists {
            Ok(id)
        } else {
            Err(SubscribeError::Unavailable(format!(
                "products answered {status}"
            )))
        }
    }

    /// The Customer this start attempt bills (its payment method the
    /// default), under the attempt's idempotency key.
    async fn customer(&self, request: &SubscriptionRequest) -> Result<String, SubscribeError> {
        let mut form: Vec<(&str, String)> =
            vec![("metadata[user_id]", request.user_id.to_string())];
        if let Some(pm) = &request.payment_method {
            form.push(("payment_method", pm.clone()));
            form.push(("invoice_settings[default_payment_method]", pm.clone()));
        }
        let key = format!("{}-customer", request.idempotency_key);
        let (status, body) = self.post_form("v1/customers", Some(&key), &form).await?;
        if status.is_success() {
            #[derive(Deserialize)]
            struct Customer {
                id: String,
            }
            return serde_json::from_slice::<Customer>(&body)
                .map(|c| c.id)
                .map_err(|e| {
                    SubscribeError::Unavailable(format!("customer does not decode: {e}"))
                });
        }
        if is_idempotency_error(status, &body) {
            return Err(SubscribeError::Conflict);
        }
        if status == reqwest::StatusCode::PAYMENT_REQUIRED {
            return Err(SubscribeError::Declined {
                code: decline_code(&body),
            });
        }
        Err(SubscribeError::Unavailable(format!(
            "customers answered {status}"
        )))
    }

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

    async fn create_subscription(
        &self,
        request: &SubscriptionRequest,
    ) -> Result<ProviderSubscription, SubscribeError> {
        let product = self.plan_product(&request.plan).await?;
        let customer = self.customer(request).await?;
        let mut form: Vec<(&str, String)> = vec![
            ("customer", customer),
            ("items[0][price_data][product]", product),
            (
                "items[0][price_data][currency]",
                request.currency.to_owned(),
            ),
            (
                "items[0][price_data][unit_amount]",
                request.amount_cents.to_string(),
            ),
            (
                "items[0][price_data][recurring][interval]",
                "month".to_owned(),
            ),
            ("payment_behavior", "error_if_incomplete".to_owned()),
            ("metadata[user_id]", request.user_id.to_string()),
            ("metadata[plan]", request.plan.clone()),
        ];
        if let Some(pm) = &request.payment_method {
            form.push(("default_payment_method", pm.clone()));
        }
        let (status, body) = self
            .post_form("v1/subscriptions", Some(&request.idempotency_key), &form)
            .await?;
        if status.is_success() {
            let sub: StripeSubscription = serde_json::from_slice(&body).map_err(|e| {
                SubscribeError::Unavailable(format!("subscription does not decode: {e}"))
            })?;
            if sub.status != "active" && sub.status != "trialing" {
                return Err(SubscribeError::Declined { code: sub.status });
            }
            let (Some(period_start), Some(period_end)) = sub.period() else {
                return Err(SubscribeError::Unavailable(
                    "subscription without a period".into(),
                ));
            };
            return Ok(ProviderSubscription {
                id: sub.id,
                period_start,
                period_end,
            });
        }
        if status == reqwest::StatusCode::PAYMENT_REQUIRED {
            return Err(SubscribeError::Declined {
                code: decline_code(&body),
            });
        }
        if is_idempotency_error(status, &body) {
            return Err(SubscribeError::Conflict);
        }
        Err(SubscribeError::Unavailable(format!(
            "subscriptions answered {status}"
        )))
    }

    async fn cancel_subscription(&self, id: &str) -> Result<(), SubscribeError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(SubscribeError::Unavailable(
                "not a provider subscription id".into(),
            ));
        }
        let url = self
            .base
            .join(&format!("v1/subscriptions/{id}"))
            .map_err(|e| SubscribeError::Unavailable(e.to_string()))?;
        let resp = self
            .http
            .post(url)
            .bearer_auth(self.secret_key.expose())
            .form(&[("cancel_at_period_end", "true")])
            .send()
            .await
            .map_err(|e| SubscribeError::Unavailable(e.without_url().to_string()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(SubscribeError::Unavailable(format!(
                "canceling the subscription answered {}",
                resp.status()
            )))
        }
    }
}

/// Stripe's 400 for an idempotency key reused with other parameters.
fn is_idempotency_error(status: reqwest::StatusCode, body: &[u8]) -> bool {
    status == reqwest::StatusCode::BAD_REQUEST
        && serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .is_some_and(|v| v["error"]["type"] == "idempotency_error")
}

/// The decline code of a 402 (`card_declined` when it names none).
fn decline_code(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .and_then(|e| e.error.decline_code.or(e.error.code))
        .unwrap_or_else(|| "card_declined".to_owned())
}

fn unix(t: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t, 0)
}

/// The part of a Subscription LOKIZ reads.
#[derive(Debug, Clone, Deserialize)]
pub struct StripeSubscription {
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub metadata: std::collections::HashMap<String, String>,
    #[serde(default)]
    current_period_start: Option<i64>,
    #[serde(default)]
    current_period_end: Option<i64>,
    /// Newer API versions keep the period on the items.
    #[serde(default)]
    items: Option<List<Periodic>>,
}

#[derive(Debug, Clone, Deserialize)]
struct List<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
struct Periodic {
    #[serde(default)]
    current_period_start: Option<i64>,
    #[serde(default)]
    current_period_end: Option<i64>,
}

impl StripeSubscription {
    /// The paid period (start, end).
    pub fn period(
        &self,
    ) -> (
        Option<chrono::DateTime<chrono::Utc>>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let item = self.items.as_ref().and_then(|i| i.data.first());
        let start = self
            .current_period_start
            .or_else(|| item.and_then(|i| i.current_period_start));
        let end = self
            .current_period_end
            .or_else(|| item.and_then(|i| i.current_period_end));
        (start.and_then(unix), end.and_then(unix))
    }
}

/// The part of an Invoice LOKIZ reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Invoice {
    pub id: String,
    /// The subscription's id (or the expanded subscription).
    #[serde(default)]
    subscription: Option<serde_json::Value>,
    /// `subscription_create` (the first invoice), `subscription_cycle`, …
    #[serde(default)]
    pub billing_reason: Option<String>,
    #[serde(default)]
    lines: Option<List<InvoiceLine>>,
    #[serde(default)]
    subscription_details: Option<SubscriptionDetails>,
    /// Newer API versions: `parent.subscription_details`.
    #[serde(default)]
    parent: Option<InvoiceParent>,
}

#[derive(Debug, Clone, Deserialize)]
struct InvoiceLine {
    period: LinePeriod,
}

#[derive(Debug, Clone, Deserialize)]
struct LinePeriod {
    start: i64,
    end: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SubscriptionDetails {
    #[serde(default)]
    subscription: Option<String>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
struct InvoiceParent {
    #[serde(default)]
    subscription_details: Option<SubscriptionDetails>,
}

impl Invoice {
    fn details(&self) -> Option<&SubscriptionDetails> {
        self.subscription_details.as_ref().or_else(|| {
            self.parent
                .as_ref()
                .and_then(|p| p.subscription_details.as_ref())
        })
    }

    /// The subscription the invoice bills, if any.
    pub fn subscription_id(&self) -> Option<String> {
        let direct = self.subscription.as_ref().and_then(|s| {
            s.as_str()
                .or_else(|| s.get("id").and_then(|id| id.as_str()))
                .map(str::to_owned)
        });
        direct.or_else(|| self.details().and_then(|d| d.subscription.clone()))
    }

    /// The subscription's metadata (LOKIZ sets `user_id` and `plan`).
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.details()
            .and_then(|d| d.metadata.get(key))
            .map(String::as_str)
    }

    /// The period the invoice bills (its first line's).
    pub fn period(&self) -> Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
        let line = self.lines.as_ref()?.data.first()?;
        Some((unix(line.period.start)?, unix(line.period.end)?))
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
    /// The Invoice of an `invoice.*` event.
    pub fn invoice(&self) -> Option<Invoice> {
        if !self.kind.starts_with("invoice.") {
            return None;
        }
        serde_json::from_value(self.data.object.clone()).ok()
    }

    /// The Subscription of a `customer.subscription.*` event.
    pub fn subscription(&self) -> Option<StripeSubscription> {
        if !self.kind.starts_with("customer.subscription.") {
            return None;
        }
        serde_json::from_value(self.data.object.clone()).ok()
    }

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

    fn event(kind: &str, object: serde_json::Value) -> WebhookEvent {
        serde_json::from_value(serde_json::json!({
            "id": "evt_1", "type": kind, "data": {"object": object},
        }))
        .unwrap()
    }

    #[test]
    fn an_invoice_names_its_subscription_user_and_period_in_either_api_shape() {
        let lines = serde_json::json!({"data": [{"period": {"start": 100, "end": 200}}]});
        let classic = event(
            "invoice.paid",
            serde_json::json!({"id": "in_1", "subscription": "sub_1",
                "billing_reason": "subscription_cycle", "lines": lines,
                "subscription_details": {"metadata": {"user_id": "u", "plan": "pro"}}}),
        );
        let newer = event(
            "invoice.paid",
            serde_json::json!({"id": "in_1", "billing_reason": "subscription_cycle",
                "lines": lines, "parent": {"subscription_details":
                    {"subscription": "sub_1", "metadata": {"user_id": "u", "plan": "pro"}}}}),
        );
        for e in [classic, newer] {
            let invoice = e.invoice().expect("an invoice");
            assert_eq!(invoice.subscription_id().as_deref(), Some("sub_1"));
            assert_eq!(invoice.metadata("user_id"), Some("u"));
            assert_eq!(invoice.metadata("plan"), Some("pro"));
            let (start, end) = invoice.period().expect("a period");
            assert_eq!((start.timestamp(), end.timestamp()), (100, 200));
            assert!(e.subscription().is_none() && e.intent().is_none());
        }
    }

    #[test]
    fn a_subscription_reads_its_period_from_itself_or_its_items() {
        let top = event(
            "customer.subscription.deleted",
            serde_json::json!({"id": "sub_1", "status": "canceled",
                "current_period_start": 1, "current_period_end": 2}),
        );
        let items = event(
            "customer.subscription.deleted",
            serde_json::json!({"id": "sub_1", "status": "canceled", "items": {"data":
                [{"current_period_start": 1, "current_period_end": 2}]}}),
        );
        for e in [top, items] {
            let sub = e.subscription().expect("a subscription");
            let (start, end) = sub.period();
            assert_eq!(start.map(|t| t.timestamp()), Some(1));
            assert_eq!(end.map(|t| t.timestamp()), Some(2));
        }
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
