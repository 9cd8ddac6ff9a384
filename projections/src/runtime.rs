//! Feeds one projector from the JetStream stream, exactly once.
//!
//! **Where a runner resumes is decided by Postgres alone.** Each checkpoint
//! row holds the (xid, position) of the last event applied and the JetStream
//! stream sequence of its message (`stream_seq`), written in the transaction
//! that writes the read-model rows. Every (re)start — process start, lock
//! takeover, NATS reconnect, consumer error, a gap — creates a fresh
//! ephemeral consumer (no acks, so nothing is "delivered but pending"
//! anywhere) that starts at the message after `stream_seq`. Nothing a dead
//! runner received and did not commit can be passed over: it is simply read
//! again. When `stream_seq` is unknown (after a rebuild's swap) the start is
//! found by binary search over the stream, which the relay keeps strictly in
//! (xid, position) order.
//!
//! **Gaps.** Consumer sequences must arrive as 1, 2, 3, …; on any jump, on a
//! consumer error or a missed heartbeat, the runner commits what it has and
//! starts again from its checkpoint. In flight per projection: one pull of at
//! most `max_batch` messages (and `max_bytes`), and at most `max_batch`
//! decoded messages gathered by a reader task while the batch before them is
//! applied (batches grow when the database is the slow part).
//!
//! **Sharing a consumer.** The projectors a process locks together share
//! one consumer of the whole stream ([`run_group`]); each member applies the
//! shared batches under its own checkpoint, on its own connection, exactly
//! as below.
//!
//! **Applying.** A batch is applied and the checkpoint advanced in one
//! transaction that first locks the checkpoint row (rebuild, verify and
//! reset-parked take the same lock). Anything at or below the checkpoint is
//! skipped, so a message read twice changes nothing. When a batch fails, its
//! events are applied one at a time with backoff; an event that still fails
//! is parked in `parked_events` (the checkpoint moves past it in the same
//! transaction), and every later event touching one of its entities
//! ([`Projector::entity_keys`]) is parked behind it, in order. Transient
//! database errors are never parked: they are retried until the database is
//! back.

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
    /// Messages per pull (and per transaction at most).
    pub max_batch: usize,
    /// Bytes per pull: bounds what is in flight for one projection.
    pub max_bytes: usize,
    /// Attempts for one event before it is parked.
    pub attempts: u32,
    pub first_backoff: Duration,
    pub lag_observer: Option<LagObserver>,
    /// Where to publish projectors' wake-ups after commits (none: dropped).
    pub nats: Option<async_nats::Client>,
    /// How long a consumer group waits for a member to take a batch before
    /// it detaches the member (see `fan_out`).
    pub group_stall: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            max_batch: 2500,
            max_bytes: 4 << 20,
            attempts: 4,
            first_backoff: Duration::from_millis(50),
            lag_observer: None,
            nats: None,
            group_stall: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("delivery gap: consumer sequence {got} after {after}")]
    Gap { after: u64, got: u64 },
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
    /// JetStream stream sequence: the resume point, and the name of an
    /// undecodable message when parking.
    stream_sequence: u64,
    raw_error: Option<String>,
}

/// A projection's checkpoint row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: StreamPosition,
    /// Stream sequence of the message of `position`, when known.
    pub stream_seq: Option<i64>,
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

    fn filter_subject(&self) -> String {
        let prefix = self.config.subject_prefix();
        // NATS 2.9 allows one filter subject per consumer: a projector of one
        // aggregate type gets only that type's events; one that reads several
        // types consumes the whole stream and skips what it does not read.
        match self.projector.aggregate_types() {
            [one] => format!("{prefix}.{one}.>"),
            _ => format!("{prefix}.>"),
        }
    }

    /// The stream sequence to start from: the message after the checkpoint.
    pub async fn resume_sequence(
        &self,
        stream: &mut jetstream::stream::Stream,
    ) -> Result<u64, RuntimeError> {
        let mut conn = self.pool.acquire().await?;
        let cp = checkpoint_row(&mut conn, self.projector.name()).await?;
        drop(conn);
        if cp.position == StreamPosition::default() {
            return Ok(1);
        }
        if let Some(seq) = cp.stream_seq.filter(|s| *s > 0) {
            // trust it only if the message there is the checkpoint's event
            // (the stream may have been recreated since)
            if position_at(stream, seq as u64).await == Some(cp.position) {
                return Ok(seq as u64 + 1);
            }
        }
        let info = stream
            .info()
            .await
            .map_err(|e| RuntimeError::JetStream(e.to_string()))?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        if last == 0 || first > last {
            return Ok(1);
        }
        // smallest sequence whose event lies after the checkpoint
        let (mut lo, mut hi) = (first, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match position_at(stream, mid).await {
                Some(p) if p > cp.position => hi = mid,
                Some(_) => lo = mid + 1,
                None => {
                    // a hole or a foreign message: read from the start and
                    // let the checkpoint skip what is applied
                    tracing::warn!(
                        projection = self.projector.name(),
                        sequence = mid,
                        "no event at this stream sequence; resuming from the stream's start"
                    );
                    return Ok(first);
                }
            }
        }
        Ok(lo)
    }
}

