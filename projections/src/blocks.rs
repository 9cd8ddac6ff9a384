//! `blocks`: who blocks whom.

use async_trait::async_trait;
use lokiz_domain::block::{Block, BlockEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, ProjectionError, Projector};

pub struct BlocksProjector;

#[async_trait]
impl Projector for BlocksProjector {
    fn name(&self) -> &'static str {
        "blocks"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Block::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["blocks"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match decode::<BlockEvent>(event)? {
            BlockEvent::UserBlocked {
                blocker_id,
                blocked_id,
                blocked_at,
            } => {
                sqlx::query(
                    "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(blocker_id)
                .bind(blocked_id)
                .bind(blocked_at)
                .execute(conn)
                .await?;
            }
            BlockEvent::UserUnblocked {
                blocker_id,
                blocked_id,
                ..
            } => {
                sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2")
                    .bind(blocker_id)
                    .bind(blocked_id)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}
