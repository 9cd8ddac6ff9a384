//! `POST /v1/videos/{id}/report`: a user reports a video they can see, with
//! one of the seed's reasons and an optional note. One open report per user
//! and video; a second is 409 `REPORT_ALREADY_OPEN`.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::report::{Report, ReportCommand, ReportError, ReportReason};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MinPosition};
use crate::reads::reportable_video;
use crate::routes::with_position;
use crate::ApiContext;

/// Longest note, in characters.
pub const MAX_NOTE: usize = 500;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/videos/{id}/report", post(report))
}

/// Body of `POST /v1/videos/{id}/report`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReportRequest {
    /// inappropriate, spam, copyright, violence or other.
    #[schema(pattern = "^(inappropriate|spam|copyright|violence|other)$")]
    reason: String,
    /// What the moderators should know; at most 500 characters.
    #[schema(max_length = 500, pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F]*$")]
    note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Filed {
    pub report_id: Uuid,
    pub video_id: Uuid,
    pub reason: &'static str,
    pub note: Option<String>,
    /// `open` until a moderator resolves it.
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
    pub position: Option<i64>,
}

#[utoipa::path(post, path = "/v1/videos/{id}/report", tag = "videos", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    request_body(content = ReportRequest, description = "Reporting one's own video is refused (422, `video_id`)."),
    responses((status = 201, body = Filed),
              (status = 404, description = "No such video, or not one the caller can see", body = crate::error::ErrorEnvelope),
              (status = 409, description = "REPORT_ALREADY_OPEN: this user's earlier report of the video is still open (`details: {report_id}`)", body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn report(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut f = Fields::new(&body);
    let raw_reason = f.required_str("reason");
    let reason = raw_reason.and_then(ReportReason::parse);
    if raw_reason.is_some() && reason.is_none() {
        f.reject(
            "reason",
            "unknown",
            "must be one of inappropriate, spam, copyright, violence, other",
        );
    }
    let note = f.optional_str("note").map(str::to_owned);
    if let Some(n) = &note {
        if n.chars().count() > MAX_NOTE {
            f.reject("note", "too_long", format!("at most {MAX_NOTE} characters"));
        } else if n
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
        {
            f.reject("note", "invalid", "must not contain control characters");
        }
    }
    f.finish()?;
    let reason = reason.ok_or_else(|| ApiError::internal(anyhow::anyhow!("unparsed reason")))?;
    ctx.wait_for(min, &["videos"]).await?;
    let video = reportable_video(&ctx, video_id, user.user_id).await?;
    if video.owner_id == user.user_id {
        return Err(ApiError::field(
            "video_id",
            "own",
            "you cannot report your own video",
        ));
    }
    let report_id = Uuid::now_v7();
    let at = crate::now();
    let written = ctx
        .store
        .reports
        .execute(
            &Report::id(user.user_id, video_id),
            ReportCommand::FileReport {
                report_id,
                reporter_id: user.user_id,
                video_id,
                reason,
                note: note.clone(),
                at,
            },
            HashMap::from([("actor".to_owned(), user.user_id.to_string())]),
        )
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                ReportError::AlreadyOpen { report_id } => ApiError::Conflict {
                    code: "REPORT_ALREADY_OPEN",
                    message: "You already reported this video; your report is still open.".into(),
                    details: Some(serde_json::json!({ "report_id": report_id })),
                },
            })
        })?;
    Ok(with_position(
        written.position,
        (
            StatusCode::CREATED,
            Json(Filed {
                report_id,
                video_id,
                reason: reason.as_str(),
                note,
                status: "open",
                created_at: at,
                position: written.position,
            }),
        ),
    ))
}
