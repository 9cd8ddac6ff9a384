//! `/v1/ai`: request AI jobs (credits reserved up front), poll them, cancel
//! them.
//!
//! A request reserves the job's cost on the caller's Wallet (a short wallet
//! is 402 `INSUFFICIENT_CREDITS` and no job), then records `JobRequested`;
//! the worker runs it and the credits saga captures or refunds the
//! reservation from the outcome. Reads come from the `ai_jobs` read model.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_domain::ai_job::{AiJobCommand, JobError, JobKind, JobParams};
use lokiz_domain::wallet::{WalletCommand, WalletError};
use lokiz_infra::ai::presets::{self, GlitchKind};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{path_uuid, AuthUser, Fields, JsonObject, MinPosition};
use crate::routes::with_position;
use crate::ApiContext;

/// Longest segment a glitch or music job takes (seconds).
pub const MAX_SEGMENT_SECS: f64 = 10.0;
/// Template clip length bounds and default (seconds).
pub const TEMPLATE_SECS: (f64, f64, f64) = (1.0, 10.0, 5.0);
/// At most this many ids per batch-status request.
pub const BATCH_STATUS_MAX: usize = 50;
/// At most this many frames per capture-frames request.
pub const MAX_FRAMES: usize = 20;
/// How long capture-frames waits for its frames before answering.
const FRAMES_WAIT: Duration = Duration::from_secs(20);

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/ai/capture-frame", post(capture_frame))
        .route("/ai/capture-frames", post(capture_frames))
        .route("/ai/template", post(template))
        .route("/ai/glitch/animate", post(glitch_animate))
        .route("/ai/glitch/replace", post(glitch_replace))
        .route("/ai/music", post(music))
        .route("/ai/jobs/batch-status", post(batch_status))
        .route("/ai/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/ai/callbacks/{provider}", post(callback))
}

/// An AI job as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub job_id: Uuid,
    /// capture_frame, template, glitch_animate, glitch_replace or music.
    pub kind: String,
    /// queued, processing, completed, failed or canceled.
    pub status: String,
    /// 0–100.
    pub progress: i16,
    /// Credits reserved for the job (captured on completion, refunded on
    /// failure or cancel).
    pub cost: i64,
    pub video_id: Uuid,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Where the output is served, once completed.
    pub result_url: Option<String>,
    /// The published video made by the job (glitch, template and music jobs).
    pub output_video_id: Option<Uuid>,
    /// Why the job failed, for people.
    pub error: Option<String>,
    /// Why the job failed, for programs: PROVIDER_ERROR, SOURCE_UNAVAILABLE, WORKER_LOST, TIMED_OUT (past its kind's time limit).
    pub error_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    kind: String,
    status: String,
    progress: i16,
    cost: i64,
    source_video_id: Uuid,
    params: serde_json::Value,
    result_key: Option<String>,
    output_video_id: Option<Uuid>,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "id, kind, status, progress, cost, source_video_id, params, result_key,
    output_video_id, error_code, error_message, created_at, started_at, finished_at";

