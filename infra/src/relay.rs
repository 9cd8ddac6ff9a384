//! The relay (transactional outbox tail): publishes every stored event to the
//! JetStream stream exactly once, in commit order, never skipping one.
//!
//! Gap safety: positions come from an identity column, so they are handed out
//! at insert time, not commit time; a plain `position > last` tail loses an
//! event whose transaction commits after a later one. The relay therefore
//! orders by (transaction id, position) and reads only rows whose transaction
//! id is below `pg_snapshot_xmin(pg_current_snapshot())`: every transaction
//! below that horizon has finished, so no row can ever appear behind the
//! checkpoint.
//!
//! Order and exactly-once in the stream: the stream itself is the truth of
//! what is published. The relay knows the stream's last sequence and the
//! event stored there (read from JetStream at start and after any failure);
//! it resumes after that event (or after its Postgres checkpoint, whichever is
//! later) and publishes each message with `Nats-Expected-Last-Sequence` = the
//! sequence the message before it got (and, after the first of a round,
//! `Nats-Expected-Last-Msg-Id` = the message id of the one before it).
//! JetStream refuses a message whose predecessor is missing, so when a connection drops in the middle of a
//! pipelined batch, nothing after the lost message is stored; the relay reads
//! the stream's tail again and goes on from there. Nothing is published twice
//! (the resume point is what the stream holds, not the checkpoint) and nothing
//! out of order. `Nats-Msg-Id = <type>:<id>:<sequence>` stays as a second
//! guard.
//!
//! Acknowledgements: for the same reason, a message JetStream accepted proves
//! that every message of the batch before it is stored, in order, right
//! before it. So only every [`ACK_EVERY`]th message and the last of a batch
//! ask for a PubAck (a JetStream publish with a reply inbox); the others go
//! out as plain publishes with the same headers, which JetStream checks and
//! stores alike but answers to nobody. A refused or lost message breaks the
//! chain for everything after it, and the next PubAck says so.
//!
//! Exclusivity: a session-level advisory lock; other relays wait for it. Two
//! relays that both believed they were active could still not interleave:
//! each publish names the sequence it expects to follow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::header::{self, HeaderValue};
use async_nats::jetstream::{self, context::Publish};
use async_nats::HeaderMap;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::stored_event::{StoredEvent, StreamPosition, STORED_EVENT_COLUMNS};
use crate::Config;

pub const NOTIFY_CHANNEL: &str = "lokiz_events";

/// Every this many messages of a batch (and its last one) wait for a PubAck;
/// see the module's notes on acknowledgements. A PubAck costs JetStream a
/// reply message and the client an inbox, a pending request and a decode.
pub const ACK_EVERY: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("publish to JetStream failed: {0}")]
    Publish(String),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("JetStream stream: {0}")]
    Stream(String),
}

/// The end of the stream as this relay last saw it: the last sequence and
/// the position of the event stored there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTail {
    pub sequence: u64,
    pub position: Option<StreamPosition>,
}

#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    nats: async_nats::Client,
    js: jetstream::Context,
    database_url: String,
    stream: String,
    subject_prefix: String,
    batch_size: i64,
    published: Arc<AtomicU64>,
    /// `None` until read from JetStream, and again after any failure.
    tail: Arc<Mutex<Option<StreamTail>>>,
}

impl Relay {
    pub fn new(pool: PgPool, nats: async_nats::Client, config: &Config) -> Self {
        Self {
            pool,
            js: jetstream::new(nats.clone()),
            nats,
            database_url: config.database_url.clone(),
            stream: config.stream.clone(),
            subject_prefix: config.subject_prefix(),
            batch_size: 5000,
            published: Arc::new(AtomicU64::new(0)),
            tail: Arc::new(Mutex::new(None)),
        }
    }

    /// Events this relay instance has published (acknowledged by JetStream).
    pub fn published_counter(&self) -> Arc<AtomicU64> {
        self.published.clone()
    }

    fn lock_key(&self) -> String {
        format!("lokiz-relay:{}", self.stream)
    }

    pub async fn checkpoint(&self) -> Result<StreamPosition, RelayError> {
        checkpoint(&self.pool, &self.stream).await
    }

    /// The next events after `after` in commit order, only from finished
    /// transactions. The `ORDER BY` names the table's columns: a bare `xid`
    /// would mean the selected `xid::text::bigint` alias, which no index
    /// serves (a sort of the whole table per batch).
    pub async fn fetch_batch(&self, after: StreamPosition) -> Result<Vec<StoredEvent>, RelayError> {
        let rows = sqlx::query_as::<_, StoredEvent>(&format!(
            "SELECT {STORED_EVENT_COLUMNS} FROM events
              WHERE (xid, position) > ($1::bigint::text::xid8, $2)
                AND xid < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY events.xid, events.position
              LIMIT $3"
        ))
        .bind(after.xid)
        .bind(after.position)
        .bind(self.batch_size)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Reads the stream's last sequence and the event stored there.
    pub async fn read_tail(&self) -> Result<StreamTail, RelayError> {
        let mut stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| RelayError::Stream(e.to_string()))?;
        let sequence = stream
            .info()
            .await
            .map_err(|e| RelayError::Stream(e.to_string()))?
            .state
            .last_sequence;
        if sequence == 0 {
            return Ok(StreamTail {
                sequence,
                position: None,
            });
        }
        let position = match stream.get_raw_message(sequence).await {
            Ok(m) => serde_json::from_slice::<StoredEvent>(&m.payload)
                .ok()
                .map(|e| e.stream_position()),
            Err(e) => {
                tracing::warn!(error = %e, sequence, "cannot read the stream's last message");
                None
            }
        };
        Ok(StreamTail { sequence, position })
    }

