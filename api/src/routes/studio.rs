//! `/v1/studio`: what the studio shows before a job is requested — a
//! timeline of thumbnails, a low-resolution preview of a range, and range
//! selection (at most 10 s, inside the video). Signed-in users only: each
//! render costs ffmpeg time. Sizes, intervals and ranges snap to a few
//! values, so one video has a handful of renders; they are made with ffmpeg
//! on first request (two at a time per process) and kept in the blob store
//! under `studio/<video>/…`, in a render cache bounded in size and age
//! (`lokiz_infra::render_cache`).

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use lokiz_domain::ai_job::JobKind;
use lokiz_domain::values::FieldError;
use lokiz_infra::ai::media;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MinPosition};
use crate::pagination::{check, Params};
use crate::reads::live_video;
use crate::routes::ai::MAX_SEGMENT_SECS;
use crate::ApiContext;

/// ffmpeg runs for studio requests at once in this process (the worker's
/// jobs are separate).
const MEDIA_SLOTS: usize = 2;
/// At most this many thumbnails per timeline.
const MAX_THUMBNAILS: usize = 60;

fn slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(MEDIA_SLOTS))
}

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/studio/videos/{id}/timeline", get(timeline))
        .route("/studio/videos/{id}/preview", get(preview))
        .route("/studio/videos/{id}/select-range", post(select_range))
}

/// A visible, uploaded video: its file key, length, and whether it is
/// public (then so are its renders).
async fn studio_video(
    ctx: &ApiContext,
    viewer: Uuid,
    video_id: Uuid,
) -> Result<(String, f64, bool), ApiError> {
    let video = live_video(ctx, video_id, Some(viewer)).await?;
    match video.duration {
        Some(duration) => Ok((video.file_key, duration, video.public)),
        None => Err(ApiError::NotFound { what: "Video" }),
    }
}

/// A scratch directory removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    async fn new(ctx: &ApiContext) -> Result<Self, ApiError> {
        let dir = ctx
            .config
            .data_dir
            .join("work")
            .join(format!("studio-{}", Uuid::new_v4().simple()));
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn fetch_source(
    ctx: &ApiContext,
    key: &str,
    scratch: &Scratch,
) -> Result<std::path::PathBuf, ApiError> {
    let path = scratch.0.join("source");
    match ctx.blobs.download(key, &path).await {
        Ok(Some(_)) => Ok(path),
        Ok(None) => Err(ApiError::NotFound { what: "Video file" }),
        Err(e) => Err(ApiError::Internal(e.into())),
    }
}

