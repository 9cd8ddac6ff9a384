//! `/v1/bookmarks`: a user's saved videos, private to them — save, remove,
//! check, and the list (newest saved first; videos the user can no longer
//! see are left out).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::bookmark::{Bookmark, BookmarkCommand, BookmarkError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, MinPosition};
use crate::pagination::{check, encode_cursor, page, Params};
use crate::reads::{live_video, unblocked, VideoPage, VideoRow, VIDEO_COLUMNS};
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/bookmarks/", get(list))
        .route("/bookmarks/videos/{id}", post(save).delete(remove))
        .route("/bookmarks/videos/{id}/check", get(check_one))
}

#[derive(Serialize, ToSchema)]
pub struct BookmarkState {
    pub video_id: Uuid,
    pub bookmarked: bool,
    /// False when the request changed nothing (already saved / not saved).
    pub changed: bool,
    pub position: Option<i64>,
}

async fn set_bookmark(
    ctx: &ApiContext,
    user: AuthUser,
    min: Option<i64>,
    raw_id: &str,
    saved: bool,
) -> Result<Response, ApiError> {
    let video_id = path_uuid(raw_id, "Video")?;
    ctx.wait_for(min, &["videos"]).await?;
    // only what the user may see can be saved (removing always works)
    if saved {
        live_video(ctx, video_id, Some(user.user_id)).await?;
    }
    let at = crate::now();
    let user_id = user.user_id;
    let command = if saved {
        BookmarkCommand::BookmarkVideo {
            user_id,
            video_id,
            at,
        }
    } else {
        BookmarkCommand::RemoveBookmark {
            user_id,
            video_id,
            at,
        }
    };
    let written = ctx
        .store
        .bookmarks
        .execute(
            &Bookmark::id(user_id, video_id),
            command,
            HashMap::from([("actor".to_owned(), user_id.to_string())]),
        )
        .await
        .map_err(|e| command_error(e, |e: BookmarkError| match e {}))?;
    Ok(with_position(
        written.position,
        Json(BookmarkState {
            video_id,
            bookmarked: saved,
            changed: written.appended,
            position: written.position,
        }),
    ))
}

#[utoipa::path(post, path = "/v1/bookmarks/videos/{id}", tag = "bookmarks", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = BookmarkState, description = "Saved (saving twice: `changed` is false)"),
              (status = 404, body = crate::error::ErrorEnvelope)))]
pub async fn save(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_bookmark(&ctx, user, min, &id, true).await
}

#[utoipa::path(delete, path = "/v1/bookmarks/videos/{id}", tag = "bookmarks", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = BookmarkState, description = "Not saved (removing what is not saved: `changed` is false)")))]
pub async fn remove(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_bookmark(&ctx, user, min, &id, false).await
}

#[derive(Serialize, ToSchema)]
pub struct BookmarkCheck {
    pub video_id: Uuid,
    pub bookmarked: bool,
}

#[utoipa::path(get, path = "/v1/bookmarks/videos/{id}/check", tag = "bookmarks", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = BookmarkCheck)))]
pub async fn check_one(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Json<BookmarkCheck>, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    ctx.wait_for(min, &["bookmarks"]).await?;
    let bookmarked: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM bookmarks WHERE user_id = $1 AND video_id = $2)",
    )
    .bind(user.user_id)
    .bind(video_id)
    .fetch_one(&ctx.pool)
    .await?;
    Ok(Json(BookmarkCheck {
        video_id,
        bookmarked,
    }))
}

#[derive(sqlx::FromRow)]
struct SavedRow {
    #[sqlx(flatten)]
    video: VideoRow,
    bookmarked_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct BookmarkCursor {
    at: DateTime<Utc>,
    id: Uuid,
}

#[utoipa::path(get, path = "/v1/bookmarks/", tag = "bookmarks", security(("bearer" = [])),
    params(crate::extract::MinPosition,
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = VideoPage, description = "The caller's saved videos, newest saved first (videos they can no longer see are left out)")))]
pub async fn list(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<VideoPage>, ApiError> {
    let mut errors = Vec::new();
    let after: Option<BookmarkCursor> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["bookmarks", "videos", "users", "blocks"])
        .await?;
    let rows = sqlx::query_as::<_, SavedRow>(&format!(
        "SELECT {VIDEO_COLUMNS}, b.created_at AS bookmarked_at
           FROM bookmarks b JOIN videos v ON v.id = b.video_id JOIN users u ON u.id = v.owner_id
          WHERE b.user_id = $1
            AND ((v.listed AND NOT u.banned AND {}) OR (v.owner_id = $1 AND v.status <> 'deleted'))
            AND ($2::timestamptz IS NULL OR (b.created_at, b.video_id) < ($2, $3))
          ORDER BY b.created_at DESC, b.video_id DESC
          LIMIT $4",
        unblocked("$1", "v.owner_id")
    ))
    .bind(user.user_id)
    .bind(after.as_ref().map(|c| c.at))
    .bind(after.as_ref().map(|c| c.id))
    .bind(limit + 1)
    .fetch_all(&ctx.pool)
    .await?;
    let (rows, has_more) = page(rows, limit);
    let next_cursor = if has_more {
        rows.last().map(|r| {
            encode_cursor(&BookmarkCursor {
                at: r.bookmarked_at,
                id: r.video.id,
            })
        })
    } else {
        None
    };
    Ok(Json(VideoPage {
        videos: rows
            .into_iter()
            .map(|r| r.video.into_response(&ctx))
            .collect(),
        next_cursor,
        has_more,
    }))
}