    /// Where the stream ends: cached while publishing succeeds, read from
    /// JetStream otherwise.
    async fn tail(&self) -> Result<StreamTail, RelayError> {
        if let Some(t) = *self.lock_tail() {
            return Ok(t);
        }
        let t = self.read_tail().await?;
        *self.lock_tail() = Some(t);
        Ok(t)
    }

    fn lock_tail(&self) -> std::sync::MutexGuard<'_, Option<StreamTail>> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the cached tail: the next round reads it from JetStream.
    pub fn forget_tail(&self) {
        *self.lock_tail() = None;
    }

    /// Publishes `events` right after stream sequence `after`, each naming
    /// the sequence and the message it must follow; every [`ACK_EVERY`]th
    /// and the last wait for their PubAck. Returns how many are known to be
    /// stored (a prefix of `events`, up to the last accepted PubAck) and the
    /// error that stopped the rest, if any.
    pub async fn publish(&self, events: &[StoredEvent], after: u64) -> (usize, Option<RelayError>) {
        let mut acks = Vec::with_capacity(events.len() / ACK_EVERY + 1);
        let mut send_error = None;
        // the message id of the one before (each is both an id and the next
        // message's expected predecessor: formatted once)
        let mut before: Option<String> = None;
        for (i, e) in events.iter().enumerate() {
            let body = match serde_json::to_vec(e) {
                Ok(b) => b,
                Err(err) => {
                    send_error = Some(RelayError::Json(err));
                    break;
                }
            };
            let mut headers = HeaderMap::new();
            headers.insert("Lokiz-Event-Type", e.event_type.as_str());
            let id = e.message_id();
            headers.insert(header::NATS_MESSAGE_ID, id.as_str());
            headers.insert(
                header::NATS_EXPECTED_LAST_SEQUENCE,
                HeaderValue::from(after + i as u64),
            );
            if let Some(before) = before.replace(id) {
                // the exact predecessor, not just a count: a message whose
                // predecessor was refused cannot slip in at its sequence
                headers.insert(header::NATS_EXPECTED_LAST_MESSAGE_ID, before.as_str());
            }
            let subject = e.subject(&self.subject_prefix);
            let acked = (i + 1) % ACK_EVERY == 0 || i + 1 == events.len();
            let sent = if acked {
                let publish = Publish::build().headers(headers).payload(body.into());
                self.js
                    .send_publish(subject, publish)
                    .await
                    .map(|ack| acks.push((i, ack)))
                    .map_err(|err| RelayError::Publish(err.to_string()))
            } else {
                self.nats
                    .publish_with_headers(subject, headers, body.into())
                    .await
                    .map_err(|err| RelayError::Publish(err.to_string()))
            };
            if let Err(err) = sent {
                send_error = Some(err);
                break;
            }
        }
        let mut stored = 0;
        for (i, ack) in acks {
            let expected = after + i as u64 + 1;
            match ack.await {
                Ok(a) if a.sequence == expected && !a.duplicate => stored = i + 1,
                Ok(a) => {
                    return (
                        stored,
                        Some(RelayError::Publish(format!(
                            "stored at sequence {} (duplicate: {}), expected {expected}",
                            a.sequence, a.duplicate
                        ))),
                    )
                }
                Err(err) => return (stored, Some(RelayError::Publish(err.to_string()))),
            }
        }
        // (what went out after the last accepted PubAck is not known to be
        // stored: the next round reads the stream's tail)
        (stored, send_error)
    }

