//! One router per module, merged here with the cross-cutting layers: request
//! ids, tracing, metrics, and envelope answers for unknown routes.

pub mod admin;
pub mod ai;
pub mod auth;
pub mod blobs;
pub mod blocks;
pub mod bookmarks;
pub mod comments;
pub mod credits;
pub mod drafts;
pub mod follows;
pub mod glitch;
pub mod hashtags;
pub mod images;
pub mod likes;
pub mod moderation;
pub mod notifications;
pub mod ops;
pub mod payments;
pub mod reports;
pub mod search;
pub mod shares;
pub mod studio;
pub mod subscriptions;
pub mod users;
pub mod video_stats;
pub mod videos;

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::extract::POSITION_HEADER;
use crate::idempotency::{idempotency, Idempotency};
use crate::ApiContext;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(ctx: ApiContext) -> Router {
    let v1 = Router::new()
        .merge(auth::router())
        .merge(admin::router())
        .merge(moderation::router())
        .merge(ai::router())
        .merge(credits::router())
        .merge(payments::router())
        .merge(glitch::router())
        .merge(studio::router())
        .merge(users::router())
        .merge(blobs::router())
        .merge(videos::router())
        .merge(video_stats::router())
        .merge(drafts::router())
        .merge(images::router())
        .merge(likes::router())
        .merge(bookmarks::router())
        .merge(reports::router())
        .merge(shares::router())
        .merge(subscriptions::router())
        .merge(follows::router())
        .merge(blocks::router())
        .merge(notifications::router())
        .merge(comments::router())
        .merge(search::router())
        .merge(hashtags::router());
    // after every merge into `v1`: a route layer covers the routes it is given
    let idempotent = middleware::from_fn_with_state(Idempotency::new(ctx.clone()), idempotency);
    let v1 = v1.route_layer(idempotent);
    Router::new()
        .nest("/v1", v1)
        .merge(if ctx.config.ops_bind.is_some() {
            ops::health_router()
        } else {
            ops::router()
        })
        .merge(crate::openapi::router())
        .merge(shares::landing_router())
        .fallback(|| async { ApiError::NotFound { what: "Route" } })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(serde_json::json!({"error": {
                    "code": "METHOD_NOT_ALLOWED",
                    "message": "This method is not allowed on this route.",
                    "details": null
                }})),
            )
        })
        .layer(middleware::from_fn_with_state(ctx.clone(), deadline))
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            crate::rate_limit::rate_limit,
        ))
        .layer(middleware::from_fn(track))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(ctx)
}

/// Every request under `/v1` gets `LOKIZ_REQUEST_TIMEOUT_MS` to produce its answer
/// (its headers; a body may stream on), except uploads, which stream in for
/// as long as the client sends. Past it: `503 REQUEST_TIMEOUT`. Commands are
/// atomic, so a cut request leaves nothing half-written; a reservation whose
/// job was never recorded is released by the reservation sweeper.
async fn deadline(State(ctx): State<ApiContext>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let upload = req.method() == axum::http::Method::PUT && path.starts_with("/v1/blobs/");
    if upload || !path.starts_with("/v1/") {
        return next.run(req).await;
    }
    match tokio::time::timeout(ctx.config.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            metrics::counter!("lokiz_http_request_timeouts_total").increment(1);
            ApiError::RequestTimeout.into_response()
        }
    }
}

/// The operations listener (`LOKIZ_OPS_BIND`): `/health`, `/ready`,
/// `/metrics`, nothing else.
pub fn ops_router(ctx: ApiContext) -> Router {
    Router::new()
        .merge(ops::router())
        .fallback(|| async { ApiError::NotFound { what: "Route" } })
        .with_state(ctx)
}

/// Request metrics by route template (never by raw path: ids would explode
/// the label space).
async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("lokiz_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("lokiz_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// Adds `X-Lokiz-Position` to a command's response.
pub fn with_position(position: Option<i64>, resp: impl IntoResponse) -> Response {
    let mut resp = resp.into_response();
    if let Some(p) = position {
        if let Ok(v) = HeaderValue::from_str(&p.to_string()) {
            resp.headers_mut().insert(POSITION_HEADER, v);
        }
    }
    resp
}
