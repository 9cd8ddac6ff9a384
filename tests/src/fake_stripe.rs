//! An in-process fake of Stripe's PaymentIntents API for tests, with Stripe's
//! idempotency: a request repeating an `Idempotency-Key` gets the first
//! answer back and charges nothing more; the same key with other parameters
//! is refused (400).
//!
//! Payment methods: `pm_card_visa` succeeds at once, `pm_card_chargeDeclined`
//! is declined (402 `card_declined`), none leaves the intent waiting for the
//! client (`requires_payment_method`) until the test confirms it
//! ([`FakeStripe::confirm`]) and delivers the webhook ([`FakeStripe::event`]).
//!
//! Subscriptions (`POST /v1/products` with a chosen id, `POST /v1/customers`
//! and `POST /v1/subscriptions` with the same idempotency; a subscription
//! needs a known customer and product): active at once for 30 days, unless the default payment method is
//! `pm_card_chargeDeclined` (402); `POST /v1/subscriptions/{id}` sets
//! `cancel_at_period_end`; [`FakeStripe::lose_next_answer`] applies too. The test plays the provider's later life with
//! [`FakeStripe::invoice_event`] and [`FakeStripe::event`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

pub const SECRET_KEY: &str = "sk_test_fake";
pub const WEBHOOK_SECRET: &str = "whsec_fake_stripe_secret";

/// The first answer to an idempotency key: its parameters, status and body.
type FirstAnswer = (Vec<(String, String)>, StatusCode, Value);

#[derive(Default)]
struct Inner {
    intents: HashMap<String, Value>,
    /// Idempotency-Key → (parameters, status, body) of the first answer.
    by_key: HashMap<String, FirstAnswer>,
    /// Money actually taken: intents that reached `succeeded`.
    charges: usize,
    subscriptions: HashMap<String, Value>,
    products: HashMap<String, Value>,
    customers: HashMap<String, Value>,
    /// Subscriptions started (replays of a key excluded).
    subscriptions_created: usize,
    /// Requests to create an intent, replays included.
    requests: usize,
    /// Charge the next successful intent but answer 500 (the answer is lost
    /// on the way, as when a network drops after the charge).
    lose_next_answer: bool,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeStripe {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    handle: Arc<JoinHandle<()>>,
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/payment_intents", post(create_intent))
            .route("/v1/products", post(create_product))
            .route("/v1/customers", post(create_customer))
            .route("/v1/subscriptions", post(create_subscription))
            .route("/v1/subscriptions/{id}", post(update_subscription))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake stripe binds");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeStripe {
            url,
            inner,
            handle: Arc::new(handle),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration that points LOKIZ at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LOKIZ_PAYMENTS", "stripe".into()),
            ("LOKIZ_STRIPE_URL", self.url.clone()),
            ("LOKIZ_STRIPE_SECRET_KEY", SECRET_KEY.into()),
            ("LOKIZ_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ]
    }

    /// Intents that took money.
    pub fn charges(&self) -> usize {
        self.lock().charges
    }

    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    pub fn lose_next_answer(&self) {
        self.lock().lose_next_answer = true;
    }

    pub fn intent(&self, id: &str) -> Option<Value> {
        self.lock().intents.get(id).cloned()
    }

    /// The client confirmed a waiting intent (Stripe.js): it succeeds.
    pub fn confirm(&self, id: &str) -> Value {
        let mut inner = self.lock();
        let intent = inner.intents.get_mut(id).expect("intent exists");
        intent["status"] = json!("succeeded");
        let intent = intent.clone();
        inner.charges += 1;
        intent
    }

    /// A webhook event about `intent` (`payment_intent.succeeded`, …).
    pub fn event(&self, kind: &str, intent: &Value) -> Value {
        json!({
            "id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
            "object": "event",
            "type": kind,
            "data": {"object": intent},
        })
    }

    pub fn subscription(&self, id: &str) -> Option<Value> {
        self.lock().subscriptions.get(id).cloned()
    }

    /// The subscription whose metadata names `user_id`.
    pub fn subscription_of(&self, user_id: &str) -> Option<Value> {
        self.lock()
            .subscriptions
            .values()
            .find(|s| s["metadata"]["user_id"] == user_id)
            .cloned()
    }

    pub fn subscriptions_created(&self) -> usize {
        self.lock().subscriptions_created
    }

    /// An `invoice.*` event (`invoice.paid`, `invoice.payment_failed`) of
    /// `subscription` for the period `[start, end)` (unix seconds).
    pub fn invoice_event(
        &self,
        kind: &str,
        subscription: &Value,
        billing_reason: &str,
        start: i64,
        end: i64,
    ) -> Value {
        let status = if kind == "invoice.paid" {
            "paid"
        } else {
            "open"
        };
        let invoice = json!({
            "id": format!("in_{}", uuid::Uuid::new_v4().simple()),
            "object": "invoice",
            "subscription": subscription["id"],
            "billing_reason": billing_reason,
            "lines": {"object": "list", "data": [{"period": {"start": start, "end": end}}]},
            "subscription_details": {"metadata": subscription["metadata"]},
            "status": status,
        });
        self.event(kind, &invoice)
    }

    /// The `Stripe-Signature` header for `body` signed at `t`.
    pub fn sign(body: &[u8], t: i64) -> String {
        lokiz_infra::payments::sign_webhook(WEBHOOK_SECRET, t, body)
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        if Arc::strong_count(&self.handle) == 1 {
            self.handle.abort();
        }
    }
}

async fn create_intent(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {SECRET_KEY}"));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key"}})),
        )
            .into_response();
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    inner.requests += 1;
    if let Some(key) = &key {
        if let Some((first, status, body)) = inner.by_key.get(key) {
            if *first != params {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": {"type": "idempotency_error",
                        "message": "Keys for idempotent requests can only be used with the same parameters they were first used with."}})),
                )
                    .into_response();
            }
            return (*status, Json(body.clone())).into_response();
        }
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let metadata: serde_json::Map<String, Value> = params
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), json!(v)))
        })
        .collect();
    inner.next_id += 1;
    let id = format!("pi_fake{:06}", inner.next_id);
    let amount: i64 = get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut intent = json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "currency": get("currency").unwrap_or_default(),
        "client_secret": format!("{id}_secret_fake"),
        "metadata": metadata,
        "status": "requires_payment_method",
        "last_payment_error": null,
    });
    let (status, body) = match get("payment_method").as_deref() {
        Some("pm_card_chargeDeclined") => {
            let error = json!({"type": "card_error", "code": "card_declined",
                "decline_code": "generic_decline", "message": "Your card was declined."});
            intent["last_payment_error"] = error.clone();
            let mut error = error;
            error["payment_intent"] = intent.clone();
            (StatusCode::PAYMENT_REQUIRED, json!({ "error": error }))
        }
        Some(_) => {
            intent["status"] = json!("succeeded");
            intent["client_secret"] = json!(format!("{id}_secret_fake"));
            inner.charges += 1;
            (StatusCode::OK, intent.clone())
        }
        None => (StatusCode::OK, intent.clone()),
    };
    inner.intents.insert(id, intent);
    if let Some(key) = key {
        inner
            .by_key
            .insert(key, (params.clone(), status, body.clone()));
    }
    if status == StatusCode::OK && inner.lose_next_answer {
        inner.lose_next_answer = false;
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"type": "api_error"}})),
        )
            .into_response();
    }
    (status, Json(body)).into_response()
}