    /// Records that everything up to `to` is published. Never moves backwards.
    pub async fn save_checkpoint(&self, to: StreamPosition, count: i64) -> Result<(), RelayError> {
        sqlx::query(
            "INSERT INTO relay_checkpoints (stream, last_xid, last_position, published, updated_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (stream) DO UPDATE
                SET last_xid = EXCLUDED.last_xid,
                    last_position = EXCLUDED.last_position,
                    published = relay_checkpoints.published + EXCLUDED.published,
                    updated_at = now()
              WHERE (relay_checkpoints.last_xid, relay_checkpoints.last_position)
                  < (EXCLUDED.last_xid, EXCLUDED.last_position)",
        )
        .bind(&self.stream)
        .bind(to.xid)
        .bind(to.position)
        .bind(count)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One fetch → publish → checkpoint round. Returns how many events went
    /// out. Resumes after the later of the stream's last event and the
    /// checkpoint (the stream can be ahead after a crash between publish and
    /// checkpoint; it can be behind only if messages were removed from it).
    pub async fn pump_once(&self) -> Result<usize, RelayError> {
        let t0 = Instant::now();
        let tail = self.tail().await?;
        let checkpoint = self.checkpoint().await?;
        let from = match tail.position {
            Some(p) if p > checkpoint => {
                // published before a crash, not yet checkpointed
                self.save_checkpoint(p, 0).await?;
                p
            }
            _ => checkpoint,
        };
        let batch = self.fetch_batch(from).await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let t1 = Instant::now();
        let (stored, error) = self.publish(&batch, tail.sequence).await;
        let t2 = Instant::now();
        if stored > 0 {
            let last = &batch[stored - 1];
            *self.lock_tail() = Some(StreamTail {
                sequence: tail.sequence + stored as u64,
                position: Some(last.stream_position()),
            });
            self.save_checkpoint(last.stream_position(), stored as i64)
                .await?;
            self.published.fetch_add(stored as u64, Ordering::Relaxed);
            metrics::counter!("lokiz_relay_published_total").increment(stored as u64);
        }
        if let Some(e) = error {
            // what JetStream holds now is read again before the next round
            self.forget_tail();
            return Err(e);
        }
        tracing::debug!(
            events = batch.len(),
            fetch_ms = (t1 - t0).as_secs_f64() * 1e3,
            publish_ms = (t2 - t1).as_secs_f64() * 1e3,
            checkpoint_ms = t2.elapsed().as_secs_f64() * 1e3,
            "relay round"
        );
        Ok(batch.len())
    }

    /// Runs until `shutdown`: waits for the relay lock, then tails the store.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RelayError> {
        let Some(mut lock) =
            crate::db::acquire_session_lock(&self.database_url, &self.lock_key(), &shutdown).await
        else {
            return Ok(());
        };
        tracing::info!(stream = %self.stream, "relay active");
        self.forget_tail();
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;

        let busy_window = Duration::from_secs(2);
        let mut busy_until = Instant::now() + busy_window;
        let mut last_lock_check = Instant::now();
        let mut failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if last_lock_check.elapsed() > Duration::from_secs(1) {
                // The lock lives as long as its connection: if that is gone,
                // another relay may already be active, so step back.
                if sqlx::query("SELECT 1").execute(&mut lock).await.is_err() {
                    tracing::warn!("relay lock connection lost; re-acquiring");
                    match crate::db::acquire_session_lock(
                        &self.database_url,
                        &self.lock_key(),
                        &shutdown,
                    )
                    .await
                    {
                        Some(l) => {
                            lock = l;
                            self.forget_tail();
                        }
                        None => break,
                    }
                }
                last_lock_check = Instant::now();
            }
            match self.pump_once().await {
                Ok(n) if n as i64 >= self.batch_size => {
                    failures = 0;
                    continue;
                }
                Ok(n) => {
                    failures = 0;
                    if n > 0 {
                        busy_until = Instant::now() + busy_window;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let backoff = Duration::from_millis(50 * 2u64.pow(failures.min(6)));
                    tracing::warn!(error = %e, ?backoff, "relay round failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => continue,
                    }
                }
            }
            // Right after activity, poll fast: a commit that unblocks the xmin
            // horizon may not be an event insert and so sends no NOTIFY.
            let idle = if Instant::now() < busy_until {
                Duration::from_millis(10)
            } else {
                Duration::from_millis(500)
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                n = listener.recv() => {
                    if let Err(e) = n {
                        tracing::warn!(error = %e, "relay listener error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    busy_until = Instant::now() + busy_window;
                }
                _ = tokio::time::sleep(idle) => {}
            }
        }
        let _ = lock.close().await;
        tracing::info!("relay stopped");
        Ok(())
    }
}

pub async fn checkpoint(pool: &PgPool, stream: &str) -> Result<StreamPosition, RelayError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT last_xid, last_position FROM relay_checkpoints WHERE stream = $1")
            .bind(stream)
            .fetch_optional(pool)
            .await?;
    Ok(row
        .map(|(xid, position)| StreamPosition { xid, position })
        .unwrap_or_default())
}

/// Events committed but not yet published, and the age of the oldest.
pub async fn lag(pool: &PgPool, stream: &str) -> Result<(i64, f64), RelayError> {
    let cp = checkpoint(pool, stream).await?;
    let (count, age): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), extract(epoch FROM now() - min(recorded_at))::float8
           FROM events WHERE (xid, position) > ($1::bigint::text::xid8, $2)",
    )
    .bind(cp.xid)
    .bind(cp.position)
    .fetch_one(pool)
    .await?;
    Ok((count, age.unwrap_or(0.0).max(0.0)))
}
