use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a job makes; each kind has a fixed credit cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    CaptureFrame,
    Template,
    GlitchAnimate,
    GlitchReplace,
    Music,
}

impl JobKind {
    /// Credits a job of this kind costs (SPEC §3).
    pub fn cost(self) -> i64 {
        match self {
            JobKind::CaptureFrame => 0,
            JobKind::Template => 20,
            JobKind::GlitchAnimate | JobKind::GlitchReplace => 30,
            JobKind::Music => 5,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::CaptureFrame => "capture_frame",
            JobKind::Template => "template",
            JobKind::GlitchAnimate => "glitch_animate",
            JobKind::GlitchReplace => "glitch_replace",
            JobKind::Music => "music",
        }
    }

    /// Whether the job's output is published as a new video glitched from
    /// its source.
    pub fn publishes_video(self) -> bool {
        matches!(
            self,
            JobKind::Template | JobKind::GlitchAnimate | JobKind::GlitchReplace | JobKind::Music
        )
    }
}

/// A job's parameters, per kind. Times are seconds into the source video;
/// presets are ids from the presets file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobParams {
    CaptureFrame {
        at_secs: f64,
    },
    Template {
        at_secs: f64,
        duration_secs: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt: Option<String>,
    },
    GlitchAnimate {
        start_secs: f64,
        end_secs: f64,
        preset: String,
    },
    GlitchReplace {
        start_secs: f64,
        end_secs: f64,
        preset: String,
    },
    Music {
        start_secs: f64,
        end_secs: f64,
        preset: String,
    },
}

impl JobParams {
    pub fn kind(&self) -> JobKind {
        match self {
            JobParams::CaptureFrame { .. } => JobKind::CaptureFrame,
            JobParams::Template { .. } => JobKind::Template,
            JobParams::GlitchAnimate { .. } => JobKind::GlitchAnimate,
            JobParams::GlitchReplace { .. } => JobKind::GlitchReplace,
            JobParams::Music { .. } => JobKind::Music,
        }
    }
}

/// Why a job failed, for clients (the message is for people).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureCode {
    /// The provider could not make the output.
    ProviderError,
    /// The source video is gone or unreadable.
    SourceUnavailable,
    /// Workers holding the job stopped answering too many times.
    WorkerLost,
    /// The run went past its kind's wall-clock limit.
    TimedOut,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::ProviderError => "PROVIDER_ERROR",
            FailureCode::SourceUnavailable => "SOURCE_UNAVAILABLE",
            FailureCode::WorkerLost => "WORKER_LOST",
            FailureCode::TimedOut => "TIMED_OUT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AiJobEvent {
    JobRequested {
        owner_id: Uuid,
        kind: JobKind,
        cost: i64,
        source_video_id: Uuid,
        params: JobParams,
        requested_at: DateTime<Utc>,
    },
    JobStarted {
        attempt: u32,
        worker: String,
        lease_until: DateTime<Utc>,
        started_at: DateTime<Utc>,
    },
    /// Coalesced: about one per second or per 5 % at most, plus lease
    /// renewals.
    JobProgressed {
        percent: u8,
        lease_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// `result_key`: the output's key in the blob store (served at the
    /// store's object URL; a key outlives any URL scheme).
    JobCompleted {
        result_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_video_id: Option<Uuid>,
        completed_at: DateTime<Utc>,
    },
    JobFailed {
        code: FailureCode,
        message: String,
        failed_at: DateTime<Utc>,
    },
    JobCanceled {
        canceled_at: DateTime<Utc>,
    },
    /// The output is made and about to be published: from here on the job
    /// can no longer be canceled (a cancel accepted earlier means no video).
    JobPublishing {
        attempt: u32,
        publishing_at: DateTime<Utc>,
    },
    /// The job was never requested and never will be: its reservation was
    /// released by the sweeper (the request that reserved it died before
    /// recording the job). A late `RequestJob` is refused.
    JobAbandoned {
        abandoned_at: DateTime<Utc>,
    },
}

impl DomainEvent for AiJobEvent {
    fn event_type(&self) -> String {
        match self {
            AiJobEvent::JobRequested { .. } => "JobRequested",
            AiJobEvent::JobStarted { .. } => "JobStarted",
            AiJobEvent::JobProgressed { .. } => "JobProgressed",
            AiJobEvent::JobCompleted { .. } => "JobCompleted",
            AiJobEvent::JobFailed { .. } => "JobFailed",
            AiJobEvent::JobCanceled { .. } => "JobCanceled",
            AiJobEvent::JobAbandoned { .. } => "JobAbandoned",
            AiJobEvent::JobPublishing { .. } => "JobPublishing",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
