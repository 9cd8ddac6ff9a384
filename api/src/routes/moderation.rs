//! `/v1/admin` moderation, admin role only: stats, users, videos, reports,
//! ban/unban and video removal.
//!
//! Every action is a command carrying the admin's id and a reason (so the
//! audit endpoint shows who did what and why), and answers once the read
//! models have it: a banned user's next request is refused, a removed video
//! is gone from every list.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, patch};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::user::{UserCommand, UserError};
use lokiz_domain::values::ModerationReason;
use lokiz_domain::video::{VideoCommand, VideoError};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AdminUser, Fields, JsonObject};
use crate::pagination::{check, encode_cursor, page, Params};
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/admin/stats", get(stats))
        .route("/admin/users", get(users))
        .route("/admin/videos", get(videos))
        .route("/admin/reports", get(reports))
        .route("/admin/users/{id}/ban", patch(ban))
        .route("/admin/videos/{id}/remove", patch(remove_video))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct AdminStats {
    pub total_users: i64,
    pub banned_users: i64,
    /// Completed, undeleted videos.
    pub total_videos: i64,
    /// Users who issued any command today (UTC).
    pub daily_active_users: i64,
    /// Credits spent or held by AI jobs, over all wallets.
    pub credits_used: i64,
    /// Completed AI jobs over finished ones (completed or failed), 0–1;
    /// null before any job finished.
    pub ai_job_success_rate: Option<f64>,
    pub open_reports: i64,
}

#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    responses((status = 200, body = AdminStats), (status = 403, description = "Not an admin", body = crate::error::ErrorEnvelope)))]
pub async fn stats(
    State(ctx): State<ApiContext>,
    admin: AdminUser,
) -> Result<Json<AdminStats>, ApiError> {
    // `users`: `AdminUser` has waited for it
    ctx.wait_for(
        admin.min,
        &["videos", "activity", "wallets", "ai_jobs", "reports"],
    )
    .await?;
    let stats: AdminStats = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users) AS total_users,
                (SELECT count(*) FROM users WHERE banned) AS banned_users,
                (SELECT count(*) FROM videos WHERE status = 'completed') AS total_videos,
                (SELECT count(*) FROM user_activity
                  WHERE day = (now() AT TIME ZONE 'UTC')::date) AS daily_active_users,
                (SELECT coalesce(sum(granted - balance), 0)::bigint FROM wallets) AS credits_used,
                (SELECT (count(*) FILTER (WHERE status = 'completed'))::float8
                        / nullif(count(*) FILTER (WHERE status IN ('completed', 'failed')), 0)
                   FROM ai_jobs) AS ai_job_success_rate,
                (SELECT count(*) FROM reports WHERE status = 'open') AS open_reports",
    )
    .fetch_one(&ctx.pool)
    .await?;
    Ok(Json(stats))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct AdminUserView {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub display_name: String,
    /// `member` or `admin`.
    pub role: String,
    pub banned: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminUserPage {
    pub users: Vec<AdminUserView>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])),
    params(("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)"),
           ("banned" = Option<bool>, Query, description = "Only banned (true) or only not banned (false) users")),
    responses((status = 200, body = AdminUserPage, description = "Newest first"),
              (status = 403, description = "Not an admin", body = crate::error::ErrorEnvelope)))]
pub async fn users(
    State(ctx): State<ApiContext>,
    _admin: AdminUser,
    params: Params,
) -> Result<Json<AdminUserPage>, ApiError> {
    let mut errors = Vec::new();
    let after: Option<(DateTime<Utc>, Uuid)> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    let banned = flag(&params, "banned", &mut errors);
    check(errors)?;
    let rows: Vec<AdminUserView> = sqlx::query_as(
        "SELECT id, username, email, display_name, role, banned, created_at FROM users
          WHERE ($1::bool IS NULL OR banned = $1)
            AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
          ORDER BY created_at DESC, id DESC LIMIT $4",
    )
    .bind(banned)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit + 1)
    .fetch_all(&ctx.pool)
    .await?;
    let (users, has_more) = page(rows, limit);
    let next_cursor = match users.last() {
        Some(u) if has_more => Some(encode_cursor(&(u.created_at, u.id))),
        _ => None,
    };
    Ok(Json(AdminUserPage {
        users,
        next_cursor,
        has_more,
    }))
}

