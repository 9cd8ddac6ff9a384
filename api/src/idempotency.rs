//! `Idempotency-Key` on command POSTs under `/v1` (ARCHITECTURE.md,
//! "Idempotent commands").
//!
//! A signed-in POST carrying `Idempotency-Key: <1–255 visible ASCII chars>`
//! claims the key in `idempotency_keys` (per user) before its handler runs. The handler's answer (status,
//! `Content-Type`, `X-Lokiz-Position`, `Location`, body) is stored with the
//! key; a retry within 24 hours with the same method, path and body gets that
//! answer back with `Idempotent-Replayed: true`, and no handler runs, so no
//! event is recorded twice. The same key on another request is
//! `422 IDEMPOTENCY_KEY_REUSED`; while the first request still runs,
//! `409 IDEMPOTENCY_IN_PROGRESS` with `Retry-After: 1`.
//!
//! Not stored (the key is released, a retry runs again): 5xx answers;
//! answers about the request itself rather than the state it met (400, 401,
//! 403, 413, 415, 422, 429: a corrected retry under the same key runs);
//! answers larger than [`MAX_STORED_BODY`]; handler panics. Requests without
//! the header or without a valid token (anonymous keys would be one shared,
//! guessable namespace anybody could fill), and the routes of
//! [`is_excluded`], pass untouched.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Request, State};
use axum::http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{FutureExt as _, StreamExt as _};
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use sqlx::PgPool;
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::extract::POSITION_HEADER;
use crate::ApiContext;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// A keyed request's body is read (and hashed) up to this size: axum's
/// default body limit, so the handlers would refuse anything larger anyway.
pub const MAX_REQUEST_BODY: usize = 2 * 1024 * 1024;
/// Answers larger than this are passed on but not stored (command answers
/// are small; this bounds what one user can make the table hold per key).
pub const MAX_STORED_BODY: usize = 64 * 1024;

/// How long a key holds its answer.
const RETENTION: &str = "24 hours";
/// An `in_flight` claim this old is abandoned (its process died before
/// storing an answer) and may be taken over by a retry.
const IN_FLIGHT_LEASE: &str = "5 minutes";
/// At most one sweep of expired keys per process and interval.
const SWEEP_EVERY_SECS: i64 = 60;

/// POSTs under `/v1` that ignore `Idempotency-Key`:
/// - `/v1/auth/login`, `/v1/auth/refresh`, `/v1/auth/logout` exchange
///   credentials and record no event. Storing their answers would keep live
///   access and refresh tokens in a second table; a replayed refresh would
///   hand out a token pair again after the rotation it stands for, and a
///   replayed logout could report success for a family never revoked. A
///   retried login simply issues another pair. `/v1/auth/register` too: its
///   answer holds a live token pair, which must not sit in a table (refresh
///   tokens are only ever stored hashed); a retried sign-up is safe anyway —
///   the name is taken, so it answers 409 and records nothing.
/// - `/v1/blobs/...` takes uploads (PUT; large bodies) authorised by a signed
///   URL, not commands.
/// - `/v1/likes/check-batch`, `/v1/follows/check-batch`,
///   `/v1/videos/batch-metadata` are reads sent as POST: a retry is already
///   safe, and a replay would answer with stale data.
///
/// Every other POST under `/v1`, including routes added later, is covered.
pub fn is_excluded(path: &str) -> bool {
    matches!(
        path,
        "/v1/auth/register"
            | "/v1/auth/login"
            | "/v1/auth/refresh"
            | "/v1/auth/logout"
            | "/v1/likes/check-batch"
            | "/v1/follows/check-batch"
            | "/v1/videos/batch-metadata"
    ) || path.starts_with("/v1/blobs/")
}

/// State of the middleware: the API's context and the time of the last sweep.
#[derive(Clone)]
pub struct Idempotency {
    ctx: ApiContext,
    last_sweep: Arc<AtomicI64>,
}

