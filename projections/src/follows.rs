//! `follows` and `follow_counts`: who follows whom, and how many each user
//! follows and is followed by.

use async_trait::async_trait;
use lokiz_domain::follow::{Follow, FollowEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{decode, ProjectionError, Projector};

pub struct FollowsProjector;

async fn count(
    conn: &mut PgConnection,
    follower_id: Uuid,
    followee_id: Uuid,
    delta: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO follow_counts (user_id, followers, following)
         VALUES ($1, $3, 0), ($2, 0, $3)
         ON CONFLICT (user_id) DO UPDATE
            SET followers = follow_counts.followers + EXCLUDED.followers,
                following = follow_counts.following + EXCLUDED.following",
    )
    .bind(followee_id)
    .bind(follower_id)
    .bind(delta)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Projector for FollowsProjector {
    fn name(&self) -> &'static str {
        "follows"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Follow::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["follows", "follow_counts"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match decode::<FollowEvent>(event)? {
            FollowEvent::UserFollowed {
                follower_id,
                followee_id,
                followed_at,
            } => {
                let inserted = sqlx::query(
                    "INSERT INTO follows (follower_id, followee_id, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(follower_id)
                .bind(followee_id)
                .bind(followed_at)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if inserted == 1 {
                    count(conn, follower_id, followee_id, 1).await?;
                }
            }
            FollowEvent::UserUnfollowed {
                follower_id,
                followee_id,
                ..
            } => {
                let deleted =
                    sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2")
                        .bind(follower_id)
                        .bind(followee_id)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                if deleted == 1 {
                    count(conn, follower_id, followee_id, -1).await?;
                }
            }
        }
        Ok(())
    }
}
