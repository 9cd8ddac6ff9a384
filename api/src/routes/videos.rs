//! `/v1/videos`: uploads, metadata, deletion, views, feeds, batch metadata.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use lokiz_domain::values::{Caption, FieldError, VideoDimensions, Visibility};
use lokiz_domain::video::{VideoCommand, VideoError};
use lokiz_domain::video_view::{VideoView, VideoViewCommand, VideoViewError, ViewerKey};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MaybeAuthUser, MinPosition};
use crate::pagination::{check, encode_cursor, Params};
use crate::reads::{
    listed_for, live_video, unblocked, VideoPage, VideoResponse, VideoRow, VIDEO_COLUMNS,
};
use crate::routes::with_position;
use crate::ApiContext;

/// Largest accepted upload.
pub const MAX_UPLOAD_BYTES: u64 = 500 * 1024 * 1024;
/// How long an upload URL stays valid.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// Accepted upload types and the extension their objects get.
const VIDEO_TYPES: &[(&str, &str)] = &[
    ("video/mp4", "mp4"),
    ("video/quicktime", "mov"),
    ("video/webm", "webm"),
];

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/videos/", get(list_latest))
        .route("/videos/feed", get(feed))
        .route("/videos/prefetch", get(prefetch))
        .route("/videos/upload-url", post(upload_url))
        .route("/videos/batch-metadata", post(batch_metadata))
        .route(
            "/videos/{id}",
            get(get_video).patch(update_video).delete(delete_video),
        )
        .route("/videos/{id}/complete", post(complete_upload))
        .route("/videos/{id}/view", post(view))
}

fn video_error(e: VideoError) -> ApiError {
    match e {
        VideoError::NotFound => ApiError::NotFound { what: "Video" },
        // another user's video answers as if it did not exist, private or
        // not: a 403 would confirm that the id names a video
        VideoError::NotOwner => ApiError::NotFound { what: "Video" },
        VideoError::AlreadyRequested => ApiError::Conflict {
            code: "ALREADY_EXISTS",
            message: "This video already exists.".into(),
            details: None,
        },
        VideoError::AlreadyCompleted => ApiError::Conflict {
            code: "ALREADY_COMPLETED",
            message: "This upload is already complete.".into(),
            details: None,
        },
        VideoError::ObjectMissing => ApiError::Conflict {
            code: "UPLOAD_NOT_FOUND",
            message: "Nothing has been uploaded to this video's upload URL yet.".into(),
            details: None,
        },
        VideoError::SizeMismatch { declared, stored } => ApiError::Conflict {
            code: "SIZE_MISMATCH",
            message: "The uploaded object is not the size that was declared.".into(),
            details: Some(serde_json::json!({ "declared": declared, "stored": stored })),
        },
    }
}

fn actor(user: Uuid) -> HashMap<String, String> {
    HashMap::from([("actor".to_owned(), user.to_string())])
}

// ---------------------------------------------------------------- uploads

/// Body of `POST /v1/videos/upload-url`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadUrlRequest {
    /// 1–255 characters, not only spaces.
    #[schema(
        max_length = 255,
        pattern = r"[^\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    filename: String,
    /// `video/mp4`, `video/quicktime` or `video/webm`.
    #[schema(value_type = String, pattern = r"^video/(mp4|quicktime|webm)$")]
    content_type: String,
    /// Bytes, at most 500 MiB. The upload must be exactly this size.
    #[schema(minimum = 1, maximum = 524288000)]
    file_size: u64,
    /// At most 2200 characters. With `draft_id` and no caption, the
    /// draft's caption.
    #[schema(
        max_length = 2200,
        pattern = r"^[^\x00-\x09\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    caption: Option<String>,
    /// One of the caller's drafts (not published or deleted): completing
    /// this upload publishes it, and it leaves the drafts list.
    draft_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct UploadUrlResponse {
    /// PUT the file here with the same Content-Type, within 15 minutes.
    pub upload_url: String,
    pub file_key: String,
    pub file_url: String,
    pub video_id: Uuid,
}

