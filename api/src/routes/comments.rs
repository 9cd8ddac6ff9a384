//! `/v1/comments`: post (and reply), list threaded, edit, delete.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{patch, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::comment::{CommentCommand, CommentError};
use lokiz_domain::values::CommentBody;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MaybeAuthUser, MinPosition};
use crate::pagination::{check, encode_cursor, page, Params};
use crate::reads::{ensure_unblocked, live_video, unblocked, VideoUser};
use crate::routes::with_position;
use crate::ApiContext;

/// Cursor times (µs since the epoch) stay within ±285 years, inside what
/// Postgres timestamps hold, whatever a client sends.
const TIME_LIMIT: i64 = 9_000_000_000_000_000;

/// Replies shown inline under each top-level comment.
const INLINE_REPLIES: i64 = 3;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/comments/videos/{id}", post(post_comment).get(list))
        .route("/comments/{id}", patch(edit).delete(delete))
}

fn comment_error(e: CommentError) -> ApiError {
    match e {
        CommentError::NotFound => ApiError::NotFound { what: "Comment" },
        CommentError::AlreadyPosted => ApiError::Conflict {
            code: "ALREADY_EXISTS",
            message: "This comment already exists.".into(),
            details: None,
        },
        CommentError::NotAuthor => ApiError::Forbidden {
            code: "FORBIDDEN",
            message: "Only the author may edit a comment.",
        },
        CommentError::NotAllowedToDelete => ApiError::Forbidden {
            code: "FORBIDDEN",
            message: "Only the author or the video's owner may delete a comment.",
        },
    }
}

fn actor(user: Uuid) -> HashMap<String, String> {
    HashMap::from([("actor".to_owned(), user.to_string())])
}

/// Body of `POST /v1/comments/videos/{id}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PostCommentRequest {
    /// 1–1000 characters, not only spaces; line breaks allowed.
    #[schema(
        max_length = 1000,
        pattern = r"^[^\x00-\x09\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F][^\x00-\x09\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    content: String,
    /// Reply to this comment (on the same video).
    parent_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct Posted {
    pub id: Uuid,
    pub video_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub position: Option<i64>,
}