impl JobRow {
    fn into_view(self, ctx: &ApiContext) -> JobView {
        JobView {
            job_id: self.id,
            kind: self.kind,
            status: self.status,
            progress: self.progress,
            cost: self.cost,
            video_id: self.source_video_id,
            params: self.params,
            result_url: self
                .result_key
                .map(|k| crate::files::file_url(ctx, &k, false)),
            output_video_id: self.output_video_id,
            error: self.error_message,
            error_code: self.error_code,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

/// The source video of a job: visible to the caller, uploaded, and its length.
async fn source_video(ctx: &ApiContext, user: Uuid, video_id: Uuid) -> Result<f64, ApiError> {
    crate::reads::live_video(ctx, video_id, Some(user))
        .await?
        .duration
        .ok_or(ApiError::NotFound { what: "Video" })
}

/// Checks a time inside the video.
fn check_time(f: &mut Fields<'_>, name: &'static str, t: Option<f64>, duration: f64) {
    if let Some(t) = t {
        if !(0.0..=duration).contains(&t) {
            let message = if duration.is_finite() {
                format!("must be within the video (0 to {duration:.2} s)")
            } else {
                "must not be negative".to_owned()
            };
            f.reject(name, "range", message);
        }
    }
}

/// `start_time`/`end_time`: inside the video, at most 10 s apart.
fn segment(f: &mut Fields<'_>, duration: f64) -> Option<(f64, f64)> {
    let start = f.required_f64("start_time");
    let end = f.required_f64("end_time");
    check_time(f, "start_time", start, duration);
    check_time(f, "end_time", end, duration);
    let (start, end) = (start?, end?);
    if end <= start {
        f.reject("end_time", "range", "must be after start_time");
        return None;
    }
    if end - start > MAX_SEGMENT_SECS + 1e-9 {
        f.reject(
            "end_time",
            "range",
            format!("the segment may be at most {MAX_SEGMENT_SECS} s long"),
        );
        return None;
    }
    Some((start, end))
}

fn glitch_preset(f: &mut Fields<'_>, kind: GlitchKind) -> Option<String> {
    let id = f.required_str("preset")?;
    let bundled = presets::bundled();
    match bundled.glitch(id) {
        Some(p) if p.kind == kind => Some(p.id.clone()),
        _ => {
            let ids: Vec<&str> = bundled
                .glitch
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| p.id.as_str())
                .collect();
            f.reject(
                "preset",
                "unknown",
                format!("must be one of {}", ids.join(", ")),
            );
            None
        }
    }
}

fn music_preset(f: &mut Fields<'_>) -> Option<String> {
    let id = f.required_str("preset")?;
    let bundled = presets::bundled();
    match bundled.music(id) {
        Some(p) => Some(p.id.clone()),
        None => {
            let ids: Vec<&str> = bundled.music.iter().map(|p| p.id.as_str()).collect();
            f.reject(
                "preset",
                "unknown",
                format!("must be one of {}", ids.join(", ")),
            );
            None
        }
    }
}

/// The kind's parameters, range-checked against a video `duration` seconds
/// long (`f64::INFINITY` before the video is looked up).
fn parse_params(f: &mut Fields<'_>, kind: JobKind, duration: f64) -> Option<JobParams> {
    match kind {
        JobKind::CaptureFrame => {
            let at = f.required_f64("timestamp");
            check_time(f, "timestamp", at, duration);
            at.map(|at_secs| JobParams::CaptureFrame { at_secs })
        }
        JobKind::Template => {
            let at = f.required_f64("timestamp");
            check_time(f, "timestamp", at, duration);
            let (lo, hi, default) = TEMPLATE_SECS;
            let length = f.optional_f64("duration").unwrap_or(default);
            if !(lo..=hi).contains(&length) {
                f.reject("duration", "range", format!("must be {lo} to {hi} seconds"));
            }
            let prompt = f.optional_str("prompt").map(str::trim).map(str::to_owned);
            if prompt.as_ref().is_some_and(|p| p.chars().count() > 500) {
                f.reject("prompt", "length", "must be at most 500 characters");
            }
            at.map(|at_secs| JobParams::Template {
                at_secs,
                duration_secs: length,
                prompt: prompt.filter(|p| !p.is_empty()),
            })
        }
        JobKind::GlitchAnimate => {
            let seg = segment(f, duration);
            let preset = glitch_preset(f, GlitchKind::Animate);
            let ((start_secs, end_secs), preset) = (seg?, preset?);
            Some(JobParams::GlitchAnimate {
                start_secs,
                end_secs,
                preset,
            })
        }
        JobKind::GlitchReplace => {
            let seg = segment(f, duration);
            let preset = glitch_preset(f, GlitchKind::Replace);
            let ((start_secs, end_secs), preset) = (seg?, preset?);
            Some(JobParams::GlitchReplace {
                start_secs,
                end_secs,
                preset,
            })
        }
        JobKind::Music => {
            let seg = segment(f, duration);
            let preset = music_preset(f);
            let ((start_secs, end_secs), preset) = (seg?, preset?);
            Some(JobParams::Music {
                start_secs,
                end_secs,
                preset,
            })
        }
    }
}

/// Reads `video_id` and the kind's parameters. Every bad field is listed in
/// one 422, times checked against the video's length when the video can be
/// found; a video the caller cannot see is 404.
async fn parse_request(
    ctx: &ApiContext,
    user: Uuid,
    body: &serde_json::Map<String, serde_json::Value>,
    kind: JobKind,
) -> Result<(Uuid, JobParams), ApiError> {
    let mut f = Fields::new(body);
    let video_id = f.required_uuid("video_id");
    parse_params(&mut f, kind, f64::INFINITY);
    let shape_errors = std::mem::take(&mut f.errors);
    let duration = match video_id {
        None => None,
        Some(id) => match source_video(ctx, user, id).await {
            Ok(d) => Some(d),
            Err(e) if shape_errors.is_empty() => return Err(e),
            Err(_) => None,
        },
    };
    let (Some(video_id), Some(duration)) = (video_id, duration) else {
        return Err(ApiError::Validation(shape_errors));
    };
    // again with the video's length: the same errors plus times outside it
    let mut f = Fields::new(body);
    let params = parse_params(&mut f, kind, duration);
    f.finish()?;
    let params = params.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unparsed params")))?;
    Ok((video_id, params))
}

/// Reserves the cost and records the job. Returns the view and the position.
async fn request_job(
    ctx: &ApiContext,
    user: Uuid,
    video_id: Uuid,
    params: JobParams,
) -> Result<(JobView, Option<i64>), ApiError> {
    let kind = params.kind();
    let cost = kind.cost();
    let job_id = Uuid::now_v7();
    let at = crate::now();
    let metadata = HashMap::from([("actor".to_owned(), user.to_string())]);
    // admission: the owner's job limits, and the cost reserved
    ctx.store
        .wallets
        .execute(
            &user.to_string(),
            WalletCommand::AdmitJob {
                job_id,
                cost,
                limits: ctx.config.jobs.limits(),
                at,
            },
            metadata.clone(),
        )
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                WalletError::InsufficientCredits { needed, balance } => {
                    ApiError::InsufficientCredits { needed, balance }
                }
                WalletError::TooManyActiveJobs { .. } => ApiError::TooManyRequests {
                    code: "RATE_LIMIT_EXCEEDED",
                    message: "Too many of your jobs are running; retry when one has finished.",
                    retry_after: 5,
                },
                WalletError::DailyQuotaExceeded { .. } => ApiError::TooManyRequests {
                    code: "QUOTA_DAILY_EXCEEDED",
                    message: "Today's free jobs are used up; retry tomorrow (UTC).",
                    retry_after: seconds_until_utc_midnight(at),
                },
                other => ApiError::Internal(anyhow::anyhow!(other)),
            })
        })?;
    let requested = ctx
        .store
        .ai_jobs
        .execute(
            &job_id.to_string(),
            AiJobCommand::RequestJob {
                job_id,
                owner_id: user,
                source_video_id: video_id,
                params: params.clone(),
                at,
            },
            metadata.clone(),
        )
        .await;
    let written = match requested {
        Ok(w) => w,
        // refused by the job itself: certainly not recorded, give the slot back
        Err(cqrs_es::AggregateError::UserError(e)) => {
            let release = if cost > 0 {
                WalletCommand::RefundCredits { job_id, at }
            } else {
                WalletCommand::ReleaseFreeJob { job_id, at }
            };
            if let Err(r) = ctx
                .store
                .wallets
                .execute(&user.to_string(), release, metadata)
                .await
            {
                tracing::warn!(%job_id, error = %r, "slot of a refused job not released; the sweeper will");
            }
            return Err(match e {
                // the sweeper closed this job id: the request took longer
                // than LOKIZ_JOBS_ORPHAN_AFTER_SECS; a retry is a new job
                JobError::AlreadyRequested => ApiError::Unavailable("The job queue"),
                other => ApiError::Internal(anyhow::anyhow!(other)),
            });
        }
        // the job may have been recorded (a commit whose answer was lost):
        // never refunded blindly; the reservation sweeper decides, fenced
        // by the job aggregate (`AbandonRequest`)
        Err(e) => {
            return Err(command_error(e, |e: JobError| {
                ApiError::Internal(anyhow::anyhow!(e))
            }))
        }
    };
    let view = JobView {
        job_id,
        kind: kind.as_str().to_owned(),
        status: "queued".to_owned(),
        progress: 0,
        cost,
        video_id,
        params: serde_json::to_value(&params).unwrap_or_default(),
        result_url: None,
        output_video_id: None,
        error: None,
        error_code: None,
        created_at: at,
        started_at: None,
        finished_at: None,
    };
    Ok((view, written.position))
}

