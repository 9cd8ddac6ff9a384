//! `follows` and `follow_counts`: who follows whom, and how many each user
//! follows and is followed by.

use std::collections::HashMap;

use async_trait::async_trait;
use lokiz_domain::follow::{Follow, FollowEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::pairs::{PairTable, Step};
use crate::projector::{decode, ProjectionError, Projector};

const FOLLOWS: PairTable = PairTable {
    table: "follows",
    a: "follower_id",
    b: "followee_id",
};

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

    /// Set-based (see [`crate::pairs`]), and every user whose counts moved
    /// gets one upsert of their net change, as [`Projector::apply`] on each
    /// event in turn leaves them (a follow and unfollow still leaves the
    /// counts row, at its old numbers).
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut steps = Vec::with_capacity(events.len());
        for event in events {
            steps.push(match decode::<FollowEvent>(event)? {
                FollowEvent::UserFollowed {
                    follower_id,
                    followee_id,
                    followed_at,
                } => Step::Add((follower_id, followee_id), followed_at),
                FollowEvent::UserUnfollowed {
                    follower_id,
                    followee_id,
                    ..
                } => Step::Remove((follower_id, followee_id)),
            });
        }
        // user → (followers, following) change
        let mut counts: HashMap<Uuid, (i64, i64)> = HashMap::new();
        for ((follower, followee), delta) in FOLLOWS.apply(conn, &steps).await? {
            counts.entry(followee).or_default().0 += delta;
            counts.entry(follower).or_default().1 += delta;
        }
        if !counts.is_empty() {
            let mut users = Vec::with_capacity(counts.len());
            let mut followers = Vec::with_capacity(counts.len());
            let mut following = Vec::with_capacity(counts.len());
            for (user, (ers, ing)) in counts {
                users.push(user);
                followers.push(ers);
                following.push(ing);
            }
            sqlx::query(
                "INSERT INTO follow_counts (user_id, followers, following)
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[])
                 ON CONFLICT (user_id) DO UPDATE
                    SET followers = follow_counts.followers + EXCLUDED.followers,
                        following = follow_counts.following + EXCLUDED.following",
            )
            .bind(&users)
            .bind(&followers)
            .bind(&following)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}
