//! A client for Replicate's HTTP prediction API
//! (<https://replicate.com/docs/reference/http>) and verification of the
//! webhooks Replicate sends (the Standard Webhooks scheme).
//!
//! The base URL is configurable so tests can point the client at a local fake.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use sha2::Sha256;
use url::Url;

type HmacSha256 = Hmac<Sha256>;

/// Longest error detail kept from a non-JSON error body.
const MAX_DETAIL: usize = 512;

/// A usual tolerance for [`verify_webhook`]: five minutes either way.
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// The request could not be sent or its response not read (connection,
    /// timeout, TLS, …).
    #[error("Replicate request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// A non-success status other than those with their own variant.
    #[error("Replicate answered {status}: {detail}")]
    Status { status: u16, detail: String },
    /// 401: the API token is missing or wrong.
    #[error("Replicate rejected the API token")]
    Unauthorized,
    /// 404: no such prediction (or model version).
    #[error("not found on Replicate")]
    NotFound,
    /// 429, with the `Retry-After` delay when one was given.
    #[error("rate limited by Replicate (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// A success response whose body is not a prediction.
    #[error("undecodable Replicate response: {0}")]
    Decode(String),
    /// The base URL given to [`ReplicateClient::new`] is not an http(s) URL.
    #[error("invalid Replicate base URL: {0}")]
    InvalidBaseUrl(String),
}

/// Body of `POST /v1/predictions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatePrediction {
    /// The model version id.
    pub version: String,
    pub input: Value,
    /// HTTPS URL Replicate POSTs the prediction to as it progresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Subset of `start`, `output`, `logs`, `completed`; empty means
    /// Replicate's default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_events_filter: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PredictionStatus {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
    /// Terminated before it started (e.g. a deadline passed while queued).
    Aborted,
}

impl PredictionStatus {
    /// True once the prediction will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Canceled | Self::Aborted
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Aborted => "aborted",
        }
    }
}

/// `urls` of a prediction: where to poll it and how to cancel it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PredictionUrls {
    #[serde(default)]
    pub get: Option<String>,
    #[serde(default)]
    pub cancel: Option<String>,
    #[serde(default)]
    pub stream: Option<String>,
}

/// A prediction as returned by the API and posted to webhooks. Fields other
/// than `id` and `status` are optional: Replicate omits some of them for some
/// models, and unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub id: String,
    #[serde(default)]
    pub version: Option<String>,
    pub status: PredictionStatus,
    #[serde(default)]
    pub input: Value,
    #[serde(default)]
    pub output: Option<Value>,
    /// Usually a string, kept as JSON in case a model reports more.
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub logs: Option<String>,
    #[serde(default)]
    pub metrics: Option<Value>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub urls: Option<PredictionUrls>,
}

/// A timestamp that is absent, null or unparsable becomes `None` rather than
/// failing the whole prediction.
fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw = Option::<Value>::deserialize(d)?;
    Ok(raw
        .as_ref()
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc)))
}

impl Prediction {
    /// The last `NN%` in the logs (tqdm-style progress bars print
    /// `  40%|####      | 20/50`), or `None` if there is none.
    pub fn progress_percent(&self) -> Option<u8> {
        self.logs.as_deref().and_then(last_percent)
    }

    /// The error as text (a string error as is, anything else as JSON).
    pub fn error_message(&self) -> Option<String> {
        match self.error.as_ref()? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// The last percentage (0–100) in `text`; a fractional one is truncated.
fn last_percent(text: &str) -> Option<u8> {
    let bytes = text.as_bytes();
    let mut found = None;
    for (i, _) in text.match_indices('%') {
        let mut start = i;
        while start > 0 && bytes[start - 1].is_ascii_digit() {
            start -= 1;
        }
        let mut int = &text[start..i];
        // "12.5%": take the integer part.
        if start > 0 && bytes[start - 1] == b'.' && !int.is_empty() {
            let end = start - 1;
            let mut s = end;
            while s > 0 && bytes[s - 1].is_ascii_digit() {
                s -= 1;
            }
            if s < end {
                int = &text[s..end];
            }
        }
        if int.is_empty() || int.len() > 3 {
            continue;
        }
        if let Ok(n) = int.parse::<u8>() {
            if n <= 100 {
                found = Some(n);
            }
        }
    }
    found
}

/// The Replicate HTTP client. Cheap to clone.
#[derive(Clone)]
pub struct ReplicateClient {
    http: reqwest::Client,
    base: Url,
    token: String,
}

impl std::fmt::Debug for ReplicateClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicateClient")
            .field("base", &self.base.as_str())
            .field("token", &"<redacted>")
            .finish()
    }
}