fn seconds_until_utc_midnight(at: chrono::DateTime<Utc>) -> u64 {
    let tomorrow = at
        .date_naive()
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0));
    tomorrow
        .map(|t| (t.and_utc() - at).num_seconds().max(1) as u64)
        .unwrap_or(86_400)
}

async fn job_request(
    ctx: ApiContext,
    user: AuthUser,
    min: Option<i64>,
    body: serde_json::Map<String, serde_json::Value>,
    kind: JobKind,
) -> Result<Response, ApiError> {
    ctx.wait_for(min, &["videos"]).await?;
    let (video_id, params) = parse_request(&ctx, user.user_id, &body, kind).await?;
    let (view, position) = request_job(&ctx, user.user_id, video_id, params).await?;
    Ok(with_position(position, (StatusCode::ACCEPTED, Json(view))))
}

/// Body of `POST /v1/ai/capture-frame`. `timestamp` must lie inside the
/// video (a rule against its duration, answered 422).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CaptureFrameRequest {
    video_id: Uuid,
    /// Seconds into the video.
    #[schema(minimum = 0)]
    timestamp: f64,
}

/// Body of `POST /v1/ai/capture-frames`: every timestamp inside the video.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CaptureFramesRequest {
    video_id: Uuid,
    /// Seconds into the video (none negative), 1–20 of them.
    #[schema(min_items = 1, max_items = 20)]
    timestamps: Vec<f64>,
}

