//! Where each projection stands: checkpoint, lag and parked events.

use serde::Serialize;
use sqlx::PgPool;

use crate::Projector;

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub last_position: i64,
    pub applied: i64,
    /// Events of the projection's aggregate types committed after its checkpoint.
    pub lag_events: i64,
    /// Age of the oldest such event, in seconds (0 when caught up).
    pub lag_seconds: f64,
    pub parked: i64,
}

pub async fn status(
    pool: &PgPool,
    projectors: &[std::sync::Arc<dyn Projector>],
) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    let mut out = Vec::with_capacity(projectors.len());
    for p in projectors {
        let types: Vec<String> = p.aggregate_types().iter().map(|s| s.to_string()).collect();
        let (last_xid, last_position, applied): (i64, i64, i64) = sqlx::query_as(
            "SELECT coalesce(max(last_xid), 0), coalesce(max(last_position), 0), coalesce(max(applied), 0)
               FROM projection_checkpoints WHERE projection = $1",
        )
        .bind(p.name())
        .fetch_one(pool)
        .await?;
        let (lag_events, lag_seconds): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), extract(epoch FROM now() - min(recorded_at))::float8 FROM events
              WHERE (xid, position) > ($1::bigint::text::xid8, $2) AND aggregate_type = ANY($3)",
        )
        .bind(last_xid)
        .bind(last_position)
        .bind(&types)
        .fetch_one(pool)
        .await?;
        let parked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM parked_events WHERE projection = $1")
                .bind(p.name())
                .fetch_one(pool)
                .await?;
        out.push(ProjectionStatus {
            name: p.name().to_owned(),
            last_position,
            applied,
            lag_events,
            lag_seconds: lag_seconds.unwrap_or(0.0).max(0.0),
            parked,
        });
    }
    Ok(out)
}
