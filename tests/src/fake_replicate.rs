//! An in-process fake of Replicate's prediction API for tests: the three
//! prediction endpoints, output files under `/files/{name}`, and signed webhook
//! deliveries. Predictions only move when the test says so ([`advance`],
//! [`fail`]), so tests are deterministic.
//!
//! Webhook events: `advance` to `processing` is the `start` event (it also
//! carries new logs, so a `logs` filter receives it too); to `succeeded` is
//! `completed` (with the output, so an `output` filter receives it too);
//! `fail` and cancel are `completed`. An empty filter receives everything.
//!
//! [`advance`]: FakeReplicate::advance
//! [`fail`]: FakeReplicate::fail

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use lokiz_infra::ai::replicate::sign_webhook;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Logs of a prediction once it is processing.
pub const PROCESSING_LOGS: &str = "loading model\n  40%|####      | 20/50 [00:01<00:02]";
/// Logs appended when it succeeds.
pub const SUCCEEDED_LOGS: &str = "\n100%|##########| 50/50 [00:03<00:00]";

/// The bytes served for every output file: the start of an MP4 (an `ftyp` box
/// and an empty `free` box), enough for content sniffing.
pub const OUTPUT_BYTES: &[u8] = &[
    0, 0, 0, 24, b'f', b't', b'y', b'p', b'i', b's', b'o', b'm', 0, 0, 2, 0, b'i', b's', b'o',
    b'm', b'm', b'p', b'4', b'1', 0, 0, 0, 8, b'f', b'r', b'e', b'e',
];

/// A prediction as the fake holds it, with the input it received.
#[derive(Debug, Clone, PartialEq)]
pub struct FakePrediction {
    pub id: String,
    pub version: String,
    pub input: Value,
    pub webhook: Option<String>,
    pub webhook_events_filter: Vec<String>,
    /// `starting`, `processing`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub logs: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl FakePrediction {
    fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "canceled")
    }

    /// Whether a webhook for a step raising `events` is sent.
    fn wants(&self, events: &[&str]) -> bool {
        self.webhook.is_some()
            && (self.webhook_events_filter.is_empty()
                || events
                    .iter()
                    .any(|e| self.webhook_events_filter.iter().any(|f| f == e)))
    }

    /// The prediction's JSON, as the API returns it.
    pub fn to_json(&self, base_url: &str) -> Value {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        let get = format!("{base_url}/v1/predictions/{}", self.id);
        json!({
            "id": self.id,
            "model": "lokiz/fake",
            "version": self.version,
            "input": self.input,
            "logs": if self.logs.is_empty() { Value::Null } else { Value::from(self.logs.clone()) },
            "output": self.output,
            "error": self.error,
            "status": self.status,
            "created_at": time(&self.created_at),
            "started_at": self.started_at.as_ref().map(time),
            "completed_at": self.completed_at.as_ref().map(time),
            "metrics": {},
            "urls": {"get": get, "cancel": format!("{get}/cancel")},
        })
    }
}

/// One webhook delivery attempt and its result.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    pub prediction_id: String,
    /// The status the delivered prediction had.
    pub prediction_status: String,
    pub url: String,
    /// The `webhook-id` header.
    pub webhook_id: String,
    /// The receiver's answer, `None` if the request failed.
    pub response_status: Option<u16>,
    /// Why the request failed.
    pub error: Option<String>,
}

#[derive(Default)]
struct Inner {
    predictions: HashMap<String, FakePrediction>,
    /// Creation order.
    order: Vec<String>,
    canceled: Vec<String>,
    deliveries: Vec<WebhookDelivery>,
    /// Served as every output instead of [`OUTPUT_BYTES`] when set.
    output: Option<Vec<u8>>,
}

