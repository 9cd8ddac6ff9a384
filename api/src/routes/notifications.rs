//! `/v1/notifications`: the signed-in user's notifications (the
//! `notifications` read model), their read marks and settings (commands on
//! their NotificationInbox), and the live socket (`live.rs` does the
//! delivery).
//!
//! Read marks and settings answer once the read model has them, so the
//! seed's flow — list, batch-mark-read, unread-count — reads its own writes
//! without sending `X-Lokiz-Min-Position`.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::notification_inbox::{
    NotificationInbox, NotificationInboxCommand, NotificationInboxError, NotificationKind,
    NotificationSettings, MARK_READ_MAX,
};
use lokiz_domain::values::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MinPosition};
use crate::pagination::{check, encode_cursor, page, Params};
use crate::reads::{unblocked, VideoUser};
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/notifications/", get(list))
        .route("/notifications/unread-count", get(unread_count))
        .route("/notifications/read-all", post(read_all))
        .route("/notifications/batch-mark-read", post(batch_mark_read))
        .route(
            "/notifications/settings",
            get(settings).patch(change_settings),
        )
        .route("/notifications/{id}/read", post(read_one))
        .route("/notifications/ws", get(crate::live::socket))
}

/// The projection the answers here read.
const READS: &[&str] = &["notifications", "users", "blocks"];

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    /// `like`, `comment`, `reply`, `follow`, `glitch` or `ai_job`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who did it (the latest of them for coalesced likes); null for AI jobs.
    pub actor: Option<VideoUser>,
    /// How many people did it (likes of one video gather while unread).
    pub actor_count: i32,
    /// `actor_count - 1`: "A and 12 others liked your video".
    pub other_count: i32,
    /// The recipient's video it is about (an AI job's source).
    pub video_id: Option<Uuid>,
    pub comment_id: Option<Uuid>,
    /// The glitch made of the video, or the AI job's output video.
    pub glitch_video_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    /// For AI jobs: `completed` or `failed`.
    pub job_status: Option<String>,
    /// A sentence to show as is.
    pub message: String,
    pub is_read: bool,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The last change (a new like joining a coalesced one).
    pub updated_at: DateTime<Utc>,
    /// Where this notification stands in the list: the live socket's
    /// `since` resumes after it.
    pub cursor: String,
}

#[derive(sqlx::FromRow)]
pub(crate) struct NotificationRow {
    id: Uuid,
    kind: String,
    actor_id: Option<Uuid>,
    username: Option<String>,
    display_name: Option<String>,
    profile_image_url: Option<String>,
    actor_count: i32,
    video_id: Option<Uuid>,
    comment_id: Option<Uuid>,
    glitch_video_id: Option<Uuid>,
    job_id: Option<Uuid>,
    job_status: Option<String>,
    read_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    seq_xid: i64,
    seq_pos: i64,
}

/// A place in a user's notifications: the stream position of the last
/// change of one (`seq_xid`, `seq_pos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NotificationCursor(pub i64, pub i64);

fn message(kind: &str, actor: &str, others: i32, job_status: Option<&str>) -> String {
    let who = match others {
        0 => actor.to_owned(),
        1 => format!("{actor} and 1 other"),
        n => format!("{actor} and {n} others"),
    };
    match kind {
        "like" => format!("{who} liked your video"),
        "comment" => format!("{who} commented on your video"),
        "reply" => format!("{who} replied to your comment"),
        "follow" => format!("{who} started following you"),
        "glitch" => format!("{who} glitched your video"),
        _ if job_status == Some("completed") => "Your AI job is done".to_owned(),
        _ => "Your AI job failed; its credits were refunded".to_owned(),
    }
}

impl NotificationRow {
    pub(crate) fn cursor(&self) -> NotificationCursor {
        NotificationCursor(self.seq_xid, self.seq_pos)
    }