/// An optional `true`/`false` query parameter.
fn flag(
    params: &Params,
    name: &'static str,
    errors: &mut Vec<lokiz_domain::values::FieldError>,
) -> Option<bool> {
    match params.get(name) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            errors.push(lokiz_domain::values::FieldError::new(
                name,
                "format",
                "must be true or false",
            ));
            None
        }
    }
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct AdminVideoView {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub username: String,
    pub caption: Option<String>,
    /// `processing`, `completed` or `deleted` (by its owner or removed).
    pub status: String,
    pub visibility: String,
    /// When an admin removed it.
    pub removed_at: Option<DateTime<Utc>>,
    pub owner_banned: bool,
    pub open_reports: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminVideoPage {
    pub videos: Vec<AdminVideoView>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[utoipa::path(get, path = "/v1/admin/videos", tag = "admin", security(("bearer" = [])),
    params(crate::extract::MinPosition,
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)"),
           ("reported" = Option<bool>, Query, description = "Only videos with open reports (true)")),
    responses((status = 200, body = AdminVideoPage, description = "Every video, removed and private ones included, newest first"),
              (status = 403, description = "Not an admin", body = crate::error::ErrorEnvelope)))]
pub async fn videos(
    State(ctx): State<ApiContext>,
    admin: AdminUser,
    params: Params,
) -> Result<Json<AdminVideoPage>, ApiError> {
    let mut errors = Vec::new();
    let after: Option<(DateTime<Utc>, Uuid)> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    let reported = flag(&params, "reported", &mut errors);
    check(errors)?;
    // `users`: `AdminUser` has waited for it
    ctx.wait_for(admin.min, &["videos", "reports"]).await?;
    let rows: Vec<AdminVideoView> = sqlx::query_as(
        "SELECT v.id, v.owner_id, u.username, v.caption, v.status, v.visibility, v.removed_at,
                u.banned AS owner_banned, coalesce(r.n, 0) AS open_reports, v.created_at
           FROM videos v JOIN users u ON u.id = v.owner_id
           LEFT JOIN LATERAL (SELECT count(*) AS n FROM reports
                               WHERE video_id = v.id AND status = 'open') r ON true
          WHERE ($1::bool IS NULL OR (coalesce(r.n, 0) > 0) = $1)
            AND ($2::timestamptz IS NULL OR (v.created_at, v.id) < ($2, $3))
          ORDER BY v.created_at DESC, v.id DESC LIMIT $4",
    )
    .bind(reported)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit + 1)
    .fetch_all(&ctx.pool)
    .await?;
    let (videos, has_more) = page(rows, limit);
    let next_cursor = match videos.last() {
        Some(v) if has_more => Some(encode_cursor(&(v.created_at, v.id))),
        _ => None,
    };
    Ok(Json(AdminVideoPage {
        videos,
        next_cursor,
        has_more,
    }))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct AdminReportView {
    pub id: Uuid,
    pub video_id: Uuid,
    pub reporter_id: Uuid,
    pub reason: String,
    pub note: Option<String>,
    /// `open` or `resolved`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The admin whose action resolved it.
    pub resolved_by: Option<Uuid>,
    /// Open reports of the same video.
    pub video_open_reports: i64,
}

#[derive(Serialize, ToSchema)]
pub struct AdminReportPage {
    pub reports: Vec<AdminReportView>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[utoipa::path(get, path = "/v1/admin/reports", tag = "admin", security(("bearer" = [])),
    params(crate::extract::MinPosition,
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = AdminReportPage, description = "Open reports first, then resolved ones; newest first within each"),
              (status = 403, description = "Not an admin", body = crate::error::ErrorEnvelope)))]
pub async fn reports(
    State(ctx): State<ApiContext>,
    admin: AdminUser,
    params: Params,
) -> Result<Json<AdminReportPage>, ApiError> {
    let mut errors = Vec::new();
    // (resolved?, created_at, id): open (false) sorts first
    let after: Option<(bool, DateTime<Utc>, Uuid)> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(admin.min, &["reports"]).await?;
    let rows: Vec<AdminReportView> = sqlx::query_as(
        "SELECT r.id, r.video_id, r.reporter_id, r.reason, r.note, r.status, r.created_at,
                r.resolved_at, r.resolved_by,
                (SELECT count(*) FROM reports o
                  WHERE o.video_id = r.video_id AND o.status = 'open') AS video_open_reports
           FROM reports r
          WHERE $1::bool IS NULL
             OR (r.status <> 'open') > $1
             OR ((r.status <> 'open') = $1 AND (r.created_at, r.id) < ($2, $3))
          ORDER BY r.status <> 'open', r.created_at DESC, r.id DESC LIMIT $4",
    )
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(after.map(|a| a.2))
    .bind(limit + 1)
    .fetch_all(&ctx.pool)
    .await?;
    let (reports, has_more) = page(rows, limit);
    let next_cursor = match reports.last() {
        Some(r) if has_more => Some(encode_cursor(&(r.status != "open", r.created_at, r.id))),
        _ => None,
    };
    Ok(Json(AdminReportPage {
        reports,
        next_cursor,
        has_more,
    }))
}

/// Body of `PATCH /v1/admin/users/{id}/ban`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BanRequest {
    /// Why (1–500 characters; kept in the event, shown in the audit).
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    reason: String,
    /// False lifts a ban. Default true.
    #[schema(nullable = false)]
    banned: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct BanState {
    pub user_id: Uuid,
    pub banned: bool,
    /// False when the request changed nothing.
    pub changed: bool,
    pub position: Option<i64>,
}

fn reason(f: &mut Fields) -> Option<ModerationReason> {
    let raw = f.required_str("reason");
    f.parse("reason", raw, ModerationReason::parse)
}

fn actor(admin: &AdminUser) -> HashMap<String, String> {
    HashMap::from([("actor".to_owned(), admin.user_id.to_string())])
}

#[utoipa::path(patch, path = "/v1/admin/users/{id}/ban", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = BanRequest,
    responses((status = 200, body = BanState, description = "Banned (or unbanned); the user's tokens are refused from now on, their videos leave every list"),
              (status = 403, description = "Not an admin", body = crate::error::ErrorEnvelope),
              (status = 404, body = crate::error::ErrorEnvelope),
              (status = 409, description = "`CANNOT_BAN_ADMIN`", body = crate::error::ErrorEnvelope)))]