/// Body of `POST /v1/ai/template`: `timestamp` inside the video.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TemplateRequest {
    video_id: Uuid,
    #[schema(minimum = 0)]
    timestamp: f64,
    /// Seconds of motion, 1–10 (default 5).
    #[schema(minimum = 1, maximum = 10)]
    duration: Option<f64>,
    /// At most 500 characters.
    #[schema(max_length = 500)]
    prompt: Option<String>,
}

/// Body of the glitch and music jobs: a segment inside the video, `end_time`
/// after `start_time` and at most 10 s after it, and a preset of the job's
/// kind (GET /v1/presets/glitch, /v1/presets/music). These rules depend on
/// the video and on each other: they are answered 422, naming the field.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SegmentJobRequest {
    video_id: Uuid,
    #[schema(minimum = 0)]
    start_time: f64,
    #[schema(exclusive_minimum = 0)]
    end_time: f64,
    #[schema(min_length = 1)]
    preset: String,
}

/// Body of `POST /v1/ai/jobs/batch-status`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobIds {
    /// At most 50.
    #[schema(max_items = 50)]
    job_ids: Vec<Uuid>,
}

#[utoipa::path(post, path = "/v1/ai/capture-frame", tag = "ai", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    request_body(content = CaptureFrameRequest, description = "Seconds into the video. Costs 0 credits."),
    responses((status = 202, body = JobView), (status = 401, body = crate::error::ErrorEnvelope),
              (status = 404, body = crate::error::ErrorEnvelope), (status = 422, body = crate::error::ErrorEnvelope),
              (status = 429, description = "`RATE_LIMIT_EXCEEDED`: too many of your jobs are open (`LOKIZ_JOBS_MAX_ACTIVE` paid, `LOKIZ_JOBS_MAX_ACTIVE_FREE` free); `QUOTA_DAILY_EXCEEDED`: today's free jobs are used up (`LOKIZ_JOBS_FREE_PER_DAY`; `Retry-After` runs to midnight UTC)", body = crate::error::ErrorEnvelope)))]
pub async fn capture_frame(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    job_request(ctx, user, min, body, JobKind::CaptureFrame).await
}