fn media_error(e: media::MediaError) -> ApiError {
    match e {
        media::MediaError::Probe(_) => ApiError::Conflict {
            code: "UNREADABLE_VIDEO",
            message: "This video's file cannot be read as a video.".into(),
            details: None,
        },
        other => ApiError::Internal(other.into()),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Thumbnail {
    /// Seconds into the video.
    pub time: f64,
    pub url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Timeline {
    pub video_id: Uuid,
    /// Seconds.
    pub duration: f64,
    /// Seconds between thumbnails.
    pub interval: f64,
    pub thumbnails: Vec<Thumbnail>,
}

/// Thumbnail intervals the timeline renders (seconds); others snap to the
/// nearest, so one video has a handful of timelines, not thousands.
const INTERVALS: &[i64] = &[1, 2, 5, 10, 15, 30, 60];
/// Thumbnail widths (pixels).
const THUMB_WIDTHS: &[i64] = &[80, 160, 320, 640];
/// Preview widths (pixels).
const PREVIEW_WIDTHS: &[i64] = &[240, 360, 720];
/// Preview ranges snap outwards to this step (seconds).
const PREVIEW_STEP: f64 = 0.5;

/// The allowed value nearest to `v` (ties to the smaller).
fn snap(v: i64, allowed: &[i64]) -> i64 {
    allowed
        .iter()
        .copied()
        .min_by_key(|a| ((a - v).abs(), *a))
        .unwrap_or(v)
}

#[utoipa::path(get, path = "/v1/studio/videos/{id}/timeline", tag = "studio", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path),
           ("interval" = Option<i64>, Query, minimum = 1, maximum = 60, description = "Seconds between thumbnails, 1–60, snapped to 1, 2, 5, 10, 15, 30 or 60 (default: about 10 over the video); the answer's `interval` is the one used"),
           ("width" = Option<i64>, Query, minimum = 32, maximum = 640, description = "Thumbnail width in pixels, 32–640, snapped to 80, 160, 320 or 640 (default 160)")),
    responses((status = 200, body = Timeline), (status = 404, body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn timeline(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Timeline>, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut errors = Vec::new();
    let interval = params
        .get("interval")
        .is_some()
        .then(|| params.number("interval", 1, 1, 60, &mut errors));
    let width = snap(
        params.number("width", 160, 32, 640, &mut errors),
        THUMB_WIDTHS,
    );
    check(errors)?;
    ctx.wait_for(min, &["videos"]).await?;
    let (key, duration, public) = studio_video(&ctx, user.user_id, video_id).await?;
    let wanted = interval.unwrap_or_else(|| (duration / 10.0).max(1.0).round() as i64);
    let interval = snap(wanted, INTERVALS) as f64;
    // frames at 0, interval, 2·interval, … strictly before the end
    let count = ((duration / interval).ceil() as usize).clamp(1, MAX_THUMBNAILS);
    let prefix = format!("studio/{video_id}/thumbs-{interval}-{width}");
    let mut names: Vec<String> = (0..count)
        .map(|i| format!("{prefix}/thumb-{i:04}.jpg"))
        .collect();
    if !ctx.render_cache.hit(&names).await? {
        let _slot = slots()
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        let scratch = Scratch::new(&ctx).await?;
        let source = fetch_source(&ctx, &key, &scratch).await?;
        let out = scratch.0.join("thumbs");
        let made = media::thumbnails(&source, &out, interval, count, width as u32)
            .await
            .map_err(media_error)?;
        for (file, key) in made.iter().zip(&names) {
            let bytes = ctx
                .blobs
                .upload(key, file, "image/jpeg")
                .await
                .map_err(|e| ApiError::Internal(e.into()))?;
            ctx.render_cache.stored(key, bytes).await?;
        }
        names.truncate(made.len());
        evict_later(&ctx);
    }
    let thumbnails = names
        .iter()
        .enumerate()
        .map(|(i, k)| Thumbnail {
            time: i as f64 * interval,
            url: crate::files::file_url(&ctx, k, public),
        })
        .collect();
    Ok(Json(Timeline {
        video_id,
        duration,
        interval,
        thumbnails,
    }))
}

/// Bounds the render cache after a render, off the request's path.
fn evict_later(ctx: &ApiContext) {
    let cache = ctx.render_cache.clone();
    tokio::spawn(async move {
        if let Err(e) = cache.evict().await {
            tracing::warn!(error = %e, "render cache eviction failed");
        }
    });
}

/// Reads `start_time`/`end_time` (query or body values), inside the video and
/// at most 10 s apart.
fn range(start: Option<f64>, end: Option<f64>, duration: f64) -> Result<(f64, f64), ApiError> {
    let mut errors = Vec::new();
    let inside = |t: f64| (0.0..=duration).contains(&t);
    match start {
        None => errors.push(FieldError::new("start_time", "required", "is required")),
        Some(s) if !inside(s) => errors.push(FieldError::new(
            "start_time",
            "range",
            format!("must be within the video (0 to {duration:.2} s)"),
        )),
        _ => {}
    }
    match end {
        None => errors.push(FieldError::new("end_time", "required", "is required")),
        Some(e) if !inside(e) => errors.push(FieldError::new(
            "end_time",
            "range",
            format!("must be within the video (0 to {duration:.2} s)"),
        )),
        Some(e) => {
            if let Some(s) = start {
                if e <= s {
                    errors.push(FieldError::new(
                        "end_time",
                        "range",
                        "must be after start_time",
                    ));
                } else if e - s > MAX_SEGMENT_SECS + 1e-9 {
                    errors.push(FieldError::new(
                        "end_time",
                        "range",
                        format!("a range may be at most {MAX_SEGMENT_SECS} s long"),
                    ));
                }
            }
        }
    }
    check(errors)?;
    match (start, end) {
        (Some(s), Some(e)) => Ok((s, e)),
        _ => Err(ApiError::Internal(anyhow::anyhow!("range unchecked"))),
    }
}

fn query_f64(params: &Params, name: &'static str, errors: &mut Vec<FieldError>) -> Option<f64> {
    let raw = params.get(name)?;
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Some(v),
        _ => {
            errors.push(FieldError::new(name, "type", "must be a number (seconds)"));
            None
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    pub video_id: Uuid,
    pub start_time: f64,
    pub end_time: f64,
    /// A small MP4 of the range.
    pub preview_url: String,
}

#[utoipa::path(get, path = "/v1/studio/videos/{id}/preview", tag = "studio", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path), ("start_time" = f64, Query, description = "Snapped down to a multiple of 0.5 s"), ("end_time" = f64, Query, description = "At most 10 s after start_time; snapped up to a multiple of 0.5 s (within the video); the answer gives the range rendered"),
           ("width" = Option<i64>, Query, minimum = 32, maximum = 720, description = "32–720, snapped to 240, 360 or 720 (default 360)")),
    responses((status = 200, body = Preview), (status = 404, body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn preview(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Preview>, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut errors = Vec::new();
    let start = query_f64(&params, "start_time", &mut errors);
    let end = query_f64(&params, "end_time", &mut errors);
    let width = snap(
        params.number("width", 360, 32, 720, &mut errors),
        PREVIEW_WIDTHS,
    );
    check(errors)?;
    ctx.wait_for(min, &["videos"]).await?;
    let (key, duration, public) = studio_video(&ctx, user.user_id, video_id).await?;
    let (start, end) = range(start, end, duration)?;
    // outwards to the step, within the video and the longest range
    let start = (start / PREVIEW_STEP).floor() * PREVIEW_STEP;
    let end = ((end / PREVIEW_STEP).ceil() * PREVIEW_STEP)
        .min(duration)
        .min(start + MAX_SEGMENT_SECS);
    // millisecond keys: the same range asked twice is one file
    let out_key = format!(
        "studio/{video_id}/preview-{}-{}-{width}.mp4",
        (start * 1000.0).round() as i64,
        (end * 1000.0).round() as i64
    );
    if !ctx.render_cache.hit(std::slice::from_ref(&out_key)).await? {
        let _slot = slots()
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        let scratch = Scratch::new(&ctx).await?;
        let source = fetch_source(&ctx, &key, &scratch).await?;
        let out = scratch.0.join("preview.mp4");
        media::preview(
            &source,
            &out,
            start,
            end,
            width as u32,
            &CancellationToken::new(),
        )
        .await
        .map_err(media_error)?;
        let bytes = ctx
            .blobs
            .upload(&out_key, &out, "video/mp4")
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        ctx.render_cache.stored(&out_key, bytes).await?;
        evict_later(&ctx);
    }
    Ok(Json(Preview {
        video_id,
        start_time: start,
        end_time: end,
        preview_url: crate::files::file_url(&ctx, &out_key, public),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SelectedRange {
    pub video_id: Uuid,
    pub start_time: f64,
    pub end_time: f64,
    /// Seconds.
    pub length: f64,
    /// What each AI job on this range costs, in credits.
    #[schema(value_type = Object)]
    pub costs: serde_json::Value,
}

/// Body of `POST /v1/studio/videos/{id}/select-range`: inside the video,
/// `end_time` after `start_time` and at most 10 s after it (rules against
/// the video and between the fields, answered 422).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SelectRangeRequest {
    #[schema(minimum = 0)]
    start_time: f64,
    #[schema(exclusive_minimum = 0)]
    end_time: f64,
}

#[utoipa::path(post, path = "/v1/studio/videos/{id}/select-range", tag = "studio", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    request_body(content = SelectRangeRequest, description = "At most 10 s, inside the video"),
    responses((status = 200, body = SelectedRange), (status = 404, body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn select_range(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<SelectedRange>, ApiError> {
    let video_id = path_uuid(&id, "Video")?;
    let mut f = Fields::new(&body);
    let start = f.required_f64("start_time");
    let end = f.required_f64("end_time");
    f.finish()?;
    ctx.wait_for(min, &["videos"]).await?;
    let (_, duration, _) = studio_video(&ctx, user.user_id, video_id).await?;
    let (start, end) = range(start, end, duration)?;
    let costs = serde_json::json!({
        JobKind::GlitchAnimate.as_str(): JobKind::GlitchAnimate.cost(),
        JobKind::GlitchReplace.as_str(): JobKind::GlitchReplace.cost(),
        JobKind::Music.as_str(): JobKind::Music.cost(),
        JobKind::Template.as_str(): JobKind::Template.cost(),
        JobKind::CaptureFrame.as_str(): JobKind::CaptureFrame.cost(),
    });
    Ok(Json(SelectedRange {
        video_id,
        start_time: start,
        end_time: end,
        length: end - start,
        costs,
    }))
}