#[utoipa::path(post, path = "/v1/comments/videos/{id}", tag = "comments", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)), request_body = PostCommentRequest,
    responses((status = 201, body = Posted), (status = 404, body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn post_comment(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut f = Fields::new(&body);
    let raw = f.required_str("content");
    let content = f.parse("content", raw, CommentBody::parse);
    let parent_id = f.optional_uuid("parent_id");
    f.finish()?;
    let Some(content) = content else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated field missing"
        )));
    };
    ctx.wait_for(min, &["videos", "comments", "blocks"]).await?;
    live_video(&ctx, video_id, Some(user.user_id)).await?;
    if let Some(parent) = parent_id {
        let on_video = || {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM comments
                                 WHERE id = $1 AND video_id = $2 AND deleted_at IS NULL)",
            )
            .bind(parent)
            .bind(video_id)
            .fetch_one(&ctx.pool)
        };
        let mut same_video = on_video().await?;
        if !same_video {
            // the parent may have been posted a moment ago
            ctx.wait_for_head(&["comments"]).await?;
            same_video = on_video().await?;
        }
        if !same_video {
            return Err(ApiError::field(
                "parent_id",
                "not_found",
                "is not a comment on this video",
            ));
        }
        // no reply to someone a block stands between
        let author: Option<Uuid> =
            sqlx::query_scalar("SELECT author_id FROM comments WHERE id = $1")
                .bind(parent)
                .fetch_optional(&ctx.pool)
                .await?;
        if let Some(author) = author {
            ensure_unblocked(&ctx, user.user_id, author).await?;
        }
    }
    let comment_id = Uuid::now_v7();
    let at = crate::now();
    let written = ctx
        .store
        .comments
        .execute(
            &comment_id.to_string(),
            CommentCommand::PostComment {
                comment_id,
                video_id,
                author_id: user.user_id,
                parent_id,
                body: content.clone(),
                at,
            },
            actor(user.user_id),
        )
        .await
        .map_err(|e| command_error(e, comment_error))?;
    Ok(with_position(
        written.position,
        (
            StatusCode::CREATED,
            Json(Posted {
                id: comment_id,
                video_id,
                parent_id,
                content: content.into_inner(),
                created_at: at,
                position: written.position,
            }),
        ),
    ))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct CommentRow {
    pub id: Uuid,
    pub video_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub content: String,
    pub reply_count: i64,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub author_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub profile_image_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CommentResponse {
    pub id: Uuid,
    pub video_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub user: VideoUser,
    pub content: String,
    pub reply_count: i64,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    /// Top-level comments: their first replies, oldest first. Replies: empty.
    #[schema(no_recursion)]
    pub replies: Vec<CommentResponse>,
}

impl From<CommentRow> for CommentResponse {
    fn from(r: CommentRow) -> Self {
        Self {
            id: r.id,
            video_id: r.video_id,
            parent_id: r.parent_id,
            user: VideoUser {
                id: r.author_id,
                username: r.username,
                display_name: r.display_name,
                profile_image_url: r.profile_image_url,
            },
            content: r.content,
            reply_count: r.reply_count,
            created_at: r.created_at,
            edited_at: r.edited_at,
            replies: Vec::new(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CommentPage {
    pub comments: Vec<CommentResponse>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

const COMMENT_COLUMNS: &str = "c.id, c.video_id, c.parent_id, c.body AS content, c.reply_count,
    c.created_at, c.edited_at, c.author_id, u.username, u.display_name, u.profile_image_url";

#[utoipa::path(get, path = "/v1/comments/videos/{id}", tag = "comments", security((), ("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path),
           ("parent_id" = Option<Uuid>, Query, description = "List this comment's replies (oldest first) instead of the top level (newest first)"),
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = CommentPage), (status = 404, body = crate::error::ErrorEnvelope)))]
pub async fn list(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<CommentPage>, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut errors = Vec::new();
    let after: Option<(i64, Uuid)> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    let parent = match params.get("parent_id") {
        None => None,
        Some(raw) => match Uuid::parse_str(raw) {
            Ok(p) => Some(p),
            Err(_) => {
                errors.push(lokiz_domain::values::FieldError::new(
                    "parent_id",
                    "format",
                    "must be an id (UUID)",
                ));
                None
            }
        },
    };
    check(errors)?;
    ctx.wait_for(min, &["videos", "comments", "users", "blocks"])
        .await?;
    let viewer = user.map(|u| u.user_id);
    live_video(&ctx, video_id, viewer).await?;
    // comments of users a block stands between the viewer and are hidden
    let viewer = viewer.unwrap_or(Uuid::nil());

    let us = |t: &DateTime<Utc>| t.timestamp_micros();
    let rows: Vec<CommentRow> = match parent {
        // top level: newest first
        None => {
            let (k, id) = after.unwrap_or((TIME_LIMIT, Uuid::max()));
            let k = k.clamp(-TIME_LIMIT, TIME_LIMIT);
            sqlx::query_as(&format!(
                "SELECT {COMMENT_COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id
                  WHERE c.video_id = $1 AND c.parent_id IS NULL AND c.deleted_at IS NULL
                    AND (c.created_at, c.id) < (timestamptz 'epoch' + $2 * interval '1 microsecond', $3)
                    AND {}
                  ORDER BY c.created_at DESC, c.id DESC LIMIT $4",
                unblocked("$5", "c.author_id")
            ))
            .bind(video_id)
            .bind(k)
            .bind(id)
            .bind(limit + 1)
            .bind(viewer)
            .fetch_all(&ctx.pool)
            .await?
        }
        // replies: oldest first, as a conversation reads
        Some(parent) => {
            let (k, id) = after.unwrap_or((-TIME_LIMIT, Uuid::nil()));
            let k = k.clamp(-TIME_LIMIT, TIME_LIMIT);
            sqlx::query_as(&format!(
                "SELECT {COMMENT_COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id
                  WHERE c.parent_id = $1 AND c.video_id = $5 AND c.deleted_at IS NULL
                    AND (c.created_at, c.id) > (timestamptz 'epoch' + $2 * interval '1 microsecond', $3)
                    AND {}
                  ORDER BY c.created_at, c.id LIMIT $4",
                unblocked("$6", "c.author_id")
            ))
            .bind(parent)
            .bind(k)
            .bind(id)
            .bind(limit + 1)
            .bind(video_id)
            .bind(viewer)
            .fetch_all(&ctx.pool)
            .await?
        }
    };
    let (rows, has_more) = page(rows, limit);
    let next_cursor = match rows.last() {
        Some(r) if has_more => Some(encode_cursor(&(us(&r.created_at), r.id))),
        _ => None,
    };
    let mut comments: Vec<CommentResponse> = rows.into_iter().map(Into::into).collect();
    if parent.is_none() {
        let ids: Vec<Uuid> = comments
            .iter()
            .filter(|c| c.reply_count > 0)
            .map(|c| c.id)
            .collect();
        if !ids.is_empty() {
            let replies: Vec<CommentRow> = sqlx::query_as(&format!(
                "SELECT {COMMENT_COLUMNS}
                   FROM unnest($1::uuid[]) AS p(id)
                   CROSS JOIN LATERAL (
                     SELECT * FROM comments r WHERE r.parent_id = p.id AND r.deleted_at IS NULL
                        AND {}
                      ORDER BY r.created_at, r.id LIMIT $2) c
                   JOIN users u ON u.id = c.author_id
                  ORDER BY c.created_at, c.id",
                unblocked("$3", "r.author_id")
            ))
            .bind(&ids)
            .bind(INLINE_REPLIES)
            .bind(viewer)
            .fetch_all(&ctx.pool)
            .await?;
            for r in replies {
                if let Some(top) = comments.iter_mut().find(|c| Some(c.id) == r.parent_id) {
                    top.replies.push(r.into());
                }
            }
        }
    }
    Ok(Json(CommentPage {
        comments,
        next_cursor,
        has_more,
    }))
}

/// Body of `PATCH /v1/comments/{id}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EditCommentRequest {
    /// 1–1000 characters, not only spaces; line breaks allowed.
    #[schema(
        max_length = 1000,
        pattern = r"^[^\x00-\x09\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F][^\x00-\x09\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    content: String,
}

#[utoipa::path(patch, path = "/v1/comments/{id}", tag = "comments", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = EditCommentRequest,
    responses((status = 200, description = "`{comment_id, position}`"),
              (status = 403, body = crate::error::ErrorEnvelope),
              (status = 404, body = crate::error::ErrorEnvelope)))]