#[utoipa::path(post, path = "/v1/ai/template", tag = "ai", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    request_body(content = TemplateRequest, description = "A clip with motion from the frame at `timestamp`. Costs 20 credits."),
    responses((status = 202, body = JobView), (status = 402, description = "INSUFFICIENT_CREDITS", body = crate::error::ErrorEnvelope),
              (status = 404, body = crate::error::ErrorEnvelope), (status = 422, body = crate::error::ErrorEnvelope),
              (status = 429, description = "`RATE_LIMIT_EXCEEDED`: too many of your jobs are open (`LOKIZ_JOBS_MAX_ACTIVE` paid, `LOKIZ_JOBS_MAX_ACTIVE_FREE` free); `QUOTA_DAILY_EXCEEDED`: today's free jobs are used up (`LOKIZ_JOBS_FREE_PER_DAY`; `Retry-After` runs to midnight UTC)", body = crate::error::ErrorEnvelope)))]
pub async fn template(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    job_request(ctx, user, min, body, JobKind::Template).await
}

#[utoipa::path(post, path = "/v1/ai/glitch/animate", tag = "ai", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    request_body(content = SegmentJobRequest, description = "≤ 10 s; an `animate` preset of GET /v1/presets/glitch. Costs 30 credits."),
    responses((status = 202, body = JobView), (status = 402, description = "INSUFFICIENT_CREDITS", body = crate::error::ErrorEnvelope),
              (status = 404, body = crate::error::ErrorEnvelope), (status = 422, body = crate::error::ErrorEnvelope),
              (status = 429, description = "`RATE_LIMIT_EXCEEDED`: too many of your jobs are open (`LOKIZ_JOBS_MAX_ACTIVE` paid, `LOKIZ_JOBS_MAX_ACTIVE_FREE` free); `QUOTA_DAILY_EXCEEDED`: today's free jobs are used up (`LOKIZ_JOBS_FREE_PER_DAY`; `Retry-After` runs to midnight UTC)", body = crate::error::ErrorEnvelope)))]
pub async fn glitch_animate(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    job_request(ctx, user, min, body, JobKind::GlitchAnimate).await
}

#[utoipa::path(post, path = "/v1/ai/glitch/replace", tag = "ai", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    request_body(content = SegmentJobRequest, description = "≤ 10 s; a `replace` preset. Costs 30 credits."),
    responses((status = 202, body = JobView), (status = 402, description = "INSUFFICIENT_CREDITS", body = crate::error::ErrorEnvelope),
              (status = 404, body = crate::error::ErrorEnvelope), (status = 422, body = crate::error::ErrorEnvelope),
              (status = 429, description = "`RATE_LIMIT_EXCEEDED`: too many of your jobs are open (`LOKIZ_JOBS_MAX_ACTIVE` paid, `LOKIZ_JOBS_MAX_ACTIVE_FREE` free); `QUOTA_DAILY_EXCEEDED`: today's free jobs are used up (`LOKIZ_JOBS_FREE_PER_DAY`; `Retry-After` runs to midnight UTC)", body = crate::error::ErrorEnvelope)))]
pub async fn glitch_replace(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    job_request(ctx, user, min, body, JobKind::GlitchReplace).await
}

#[utoipa::path(post, path = "/v1/ai/music", tag = "ai", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    request_body(content = SegmentJobRequest, description = "≤ 10 s; a preset of GET /v1/presets/music. Costs 5 credits."),
    responses((status = 202, body = JobView), (status = 402, description = "INSUFFICIENT_CREDITS", body = crate::error::ErrorEnvelope),
              (status = 404, body = crate::error::ErrorEnvelope), (status = 422, body = crate::error::ErrorEnvelope),
              (status = 429, description = "`RATE_LIMIT_EXCEEDED`: too many of your jobs are open (`LOKIZ_JOBS_MAX_ACTIVE` paid, `LOKIZ_JOBS_MAX_ACTIVE_FREE` free); `QUOTA_DAILY_EXCEEDED`: today's free jobs are used up (`LOKIZ_JOBS_FREE_PER_DAY`; `Retry-After` runs to midnight UTC)", body = crate::error::ErrorEnvelope)))]
