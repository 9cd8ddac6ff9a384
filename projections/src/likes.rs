//! `likes`: which user likes which video (for like checks and a user's likes).

use async_trait::async_trait;
use lokiz_domain::like::{Like, LikeEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::pairs::{PairTable, Step};
use crate::projector::{decode, ProjectionError, Projector};

const LIKES: PairTable = PairTable {
    table: "likes",
    a: "user_id",
    b: "video_id",
};

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

    /// Set-based (see [`crate::pairs`]): one look at the pairs' rows, then
    /// one delete and one insert for what ends up different.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut steps = Vec::with_capacity(events.len());
        for event in events {
            steps.push(match decode::<LikeEvent>(event)? {
                LikeEvent::VideoLiked {
                    user_id,
                    video_id,
                    liked_at,
                } => Step::Add((user_id, video_id), liked_at),
                LikeEvent::VideoUnliked {
                    user_id, video_id, ..
                } => Step::Remove((user_id, video_id)),
            });
        }
        LIKES.apply(conn, &steps).await?;
        Ok(())
    }
}
