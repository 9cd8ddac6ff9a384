//! `LokizEventRepository`: postgres-es' repository with a one-statement
//! append.
//!
//! Reads (events, snapshots, replay streams) go to postgres-es'
//! `PostgresEventRepository` unchanged. Appends are ours: postgres-es runs
//! BEGIN, one INSERT per event, the snapshot write and COMMIT as separate round
//! trips; here the events and the aggregate snapshot are written by one
//! statement (data-modifying CTEs, so still one transaction), which also
//! returns the global position the events landed at. With cqrs-es' aggregate
//! store a command then costs two round trips: load the snapshot, append.
//! The tables and their columns are exactly postgres-es'.

use std::cell::Cell;

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;

tokio::task_local! {
    /// Set around a command so the append can report its position back.
    pub static LAST_POSITION: Cell<Option<i64>>;
}

pub struct LokizEventRepository {
    inner: PostgresEventRepository,
    pool: PgPool,
}

impl LokizEventRepository {
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: PostgresEventRepository::new(pool.clone()),
            pool,
        }
    }
}

fn persistence_error(e: sqlx::Error) -> PersistenceError {
    let unique_violation = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505");
    if unique_violation {
        return PersistenceError::OptimisticLockError;
    }
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(Box::new(e))
        }
        other => PersistenceError::UnknownError(Box::new(other)),
    }
}

/// Events appended only when the snapshot guard admits the write: the stored
/// snapshot must be behind the new one (or absent for the first one), which
/// is the optimistic lock for the aggregate store; the events' primary key
/// backs it up. The guard compares `last_sequence`, not cqrs-es'
/// `current_snapshot` counter: when a stored snapshot no longer deserializes
/// (the state's layout changed), cqrs-es replays the events and restarts that
/// counter at 1, and comparing it would refuse every later write to the
/// aggregate; by sequence, the replayed state simply overwrites the old one.
const APPEND_WITH_SNAPSHOT: &str = "
WITH snap AS (
    INSERT INTO snapshots AS s (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
    VALUES ($1, $2, $3, $4, $5::json)
    ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
       SET last_sequence = EXCLUDED.last_sequence,
           current_snapshot = EXCLUDED.current_snapshot,
           payload = EXCLUDED.payload
     WHERE s.last_sequence < EXCLUDED.last_sequence
    RETURNING 1
), ins AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload::json, e.metadata::json
      FROM unnest($6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[])
           AS e(sequence, event_type, event_version, payload, metadata)
     WHERE EXISTS (SELECT 1 FROM snap)
    ORDER BY e.sequence
    RETURNING position
)
SELECT (SELECT count(*) FROM snap), (SELECT max(position) FROM ins)";

const APPEND: &str = "
WITH ins AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload::json, e.metadata::json
      FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
           AS e(sequence, event_type, event_version, payload, metadata)
    ORDER BY e.sequence
    RETURNING position
)
SELECT max(position) FROM ins";

struct Columns {
    sequences: Vec<i64>,
    types: Vec<String>,
    versions: Vec<String>,
    payloads: Vec<String>,
    metadata: Vec<String>,
}

fn columns(events: &[SerializedEvent]) -> Result<Columns, PersistenceError> {
    let json = |v: &Value| {
        serde_json::to_string(v).map_err(|e| PersistenceError::UnknownError(Box::new(e)))
    };
    let mut c = Columns {
        sequences: Vec::with_capacity(events.len()),
        types: Vec::with_capacity(events.len()),
        versions: Vec::with_capacity(events.len()),
        payloads: Vec::with_capacity(events.len()),
        metadata: Vec::with_capacity(events.len()),
    };
    for e in events {
        c.sequences.push(e.sequence as i64);
        c.types.push(e.event_type.clone());
        c.versions.push(e.event_version.clone());
        c.payloads.push(json(&e.payload)?);
        c.metadata.push(json(&e.metadata)?);
    }
    Ok(c)
}

impl PersistedEventRepository for LokizEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.inner
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.inner.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let c = columns(events)?;
        let position: Option<i64> = match snapshot_update {
            Some((aggregate_id, aggregate, current_snapshot)) => {
                let last_sequence = events.last().map(|e| e.sequence as i64).unwrap_or(0);
                let payload = serde_json::to_string(&aggregate)
                    .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
                let (admitted, position): (i64, Option<i64>) = sqlx::query_as(APPEND_WITH_SNAPSHOT)
                    .bind(A::TYPE)
                    .bind(&aggregate_id)
                    .bind(last_sequence)
                    .bind(current_snapshot as i64)
                    .bind(payload)
                    .bind(&c.sequences)
                    .bind(&c.types)
                    .bind(&c.versions)
                    .bind(&c.payloads)
                    .bind(&c.metadata)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(persistence_error)?;
                if admitted == 0 {
                    return Err(PersistenceError::OptimisticLockError);
                }
                position
            }
            None => {
                let Some(first) = events.first() else {
                    return Ok(());
                };
                sqlx::query_scalar(APPEND)
                    .bind(A::TYPE)
                    .bind(&first.aggregate_id)
                    .bind(&c.sequences)
                    .bind(&c.types)
                    .bind(&c.versions)
                    .bind(&c.payloads)
                    .bind(&c.metadata)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(persistence_error)?
            }
        };
        let _ = LAST_POSITION.try_with(|cell| cell.set(position));
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}
