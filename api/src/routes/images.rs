//! Images: `POST /v1/images/upload-url` (a profile picture or a thumbnail:
//! PNG, JPEG or WebP, at most 5 MiB), the PUT through the blob store like
//! videos, then `POST /v1/images/{id}/complete`, which probes the stored
//! file with ffprobe — it must really be an image of the declared type,
//! within bounded dimensions — and only then makes its `file_url` usable
//! (served to anybody; accepted as `profile_image_url` for its owner when
//! its purpose is `profile`). The `file_url` is this server's
//! `GET /v1/images/{id}/file`, which redirects to where the file is served
//! (the local store's plain URL, or a signed S3 URL): it stays valid in a
//! profile whatever the blob store.
//!
//! Images are events (the Image aggregate), as video uploads are: the
//! request and the completion are facts with an owner, audited and rebuilt
//! like the rest.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lokiz_domain::image::{ImageCommand, ImageError, ImagePurpose};
use lokiz_domain::values::FieldError;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{parse_id, path_uuid, AuthUser, Fields, JsonObject, MinPosition};
use crate::routes::videos::UPLOAD_URL_TTL;
use crate::routes::with_position;
use crate::ApiContext;

/// Largest accepted image.
pub const MAX_IMAGE_BYTES: u64 = 5 * 1024 * 1024;
/// Largest accepted width and height, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 4096;
/// Accepted types: what the client declares, the extension its object
/// gets, and the codec ffprobe must find.
const IMAGE_TYPES: &[(&str, &str, &str)] = &[
    ("image/jpeg", "jpg", "mjpeg"),
    ("image/png", "png", "png"),
    ("image/webp", "webp", "webp"),
];

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/images/upload-url", post(upload_url))
        .route("/images/{id}/complete", post(complete))
        .route("/images/{id}/file", get(file))
}

/// The stable URL of image `image_id` (its `file_url`).
pub fn image_url(ctx: &ApiContext, image_id: Uuid) -> String {
    format!("{}/v1/images/{image_id}/file", ctx.public_base)
}

fn image_error(e: ImageError) -> ApiError {
    match e {
        // another user's image answers as if it did not exist
        ImageError::NotFound | ImageError::NotOwner => ApiError::NotFound { what: "Image" },
        ImageError::AlreadyRequested => ApiError::Conflict {
            code: "ALREADY_EXISTS",
            message: "This image already exists.".into(),
            details: None,
        },
        ImageError::AlreadyCompleted => ApiError::Conflict {
            code: "ALREADY_COMPLETED",
            message: "This upload is already complete.".into(),
            details: None,
        },
        ImageError::ObjectMissing => ApiError::Conflict {
            code: "UPLOAD_NOT_FOUND",
            message: "Nothing has been uploaded to this image's upload URL yet.".into(),
            details: None,
        },
        ImageError::SizeMismatch { declared, stored } => ApiError::Conflict {
            code: "SIZE_MISMATCH",
            message: "The uploaded file is not the size that was declared.".into(),
            details: Some(serde_json::json!({ "declared": declared, "stored": stored })),
        },
    }
}

fn actor(user: Uuid) -> HashMap<String, String> {
    HashMap::from([("actor".to_owned(), user.to_string())])
}

/// Body of `POST /v1/images/upload-url`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ImageUploadRequest {
    /// `profile` (a profile picture) or `thumbnail`.
    #[schema(pattern = "^(profile|thumbnail)$")]
    purpose: String,
    /// `image/jpeg`, `image/png` or `image/webp`: the file must really be one.
    #[schema(pattern = "^image/(jpeg|png|webp)$")]
    content_type: String,
    /// Bytes, at most 5 MiB. The upload must be exactly this size.
    #[schema(minimum = 1, maximum = 5242880)]
    size_bytes: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ImageUploadUrl {
    /// PUT the file here with the same Content-Type, within 15 minutes.
    pub upload_url: String,
    pub file_key: String,
    /// Where the image will be served once completed (404 before): a
    /// redirect to the file.
    pub file_url: String,
    pub image_id: Uuid,
}

