//! `/v1/follows`: follow, unfollow, followers, following, check, check-batch.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::follow::{Follow, FollowCommand, FollowError};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MaybeAuthUser, MinPosition};
use crate::pagination::{check, encode_cursor, page, Params};
use crate::reads::{ensure_unblocked, unblocked};
use crate::routes::likes::BATCH_MAX;
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/follows/users/{id}", post(follow).delete(unfollow))
        .route("/follows/users/{id}/followers", get(followers))
        .route("/follows/users/{id}/following", get(following))
        .route("/follows/users/{id}/check", get(check_one))
        .route("/follows/check-batch", post(check_batch))
}

#[derive(Serialize, ToSchema)]
pub struct FollowState {
    pub user_id: Uuid,
    pub following: bool,
    /// False when the request changed nothing.
    pub changed: bool,
    pub position: Option<i64>,
}

async fn set_follow(
    ctx: &ApiContext,
    me: AuthUser,
    min: Option<i64>,
    raw_id: &str,
    follow: bool,
) -> Result<Response, ApiError> {
    let target = path_uuid(raw_id, "User")?;
    if follow {
        if target == me.user_id {
            return Err(ApiError::field(
                "user_id",
                "self",
                "you cannot follow yourself",
            ));
        }
        ctx.wait_for(min, &["users"]).await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
            .bind(target)
            .fetch_one(&ctx.pool)
            .await?;
        if !exists {
            return Err(ApiError::NotFound { what: "User" });
        }
        ctx.wait_for(min, &["blocks"]).await?;
        ensure_unblocked(ctx, me.user_id, target).await?;
    }
    let at = crate::now();
    let (follower_id, followee_id) = (me.user_id, target);
    let command = if follow {
        FollowCommand::FollowUser {
            follower_id,
            followee_id,
            at,
        }
    } else {
        FollowCommand::UnfollowUser {
            follower_id,
            followee_id,
            at,
        }
    };
    let written = ctx
        .store
        .follows
        .execute(
            &Follow::id(follower_id, followee_id),
            command,
            HashMap::from([("actor".to_owned(), follower_id.to_string())]),
        )
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                FollowError::CannotFollowSelf => {
                    ApiError::field("user_id", "self", "you cannot follow yourself")
                }
            })
        })?;
    Ok(with_position(
        written.position,
        Json(FollowState {
            user_id: target,
            following: follow,
            changed: written.appended,
            position: written.position,
        }),
    ))
}

#[utoipa::path(post, path = "/v1/follows/users/{id}", tag = "follows", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = FollowState), (status = 404, body = crate::error::ErrorEnvelope),
              (status = 422, description = "following yourself", body = crate::error::ErrorEnvelope)))]
pub async fn follow(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_follow(&ctx, me, min, &id, true).await
}