/// `None` when the request carries the secret key, else the 401 answer.
fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {SECRET_KEY}"));
    (!ok).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key"}})),
        )
            .into_response()
    })
}

async fn create_subscription(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = replay(&inner, key.as_deref(), &params) {
        return r;
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let metadata = metadata(&params);
    let known = |map: &HashMap<String, Value>, name: &str| {
        get(name).is_some_and(|id| map.contains_key(&id))
    };
    if !known(&inner.customers, "customer")
        || !known(&inner.products, "items[0][price_data][product]")
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}})),
        )
            .into_response();
    }
    let (status, body) =
        if get("default_payment_method").as_deref() == Some("pm_card_chargeDeclined") {
            (
                StatusCode::PAYMENT_REQUIRED,
                json!({"error": {"type": "card_error", "code": "card_declined",
                "decline_code": "generic_decline", "message": "Your card was declined."}}),
            )
        } else {
            inner.next_id += 1;
            let id = format!("sub_fake{:06}", inner.next_id);
            let start = chrono::Utc::now().timestamp();
            let sub = json!({
                "id": id,
                "object": "subscription",
                "status": "active",
                "current_period_start": start,
                "current_period_end": start + 30 * 86_400,
                "cancel_at_period_end": false,
                "metadata": metadata,
                "items": {"object": "list", "data": [{
                    "price": {"unit_amount": get("items[0][price_data][unit_amount]")
                        .and_then(|a| a.parse::<i64>().ok()),
                              "currency": get("items[0][price_data][currency]")}
                }]},
            });
            inner.subscriptions.insert(id, sub.clone());
            inner.subscriptions_created += 1;
            (StatusCode::OK, sub)
        };
    if let Some(key) = key {
        inner
            .by_key
            .insert(key, (params.clone(), status, body.clone()));
    }
    if status == StatusCode::OK && inner.lose_next_answer {
        inner.lose_next_answer = false;
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"type": "api_error"}})),
        )
            .into_response();
    }
    (status, Json(body)).into_response()
}

async fn update_subscription(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    let Some(sub) = inner.subscriptions.get_mut(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}})),
        )
            .into_response();
    };
    for (k, v) in &params {
        if k == "cancel_at_period_end" {
            sub["cancel_at_period_end"] = json!(v == "true");
        }
    }
    (StatusCode::OK, Json(sub.clone())).into_response()
}

/// The first answer to `key`, or the refusal of other parameters under it.
fn replay(inner: &Inner, key: Option<&str>, params: &[(String, String)]) -> Option<Response> {
    let (first, status, body) = inner.by_key.get(key?)?;
    if first.as_slice() != params {
        return Some(
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"type": "idempotency_error",
                    "message": "Keys for idempotent requests can only be used with the same parameters they were first used with."}})),
            )
                .into_response(),
        );
    }
    Some((*status, Json(body.clone())).into_response())
}

fn metadata(params: &[(String, String)]) -> serde_json::Map<String, Value> {
    params
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), json!(v)))
        })
        .collect()
}

/// Products take the id they are given; an existing id is refused.
async fn create_product(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    let id = params
        .iter()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| format!("prod_fake{}", inner.products.len() + 1));
    if inner.products.contains_key(&id) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"type": "invalid_request_error",
                "code": "resource_already_exists"}})),
        )
            .into_response();
    }
    let product = json!({"id": id, "object": "product"});
    inner.products.insert(id, product.clone());
    (StatusCode::OK, Json(product)).into_response()
}

async fn create_customer(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = replay(&inner, key.as_deref(), &params) {
        return r;
    }
    inner.next_id += 1;
    let id = format!("cus_fake{:06}", inner.next_id);
    let customer = json!({"id": id, "object": "customer", "metadata": metadata(&params)});
    inner.customers.insert(id, customer.clone());
    if let Some(key) = key {
        inner
            .by_key
            .insert(key, (params.clone(), StatusCode::OK, customer.clone()));
    }
    (StatusCode::OK, Json(customer)).into_response()
}
