use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::GrantReason;

/// Per-user AI job limits (configuration; they travel in the command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    pub max_active: u32,
    pub max_active_free: u32,
    pub free_per_day: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WalletCommand {
    /// Adds credits. `reference` identifies the grant (e.g. `signup`, a
    /// payment id): granting the same reference twice records nothing.
    GrantCredits {
        amount: i64,
        reason: GrantReason,
        reference: String,
        at: DateTime<Utc>,
    },
    /// Holds `amount` credits for an AI job. Refused when the balance is
    /// short; reserving for the same job again records nothing.
    ReserveCredits {
        job_id: Uuid,
        amount: i64,
        at: DateTime<Utc>,
    },
    /// Admits a new AI job under the owner's limits: a paid job (`cost` >
    /// 0) reserves its cost, at most `limits.max_active` of them open at
    /// once; a free one takes a free slot, at most `limits.max_active_free`
    /// open and `limits.free_per_day` a day (UTC). Separate slots: free jobs
    /// never keep paid ones out. Admitting the same job again records
    /// nothing.
    AdmitJob {
        job_id: Uuid,
        cost: i64,
        limits: JobLimits,
        at: DateTime<Utc>,
    },
    /// A free job ended (or was never recorded): its slot is free again.
    /// Once per job; a job that holds no slot records nothing.
    ReleaseFreeJob { job_id: Uuid, at: DateTime<Utc> },
    /// The job completed: its reservation is spent. Once per job.
    CaptureCredits { job_id: Uuid, at: DateTime<Utc> },
    /// The job failed or was canceled: its reservation goes back to the
    /// balance. Once per job.
    RefundCredits { job_id: Uuid, at: DateTime<Utc> },
}
