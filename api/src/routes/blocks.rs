//! `/v1/blocks`: block and unblock a user, and the list of users one blocks.
//!
//! A block answers once the `blocks` read model has it, so every later
//! request of either user already meets it: the two are hidden from each
//! other (feeds, comments, follower and glitch lists, profiles, videos,
//! notifications) and may not like, comment on, follow or glitch each
//! other's things (403 `BLOCKED`). The block saga ends their follows.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::block::{Block, BlockCommand, BlockError};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, MinPosition};
use crate::pagination::{check, encode_cursor, page, Params};
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/blocks/", get(list))
        .route("/blocks/users/{id}", post(block).delete(unblock))
}

#[derive(Serialize, ToSchema)]
pub struct BlockState {
    pub user_id: Uuid,
    pub blocked: bool,
    /// False when the request changed nothing (already blocked / not blocked).
    pub changed: bool,
    pub position: Option<i64>,
}

fn self_block() -> ApiError {
    ApiError::field("user_id", "self", "you cannot block yourself")
}

async fn set_block(
    ctx: &ApiContext,
    me: AuthUser,
    min: Option<i64>,
    raw_id: &str,
    block: bool,
) -> Result<Response, ApiError> {
    let target = path_uuid(raw_id, "User")?;
    if block {
        if target == me.user_id {
            return Err(self_block());
        }
        ctx.wait_for(min, &["users"]).await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
            .bind(target)
            .fetch_one(&ctx.pool)
            .await?;
        if !exists {
            return Err(ApiError::NotFound { what: "User" });
        }
    }
    let (blocker_id, blocked_id, at) = (me.user_id, target, crate::now());
    let command = if block {
        BlockCommand::BlockUser {
            blocker_id,
            blocked_id,
            at,
        }
    } else {
        BlockCommand::UnblockUser {
            blocker_id,
            blocked_id,
            at,
        }
    };
    let written = ctx
        .store
        .blocks
        .execute(
            &Block::id(blocker_id, blocked_id),
            command,
            HashMap::from([("actor".to_owned(), blocker_id.to_string())]),
        )
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                BlockError::CannotBlockSelf => self_block(),
            })
        })?;
    // the block holds for every request that follows this answer
    ctx.wait_for(written.position, &["blocks"]).await?;
    Ok(with_position(
        written.position,
        Json(BlockState {
            user_id: target,
            blocked: block,
            changed: written.appended,
            position: written.position,
        }),
    ))
}

#[utoipa::path(post, path = "/v1/blocks/users/{id}", tag = "blocks", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = BlockState, description = "Blocked (blocking twice: `changed` is false)"),
              (status = 404, body = crate::error::ErrorEnvelope),
              (status = 422, description = "blocking yourself", body = crate::error::ErrorEnvelope)))]
pub async fn block(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_block(&ctx, me, min, &id, true).await
}

#[utoipa::path(delete, path = "/v1/blocks/users/{id}", tag = "blocks", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = BlockState, description = "Not blocked (unblocking who is not blocked: `changed` is false)")))]
pub async fn unblock(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_block(&ctx, me, min, &id, false).await
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct BlockedUser {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub profile_image_url: Option<String>,
    pub blocked_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct BlockPage {
    pub users: Vec<BlockedUser>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[utoipa::path(get, path = "/v1/blocks/", tag = "blocks", security(("bearer" = [])),
    params(crate::extract::MinPosition,
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = BlockPage, description = "The users the caller blocks, newest block first")))]
pub async fn list(
    State(ctx): State<ApiContext>,
    me: AuthUser,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<BlockPage>, ApiError> {
    let mut errors = Vec::new();
    let after: Option<(DateTime<Utc>, Uuid)> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["blocks", "users"]).await?;
    let rows: Vec<BlockedUser> = sqlx::query_as(
        "SELECT u.id, u.username, u.display_name, u.profile_image_url, b.created_at AS blocked_at
           FROM blocks b JOIN users u ON u.id = b.blocked_id
          WHERE b.blocker_id = $1
            AND ($2::timestamptz IS NULL OR (b.created_at, b.blocked_id) < ($2, $3))
          ORDER BY b.created_at DESC, b.blocked_id DESC LIMIT $4",
    )
    .bind(me.user_id)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit + 1)
    .fetch_all(&ctx.pool)
    .await?;
    let (users, has_more) = page(rows, limit);
    let next_cursor = match users.last() {
        Some(u) if has_more => Some(encode_cursor(&(u.blocked_at, u.id))),
        _ => None,
    };
    Ok(Json(BlockPage {
        users,
        next_cursor,
        has_more,
    }))
}