#[utoipa::path(post, path = "/v1/images/upload-url", tag = "images", security(("bearer" = [])),
    request_body = ImageUploadRequest,
    responses((status = 200, body = ImageUploadUrl, headers(("X-Lokiz-Position" = i64))),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn upload_url(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let raw = f.required_str("purpose");
    let purpose = f.parse("purpose", raw, |field, raw| {
        ImagePurpose::parse(raw)
            .ok_or_else(|| FieldError::new(field, "format", "must be profile or thumbnail"))
    });
    let raw = f.required_str("content_type");
    let kind = f.parse("content_type", raw, |field, raw| {
        IMAGE_TYPES
            .iter()
            .find(|(t, _, _)| *t == raw)
            .copied()
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    "unsupported",
                    "must be image/jpeg, image/png or image/webp",
                )
            })
    });
    let size = match body.get("size_bytes") {
        None | Some(Value::Null) => {
            f.reject("size_bytes", "required", "is required");
            None
        }
        Some(v) => match v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= u64::MAX as f64)
                .map(|n| n as u64)
        }) {
            Some(n) if (1..=MAX_IMAGE_BYTES).contains(&n) => Some(n),
            Some(_) => {
                f.reject(
                    "size_bytes",
                    "range",
                    format!("must be 1 to {MAX_IMAGE_BYTES} bytes"),
                );
                None
            }
            None => {
                f.reject("size_bytes", "type", "must be a whole number of bytes");
                None
            }
        },
    };
    f.finish()?;
    let (Some(purpose), Some((content_type, ext, _)), Some(size)) = (purpose, kind, size) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let image_id = Uuid::now_v7();
    let file_key = format!("images/{image_id}.{ext}");
    let upload_url = ctx
        .blobs
        .presign_put(&file_key, content_type, size, UPLOAD_URL_TTL)
        .map_err(ApiError::internal)?;
    let written = ctx
        .store
        .images
        .execute(
            &image_id.to_string(),
            ImageCommand::RequestUpload {
                image_id,
                owner_id: user.user_id,
                purpose,
                file_key: file_key.clone(),
                content_type: content_type.to_owned(),
                file_size: size,
                at: crate::now(),
            },
            actor(user.user_id),
        )
        .await
        .map_err(|e| command_error(e, image_error))?;
    Ok(with_position(
        written.position,
        Json(ImageUploadUrl {
            upload_url,
            file_url: image_url(&ctx, image_id),
            file_key,
            image_id,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct ImageCompleted {
    pub image_id: Uuid,
    pub status: &'static str,
    pub purpose: &'static str,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    /// Usable from now on (e.g. as `profile_image_url`).
    pub file_url: String,
    pub position: Option<i64>,
}

#[utoipa::path(post, path = "/v1/images/{id}/complete", tag = "images", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = ImageCompleted),
              (status = 404, body = crate::error::ErrorEnvelope),
              (status = 409, description = "UPLOAD_NOT_FOUND, SIZE_MISMATCH or ALREADY_COMPLETED", body = crate::error::ErrorEnvelope),
              (status = 422, description = "`VALIDATION_FAILED` on `file`: the stored file is not an image of the declared type within 1–4096 px a side (it is removed; upload again)", body = crate::error::ErrorEnvelope)))]
pub async fn complete(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let image_id = path_uuid(&id, "Image")?;
    ctx.wait_for(min, &["images"]).await?;
    let row_of = || {
        sqlx::query_as::<_, (Uuid, String, String, String, String)>(
            "SELECT owner_id, purpose, file_key, content_type, status FROM images WHERE id = $1",
        )
        .bind(image_id)
        .fetch_optional(&ctx.pool)
    };
    let mut row = row_of().await?;
    if row.is_none() {
        // an image requested a moment ago may not be projected yet
        ctx.wait_for_head(&["images"]).await?;
        row = row_of().await?;
    }
    // someone else's image, or none: the command below refuses it without
    // costing a probe
    let Some((_, purpose, key, content_type, status)) = row.filter(|r| r.0 == user.user_id) else {
        return Err(ApiError::NotFound { what: "Image" });
    };
    let stored_size = ctx
        .blobs
        .stored_size(&key)
        .await
        .map_err(ApiError::internal)?;
    let (mut width, mut height) = (0, 0);
    if status == "processing" && stored_size.is_some() {
        (width, height) = probe(&ctx, &key, &content_type).await?;
    }
    let written = ctx
        .store
        .images
        .execute(
            &image_id.to_string(),
            ImageCommand::CompleteUpload {
                actor: user.user_id,
                width,
                height,
                stored_size,
                at: crate::now(),
            },
            actor(user.user_id),
        )
        .await
        .map_err(|e| command_error(e, image_error))?;
    // The file URL goes straight into an <img> or a profile (no header can
    // carry a position there): answer once the read model serves it.
    ctx.wait_for(written.position, &["images"]).await?;
    Ok(with_position(
        written.position,
        Json(ImageCompleted {
            image_id,
            status: "completed",
            purpose: match ImagePurpose::parse(&purpose) {
                Some(p) => p.as_str(),
                None => "profile",
            },
            content_type,
            width,
            height,
            file_url: image_url(&ctx, image_id),
            position: written.position,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/images/{id}/file", tag = "images",
    params(("id" = Uuid, Path)),
    responses((status = 302, description = "To the image's file (`Location`: a plain URL on the local store, a signed one on S3)",
               headers(("Location" = String))),
              (status = 404, description = "No such image, or its upload is not completed", body = crate::error::ErrorEnvelope)))]
pub async fn file(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let image_id = path_uuid(&id, "Image")?;
    let key: Option<String> =
        sqlx::query_scalar("SELECT file_key FROM images WHERE id = $1 AND status = 'completed'")
            .bind(image_id)
            .fetch_optional(&ctx.pool)
            .await?;
    let Some(key) = key else {
        return Err(ApiError::NotFound { what: "Image" });
    };
    let target = crate::files::file_url(&ctx, &key, true);
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, target),
            // shorter than a signed URL lives
            (header::CACHE_CONTROL, "public, max-age=300".to_owned()),
        ],
    )
        .into_response())
}