pub async fn music(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    job_request(ctx, user, min, body, JobKind::Music).await
}

/// One frame of `POST /v1/ai/capture-frames`, in the seed's shape plus the job.
#[derive(Debug, Serialize, ToSchema)]
pub struct Frame {
    pub timestamp: f64,
    /// The JPEG, once captured (null if not ready when the answer was sent:
    /// poll the job).
    pub image_url: Option<String>,
    pub job_id: Uuid,
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Frames {
    pub frames: Vec<Frame>,
}

#[utoipa::path(post, path = "/v1/ai/capture-frames", tag = "ai", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    request_body(content = CaptureFramesRequest, description = "One capture-frame job per timestamp; the answer waits (up to 20 s) for the frames."),
    responses((status = 200, body = Frames), (status = 404, body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope),
              (status = 429, description = "`RATE_LIMIT_EXCEEDED`: too many of your jobs are open (`LOKIZ_JOBS_MAX_ACTIVE` paid, `LOKIZ_JOBS_MAX_ACTIVE_FREE` free); `QUOTA_DAILY_EXCEEDED`: today's free jobs are used up (`LOKIZ_JOBS_FREE_PER_DAY`; `Retry-After` runs to midnight UTC)", body = crate::error::ErrorEnvelope)))]
pub async fn capture_frames(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    ctx.wait_for(min, &["videos"]).await?;
    let mut f = Fields::new(&body);
    let video_id = f.required_uuid("video_id");
    let timestamps = f.f64_list("timestamps", MAX_FRAMES);
    if timestamps
        .as_ref()
        .is_some_and(|ts| ts.iter().any(|t| *t < 0.0))
    {
        f.reject("timestamps", "range", "must not be negative");
    }
    f.finish()?;
    let (Some(video_id), Some(timestamps)) = (video_id, timestamps) else {
        return Err(ApiError::NotFound { what: "Video" });
    };
    let duration = source_video(&ctx, user.user_id, video_id).await?;
    let outside: Vec<String> = timestamps
        .iter()
        .filter(|t| !(0.0..=duration).contains(*t))
        .map(|t| t.to_string())
        .collect();
    if !outside.is_empty() {
        return Err(ApiError::Validation(vec![
            lokiz_domain::values::FieldError::new(
                "timestamps",
                "range",
                format!(
                    "must be within the video (0 to {duration:.2} s): {}",
                    outside.join(", ")
                ),
            ),
        ]));
    }
    let mut jobs: Vec<(f64, Uuid)> = Vec::with_capacity(timestamps.len());
    let mut last = None;
    for &at_secs in &timestamps {
        let requested = request_job(
            &ctx,
            user.user_id,
            video_id,
            JobParams::CaptureFrame { at_secs },
        )
        .await;
        let (view, position) = match requested {
            Ok(r) => r,
            Err(e) => {
                // all or nothing: the frames already requested are canceled
                // (their slots come back through the credits saga)
                for (_, job_id) in &jobs {
                    let canceled = ctx
                        .store
                        .ai_jobs
                        .execute(
                            &job_id.to_string(),
                            AiJobCommand::CancelJob {
                                actor: user.user_id,
                                at: crate::now(),
                            },
                            HashMap::from([("actor".to_owned(), user.user_id.to_string())]),
                        )
                        .await;
                    if let Err(c) = canceled {
                        tracing::debug!(%job_id, error = %c, "frame job of a refused batch not canceled");
                    }
                }
                return Err(e);
            }
        };
        last = position.or(last);
        jobs.push((at_secs, view.job_id));
    }
    let ids: Vec<Uuid> = jobs.iter().map(|(_, id)| *id).collect();
    let deadline = tokio::time::Instant::now() + FRAMES_WAIT;
    let rows = loop {
        let rows: Vec<(Uuid, String, Option<String>)> =
            sqlx::query_as("SELECT id, status, result_key FROM ai_jobs WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&ctx.pool)
                .await?;
        let done = rows.len() == ids.len()
            && rows
                .iter()
                .all(|(_, s, _)| matches!(s.as_str(), "completed" | "failed" | "canceled"));
        if done || tokio::time::Instant::now() >= deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_id: HashMap<Uuid, (String, Option<String>)> =
        rows.into_iter().map(|(id, s, k)| (id, (s, k))).collect();
    let frames = jobs
        .into_iter()
        .map(|(timestamp, job_id)| {
            let (status, key) = by_id
                .get(&job_id)
                .cloned()
                .unwrap_or_else(|| ("queued".to_owned(), None));
            Frame {
                timestamp,
                image_url: key.map(|k| crate::files::file_url(&ctx, &k, false)),
                job_id,
                status,
            }
        })
        .collect();
    Ok(with_position(last, Json(Frames { frames })))
}

async fn load_job(ctx: &ApiContext, user: Uuid, job_id: Uuid) -> Result<Option<JobRow>, ApiError> {
    Ok(sqlx::query_as::<_, JobRow>(&format!(
        "SELECT {JOB_COLUMNS} FROM ai_jobs WHERE id = $1 AND owner_id = $2"
    ))
    .bind(job_id)
    .bind(user)
    .fetch_optional(&ctx.pool)
    .await?)
}

#[utoipa::path(get, path = "/v1/ai/jobs/{id}", tag = "ai", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("id" = Uuid, Path)),
    responses((status = 200, body = JobView), (status = 404, description = "No such job of yours", body = crate::error::ErrorEnvelope)))]
