//! Read-your-writes: wait until the read models a request uses reflect every
//! event up to a position the client saw in `X-Lokiz-Position`.
//!
//! A projection "has reached" position P (written by transaction X) when no
//! event of an aggregate type it reads lies after its checkpoint and at or
//! before (X, P) in commit order. Projections that consume only some
//! aggregate types are therefore not held up by events they never see.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::Projector;

#[derive(Debug, thiserror::Error)]
pub enum ConsistencyError {
    #[error("read models did not reach position {position} within {waited:?}")]
    Timeout { position: i64, waited: Duration },
    /// No event is stored at or after `position`: it is not a position this
    /// store handed out (a committed command's position is visible to every
    /// later read), so waiting for it would only hold the request.
    #[error("no event at or after position {position}")]
    NeverIssued { position: i64 },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The highest position each projection is known to have reached, kept by
/// one process, so that a request naming a position already known reached
/// costs no look at the database (a client may send its last write's
/// position with every read that follows).
///
/// Reaching a position is for good: a checkpoint passes `(X, P)` only after
/// the relay published it, which it does once every transaction older than
/// `X` has ended, so no event can later appear before it; and checkpoints
/// never move back (batches move them forward; a rebuild swaps in one at
/// least as far as the live one).
#[derive(Debug, Default)]
pub struct Reached(Mutex<HashMap<&'static str, i64>>);

impl Reached {
    /// Whether every one of `projectors` is known to have reached `position`.
    pub fn all(&self, position: i64, projectors: &[&dyn Projector]) -> bool {
        let Ok(known) = self.0.lock() else {
            return false;
        };
        projectors
            .iter()
            .all(|p| known.get(p.name()).is_some_and(|&at| at >= position))
    }

    /// Records that every one of `projectors` has reached `position`.
    pub fn record(&self, position: i64, projectors: &[&dyn Projector]) {
        if let Ok(mut known) = self.0.lock() {
            for p in projectors {
                let at = known.entry(p.name()).or_insert(position);
                *at = (*at).max(position);
            }
        }
    }
}

/// Waits (bounded by `timeout`) until every projection in `projectors` has
/// reached `position`.
pub async fn wait_for(
    pool: &PgPool,
    position: i64,
    projectors: &[&dyn Projector],
    timeout: Duration,
) -> Result<(), ConsistencyError> {
    wait_until(pool, Target::Position(position), projectors, timeout).await
}

/// Waits (bounded by `timeout`) until every projection in `projectors`
/// reflects everything committed so far: the newest event in commit order,
/// `(xid, position)`, which need not be the one with the highest position (a
/// transaction that started earlier can insert later).
pub async fn wait_for_head(
    pool: &PgPool,
    projectors: &[&dyn Projector],
    timeout: Duration,
) -> Result<(), ConsistencyError> {
    wait_until(pool, Target::Head, projectors, timeout).await
}

#[derive(Clone, Copy)]
enum Target {
    /// The event a command answered with (`X-Lokiz-Position`).
    Position(i64),
    /// The newest event in commit order.
    Head,
}

async fn wait_until(
    pool: &PgPool,
    wanted: Target,
    projectors: &[&dyn Projector],
    timeout: Duration,
) -> Result<(), ConsistencyError> {
    let position = match wanted {
        Target::Position(p) => p,
        Target::Head => 0,
    };
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    let mut pending: Vec<&dyn Projector> = projectors.to_vec();
    // the first look finds the target event and who is behind it at once
    // (a round trip per request fewer: most requests wait for nothing)
    let Some((xid, pos, behind_it)) = first_look(pool, wanted, &pending).await? else {
        return match wanted {
            Target::Position(position) => Err(ConsistencyError::NeverIssued { position }),
            Target::Head => Ok(()), // nothing stored, nothing to wait for
        };
    };
    let mut behind_it = behind_it;
    loop {
        pending.retain(|p| behind_it.iter().any(|name| name == p.name()));
        if pending.is_empty() {
            return Ok(());
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            return Err(ConsistencyError::Timeout {
                position,
                waited: elapsed,
            });
        }
        tokio::time::sleep(pause.min(timeout - elapsed)).await;
        pause = (pause * 2).min(Duration::from_millis(25));
        behind_it = behind(pool, &pending, xid, pos).await?;
    }
}

/// The target event as `(xid, position)` and which of `projectors` have
/// not reached it, in one statement; `None` when there is no such event.
/// The target is the first event at or after the position (a position whose
/// insert rolled back never exists), or the newest in commit order.
async fn first_look(
    pool: &PgPool,
    wanted: Target,
    projectors: &[&dyn Projector],
) -> Result<Option<(i64, i64, Vec<String>)>, sqlx::Error> {
    let (names, types) = watched(projectors);
    let target = match wanted {
        Target::Position(_) => {
            "SELECT xid::text::bigint AS xid, position FROM events WHERE position >= $3
              ORDER BY position LIMIT 1"
        }
        Target::Head => {
            "SELECT xid::text::bigint AS xid, position FROM events
              ORDER BY events.xid DESC, events.position DESC LIMIT 1"
        }
    };
    let sql = format!(
        "WITH t AS ({target})
         SELECT t.xid, t.position, ARRAY({}) FROM t",
        behind_sql("t.xid", "t.position")
    );
    let query = sqlx::query_as(&sql).bind(&names).bind(&types);
    let query = match wanted {
        Target::Position(p) => query.bind(p),
        Target::Head => query,
    };
    query.fetch_optional(pool).await
}

/// Which of `projectors` have not reached `(xid, position)`, in one
/// statement whatever their number (a request waits on several read models,
/// and polls).
async fn behind(
    pool: &PgPool,
    projectors: &[&dyn Projector],
    xid: i64,
    position: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let (names, types) = watched(projectors);
    sqlx::query_scalar(&behind_sql("$3", "$4"))
        .bind(&names)
        .bind(&types)
        .bind(xid)
        .bind(position)
        .fetch_all(pool)
        .await
}

/// Each projector's name beside each aggregate type it reads (`$1`, `$2`
/// of [`behind_sql`]).
fn watched(projectors: &[&dyn Projector]) -> (Vec<&'static str>, Vec<&'static str>) {
    let (mut names, mut types) = (Vec::new(), Vec::new());
    for p in projectors {
        for t in p.aggregate_types() {
            names.push(p.name());
            types.push(*t);
        }
    }
    (names, types)
}

/// SQL: the projections of `$1` (beside their types, `$2`) that have not
/// reached the event `(xid, position)` (SQL expressions). A projection at or
/// past it has reached it with no look at the events (an old position, or
/// 1, must not cost a scan of everything since); one behind it has reached
/// it unless an event of one of its types lies in between: one probe per
/// type (`events_type_commit_order`), whatever lies between of other types.
fn behind_sql(xid: &str, position: &str) -> String {
    format!(
        "SELECT DISTINCT w.projection
           FROM unnest($1::text[], $2::text[]) AS w(projection, aggregate_type)
           LEFT JOIN projection_checkpoints c ON c.projection = w.projection
          CROSS JOIN LATERAL (SELECT coalesce(c.last_xid, 0) AS xid,
                                     coalesce(c.last_position, 0) AS position) f
          WHERE (f.xid, f.position) < ({xid}, {position})
            AND EXISTS (SELECT 1 FROM events e
                         WHERE e.aggregate_type = w.aggregate_type
                           AND (e.xid, e.position) > (f.xid::text::xid8, f.position)
                           AND (e.xid, e.position) <= ({xid}::bigint::text::xid8, {position}))"
    )
}

#[cfg(test)]
mod tests {
    use super::Reached;
    use crate::search::SearchProjector;
    use crate::users::UsersProjector;

    #[test]
    fn a_reached_position_covers_older_ones_for_those_that_reached_it() {
        let (users, search) = (UsersProjector, SearchProjector);
        let reached = Reached::default();
        assert!(!reached.all(1, &[&users]));
        reached.record(10, &[&users]);
        assert!(reached.all(10, &[&users]));
        assert!(reached.all(3, &[&users]));
        assert!(!reached.all(11, &[&users]));
        assert!(!reached.all(3, &[&users, &search]), "search never looked");
        reached.record(4, &[&users, &search]);
        assert!(reached.all(10, &[&users]), "a lower record lowers nothing");
        assert!(reached.all(4, &[&users, &search]));
        assert!(!reached.all(5, &[&users, &search]));
    }
}
