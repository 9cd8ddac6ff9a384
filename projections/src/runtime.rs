//! Feeds one projector from its durable JetStream consumer.
//!
//! A batch of messages is applied and the checkpoint advanced in one Postgres
//! transaction, then acknowledged (ack policy `All`: acking the last message
//! acks the batch). Anything at or below the checkpoint is skipped, so
//! redelivery and duplicates change nothing. When a batch fails, its events are
//! retried one at a time with backoff; an event that still fails is parked in
//! `parked_events` (and the checkpoint moves past it in the same transaction),
//! so the projection goes on. Transient database errors are never parked: they
//! are retried until the database is back.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::{FutureExt, StreamExt};
use lokiz_infra::{Config, StoredEvent, StreamPosition};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::projector::{ProjectionError, Projector};

/// Called after each commit with the projection name and, per applied event,
/// the time from its recording to the read model's commit.
pub type LagObserver = Arc<dyn Fn(&str, &[Duration]) + Send + Sync>;

#[derive(Clone)]
pub struct RuntimeOptions {
    pub max_batch: usize,
    /// Attempts for one event before it is parked.
    pub attempts: u32,
    pub first_backoff: Duration,
    pub lag_observer: Option<LagObserver>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            max_batch: 1000,
            attempts: 4,
            first_backoff: Duration::from_millis(50),
            lag_observer: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub struct ProjectionRunner {
    pool: PgPool,
    js: jetstream::Context,
    config: Config,
    projector: Arc<dyn Projector>,
    options: RuntimeOptions,
}

/// One message of a batch, decoded.
struct Incoming {
    event: Option<StoredEvent>,
    /// JetStream stream sequence, to name an undecodable message when parking.
    stream_sequence: u64,
    raw_error: Option<String>,
}

impl ProjectionRunner {
    pub fn new(
        pool: PgPool,
        js: jetstream::Context,
        config: Config,
        projector: Arc<dyn Projector>,
        options: RuntimeOptions,
    ) -> Self {
        Self {
            pool,
            js,
            config,
            projector,
            options,
        }
    }

    async fn consumer(&self) -> Result<consumer::PullConsumer, RuntimeError> {
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| RuntimeError::JetStream(e.to_string()))?;
        let prefix = self.config.subject_prefix();
        let types = self.projector.aggregate_types();
        // NATS 2.9 allows one filter subject per consumer: a projector of one
        // aggregate type gets only that type's events; one that reads several
        // types consumes the whole stream and skips what it does not read.
        let filter_subject = match types {
            [one] => format!("{prefix}.{one}.>"),
            _ => format!("{prefix}.>"),
        };
        stream
            .get_or_create_consumer(
                self.projector.name(),
                consumer::pull::Config {
                    durable_name: Some(self.projector.name().to_owned()),
                    filter_subject,
                    ack_policy: consumer::AckPolicy::All,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_wait: Duration::from_secs(60),
                    max_ack_pending: 20_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| RuntimeError::JetStream(e.to_string()))
    }

    /// The advisory-lock key that makes this runner the only active one.
    pub fn lock_key(&self) -> String {
        format!(
            "lokiz-projection:{}:{}",
            self.config.stream,
            self.projector.name()
        )
    }

