//! `shares`: who shared which video to which channel (each once).

use async_trait::async_trait;
use lokiz_domain::share::{Share, ShareEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, ProjectionError, Projector};

pub struct SharesProjector;

#[async_trait]
impl Projector for SharesProjector {
    fn name(&self) -> &'static str {
        "shares"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Share::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["shares"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match decode::<ShareEvent>(event)? {
            ShareEvent::VideoShared {
                user_id,
                video_id,
                channel,
                shared_at,
            } => {
                sqlx::query(
                    "INSERT INTO shares (video_id, user_id, channel, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(video_id)
                .bind(user_id)
                .bind(channel.as_str())
                .bind(shared_at)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}