impl Idempotency {
    pub fn new(ctx: ApiContext) -> Self {
        Self {
            ctx,
            last_sweep: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// Deletes expired keys in the background, at most once per
    /// [`SWEEP_EVERY_SECS`]. Expired rows are ignored by lookups anyway; this
    /// only keeps the table small.
    fn maybe_sweep(&self) {
        let now = Utc::now().timestamp();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY_SECS
            || self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let pool = self.ctx.pool.clone();
        tokio::spawn(async move {
            let swept = sqlx::query(&format!(
                "DELETE FROM idempotency_keys WHERE created_at < now() - interval '{RETENTION}'"
            ))
            .execute(&pool)
            .await;
            match swept {
                Ok(r) if r.rows_affected() > 0 => {
                    tracing::debug!(rows = r.rows_affected(), "swept expired idempotency keys")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "idempotency key sweep failed"),
            }
        });
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn idempotency(State(state): State<Idempotency>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key(IDEMPOTENCY_KEY) {
        return next.run(req).await;
    }
    // behind `nest("/v1", ..)` the URI has lost its prefix; `OriginalUri` has it
    let uri = req
        .extensions()
        .get::<OriginalUri>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| req.uri().clone());
    if is_excluded(uri.path()) {
        return next.run(req).await;
    }
    let key = match parse_key(req.headers()) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let Some(scope) = scope_of(&state.ctx, &req) else {
        // anonymous, or a bad token (the handler answers 401): not keyed
        return next.run(req).await;
    };
    state.maybe_sweep();
    let target = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| uri.path().to_owned());
    match keyed(&state.ctx.pool, scope, key, target, req, next).await {
        Ok(resp) => resp,
        Err(ApiError::IdempotencyInProgress) => in_progress(),
        Err(e) => e.into_response(),
    }
}

/// The key: exactly one header, 1–255 characters `!`..=`~`.
fn parse_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let invalid = |message: &str| ApiError::BadRequest {
        code: "INVALID_IDEMPOTENCY_KEY",
        message: message.to_owned(),
    };
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(invalid("Send one Idempotency-Key header."));
    };
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_KEY_LEN
        || !bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(invalid(
            "The Idempotency-Key must be 1 to 255 visible ASCII characters (no spaces).",
        ));
    }
    // all ASCII: the conversion cannot fail, but stay panic-free
    String::from_utf8(bytes.to_vec()).map_err(|_| invalid("The Idempotency-Key is not ASCII."))
}

/// Whose key it is: the access token's user; `None` without a valid token.
fn scope_of(ctx: &ApiContext, req: &Request) -> Option<String> {
    let verdict = req
        .extensions()
        .get::<crate::extract::Bearer>()
        .copied()
        .unwrap_or_else(|| crate::extract::bearer(ctx, req.headers()));
    match verdict {
        crate::extract::Bearer::User(user) => Some(user.to_string()),
        _ => None,
    }
}

#[derive(sqlx::FromRow)]
struct StoredKey {
    method: String,
    path: String,
    request_hash: Vec<u8>,
    state: String,
    response_status: Option<i16>,
    response_headers: Option<Json<Vec<(String, String)>>>,
    response_body: Option<Vec<u8>>,
    /// Past retention, or an abandoned claim: treated as absent.
    expired: bool,
}

/// A keyed request: claim the key and run the handler, or answer from the
/// stored row.
async fn keyed(
    pool: &PgPool,
    scope: String,
    key: String,
    target: String,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_REQUEST_BODY)
        .await
        .map_err(|_| ApiError::BadRequest {
            code: "INVALID_BODY",
            message: "The request body could not be read.".into(),
        })?;
    let hash = Sha256::digest(&body).to_vec();
    let method = parts.method.as_str().to_owned();
    let mut req = Some(Request::from_parts(parts, Body::from(body)));

    // A claim can vanish between the INSERT and the SELECT (its request
    // failed, or it was swept): try again a few times.
    for _ in 0..3 {
        let claimed: Option<DateTime<Utc>> = sqlx::query_scalar(&format!(
            "INSERT INTO idempotency_keys (scope, key, method, path, request_hash)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (scope, key) DO UPDATE
                SET method = EXCLUDED.method, path = EXCLUDED.path,
                    request_hash = EXCLUDED.request_hash, state = 'in_flight',
                    response_status = NULL, response_headers = NULL,
                    response_body = NULL, created_at = now()
              WHERE idempotency_keys.created_at < now() - interval '{RETENTION}'
                 OR (idempotency_keys.state = 'in_flight'
                     AND idempotency_keys.created_at < now() - interval '{IN_FLIGHT_LEASE}')
             RETURNING created_at"
        ))
        .bind(&scope)
        .bind(&key)
        .bind(&method)
        .bind(&target)
        .bind(&hash)
        .fetch_optional(pool)
        .await?;
        if let Some(claim) = claimed {
            let Some(req) = req.take() else {
                return Err(ApiError::internal(anyhow::anyhow!("request already used")));
            };
            let claim = Claim {
                pool: pool.clone(),
                scope,
                key,
                created_at: claim,
            };
            return Ok(run_and_store(claim, req, next).await);
        }
        let row: Option<StoredKey> = sqlx::query_as(&format!(
            "SELECT method, path, request_hash, state, response_status, response_headers,
                    response_body,
                    created_at < now() - interval '{RETENTION}'
                    OR (state = 'in_flight' AND created_at < now() - interval '{IN_FLIGHT_LEASE}')
                    AS expired
               FROM idempotency_keys WHERE scope = $1 AND key = $2"
        ))
        .bind(&scope)
        .bind(&key)
        .fetch_optional(pool)
        .await?;
        let Some(row) = row.filter(|r| !r.expired) else {
            continue;
        };
        if row.method != method || row.path != target || row.request_hash != hash {
            return Err(ApiError::IdempotencyKeyReused);
        }
        return match (row.state.as_str(), row.response_status) {
            ("done", Some(status)) => replay(
                status,
                row.response_headers.map(|h| h.0).unwrap_or_default(),
                row.response_body.unwrap_or_default(),
            ),
            _ => Err(ApiError::IdempotencyInProgress),
        };
    }
    Err(ApiError::IdempotencyInProgress)
}

