//! Read-model queries shared by several route modules: the video rows every
//! video answer is built from, "may this viewer see this video", and the
//! block rules (who is hidden from whom, who may not interact).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::ApiContext;

/// What commands about a video need to know from the read model.
pub struct VideoRef {
    pub owner_id: Uuid,
    /// Where the file is in the blob store.
    pub file_key: String,
    /// Seconds (as reported when the upload completed).
    pub duration: Option<f64>,
    /// Anybody may see it.
    pub public: bool,
}

type LiveRow = (Uuid, String, String, String, Option<f64>, bool, bool);

/// A completed, undeleted video `viewer` may see (public, or their own) and
/// may act on; anything else is 404, so private videos do not reveal
/// themselves (a banned owner's videos are gone too). A block between the
/// viewer and the owner, either way, is 403 `BLOCKED`.
pub async fn live_video(
    ctx: &ApiContext,
    video_id: Uuid,
    viewer: Option<Uuid>,
) -> Result<VideoRef, ApiError> {
    let (video, blocked) = fetch_live(ctx, video_id, viewer).await?;
    if blocked {
        return Err(blocked_error());
    }
    Ok(video)
}

/// [`live_video`] for reporting: a block does not stop a report.
pub async fn reportable_video(
    ctx: &ApiContext,
    video_id: Uuid,
    viewer: Uuid,
) -> Result<VideoRef, ApiError> {
    Ok(fetch_live(ctx, video_id, Some(viewer)).await?.0)
}

async fn fetch_live(
    ctx: &ApiContext,
    video_id: Uuid,
    viewer: Option<Uuid>,
) -> Result<(VideoRef, bool), ApiError> {
    let sql = format!(
        "SELECT v.owner_id, v.visibility, v.status, v.file_key, v.duration, u.banned,
                NOT {} AS blocked
           FROM videos v JOIN users u ON u.id = v.owner_id
          WHERE v.id = $1",
        unblocked("$2", "v.owner_id")
    );
    let fetch = || {
        sqlx::query_as::<_, LiveRow>(&sql)
            .bind(video_id)
            .bind(viewer.unwrap_or(Uuid::nil()))
            .fetch_optional(&ctx.pool)
    };
    let mut row = fetch().await?;
    if row
        .as_ref()
        .is_none_or(|(_, _, status, _, _, _, _)| status == "processing")
    {
        // A video created or completed a moment ago may not be projected
        // yet: settle once (cheap when the projection is current) and look again.
        ctx.wait_for_head(&["videos"]).await?;
        row = fetch().await?;
    }
    match row {
        Some((owner_id, visibility, status, file_key, duration, banned, blocked))
            if status == "completed"
                && !banned
                && (visibility == "public" || viewer == Some(owner_id)) =>
        {
            let video = VideoRef {
                owner_id,
                file_key,
                duration,
                public: visibility == "public",
            };
            Ok((video, blocked))
        }
        _ => Err(ApiError::NotFound { what: "Video" }),
    }
}

/// SQL: neither of the users `a` and `b` (SQL expressions) blocks the other.
pub fn unblocked(a: &str, b: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM blocks bl
                      WHERE (bl.blocker_id = {a} AND bl.blocked_id = {b})
                         OR (bl.blocker_id = {b} AND bl.blocked_id = {a}))"
    )
}

/// SQL: the video `v` (joined with its owner `u`) may appear in a list shown
/// to the user `viewer` (an SQL expression; the nil id for nobody): listed,
/// its owner not banned, no block between them.
pub fn listed_for(viewer: &str) -> String {
    format!(
        "v.listed AND NOT u.banned AND {}",
        unblocked(viewer, "v.owner_id")
    )
}

fn blocked_error() -> ApiError {
    ApiError::Forbidden {
        code: "BLOCKED",
        message: "A block stands between you and this user.",
    }
}

/// Whether either of `a` and `b` blocks the other.
pub async fn blocked_between(ctx: &ApiContext, a: Uuid, b: Uuid) -> Result<bool, ApiError> {
    let unblocked: bool = sqlx::query_scalar(&format!("SELECT {}", unblocked("$1", "$2")))
        .bind(a)
        .bind(b)
        .fetch_one(&ctx.pool)
        .await?;
    Ok(!unblocked)
}

/// 403 `BLOCKED` when either of `a` and `b` blocks the other.
pub async fn ensure_unblocked(ctx: &ApiContext, a: Uuid, b: Uuid) -> Result<(), ApiError> {
    if blocked_between(ctx, a, b).await? {
        return Err(blocked_error());
    }
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VideoUser {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub profile_image_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VideoResponse {
    pub id: Uuid,
    pub user: VideoUser,
    pub caption: Option<String>,
    /// Streams the video (HTTP range requests).
    pub file_url: String,
    pub file_key: String,
    /// `processing` until the upload completes, then `completed`.
    pub status: String,
    pub visibility: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
    /// Seconds.
    pub duration: Option<f64>,
    pub view_count: i64,
    pub like_count: i64,
    pub comment_count: i64,
    pub remix_count: i64,
    pub glitch_count: i64,
    /// People × channels it was shared to (`POST /v1/videos/{id}/share`).
    pub share_count: i64,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
pub struct VideoRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub profile_image_url: Option<String>,
    pub caption: Option<String>,
    pub file_key: String,
    pub status: String,
    pub visibility: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration: Option<f64>,
    pub view_count: i64,
    pub like_count: i64,
    pub comment_count: i64,
    pub remix_count: i64,
    pub glitch_count: i64,
    pub share_count: i64,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

pub const VIDEO_COLUMNS: &str = "v.id, v.owner_id, u.username, u.display_name, u.profile_image_url,
    v.caption, v.file_key, v.status, v.visibility, v.width, v.height, v.duration, v.view_count,
    v.like_count, v.comment_count, v.remix_count, v.glitch_count, v.share_count, v.created_at,
    v.published_at";

impl VideoRow {
    pub fn into_response(self, ctx: &ApiContext) -> VideoResponse {
        let public = self.status == "completed" && self.visibility == "public";
        VideoResponse {
            file_url: crate::files::file_url(ctx, &self.file_key, public),
            id: self.id,
            user: VideoUser {
                id: self.owner_id,
                username: self.username,
                display_name: self.display_name,
                profile_image_url: self.profile_image_url,
            },
            caption: self.caption,
            file_key: self.file_key,
            status: self.status,
            visibility: self.visibility,
            width: self.width,
            height: self.height,
            duration: self.duration,
            view_count: self.view_count,
            like_count: self.like_count,
            comment_count: self.comment_count,
            remix_count: self.remix_count,
            glitch_count: self.glitch_count,
            share_count: self.share_count,
            created_at: self.created_at,
            published_at: self.published_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct VideoPage {
    pub videos: Vec<VideoResponse>,
    /// Pass back as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

impl VideoPage {
    /// A page from the `limit + 1` rows a keyset query fetched: the first
    /// `limit` as videos, and `key(last shown row)` as the next cursor when
    /// more follow.
    pub fn from_rows<R>(
        ctx: &ApiContext,
        rows: Vec<R>,
        limit: i64,
        video: impl Fn(R) -> VideoRow,
        key: impl Fn(&R) -> String,
    ) -> VideoPage {
        let (rows, has_more) = crate::pagination::page(rows, limit);
        let next_cursor = rows.last().filter(|_| has_more).map(key);
        VideoPage {
            videos: rows
                .into_iter()
                .map(|r| video(r).into_response(ctx))
                .collect(),
            next_cursor,
            has_more,
        }
    }
}