/// The stored file's size, by ffprobe, when it is an image of
/// `content_type` within the bounds; otherwise the file is removed and the
/// answer is 422.
async fn probe(ctx: &ApiContext, key: &str, content_type: &str) -> Result<(u32, u32), ApiError> {
    use lokiz_infra::ai::media::{probe_image, MediaError};
    let probed = match &ctx.local_blobs {
        Some(local) => {
            let path = local.path(key).map_err(ApiError::internal)?;
            probe_image(&path).await
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
            let probed = match ctx.blobs.download(key, &path).await {
                Ok(Some(_)) => probe_image(&path).await,
                Ok(None) => Err(MediaError::Probe("gone".into())),
                Err(e) => {
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                    return Err(ApiError::internal(e));
                }
            };
            let _ = tokio::fs::remove_dir_all(&dir).await;
            probed
        }
    };
    let codec = IMAGE_TYPES
        .iter()
        .find(|(t, _, _)| *t == content_type)
        .map(|(_, _, c)| *c);
    let problem = match &probed {
        Ok(info) if Some(info.codec.as_str()) != codec || info.streams != 1 => Some(format!(
            "the uploaded file is not a {content_type} image; it was removed, upload again"
        )),
        Ok(info)
            if !(1..=MAX_IMAGE_SIDE).contains(&info.width)
                || !(1..=MAX_IMAGE_SIDE).contains(&info.height) =>
        {
            Some(format!(
                "the image must be 1 to {MAX_IMAGE_SIDE} pixels a side ({}×{} uploaded); \
                 it was removed, upload again",
                info.width, info.height
            ))
        }
        Ok(_) => None,
        Err(MediaError::Probe(_)) => Some(format!(
            "the uploaded file is not a {content_type} image; it was removed, upload again"
        )),
        Err(_) => None,
    };
    match (probed, problem) {
        (Ok(info), None) => Ok((info.width, info.height)),
        (_, Some(message)) => {
            if let Err(e) = ctx.blobs.delete(key).await {
                tracing::warn!(%key, error = %e, "refused image not removed");
            }
            Err(ApiError::Validation(vec![FieldError::new(
                "file",
                "not_image",
                message,
            )]))
        }
        (Err(e), None) => Err(ApiError::internal(e)),
    }
}

/// Whether `url` is the `file_url` of one of `user`'s completed profile
/// images.
pub async fn is_own_profile_image(
    ctx: &ApiContext,
    user: Uuid,
    url: &str,
) -> Result<bool, ApiError> {
    // `…/v1/images/<id>/file`: the id names the only image it can be
    let Some(id) = url
        .strip_suffix("/file")
        .and_then(|rest| rest.rsplit('/').next())
        .and_then(parse_id)
    else {
        return Ok(false);
    };
    let find = || {
        sqlx::query_as::<_, (Uuid, String, String)>(
            "SELECT owner_id, purpose, status FROM images WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&ctx.pool)
    };
    let mut row = find().await?;
    if row.as_ref().is_none_or(|r| r.2 != "completed") {
        // completed a moment ago: the read model may not show it yet
        ctx.wait_for_head(&["images"]).await?;
        row = find().await?;
    }
    Ok(row.is_some_and(|(owner, purpose, status)| {
        owner == user
            && purpose == ImagePurpose::Profile.as_str()
            && status == "completed"
            && image_url(ctx, id) == url
    }))
}
