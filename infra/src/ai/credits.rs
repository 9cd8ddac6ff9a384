//! The credits saga: settles each AI job's credit reservation exactly once.
//!
//! A durable JetStream consumer (`credits-saga`) reads AiJob events;
//! `JobCompleted` captures the job's reservation, `JobFailed` and
//! `JobCanceled` refund it. Exactly once comes from the Wallet aggregate, not
//! from delivery: it settles a job's reservation once and records nothing
//! when asked again, so a redelivered (or duplicated) trigger is harmless.

use std::sync::Arc;

use cqrs_es::AggregateError;
use lokiz_domain::ai_job::{AiJob, AiJobEvent};
use lokiz_domain::wallet::{WalletCommand, WalletError};
use sqlx::PgPool;
use uuid::Uuid;

use crate::event_store::EventStore;
use crate::process_manager::{HandleError, ProcessManager};
use crate::StoredEvent;

pub const CONSUMER: &str = "credits-saga";

/// What handling one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Not an outcome, or a free job: nothing to settle.
    Nothing,
    Captured,
    Refunded,
    /// Settled before (a repeated trigger): nothing recorded.
    AlreadySettled,
}

pub struct CreditsSaga {
    pool: PgPool,
    store: Arc<EventStore>,
}

impl CreditsSaga {
    pub fn new(pool: PgPool, store: Arc<EventStore>) -> Self {
        Self { pool, store }
    }

    /// Settles the job `event` is about, if it is an outcome.
    pub async fn settle(&self, event: &StoredEvent) -> Result<Settlement, HandleError> {
        if event.aggregate_type != AiJob::TYPE_NAME {
            return Ok(Settlement::Nothing);
        }
        let capture = match event.event_type.as_str() {
            "JobCompleted" => true,
            "JobFailed" | "JobCanceled" => false,
            _ => return Ok(Settlement::Nothing),
        };
        let Ok(job_id) = Uuid::parse_str(&event.aggregate_id) else {
            return Ok(Settlement::Nothing);
        };
        // who pays, and how much: the job's request
        let requested: Option<StoredEvent> = sqlx::query_as(&format!(
            "SELECT {} FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = 1",
            crate::stored_event::STORED_EVENT_COLUMNS
        ))
        .bind(AiJob::TYPE_NAME)
        .bind(&event.aggregate_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(requested) = requested else {
            return Ok(Settlement::Nothing);
        };
        let AiJobEvent::JobRequested { owner_id, cost, .. } = requested.decode::<AiJobEvent>()?
        else {
            return Ok(Settlement::Nothing);
        };
        let at = event.recorded_at;
        if cost == 0 {
            // a free job gives its slot back (nothing recorded if it held none)
            return match self
                .store
                .wallets
                .execute(
                    &owner_id.to_string(),
                    WalletCommand::ReleaseFreeJob { job_id, at },
                    Default::default(),
                )
                .await
            {
                Ok(_) => Ok(Settlement::Nothing),
                Err(e) => Err(HandleError::command(e)),
            };
        }
        // a job whose output was published is paid for, whatever ended it
        // afterwards (a failure after the publish): never refunded
        let published: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events
                             WHERE aggregate_type = 'Video' AND aggregate_id = $1
                               AND event_type = 'GlitchedFrom')",
        )
        .bind(job_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        let capture = capture || published;
        let command = if capture {
            WalletCommand::CaptureCredits { job_id, at }
        } else {
            WalletCommand::RefundCredits { job_id, at }
        };
        match self
            .store
            .wallets
            .execute(&owner_id.to_string(), command, Default::default())
            .await
        {
            Ok(w) if !w.appended => Ok(Settlement::AlreadySettled),
            Ok(_) if capture => Ok(Settlement::Captured),
            Ok(_) => Ok(Settlement::Refunded),
            Err(AggregateError::UserError(WalletError::NoReservation)) => {
                tracing::warn!(%job_id, "credits saga: the job has no reservation to settle");
                Ok(Settlement::Nothing)
            }
            Err(e) => Err(HandleError::command(e)),
        }
    }
}

#[async_trait::async_trait]
impl ProcessManager for CreditsSaga {
    fn consumer(&self) -> &'static str {
        CONSUMER
    }

    fn aggregate_type(&self) -> &'static str {
        AiJob::TYPE_NAME
    }

    async fn handle(&self, event: &StoredEvent) -> Result<(), HandleError> {
        let s = self.settle(event).await?;
        if s != Settlement::Nothing {
            tracing::debug!(settlement = ?s, "credits settled");
        }
        Ok(())
    }
}