pub async fn edit(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let comment_id = path_uuid(&id, "Comment")?;
    let mut f = Fields::new(&body);
    let raw = f.required_str("content");
    let content = f.parse("content", raw, CommentBody::parse);
    f.finish()?;
    let Some(body) = content else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated field missing"
        )));
    };
    let written = ctx
        .store
        .comments
        .execute(
            &comment_id.to_string(),
            CommentCommand::EditComment {
                actor: user.user_id,
                body,
                at: crate::now(),
            },
            actor(user.user_id),
        )
        .await
        .map_err(|e| command_error(e, comment_error))?;
    Ok(with_position(
        written.position,
        Json(serde_json::json!({ "comment_id": comment_id, "position": written.position })),
    ))
}

#[utoipa::path(delete, path = "/v1/comments/{id}", tag = "comments", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted, by its author or the video's owner"),
              (status = 403, body = crate::error::ErrorEnvelope),
              (status = 404, body = crate::error::ErrorEnvelope)))]
pub async fn delete(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let comment_id = path_uuid(&id, "Comment")?;
    ctx.wait_for(min, &["videos", "comments"]).await?;
    // whether the actor owns the comment's video (read model; the aggregate
    // decides with it)
    let owns_video: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM comments c JOIN videos v ON v.id = c.video_id
                         WHERE c.id = $1 AND v.owner_id = $2)",
    )
    .bind(comment_id)
    .bind(user.user_id)
    .fetch_one(&ctx.pool)
    .await?;
    let written = ctx
        .store
        .comments
        .execute(
            &comment_id.to_string(),
            CommentCommand::DeleteComment {
                actor: user.user_id,
                actor_owns_video: owns_video,
                at: crate::now(),
            },
            actor(user.user_id),
        )
        .await
        .map_err(|e| command_error(e, comment_error))?;
    Ok(with_position(written.position, StatusCode::NO_CONTENT))
}