    /// Consumes until `shutdown`. The caller must hold [`Self::lock_key`]:
    /// only one runner per projection may be active, order matters to it.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), RuntimeError> {
        let name = self.projector.name();
        let consumer = loop {
            match self.consumer().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "cannot create consumer; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        tracing::info!(projection = name, "projection running");
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.options.max_batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| RuntimeError::JetStream(e.to_string()))?;

        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = messages.next() => m,
            };
            let Some(first) = first else {
                tracing::warn!(projection = name, "message stream ended");
                break;
            };
            let mut batch = Vec::with_capacity(64);
            match first {
                Ok(m) => batch.push(m),
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "consumer error");
                    continue;
                }
            }
            while batch.len() < self.options.max_batch {
                match messages.next().now_or_never() {
                    Some(Some(Ok(m))) => batch.push(m),
                    _ => break,
                }
            }
            let incoming: Vec<Incoming> = batch.iter().map(decode_message).collect();
            // Retry until applied (or parked); only shutdown interrupts, and
            // then the batch is simply redelivered later.
            let mut failures = 0u32;
            loop {
                match self.process(&incoming).await {
                    Ok(()) => break,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let wait = Duration::from_millis(100 * 2u64.pow(failures.min(5)));
                        tracing::warn!(projection = name, error = %e, ?wait, "batch failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            if let Some(last) = batch.last() {
                if let Err(e) = last.ack().await {
                    // Not fatal: unacked messages come back and are skipped.
                    tracing::warn!(projection = name, error = %e, "ack failed");
                }
            }
        }
        tracing::info!(projection = name, "projection stopped");
        Ok(())
    }

    /// Applies a batch: all in one transaction, or, when that fails, one event
    /// at a time with retries and parking.
    async fn process(&self, incoming: &[Incoming]) -> Result<(), RuntimeError> {
        match self.apply_all(incoming).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() => return Err(RuntimeError::Db(into_sqlx(e))),
            Err(e) => {
                tracing::warn!(projection = self.projector.name(), error = %e,
                    "batch failed; applying its events one by one");
            }
        }
        for item in incoming {
            self.apply_one_with_retries(item).await?;
        }
        Ok(())
    }

    async fn apply_all(&self, incoming: &[Incoming]) -> Result<(), ProjectionError> {
        if incoming.iter().any(|i| i.event.is_none()) {
            // let the one-by-one path park the undecodable message
            return Err(ProjectionError::AggregateId("undecodable message".into()));
        }
        let events: Vec<&StoredEvent> = incoming.iter().filter_map(|i| i.event.as_ref()).collect();
        let mut tx = self.pool.begin().await?;
        let checkpoint = lock_checkpoint(&mut tx, self.projector.name()).await?;
        let applied: Vec<&StoredEvent> = events
            .into_iter()
            .filter(|e| e.stream_position() > checkpoint)
            .collect();
        let read: Vec<&StoredEvent> = applied.iter().copied().filter(|e| self.reads(e)).collect();
        if !read.is_empty() {
            self.projector.apply_batch(&mut tx, &read).await?;
        }
        if let Some(last) = applied.last() {
            advance_checkpoint(
                &mut tx,
                self.projector.name(),
                last.stream_position(),
                applied.len() as i64,
            )
            .await?;
        }
        tx.commit().await?;
        self.observe(&applied);
        Ok(())
    }

    fn reads(&self, e: &StoredEvent) -> bool {
        self.projector
            .aggregate_types()
            .contains(&e.aggregate_type.as_str())
    }

    fn observe(&self, applied: &[&StoredEvent]) {
        if applied.is_empty() {
            return;
        }
        let now = chrono::Utc::now();
        let lags: Vec<Duration> = applied
            .iter()
            .map(|e| (now - e.recorded_at).to_std().unwrap_or_default())
            .collect();
        let histogram = metrics::histogram!("lokiz_projection_lag_seconds", "projection" => self.projector.name());
        for lag in &lags {
            histogram.record(lag.as_secs_f64());
        }
        metrics::counter!("lokiz_projection_applied_total", "projection" => self.projector.name())
            .increment(applied.len() as u64);
        if let Some(observer) = &self.options.lag_observer {
            observer(self.projector.name(), &lags);
        }
    }

    async fn apply_one_with_retries(&self, item: &Incoming) -> Result<(), RuntimeError> {
        let name = self.projector.name();
        let Some(event) = &item.event else {
            self.park_undecodable(item).await?;
            return Ok(());
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.apply_one(event).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => return Err(RuntimeError::Db(into_sqlx(e))),
                Err(e) if attempt >= self.options.attempts => {
                    tracing::error!(projection = name, position = event.position,
                        event_type = %event.event_type, error = %e, "event parked");
                    self.park(event, &e.to_string(), attempt).await?;
                    return Ok(());
                }
                Err(e) => {
                    let wait = self.options.first_backoff * 2u32.pow(attempt - 1);
                    tracing::warn!(projection = name, position = event.position, error = %e,
                        attempt, ?wait, "event failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn apply_one(&self, event: &StoredEvent) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await?;
        let checkpoint = lock_checkpoint(&mut tx, self.projector.name()).await?;
        if event.stream_position() <= checkpoint {
            return Ok(());
        }
        if self.reads(event) {
            self.projector.apply(&mut tx, event).await?;
        }
        advance_checkpoint(&mut tx, self.projector.name(), event.stream_position(), 1).await?;
        tx.commit().await?;
        self.observe(&[event]);
        Ok(())
    }

    async fn park(
        &self,
        event: &StoredEvent,
        error: &str,
        attempts: u32,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let checkpoint = lock_checkpoint(&mut tx, self.projector.name()).await?;
        if event.stream_position() <= checkpoint {
            return Ok(());
        }
        park_event(&mut tx, self.projector.name(), event, error, attempts).await?;
        advance_checkpoint(&mut tx, self.projector.name(), event.stream_position(), 0).await?;
        tx.commit().await?;
        metrics::counter!("lokiz_projection_parked_total", "projection" => self.projector.name())
            .increment(1);
        Ok(())
    }

    /// A message whose body is not an event envelope at all: kept for
    /// inspection under a negative position (minus its stream sequence).
    async fn park_undecodable(&self, item: &Incoming) -> Result<(), sqlx::Error> {
        tracing::error!(
            projection = self.projector.name(),
            stream_sequence = item.stream_sequence,
            "undecodable message parked"
        );
        sqlx::query(
            "INSERT INTO parked_events (projection, position, xid, aggregate_type, aggregate_id,
                                        sequence, event_type, error, attempts)
             VALUES ($1, $2, 0, '', '', 0, '', $3, 1)
             ON CONFLICT (projection, position) DO NOTHING",
        )
        .bind(self.projector.name())
        .bind(-(item.stream_sequence as i64))
        .bind(item.raw_error.as_deref().unwrap_or("undecodable"))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn decode_message(m: &jetstream::Message) -> Incoming {
    let stream_sequence = m.info().map(|i| i.stream_sequence).unwrap_or(0);
    match serde_json::from_slice::<StoredEvent>(&m.payload) {
        Ok(event) => Incoming {
            event: Some(event),
            stream_sequence,
            raw_error: None,
        },
        Err(e) => Incoming {
            event: None,
            stream_sequence,
            raw_error: Some(e.to_string()),
        },
    }
}

fn into_sqlx(e: ProjectionError) -> sqlx::Error {
    match e {
        ProjectionError::Db(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// Reads (and row-locks) a projection's checkpoint inside `conn`'s transaction.
pub async fn lock_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
) -> Result<StreamPosition, sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(projection)
    .execute(&mut *conn)
    .await?;
    let (xid, position): (i64, i64) = sqlx::query_as(
        "SELECT last_xid, last_position FROM projection_checkpoints WHERE projection = $1 FOR UPDATE",
    )
    .bind(projection)
    .fetch_one(&mut *conn)
    .await?;
    Ok(StreamPosition { xid, position })
}

/// Records `event` in `parked_events` for `projection` (once).
pub async fn park_event(
    conn: &mut PgConnection,
    projection: &str,
    event: &StoredEvent,
    error: &str,
    attempts: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO parked_events (projection, position, xid, aggregate_type, aggregate_id,
                                    sequence, event_type, error, attempts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (projection, position) DO NOTHING",
    )
    .bind(projection)
    .bind(event.position)
    .bind(event.xid)
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(event.sequence)
    .bind(&event.event_type)
    .bind(error)
    .bind(attempts as i32)
    .execute(conn)
    .await?;
    Ok(())
}

/// A projection's checkpoint, without locking it (zero when it has none).
pub async fn checkpoint_of(
    conn: &mut PgConnection,
    projection: &str,
) -> Result<StreamPosition, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT last_xid, last_position FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(projection)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row
        .map(|(xid, position)| StreamPosition { xid, position })
        .unwrap_or_default())
}

pub async fn advance_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    to: StreamPosition,
    applied: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints
            SET last_xid = $2, last_position = $3, applied = applied + $4, updated_at = now()
          WHERE projection = $1",
    )
    .bind(projection)
    .bind(to.xid)
    .bind(to.position)
    .bind(applied)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Runs every projection in `projectors` until `shutdown`.
///
/// One connection holds the advisory locks of all the projections this
/// process runs (a projection whose lock another process holds is retried
/// until it is free). If that connection is lost, every runner stops and the
/// whole set starts over, so no runner ever works without its lock.
pub async fn run_all(
    pool: PgPool,
    js: jetstream::Context,
    config: Config,
    projectors: Vec<Arc<dyn Projector>>,
    options: RuntimeOptions,
    shutdown: CancellationToken,
) {
    let runners: Vec<Arc<ProjectionRunner>> = projectors
        .into_iter()
        .map(|p| {
            Arc::new(ProjectionRunner::new(
                pool.clone(),
                js.clone(),
                config.clone(),
                p,
                options.clone(),
            ))
        })
        .collect();
    while !shutdown.is_cancelled() {
        let round = shutdown.child_token();
        run_round(&config, &runners, &round).await;
        round.cancel();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Holds the locks on one connection and runs each runner once it has its
/// lock; returns when the lock connection is lost or `round` is cancelled.
async fn run_round(config: &Config, runners: &[Arc<ProjectionRunner>], round: &CancellationToken) {
    let mut lock = match lokiz_infra::db::options(&config.database_url) {
        Ok(opts) => match PgConnection::connect_with(&opts).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "projections cannot connect for their locks");
                return;
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "projections: bad DATABASE_URL");
            return;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut waiting: Vec<Arc<ProjectionRunner>> = runners.to_vec();
    loop {
        let mut still = Vec::new();
        for runner in waiting {
            let got: Result<bool, _> =
                sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                    .bind(runner.lock_key())
                    .fetch_one(&mut lock)
                    .await;
            match got {
                Ok(true) => {
                    let token = round.clone();
                    tasks.spawn(async move {
                        let name = runner.projector.name();
                        // A runner returns when its message stream breaks; start it again.
                        while !token.is_cancelled() {
                            if let Err(e) = runner.run(token.clone()).await {
                                tracing::error!(projection = name, error = %e, "projection stopped with an error");
                            }
                            tokio::select! {
                                _ = token.cancelled() => {}
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            }
                        }
                    });
                }
                Ok(false) => still.push(runner),
                Err(e) => {
                    tracing::warn!(error = %e, "projection lock connection lost");
                    round.cancel();
                    while tasks.join_next().await.is_some() {}
                    return;
                }
            }
        }
        waiting = still;
        // keep the lock connection honest: if it dies, the locks are gone
        tokio::select! {
            _ = round.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(if waiting.is_empty() { 1000 } else { 250 })) => {}
        }
        if sqlx::query("SELECT 1").execute(&mut lock).await.is_err() {
            tracing::warn!("projection lock connection lost; restarting the projections");
            round.cancel();
            break;
        }
    }
    while tasks.join_next().await.is_some() {}
    let _ = lock.close().await;
}
