//! `/v1/likes`: like, unlike, check, check-batch.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use lokiz_domain::like::{Like, LikeCommand, LikeError};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MinPosition};
use crate::reads::live_video;
use crate::routes::with_position;
use crate::ApiContext;

/// At most this many ids per batch request.
pub const BATCH_MAX: usize = 100;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/likes/videos/{id}", post(like).delete(unlike))
        .route("/likes/videos/{id}/check", get(check))
        .route("/likes/check-batch", post(check_batch))
}

#[derive(Serialize, ToSchema)]
pub struct LikeState {
    pub video_id: Uuid,
    pub liked: bool,
    /// False when the request changed nothing (already liked / not liked).
    pub changed: bool,
    pub position: Option<i64>,
}

async fn set_like(
    ctx: &ApiContext,
    user: AuthUser,
    min: Option<i64>,
    raw_id: &str,
    liked: bool,
) -> Result<Response, ApiError> {
    let video_id = path_uuid(raw_id, "Video")?;
    ctx.wait_for(min, &["videos"]).await?;
    live_video(ctx, video_id, Some(user.user_id)).await?;
    let at = crate::now();
    let user_id = user.user_id;
    let command = if liked {
        LikeCommand::LikeVideo {
            user_id,
            video_id,
            at,
        }
    } else {
        LikeCommand::UnlikeVideo {
            user_id,
            video_id,
            at,
        }
    };
    let written = ctx
        .store
        .likes
        .execute(
            &Like::id(user_id, video_id),
            command,
            HashMap::from([("actor".to_owned(), user_id.to_string())]),
        )
        .await
        .map_err(|e| command_error(e, |e: LikeError| match e {}))?;
    Ok(with_position(
        written.position,
        Json(LikeState {
            video_id,
            liked,
            changed: written.appended,
            position: written.position,
        }),
    ))
}

#[utoipa::path(post, path = "/v1/likes/videos/{id}", tag = "likes", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = LikeState, description = "Liked (liking twice is not an error: `changed` is false)"),
              (status = 404, body = crate::error::ErrorEnvelope)))]
pub async fn like(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_like(&ctx, user, min, &id, true).await
}

#[utoipa::path(delete, path = "/v1/likes/videos/{id}", tag = "likes", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = LikeState, description = "Not liked (unliking what is not liked: `changed` is false)"),
              (status = 404, body = crate::error::ErrorEnvelope)))]
pub async fn unlike(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_like(&ctx, user, min, &id, false).await
}

#[derive(Serialize, ToSchema)]
pub struct LikeCheck {
    pub video_id: Uuid,
    pub liked: bool,
}

#[utoipa::path(get, path = "/v1/likes/videos/{id}/check", tag = "likes", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)), responses((status = 200, body = LikeCheck)))]
pub async fn check(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Json<LikeCheck>, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    ctx.wait_for(min, &["likes"]).await?;
    let liked: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM likes WHERE user_id = $1 AND video_id = $2)",
    )
    .bind(user.user_id)
    .bind(video_id)
    .fetch_one(&ctx.pool)
    .await?;
    Ok(Json(LikeCheck { video_id, liked }))
}

/// Body of `POST /v1/likes/check-batch`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VideoIds {
    /// At most 100.
    #[schema(max_items = 100)]
    video_ids: Vec<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct LikedVideos {
    /// Every requested id, true when the caller likes it.
    pub liked_videos: BTreeMap<Uuid, bool>,
}

#[utoipa::path(post, path = "/v1/likes/check-batch", tag = "likes", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    request_body = VideoIds,
    responses((status = 200, body = LikedVideos),
              (status = 422, description = "more than 100 ids, or malformed ids (named)", body = crate::error::ErrorEnvelope)))]
pub async fn check_batch(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    JsonObject(body): JsonObject,
) -> Result<Json<LikedVideos>, ApiError> {
    let mut f = Fields::new(&body);
    let ids = f.uuid_list("video_ids", BATCH_MAX);
    f.finish()?;
    let ids = ids.unwrap_or_default();
    ctx.wait_for(min, &["likes"]).await?;
    let liked: Vec<Uuid> =
        sqlx::query_scalar("SELECT video_id FROM likes WHERE user_id = $1 AND video_id = ANY($2)")
            .bind(user.user_id)
            .bind(&ids)
            .fetch_all(&ctx.pool)
            .await?;
    let liked_videos = ids.iter().map(|id| (*id, liked.contains(id))).collect();
    Ok(Json(LikedVideos { liked_videos }))
}
