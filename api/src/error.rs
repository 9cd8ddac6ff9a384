//! The one error envelope: `{"error": {"code", "message", "details"}}`.
//! Internal errors are logged with their cause and answered with a generic
//! message: no SQL, stack traces or library text reaches a client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lokiz_domain::values::FieldError;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: every bad field, listed.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 400: the body is not JSON, or not the JSON object expected.
    #[error("bad request: {message}")]
    BadRequest { code: &'static str, message: String },
    /// 415: the body is not declared as JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 401
    #[error("unauthorized: {message}")]
    Unauthorized {
        code: &'static str,
        message: &'static str,
    },
    /// 403
    #[error("forbidden")]
    Forbidden {
        code: &'static str,
        message: &'static str,
    },
    /// 404
    #[error("not found: {what}")]
    NotFound { what: &'static str },
    /// 409
    #[error("conflict: {message}")]
    Conflict {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// 403: a signed URL's signature does not match its parameters.
    #[error("invalid signature")]
    InvalidSignature,
    /// 403: a signed URL is past its expiry.
    #[error("URL expired")]
    UrlExpired,
    /// 415: an upload's Content-Type is not the one its URL was signed for.
    #[error("content type mismatch")]
    ContentTypeMismatch { expected: String },
    /// 413: an upload is larger than the size its URL was signed for.
    #[error("payload too large")]
    PayloadTooLarge { limit: u64 },
    /// 400: an upload is shorter than the size its URL was signed for.
    #[error("size mismatch")]
    SizeMismatch { expected: u64, received: u64 },
    /// 503: the read models did not catch up in time.
    #[error("consistency timeout")]
    ConsistencyTimeout { position: i64, waited_ms: u128 },
    /// 503: the request ran past `LOKIZ_REQUEST_TIMEOUT_MS`.
    #[error("request timeout")]
    RequestTimeout,
    /// 503: a dependency is down.
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
    /// 422: an `Idempotency-Key` already used for a different request
    /// (another method, path or body).
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    /// 409: the first request with this `Idempotency-Key` is still running.
    #[error("idempotency key in progress")]
    IdempotencyInProgress,
    /// 402: the wallet cannot pay for the job.
    #[error("insufficient credits")]
    InsufficientCredits { needed: i64, balance: i64 },
    /// 402: the payment provider declined the charge.
    #[error("payment declined")]
    PaymentDeclined,
    /// 409: the job already finished (completed, failed or canceled).
    #[error("job finished")]
    JobFinished { status: &'static str },
    /// 429: too many requests (`RATE_LIMIT_EXCEEDED`) or the day's quota
    /// is spent (`QUOTA_DAILY_EXCEEDED`); `Retry-After` says when to retry.
    #[error("too many requests")]
    TooManyRequests {
        code: &'static str,
        message: &'static str,
        retry_after: u64,
    },
    /// 500: logged, never shown.
    #[error("internal: {0}")]
    Internal(#[from] anyhow::Error),
}

/// The envelope, for OpenAPI.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `VALIDATION_FAILED`.
    pub code: String,
    /// A sentence for people; may change, unlike `code`.
    pub message: String,
    /// `null`, or an object that depends on `code`: `VALIDATION_FAILED` →
    /// `{fields: [{field, code, message}]}`; `CONSISTENCY_TIMEOUT` →
    /// `{min_position, waited_ms}`; `INSUFFICIENT_CREDITS` → `{needed,
    /// balance}`; `JOB_FINISHED` → `{status}`; `TOO_LARGE` → `{limit}`;
    /// `SIZE_MISMATCH` → `{expected, received}`; `CONTENT_TYPE_MISMATCH` →
    /// `{expected}`; `RATE_LIMIT_EXCEEDED`, `QUOTA_DAILY_EXCEEDED` →
    /// `{retry_after}`.
    #[schema(value_type = Option<Object>)]
    pub details: Value,
}

impl ApiError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }

    pub fn field(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, code, message)])
    }

    fn parts(&self) -> (StatusCode, &'static str, String, Value) {
        match self {
            ApiError::Validation(fields) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_FAILED",
                "Some fields are invalid.".into(),
                json!({ "fields": fields.iter().map(|f| json!({
                    "field": f.field, "code": f.code, "message": f.message
                })).collect::<Vec<_>>() }),
            ),
            ApiError::BadRequest { code, message } => {
                (StatusCode::BAD_REQUEST, code, message.clone(), Value::Null)
            }
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "The body must be JSON (Content-Type: application/json).".into(),
                Value::Null,
            ),
            ApiError::Unauthorized { code, message } => (
                StatusCode::UNAUTHORIZED,
                code,
                (*message).into(),
                Value::Null,
            ),
            ApiError::Forbidden { code, message } => (
                StatusCode::FORBIDDEN,
                code,
                (*message).into(),
                Value::Null,
            ),
            ApiError::NotFound { what } => (
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("{what} not found."),
                Value::Null,
            ),
            ApiError::Conflict {
                code,
                message,
                details,
            } => (
                StatusCode::CONFLICT,
                code,
                message.clone(),
                details.clone().unwrap_or(Value::Null),
            ),
            ApiError::InvalidSignature => (
                StatusCode::FORBIDDEN,
                "INVALID_SIGNATURE",
                "The URL's signature is not valid.".into(),
                Value::Null,
            ),
            ApiError::UrlExpired => (
                StatusCode::FORBIDDEN,
                "URL_EXPIRED",
                "The URL has expired; request a new one.".into(),
                Value::Null,
            ),
            ApiError::ContentTypeMismatch { expected } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "CONTENT_TYPE_MISMATCH",
                "The Content-Type is not the one this URL was issued for.".into(),
                json!({ "expected": expected }),
            ),
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "TOO_LARGE",
                "The body is larger than the size this URL was issued for.".into(),
                json!({ "limit": limit }),
            ),
            ApiError::SizeMismatch { expected, received } => (
                StatusCode::BAD_REQUEST,
                "SIZE_MISMATCH",
                "The body is shorter than the size this URL was issued for.".into(),
                json!({ "expected": expected, "received": received }),
            ),
            ApiError::ConsistencyTimeout {
                position,
                waited_ms,
            } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "CONSISTENCY_TIMEOUT",
                "The read models have not caught up with the requested position yet; retry shortly."
                    .into(),
                json!({ "min_position": position, "waited_ms": waited_ms }),
            ),
            ApiError::RequestTimeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                "REQUEST_TIMEOUT",
                "The request took too long to answer; retry shortly.".into(),
                Value::Null,
            ),
            ApiError::Unavailable(what) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                format!("{what} is unavailable; retry shortly."),
                Value::Null,
            ),
            ApiError::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was already used for a different request (method, path or body)."
                    .into(),
                Value::Null,
            ),
            ApiError::IdempotencyInProgress => (
                StatusCode::CONFLICT,
                "IDEMPOTENCY_IN_PROGRESS",
                "A request with this Idempotency-Key is still being processed; retry shortly."
                    .into(),
                Value::Null,
            ),
            ApiError::InsufficientCredits { needed, balance } => (
                StatusCode::PAYMENT_REQUIRED,
                "INSUFFICIENT_CREDITS",
                format!("This job costs {needed} credits; you have {balance}."),
                json!({ "needed": needed, "balance": balance }),
            ),
            ApiError::PaymentDeclined => (
                StatusCode::PAYMENT_REQUIRED,
                "PAYMENT_DECLINED",
                "The payment was declined.".into(),
                Value::Null,
            ),
            ApiError::JobFinished { status } => (
                StatusCode::CONFLICT,
                "JOB_FINISHED",
                format!("The job is already {status}."),
                json!({ "status": status }),
            ),
            ApiError::TooManyRequests {
                code,
                message,
                retry_after,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                code,
                (*message).into(),
                json!({ "retry_after": retry_after }),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "Something went wrong on our side.".into(),
                Value::Null,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = ?e, "internal error");
        }
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let (status, code, message, details) = self.parts();
        let mut resp = (
            status,
            Json(json!({ "error": { "code": code, "message": message, "details": details } })),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable("The database")
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<lokiz_projections::consistency::ConsistencyError> for ApiError {
    fn from(e: lokiz_projections::consistency::ConsistencyError) -> Self {
        use lokiz_projections::consistency::ConsistencyError as C;
        match e {
            C::Timeout { position, waited } => ApiError::ConsistencyTimeout {
                position,
                waited_ms: waited.as_millis(),
            },
            // answered at once: waiting for a position no command has issued
            // would hold a connection for the whole timeout. 409, not 400:
            // the header is well formed (any non-negative integer is, and
            // the document cannot know this store's head); it conflicts
            // with what this store holds (another deployment's, a reset's)
            C::NeverIssued { position } => ApiError::Conflict {
                code: "POSITION_NOT_ISSUED",
                message: "X-Lokiz-Min-Position is beyond every position this server has issued; \
                          send the X-Lokiz-Position a command answered with."
                    .into(),
                details: Some(json!({ "min_position": position })),
            },
            C::Db(e) => e.into(),
        }
    }
}

/// Maps a command failure. Domain errors are mapped by each route through
/// `domain`; infrastructure failures become 503/500 here.
pub fn command_error<E: std::error::Error + Send + Sync + 'static>(
    e: cqrs_es::AggregateError<E>,
    domain: impl FnOnce(E) -> ApiError,
) -> ApiError {
    use cqrs_es::AggregateError as A;
    match e {
        A::UserError(e) => domain(e),
        A::AggregateConflict => ApiError::Conflict {
            code: "CONCURRENT_MODIFICATION",
            message: "The resource was changed by another request; retry.".into(),
            details: None,
        },
        A::DatabaseConnectionError(e) => {
            tracing::warn!(error = %e, "event store unavailable");
            ApiError::Unavailable("The event store")
        }
        A::DeserializationError(e) | A::UnexpectedError(e) => {
            ApiError::Internal(anyhow::anyhow!(e.to_string()))
        }
    }
}
