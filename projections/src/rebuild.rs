//! Rebuild, verify and parked-event retry: projections replayed straight from
//! the event store, not from JetStream.
//!
//! **Shadow tables.** A replay writes into a schema of its own
//! ([`REBUILD_SCHEMA`], [`VERIFY_SCHEMA`]) holding empty copies of the
//! projectors' tables (`LIKE … INCLUDING ALL EXCLUDING INDEXES`, then the
//! primary-key and unique constraints and unique indexes; the other indexes are built once,
//! after the bulk of the replay). Projectors name their tables unqualified,
//! so each replay transaction sets `search_path` to the shadow schema first:
//! the same projector code writes the shadow tables, and nothing else.
//!
//! **Order.** Events are read in `(xid, position)` order below
//! `pg_snapshot_xmin`, exactly as the relay publishes them, and applied with
//! [`Projector::apply_batch`], a batch per transaction.
//!
//! **Swap.** The last stretch runs in one transaction that first locks the
//! live checkpoint rows (`FOR UPDATE`: a live runner's batch takes the same
//! lock first, so it waits), replays what was committed meanwhile, moves the
//! live tables out (`ALTER TABLE … SET SCHEMA`) and the shadow tables in, and
//! sets the checkpoints to where the replay stopped. Readers keep the old
//! tables until that commit and see the new ones after it; a read that
//! arrives during the swap waits for the table lock and never sees a
//! half-built table. Everything rebuilt together swaps together.
//!
//! **Verify** replays into [`VERIFY_SCHEMA`] up to the live checkpoint (read
//! again under its row lock, so the live table cannot move while it is
//! compared) and compares whole rows (`to_jsonb`) both ways.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lokiz_infra::{StoredEvent, StreamPosition};
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};

use crate::projector::{ProjectionError, Projector};
use crate::runtime::{lock_checkpoint, park_event, BEHIND_PARKED};

/// Where `projections rebuild` builds the new tables.
pub const REBUILD_SCHEMA: &str = "lokiz_rebuild";
/// Where `projections verify` builds the tables it compares.
pub const VERIFY_SCHEMA: &str = "lokiz_verify";
/// Where the replaced tables go at the swap (dropped right after).
const RETIRED_SCHEMA: &str = "lokiz_retired";
/// The schema of the live read models.
const LIVE_SCHEMA: &str = "public";

/// Called with (events replayed, events to replay) as a replay goes.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("projection {projection}: {source}")]
    Projection {
        projection: &'static str,
        source: ProjectionError,
    },
    #[error("nothing to rebuild")]
    Nothing,
    /// Rebuild, verify and reset-parked run one at a time per database.
    #[error("another {holder} is running (pid {pid}, for {seconds:.0} s); try again when it has finished")]
    Busy {
        holder: String,
        pid: i32,
        seconds: f64,
    },
}

/// Session advisory lock held by the one rebuild, verify or reset-parked run
/// of a database.
const MAINTENANCE_LOCK: &str = "lokiz-maintenance";
/// `application_name` prefix of the connection that holds it.
const MAINTENANCE_APP: &str = "lokiz maintenance: ";

