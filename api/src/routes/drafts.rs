//! Drafts: `POST /v1/videos/draft` (create, or replace with `draft_id`),
//! `GET /v1/videos/drafts` (the caller's, newest first, cursor paginated),
//! `DELETE /v1/videos/drafts/{id}`. A draft is published through the
//! upload flow: `POST /v1/videos/upload-url` with `draft_id`, and the
//! upload's completion publishes it (routes/videos.rs).
//!
//! Drafts are private: another user's draft answers 404 everywhere.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::draft::{DraftCommand, DraftError, DraftParams};
use lokiz_domain::values::Caption;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MinPosition};
use crate::pagination::{check, encode_cursor, page, Params};
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/videos/draft", post(save))
        .route("/videos/drafts", get(list))
        .route("/videos/drafts/{id}", delete(remove))
}

pub fn draft_error(e: DraftError) -> ApiError {
    match e {
        // someone else's draft is not confirmed to exist
        DraftError::NotFound | DraftError::NotOwner | DraftError::Deleted => {
            ApiError::NotFound { what: "Draft" }
        }
        DraftError::AlreadyExists => ApiError::Conflict {
            code: "ALREADY_EXISTS",
            message: "This draft already exists.".into(),
            details: None,
        },
        DraftError::AlreadyPublished => ApiError::Conflict {
            code: "DRAFT_PUBLISHED",
            message: "This draft was already published as a video.".into(),
            details: None,
        },
    }
}

fn actor(user: Uuid) -> HashMap<String, String> {
    HashMap::from([("actor".to_owned(), user.to_string())])
}

/// Body of `POST /v1/videos/draft`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SaveDraftRequest {
    /// At most 2200 characters (may be empty).
    #[schema(
        max_length = 2200,
        pattern = r"^[^\x00-\x09\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    caption: String,
    /// The editor's parameters: any JSON object of at most 16 KiB (as
    /// JSON). Replaced whole on update; absent or null: none.
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
    /// Replace this draft (the caller's, not yet published or deleted)
    /// instead of creating one.
    draft_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct DraftSaved {
    pub draft_id: Uuid,
    pub caption: String,
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
    /// True when this request created the draft.
    pub created: bool,
    pub position: Option<i64>,
}

#[utoipa::path(post, path = "/v1/videos/draft", tag = "videos", security(("bearer" = [])),
    request_body = SaveDraftRequest,
    responses((status = 201, body = DraftSaved, description = "Created", headers(("X-Lokiz-Position" = i64))),
              (status = 200, body = DraftSaved, description = "Updated", headers(("X-Lokiz-Position" = i64))),
              (status = 404, description = "`draft_id` names no draft of the caller's (or a deleted one)", body = crate::error::ErrorEnvelope),
              (status = 409, description = "`DRAFT_PUBLISHED`: the draft became a video", body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn save(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let raw = f.required_str("caption");
    let caption = f.parse("caption", raw, Caption::parse);
    let params = match body.get("params") {
        None | Some(Value::Null) => None,
        Some(v) => match DraftParams::parse("params", v) {
            Ok(p) => Some(p),
            Err(e) => {
                f.errors.push(e);
                None
            }
        },
    };
    let draft_id = f.optional_uuid("draft_id");
    let create = !f.has("draft_id") || body.get("draft_id") == Some(&Value::Null);
    f.finish()?;
    let Some(caption) = caption else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated field missing"
        )));
    };
    let id = draft_id.unwrap_or_else(Uuid::now_v7);
    let written = ctx
        .store
        .drafts
        .execute(
            &id.to_string(),
            DraftCommand::SaveDraft {
                draft_id: id,
                owner_id: user.user_id,
                caption: caption.clone(),
                params: params.clone(),
                create,
                at: crate::now(),
            },
            actor(user.user_id),
        )
        .await
        .map_err(|e| command_error(e, draft_error))?;
    let status = if create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_position(
        written.position,
        (
            status,
            Json(DraftSaved {
                draft_id: id,
                caption: caption.into_inner(),
                params: params.map(|p| p.into_value()),
                created: create,
                position: written.position,
            }),
        ),
    ))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct DraftView {
    pub id: Uuid,
    pub caption: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct DraftPage {
    pub drafts: Vec<DraftView>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(Serialize, Deserialize)]
struct DraftCursor {
    at: DateTime<Utc>,
    id: Uuid,
}

#[utoipa::path(get, path = "/v1/videos/drafts", tag = "videos", security(("bearer" = [])),
    params(crate::extract::MinPosition,
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"),
           ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = DraftPage, description = "The caller's drafts not yet published or deleted, newest created first")))]
