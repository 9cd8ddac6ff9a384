//! `follows` and `follow_counts`: who follows whom, and how many each user
//! follows and is followed by.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
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

    /// The batch folded per (follower, followee) in memory from the rows it
    /// starts with; then the rows that end up different are written (one
    /// delete, one insert) and every user whose counts moved gets one
    /// upsert of their net change, as [`Projector::apply`] on each event in
    /// turn would leave them (a follow and unfollow still leaves the counts
    /// row, at its old numbers).
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut decoded = Vec::with_capacity(events.len());
        for event in events {
            decoded.push(decode::<FollowEvent>(event)?);
        }
        let key = |e: &FollowEvent| match *e {
            FollowEvent::UserFollowed {
                follower_id,
                followee_id,
                ..
            }
            | FollowEvent::UserUnfollowed {
                follower_id,
                followee_id,
                ..
            } => (follower_id, followee_id),
        };
        let mut pairs: Vec<(Uuid, Uuid)> = decoded.iter().map(key).collect();
        pairs.sort();
        pairs.dedup();
        let (followers, followees): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
        let rows: Vec<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT f.follower_id, f.followee_id, f.created_at
               FROM follows f JOIN unnest($1::uuid[], $2::uuid[]) AS p(a, b)
                 ON f.follower_id = p.a AND f.followee_id = p.b",
        )
        .bind(&followers)
        .bind(&followees)
        .fetch_all(&mut *conn)
        .await?;
        let before: HashMap<(Uuid, Uuid), DateTime<Utc>> =
            rows.into_iter().map(|(a, b, at)| ((a, b), at)).collect();
        let mut after: HashMap<(Uuid, Uuid), Option<DateTime<Utc>>> =
            pairs.iter().map(|k| (*k, before.get(k).copied())).collect();
        // user → (followers, following) change; present once counted at all
        let mut counts: HashMap<Uuid, (i64, i64)> = HashMap::new();
        for e in &decoded {
            let (follower, followee) = key(e);
            let state = after.entry((follower, followee)).or_default();
            let delta = match (e, state.is_some()) {
                (FollowEvent::UserFollowed { followed_at, .. }, false) => {
                    *state = Some(*followed_at);
                    1
                }
                (FollowEvent::UserUnfollowed { .. }, true) => {
                    *state = None;
                    -1
                }
                _ => continue,
            };
            counts.entry(followee).or_default().0 += delta;
            counts.entry(follower).or_default().1 += delta;
        }
        let (mut gone, mut new) = (Vec::new(), Vec::new());
        for k in &pairs {
            let (was, now) = (before.get(k).copied(), after.get(k).copied().flatten());
            if was != now {
                if was.is_some() {
                    gone.push(*k);
                }
                if let Some(at) = now {
                    new.push((*k, at));
                }
            }
        }
        if !gone.is_empty() {
            let (a, b): (Vec<Uuid>, Vec<Uuid>) = gone.into_iter().unzip();
            sqlx::query(
                "DELETE FROM follows f USING unnest($1::uuid[], $2::uuid[]) AS d(a, b)
                  WHERE f.follower_id = d.a AND f.followee_id = d.b",
            )
            .bind(&a)
            .bind(&b)
            .execute(&mut *conn)
            .await?;
        }
        if !new.is_empty() {
            let mut a = Vec::with_capacity(new.len());
            let mut b = Vec::with_capacity(new.len());
            let mut times = Vec::with_capacity(new.len());
            for ((follower, followee), at) in new {
                a.push(follower);
                b.push(followee);
                times.push(at);
            }
            sqlx::query(
                "INSERT INTO follows (follower_id, followee_id, created_at)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[])",
            )
            .bind(&a)
            .bind(&b)
            .bind(&times)
            .execute(&mut *conn)
            .await?;
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
