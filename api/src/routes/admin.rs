//! `/v1/admin`: operator views, admin role only.
//!
//! The audit endpoint is the one HTTP read that goes to the event store
//! instead of a read model: an aggregate's history *is* the events
//! (ARCHITECTURE.md, "Reads").

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::values::FieldError;
use lokiz_infra::StoredEvent;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::AdminUser;
use crate::pagination::Params;
use crate::tools::{history, HistoryError};
use crate::ApiContext;

/// Longest aggregate id accepted (ids are UUIDs or pairs of them).
const MAX_ID_LEN: usize = 200;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/admin/audit/{aggregate_type}/{aggregate_id}", get(audit))
}

/// One stored event, exactly as written (its original version; readers
/// upcast older versions, the store never rewrites them).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    pub sequence: i64,
    /// Global position in the event store.
    pub position: i64,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    pub payload: Value,
    pub metadata: Value,
}

impl From<StoredEvent> for AuditEvent {
    fn from(e: StoredEvent) -> Self {
        let (payload, metadata) = (
            e.payload_value().unwrap_or_default(),
            e.metadata_value().unwrap_or_default(),
        );
        Self {
            sequence: e.sequence,
            position: e.position,
            event_type: e.event_type,
            event_version: e.event_version,
            recorded_at: e.recorded_at,
            payload,
            metadata,
        }
    }
}

/// An aggregate's history and the state it folds to.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The `as_of` asked for, if any: only events recorded at or before it.
    pub as_of: Option<DateTime<Utc>>,
    /// Sequence of the last event included (0 when none).
    pub version: i64,
    /// The aggregate's state after those events, by its own `apply`.
    pub state: Value,
    pub events: Vec<AuditEvent>,
}

#[utoipa::path(get, path = "/v1/admin/audit/{aggregate_type}/{aggregate_id}", tag = "admin",
    params(crate::extract::MinPosition, ("aggregate_type" = String, Path, description = "User, Wallet, Video, VideoView, Like, Follow, Comment, AiJob, Payment, Bookmark, Report, Block, NotificationInbox, Share or Subscription"),
           ("aggregate_id" = String, Path, description = "The aggregate's id as stored (a UUID; Like/Follow/VideoView ids are pairs)"),
           ("as_of" = Option<DateTime<Utc>>, Query, description = "RFC 3339: the history and state as of this time")),
    security(("bearer" = [])),
    responses((status = 200, body = AuditView),
              (status = 401, body = crate::error::ErrorEnvelope),
              (status = 403, description = "Not an admin", body = crate::error::ErrorEnvelope),
              (status = 404, description = "No events for this aggregate (as of that time)", body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn audit(
    State(ctx): State<ApiContext>,
    _admin: AdminUser,
    Path((aggregate_type, aggregate_id)): Path<(String, String)>,
    params: Params,
) -> Result<Json<AuditView>, ApiError> {
    let mut errors = Vec::new();
    if !lokiz_domain::AGGREGATE_TYPES.contains(&aggregate_type.as_str()) {
        errors.push(FieldError::new(
            "aggregate_type",
            "unknown",
            format!(
                "must be one of {}",
                lokiz_domain::AGGREGATE_TYPES.join(", ")
            ),
        ));
    }
    if aggregate_id.len() > MAX_ID_LEN || aggregate_id.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "aggregate_id",
            "format",
            "must be an aggregate id (at most 200 printable characters)",
        ));
    }
    let as_of = match params.get("as_of") {
        None => None,
        Some(raw) => match DateTime::parse_from_rfc3339(raw) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                errors.push(FieldError::new(
                    "as_of",
                    "format",
                    "must be an RFC 3339 time, e.g. 2026-11-23T12:00:00Z",
                ));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let h = history(&ctx.pool, &aggregate_type, &aggregate_id, as_of)
        .await
        .map_err(|e| match e {
            HistoryError::Db(e) => ApiError::from(e),
            // types were checked above; a stored event that no longer decodes
            // is a server fault, logged, not shown
            other => ApiError::Internal(other.into()),
        })?;
    if h.events.is_empty() {
        return Err(ApiError::NotFound { what: "Aggregate" });
    }
    Ok(Json(AuditView {
        version: h.events.last().map_or(0, |e| e.sequence),
        aggregate_type: h.aggregate_type,
        aggregate_id: h.aggregate_id,
        as_of: h.as_of,
        state: h.state,
        events: h.events.into_iter().map(AuditEvent::from).collect(),
    }))
}
