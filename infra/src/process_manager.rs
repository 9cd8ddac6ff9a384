//! The consuming loop every process manager shares: a durable JetStream
//! consumer on one aggregate type's subjects, one event at a time, acked
//! after it was handled and redelivered (after a second) when handling
//! failed. Exactly once comes from the aggregates the handlers command, which
//! record nothing when asked twice, not from delivery. An event this build
//! cannot decode is not skipped: in a rolling deploy a newer process may read
//! it, so it is logged, counted and delivered again after a longer pause.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use async_trait::async_trait;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{Config, StoredEvent};

#[derive(Debug, thiserror::Error)]
#[error("JetStream: {0}")]
pub struct ConsumerError(pub String);

/// How long an event this build cannot decode waits before it is delivered
/// again (a newer process may be deployed meanwhile).
pub const UNDECODABLE_PAUSE: Duration = Duration::from_secs(30);

/// Why a process manager could not handle an event.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The event, or one it reads from the store, does not decode with this
    /// build: delivered again after [`UNDECODABLE_PAUSE`].
    #[error("event does not decode: {0}")]
    Undecodable(#[from] serde_json::Error),
    /// Reading the store failed: delivered again.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A command was not recorded (a conflict, the database): delivered again.
    #[error("command: {0}")]
    Command(Box<dyn std::error::Error + Send + Sync>),
}

impl HandleError {
    /// A failed command (`AggregateError` of any aggregate).
    pub fn command(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Command(Box::new(e))
    }
}

/// What a process manager does with one event.
#[async_trait]
pub trait ProcessManager: Send + Sync {
    /// The durable consumer's name.
    fn consumer(&self) -> &'static str;
    /// The aggregate type whose events it reads.
    fn aggregate_type(&self) -> &'static str;
    /// Handles one event; an error has it delivered again.
    async fn handle(&self, event: &StoredEvent) -> Result<(), HandleError>;
}

async fn pull_consumer(
    js: &jetstream::Context,
    config: &Config,
    pm: &dyn ProcessManager,
) -> Result<consumer::PullConsumer, ConsumerError> {
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| ConsumerError(e.to_string()))?;
    stream
        .get_or_create_consumer(
            pm.consumer(),
            consumer::pull::Config {
                durable_name: Some(pm.consumer().to_owned()),
                filter_subject: format!("{}.{}.>", config.subject_prefix(), pm.aggregate_type()),
                ack_policy: consumer::AckPolicy::Explicit,
                deliver_policy: consumer::DeliverPolicy::All,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| ConsumerError(e.to_string()))
}

/// Runs `pm` until `shutdown`; returns an error when the consumer breaks
/// (the caller restarts it).
pub async fn run(
    js: &jetstream::Context,
    config: &Config,
    pm: &dyn ProcessManager,
    shutdown: CancellationToken,
) -> Result<(), ConsumerError> {
    let name = pm.consumer();
    let consumer = loop {
        match pull_consumer(js, config, pm).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "cannot create consumer; retrying");
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
        .map_err(|e| ConsumerError(e.to_string()))?;
    tracing::info!(consumer = name, "process manager running");
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = messages.next() => m,
        };
        let msg = match next {
            None => break,
            Some(Err(e)) => {
                tracing::warn!(consumer = name, error = %e, "consumer error");
                continue;
            }
            Some(Ok(m)) => m,
        };
        let outcome = match serde_json::from_slice::<StoredEvent>(&msg.payload) {
            Ok(event) => pm.handle(&event).await,
            Err(e) => Err(HandleError::Undecodable(e)),
        };
        let ack = match outcome {
            Ok(()) => msg.ack().await,
            Err(e @ HandleError::Undecodable(_)) => {
                tracing::error!(consumer = name, error = %e, "cannot decode the event; later");
                metrics::counter!("lokiz_process_manager_undecodable_total", "consumer" => name)
                    .increment(1);
                msg.ack_with(AckKind::Nak(Some(UNDECODABLE_PAUSE))).await
            }
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "will retry");
                msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await
            }
        };
        if let Err(e) = ack {
            tracing::warn!(consumer = name, error = %e, "ack failed");
        }
    }
    tracing::info!(consumer = name, "process manager stopped");
    Ok(())
}

/// Runs `pm`, restarting it a second after it fails, until `shutdown`.
pub async fn run_forever(
    js: jetstream::Context,
    config: Config,
    pm: std::sync::Arc<dyn ProcessManager>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        if let Err(e) = run(&js, &config, pm.as_ref(), shutdown.clone()).await {
            tracing::error!(consumer = pm.consumer(), error = %e, "process manager failed; restarting");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