/// A connection of its own holding the maintenance lock for one run (`what`
/// names it to others); closing it, or losing it, releases the lock.
async fn maintenance_connection(pool: &PgPool, what: &str) -> Result<PgConnection, RebuildError> {
    let options = (*pool.connect_options())
        .clone()
        .application_name(&format!("{MAINTENANCE_APP}{what}"));
    let mut conn = PgConnection::connect_with(&options).await?;
    // a run that just ended may still hold the lock for a moment: its
    // connection is dropped, and the server releases the lock when the
    // backend exits; look again for up to a second before calling it busy
    for attempt in 0..10 {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(MAINTENANCE_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if got {
            return Ok(conn);
        }
        if attempt < 9 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let holder: Option<(i32, String, f64)> = sqlx::query_as(
        "SELECT pid, application_name, extract(epoch FROM now() - backend_start)::float8
           FROM pg_stat_activity
          WHERE datname = current_database() AND application_name LIKE $1 || '%'
            AND pid <> pg_backend_pid()
          LIMIT 1",
    )
    .bind(MAINTENANCE_APP)
    .fetch_optional(&mut conn)
    .await?;
    let _ = conn.close().await;
    let (pid, name, seconds) = holder.unwrap_or((0, String::new(), 0.0));
    Err(RebuildError::Busy {
        holder: name
            .strip_prefix(MAINTENANCE_APP)
            .unwrap_or("rebuild, verify or reset-parked")
            .to_owned(),
        pid,
        seconds,
    })
}

/// Holds `projection`'s live runner still: each of its batch transactions
/// first takes this lock shared ([`crate::runtime::lock_checkpoint`]), so
/// while a session holds it exclusively the runner waits at the start of its
/// next batch, holding no transaction id (the relay's horizon moves on).
async fn freeze(conn: &mut PgConnection, projection: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(crate::runtime::freeze_key(projection))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn unfreeze(conn: &mut PgConnection, projection: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(crate::runtime::freeze_key(projection))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub projections: Vec<&'static str>,
    /// Events read from the store and applied (of the projections' types).
    pub events: u64,
    pub elapsed: Duration,
    /// Where the projections' checkpoints now stand.
    pub position: StreamPosition,
    /// Events that failed during the replay and are parked again.
    pub parked: u64,
}

impl RebuildReport {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One table's difference between the live read model and a fresh replay.
#[derive(Debug, Clone, Serialize)]
pub struct TableDrift {
    pub projection: &'static str,
    pub table: &'static str,
    /// Rows only in the live table (wrong or extra there).
    pub only_live: i64,
    /// Rows only in the replay (missing or different in the live table).
    pub only_replayed: i64,
    /// Up to the requested number of differing rows: ("live" | "replayed", row).
    pub sample: Vec<(String, serde_json::Value)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub projections: Vec<&'static str>,
    pub events: u64,
    pub elapsed: Duration,
    /// Only tables that differ.
    pub drift: Vec<TableDrift>,
}

impl VerifyReport {
    pub fn differing_rows(&self) -> i64 {
        self.drift
            .iter()
            .map(|d| d.only_live + d.only_replayed)
            .sum()
    }
}

/// Events per replay transaction.
const REPLAY_BATCH: i64 = 5_000;

/// Rebuilds `projectors` from the event store into fresh tables and swaps
/// them in together.
pub async fn rebuild(
    pool: &PgPool,
    projectors: &[Arc<dyn Projector>],
    progress: Option<Progress>,
) -> Result<RebuildReport, RebuildError> {
    if projectors.is_empty() {
        return Err(RebuildError::Nothing);
    }
    let started = Instant::now();
    let mut conn = maintenance_connection(pool, "rebuild").await?;
    let tables = all_tables(projectors);
    let late_indexes = create_shadow(&mut conn, REBUILD_SCHEMA, &tables).await?;
    let total = count_events(&mut conn, projectors, None).await?;
    let mut replay = Replay::new(REBUILD_SCHEMA, projectors, progress, total);

    // the bulk, in many transactions, without holding anything live
    replay.run(&mut conn, None).await?;
    for ddl in &late_indexes {
        sqlx::raw_sql(ddl).execute(&mut conn).await?;
    }

    // what an earlier run may have left to retire
    drop_giving_way(&mut conn, RETIRED_SCHEMA).await?;

    // the last stretch and the swap, in one transaction
    let mut tx = conn.begin().await?;
    for p in projectors {
        lock_checkpoint(&mut tx, p.name()).await?;
    }
    replay.run_in(&mut tx, None).await?;
    sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {RETIRED_SCHEMA};"))
        .execute(&mut *tx)
        .await?;
    lock_live_tables(&mut tx, &tables).await?;
    for t in &tables {
        sqlx::raw_sql(&format!(
            "ALTER TABLE {LIVE_SCHEMA}.{t} SET SCHEMA {RETIRED_SCHEMA};
             ALTER TABLE {REBUILD_SCHEMA}.{t} SET SCHEMA {LIVE_SCHEMA};"
        ))
        .execute(&mut *tx)
        .await?;
    }
    let names: Vec<&str> = projectors.iter().map(|p| p.name()).collect();
    // The checkpoint goes to the newest event the replay saw (of any type),
    // so the live runner skips all of it.
    let head = replay.head.max(replay.position);
    sqlx::query(
        "UPDATE projection_checkpoints
            SET last_xid = $2, last_position = $3, applied = $4, updated_at = now(),
                stream_seq = NULL
          WHERE projection = ANY($1)",
    )
    .bind(&names)
    .bind(head.xid)
    .bind(head.position)
    .bind(replay.applied as i64)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM parked_events WHERE projection = ANY($1)")
        .bind(&names)
        .execute(&mut *tx)
        .await?;
    for f in &replay.failed {
        park_event(&mut tx, f.projection, &f.event, &f.error, 1, &f.keys).await?;
    }
    tx.commit().await?;
    // The swap is done; dropping the old tables is housekeeping. A reader
    // that locked an old table before the swap may still want another one:
    // give way to it rather than deadlock (the next run drops what is left).
    for schema in [RETIRED_SCHEMA, REBUILD_SCHEMA] {
        if let Err(e) = drop_giving_way(&mut conn, schema).await {
            tracing::warn!(schema, error = %e, "old tables left for the next rebuild to drop");
        }
    }
    Ok(RebuildReport {
        projections: names,
        events: replay.applied,
        elapsed: started.elapsed(),
        position: head,
        parked: replay.failed.len() as u64,
    })
}

/// How many times the swap asks for the live tables' locks before giving up
/// (each ask waits at most [`SWAP_LOCK_WAIT`]).
const SWAP_LOCK_ATTEMPTS: u32 = 600;
const SWAP_LOCK_WAIT: &str = "100ms";

/// Takes every live table's `ACCESS EXCLUSIVE` lock before any is moved.
/// Readers lock the tables of a query in their own order (`videos` then
/// `users` for a feed page); a swap that held one table while waiting for
/// another could deadlock with such a reader, and Postgres would then abort
/// one of the two — possibly the reader, a failed request. Here the swap asks
/// with a short `lock_timeout` and, when it runs out, lets go of everything it
/// took (a savepoint) and asks again: the swap always gives way, a reader
/// never fails. The replay's writes in this transaction stay.
/// `DROP SCHEMA … CASCADE`, asking for each lock at most [`SWAP_LOCK_WAIT`]
/// and trying again (readers of the old tables finish meanwhile), so it never
/// deadlocks with a reader.
async fn drop_giving_way(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    let mut attempts = 0u32;
    loop {
        let mut tx = conn.begin().await?;
        let dropped = sqlx::raw_sql(&format!(
            "SET LOCAL lock_timeout = '{SWAP_LOCK_WAIT}'; DROP SCHEMA IF EXISTS {schema} CASCADE;"
        ))
        .execute(&mut *tx)
        .await;
        match dropped {
            Ok(_) => return tx.commit().await,
            Err(e)
                if attempts < SWAP_LOCK_ATTEMPTS
                    && e.as_database_error()
                        .and_then(|d| d.code())
                        .is_some_and(|c| c == "55P03" || c == "40P01") =>
            {
                attempts += 1;
                tx.rollback().await?;
                tokio::time::sleep(Duration::from_millis(5 + u64::from(attempts % 7) * 5)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn lock_live_tables(
    tx: &mut sqlx::PgConnection,
    tables: &[&'static str],
) -> Result<(), RebuildError> {
    let list = tables
        .iter()
        .map(|t| format!("{LIVE_SCHEMA}.{t}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut attempts = 0;
    loop {
        sqlx::raw_sql(&format!(
            "SAVEPOINT swap_locks; SET LOCAL lock_timeout = '{SWAP_LOCK_WAIT}'"
        ))
        .execute(&mut *tx)
        .await?;
        let locked = sqlx::raw_sql(&format!("LOCK TABLE {list} IN ACCESS EXCLUSIVE MODE"))
            .execute(&mut *tx)
            .await;
        match locked {
            Ok(_) => {
                sqlx::raw_sql("RELEASE SAVEPOINT swap_locks; SET LOCAL lock_timeout = 0")
                    .execute(&mut *tx)
                    .await?;
                return Ok(());
            }
            Err(e)
                if attempts < SWAP_LOCK_ATTEMPTS
                    && e.as_database_error()
                        .and_then(|d| d.code())
                        .is_some_and(|c| c == "55P03") =>
            {
                attempts += 1;
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT swap_locks")
                    .execute(&mut *tx)
                    .await?;
                // let the readers that queued behind us through
                tokio::time::sleep(std::time::Duration::from_millis(
                    5 + u64::from(attempts % 7) * 5,
                ))
                .await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Replays each projection into [`VERIFY_SCHEMA`] up to its live checkpoint
/// and compares the tables row for row; at most `sample` rows per table are
/// kept in the report.
pub async fn verify(
    pool: &PgPool,
    projectors: &[Arc<dyn Projector>],
    sample: i64,
    progress: Option<Progress>,
) -> Result<VerifyReport, RebuildError> {
    if projectors.is_empty() {
        return Err(RebuildError::Nothing);
    }
    let started = Instant::now();
    let mut conn = maintenance_connection(pool, "verify").await?;
    let mut drift = Vec::new();
    let mut events = 0;
    for p in projectors {
        let one = std::slice::from_ref(p);
        let tables: Vec<&'static str> = p.tables().to_vec();
        // no secondary indexes: the comparison does not use them
        let _ = create_shadow(&mut conn, VERIFY_SCHEMA, &tables).await?;
        let upto = crate::runtime::checkpoint_of(&mut conn, p.name()).await?;
        let total = count_events(&mut conn, one, Some(upto)).await?;
        let mut replay = Replay::new(VERIFY_SCHEMA, one, progress.clone(), total);
        replay.run(&mut conn, Some(upto)).await?;

        // The live table stands still while the rest is replayed and the two
        // are compared; the comparison is a read-only snapshot, so nothing
        // here holds a transaction id for long (the relay goes on).
        freeze(&mut conn, p.name()).await?;
        let upto = crate::runtime::checkpoint_of(&mut conn, p.name()).await?;
        replay.run(&mut conn, Some(upto)).await?;
        events += replay.applied;
        let mut tx = conn.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        for table in tables {
            if let Some(d) = diff(&mut tx, p.name(), table, sample).await? {
                drift.push(d);
            }
        }
        tx.rollback().await?;
        unfreeze(&mut conn, p.name()).await?;
    }
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {VERIFY_SCHEMA} CASCADE"))
        .execute(&mut conn)
        .await?;
    Ok(VerifyReport {
        projections: projectors.iter().map(|p| p.name()).collect(),
        events,
        elapsed: started.elapsed(),
        drift,
    })
}

/// Applies a projection's parked events again, in (xid, position) order, in
/// one transaction that holds the projection's checkpoint lock (the live
/// runner waits meanwhile, so nothing is applied between them). Each event
/// that now succeeds leaves `parked_events`; one that fails again stays, and
/// so does every later parked event sharing an entity with it, so order is
/// kept. Returns (applied, still parked).
pub async fn reset_parked(
    pool: &PgPool,
    projector: &Arc<dyn Projector>,
) -> Result<(u64, u64), RebuildError> {
    let name = projector.name();
    let fail = |source| RebuildError::Projection {
        projection: name,
        source,
    };
    let mut conn = maintenance_connection(pool, "reset-parked").await?;
    let mut tx = conn.begin().await?;
    lock_checkpoint(&mut tx, name).await?;
    let parked: Vec<StoredEvent> = sqlx::query_as(&format!(
        "SELECT {} FROM events e
          WHERE e.position IN (SELECT position FROM parked_events
                                WHERE projection = $1 AND position > 0)
          ORDER BY e.xid, e.position",
        lokiz_infra::stored_event::STORED_EVENT_COLUMNS
    ))
    .bind(name)
    .fetch_all(&mut *tx)
    .await?;
    let (mut applied, mut still) = (0, 0);
    let mut kept: Vec<(i64, Vec<String>)> = Vec::new();
    for event in &parked {
        let keys = projector.entity_keys(event);
        let outcome = match kept
            .iter()
            .find(|(_, k)| k.iter().any(|k| keys.contains(k)))
        {
            Some((blocker, _)) => Err(format!("{BEHIND_PARKED}{blocker}")),
            None => {
                let mut sp = tx.begin().await?;
                match projector.apply(&mut sp, event).await {
                    Ok(()) => {
                        sp.commit().await?;
                        Ok(())
                    }
                    Err(e) if e.is_transient() => return Err(fail(e)),
                    Err(e) => {
                        sp.rollback().await?;
                        Err(e.to_string())
                    }
                }
            }
        };
        match outcome {
            Ok(()) => {
                sqlx::query("DELETE FROM parked_events WHERE projection = $1 AND position = $2")
                    .bind(name)
                    .bind(event.position)
                    .execute(&mut *tx)
                    .await?;
                applied += 1;
            }
            Err(error) => {
                sqlx::query(
                    "UPDATE parked_events
                        SET error = $3, attempts = attempts + 1, parked_at = now(), entity_keys = $4
                      WHERE projection = $1 AND position = $2",
                )
                .bind(name)
                .bind(event.position)
                .bind(&error)
                .bind(&keys)
                .execute(&mut *tx)
                .await?;
                kept.push((event.position, keys));
                still += 1;
            }
        }
    }
    tx.commit().await?;
    Ok((applied, still))
}

fn all_tables(projectors: &[Arc<dyn Projector>]) -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = projectors
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .collect();
    tables.sort_unstable();
    tables.dedup();
    tables
}

/// Creates `schema` afresh with empty copies of `tables` and their primary-key
/// and unique constraints and indexes; returns the DDL of their other
/// indexes, to run after the bulk load.
async fn create_shadow(
    conn: &mut PgConnection,
    schema: &str,
    tables: &[&'static str],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
    ))
    .execute(&mut *conn)
    .await?;
    let mut late = Vec::new();
    for t in tables {
        sqlx::raw_sql(&format!(
            "CREATE TABLE {schema}.{t} (LIKE {LIVE_SCHEMA}.{t} INCLUDING ALL EXCLUDING INDEXES)"
        ))
        .execute(&mut *conn)
        .await?;
        let constraints: Vec<(String, String)> = sqlx::query_as(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
              WHERE conrelid = ($1 || '.' || $2)::regclass AND contype IN ('p', 'u')",
        )
        .bind(LIVE_SCHEMA)
        .bind(t)
        .fetch_all(&mut *conn)
        .await?;
        for (name, def) in constraints {
            sqlx::raw_sql(&format!(
                "ALTER TABLE {schema}.{t} ADD CONSTRAINT {name} {def}"
            ))
            .execute(&mut *conn)
            .await?;
        }
        let indexes: Vec<(String, bool)> = sqlx::query_as(
            "SELECT pg_get_indexdef(i.indexrelid), i.indisunique FROM pg_index i
              WHERE i.indrelid = ($1 || '.' || $2)::regclass
                AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        )
        .bind(LIVE_SCHEMA)
        .bind(t)
        .fetch_all(&mut *conn)
        .await?;
        for (def, unique) in indexes {
            // index names are per schema: the copy keeps the live name
            let on_live = format!(" ON {LIVE_SCHEMA}.{t} ");
            let def = def.replacen(&on_live, &format!(" ON {schema}.{t} "), 1);
            if unique {
                // a unique index (a partial one, say) decides `ON CONFLICT`
                // during the replay: it must exist from the start
                sqlx::raw_sql(&def).execute(&mut *conn).await?;
            } else {
                late.push(def);
            }
        }
    }
    Ok(late)
}

/// Events of the projectors' types, up to `upto` (all when `None`).
async fn count_events(
    conn: &mut PgConnection,
    projectors: &[Arc<dyn Projector>],
    upto: Option<StreamPosition>,
) -> Result<u64, sqlx::Error> {
    let upto = upto.unwrap_or(StreamPosition {
        xid: i64::MAX,
        position: i64::MAX,
    });
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE aggregate_type = ANY($1) AND (xid, position) <= ($2::text::xid8, $3)",
    )
    .bind(types_of(projectors))
    .bind(upto.xid.to_string())
    .bind(upto.position)
    .fetch_one(conn)
    .await?;
    Ok(n as u64)
}

fn types_of(projectors: &[Arc<dyn Projector>]) -> Vec<String> {
    let mut types: Vec<String> = projectors
        .iter()
        .flat_map(|p| p.aggregate_types().iter().map(|t| t.to_string()))
        .collect();
    types.sort();
    types.dedup();
    types
}

/// A replay in progress.
struct Replay<'a> {
    schema: &'static str,
    projectors: &'a [Arc<dyn Projector>],
    types: Vec<String>,
    progress: Option<Progress>,
    total: u64,
    /// The last event applied.
    position: StreamPosition,
    /// The newest event below the horizon when the replay last looked
    /// (of any type): where the checkpoint goes.
    head: StreamPosition,
    applied: u64,
    failed: Vec<Failed>,
    /// Per projection, the entities of its failed events: later events
    /// touching them are parked behind (as the live runtime does).
    blocked: HashMap<&'static str, HashSet<String>>,
}

/// An event a replay could not apply (or kept behind one that failed).
struct Failed {
    projection: &'static str,
    event: StoredEvent,
    error: String,
    keys: Vec<String>,
}

impl<'a> Replay<'a> {
    fn new(
        schema: &'static str,
        projectors: &'a [Arc<dyn Projector>],
        progress: Option<Progress>,
        total: u64,
    ) -> Self {
        Self {
            schema,
            types: types_of(projectors),
            projectors,
            progress,
            total,
            position: StreamPosition::default(),
            head: StreamPosition::default(),
            applied: 0,
            failed: Vec::new(),
            blocked: HashMap::new(),
        }
    }

    /// Replays to the end (or `upto`), a transaction per batch.
    async fn run(
        &mut self,
        conn: &mut PgConnection,
        upto: Option<StreamPosition>,
    ) -> Result<(), RebuildError> {
        loop {
            let mut tx = conn.begin().await?;
            let n = self.step(&mut tx, upto).await?;
            tx.commit().await?;
            if n < REPLAY_BATCH as usize {
                return Ok(());
            }
        }
    }

    /// Replays to the end (or `upto`) inside the caller's transaction.
    async fn run_in(
        &mut self,
        tx: &mut PgConnection,
        upto: Option<StreamPosition>,
    ) -> Result<(), RebuildError> {
        while self.step(tx, upto).await? >= REPLAY_BATCH as usize {}
        Ok(())
    }

    /// One batch: read, apply (set-based, or one by one when that fails), in
    /// `tx` with the shadow schema first on the search path.
    async fn step(
        &mut self,
        tx: &mut PgConnection,
        upto: Option<StreamPosition>,
    ) -> Result<usize, RebuildError> {
        let upto = upto.unwrap_or(StreamPosition {
            xid: i64::MAX,
            position: i64::MAX,
        });
        sqlx::raw_sql(&format!(
            "SET LOCAL search_path TO {}, {LIVE_SCHEMA}",
            self.schema
        ))
        .execute(&mut *tx)
        .await?;
        let head: Option<(i64, i64)> = sqlx::query_as(
            "SELECT xid::text::bigint, position FROM events
              WHERE xid < pg_snapshot_xmin(pg_current_snapshot())
                AND (xid, position) <= ($1::text::xid8, $2)
              ORDER BY events.xid DESC, events.position DESC LIMIT 1",
        )
        .bind(upto.xid.to_string())
        .bind(upto.position)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((xid, position)) = head {
            self.head = self.head.max(StreamPosition { xid, position });
        }
        let batch: Vec<StoredEvent> = sqlx::query_as(&format!(
            "SELECT {} FROM events
              WHERE aggregate_type = ANY($1)
                AND (xid, position) > ($2::text::xid8, $3)
                AND (xid, position) <= ($4::text::xid8, $5)
                AND xid < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY events.xid, events.position
              LIMIT $6",
            lokiz_infra::stored_event::STORED_EVENT_COLUMNS
        ))
        .bind(&self.types)
        .bind(self.position.xid.to_string())
        .bind(self.position.position)
        .bind(upto.xid.to_string())
        .bind(upto.position)
        .bind(REPLAY_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = batch.last() else {
            return Ok(0);
        };
        let last = last.stream_position();
        for p in self.projectors {
            let mine: Vec<&StoredEvent> = batch
                .iter()
                .filter(|e| p.aggregate_types().contains(&e.aggregate_type.as_str()))
                .collect();
            if mine.is_empty() {
                continue;
            }
            self.apply(tx, p, &mine).await?;
        }
        self.position = last;
        self.applied += batch.len() as u64;
        if let Some(progress) = &self.progress {
            progress(self.applied, self.total);
        }
        Ok(batch.len())
    }

    async fn apply(
        &mut self,
        tx: &mut PgConnection,
        p: &Arc<dyn Projector>,
        events: &[&StoredEvent],
    ) -> Result<(), RebuildError> {
        let fail = |source| RebuildError::Projection {
            projection: p.name(),
            source,
        };
        let blocked = self.blocked.entry(p.name()).or_default();
        if blocked.is_empty() {
            let mut sp = tx.begin().await?;
            match p.apply_batch(&mut sp, events).await {
                Ok(()) => {
                    sp.commit().await?;
                    return Ok(());
                }
                Err(e) if e.is_transient() => return Err(fail(e)),
                Err(_) => sp.rollback().await?,
            }
        }
        // one by one, each behind a savepoint; what fails is parked again,
        // and so is what touches an entity of a parked event
        for event in events {
            let keys = p.entity_keys(event);
            if let Some(blocker) = self
                .failed
                .iter()
                .find(|f| f.projection == p.name() && f.keys.iter().any(|k| keys.contains(k)))
                .map(|f| f.event.position)
            {
                blocked.extend(keys.iter().cloned());
                self.failed.push(Failed {
                    projection: p.name(),
                    event: (*event).clone(),
                    error: format!("{BEHIND_PARKED}{blocker}"),
                    keys,
                });
                continue;
            }
            let mut sp = tx.begin().await?;
            match p.apply(&mut sp, event).await {
                Ok(()) => sp.commit().await?,
                Err(e) if e.is_transient() => return Err(fail(e)),
                Err(e) => {
                    sp.rollback().await?;
                    blocked.extend(keys.iter().cloned());
                    self.failed.push(Failed {
                        projection: p.name(),
                        event: (*event).clone(),
                        error: e.to_string(),
                        keys,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whole-row differences between the live table and the verify copy.
async fn diff(
    conn: &mut PgConnection,
    projection: &'static str,
    table: &'static str,
    sample: i64,
) -> Result<Option<TableDrift>, sqlx::Error> {
    let live = format!("SELECT to_jsonb(t) AS r FROM {LIVE_SCHEMA}.{table} t");
    let replayed = format!("SELECT to_jsonb(t) AS r FROM {VERIFY_SCHEMA}.{table} t");
    let (only_live, only_replayed): (i64, i64) = sqlx::query_as(&format!(
        "SELECT (SELECT count(*) FROM ({live} EXCEPT ALL {replayed}) a),
                (SELECT count(*) FROM ({replayed} EXCEPT ALL {live}) b)"
    ))
    .fetch_one(&mut *conn)
    .await?;
    if only_live == 0 && only_replayed == 0 {
        return Ok(None);
    }
    let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(&format!(
        "(SELECT 'live', r FROM ({live} EXCEPT ALL {replayed}) a LIMIT $1)
         UNION ALL
         (SELECT 'replayed', r FROM ({replayed} EXCEPT ALL {live}) b LIMIT $1)"
    ))
    .bind(sample)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(TableDrift {
        projection,
        table,
        only_live,
        only_replayed,
        sample: rows,
    }))
}