#[utoipa::path(post, path = "/v1/videos/upload-url", tag = "videos", security(("bearer" = [])),
    request_body = UploadUrlRequest,
    responses((status = 200, body = UploadUrlResponse, headers(("X-Lokiz-Position" = i64))),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn upload_url(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let filename = f.required_str("filename");
    if let Some(name) = filename {
        if name.trim().is_empty() || name.chars().count() > 255 {
            f.errors.push(FieldError::new(
                "filename",
                "length",
                "must be 1 to 255 characters",
            ));
        }
    }
    let content_type = f.required_str("content_type");
    let ext = content_type.and_then(|ct| {
        let found = VIDEO_TYPES
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(ct.trim()));
        if found.is_none() {
            f.errors.push(FieldError::new(
                "content_type",
                "unsupported",
                "must be video/mp4, video/quicktime or video/webm",
            ));
        }
        found.copied()
    });
    let file_size = match body.get("file_size") {
        None | Some(Value::Null) => {
            f.errors
                .push(FieldError::new("file_size", "required", "is required"));
            None
        }
        // a whole number, also when written `1000.0` (JSON does not tell them apart)
        Some(v) => match v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= u64::MAX as f64)
                .map(|n| n as u64)
        }) {
            Some(n) if (1..=MAX_UPLOAD_BYTES).contains(&n) => Some(n),
            Some(_) => {
                f.errors.push(FieldError::new(
                    "file_size",
                    "range",
                    format!("must be 1 to {MAX_UPLOAD_BYTES} bytes"),
                ));
                None
            }
            None => {
                f.errors.push(FieldError::new(
                    "file_size",
                    "type",
                    "must be a whole number of bytes",
                ));
                None
            }
        },
    };
    let raw = f.optional_str("caption");
    let mut caption = f.parse("caption", raw, Caption::parse);
    let draft_id = f.optional_uuid("draft_id");
    if let (Some(draft), true) = (draft_id, f.errors.is_empty()) {
        match crate::routes::drafts::live_draft_caption(&ctx, user.user_id, draft).await? {
            Some(draft_caption) => {
                if raw.is_none() {
                    caption = draft_caption
                        .map(|c| Caption::parse("caption", &c))
                        .transpose()
                        .map_err(|e| ApiError::Validation(vec![e]))?;
                }
            }
            None => f.reject(
                "draft_id",
                "unknown",
                "is not one of your drafts (or it was published or deleted)",
            ),
        }
    }
    f.finish()?;
    let (Some((content_type, ext)), Some(file_size)) = (ext, file_size) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };

    let video_id = Uuid::now_v7();
    let file_key = format!("videos/{video_id}.{ext}");
    let upload_url = ctx
        .blobs
        .presign_put(&file_key, content_type, file_size, UPLOAD_URL_TTL)
        .map_err(ApiError::internal)?;
    let written = ctx
        .store
        .videos
        .execute(
            &video_id.to_string(),
            VideoCommand::RequestUpload {
                video_id,
                owner_id: user.user_id,
                file_key: file_key.clone(),
                content_type: content_type.to_owned(),
                file_size,
                caption,
                draft_id,
                at: crate::now(),
            },
            actor(user.user_id),
        )
        .await
        .map_err(|e| command_error(e, video_error))?;
    Ok(with_position(
        written.position,
        Json(UploadUrlResponse {
            upload_url,
            // not public before it is completed
            file_url: crate::files::file_url(&ctx, &file_key, false),
            file_key,
            video_id,
        }),
    ))
}

/// Body of `POST /v1/videos/{id}/complete`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CompleteRequest {
    #[schema(minimum = 1, maximum = 8192)]
    width: u32,
    #[schema(minimum = 1, maximum = 8192)]
    height: u32,
    /// Seconds, more than 0 and at most 600.
    #[schema(exclusive_minimum = 0, maximum = 600)]
    actual_duration: f64,
}

#[derive(Serialize, ToSchema)]
pub struct CompleteResponse {
    pub video_id: Uuid,
    pub status: &'static str,
    pub position: Option<i64>,
}