    pub(crate) fn into_view(self) -> NotificationView {
        let cursor = encode_cursor(&self.cursor());
        let actor = match (self.actor_id, self.username, self.display_name) {
            (Some(id), Some(username), Some(display_name)) => Some(VideoUser {
                id,
                username,
                display_name,
                profile_image_url: self.profile_image_url,
            }),
            _ => None,
        };
        let name = actor
            .as_ref()
            .map(|a| a.display_name.clone())
            .unwrap_or_default();
        let other_count = (self.actor_count - 1).max(0);
        NotificationView {
            message: message(&self.kind, &name, other_count, self.job_status.as_deref()),
            id: self.id,
            kind: self.kind,
            actor,
            actor_count: self.actor_count,
            other_count,
            video_id: self.video_id,
            comment_id: self.comment_id,
            glitch_video_id: self.glitch_video_id,
            job_id: self.job_id,
            job_status: self.job_status,
            is_read: self.read_at.is_some(),
            read_at: self.read_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            cursor,
        }
    }
}

/// SQL: the user `$1`'s notifications that may be shown: none from an actor
/// a block stands between them and, none from a banned actor.
fn shown() -> String {
    format!(
        "n.user_id = $1 AND (n.actor_id IS NULL OR (NOT coalesce(u.banned, false) AND {}))",
        unblocked("n.user_id", "n.actor_id")
    )
}

const COLUMNS: &str = "n.id, n.kind, n.actor_id, u.username, u.display_name, u.profile_image_url,
    n.actor_count, n.video_id, n.comment_id, n.glitch_video_id, n.job_id, n.job_status, n.read_at,
    n.created_at, n.updated_at, n.seq_xid, n.seq_pos";

/// Up to `limit` of `user`'s notifications changed after `after`, oldest
/// change first (what a live socket sends next).
pub(crate) async fn changed_since(
    ctx: &ApiContext,
    user: Uuid,
    after: NotificationCursor,
    limit: i64,
) -> Result<Vec<NotificationRow>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications n LEFT JOIN users u ON u.id = n.actor_id
          WHERE {} AND (n.seq_xid, n.seq_pos) > ($2, $3)
          ORDER BY n.seq_xid, n.seq_pos LIMIT $4",
        shown()
    ))
    .bind(user)
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(&ctx.pool)
    .await?)
}

/// The newest change among `user`'s notifications (where a socket opened
/// without `since` starts).
pub(crate) async fn latest_cursor(
    ctx: &ApiContext,
    user: Uuid,
) -> Result<NotificationCursor, ApiError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT seq_xid, seq_pos FROM notifications WHERE user_id = $1
          ORDER BY seq_xid DESC, seq_pos DESC LIMIT 1",
    )
    .bind(user)
    .fetch_optional(&ctx.pool)
    .await?;
    Ok(row.map_or(NotificationCursor(0, 0), |(x, p)| NotificationCursor(x, p)))
}

pub(crate) async fn count_unread(ctx: &ApiContext, user: Uuid) -> Result<i64, ApiError> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT count(*) FROM notifications n LEFT JOIN users u ON u.id = n.actor_id
          WHERE {} AND n.read_at IS NULL",
        shown()
    ))
    .bind(user)
    .fetch_one(&ctx.pool)
    .await?)
}

