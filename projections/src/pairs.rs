//! Batches of read models whose rows are pairs of ids with a time (`likes`:
//! user and video; `follows`: follower and followee), applied set-based.
//!
//! A batch is folded per pair in memory, from the rows it starts with, and
//! only the pairs that end up different are written: one delete, one
//! insert. Adding a pair that is there keeps its time (`ON CONFLICT DO
//! NOTHING` one event at a time); removing and adding it again takes the new
//! time. So the rows are those of applying every event on its own.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

pub type Pair = (Uuid, Uuid);

/// A pair table: its name and the columns of the pair (the time is
/// `created_at`). Names are the projectors' own constants, never input.
pub struct PairTable {
    pub table: &'static str,
    pub a: &'static str,
    pub b: &'static str,
}

/// One event's step: add the pair at a time, or remove it.
pub enum Step {
    Add(Pair, DateTime<Utc>),
    Remove(Pair),
}

impl PairTable {
    /// Folds `steps` (in commit order) over the rows the pairs have now,
    /// writes what ends up different, and returns each step that changed
    /// something, as (pair, +1 added or −1 removed), in order.
    pub async fn apply(
        &self,
        conn: &mut PgConnection,
        steps: &[Step],
    ) -> Result<Vec<(Pair, i64)>, sqlx::Error> {
        let PairTable { table, a, b } = self;
        let mut pairs: Vec<Pair> = steps
            .iter()
            .map(|s| match s {
                Step::Add(p, _) | Step::Remove(p) => *p,
            })
            .collect();
        pairs.sort();
        pairs.dedup();
        let (firsts, seconds): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
        let rows: Vec<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(&format!(
            "SELECT t.{a}, t.{b}, t.created_at
               FROM {table} t JOIN unnest($1::uuid[], $2::uuid[]) AS p(a, b)
                 ON t.{a} = p.a AND t.{b} = p.b"
        ))
        .bind(&firsts)
        .bind(&seconds)
        .fetch_all(&mut *conn)
        .await?;
        let before: HashMap<Pair, DateTime<Utc>> =
            rows.into_iter().map(|(x, y, at)| ((x, y), at)).collect();
        let mut after: HashMap<Pair, Option<DateTime<Utc>>> =
            pairs.iter().map(|p| (*p, before.get(p).copied())).collect();
        let mut changed = Vec::new();
        for step in steps {
            match step {
                Step::Add(p, at) => {
                    let state = after.entry(*p).or_default();
                    if state.is_none() {
                        *state = Some(*at);
                        changed.push((*p, 1));
                    }
                }
                Step::Remove(p) => {
                    let state = after.entry(*p).or_default();
                    if state.take().is_some() {
                        changed.push((*p, -1));
                    }
                }
            }
        }
        let (mut gone, mut new) = (Vec::new(), Vec::new());
        for p in &pairs {
            let (was, now) = (before.get(p).copied(), after.get(p).copied().flatten());
            if was != now {
                if was.is_some() {
                    gone.push(*p);
                }
                if let Some(at) = now {
                    new.push((*p, at));
                }
            }
        }
        if !gone.is_empty() {
            let (firsts, seconds): (Vec<Uuid>, Vec<Uuid>) = gone.into_iter().unzip();
            sqlx::query(&format!(
                "DELETE FROM {table} t USING unnest($1::uuid[], $2::uuid[]) AS d(a, b)
                  WHERE t.{a} = d.a AND t.{b} = d.b"
            ))
            .bind(&firsts)
            .bind(&seconds)
            .execute(&mut *conn)
            .await?;
        }
        if !new.is_empty() {
            let mut firsts = Vec::with_capacity(new.len());
            let mut seconds = Vec::with_capacity(new.len());
            let mut times = Vec::with_capacity(new.len());
            for ((x, y), at) in new {
                firsts.push(x);
                seconds.push(y);
                times.push(at);
            }
            sqlx::query(&format!(
                "INSERT INTO {table} ({a}, {b}, created_at)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[])"
            ))
            .bind(&firsts)
            .bind(&seconds)
            .bind(&times)
            .execute(&mut *conn)
            .await?;
        }
        Ok(changed)
    }
}