impl ReplicateClient {
    /// `base_url` is e.g. `https://api.replicate.com` (the `/v1/...` paths
    /// are appended to its path); `timeout` bounds each whole request.
    pub fn new(base_url: Url, token: String, timeout: Duration) -> Result<Self, ReplicateError> {
        if !matches!(base_url.scheme(), "http" | "https") || base_url.cannot_be_a_base() {
            return Err(ReplicateError::InvalidBaseUrl(base_url.to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("lokiz/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base_url,
            token,
        })
    }

    /// The base URL requests are made against.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `POST /v1/predictions`.
    pub async fn create_prediction(
        &self,
        req: &CreatePrediction,
    ) -> Result<Prediction, ReplicateError> {
        let url = self.endpoint(&["v1", "predictions"])?;
        self.send(Method::POST, url, Some(req)).await
    }

    /// `GET /v1/predictions/{id}`.
    pub async fn get_prediction(&self, id: &str) -> Result<Prediction, ReplicateError> {
        let url = self.endpoint(&["v1", "predictions", non_empty(id)?])?;
        self.send::<()>(Method::GET, url, None).await
    }

    /// `POST /v1/predictions/{id}/cancel`. Cancelling a finished prediction
    /// returns it unchanged.
    pub async fn cancel_prediction(&self, id: &str) -> Result<Prediction, ReplicateError> {
        let url = self.endpoint(&["v1", "predictions", non_empty(id)?, "cancel"])?;
        self.send::<()>(Method::POST, url, None).await
    }

    /// The base URL with `segments` appended (each one percent-encoded).
    fn endpoint(&self, segments: &[&str]) -> Result<Url, ReplicateError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ReplicateError::InvalidBaseUrl(self.base.to_string()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<Prediction, ReplicateError> {
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ReplicateError::Decode(format!("{e} in {}", snippet(&bytes))));
        }
        Err(match status {
            StatusCode::UNAUTHORIZED => ReplicateError::Unauthorized,
            StatusCode::NOT_FOUND => ReplicateError::NotFound,
            StatusCode::TOO_MANY_REQUESTS => ReplicateError::RateLimited {
                retry_after: retry_after(&headers, Utc::now()),
            },
            _ => ReplicateError::Status {
                status: status.as_u16(),
                detail: error_detail(&bytes),
            },
        })
    }
}

/// An empty id would address the collection instead of a prediction.
fn non_empty(id: &str) -> Result<&str, ReplicateError> {
    if id.is_empty() {
        Err(ReplicateError::NotFound)
    } else {
        Ok(id)
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = raw.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = DateTime::parse_from_rfc2822(raw).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Replicate's errors are problem documents (`{"title", "detail", "status"}`);
/// take `detail` (or `title`), else the start of the body.
fn error_detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        for key in ["detail", "title", "error"] {
            match v.get(key) {
                Some(Value::String(s)) => return s.clone(),
                Some(Value::Null) | None => {}
                Some(other) => return other.to_string(),
            }
        }
    }
    snippet(body)
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(MAX_DETAIL) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
}

// ---------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The named header is missing or empty.
    #[error("missing webhook header {0}")]
    MissingHeader(&'static str),
    /// The secret is not `whsec_<base64>` (or plain base64) of a non-empty key.
    #[error("malformed webhook secret")]
    BadSecret,
    /// `webhook-timestamp` is not unix seconds.
    #[error("malformed webhook timestamp")]
    BadTimestamp,
    /// The timestamp is further from now than the tolerance (either way).
    #[error("webhook timestamp outside the tolerance")]
    Expired,
    /// No `v1` signature matches.
    #[error("bad webhook signature")]
    BadSignature,
}

/// The HMAC key of a `whsec_<base64>` secret (the prefix is optional).
fn webhook_mac(secret: &str) -> Result<HmacSha256, WebhookError> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
    let key = B64.decode(encoded).map_err(|_| WebhookError::BadSecret)?;
    if key.is_empty() {
        return Err(WebhookError::BadSecret);
    }
    HmacSha256::new_from_slice(&key).map_err(|_| WebhookError::BadSecret)
}

