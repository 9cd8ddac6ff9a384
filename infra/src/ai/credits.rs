//! The credits saga: settles each AI job's credit reservation exactly once.
//!
//! A durable JetStream consumer (`credits-saga`) reads AiJob events;
//! `JobCompleted` captures the job's reservation, `JobFailed` and
//! `JobCanceled` refund it. Exactly once comes from the Wallet aggregate, not
//! from delivery: it settles a job's reservation once and records nothing
//! when asked again, so a redelivered (or duplicated) trigger is harmless.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use cqrs_es::AggregateError;
use futures::StreamExt;
use lokiz_domain::ai_job::{AiJob, AiJobEvent};
use lokiz_domain::wallet::{WalletCommand, WalletError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::event_store::EventStore;
use crate::{Config, StoredEvent};

pub const CONSUMER: &str = "credits-saga";

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("wallet command: {0}")]
    Command(String),
    #[error("event does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

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
    js: jetstream::Context,
    config: Config,
    store: Arc<EventStore>,
}

impl CreditsSaga {
    pub fn new(
        pool: PgPool,
        js: jetstream::Context,
        config: Config,
        store: Arc<EventStore>,
    ) -> Self {
        Self {
            pool,
            js,
            config,
            store,
        }
    }

    /// Settles the job `event` is about, if it is an outcome.
    pub async fn handle(&self, event: &StoredEvent) -> Result<Settlement, SagaError> {
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
                Err(e) => Err(SagaError::Command(e.to_string())),
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
            Err(e) => Err(SagaError::Command(e.to_string())),
        }
    }

    async fn consumer(&self) -> Result<consumer::PullConsumer, SagaError> {
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| SagaError::JetStream(e.to_string()))?;
        stream
            .get_or_create_consumer(
                CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(CONSUMER.to_owned()),
                    filter_subject: format!(
                        "{}.{}.>",
                        self.config.subject_prefix(),
                        AiJob::TYPE_NAME
                    ),
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| SagaError::JetStream(e.to_string()))
    }

    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), SagaError> {
        let consumer = loop {
            match self.consumer().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "credits saga: cannot create consumer; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(100)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| SagaError::JetStream(e.to_string()))?;
        tracing::info!("credits saga running");
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = messages.next() => m,
            };
            let msg = match next {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "credits saga: consumer error");
                    continue;
                }
                Some(Ok(m)) => m,
            };
            let outcome = match serde_json::from_slice::<StoredEvent>(&msg.payload) {
                Ok(event) => self.handle(&event).await,
                Err(e) => {
                    tracing::error!(error = %e, "credits saga: undecodable message skipped");
                    Ok(Settlement::Nothing)
                }
            };
            let ack = match outcome {
                Ok(s) => {
                    if s != Settlement::Nothing {
                        tracing::debug!(settlement = ?s, "credits settled");
                    }
                    msg.ack().await
                }
                Err(e) => {
                    tracing::warn!(error = %e, "credits saga: will retry");
                    msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await
                }
            };
            if let Err(e) = ack {
                tracing::warn!(error = %e, "credits saga: ack failed");
            }
        }
        tracing::info!("credits saga stopped");
        Ok(())
    }
}