pub async fn get_job(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job_id = path_uuid(&id, "Job")?;
    ctx.wait_for(min, &["ai_jobs"]).await?;
    let mut row = load_job(&ctx, user.user_id, job_id).await?;
    if row.is_none() {
        // a job requested a moment ago may not be projected yet
        ctx.wait_for_head(&["ai_jobs"]).await?;
        row = load_job(&ctx, user.user_id, job_id).await?;
    }
    row.map(|r| Json(r.into_view(&ctx)))
        .ok_or(ApiError::NotFound { what: "Job" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Canceled {
    pub job_id: Uuid,
    pub status: String,
    /// Credits that go back to the wallet (refunded by the credits saga).
    pub refund: i64,
}

#[utoipa::path(delete, path = "/v1/ai/jobs/{id}", tag = "ai", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Canceled, description = "Canceled; a running job is stopped and its credits refunded"),
              (status = 404, description = "No such job of yours", body = crate::error::ErrorEnvelope),
              (status = 409, description = "JOB_FINISHED (already completed, failed or canceled) or JOB_PUBLISHING (its output is being published: too late to cancel)", body = crate::error::ErrorEnvelope)))]
pub async fn cancel_job(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job_id = path_uuid(&id, "Job")?;
    let written = ctx
        .store
        .ai_jobs
        .execute(
            &job_id.to_string(),
            AiJobCommand::CancelJob {
                actor: user.user_id,
                at: crate::now(),
            },
            HashMap::from([("actor".to_owned(), user.user_id.to_string())]),
        )
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                JobError::NotFound | JobError::NotOwner => ApiError::NotFound { what: "Job" },
                JobError::Canceled => ApiError::JobFinished { status: "canceled" },
                JobError::Publishing => ApiError::Conflict {
                    code: "JOB_PUBLISHING",
                    message: "The job's output is being published; it can no longer be canceled."
                        .into(),
                    details: None,
                },
                JobError::Finished => ApiError::JobFinished { status: "finished" },
                other => ApiError::Internal(anyhow::anyhow!(other)),
            })
        })?;
    // the job's cost, from its read model (settled if it lags the request)
    let mut cost = load_job(&ctx, user.user_id, job_id).await?.map(|j| j.cost);
    if cost.is_none() {
        ctx.wait_for_head(&["ai_jobs"]).await?;
        cost = load_job(&ctx, user.user_id, job_id).await?.map(|j| j.cost);
    }
    Ok(with_position(
        written.position,
        Json(Canceled {
            job_id,
            status: "canceled".to_owned(),
            refund: cost.unwrap_or(0),
        }),
    ))
}