/// The MAC over `"{id}.{timestamp}.{body}"`, ready to finalize or verify.
fn signed_content(mut mac: HmacSha256, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value (`v1,<base64>`) for a delivery, as Replicate
/// computes it.
pub fn sign_webhook(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, WebhookError> {
    let mac = signed_content(webhook_mac(secret)?, id, &timestamp.to_string(), body);
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// Checks a delivery given its `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` headers and its raw body. Accepts if any `v1`
/// signature in the space-separated list matches (compared in constant time)
/// and the timestamp is within `tolerance` of `now`.
pub fn verify_webhook(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    if id.trim().is_empty() {
        return Err(WebhookError::MissingHeader("webhook-id"));
    }
    if timestamp.trim().is_empty() {
        return Err(WebhookError::MissingHeader("webhook-timestamp"));
    }
    if signatures.trim().is_empty() {
        return Err(WebhookError::MissingHeader("webhook-signature"));
    }
    let mac = webhook_mac(secret)?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::BadTimestamp)?;
    if now.timestamp().abs_diff(ts) > tolerance.as_secs() {
        return Err(WebhookError::Expired);
    }
    // Sign the timestamp as sent: it parsed as an integer, so it is digits.
    let mac = signed_content(mac, id, timestamp.trim(), body);
    let matched = signatures
        .split_ascii_whitespace()
        .filter_map(|s| s.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| B64.decode(sig).ok())
        .any(|sig| mac.clone().verify_slice(&sig).is_ok());
    if matched {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const OTHER: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    fn at(ts: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(ts, 0).single().unwrap()
    }

    fn verify(
        secret: &str,
        ts: &str,
        sigs: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), WebhookError> {
        verify_webhook(secret, ID, ts, sigs, body, at(now), WEBHOOK_TOLERANCE)
    }

    #[test]
    fn known_vectors() {
        // Both cross-checked with Python's hmac/hashlib/base64; the second is
        // the Standard Webhooks reference example.
        assert_eq!(
            sign_webhook(SECRET, ID, TS, BODY).unwrap(),
            "v1,O4Gjv1HqPqsMrjmczoggs/sWA8gZD0VyHG+fLh4+ktI="
        );
        assert_eq!(
            sign_webhook(OTHER, ID, TS, BODY).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        verify(
            OTHER,
            "1614265330",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            BODY,
            TS,
        )
        .unwrap();
    }

    #[test]
    fn round_trip() {
        let sig = sign_webhook(SECRET, ID, TS, BODY).unwrap();
        verify(SECRET, &TS.to_string(), &sig, BODY, TS).unwrap();
        // Within tolerance either way.
        verify(SECRET, &TS.to_string(), &sig, BODY, TS + 300).unwrap();
        verify(SECRET, &TS.to_string(), &sig, BODY, TS - 300).unwrap();
        // The secret without its prefix works too.
        let bare = SECRET.trim_start_matches("whsec_");
        verify(bare, &TS.to_string(), &sig, BODY, TS).unwrap();
    }

    #[test]
    fn any_listed_v1_signature_may_match() {
        let good = sign_webhook(SECRET, ID, TS, BODY).unwrap();
        let bad = sign_webhook(OTHER, ID, TS, BODY).unwrap();
        let list = format!("v2,abc {bad} v1,!!notbase64 {good}");
        verify(SECRET, &TS.to_string(), &list, BODY, TS).unwrap();
        // A correct MAC under another version tag is not accepted.
        let v2 = good.replacen("v1,", "v2,", 1);
        assert_eq!(
            verify(SECRET, &TS.to_string(), &v2, BODY, TS),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn tampered_body_is_rejected() {
        let sig = sign_webhook(SECRET, ID, TS, BODY).unwrap();
        assert_eq!(
            verify(
                SECRET,
                &TS.to_string(),
                &sig,
                br#"{"test": 2432232315}"#,
                TS
            ),
            Err(WebhookError::BadSignature)
        );
        // So are a changed id and a changed timestamp.
        assert_eq!(
            verify_webhook(
                SECRET,
                "msg_other",
                &TS.to_string(),
                &sig,
                BODY,
                at(TS),
                WEBHOOK_TOLERANCE
            ),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(SECRET, &(TS + 1).to_string(), &sig, BODY, TS),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn other_secret_is_rejected() {
        let sig = sign_webhook(OTHER, ID, TS, BODY).unwrap();
        assert_eq!(
            verify(SECRET, &TS.to_string(), &sig, BODY, TS),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn timestamp_outside_tolerance_is_expired() {
        let sig = sign_webhook(SECRET, ID, TS, BODY).unwrap();
        for now in [TS + 301, TS - 301, 0, 8_000_000_000, -8_000_000_000] {
            assert_eq!(
                verify(SECRET, &TS.to_string(), &sig, BODY, now),
                Err(WebhookError::Expired),
                "now = {now}"
            );
        }
        // Extreme timestamps do not overflow.
        for ts in [i64::MAX, i64::MIN] {
            let sig = sign_webhook(SECRET, ID, ts, BODY).unwrap();
            assert_eq!(
                verify(SECRET, &ts.to_string(), &sig, BODY, TS),
                Err(WebhookError::Expired)
            );
        }
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let sig = sign_webhook(SECRET, ID, TS, BODY).unwrap();
        let ts = TS.to_string();
        let now = at(TS);
        let tol = WEBHOOK_TOLERANCE;
        assert_eq!(
            verify_webhook(SECRET, "", &ts, &sig, BODY, now, tol),
            Err(WebhookError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            verify_webhook(SECRET, ID, " ", &sig, BODY, now, tol),
            Err(WebhookError::MissingHeader("webhook-timestamp"))
        );
        assert_eq!(
            verify_webhook(SECRET, ID, &ts, "", BODY, now, tol),
            Err(WebhookError::MissingHeader("webhook-signature"))
        );
        for bad_ts in ["abc", "1614265330.5", "99999999999999999999999", "-", "1e9"] {
            assert_eq!(
                verify_webhook(SECRET, ID, bad_ts, &sig, BODY, now, tol),
                Err(WebhookError::BadTimestamp),
                "{bad_ts}"
            );
        }
        for bad_sig in [
            "v1",
            "v1,",
            ",",
            "v1,====",
            "v1,ü",
            "nonsense",
            "v1 ,x",
            "v1,AAAA",
            "\u{0}\u{1}",
        ] {
            assert_eq!(
                verify_webhook(SECRET, ID, &ts, bad_sig, BODY, now, tol),
                Err(WebhookError::BadSignature),
                "{bad_sig:?}"
            );
        }
        for bad_secret in ["", "whsec_", "whsec_!!!", "whsec_ not base64", "ü"] {
            assert_eq!(
                sign_webhook(bad_secret, ID, TS, BODY),
                Err(WebhookError::BadSecret),
                "{bad_secret:?}"
            );
            assert_eq!(
                verify_webhook(bad_secret, ID, &ts, &sig, BODY, now, tol),
                Err(WebhookError::BadSecret),
                "{bad_secret:?}"
            );
        }
    }

    #[test]
    fn progress_from_logs() {
        let mut p: Prediction = serde_json::from_value(json!({
            "id": "p1", "status": "processing", "logs": null
        }))
        .unwrap();
        assert_eq!(p.progress_percent(), None);
        for (logs, want) in [
            ("", None),
            ("loading model\n", None),
            ("  40%|####      | 20/50 [00:01<00:02]", Some(40)),
            (
                "  0%|          | 0/50\n 12%|#  | 6/50\r100%|##########| 50/50",
                Some(100),
            ),
            ("step 1\n 7%|", Some(7)),
            ("12.5% done", Some(12)),
            ("999% nonsense", None),
            (" 55%| then 250%", Some(55)),
            ("%", None),
            ("50 %", None),
            ("ü%ü 3%", Some(3)),
        ] {
            p.logs = Some(logs.into());
            assert_eq!(p.progress_percent(), want, "{logs:?}");
        }
    }

    #[test]
    fn decodes_a_replicate_prediction() {
        let p: Prediction = serde_json::from_value(json!({
            "id": "gm3qorzdhgbfurvjtvhg6dckhu",
            "model": "replicate/hello-world",
            "version": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
            "input": {"text": "Alice"},
            "logs": "",
            "output": "hello Alice",
            "error": null,
            "status": "succeeded",
            "created_at": "2023-09-08T16:19:34.765994Z",
            "started_at": "2023-09-08T16:19:34.779176Z",
            "completed_at": "not a time",
            "metrics": {"predict_time": 0.013},
            "urls": {
                "cancel": "https://api.replicate.com/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu/cancel",
                "get": "https://api.replicate.com/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu"
            }
        }))
        .unwrap();
        assert_eq!(p.status, PredictionStatus::Succeeded);
        assert!(p.status.is_terminal());
        assert_eq!(p.output, Some(json!("hello Alice")));
        assert_eq!(p.error, None);
        assert!(p.created_at.is_some());
        assert_eq!(p.completed_at, None);
        assert_eq!(
            p.urls.and_then(|u| u.get).as_deref(),
            Some("https://api.replicate.com/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu")
        );
        let failed: Prediction = serde_json::from_value(json!({
            "id": "x", "status": "failed", "error": "CUDA out of memory"
        }))
        .unwrap();
        assert_eq!(
            failed.error_message().as_deref(),
            Some("CUDA out of memory")
        );
        assert!(!PredictionStatus::Starting.is_terminal());
        assert!(!PredictionStatus::Processing.is_terminal());
        assert!(PredictionStatus::Aborted.is_terminal());
    }

    #[test]
    fn create_body_shape() {
        let req = CreatePrediction {
            version: "v".into(),
            input: json!({"video": "https://x/y.mp4"}),
            webhook: Some("https://example.com/hook".into()),
            webhook_events_filter: vec!["start".into(), "completed".into()],
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"version": "v", "input": {"video": "https://x/y.mp4"},
                   "webhook": "https://example.com/hook",
                   "webhook_events_filter": ["start", "completed"]})
        );
        let bare = CreatePrediction {
            webhook: None,
            webhook_events_filter: vec![],
            ..req
        };
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            json!({"version": "v", "input": {"video": "https://x/y.mp4"}})
        );
    }

    #[test]
    fn endpoints_keep_the_base_path_and_escape_ids() {
        let t = Duration::from_secs(5);
        let c = ReplicateClient::new(
            Url::parse("http://h:1/proxy/").unwrap(),
            "r8_secret".into(),
            t,
        )
        .unwrap();
        assert_eq!(
            c.endpoint(&["v1", "predictions", "a/b?c", "cancel"])
                .unwrap()
                .as_str(),
            "http://h:1/proxy/v1/predictions/a%2Fb%3Fc/cancel"
        );
        let c = ReplicateClient::new(
            Url::parse("https://api.replicate.com").unwrap(),
            "r8_secret".into(),
            t,
        )
        .unwrap();
        assert_eq!(
            c.endpoint(&["v1", "predictions"]).unwrap().as_str(),
            "https://api.replicate.com/v1/predictions"
        );
        assert!(!format!("{c:?}").contains("r8_secret"));
        assert!(matches!(
            ReplicateClient::new(Url::parse("mailto:a@b").unwrap(), "r8_secret".into(), t),
            Err(ReplicateError::InvalidBaseUrl(_))
        ));
    }

    #[test]
    fn retry_after_forms() {
        let now = at(TS);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, "1.5".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
        let later = (now + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, later.parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, "-3".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn error_details() {
        assert_eq!(
            error_detail(
                br#"{"title":"Invalid version","detail":"version does not exist","status":422}"#
            ),
            "version does not exist"
        );
        assert_eq!(error_detail(br#"{"title":"Bad"}"#), "Bad");
        assert_eq!(error_detail(b"plain"), "plain");
        let long = "x".repeat(2000);
        assert_eq!(
            error_detail(long.as_bytes()).chars().count(),
            MAX_DETAIL + 1
        );
    }
}
