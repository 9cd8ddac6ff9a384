//! Operations: liveness, readiness, Prometheus metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::ApiContext;

/// Readiness fails when the relay or a projection is this far behind.
const MAX_READY_LAG_SECS: f64 = 30.0;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
}

/// What the public listener keeps when `LOKIZ_OPS_BIND` moves `/ready`
/// and `/metrics` to a listener of their own: liveness only.
pub fn health_router() -> Router<ApiContext> {
    Router::new().route("/health", get(health))
}

#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, description = "The process is up")))]
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, description = "Postgres and NATS reachable, relay and projections current"),
              (status = 503, description = "NOT_READY, with every check in details")))]
pub async fn ready(State(ctx): State<ApiContext>) -> Response {
    let timeout = Duration::from_secs(2);
    let postgres = matches!(
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&ctx.pool)).await,
        Ok(Ok(_))
    );
    let nats_connected = ctx.nats.connection_state() == async_nats::connection::State::Connected;
    let stream = matches!(
        tokio::time::timeout(timeout, ctx.js.get_stream(&ctx.config.stream)).await,
        Ok(Ok(_))
    );
    let mut checks = json!({
        "postgres": postgres,
        "nats": nats_connected && stream,
    });
    let mut ok = postgres && nats_connected && stream;
    if postgres {
        match lokiz_infra::relay::lag(&ctx.pool, &ctx.config.stream).await {
            Ok((events, seconds)) => {
                checks["relay"] = json!({ "lag_events": events, "lag_seconds": seconds });
                ok &= seconds < MAX_READY_LAG_SECS;
            }
            Err(_) => ok = false,
        }
        // a transaction that holds the relay back names itself here
        if let Ok(Some(holder)) =
            lokiz_infra::db::horizon_holder(&ctx.pool, ctx.config.horizon_report_after).await
        {
            checks["relay"]["held_back_by"] = json!(holder);
        }
        match lokiz_projections::status::status(&ctx.pool, &ctx.projectors).await {
            Ok(list) => {
                for s in &list {
                    ok &= s.lag_seconds < MAX_READY_LAG_SECS;
                }
                checks["projections"] = json!(list);
            }
            Err(_) => ok = false,
        }
    }
    if ok {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "checks": checks })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(json!({ "error": {
                "code": "NOT_READY",
                "message": "A dependency is down or the read models are behind.",
                "details": checks,
            }})),
        )
            .into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics_text(State(ctx): State<ApiContext>) -> Response {
    // Lag is measured at scrape time from the store, so any API process
    // reports it, whichever process runs the relay and projections.
    if let Ok((events, seconds)) = lokiz_infra::relay::lag(&ctx.pool, &ctx.config.stream).await {
        metrics::gauge!("lokiz_relay_lag_events").set(events as f64);
        metrics::gauge!("lokiz_relay_lag_seconds").set(seconds);
    }
    if let Ok(list) = lokiz_projections::status::status(&ctx.pool, &ctx.projectors).await {
        for s in list {
            metrics::gauge!("lokiz_projection_lag_events", "projection" => s.name.clone())
                .set(s.lag_events as f64);
            metrics::gauge!("lokiz_projection_lag_seconds_current", "projection" => s.name.clone())
                .set(s.lag_seconds);
            metrics::gauge!("lokiz_projection_parked", "projection" => s.name.clone())
                .set(s.parked as f64);
        }
    }
    let body = match crate::telemetry::prometheus() {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
