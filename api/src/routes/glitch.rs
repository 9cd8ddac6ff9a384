//! `/v1/glitch`: glitch chains. A glitch video (made by an AI job) points at
//! its source (`videos.source_video_id`, from `GlitchedFrom`); chains are
//! walked transitively in SQL.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{path_uuid, MaybeAuthUser, MinPosition};
use crate::pagination::{check, encode_cursor, page, Params};
use crate::reads::{listed_for, live_video, VideoResponse, VideoRow, VIDEO_COLUMNS};
use crate::ApiContext;

/// Deepest chain walked (chains cannot loop: a source exists before its
/// glitches; this only bounds the work).
const MAX_DEPTH: i32 = 64;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/glitch/videos/{id}/glitches", get(glitches))
        .route("/glitch/videos/{id}/source", get(source))
}

/// A video in a chain, with where it sits.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainVideo {
    #[serde(flatten)]
    pub video: VideoResponse,
    /// The video this one was glitched from (null for an original, and when
    /// the caller may not see the source: private, unfinished or deleted).
    pub source_video_id: Option<Uuid>,
    /// Steps from the video asked about (1 = a direct glitch / the direct source).
    pub depth: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChainPage {
    pub videos: Vec<ChainVideo>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(sqlx::FromRow)]
struct ChainRow {
    #[sqlx(flatten)]
    video: VideoRow,
    source_video_id: Option<Uuid>,
    depth: i32,
}

#[derive(Serialize, Deserialize)]
struct GlitchCursor {
    published_at: DateTime<Utc>,
    id: Uuid,
}

#[utoipa::path(get, path = "/v1/glitch/videos/{id}/glitches", tag = "glitch", security((), ("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path), ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = ChainPage, description = "Every glitch made from the video, directly or from its glitches, newest first"),
              (status = 404, body = crate::error::ErrorEnvelope), (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn glitches(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(viewer): MaybeAuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<ChainPage>, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut errors = Vec::new();
    let after: Option<GlitchCursor> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["videos", "users", "blocks"]).await?;
    live_video(&ctx, video_id, viewer.map(|u| u.user_id)).await?;
    let rows = sqlx::query_as::<_, ChainRow>(&format!(
        "WITH RECURSIVE chain(id, depth) AS (
             SELECT id, 1 FROM videos WHERE source_video_id = $1
             UNION ALL
             SELECT v.id, c.depth + 1 FROM videos v JOIN chain c ON v.source_video_id = c.id
              WHERE c.depth < $5
         )
         SELECT {VIDEO_COLUMNS},
                CASE WHEN s.listed OR s.owner_id = $6 THEN v.source_video_id END AS source_video_id, c.depth
           FROM chain c JOIN videos v ON v.id = c.id JOIN users u ON u.id = v.owner_id
           LEFT JOIN videos s ON s.id = v.source_video_id
          WHERE {}
            AND ($2::timestamptz IS NULL OR (v.published_at, v.id) < ($2, $3))
          ORDER BY v.published_at DESC, v.id DESC
          LIMIT $4",
        listed_for("$6")
    ))
    .bind(video_id)
    .bind(after.as_ref().map(|c| c.published_at))
    .bind(after.as_ref().map(|c| c.id))
    .bind(limit + 1)
    .bind(MAX_DEPTH)
    .bind(viewer.map(|u| u.user_id))
    .fetch_all(&ctx.pool)
    .await?;
    let (rows, has_more) = page(rows, limit);
    let next_cursor = if has_more {
        rows.last().and_then(|r| {
            r.video.published_at.map(|published_at| {
                encode_cursor(&GlitchCursor {
                    published_at,
                    id: r.video.id,
                })
            })
        })
    } else {
        None
    };
    Ok(Json(ChainPage {
        videos: rows.into_iter().map(|r| r.into_view(&ctx)).collect(),
        next_cursor,
        has_more,
    }))
}

#[utoipa::path(get, path = "/v1/glitch/videos/{id}/source", tag = "glitch", security((), ("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path), ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = ChainPage, description = "The video's sources: its direct source first, up to the original (deleted or hidden ones left out)"),
              (status = 404, body = crate::error::ErrorEnvelope), (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn source(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(viewer): MaybeAuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<ChainPage>, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut errors = Vec::new();
    let after: Option<i32> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["videos", "users", "blocks"]).await?;
    live_video(&ctx, video_id, viewer.map(|u| u.user_id)).await?;
    let rows = sqlx::query_as::<_, ChainRow>(&format!(
        "WITH RECURSIVE up(id, source, depth) AS (
             SELECT id, source_video_id, 0 FROM videos WHERE id = $1
             UNION ALL
             SELECT v.id, v.source_video_id, up.depth + 1 FROM videos v JOIN up ON v.id = up.source
              WHERE up.depth < $4
         )
         SELECT {VIDEO_COLUMNS},
                CASE WHEN s.listed OR s.owner_id = $5 THEN v.source_video_id END AS source_video_id, up.depth
           FROM up JOIN videos v ON v.id = up.id JOIN users u ON u.id = v.owner_id
           LEFT JOIN videos s ON s.id = v.source_video_id
          WHERE up.depth > coalesce($2, 0) AND {}
          ORDER BY up.depth
          LIMIT $3",
        listed_for("$5")
    ))
    .bind(video_id)
    .bind(after)
    .bind(limit + 1)
    .bind(MAX_DEPTH)
    .bind(viewer.map(|u| u.user_id))
    .fetch_all(&ctx.pool)
    .await?;
    let (rows, has_more) = page(rows, limit);
    let next_cursor = if has_more {
        rows.last().map(|r| encode_cursor(&r.depth))
    } else {
        None
    };
    Ok(Json(ChainPage {
        videos: rows.into_iter().map(|r| r.into_view(&ctx)).collect(),
        next_cursor,
        has_more,
    }))
}

impl ChainRow {
    fn into_view(self, ctx: &ApiContext) -> ChainVideo {
        ChainVideo {
            source_video_id: self.source_video_id,
            depth: self.depth,
            video: self.video.into_response(ctx),
        }
    }
}
