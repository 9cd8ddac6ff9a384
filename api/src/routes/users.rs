//! `/v1/users`: public profiles and the signed-in user's own profile.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, patch};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::user::{ProfileChanges, UserCommand, UserError};
use lokiz_domain::values::{Bio, DisplayName, ImageUrl};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MaybeAuthUser, MinPosition};
use crate::reads::unblocked;
use crate::routes::with_position;
use crate::ApiContext;

/// Read models behind a user's own view.
pub const ME_READS: &[&str] = &["users", "wallets"];

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/users/me", patch(update_me))
        .route("/users/me/stats", get(my_stats))
        .route("/users/{id}", get(get_user))
}

/// The signed-in user, as in the seed's auth responses.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct MeView {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub bio: Option<String>,
    pub profile_image_url: Option<String>,
    pub credits: i64,
    pub created_at: DateTime<Utc>,
}

/// Anyone's public profile (no email, no credits).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PublicUser {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub bio: Option<String>,
    pub profile_image_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub follower_count: i64,
    pub following_count: i64,
    /// Published videos.
    pub video_count: i64,
}

/// `GET /v1/users/me/stats`, in the seed's shape.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct MyStats {
    pub total_videos: i64,
    pub total_views: i64,
    pub total_likes: i64,
    pub total_comments: i64,
    pub total_followers: i64,
    /// Videos of yours made by glitching another video.
    pub total_glitches_created: i64,
    /// Glitches others made from your videos.
    pub total_glitches_received: i64,
    pub credits_used: i64,
    pub credits_remaining: i64,
}

pub async fn load_me(ctx: &ApiContext, user_id: Uuid) -> Result<Option<MeView>, ApiError> {
    Ok(sqlx::query_as::<_, MeView>(
        "SELECT u.id, u.username, u.email, u.display_name, u.bio, u.profile_image_url,
                coalesce(w.balance, 0) AS credits, u.created_at
           FROM users u LEFT JOIN wallets w ON w.user_id = u.id
          WHERE u.id = $1",
    )
    .bind(user_id)
    .fetch_optional(&ctx.pool)
    .await?)
}

/// The user's own view; a user whose registration the read models have not
/// caught up with yet is waited for (bounded), not reported missing. The
/// `users` and `wallets` projections run apart: a user row whose wallet
/// (the signup grant) is not projected yet would show 0 credits, so that is
/// waited for too.
pub async fn load_me_settled(ctx: &ApiContext, user_id: Uuid) -> Result<MeView, ApiError> {
    if let Some(me) = load_me(ctx, user_id).await? {
        let has_wallet: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM wallets WHERE user_id = $1)")
                .bind(user_id)
                .fetch_one(&ctx.pool)
                .await?;
        if has_wallet {
            return Ok(me);
        }
    }
    ctx.wait_for_head(ME_READS).await?;
    load_me(ctx, user_id)
        .await?
        .ok_or(ApiError::NotFound { what: "User" })
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security((), ("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = PublicUser), (status = 404, body = crate::error::ErrorEnvelope, description = "No such user, a banned one, or one a block stands between the caller and"),
              (status = 503, description = "CONSISTENCY_TIMEOUT", body = crate::error::ErrorEnvelope)))]
pub async fn get_user(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(viewer): MaybeAuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Json<PublicUser>, ApiError> {
    let id = path_uuid(&id, "User")?;
    ctx.wait_for(min, &["users", "follows", "videos", "blocks"])
        .await?;
    let user = sqlx::query_as::<_, PublicUser>(&format!(
        "SELECT u.id, u.username, u.display_name, u.bio, u.profile_image_url, u.created_at,
                coalesce(fc.followers, 0) AS follower_count,
                coalesce(fc.following, 0) AS following_count,
                (SELECT count(*) FROM videos v WHERE v.owner_id = u.id AND v.listed) AS video_count
           FROM users u LEFT JOIN follow_counts fc ON fc.user_id = u.id
          WHERE u.id = $1 AND NOT u.banned AND {}",
        unblocked("$2", "u.id")
    ))
    .bind(id)
    .bind(viewer.map(|v| v.user_id))
    .fetch_optional(&ctx.pool)
    .await?
    .ok_or(ApiError::NotFound { what: "User" })?;
    Ok(Json(user))
}

#[utoipa::path(get, path = "/v1/users/me/stats", tag = "users", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    responses((status = 200, body = MyStats), (status = 401, body = crate::error::ErrorEnvelope)))]
pub async fn my_stats(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
) -> Result<Json<MyStats>, ApiError> {
    ctx.wait_for(min, &["videos", "follows", "wallets"]).await?;
    let stats = sqlx::query_as::<_, MyStats>(
        "SELECT count(*) FILTER (WHERE v.listed) AS total_videos,
                coalesce(sum(v.view_count) FILTER (WHERE v.status <> 'deleted'), 0)::bigint AS total_views,
                coalesce(sum(v.like_count) FILTER (WHERE v.status <> 'deleted'), 0)::bigint AS total_likes,
                coalesce(sum(v.comment_count) FILTER (WHERE v.status <> 'deleted'), 0)::bigint AS total_comments,
                (SELECT coalesce(max(followers), 0) FROM follow_counts WHERE user_id = $1) AS total_followers,
                count(*) FILTER (WHERE v.source_video_id IS NOT NULL AND v.status <> 'deleted') AS total_glitches_created,
                coalesce(sum(v.glitch_count) FILTER (WHERE v.status <> 'deleted'), 0)::bigint AS total_glitches_received,
                (SELECT coalesce(max(granted - balance), 0) FROM wallets WHERE user_id = $1) AS credits_used,
                (SELECT coalesce(max(balance), 0) FROM wallets WHERE user_id = $1) AS credits_remaining
           FROM videos v WHERE v.owner_id = $1",
    )
    .bind(user.user_id)
    .fetch_one(&ctx.pool)
    .await?;
    Ok(Json(stats))
}

/// Body of `PATCH /v1/users/me`. Send only what changes; `null` clears `bio`
/// or `profile_image_url`. `username` and `email` cannot be changed.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UpdateProfileRequest {
    /// 1–50 characters, one line.
    #[schema(
        nullable = false,
        max_length = 50,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    display_name: Option<String>,
    /// At most 500 characters; null clears.
    #[schema(
        max_length = 500,
        pattern = r"^[^\x00-\x09\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    bio: Option<String>,
    /// The `file_url` of one of the caller's completed profile images
    /// (`POST /v1/images/upload-url`, then `POST /v1/images/{id}/complete`);
    /// any other URL is refused (422). Null clears.
    #[schema(
        max_length = 2048,
        pattern = r"^https?://[^\s/]+(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*/v1/images/[0-9a-fA-F-]{36}/file$"
    )]
    profile_image_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UpdateProfileResponse {
    pub user: MeView,
    /// Global position of the update's event: send it as
    /// `X-Lokiz-Min-Position` to read your write.
    pub position: Option<i64>,
}