#[derive(Serialize, ToSchema)]
pub struct NotificationPage {
    pub notifications: Vec<NotificationView>,
    /// Pass back as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[utoipa::path(get, path = "/v1/notifications/", tag = "notifications", security(("bearer" = [])),
    params(crate::extract::MinPosition,
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = NotificationPage, description = "Newest change first")))]
pub async fn list(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<NotificationPage>, ApiError> {
    let mut errors = Vec::new();
    let after: Option<NotificationCursor> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, READS).await?;
    let after = after.unwrap_or(NotificationCursor(i64::MAX, i64::MAX));
    let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications n LEFT JOIN users u ON u.id = n.actor_id
          WHERE {} AND (n.seq_xid, n.seq_pos) < ($2, $3)
          ORDER BY n.seq_xid DESC, n.seq_pos DESC LIMIT $4",
        shown()
    ))
    .bind(me.user_id)
    .bind(after.0)
    .bind(after.1)
    .bind(limit + 1)
    .fetch_all(&ctx.pool)
    .await?;
    let (rows, has_more) = page(rows, limit);
    let next_cursor = match rows.last() {
        Some(r) if has_more => Some(encode_cursor(&r.cursor())),
        _ => None,
    };
    Ok(Json(NotificationPage {
        notifications: rows.into_iter().map(NotificationRow::into_view).collect(),
        next_cursor,
        has_more,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct UnreadCount {
    pub unread_count: i64,
}

#[utoipa::path(get, path = "/v1/notifications/unread-count", tag = "notifications", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    responses((status = 200, body = UnreadCount)))]
pub async fn unread_count(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
) -> Result<Json<UnreadCount>, ApiError> {
    ctx.wait_for(min, READS).await?;
    Ok(Json(UnreadCount {
        unread_count: count_unread(&ctx, me.user_id).await?,
    }))
}

/// The answer of every mark-read (the seed's batch-mark-read shape).
#[derive(Serialize, ToSchema)]
pub struct Marked {
    /// Notifications this request marked read (already read ones, unknown
    /// ids and other users' ids are not counted).
    pub marked_count: i64,
    pub success: bool,
}

/// Marks `ids` read (`None`: all), counting those that were unread, and
/// answers once the read model has the marks.
async fn mark(ctx: &ApiContext, user: Uuid, ids: Option<Vec<Uuid>>) -> Result<Response, ApiError> {
    // the caller saw these in a list: settle once so they are all there
    ctx.wait_for_head(&["notifications"]).await?;
    let unread: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM notifications
          WHERE user_id = $1 AND read_at IS NULL AND ($2::uuid[] IS NULL OR id = ANY($2))",
    )
    .bind(user)
    .bind(ids.as_deref())
    .fetch_all(&ctx.pool)
    .await?;
    if unread.is_empty() {
        let none = Marked {
            marked_count: 0,
            success: true,
        };
        return Ok(with_position(None, Json(none)));
    }
    let marked_count = unread.len() as i64;
    let at = crate::now();
    let command = match ids {
        Some(_) => NotificationInboxCommand::MarkRead {
            user_id: user,
            notification_ids: unread,
            at,
        },
        None => NotificationInboxCommand::MarkAllRead { user_id: user, at },
    };
    let written = execute(ctx, user, command).await?;
    ctx.wait_for(written, &["notifications"]).await?;
    let marked = Marked {
        marked_count,
        success: true,
    };
    Ok(with_position(written, Json(marked)))
}

async fn execute(
    ctx: &ApiContext,
    user: Uuid,
    command: NotificationInboxCommand,
) -> Result<Option<i64>, ApiError> {
    let written = ctx
        .store
        .inboxes
        .execute(
            &NotificationInbox::id(user),
            command,
            HashMap::from([("actor".to_owned(), user.to_string())]),
        )
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                NotificationInboxError::TooMany => ApiError::field(
                    "notification_ids",
                    "too_many",
                    format!("at most {MARK_READ_MAX} ids"),
                ),
            })
        })?;
    Ok(written.position)
}

#[utoipa::path(post, path = "/v1/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Marked, description = "`marked_count` 1 when it was unread, 0 otherwise"),
              (status = 404, body = crate::error::ErrorEnvelope, description = "Not a notification of the caller")))]
pub async fn read_one(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_uuid(&id, "Notification")?;
    ctx.wait_for_head(&["notifications"]).await?;
    let mine: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM notifications WHERE id = $1 AND user_id = $2)",
    )
    .bind(id)
    .bind(me.user_id)
    .fetch_one(&ctx.pool)
    .await?;
    if !mine {
        return Err(ApiError::NotFound {
            what: "Notification",
        });
    }
    mark(&ctx, me.user_id, Some(vec![id])).await
}

#[utoipa::path(post, path = "/v1/notifications/read-all", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Marked)))]
pub async fn read_all(State(ctx): State<ApiContext>, me: AuthUser) -> Result<Response, ApiError> {
    mark(&ctx, me.user_id, None).await
}

