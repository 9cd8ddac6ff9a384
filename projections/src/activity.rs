//! `user_activity`: which users acted on which (UTC) day — any command a
//! signed-in user issued (the `actor` in the event's metadata). Daily active
//! users for the admin stats.

use async_trait::async_trait;
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{ProjectionError, Projector};

pub struct ActivityProjector;

/// The metadata field this projection reads (the rest is skipped unparsed).
#[derive(serde::Deserialize)]
struct Actor {
    actor: Option<Uuid>,
}

fn actor(event: &StoredEvent) -> Option<Uuid> {
    serde_json::from_str::<Actor>(event.metadata.get())
        .ok()
        .and_then(|m| m.actor)
}

#[async_trait]
impl Projector for ActivityProjector {
    fn name(&self) -> &'static str {
        "activity"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        lokiz_domain::AGGREGATE_TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        &["user_activity"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, &[event]).await
    }

    /// One `INSERT` for the batch: (user, day) pairs, each once.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut pairs: Vec<(Uuid, chrono::NaiveDate)> = events
            .iter()
            .filter_map(|e| actor(e).map(|a| (a, e.recorded_at.date_naive())))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        if pairs.is_empty() {
            return Ok(());
        }
        let (users, days): (Vec<Uuid>, Vec<chrono::NaiveDate>) = pairs.into_iter().unzip();
        sqlx::query(
            "INSERT INTO user_activity (user_id, day)
             SELECT * FROM unnest($1::uuid[], $2::date[])
             ON CONFLICT DO NOTHING",
        )
        .bind(users)
        .bind(days)
        .execute(conn)
        .await?;
        Ok(())
    }
}
