//! `likes`: which user likes which video (for like checks and a user's likes).

use async_trait::async_trait;
use lokiz_domain::like::{Like, LikeEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, ProjectionError, Projector};

pub struct LikesProjector;

#[async_trait]
impl Projector for LikesProjector {
    fn name(&self) -> &'static str {
        "likes"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Like::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["likes"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match decode::<LikeEvent>(event)? {
            LikeEvent::VideoLiked {
                user_id,
                video_id,
                liked_at,
            } => {
                sqlx::query(
                    "INSERT INTO likes (user_id, video_id, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(user_id)
                .bind(video_id)
                .bind(liked_at)
                .execute(conn)
                .await?;
            }
            LikeEvent::VideoUnliked {
                user_id, video_id, ..
            } => {
                sqlx::query("DELETE FROM likes WHERE user_id = $1 AND video_id = $2")
                    .bind(user_id)
                    .bind(video_id)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}