pub async fn ban(
    State(ctx): State<ApiContext>,
    admin: AdminUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let user_id = path_uuid(&id, "User")?;
    let mut f = Fields::new(&body);
    let reason = reason(&mut f);
    let banned = f.optional_bool("banned");
    f.finish()?;
    let (Some(reason), banned) = (reason, banned.unwrap_or(true)) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated field missing"
        )));
    };
    let (admin_id, at) = (admin.user_id, crate::now());
    let command = if banned {
        UserCommand::BanUser {
            admin_id,
            reason,
            at,
        }
    } else {
        UserCommand::UnbanUser {
            admin_id,
            reason,
            at,
        }
    };
    let written = ctx
        .store
        .users
        .execute(&user_id.to_string(), command, actor(&admin))
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                UserError::NotRegistered => ApiError::NotFound { what: "User" },
                UserError::CannotBanAdmin => ApiError::Conflict {
                    code: "CANNOT_BAN_ADMIN",
                    message: "An admin cannot be banned.".into(),
                    details: None,
                },
                UserError::AlreadyRegistered => ApiError::internal(anyhow::anyhow!("{e}")),
            })
        })?;
    // the ban holds for the user's very next request, in every API process:
    // once the read model has it, and once no process trusts an older "not
    // banned" any more (`extract::NOT_BANNED_FOR`)
    ctx.wait_for(written.position, &["users"]).await?;
    if banned {
        tokio::time::sleep(crate::extract::NOT_BANNED_FOR).await;
    }
    Ok(with_position(
        written.position,
        Json(BanState {
            user_id,
            banned,
            changed: written.appended,
            position: written.position,
        }),
    ))
}

/// Body of `PATCH /v1/admin/videos/{id}/remove`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RemoveRequest {
    /// Why (1–500 characters; kept in the event, shown in the audit).
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct Removed {
    pub video_id: Uuid,
    /// False when it was removed before.
    pub changed: bool,
    pub position: Option<i64>,
}

#[utoipa::path(patch, path = "/v1/admin/videos/{id}/remove", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = RemoveRequest,
    responses((status = 200, body = Removed, description = "Removed: gone from every list, its open reports resolved"),
              (status = 403, description = "Not an admin", body = crate::error::ErrorEnvelope),
              (status = 404, description = "No such video, or deleted by its owner", body = crate::error::ErrorEnvelope)))]
pub async fn remove_video(
    State(ctx): State<ApiContext>,
    admin: AdminUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut f = Fields::new(&body);
    let reason = reason(&mut f);
    f.finish()?;
    let Some(reason) = reason else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated field missing"
        )));
    };
    let command = VideoCommand::RemoveVideo {
        admin_id: admin.user_id,
        reason,
        at: crate::now(),
    };
    let written = ctx
        .store
        .videos
        .execute(&video_id.to_string(), command, actor(&admin))
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                VideoError::NotFound => ApiError::NotFound { what: "Video" },
                other => ApiError::internal(anyhow::anyhow!("{other}")),
            })
        })?;
    ctx.wait_for(written.position, &["videos", "reports"])
        .await?;
    Ok(with_position(
        written.position,
        Json(Removed {
            video_id,
            changed: written.appended,
            position: written.position,
        }),
    ))
}
