//! `/v1/blobs/{key}`: the local blob store's side of uploads and downloads.
//! `PUT` takes the object through a signed URL from
//! `BlobStore::presign_put` (signature, expiry, content type and exact size
//! are checked; the body is streamed to disk), `GET` serves it with range
//! requests — to anybody when it is public content (a completed public
//! video's file, or a studio render of one), otherwise only through a
//! signed URL (`BlobStore::signed_url`, given in answers to those who may
//! see the file). With S3 configured these routes answer 404: clients talk
//! to the bucket directly, with presigned URLs.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use lokiz_infra::blob::{validate_key, BlobError, BlobStore, LocalBlobStore};
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::error::ApiError;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/blobs/{*key}", get(get_blob).put(put_blob))
}

/// Maps a blob-store failure to the envelope. Also for handlers that call
/// the store (`presign_put`, `stored_size`).
pub fn blob_error(e: BlobError) -> ApiError {
    match e {
        BlobError::InvalidKey { .. } => ApiError::BadRequest {
            code: "INVALID_KEY",
            message: "The object key is not valid.".into(),
        },
        BlobError::InvalidContentType => ApiError::BadRequest {
            code: "INVALID_CONTENT_TYPE",
            message: "The content type is not valid.".into(),
        },
        BlobError::BadSignature => ApiError::InvalidSignature,
        BlobError::AlreadyExists => ApiError::Conflict {
            code: "ALREADY_UPLOADED",
            message: "This upload URL was used already; request a new one.".into(),
            details: None,
        },
        BlobError::Expired { .. } => ApiError::UrlExpired,
        BlobError::TooLarge { limit } => ApiError::PayloadTooLarge { limit },
        BlobError::SizeMismatch { expected, received } => {
            ApiError::SizeMismatch { expected, received }
        }
        BlobError::Body(e) => {
            tracing::debug!(error = %e, "upload body failed");
            ApiError::BadRequest {
                code: "BODY_READ_FAILED",
                message: "The request body could not be read completely.".into(),
            }
        }
        e
        @ (BlobError::Http(_) | BlobError::UnexpectedStatus { .. } | BlobError::MissingLength) => {
            tracing::warn!(error = %e, "object storage unavailable");
            ApiError::Unavailable("The object storage")
        }
        e @ (BlobError::InvalidTtl { .. } | BlobError::Io(_) | BlobError::Config(_)) => {
            ApiError::internal(e)
        }
    }
}

/// Whether anybody may fetch `key` without a signed URL: the file of a
/// completed public video, a studio render of one, or a completed image.
async fn public_file(ctx: &ApiContext, key: &str) -> Result<bool, ApiError> {
    if key.starts_with("images/") {
        // an image is public once its upload completed (probed)
        return Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM images WHERE file_key = $1 AND status = 'completed')",
        )
        .bind(key)
        .fetch_one(&ctx.pool)
        .await?);
    }
    if let Some(rest) = key.strip_prefix("studio/") {
        let Some(video) = rest.split('/').next().and_then(crate::extract::parse_id) else {
            return Ok(false);
        };
        return Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM videos
                             WHERE id = $1 AND status = 'completed' AND visibility = 'public')",
        )
        .bind(video)
        .fetch_one(&ctx.pool)
        .await?);
    }
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM videos
                         WHERE file_key = $1 AND status = 'completed' AND visibility = 'public')",
    )
    .bind(key)
    .fetch_one(&ctx.pool)
    .await?)
}

/// The query of an upload URL (see `LocalBlobStore::presign_put_at`).
#[derive(Debug, Deserialize)]
pub struct PutParams {
    pub expires: u64,
    pub ct: String,
    pub size: u64,
    pub sig: String,
}

fn local_store(ctx: &ApiContext) -> Result<Arc<LocalBlobStore>, ApiError> {
    ctx.local_blobs
        .clone()
        .ok_or(ApiError::NotFound { what: "Route" })
}

fn unix_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