pub async fn list(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<DraftPage>, ApiError> {
    let mut errors = Vec::new();
    let after: Option<DraftCursor> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["drafts"]).await?;
    let rows: Vec<DraftView> = sqlx::query_as(
        "SELECT id, caption, params, created_at, updated_at FROM drafts
          WHERE owner_id = $1 AND status = 'draft'
            AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
          ORDER BY created_at DESC, id DESC
          LIMIT $4",
    )
    .bind(user.user_id)
    .bind(after.as_ref().map(|c| c.at))
    .bind(after.as_ref().map(|c| c.id))
    .bind(limit + 1)
    .fetch_all(&ctx.pool)
    .await?;
    let (drafts, has_more) = page(rows, limit);
    let next_cursor = if has_more {
        drafts.last().map(|d| {
            encode_cursor(&DraftCursor {
                at: d.created_at,
                id: d.id,
            })
        })
    } else {
        None
    };
    Ok(Json(DraftPage {
        drafts,
        next_cursor,
        has_more,
    }))
}

#[utoipa::path(delete, path = "/v1/videos/drafts/{id}", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted", headers(("X-Lokiz-Position" = i64))),
              (status = 404, body = crate::error::ErrorEnvelope),
              (status = 409, description = "`DRAFT_PUBLISHED`: the draft became a video", body = crate::error::ErrorEnvelope)))]
pub async fn remove(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let draft_id = path_uuid(&id, "Draft")?;
    let written = ctx
        .store
        .drafts
        .execute(
            &draft_id.to_string(),
            DraftCommand::DeleteDraft {
                actor: user.user_id,
                at: crate::now(),
            },
            actor(user.user_id),
        )
        .await
        .map_err(|e| command_error(e, draft_error))?;
    Ok(with_position(written.position, StatusCode::NO_CONTENT))
}

/// Publishes `draft_id` as `video_id` for `user` (the upload's completion).
/// A draft deleted or published meanwhile is left as it is: the video is
/// complete either way. Returns the position of the draft's event.
pub async fn publish(
    ctx: &ApiContext,
    user: Uuid,
    draft_id: Uuid,
    video_id: Uuid,
) -> Result<Option<i64>, ApiError> {
    let result = ctx
        .store
        .drafts
        .execute(
            &draft_id.to_string(),
            DraftCommand::PublishDraft {
                actor: user,
                video_id,
                at: crate::now(),
            },
            actor(user),
        )
        .await;
    match result {
        Ok(written) => Ok(written.position),
        Err(cqrs_es::AggregateError::UserError(e)) => {
            tracing::info!(%draft_id, %video_id, error = %e, "draft not published");
            Ok(None)
        }
        Err(e) => Err(command_error(e, draft_error)),
    }
}

/// The caption of `user`'s live draft `draft_id`, for an upload made from
/// it; `None` when it is not one (someone else's, published, deleted, or
/// no draft at all).
pub async fn live_draft_caption(
    ctx: &ApiContext,
    user: Uuid,
    draft_id: Uuid,
) -> Result<Option<Option<String>>, ApiError> {
    let fetch = || {
        sqlx::query_as::<_, (Uuid, Option<String>, String)>(
            "SELECT owner_id, caption, status FROM drafts WHERE id = $1",
        )
        .bind(draft_id)
        .fetch_optional(&ctx.pool)
    };
    let mut row = fetch().await?;
    if row.is_none() {
        // a draft saved a moment ago may not be projected yet
        ctx.wait_for_head(&["drafts"]).await?;
        row = fetch().await?;
    }
    Ok(match row {
        Some((owner, caption, status)) if owner == user && status == "draft" => Some(caption),
        _ => None,
    })
}