fn in_progress() -> Response {
    let mut resp = ApiError::IdempotencyInProgress.into_response();
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// The stored answer, as first sent, marked as a replay.
fn replay(
    status: i16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<Response, ApiError> {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "stored idempotent status {status} is invalid"
            ))
        })?;
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp.headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(resp)
}

/// A key this request holds `in_flight`. `created_at` fences it: a claim
/// taken over after [`IN_FLIGHT_LEASE`] is no longer ours to store or release.
struct Claim {
    pool: PgPool,
    scope: String,
    key: String,
    created_at: DateTime<Utc>,
}

impl Claim {
    /// Stores the answer and marks the key `done`.
    async fn store(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> sqlx::Result<()> {
        let kept: Vec<(String, String)> = [
            CONTENT_TYPE,
            HeaderName::from_static(POSITION_HEADER),
            LOCATION,
        ]
        .iter()
        .flat_map(|name| {
            headers.get_all(name).iter().filter_map(move |v| {
                v.to_str()
                    .ok()
                    .map(|v| (name.as_str().to_owned(), v.to_owned()))
            })
        })
        .collect();
        sqlx::query(
            "UPDATE idempotency_keys
                SET state = 'done', response_status = $4, response_headers = $5,
                    response_body = $6
              WHERE scope = $1 AND key = $2 AND created_at = $3 AND state = 'in_flight'",
        )
        .bind(&self.scope)
        .bind(&self.key)
        .bind(self.created_at)
        .bind(status.as_u16() as i16)
        .bind(Json(kept))
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives the key up: the next request with it runs the handler again.
    async fn release(&self) {
        let released = sqlx::query(
            "DELETE FROM idempotency_keys
              WHERE scope = $1 AND key = $2 AND created_at = $3 AND state = 'in_flight'",
        )
        .bind(&self.scope)
        .bind(&self.key)
        .bind(self.created_at)
        .execute(&self.pool)
        .await;
        if let Err(e) = released {
            // it stays in_flight until IN_FLIGHT_LEASE passes
            tracing::warn!(error = %e, "cannot release idempotency key");
        }
    }
}

/// Runs the handler and records its answer. The work is a task of its own:
/// a client that hangs up mid-request does not cancel it, so the command and
/// its stored answer are never separated by a disconnect (the retry then
/// gets the replay).
async fn run_and_store(claim: Claim, req: Request, next: Next) -> Response {
    let work = async move {
        let resp = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
            Ok(resp) => resp,
            Err(_) => {
                claim.release().await;
                return ApiError::internal(anyhow::anyhow!("handler panicked")).into_response();
            }
        };
        if resp.status().is_server_error() || about_the_request(resp.status()) {
            claim.release().await;
            return resp;
        }
        let (parts, body) = resp.into_parts();
        match buffer(body, MAX_STORED_BODY).await {
            Ok(bytes) => {
                if let Err(e) = claim.store(parts.status, &parts.headers, &bytes).await {
                    tracing::warn!(error = %e, "cannot store idempotent response");
                    claim.release().await;
                }
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(body) => {
                // too large (or broken): pass it on, keep nothing
                claim.release().await;
                Response::from_parts(parts, body)
            }
        }
    };
    match tokio::spawn(work.in_current_span()).await {
        Ok(resp) => resp,
        Err(e) => {
            ApiError::internal(anyhow::anyhow!("idempotent request task: {e}")).into_response()
        }
    }
}

/// Refusals of the request itself (its form, its caller's standing or
/// rate), not decisions on the state it met: not remembered.
fn about_the_request(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::TOO_MANY_REQUESTS
    )
}

/// The whole body if it is at most `limit` bytes; otherwise a body that
/// yields exactly what the original would have (read chunks, then the rest).
async fn buffer(body: Body, limit: usize) -> Result<Bytes, Body> {
    let mut stream = body.into_data_stream();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                len = len.saturating_add(chunk.len());
                chunks.push(chunk);
                if len > limit {
                    let head = futures::stream::iter(chunks.into_iter().map(Ok));
                    return Err(Body::from_stream(head.chain(stream)));
                }
            }
            Err(e) => {
                let head = futures::stream::iter(chunks.into_iter().map(Ok).chain([Err(e)]));
                return Err(Body::from_stream(head.chain(stream)));
            }
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut all = Vec::with_capacity(len);
            for c in &chunks {
                all.extend_from_slice(c);
            }
            Bytes::from(all)
        }
    })
}
