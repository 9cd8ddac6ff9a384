//! The AiJob aggregate (id = job id): one AI job's life,
//! `queued → processing → completed | failed | canceled`.
//!
//! Credits are not handled here: the Wallet reserves them before the job is
//! requested, and the credits saga captures or refunds them from this
//! aggregate's outcome events.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{AiJob, JobError, JobStatus, MAX_ATTEMPTS};
pub use commands::AiJobCommand;
pub use events::{AiJobEvent, FailureCode, JobKind, JobParams};