#[derive(Clone)]
struct Shared {
    base_url: String,
    token: String,
    webhook_secret: String,
    http: reqwest::Client,
    inner: Arc<Mutex<Inner>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// POSTs `prediction` to its webhook, signed like Replicate does, and
    /// records the result.
    async fn deliver(&self, prediction: FakePrediction) {
        let Some(url) = prediction.webhook.clone() else {
            return;
        };
        let body = serde_json::to_vec(&prediction.to_json(&self.base_url)).expect("JSON");
        let webhook_id = format!("msg_{}", Uuid::new_v4().simple());
        let timestamp = Utc::now().timestamp();
        let signature = sign_webhook(&self.webhook_secret, &webhook_id, timestamp, &body)
            .expect("the fake's secret is valid");
        let result = self
            .http
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let (response_status, error) = match result {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.lock().deliveries.push(WebhookDelivery {
            prediction_id: prediction.id,
            prediction_status: prediction.status,
            url,
            webhook_id,
            response_status,
            error,
        });
    }
}

/// The fake server; stops when dropped.
pub struct FakeReplicate {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    /// The API token requests must carry (`Authorization: Bearer …`).
    pub token: String,
    /// `whsec_<base64>`: the secret webhooks are signed with.
    pub webhook_secret: String,
    shared: Shared,
    server: JoinHandle<()>,
}

impl Drop for FakeReplicate {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeReplicate {
    /// The configuration that points LOKIZ at this fake (one model version
    /// per kind); `outputs_on_loopback`: allow downloading the fake's
    /// outputs (http, 127.0.0.1), which production refuses.
    pub fn env(&self, outputs_on_loopback: bool) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("LOKIZ_AI_PROVIDER", "replicate".to_owned()),
            ("LOKIZ_REPLICATE_URL", self.base_url.clone()),
            ("LOKIZ_REPLICATE_TOKEN", self.token.clone()),
            (
                "LOKIZ_REPLICATE_WEBHOOK_SECRET",
                self.webhook_secret.clone(),
            ),
            (
                "LOKIZ_REPLICATE_VERSIONS",
                "template=tmpl-v1,glitch_animate=anim-v1,glitch_replace=repl-v1,music=music-v1"
                    .to_owned(),
            ),
            (
                "LOKIZ_REPLICATE_OUTPUT_HOSTS",
                "127.0.0.1,localhost".to_owned(),
            ),
        ];
        if outputs_on_loopback {
            env.push(("LOKIZ_REPLICATE_INSECURE_OUTPUTS", "1".to_owned()));
        }
        env
    }

    /// Starts the server on `127.0.0.1:0` with a fresh token and secret.
    pub async fn start() -> FakeReplicate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Replicate");
        let port = listener.local_addr().expect("local addr").port();
        let base_url = format!("http://127.0.0.1:{port}");
        let token = format!("r8_{}", Uuid::new_v4().simple());
        let mut key = Uuid::new_v4().as_bytes().to_vec();
        key.extend_from_slice(Uuid::new_v4().as_bytes());
        let webhook_secret = format!("whsec_{}", B64.encode(key));
        let shared = Shared {
            base_url: base_url.clone(),
            token: token.clone(),
            webhook_secret: webhook_secret.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            inner: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/predictions", post(create))
            .route("/v1/predictions/{id}", get(fetch))
            .route("/v1/predictions/{id}/cancel", post(cancel))
            .route("/files/{name}", get(file))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeReplicate {
            base_url,
            token,
            webhook_secret,
            shared,
            server,
        }
    }

    /// The output URL a succeeded prediction `id` gets.
    /// Serves `bytes` as the output of every succeeded prediction (e.g. a
    /// real video, for a provider that checks what it downloads).
    pub fn set_output(&self, bytes: Vec<u8>) {
        self.shared.lock().output = Some(bytes);
    }

    pub fn output_url(&self, id: &str) -> String {
        format!("{}/files/{id}.mp4", self.base_url)
    }

    /// Moves prediction `id` one step — `starting` → `processing` (with
    /// [`PROCESSING_LOGS`]) → `succeeded` (output [`Self::output_url`]) — and
    /// awaits its webhook delivery. A finished prediction stays as it is.
    /// Panics on an unknown id.
    pub async fn advance(&self, id: &str) {
        let output = Value::from(self.output_url(id));
        let delivery = self.update(id, |p| match p.status.as_str() {
            "starting" => {
                p.status = "processing".into();
                p.started_at = Some(Utc::now());
                p.logs.push_str(PROCESSING_LOGS);
                Some(&["start", "logs"][..])
            }
            "processing" => {
                p.status = "succeeded".into();
                p.completed_at = Some(Utc::now());
                p.logs.push_str(SUCCEEDED_LOGS);
                p.output = Some(output);
                Some(&["completed", "output"][..])
            }
            _ => None,
        });
        if let Some(p) = delivery {
            self.shared.deliver(p).await;
        }
    }

    /// Fails prediction `id` with `error` (unless it has finished) and awaits
    /// its webhook delivery. Panics on an unknown id.
    pub async fn fail(&self, id: &str, error: &str) {
        let delivery = self.update(id, |p| {
            if p.is_terminal() {
                return None;
            }
            p.status = "failed".into();
            p.error = Some(error.into());
            p.started_at.get_or_insert_with(Utc::now);
            p.completed_at = Some(Utc::now());
            Some(&["completed"][..])
        });
        if let Some(p) = delivery {
            self.shared.deliver(p).await;
        }
    }

