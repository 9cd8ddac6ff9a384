//! `likes`: which user likes which video (for like checks and a user's likes).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lokiz_domain::like::{Like, LikeEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

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

    /// The batch folded per (user, video) in memory from the rows it
    /// starts with, then only the rows that end up different written: one
    /// delete and one insert, with the outcome of [`Projector::apply`] on
    /// each event in turn (a like of a liked video keeps its time; unlike
    /// and like again takes the new one).
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut decoded = Vec::with_capacity(events.len());
        for event in events {
            decoded.push(decode::<LikeEvent>(event)?);
        }
        let key = |e: &LikeEvent| match *e {
            LikeEvent::VideoLiked {
                user_id, video_id, ..
            }
            | LikeEvent::VideoUnliked {
                user_id, video_id, ..
            } => (user_id, video_id),
        };
        let mut pairs: Vec<(Uuid, Uuid)> = decoded.iter().map(key).collect();
        pairs.sort();
        pairs.dedup();
        let (users, videos): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
        let rows: Vec<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT l.user_id, l.video_id, l.created_at
               FROM likes l JOIN unnest($1::uuid[], $2::uuid[]) AS p(u, v)
                 ON l.user_id = p.u AND l.video_id = p.v",
        )
        .bind(&users)
        .bind(&videos)
        .fetch_all(&mut *conn)
        .await?;
        let before: HashMap<(Uuid, Uuid), DateTime<Utc>> =
            rows.into_iter().map(|(u, v, at)| ((u, v), at)).collect();
        let mut after: HashMap<(Uuid, Uuid), Option<DateTime<Utc>>> =
            pairs.iter().map(|k| (*k, before.get(k).copied())).collect();
        for e in &decoded {
            let state = after.entry(key(e)).or_default();
            match *e {
                LikeEvent::VideoLiked { liked_at, .. } => {
                    state.get_or_insert(liked_at);
                }
                LikeEvent::VideoUnliked { .. } => *state = None,
            }
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
            let (users, videos): (Vec<Uuid>, Vec<Uuid>) = gone.into_iter().unzip();
            sqlx::query(
                "DELETE FROM likes l USING unnest($1::uuid[], $2::uuid[]) AS d(u, v)
                  WHERE l.user_id = d.u AND l.video_id = d.v",
            )
            .bind(&users)
            .bind(&videos)
            .execute(&mut *conn)
            .await?;
        }
        if !new.is_empty() {
            let mut users = Vec::with_capacity(new.len());
            let mut videos = Vec::with_capacity(new.len());
            let mut times = Vec::with_capacity(new.len());
            for ((u, v), at) in new {
                users.push(u);
                videos.push(v);
                times.push(at);
            }
            sqlx::query(
                "INSERT INTO likes (user_id, video_id, created_at)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[])",
            )
            .bind(&users)
            .bind(&videos)
            .bind(&times)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}
