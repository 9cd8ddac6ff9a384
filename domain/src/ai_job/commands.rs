use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{FailureCode, JobParams};

#[derive(Debug, Clone, PartialEq)]
pub enum AiJobCommand {
    /// A user asks for a job (credits already reserved by the caller).
    RequestJob {
        job_id: Uuid,
        owner_id: Uuid,
        source_video_id: Uuid,
        params: JobParams,
        at: DateTime<Utc>,
    },
    /// A worker takes the job, holding it until `lease_until`. A job whose
    /// lease ran out (its worker died) can be taken again, as a new attempt.
    StartJob {
        worker: String,
        lease_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Progress from the running attempt; also renews the lease and tells a
    /// worker that its job was canceled (the command is refused).
    ReportProgress {
        attempt: u32,
        percent: u8,
        lease_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    CompleteJob {
        attempt: u32,
        result_key: String,
        output_video_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
    /// `attempt` is the failing worker's; `None` for a job failed before any
    /// worker could run it (e.g. its attempts ran out).
    FailJob {
        attempt: Option<u32>,
        code: FailureCode,
        message: String,
        at: DateTime<Utc>,
    },
    CancelJob {
        actor: Uuid,
        at: DateTime<Utc>,
    },
    /// The running attempt's output is ready to publish: refused when the
    /// job was canceled (the worker then drops the output); once recorded,
    /// a cancel is refused.
    BeginPublish {
        attempt: u32,
        at: DateTime<Utc>,
    },
    /// Closes a job id that was reserved for but never requested (the
    /// reservation sweeper, before it refunds): refused once the job is
    /// requested, so a reservation is never refunded under a live job.
    AbandonRequest {
        at: DateTime<Utc>,
    },
}