    /// Applies `step` to prediction `id`; returns the prediction to deliver if
    /// the step raised events its webhook wants.
    fn update(
        &self,
        id: &str,
        step: impl FnOnce(&mut FakePrediction) -> Option<&'static [&'static str]>,
    ) -> Option<FakePrediction> {
        let mut inner = self.shared.lock();
        let p = inner
            .predictions
            .get_mut(id)
            .unwrap_or_else(|| panic!("the fake Replicate has no prediction {id}"));
        let events = step(p)?;
        p.wants(events).then(|| p.clone())
    }

    /// The predictions created, in order, as they are now.
    pub fn predictions(&self) -> Vec<FakePrediction> {
        let inner = self.shared.lock();
        inner
            .order
            .iter()
            .filter_map(|id| inner.predictions.get(id).cloned())
            .collect()
    }

    /// One prediction as it is now.
    pub fn prediction(&self, id: &str) -> Option<FakePrediction> {
        self.shared.lock().predictions.get(id).cloned()
    }

    /// Ids of existing predictions a cancel was requested for, in order
    /// (including requests for already finished ones).
    pub fn canceled(&self) -> Vec<String> {
        self.shared.lock().canceled.clone()
    }

    /// Webhook deliveries made so far, in order. Deliveries caused by a
    /// cancel are made in the background: poll for them.
    pub fn deliveries(&self) -> Vec<WebhookDelivery> {
        self.shared.lock().deliveries.clone()
    }
}

fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    (
        status,
        Json(json!({"title": title, "detail": detail, "status": status.as_u16()})),
    )
        .into_response()
}

/// Whether the request carries the fake's token (`Bearer` or the legacy
/// `Token` scheme).
fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("Token "))
        });
    given == Some(shared.token.as_str())
}

fn unauthorized() -> Response {
    problem(
        StatusCode::UNAUTHORIZED,
        "Unauthenticated",
        "You did not pass a valid authentication token",
    )
}

fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Not found",
        "The requested resource does not exist",
    )
}

async fn create(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let invalid = |detail: &str| problem(StatusCode::UNPROCESSABLE_ENTITY, "Invalid input", detail);
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return invalid("The request body is not valid JSON");
    };
    let version = match body.get("version").and_then(Value::as_str) {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => return invalid("version is required"),
    };
    let input = match body.get("input") {
        Some(i @ Value::Object(_)) => i.clone(),
        _ => return invalid("input is required and must be an object"),
    };
    let webhook = match body.get("webhook") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if reqwest::Url::parse(s).is_ok() => Some(s.clone()),
        Some(_) => return invalid("webhook must be a URL"),
    };
    let webhook_events_filter = match body.get("webhook_events_filter") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(events)) => {
            let mut out = Vec::new();
            for e in events {
                match e.as_str() {
                    Some(s @ ("start" | "output" | "logs" | "completed")) => out.push(s.to_owned()),
                    _ => return invalid("webhook_events_filter has an unknown event"),
                }
            }
            out
        }
        Some(_) => return invalid("webhook_events_filter must be an array"),
    };
    let id: String = Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(26)
        .collect();
    let prediction = FakePrediction {
        id: id.clone(),
        version,
        input,
        webhook,
        webhook_events_filter,
        status: "starting".into(),
        output: None,
        error: None,
        logs: String::new(),
        created_at: Utc::now(),
        started_at: None,
        completed_at: None,
    };
    let json = prediction.to_json(&shared.base_url);
    {
        let mut inner = shared.lock();
        inner.predictions.insert(id.clone(), prediction);
        inner.order.push(id);
    }
    (StatusCode::CREATED, Json(json)).into_response()
}

async fn fetch(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    match shared.lock().predictions.get(&id) {
        Some(p) => Json(p.to_json(&shared.base_url)).into_response(),
        None => not_found(),
    }
}

async fn cancel(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let (json, delivery) = {
        let mut inner = shared.lock();
        let Some(p) = inner.predictions.get_mut(&id) else {
            return not_found();
        };
        let mut delivery = None;
        if !p.is_terminal() {
            p.status = "canceled".into();
            p.completed_at = Some(Utc::now());
            if p.wants(&["completed"]) {
                delivery = Some(p.clone());
            }
        }
        let json = p.to_json(&shared.base_url);
        inner.canceled.push(id);
        (json, delivery)
    };
    if let Some(p) = delivery {
        // In the background, as Replicate does: the canceller may be the
        // webhook's receiver.
        let shared = shared.clone();
        tokio::spawn(async move { shared.deliver(p).await });
    }
    Json(json).into_response()
}

/// Serves [`OUTPUT_BYTES`] (or the bytes given to `set_output`) for the
/// output file of a succeeded prediction.
async fn file(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    let succeeded = name
        .strip_suffix(".mp4")
        .and_then(|id| {
            shared
                .lock()
                .predictions
                .get(id)
                .map(|p| p.status == "succeeded")
        })
        .unwrap_or(false);
    if !succeeded {
        return not_found();
    }
    let output = shared.lock().output.clone();
    match output {
        Some(bytes) => ([(header::CONTENT_TYPE, "video/mp4")], bytes).into_response(),
        None => ([(header::CONTENT_TYPE, "video/mp4")], OUTPUT_BYTES).into_response(),
    }
}