/// Body of `POST /v1/notifications/batch-mark-read`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NotificationIds {
    /// At most 100.
    #[schema(max_items = 100)]
    notification_ids: Vec<Uuid>,
}

#[utoipa::path(post, path = "/v1/notifications/batch-mark-read", tag = "notifications", security(("bearer" = [])),
    request_body = NotificationIds,
    responses((status = 200, body = Marked),
              (status = 422, description = "more than 100 ids, or malformed ids (named)", body = crate::error::ErrorEnvelope)))]
pub async fn batch_mark_read(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let ids = f.uuid_list("notification_ids", MARK_READ_MAX);
    f.finish()?;
    mark(&ctx, me.user_id, Some(ids.unwrap_or_default())).await
}

/// Per kind, whether it notifies.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationSettingsView {
    pub like: bool,
    pub comment: bool,
    pub reply: bool,
    pub follow: bool,
    pub glitch: bool,
    pub ai_job: bool,
}

/// Body of `PATCH /v1/notifications/settings`: the kinds to change.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UpdateNotificationSettings {
    #[schema(nullable = false)]
    like: Option<bool>,
    #[schema(nullable = false)]
    comment: Option<bool>,
    #[schema(nullable = false)]
    reply: Option<bool>,
    #[schema(nullable = false)]
    follow: Option<bool>,
    #[schema(nullable = false)]
    glitch: Option<bool>,
    #[schema(nullable = false)]
    ai_job: Option<bool>,
}

async fn load_settings(ctx: &ApiContext, user: Uuid) -> Result<NotificationSettingsView, ApiError> {
    let rows: Vec<(String, bool)> =
        sqlx::query_as("SELECT kind, enabled FROM notification_settings WHERE user_id = $1")
            .bind(user)
            .fetch_all(&ctx.pool)
            .await?;
    let on = |k: NotificationKind| {
        rows.iter()
            .find(|(kind, _)| kind == k.as_str())
            .is_none_or(|(_, enabled)| *enabled)
    };
    Ok(NotificationSettingsView {
        like: on(NotificationKind::Like),
        comment: on(NotificationKind::Comment),
        reply: on(NotificationKind::Reply),
        follow: on(NotificationKind::Follow),
        glitch: on(NotificationKind::Glitch),
        ai_job: on(NotificationKind::AiJob),
    })
}

#[utoipa::path(get, path = "/v1/notifications/settings", tag = "notifications", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    responses((status = 200, body = NotificationSettingsView)))]
pub async fn settings(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
) -> Result<Json<NotificationSettingsView>, ApiError> {
    ctx.wait_for(min, &["notifications"]).await?;
    Ok(Json(load_settings(&ctx, me.user_id).await?))
}

#[utoipa::path(patch, path = "/v1/notifications/settings", tag = "notifications", security(("bearer" = [])),
    request_body = UpdateNotificationSettings,
    responses((status = 200, body = NotificationSettingsView, description = "Every kind, after the change"),
              (status = 422, description = "an unknown kind, a value that is not a boolean, or no kind at all", body = crate::error::ErrorEnvelope)))]
pub async fn change_settings(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let mut changes = NotificationSettings::new();
    for (key, value) in &body {
        match (NotificationKind::parse(key), value) {
            (Some(kind), Value::Bool(on)) => {
                changes.insert(kind, *on);
            }
            (Some(kind), _) => errors.push(FieldError::new(
                kind.as_str(),
                "type",
                "must be true or false",
            )),
            (None, _) => errors.push(FieldError::new(
                "body",
                "unknown_field",
                format!("{key:?} is not a notification kind"),
            )),
        }
    }
    if body.is_empty() {
        errors.push(FieldError::new("body", "empty", "name at least one kind"));
    }
    check(errors)?;
    let command = NotificationInboxCommand::ChangeSettings {
        user_id: me.user_id,
        settings: changes,
        at: crate::now(),
    };
    let written = execute(&ctx, me.user_id, command).await?;
    ctx.wait_for(written, &["notifications"]).await?;
    Ok(with_position(
        written,
        Json(load_settings(&ctx, me.user_id).await?),
    ))
}