#[utoipa::path(post, path = "/v1/videos/{id}/complete", tag = "videos", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)), request_body = CompleteRequest,
    responses((status = 200, body = CompleteResponse),
              (status = 409, description = "UPLOAD_NOT_FOUND, SIZE_MISMATCH or ALREADY_COMPLETED", body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn complete_upload(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut f = Fields::new(&body);
    let number = |f: &mut Fields, name: &'static str| match body.get(name) {
        None | Some(Value::Null) => {
            f.errors
                .push(FieldError::new(name, "required", "is required"));
            None
        }
        Some(v) => {
            let n = v.as_f64();
            if n.is_none() {
                f.errors
                    .push(FieldError::new(name, "type", "must be a number"));
            }
            n
        }
    };
    let width = number(&mut f, "width");
    let height = number(&mut f, "height");
    let duration = number(&mut f, "actual_duration");
    let dims = match (width, height, duration) {
        (Some(w), Some(h), Some(d)) if w.fract() == 0.0 && h.fract() == 0.0 => {
            match VideoDimensions::parse(w as i64, h as i64, d) {
                Ok(dims) => Some(dims),
                Err(errors) => {
                    f.errors.extend(errors);
                    None
                }
            }
        }
        (Some(_), Some(_), Some(_)) => {
            f.errors.push(FieldError::new(
                "width",
                "type",
                "width and height must be whole numbers",
            ));
            None
        }
        _ => None,
    };
    f.finish()?;
    let Some(client_dimensions) = dims else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    ctx.wait_for(min, &["videos"]).await?;
    let upload_of = || {
        sqlx::query_as::<_, (String, Uuid, String, Option<Uuid>)>(
            "SELECT file_key, owner_id, status, draft_id FROM videos WHERE id = $1",
        )
        .bind(video_id)
        .fetch_optional(&ctx.pool)
    };
    let mut upload = upload_of().await?;
    if upload.is_none() {
        // a video requested a moment ago may not be projected yet
        ctx.wait_for_head(&["videos"]).await?;
        upload = upload_of().await?;
    }
    let mut dimensions = client_dimensions;
    let mut stored_size = None;
    if let Some((key, owner, status, _)) = &upload {
        stored_size = ctx
            .blobs
            .stored_size(key)
            .await
            .map_err(ApiError::internal)?;
        // the file is probed only for its owner, once: others and repeats
        // are refused by the command below without costing an ffprobe
        if *owner == user.user_id && status == "processing" && stored_size.is_some() {
            dimensions = probe_upload(&ctx, key).await?;
        }
    }
    let completed = ctx
        .store
        .videos
        .execute(
            &video_id.to_string(),
            VideoCommand::CompleteUpload {
                actor: user.user_id,
                dimensions,
                stored_size,
                at: crate::now(),
            },
            actor(user.user_id),
        )
        .await;
    // An upload made from a draft publishes it, after the video is complete
    // (never a published draft without its video). Should the process die
    // between the two commands, the draft stays listed until the client
    // retries the completion: the retry's ALREADY_COMPLETED (the video's
    // owner, so the draft's) publishes it then; publishing again for the
    // same video records nothing.
    let mut draft_position = None;
    let done = matches!(
        completed,
        Ok(_)
            | Err(cqrs_es::AggregateError::UserError(
                VideoError::AlreadyCompleted
            ))
    );
    if let (true, Some((_, _, _, Some(draft)))) = (done, &upload) {
        draft_position =
            crate::routes::drafts::publish(&ctx, user.user_id, *draft, video_id).await?;
    }
    let written = completed.map_err(|e| command_error(e, video_error))?;
    let position = written.position.max(draft_position);
    Ok(with_position(
        position,
        Json(CompleteResponse {
            video_id,
            status: "completed",
            position,
        }),
    ))
}

/// What the stored file is, by ffprobe (not what the client said): a file
/// that is not a playable video, or one outside the limits, is refused
/// with 422 and removed.
async fn probe_upload(ctx: &ApiContext, key: &str) -> Result<VideoDimensions, ApiError> {
    let probed = match &ctx.local_blobs {
        Some(local) => {
            let path = local.path(key).map_err(ApiError::internal)?;
            lokiz_infra::ai::media::probe(&path).await
        }
        None => {
            let dir = ctx
                .config
                .data_dir
                .join("work")
                .join(format!("probe-{}", Uuid::new_v4().simple()));
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(ApiError::internal)?;
            let path = dir.join("upload");
            let fetched = ctx.blobs.download(key, &path).await;
            let probed = match fetched {
                Ok(Some(_)) => lokiz_infra::ai::media::probe(&path).await,
                Ok(None) => Err(lokiz_infra::ai::media::MediaError::Probe("gone".into())),
                Err(e) => {
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                    return Err(ApiError::internal(e));
                }
            };
            let _ = tokio::fs::remove_dir_all(&dir).await;
            probed
        }
    };
    let refuse = |errors: Vec<FieldError>| async move {
        if let Err(e) = ctx.blobs.delete(key).await {
            tracing::warn!(%key, error = %e, "refused upload not removed");
        }
        ApiError::Validation(errors)
    };
    match probed {
        Ok(info) if info.has_video => {
            match VideoDimensions::parse(
                i64::from(info.width),
                i64::from(info.height),
                info.duration_secs,
            ) {
                Ok(d) => Ok(d),
                Err(errors) => Err(refuse(errors).await),
            }
        }
        Ok(_) | Err(lokiz_infra::ai::media::MediaError::Probe(_)) => {
            Err(refuse(vec![FieldError::new(
                "file",
                "unplayable",
                "the uploaded file is not a playable video; it was removed, upload again",
            )])
            .await)
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

// ---------------------------------------------------------------- one video

/// The video, unless its owner is banned or a block stands between them
/// and `viewer`.
async fn load_video(
    ctx: &ApiContext,
    id: Uuid,
    viewer: Option<Uuid>,
) -> Result<Option<VideoRow>, ApiError> {
    Ok(sqlx::query_as::<_, VideoRow>(&format!(
        "SELECT {VIDEO_COLUMNS} FROM videos v JOIN users u ON u.id = v.owner_id
          WHERE v.id = $1 AND NOT u.banned AND {}",
        unblocked("$2", "v.owner_id")
    ))
    .bind(id)
    .bind(viewer.unwrap_or(Uuid::nil()))
    .fetch_optional(&ctx.pool)
    .await?)
}

#[utoipa::path(get, path = "/v1/videos/{id}", tag = "videos", security((), ("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = VideoResponse), (status = 404, body = crate::error::ErrorEnvelope)))]
pub async fn get_video(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Json<VideoResponse>, ApiError> {
    let id = path_uuid(&id, "Video")?;
    ctx.wait_for(min, &["videos", "users"]).await?;
    let viewer = user.map(|u| u.user_id);
    match load_video(&ctx, id, viewer).await? {
        // deleted videos are gone; unfinished and private ones are the owner's
        Some(v)
            if v.status != "deleted"
                && ((v.status == "completed" && v.visibility == "public")
                    || viewer == Some(v.owner_id)) =>
        {
            Ok(Json(v.into_response(&ctx)))
        }
        _ => Err(ApiError::NotFound { what: "Video" }),
    }
}

/// Body of `PATCH /v1/videos/{id}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UpdateVideoRequest {
    /// At most 2200 characters; null clears.
    #[schema(
        max_length = 2200,
        pattern = r"^[^\x00-\x09\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    caption: Option<String>,
    /// `public` or `private`.
    #[schema(nullable = false, pattern = r"^(public|private)$")]
    visibility: Option<String>,
}

#[utoipa::path(patch, path = "/v1/videos/{id}", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateVideoRequest,
    responses((status = 200, description = "`{video_id, position}`"),
              (status = 404, body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn update_video(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut f = Fields::new(&body);
    let caption = match f.nullable_str("caption") {
        Some(Some(raw)) => f.parse("caption", Some(raw), Caption::parse).map(Some),
        Some(None) => Some(None),
        None => None,
    };
    // visibility can be changed, not cleared: null is refused
    let raw = match f.nullable_str("visibility") {
        Some(None) => {
            f.reject("visibility", "null", "must be public or private, not null");
            None
        }
        Some(Some(v)) => Some(v),
        None => None,
    };
    let visibility = f.parse("visibility", raw, Visibility::parse);
    if f.errors.is_empty() && caption.is_none() && visibility.is_none() {
        return Err(ApiError::field(
            "body",
            "empty",
            "send at least one of caption, visibility",
        ));
    }
    f.finish()?;
    let written = ctx
        .store
        .videos
        .execute(
            &video_id.to_string(),
            VideoCommand::UpdateMetadata {
                actor: user.user_id,
                caption,
                visibility,
                at: crate::now(),
            },
            actor(user.user_id),
        )
        .await
        .map_err(|e| command_error(e, video_error))?;
    Ok(with_position(
        written.position,
        Json(serde_json::json!({ "video_id": video_id, "position": written.position })),
    ))
}

#[utoipa::path(delete, path = "/v1/videos/{id}", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted (soft: gone from every read)"),
              (status = 404, body = crate::error::ErrorEnvelope)))]
pub async fn delete_video(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let written = ctx
        .store
        .videos
        .execute(
            &video_id.to_string(),
            VideoCommand::DeleteVideo {
                actor: user.user_id,
                at: crate::now(),
            },
            actor(user.user_id),
        )
        .await
        .map_err(|e| command_error(e, video_error))?;
    Ok(with_position(written.position, StatusCode::NO_CONTENT))
}

// ---------------------------------------------------------------- views

#[derive(Serialize, ToSchema)]
pub struct ViewResponse {
    pub video_id: Uuid,
    /// False for the owner's own views and repeat views within 24 hours.
    pub counted: bool,
    pub position: Option<i64>,
}

/// Anonymous viewers are keyed by a salted SHA-256 of their address; the
/// salt derives from the server secret, so the hash cannot be reversed by
/// trying addresses without it. The address itself is never stored.
fn anonymous_key(ctx: &ApiContext, ip: std::net::IpAddr) -> ViewerKey {
    let salt = Sha256::digest(format!(
        "lokiz-view-salt:{}",
        ctx.config.jwt_secret.expose()
    ));
    let mut h = Sha256::new();
    h.update(salt);
    h.update(crate::rate_limit::ip_bucket(ip).as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    ViewerKey::anonymous(&hex)
}

#[utoipa::path(post, path = "/v1/videos/{id}/view", tag = "videos", security((), ("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = ViewResponse), (status = 404, body = crate::error::ErrorEnvelope)))]
pub async fn view(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let ip = crate::rate_limit::client_ip(
        &headers,
        Some(addr.ip()),
        ctx.config.rate_limits.trusted_proxies,
    )
    .unwrap_or(addr.ip());
    ctx.wait_for(min, &["videos"]).await?;
    let viewer_id = user.map(|u| u.user_id);
    let video = live_video(&ctx, video_id, viewer_id).await?;
    let viewer = match viewer_id {
        Some(id) => ViewerKey::user(id),
        None => anonymous_key(&ctx, ip),
    };
    let written = ctx
        .store
        .views
        .execute(
            &VideoView::id(video_id, &viewer),
            VideoViewCommand::CountView {
                video_id,
                viewer,
                viewer_is_owner: viewer_id == Some(video.owner_id),
                at: crate::now(),
            },
            HashMap::new(),
        )
        .await
        .map_err(|e| command_error(e, |e: VideoViewError| match e {}))?;
    Ok(with_position(
        written.position,
        Json(ViewResponse {
            video_id,
            counted: written.appended,
            position: written.position,
        }),
    ))
}

// ---------------------------------------------------------------- batch metadata

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct VideoCounts {
    pub view_count: i64,
    pub like_count: i64,
    pub comment_count: i64,
    pub remix_count: i64,
    pub glitch_count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct BatchMetadata {
    /// Unknown ids, and videos the caller may not see (another user's
    /// private or unfinished video): all zeros. Deleted videos: left out.
    pub videos: BTreeMap<Uuid, VideoCounts>,
}

#[utoipa::path(post, path = "/v1/videos/batch-metadata", tag = "videos", security((), ("bearer" = [])),
    params(crate::extract::MinPosition),
    request_body = crate::routes::likes::VideoIds,
    responses((status = 200, body = BatchMetadata),
              (status = 422, description = "more than 100 ids, or malformed ids (named)", body = crate::error::ErrorEnvelope)))]
pub async fn batch_metadata(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    JsonObject(body): JsonObject,
) -> Result<Json<BatchMetadata>, ApiError> {
    let viewer = user.map(|u| u.user_id);
    let mut f = Fields::new(&body);
    let ids = f.uuid_list("video_ids", crate::routes::likes::BATCH_MAX);
    f.finish()?;
    let ids = ids.unwrap_or_default();
    ctx.wait_for(min, &["videos"]).await?;
    // what the caller may not see answers like an unknown id (zeros)
    let rows: Vec<(Uuid, bool, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT id, status = 'deleted', view_count, like_count, comment_count, remix_count,
                glitch_count
           FROM videos
          WHERE id = ANY($1)
            AND (status = 'deleted'
                 OR (status = 'completed' AND visibility = 'public')
                 OR owner_id = $2)",
    )
    .bind(&ids)
    .bind(viewer)
    .fetch_all(&ctx.pool)
    .await?;
    let mut videos: BTreeMap<Uuid, VideoCounts> = ids
        .iter()
        .map(|id| {
            (
                *id,
                VideoCounts {
                    view_count: 0,
                    like_count: 0,
                    comment_count: 0,
                    remix_count: 0,
                    glitch_count: 0,
                },
            )
        })
        .collect();
    for (id, deleted, view_count, like_count, comment_count, remix_count, glitch_count) in rows {
        if deleted {
            videos.remove(&id);
        } else {
            videos.insert(
                id,
                VideoCounts {
                    view_count,
                    like_count,
                    comment_count,
                    remix_count,
                    glitch_count,
                },
            );
        }
    }
    Ok(Json(BatchMetadata { videos }))
}

// ---------------------------------------------------------------- feeds

/// Which feed: `latest` (default), `trending`, `following` (sign-in),
/// `personalized`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ToSchema)]
#[schema(as = FeedAlgorithm, rename_all = "lowercase")]
pub enum Algorithm {
    Latest,
    Trending,
    Following,
    Personalized,
}

/// The sort key a page ended at, as it travels in a cursor:
/// `[tag, key, id]`, where the key is publication time in microseconds since
/// the epoch (exact) for time-ordered feeds, or the score for ranked ones.
type FeedCursor = (String, serde_json::Number, Uuid);

/// Where a page starts: strictly after `(key, id)` in descending order.
/// Without a cursor, after a sentinel above every row, so every page is the
/// same index range scan.
enum After {
    Time(i64, Uuid),
    Score(f64, Uuid),
}

/// Beyond any publication time (about 285 years after the epoch).
const TIME_SENTINEL: i64 = 9_000_000_000_000_000;

fn after(algorithm: Algorithm, cursor: Option<FeedCursor>) -> Result<After, ApiError> {
    let tag = algorithm.tag();
    let bad = |message| ApiError::field("cursor", "format", message);
    let time_ordered = matches!(algorithm, Algorithm::Latest | Algorithm::Following);
    match cursor {
        None if time_ordered => Ok(After::Time(TIME_SENTINEL, Uuid::max())),
        None => Ok(After::Score(f64::INFINITY, Uuid::max())),
        Some((t, _, _)) if t != tag => Err(bad("belongs to another feed")),
        Some((_, k, id)) if time_ordered => k
            .as_i64()
            .map(|k| After::Time(k.clamp(-TIME_SENTINEL, TIME_SENTINEL), id))
            .ok_or_else(|| bad("is not a cursor this server issued")),
        Some((_, k, id)) => k
            .as_f64()
            .filter(|k| k.is_finite())
            .map(|k| After::Score(k, id))
            .ok_or_else(|| bad("is not a cursor this server issued")),
    }
}

impl Algorithm {
    fn tag(self) -> &'static str {
        match self {
            Algorithm::Latest => "t",
            Algorithm::Following => "f",
            Algorithm::Trending => "h",
            Algorithm::Personalized => "p",
        }
    }
}

const TIME_KEY: &str = "(extract(epoch FROM v.published_at) * 1000000)::bigint";
const TIME_AFTER: &str =
    "(v.published_at, v.id) < (timestamptz 'epoch' + $1 * interval '1 microsecond', $2)";

async fn feed_page(
    ctx: &ApiContext,
    algorithm: Algorithm,
    viewer: Option<Uuid>,
    cursor: Option<FeedCursor>,
    limit: i64,
) -> Result<VideoPage, ApiError> {
    let after = after(algorithm, cursor)?;
    let base = format!("SELECT {VIDEO_COLUMNS}");
    // $4: the viewer (the nil id for nobody)
    let listed = listed_for("$4::uuid");
    // Each feed is a keyset scan of a partial index (ARCHITECTURE.md, "Feeds").
    let sql = match algorithm {
        Algorithm::Latest => format!(
            "{base}, {TIME_KEY} AS tk, 0::float8 AS sk
               FROM videos v JOIN users u ON u.id = v.owner_id
              WHERE {listed} AND {TIME_AFTER}
              ORDER BY v.published_at DESC, v.id DESC LIMIT $3"
        ),
        Algorithm::Following => format!(
            "{base}, {TIME_KEY} AS tk, 0::float8 AS sk
               FROM follows f
               JOIN videos v ON v.owner_id = f.followee_id AND v.listed
               JOIN users u ON u.id = v.owner_id
              WHERE f.follower_id = $4 AND {listed} AND {TIME_AFTER}
              ORDER BY v.published_at DESC, v.id DESC LIMIT $3"
        ),
        Algorithm::Trending => format!(
            "{base}, 0::bigint AS tk, v.hot_score AS sk
               FROM videos v JOIN users u ON u.id = v.owner_id
              WHERE {listed} AND (v.hot_score, v.id) < ($1, $2)
              ORDER BY v.hot_score DESC, v.id DESC LIMIT $3"
        ),
        // The trending score, raised by 1.0 for creators the viewer follows
        // and by 0.5 for creators of videos they liked (their 200 latest
        // likes); candidates: the 500 hottest videos and the 500 newest from
        // those creators.
        Algorithm::Personalized => format!(
            "WITH followed AS (SELECT followee_id AS id FROM follows WHERE follower_id = $4),
                  liked AS (SELECT DISTINCT v2.owner_id AS id
                              FROM (SELECT video_id FROM likes WHERE user_id = $4
                                     ORDER BY created_at DESC LIMIT 200) l
                              JOIN videos v2 ON v2.id = l.video_id),
                  candidates AS (
                    (SELECT id FROM videos WHERE listed ORDER BY hot_score DESC, id DESC LIMIT 500)
                    UNION
                    (SELECT id FROM videos WHERE listed
                        AND owner_id IN (SELECT id FROM followed UNION SELECT id FROM liked)
                      ORDER BY published_at DESC LIMIT 500)),
                  scored AS (
                    SELECT v.id, v.hot_score
                           + CASE WHEN v.owner_id IN (SELECT id FROM followed) THEN 1.0 ELSE 0 END
                           + CASE WHEN v.owner_id IN (SELECT id FROM liked) THEN 0.5 ELSE 0 END AS k
                      FROM candidates c JOIN videos v ON v.id = c.id)
             {base}, 0::bigint AS tk, s.k::float8 AS sk
               FROM scored s JOIN videos v ON v.id = s.id JOIN users u ON u.id = v.owner_id
              WHERE (s.k, v.id) < ($1, $2) AND {listed}
              ORDER BY s.k DESC, v.id DESC LIMIT $3"
        ),
    };
    #[derive(sqlx::FromRow)]
    struct Keyed {
        #[sqlx(flatten)]
        video: VideoRow,
        tk: i64,
        sk: f64,
    }
    let query = sqlx::query_as::<_, Keyed>(&sql);
    let query = match after {
        After::Time(k, id) => query.bind(k).bind(id),
        After::Score(k, id) => query.bind(k).bind(id),
    };
    let rows = query
        .bind(limit + 1)
        .bind(viewer.unwrap_or(Uuid::nil()))
        .fetch_all(&ctx.pool)
        .await?;
    Ok(VideoPage::from_rows(
        ctx,
        rows,
        limit,
        |r| r.video,
        |r| {
            let key = match algorithm {
                Algorithm::Latest | Algorithm::Following => serde_json::Number::from(r.tk),
                _ => serde_json::Number::from_f64(r.sk).unwrap_or_else(|| 0.into()),
            };
            encode_cursor(&(algorithm.tag(), key, r.video.id))
        },
    ))
}

#[utoipa::path(get, path = "/v1/videos/", tag = "videos", security((), ("bearer" = [])),
    params(crate::extract::MinPosition, ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = VideoPage, description = "Newest first"), (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn list_latest(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<VideoPage>, ApiError> {
    let mut errors = Vec::new();
    let after = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["videos", "users", "blocks"]).await?;
    let viewer = user.map(|u| u.user_id);
    Ok(Json(
        feed_page(&ctx, Algorithm::Latest, viewer, after, limit).await?,
    ))
}

#[utoipa::path(get, path = "/v1/videos/feed", tag = "videos", security((), ("bearer" = [])),
    params(crate::extract::MinPosition, ("algorithm" = Option<Algorithm>, Query, description = "latest (default), trending, following (sign-in), personalized"),
           ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = VideoPage), (status = 401, body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn feed(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<VideoPage>, ApiError> {
    let mut errors = Vec::new();
    let algorithm = match params.get("algorithm").unwrap_or("latest") {
        "latest" => Algorithm::Latest,
        "trending" => Algorithm::Trending,
        "following" => Algorithm::Following,
        "personalized" => Algorithm::Personalized,
        _ => {
            errors.push(FieldError::new(
                "algorithm",
                "format",
                "must be latest, trending, following or personalized",
            ));
            Algorithm::Latest
        }
    };
    let after = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    let viewer = user.map(|u| u.user_id);
    let algorithm = match (algorithm, viewer) {
        (Algorithm::Following, None) => {
            return Err(ApiError::Unauthorized {
                code: "UNAUTHENTICATED",
                message: "Sign in to see videos from the people you follow.",
            })
        }
        // with nothing to personalize from, personalized is trending
        (Algorithm::Personalized, None) => Algorithm::Trending,
        (a, _) => a,
    };
    ctx.wait_for(min, &["videos", "users", "follows", "likes", "blocks"])
        .await?;
    Ok(Json(
        feed_page(&ctx, algorithm, viewer, after, limit).await?,
    ))
}

#[utoipa::path(get, path = "/v1/videos/prefetch", tag = "videos", security((), ("bearer" = [])),
    params(("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"), ("count" = Option<i64>, Query, minimum = 1, maximum = 10, description = "1–10, default 5")),
    responses((status = 200, body = VideoPage, description = "The next videos of the latest feed, to preload")))]
pub async fn prefetch(
    State(ctx): State<ApiContext>,
    MaybeAuthUser(user): MaybeAuthUser,
    params: Params,
) -> Result<Json<VideoPage>, ApiError> {
    let mut errors = Vec::new();
    let after = params.cursor(&mut errors);
    let count = params.number("count", 5, 1, 10, &mut errors);
    check(errors)?;
    Ok(Json(
        feed_page(
            &ctx,
            Algorithm::Latest,
            user.map(|u| u.user_id),
            after,
            count,
        )
        .await?,
    ))
}