/// One job of `POST /v1/ai/jobs/batch-status`, in the seed's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobStatusView {
    /// queued, processing, completed, failed, canceled — or not_found (not
    /// yours, or no such job).
    pub status: String,
    pub progress: i16,
    pub result_url: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchStatus {
    pub jobs: BTreeMap<Uuid, JobStatusView>,
}

#[utoipa::path(post, path = "/v1/ai/jobs/batch-status", tag = "ai", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    request_body(content = JobIds),
    responses((status = 200, body = BatchStatus),
              (status = 422, description = "more than 50 ids, or malformed ids (named)", body = crate::error::ErrorEnvelope)))]
pub async fn batch_status(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    JsonObject(body): JsonObject,
) -> Result<Json<BatchStatus>, ApiError> {
    let mut f = Fields::new(&body);
    let ids = f.uuid_list("job_ids", BATCH_STATUS_MAX);
    f.finish()?;
    let ids = ids.unwrap_or_default();
    ctx.wait_for(min, &["ai_jobs"]).await?;
    type StatusRow = (Uuid, String, i16, Option<String>, Option<String>);
    let rows: Vec<StatusRow> = sqlx::query_as(
        "SELECT id, status, progress, result_key, error_message FROM ai_jobs
          WHERE id = ANY($1) AND owner_id = $2",
    )
    .bind(&ids)
    .bind(user.user_id)
    .fetch_all(&ctx.pool)
    .await?;
    let mut jobs: BTreeMap<Uuid, JobStatusView> = ids
        .iter()
        .map(|id| {
            (
                *id,
                JobStatusView {
                    status: "not_found".to_owned(),
                    progress: 0,
                    result_url: None,
                    error: None,
                },
            )
        })
        .collect();
    for (id, status, progress, key, error) in rows {
        jobs.insert(
            id,
            JobStatusView {
                status,
                progress,
                result_url: key.map(|k| crate::files::file_url(&ctx, &k, false)),
                error,
            },
        );
    }
    Ok(Json(BatchStatus { jobs }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackReceived {
    pub received: bool,
}

#[utoipa::path(post, path = "/v1/ai/callbacks/{provider}", tag = "ai",
    params(("provider" = String, Path, description = "`replicate` (when LOKIZ_AI_PROVIDER=replicate)"),
           ("webhook-id" = String, Header), ("webhook-timestamp" = String, Header),
           ("webhook-signature" = String, Header, description = "Standard Webhooks signature with LOKIZ_REPLICATE_WEBHOOK_SECRET")),
    request_body(content = Object, description = "The provider's prediction"),
    responses((status = 200, body = CallbackReceived),
              (status = 401, description = "INVALID_SIGNATURE", body = crate::error::ErrorEnvelope),
              (status = 404, description = "No such provider configured", body = crate::error::ErrorEnvelope)))]
pub async fn callback(
    State(ctx): State<ApiContext>,
    Path(provider): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<CallbackReceived>, ApiError> {
    let lokiz_infra::config::AiConfig::Replicate(replicate) = &ctx.config.ai else {
        return Err(ApiError::NotFound { what: "Callback" });
    };
    if provider != "replicate" {
        return Err(ApiError::NotFound { what: "Callback" });
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let invalid = ApiError::Unauthorized {
        code: "INVALID_SIGNATURE",
        message: "The webhook signature does not verify.",
    };
    lokiz_infra::ai::replicate::verify_webhook(
        replicate.webhook_secret.expose(),
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
        Utc::now(),
        lokiz_infra::ai::replicate::WEBHOOK_TOLERANCE,
    )
    .map_err(|_| invalid)?;
    let prediction_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned))
        .filter(|id| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .ok_or_else(|| ApiError::BadRequest {
            code: "INVALID_CALLBACK",
            message: "The callback carries no prediction id.".into(),
        })?;
    // wake the worker polling this prediction (it re-reads the prediction)
    let subject = format!(
        "{}.{prediction_id}",
        lokiz_infra::ai::remote::wake_subject(&ctx.config.stream)
    );
    if let Err(e) = ctx.nats.publish(subject, body).await {
        tracing::warn!(error = %e, "callback wake-up not published; the worker polls anyway");
    }
    Ok(Json(CallbackReceived { received: true }))
}