async fn create_consumer(
    stream: &jetstream::stream::Stream,
    start: u64,
    description: String,
    filter_subject: String,
) -> Result<consumer::PullConsumer, RuntimeError> {
    let deliver_policy = if start <= 1 {
        consumer::DeliverPolicy::All
    } else {
        consumer::DeliverPolicy::ByStartSequence {
            start_sequence: start,
        }
    };
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: None,
            description: Some(description),
            filter_subject,
            deliver_policy,
            // Nothing is acked: where to resume is the checkpoint's business.
            ack_policy: consumer::AckPolicy::None,
            // a dead runner's consumer goes away by itself
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| RuntimeError::JetStream(e.to_string()))
}

impl ProjectionRunner {
    /// The advisory-lock key that makes this runner the only active one.
    pub fn lock_key(&self) -> String {
        format!(
            "lokiz-projection:{}:{}",
            self.config.stream,
            self.projector.name()
        )
    }

    /// Consumes until `shutdown`, or until the delivery breaks (an error is
    /// returned; the caller starts it again, from the checkpoint). The caller
    /// must hold [`Self::lock_key`]: only one runner per projection may be
    /// active, order matters to it.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), RuntimeError> {
        let name = self.projector.name();
        let open = OpenConsumer::open(
            &[self],
            format!("lokiz projection {name}"),
            self.filter_subject(),
        )
        .await?;
        tracing::info!(projection = name, start = open.start, "projection running");
        let outcome = self.consume(&open.consumer, &shutdown).await;
        open.close().await;
        tracing::info!(projection = name, "projection stopped");
        outcome
    }

    async fn consume(
        &self,
        consumer: &consumer::PullConsumer,
        shutdown: &CancellationToken,
    ) -> Result<(), RuntimeError> {
        let name = self.projector.name();
        let deliveries = self.deliveries(consumer, shutdown).await?;
        loop {
            let waiting = std::time::Instant::now();
            let delivery = deliveries.next(shutdown).await;
            let applying = std::time::Instant::now();
            let Some(Delivery { incoming, broken }) = delivery else {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                return Err(RuntimeError::JetStream("the reader stopped".into()));
            };
            if !self.apply_until_done(&incoming, shutdown).await {
                return Ok(());
            }
            tracing::debug!(
                projection = name,
                messages = incoming.len(),
                wait_ms = (applying - waiting).as_secs_f64() * 1e3,
                apply_ms = applying.elapsed().as_secs_f64() * 1e3,
                "projection batch"
            );
            if let Some(e) = broken {
                return Err(e);
            }
        }
    }

    /// Starts reading `consumer`: a reader task takes in and decodes what
    /// arrives while a batch is in the database, and hands over everything
    /// it has (up to `max_batch`) when asked: batches grow when the database
    /// is the slow part, and stay small (low lag) when it keeps up.
    async fn deliveries(
        &self,
        consumer: &consumer::PullConsumer,
        shutdown: &CancellationToken,
    ) -> Result<Deliveries, RuntimeError> {
        let messages = self.messages(consumer).await?;
        let (ask, asked) = tokio::sync::mpsc::channel(1);
        let reader = tokio::spawn(read_batches(
            messages,
            self.options.max_batch,
            asked,
            shutdown.clone(),
        ));
        Ok(Deliveries {
            ask,
            _reader: AbortOnDrop(reader),
        })
    }

    async fn messages(
        &self,
        consumer: &consumer::PullConsumer,
    ) -> Result<consumer::pull::Stream, RuntimeError> {
        consumer
            .stream()
            .max_messages_per_batch(self.options.max_batch)
            .max_bytes_per_batch(self.options.max_bytes)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| RuntimeError::JetStream(e.to_string()))
    }

    /// Applies a batch, retrying until it is applied (or its failing events
    /// parked). False when `shutdown` came first: the next start reads the
    /// batch again.
    async fn apply_until_done(&self, incoming: &[Incoming], shutdown: &CancellationToken) -> bool {
        if incoming.is_empty() {
            return true;
        }
        let mut failures = 0u32;
        loop {
            match self.process(incoming).await {
                Ok(()) => return true,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = Duration::from_millis(100 * 2u64.pow(failures.min(5)));
                    tracing::warn!(projection = self.projector.name(), error = %e, ?wait,
                        "batch failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Applies a batch: all in one transaction, or, when that fails or some
    /// event of the projection is parked, one event at a time with retries
    /// and parking.
    async fn process(&self, incoming: &[Incoming]) -> Result<(), RuntimeError> {
        match self.apply_all(incoming).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
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

    /// The whole batch in one transaction. `Ok(false)`: not attempted,
    /// because the projection has parked events (the one-by-one path keeps
    /// their entities' later events behind them).
    async fn apply_all(&self, incoming: &[Incoming]) -> Result<bool, ProjectionError> {
        if incoming.iter().any(|i| i.event.is_none()) {
            // let the one-by-one path park the undecodable message
            return Err(ProjectionError::AggregateId("undecodable message".into()));
        }
        let name = self.projector.name();
        let mut tx = self.pool.begin().await?;
        let (checkpoint, has_parked) = lock_checkpoint_seeing_parked(&mut tx, name, true).await?;
        // (messages at or below the checkpoint were read twice: skipped)
        let fresh: Vec<&Incoming> = incoming
            .iter()
            .filter(|i| {
                i.event
                    .as_ref()
                    .is_some_and(|e| e.stream_position() > checkpoint)
            })
            .collect();
        let Some(last) = fresh.last().map(|i| i.stream_sequence as i64) else {
            return Ok(true);
        };
        let applied: Vec<&StoredEvent> = fresh.iter().filter_map(|i| i.event.as_ref()).collect();
        let read: Vec<&StoredEvent> = applied.iter().copied().filter(|e| self.reads(e)).collect();
        if has_parked {
            let keys: Vec<String> = read
                .iter()
                .flat_map(|e| self.projector.entity_keys(e))
                .collect();
            if parked_blocker(&mut tx, name, &keys).await?.is_some() {
                return Ok(false);
            }
        }
        if !read.is_empty() {
            self.projector.apply_batch(&mut tx, &read).await?;
        }
        let to = applied
            .last()
            .map(|e| e.stream_position())
            .unwrap_or(checkpoint);
        advance_checkpoint(&mut tx, name, to, Some(last), applied.len() as i64).await?;
        tx.commit().await?;
        self.observe(&applied);
        self.publish_wakeups().await;
        Ok(true)
    }

    /// Publishes what the projector asks to wake once its writes are
    /// committed (at most once; a failure only delays live readers).
    async fn publish_wakeups(&self) {
        let wakeups = self.projector.take_wakeups();
        let Some(nats) = &self.options.nats else {
            return;
        };
        let prefix = self.config.wake_prefix();
        for what in wakeups {
            if let Err(e) = nats
                .publish(format!("{prefix}.{what}"), Default::default())
                .await
            {
                tracing::debug!(error = %e, "wake-up not published");
            }
        }
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
        let seq = item.stream_sequence as i64;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.apply_one(event, seq).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => return Err(RuntimeError::Db(into_sqlx(e))),
                Err(e) if attempt >= self.options.attempts => {
                    tracing::error!(projection = name, position = event.position,
                        event_type = %event.event_type, error = %e, "event parked");
                    self.park(event, seq, &e.to_string(), attempt).await?;
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

    /// One event in its own transaction; parked behind an earlier parked
    /// event that touches one of its entities.
    async fn apply_one(&self, event: &StoredEvent, seq: i64) -> Result<(), ProjectionError> {
        let name = self.projector.name();
        let mut tx = self.pool.begin().await?;
        let checkpoint = lock_checkpoint(&mut tx, name).await?;
        if event.stream_position() <= checkpoint {
            return Ok(());
        }
        if self.reads(event) {
            let keys = self.projector.entity_keys(event);
            if let Some(blocker) = parked_blocker(&mut tx, name, &keys).await? {
                park_event(
                    &mut tx,
                    name,
                    event,
                    &format!("{BEHIND_PARKED}{blocker}"),
                    0,
                    &keys,
                )
                .await?;
                advance_checkpoint(&mut tx, name, event.stream_position(), Some(seq), 0).await?;
                tx.commit().await?;
                metrics::counter!("lokiz_projection_parked_total", "projection" => name)
                    .increment(1);
                return Ok(());
            }
            self.projector.apply(&mut tx, event).await?;
        }
        advance_checkpoint(&mut tx, name, event.stream_position(), Some(seq), 1).await?;
        tx.commit().await?;
        self.observe(&[event]);
        self.publish_wakeups().await;
        Ok(())
    }

    async fn park(
        &self,
        event: &StoredEvent,
        seq: i64,
        error: &str,
        attempts: u32,
    ) -> Result<(), sqlx::Error> {
        let name = self.projector.name();
        let mut tx = self.pool.begin().await?;
        let checkpoint = lock_checkpoint(&mut tx, name).await?;
        if event.stream_position() <= checkpoint {
            return Ok(());
        }
        let keys = self.projector.entity_keys(event);
        park_event(&mut tx, name, event, error, attempts, &keys).await?;
        advance_checkpoint(&mut tx, name, event.stream_position(), Some(seq), 0).await?;
        tx.commit().await?;
        metrics::counter!("lokiz_projection_parked_total", "projection" => name).increment(1);
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
        // (the checkpoint stays: a restart reads it again and parks it once)
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

/// The `error` of an event parked behind another, followed by the blocker's
/// position.
pub const BEHIND_PARKED: &str = "behind parked event at position ";

/// The position of a parked event of `projection` sharing one of `keys`.
pub async fn parked_blocker(
    conn: &mut PgConnection,
    projection: &str,
    keys: &[String],
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(position) FROM parked_events
          WHERE projection = $1 AND entity_keys && $2::text[]",
    )
    .bind(projection)
    .bind(keys)
    .fetch_one(conn)
    .await
}

/// The event stored at stream sequence `seq`, if there is one and it is an
/// event envelope.
async fn position_at(stream: &mut jetstream::stream::Stream, seq: u64) -> Option<StreamPosition> {
    let m = stream.get_raw_message(seq).await.ok()?;
    serde_json::from_slice::<StoredEvent>(&m.payload)
        .ok()
        .map(|e| e.stream_position())
}

fn decode_message(m: &jetstream::Message, stream_sequence: u64) -> Incoming {
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

/// A gap-free run of decoded messages, and why delivery stopped after it,
/// if it did.
struct Delivery {
    incoming: Vec<Incoming>,
    broken: Option<RuntimeError>,
}

/// The applier's side of a reader task ([`read_batches`]).
struct Deliveries {
    ask: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Delivery>>,
    _reader: AbortOnDrop,
}

impl Deliveries {
    /// What the reader has gathered (at least one message, or why delivery
    /// broke); none at shutdown or when the reader has stopped.
    async fn next(&self, shutdown: &CancellationToken) -> Option<Delivery> {
        let (reply, delivery) = tokio::sync::oneshot::channel();
        tokio::select! {
            _ = shutdown.cancelled() => None,
            d = async {
                self.ask.send(reply).await.ok()?;
                delivery.await.ok()
            } => d,
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads what the consumer delivers, checks that consumer sequences run 1,
/// 2, 3, … and decodes each message as it arrives, until the applier asks
/// (`asked`); then hands over what it has, at most `max_batch` messages (and
/// stops reading while it holds that many). After a gap or a delivery error
/// it hands over the gap-free prefix with the reason and stops: the runner
/// starts again from its checkpoint.
async fn read_batches(
    mut messages: consumer::pull::Stream,
    max_batch: usize,
    mut asked: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<Delivery>>,
    shutdown: CancellationToken,
) {
    let mut consumer_seq = 0u64;
    let mut incoming: Vec<Incoming> = Vec::new();
    let mut broken: Option<RuntimeError> = None;
    let mut waiting: Option<tokio::sync::oneshot::Sender<Delivery>> = None;
    loop {
        if waiting.is_some() && (!incoming.is_empty() || broken.is_some()) {
            // and whatever has arrived meanwhile, without waiting for more
            while broken.is_none() && incoming.len() < max_batch {
                match messages.next().now_or_never() {
                    Some(m) => accept(m, &mut consumer_seq, &mut incoming, &mut broken),
                    None => break,
                }
            }
            let stop = broken.is_some();
            let delivery = Delivery {
                incoming: std::mem::take(&mut incoming),
                broken: broken.take(),
            };
            let handed = waiting.take().is_some_and(|w| w.send(delivery).is_ok());
            if !handed || stop {
                return;
            }
            continue;
        }
        let reading = broken.is_none() && incoming.len() < max_batch;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            w = asked.recv(), if waiting.is_none() => match w {
                Some(w) => waiting = Some(w),
                None => return,
            },
            m = messages.next(), if reading => {
                accept(m, &mut consumer_seq, &mut incoming, &mut broken)
            }
        }
    }
}

/// Takes one delivered message (or the end or failure of delivery) into
/// `incoming`, or records why delivery is broken.
fn accept<E: std::fmt::Display>(
    m: Option<Result<jetstream::Message, E>>,
    consumer_seq: &mut u64,
    incoming: &mut Vec<Incoming>,
    broken: &mut Option<RuntimeError>,
) {
    match m {
        None => *broken = Some(RuntimeError::JetStream("message stream ended".into())),
        Some(Err(e)) => *broken = Some(RuntimeError::JetStream(e.to_string())),
        Some(Ok(m)) => match m.info() {
            Err(_) => {
                *broken = Some(RuntimeError::JetStream(
                    "message without delivery info".into(),
                ))
            }
            Ok(info) if info.consumer_sequence != *consumer_seq + 1 => {
                *broken = Some(RuntimeError::Gap {
                    after: *consumer_seq,
                    got: info.consumer_sequence,
                })
            }
            Ok(info) => {
                *consumer_seq = info.consumer_sequence;
                incoming.push(decode_message(&m, info.stream_sequence));
            }
        },
    }
}

fn into_sqlx(e: ProjectionError) -> sqlx::Error {
    match e {
        ProjectionError::Db(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// The advisory lock `verify` holds to keep a projection's live table still
/// (every batch takes it shared first).
pub fn freeze_key(projection: &str) -> String {
    format!("lokiz-freeze:{projection}")
}

/// Reads (and row-locks) a projection's checkpoint inside `conn`'s
/// transaction, after waiting out a `verify` that holds the projection still.
pub async fn lock_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
) -> Result<StreamPosition, sqlx::Error> {
    Ok(lock_checkpoint_seeing_parked(conn, projection, false)
        .await?
        .0)
}

/// [`lock_checkpoint`], and whether the projection has parked events, in two
/// statements (a batch's fixed cost): the freeze lock is taken inside the
/// `INSERT`, before the row is created or locked.
///
/// `relaxed_commit` makes the transaction commit asynchronously
/// (`synchronous_commit = off`, set in the same statement): its commit does
/// not wait for the WAL flush. That is safe for a batch of the live runner,
/// whose whole effect — read-model rows and checkpoint together — is
/// recomputed from the stream: a database crash can only lose the last few
/// such transactions atomically, and the runner then reads their messages
/// again from the older checkpoint. Nothing outside the transaction depends
/// on it being durable.
async fn lock_checkpoint_seeing_parked(
    conn: &mut PgConnection,
    projection: &str,
    relaxed_commit: bool,
) -> Result<(StreamPosition, bool), sqlx::Error> {
    sqlx::query(if relaxed_commit {
        "INSERT INTO projection_checkpoints (projection)
         SELECT $1 FROM (SELECT pg_advisory_xact_lock_shared(hashtext($2)),
                                set_config('synchronous_commit', 'off', true)) AS frozen
         ON CONFLICT DO NOTHING"
    } else {
        "INSERT INTO projection_checkpoints (projection)
         SELECT $1 FROM (SELECT pg_advisory_xact_lock_shared(hashtext($2))) AS frozen
         ON CONFLICT DO NOTHING"
    })
    .bind(projection)
    .bind(freeze_key(projection))
    .execute(&mut *conn)
    .await?;
    let (xid, position, parked): (i64, i64, bool) = sqlx::query_as(
        "SELECT last_xid, last_position,
                EXISTS (SELECT 1 FROM parked_events p WHERE p.projection = $1)
           FROM projection_checkpoints WHERE projection = $1 FOR UPDATE",
    )
    .bind(projection)
    .fetch_one(&mut *conn)
    .await?;
    Ok((StreamPosition { xid, position }, parked))
}

/// Records `event` in `parked_events` for `projection` (once), with the
/// entities it touches (`Projector::entity_keys`).
pub async fn park_event(
    conn: &mut PgConnection,
    projection: &str,
    event: &StoredEvent,
    error: &str,
    attempts: u32,
    entity_keys: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO parked_events (projection, position, xid, aggregate_type, aggregate_id,
                                    sequence, event_type, error, attempts, entity_keys)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
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
    .bind(entity_keys)
    .execute(conn)
    .await?;
    Ok(())
}

/// A projection's checkpoint row, without locking it (zero when it has none).
pub async fn checkpoint_row(
    conn: &mut PgConnection,
    projection: &str,
) -> Result<Checkpoint, sqlx::Error> {
    let row: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT last_xid, last_position, stream_seq FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(projection)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row
        .map(|(xid, position, stream_seq)| Checkpoint {
            position: StreamPosition { xid, position },
            stream_seq,
        })
        .unwrap_or_default())
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

/// Moves the checkpoint to `to` (the stream message `stream_seq`, when
/// known), counting `applied` events. Call inside the transaction that wrote
/// their read-model rows, after [`lock_checkpoint`].
pub async fn advance_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    to: StreamPosition,
    stream_seq: Option<i64>,
    applied: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints
            SET last_xid = $2, last_position = $3, applied = applied + $4, updated_at = now(),
                stream_seq = $5
          WHERE projection = $1",
    )
    .bind(projection)
    .bind(to.xid)
    .bind(to.position)
    .bind(applied)
    .bind(stream_seq)
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

/// How often a group member that reads none of what arrives still moves its
/// checkpoint.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// Batches a group's reader may hand each member ahead of what it applies:
/// the fastest member runs at most this far ahead of the slowest.
const GROUP_QUEUE: usize = 4;

/// Runs `members` (the runners a process locked together) on one shared
/// consumer, until `shutdown` or until the delivery breaks.
///
/// Search and hashtags, the slowest members over the video events, once
/// read on a consumer of their own filtered to `Video`, so as not to set
/// the others' pace. That cost NATS a second delivery and this process a
/// second decode of every video event; over a 996k-event catch-up, sharing
/// used about 12 % less CPU in all (NATS and this process) and finished
/// 5-8 % sooner, and the group's members apply in parallel anyway.
///
/// One consumer per projector cost NATS a delivery of every message per
/// whole-stream projector and this process a decode of each; and on NATS
/// 2.9 a consumer filtered to a sparse type (likes among millions of video
/// events) costs the server a scan of the stream's subjects whenever it is
/// created or pulls, which under load stalled publishes for seconds. A group
/// pays one delivery and one decode per message, and its consumer has no
/// filter. The consumer starts after the lowest of the members' checkpoints,
/// and each member applies the same decoded batches exactly as its own
/// runner does ([`ProjectionRunner::process`]: its checkpoint, in its
/// transaction, skips what it has), so sharing changes nothing about
/// exactly-once. Members keep their own pace within [`GROUP_QUEUE`] batches;
/// a member further behind holds the reader back, not the others'
/// transactions. When delivery breaks, members finish what they were handed
/// (a gap-free prefix) and the group starts again from its checkpoints.
pub async fn run_group(
    members: &[Arc<ProjectionRunner>],
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let Some(first) = members.first() else {
        return Ok(());
    };
    let names: Vec<&str> = members.iter().map(|m| m.projector.name()).collect();
    let runners: Vec<&ProjectionRunner> = members.iter().map(|m| m.as_ref()).collect();
    // a group of one aggregate type's readers takes that type's filter;
    // any other reads the whole stream
    let filter = first.filter_subject();
    let filter = if runners.iter().all(|r| r.filter_subject() == filter) {
        filter
    } else {
        format!("{}.>", first.config.subject_prefix())
    };
    let open = OpenConsumer::open(
        &runners,
        format!("lokiz projections {}", names.join(" ")),
        filter,
    )
    .await?;
    tracing::info!(projections = ?names, start = open.start, "projection group running");
    let outcome = fan_out(members, &open.consumer, &shutdown).await;
    open.close().await;
    tracing::info!(projections = ?names, "projection group stopped");
    outcome
}

/// A consumer created for some runners, from the message after the lowest
/// of their checkpoints; deleted (best effort) when they are done with it.
struct OpenConsumer {
    stream: jetstream::stream::Stream,
    consumer: consumer::PullConsumer,
    start: u64,
}

impl OpenConsumer {
    async fn open(
        runners: &[&ProjectionRunner],
        description: String,
        filter_subject: String,
    ) -> Result<Self, RuntimeError> {
        let Some(first) = runners.first() else {
            return Err(RuntimeError::JetStream(
                "a consumer for no projection".into(),
            ));
        };
        let mut stream = first
            .js
            .get_stream(&first.config.stream)
            .await
            .map_err(|e| RuntimeError::JetStream(e.to_string()))?;
        let mut start = u64::MAX;
        for runner in runners {
            // Consumers of earlier versions were durable: remove the leftover.
            let _ = stream.delete_consumer(runner.projector.name()).await;
            start = start.min(runner.resume_sequence(&mut stream).await?);
        }
        let consumer = create_consumer(&stream, start, description, filter_subject).await?;
        Ok(Self {
            stream,
            consumer,
            start,
        })
    }

    /// Best effort: an abandoned consumer expires after its inactivity
    /// threshold.
    async fn close(self) {
        let name = self.consumer.cached_info().name.clone();
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.stream.delete_consumer(&name)).await;
    }
}

/// Reads the group's deliveries and hands every batch to every member.
///
/// A member that takes no batch for `RuntimeOptions::group_stall` (its
/// queue full: a verify freezing its tables, a statement retried with
/// backoff) is detached, so that it holds nobody else up: it applies what
/// it was handed and then reads on a consumer of its own, from its
/// checkpoint, until the group ends; the next group takes it back.
async fn fan_out(
    members: &[Arc<ProjectionRunner>],
    consumer: &consumer::PullConsumer,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    let Some(first) = members.first() else {
        return Ok(());
    };
    let deliveries = first.deliveries(consumer, shutdown).await?;
    // ends the detached members' own runs when the group ends
    let group_end = shutdown.child_token();
    let mut queues = Vec::with_capacity(members.len());
    let mut appliers = tokio::task::JoinSet::new();
    for member in members {
        let (queue, batches) = tokio::sync::mpsc::channel::<Arc<Vec<Incoming>>>(GROUP_QUEUE);
        let detached = Arc::new(std::sync::atomic::AtomicBool::new(false));
        queues.push(Some((queue, detached.clone())));
        let (member, shutdown, group_end) = (member.clone(), shutdown.clone(), group_end.clone());
        appliers.spawn(async move {
            if !member.apply_shared(batches, &shutdown).await {
                return;
            }
            if detached.load(std::sync::atomic::Ordering::Acquire) {
                member.run_until(&group_end).await;
            }
        });
    }
    let stall = first.options.group_stall;
    let outcome = loop {
        let Some(Delivery { incoming, broken }) = deliveries.next(shutdown).await else {
            if shutdown.is_cancelled() {
                break Ok(());
            }
            break Err(RuntimeError::JetStream("the reader stopped".into()));
        };
        if !incoming.is_empty() {
            let batch = Arc::new(incoming);
            let mut handed = true;
            for (slot, member) in queues.iter_mut().zip(members) {
                let Some((queue, detached)) = slot else {
                    continue;
                };
                let sent = tokio::select! {
                    _ = shutdown.cancelled() => Some(false),
                    sent = tokio::time::timeout(stall, queue.send(batch.clone())) => match sent {
                        Ok(sent) => Some(sent.is_ok()),
                        Err(_) => None,
                    },
                };
                match sent {
                    Some(ok) => handed &= ok,
                    None => {
                        tracing::warn!(
                            projection = member.projector.name(),
                            ?stall,
                            "projection took no batch in time; it reads on its own consumer until the group starts again"
                        );
                        detached.store(true, std::sync::atomic::Ordering::Release);
                        *slot = None;
                    }
                }
            }
            if !handed {
                if shutdown.is_cancelled() {
                    break Ok(());
                }
                break Err(RuntimeError::JetStream(
                    "a projection of the group stopped".into(),
                ));
            }
            if queues.iter().all(Option::is_none) {
                break Err(RuntimeError::JetStream(
                    "every projection of the group was detached".into(),
                ));
            }
        }
        if let Some(e) = broken {
            break Err(e);
        }
    };
    // members apply what they were handed (or stop at shutdown), detached
    // ones stop reading alone, then all end
    drop(queues);
    group_end.cancel();
    while appliers.join_next().await.is_some() {}
    outcome
}

impl ProjectionRunner {
    /// Applies the batches a group hands this member until the group stops
    /// handing them (true) or `shutdown` (false).
    async fn apply_shared(
        &self,
        mut batches: tokio::sync::mpsc::Receiver<Arc<Vec<Incoming>>>,
        shutdown: &CancellationToken,
    ) -> bool {
        // when the member last committed (none yet: the first batch commits)
        let mut committed: Option<std::time::Instant> = None;
        while let Some(batch) = batches.recv().await {
            if shutdown.is_cancelled() {
                return false;
            }
            // A batch with nothing this member reads moves only its
            // checkpoint: that is done at most once per IDLE_CHECKPOINT (a
            // later batch's checkpoint passes the skipped messages), so a
            // quiet member costs no transaction per batch and, on a restart,
            // the group re-reads at most that much for it.
            let idle = batch
                .iter()
                .all(|i| i.event.as_ref().is_some_and(|e| !self.reads(e)));
            if idle && committed.is_some_and(|t| t.elapsed() < IDLE_CHECKPOINT) {
                continue;
            }
            if !self.apply_until_done(&batch, shutdown).await {
                return false;
            }
            committed = Some(std::time::Instant::now());
        }
        !shutdown.is_cancelled()
    }

    /// Reads on this runner's own consumer until `until`, starting again
    /// from the checkpoint whenever delivery breaks. (A member detached from
    /// its group does this until the group ends.)
    async fn run_until(&self, until: &CancellationToken) {
        let mut failures = 0u32;
        while !until.is_cancelled() {
            match self.run(until.clone()).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(projection = self.projector.name(), error = %e,
                        "projection delivery broke; resuming from the checkpoint");
                }
            }
            let wait = Duration::from_millis(50 * 2u64.pow(failures.min(5)));
            tokio::select! {
                _ = until.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
            }
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
        let mut locked = Vec::new();
        for runner in waiting {
            let got: Result<bool, _> =
                sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                    .bind(runner.lock_key())
                    .fetch_one(&mut lock)
                    .await;
            match got {
                Ok(true) => locked.push(runner),
                Ok(false) => still.push(runner),
                Err(e) => {
                    tracing::warn!(error = %e, "projection lock connection lost");
                    round.cancel();
                    while tasks.join_next().await.is_some() {}
                    return;
                }
            }
        }
        // Those locked together share one consumer (one delivery and one
        // decode per message); each applies on its own connection.
        if !locked.is_empty() {
            let group = locked;
            let token = round.clone();
            tasks.spawn(async move {
                if let [one] = group.as_slice() {
                    one.run_until(&token).await;
                    return;
                }
                let names: Vec<&str> = group.iter().map(|r| r.projector.name()).collect();
                // A group returns when its delivery breaks; it starts again
                // from its members' checkpoints.
                let mut failures = 0u32;
                while !token.is_cancelled() {
                    match run_group(&group, token.clone()).await {
                        Ok(()) => failures = 0,
                        Err(e) => {
                            failures = failures.saturating_add(1);
                            tracing::warn!(projections = ?names, error = %e, "projection delivery broke; resuming from the checkpoints");
                        }
                    }
                    let wait = Duration::from_millis(50 * 2u64.pow(failures.min(5)));
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            });
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