#[utoipa::path(delete, path = "/v1/follows/users/{id}", tag = "follows", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)), responses((status = 200, body = FollowState)))]
pub async fn unfollow(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_follow(&ctx, me, min, &id, false).await
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct FollowUser {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub profile_image_url: Option<String>,
    pub followed_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct FollowPage {
    pub users: Vec<FollowUser>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// Newest relationships first; keyset on (followed_at, other user's id).
async fn follow_page(
    ctx: &ApiContext,
    viewer: Option<Uuid>,
    raw_id: &str,
    min: Option<i64>,
    params: Params,
    followers: bool,
) -> Result<Json<FollowPage>, ApiError> {
    let user_id = path_uuid(raw_id, "User")?;
    let mut errors = Vec::new();
    let after: Option<(i64, Uuid)> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["follows", "users", "blocks"]).await?;
    let (mine, other) = if followers {
        ("followee_id", "follower_id")
    } else {
        ("follower_id", "followee_id")
    };
    // within ±285 years of the epoch, inside what Postgres timestamps hold
    const LIMIT: i64 = 9_000_000_000_000_000;
    let (after_us, after_id) = after.unwrap_or((LIMIT, Uuid::max()));
    let after_us = after_us.clamp(-LIMIT, LIMIT);
    let rows: Vec<FollowUser> = sqlx::query_as(&format!(
        "SELECT u.id, u.username, u.display_name, u.profile_image_url, f.created_at AS followed_at
           FROM follows f JOIN users u ON u.id = f.{other}
          WHERE f.{mine} = $1
            AND (f.created_at, f.{other}) < (timestamptz 'epoch' + $2 * interval '1 microsecond', $3)
            AND NOT u.banned AND {}
          ORDER BY f.created_at DESC, f.{other} DESC LIMIT $4",
        unblocked("$5", "u.id")
    ))
    .bind(user_id)
    .bind(after_us)
    .bind(after_id)
    .bind(limit + 1)
    .bind(viewer.unwrap_or(Uuid::nil()))
    .fetch_all(&ctx.pool)
    .await?;
    let (users, has_more) = page(rows, limit);
    let next_cursor = match users.last() {
        Some(u) if has_more => Some(encode_cursor(&(u.followed_at.timestamp_micros(), u.id))),
        _ => None,
    };
    Ok(Json(FollowPage {
        users,
        next_cursor,
        has_more,
    }))
}

#[utoipa::path(get, path = "/v1/follows/users/{id}/followers", tag = "follows", security((), ("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path), ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = FollowPage)))]
pub async fn followers(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(viewer): MaybeAuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<FollowPage>, ApiError> {
    follow_page(&ctx, viewer.map(|v| v.user_id), &id, min, params, true).await
}

#[utoipa::path(get, path = "/v1/follows/users/{id}/following", tag = "follows", security((), ("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path), ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = FollowPage)))]
pub async fn following(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(viewer): MaybeAuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<FollowPage>, ApiError> {
    follow_page(&ctx, viewer.map(|v| v.user_id), &id, min, params, false).await
}

#[derive(Serialize, ToSchema)]
pub struct FollowCheck {
    pub user_id: Uuid,
    pub following: bool,
}

#[utoipa::path(get, path = "/v1/follows/users/{id}/check", tag = "follows", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)), responses((status = 200, body = FollowCheck)))]
pub async fn check_one(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Json<FollowCheck>, ApiError> {
    let user_id = path_uuid(&id, "User")?;
    ctx.wait_for(min, &["follows"]).await?;
    let following: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = $2)",
    )
    .bind(me.user_id)
    .bind(user_id)
    .fetch_one(&ctx.pool)
    .await?;
    Ok(Json(FollowCheck { user_id, following }))
}

/// Body of `POST /v1/follows/check-batch`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UserIds {
    /// At most 100.
    #[schema(max_items = 100)]
    user_ids: Vec<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct FollowingUsers {
    /// Every requested id, true when the caller follows that user.
    pub following_users: BTreeMap<Uuid, bool>,
}

#[utoipa::path(post, path = "/v1/follows/check-batch", tag = "follows", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    request_body = UserIds,
    responses((status = 200, body = FollowingUsers),
              (status = 422, description = "more than 100 ids, or malformed ids (named)", body = crate::error::ErrorEnvelope)))]
pub async fn check_batch(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
    JsonObject(body): JsonObject,
) -> Result<Json<FollowingUsers>, ApiError> {
    let mut f = Fields::new(&body);
    let ids = f.uuid_list("user_ids", BATCH_MAX);
    f.finish()?;
    let ids = ids.unwrap_or_default();
    ctx.wait_for(min, &["follows"]).await?;
    let followed: Vec<Uuid> = sqlx::query_scalar(
        "SELECT followee_id FROM follows WHERE follower_id = $1 AND followee_id = ANY($2)",
    )
    .bind(me.user_id)
    .bind(&ids)
    .fetch_all(&ctx.pool)
    .await?;
    let following_users = ids.iter().map(|id| (*id, followed.contains(id))).collect();
    Ok(Json(FollowingUsers { following_users }))
}