#[utoipa::path(put, path = "/v1/blobs/{key}", tag = "videos",
    params(("key" = String, Path, pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,199})*$", max_length = 512, description = "Object key, e.g. videos/<id>.mp4"),
           ("expires" = u64, Query), ("ct" = String, Query), ("size" = u64, Query), ("sig" = String, Query)),
    request_body(content = Vec<u8>, content_type = "video/mp4", description = "Exactly `size` bytes with Content-Type `ct` (the URL from /v1/videos/upload-url)"),
    responses((status = 200, description = "Stored; ETag is the SHA-256"),
              (status = 403, description = "INVALID_SIGNATURE or URL_EXPIRED", body = crate::error::ErrorEnvelope),
              (status = 409, description = "ALREADY_UPLOADED: this URL was used already (it works once)", body = crate::error::ErrorEnvelope),
              (status = 413, description = "TOO_LARGE", body = crate::error::ErrorEnvelope),
              (status = 415, description = "CONTENT_TYPE_MISMATCH", body = crate::error::ErrorEnvelope)))]
pub async fn put_blob(
    State(ctx): State<ApiContext>,
    key: Result<Path<String>, PathRejection>,
    params: Result<Query<PutParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let store = local_store(&ctx)?;
    let key = match key {
        Ok(Path(key)) if validate_key(&key).is_ok() => key,
        _ => return Err(blob_error(BlobError::InvalidKey { key: String::new() })),
    };
    // A URL without its signature parameters is not a signed URL.
    let Ok(Query(p)) = params else {
        return Err(ApiError::InvalidSignature);
    };
    store
        .verify_put(&key, &p.ct, p.size, p.expires, &p.sig, unix_now())
        .map_err(blob_error)?;

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if content_type != Some(p.ct.as_str()) {
        return Err(ApiError::ContentTypeMismatch { expected: p.ct });
    }
    // A declared length that cannot match is refused before reading.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > p.size => return Err(ApiError::PayloadTooLarge { limit: p.size }),
        Some(n) if n < p.size => {
            return Err(ApiError::SizeMismatch {
                expected: p.size,
                received: n,
            })
        }
        _ => {}
    }

    // an upload URL works once: nothing is written over a stored object
    if store.stored_size(&key).await.map_err(blob_error)?.is_some() {
        return Err(blob_error(BlobError::AlreadyExists));
    }
    let written = store
        .write_once(&key, p.size, body.into_data_stream())
        .await
        .map_err(blob_error)?;
    tracing::info!(key = %key, size = written.size, "blob stored");
    let mut resp = StatusCode::OK.into_response();
    if let Ok(etag) = HeaderValue::from_str(&written.etag()) {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    Ok(resp)
}

/// The query of a signed `GET` URL (`BlobStore::signed_url`).
#[derive(Debug, Deserialize)]
pub struct GetParams {
    pub expires: Option<u64>,
    pub sig: Option<String>,
}

#[utoipa::path(get, path = "/v1/blobs/{key}", tag = "videos",
    params(("key" = String, Path, pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,199})*$", max_length = 512),
           ("expires" = Option<u64>, Query, description = "With `sig`: a signed URL (as answers give for files that are not public), valid until this Unix time"),
           ("sig" = Option<String>, Query),
           ("Range" = Option<String>, Header, description = "e.g. bytes=0-1023")),
    responses((status = 200, description = "The object"), (status = 206, description = "A range of it"),
              (status = 403, description = "INVALID_SIGNATURE or URL_EXPIRED (a signed URL)", body = crate::error::ErrorEnvelope),
              (status = 404, description = "No such object, or not one anybody may fetch without a signed URL (a private or unfinished video's file, a job's result)", body = crate::error::ErrorEnvelope)))]
pub async fn get_blob(
    State(ctx): State<ApiContext>,
    key: Result<Path<String>, PathRejection>,
    params: Result<Query<GetParams>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let store = local_store(&ctx)?;
    let not_found = ApiError::NotFound { what: "Object" };
    let Ok(Path(key)) = key else {
        return Err(not_found);
    };
    let Ok(path) = store.path(&key) else {
        return Err(not_found);
    };
    match params {
        Ok(Query(GetParams {
            expires: Some(expires),
            sig: Some(sig),
        })) => store
            .verify_get(&key, expires, &sig, unix_now())
            .map_err(blob_error)?,
        Ok(Query(GetParams {
            expires: None,
            sig: None,
        })) => {
            if !public_file(&ctx, &key).await? {
                return Err(not_found);
            }
        }
        _ => return Err(ApiError::InvalidSignature),
    }
    if store.stored_size(&key).await.map_err(blob_error)?.is_none() {
        return Err(not_found);
    }
    let resp = match ServeFile::new(path).oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    let mut resp = resp.map(Body::new);
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}