#[utoipa::path(patch, path = "/v1/users/me", tag = "users", request_body = UpdateProfileRequest,
    security(("bearer" = [])),
    responses((status = 200, body = UpdateProfileResponse, headers(("X-Lokiz-Position" = i64))),
              (status = 401, body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn update_me(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    f.forbid("username", "cannot be changed");
    f.forbid("email", "cannot be changed");
    let display_name = match body.get("display_name") {
        Some(serde_json::Value::Null) => {
            f.errors.push(lokiz_domain::values::FieldError::new(
                "display_name",
                "required",
                "cannot be null",
            ));
            None
        }
        _ => {
            let raw = f.optional_str("display_name");
            f.parse("display_name", raw, DisplayName::parse)
        }
    };
    let bio = match f.nullable_str("bio") {
        Some(Some(raw)) => f.parse("bio", Some(raw), Bio::parse).map(Some),
        Some(None) => Some(None),
        None => None,
    };
    // a profile image is one of the caller's own completed profile images
    // (`file_url` of POST /v1/images/{id}/complete), nothing else
    let profile_image_url = match f.nullable_str("profile_image_url") {
        Some(Some(raw)) if raw.len() > ImageUrl::MAX => {
            f.reject(
                "profile_image_url",
                "length",
                format!("must be at most {} characters", ImageUrl::MAX),
            );
            None
        }
        Some(Some(raw)) => {
            if crate::routes::images::is_own_profile_image(&ctx, user.user_id, raw).await? {
                Some(Some(ImageUrl::issued(raw.to_owned())))
            } else {
                f.reject(
                    "profile_image_url",
                    "not_your_image",
                    "must be the file_url of one of your completed profile images \
                     (POST /v1/images/upload-url, then POST /v1/images/{id}/complete)",
                );
                None
            }
        }
        Some(None) => Some(None),
        None => None,
    };
    let changes = ProfileChanges {
        display_name,
        bio,
        profile_image_url,
    };
    if f.errors.is_empty() && changes.is_empty() {
        return Err(ApiError::field(
            "body",
            "empty",
            "send at least one of display_name, bio, profile_image_url",
        ));
    }
    f.finish()?;

    let written = ctx
        .store
        .users
        .execute(
            &user.user_id.to_string(),
            UserCommand::UpdateProfile {
                changes: changes.clone(),
                at: crate::now(),
            },
            HashMap::from([("actor".to_owned(), user.user_id.to_string())]),
        )
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                UserError::NotRegistered => ApiError::NotFound { what: "User" },
                UserError::AlreadyRegistered | UserError::CannotBanAdmin => {
                    ApiError::internal(anyhow::anyhow!("{e}"))
                }
            })
        })?;

    // Answer with the profile as it is after this update: the read model's
    // row with this update's changes laid over it (the projection may not
    // have applied them yet; only this user changes this row).
    let mut me = match load_me(&ctx, user.user_id).await? {
        Some(me) => me,
        None => {
            ctx.wait_for(written.position, ME_READS).await?;
            load_me(&ctx, user.user_id)
                .await?
                .ok_or(ApiError::NotFound { what: "User" })?
        }
    };
    if let Some(d) = changes.display_name {
        me.display_name = d.into_inner();
    }
    if let Some(b) = changes.bio {
        me.bio = b.map(Bio::into_inner);
    }
    if let Some(u) = changes.profile_image_url {
        me.profile_image_url = u.map(ImageUrl::into_inner);
    }
    let body = UpdateProfileResponse {
        user: me,
        position: written.position,
    };
    Ok(with_position(written.position, Json(json!(body))))
}
