use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::GrantReason;

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
    /// The job completed: its reservation is spent. Once per job.
    CaptureCredits { job_id: Uuid, at: DateTime<Utc> },
    /// The job failed or was canceled: its reservation goes back to the
    /// balance. Once per job.
    RefundCredits { job_id: Uuid, at: DateTime<Utc> },
}
