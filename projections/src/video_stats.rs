//! `video_daily_stats`: each video's counters per UTC day, for its owner's
//! `GET /v1/videos/{id}/stats`. A day's figure is what happened that day:
//! views counted; likes given minus likes withdrawn (an unlike subtracts on
//! the day of the unlike, so the days add up to the like count and a
//! like/unlike toggle adds nothing); comments posted minus comments deleted
//! (likewise); glitch videos published from it (a glitch deleted later is
//! not subtracted: its `Deleted` event does not name its source).
//!
//! Counters are plain increments: exactly once because the runtime applies a
//! batch and advances the checkpoint in one transaction and skips anything
//! at or below the checkpoint (a redelivered batch is either already
//! committed with its checkpoint, and skipped, or was rolled back with it).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use lokiz_domain::comment::{Comment, CommentEvent};
use lokiz_domain::like::{Like, LikeEvent};
use lokiz_domain::video::{Video, VideoEvent};
use lokiz_domain::video_view::{VideoView, VideoViewEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{decode, keys_from_fields, ProjectionError, Projector};

pub struct VideoStatsProjector;

/// Changes of one video's counters on one day.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Day {
    views: i64,
    likes: i64,
    comments: i64,
    glitches: i64,
}

/// The counter change `event` makes, to which video and day.
fn change_of(event: &StoredEvent) -> Result<Option<(Uuid, NaiveDate, Day)>, ProjectionError> {
    let none = Day::default();
    Ok(Some(match event.aggregate_type.as_str() {
        VideoView::TYPE_NAME => match decode::<VideoViewEvent>(event)? {
            VideoViewEvent::ViewCounted {
                video_id,
                counted_at,
                ..
            } => (video_id, counted_at.date_naive(), Day { views: 1, ..none }),
        },
        Like::TYPE_NAME => match decode::<LikeEvent>(event)? {
            LikeEvent::VideoLiked {
                video_id, liked_at, ..
            } => (video_id, liked_at.date_naive(), Day { likes: 1, ..none }),
            LikeEvent::VideoUnliked {
                video_id,
                unliked_at,
                ..
            } => (video_id, unliked_at.date_naive(), Day { likes: -1, ..none }),
        },
        Comment::TYPE_NAME => match decode::<CommentEvent>(event)? {
            CommentEvent::CommentPosted {
                video_id,
                posted_at,
                ..
            } => (
                video_id,
                posted_at.date_naive(),
                Day {
                    comments: 1,
                    ..none
                },
            ),
            CommentEvent::CommentDeleted {
                video_id,
                deleted_at,
                ..
            } => (
                video_id,
                deleted_at.date_naive(),
                Day {
                    comments: -1,
                    ..none
                },
            ),
            CommentEvent::CommentEdited { .. } => return Ok(None),
        },
        Video::TYPE_NAME => match decode::<VideoEvent>(event)? {
            VideoEvent::GlitchedFrom {
                source_video_id,
                glitched_at,
                ..
            } => (
                source_video_id,
                glitched_at.date_naive(),
                Day {
                    glitches: 1,
                    ..none
                },
            ),
            _ => return Ok(None),
        },
        _ => return Ok(None),
    }))
}

#[async_trait]
impl Projector for VideoStatsProjector {
    fn name(&self) -> &'static str {
        "video_stats"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[
            Video::TYPE_NAME,
            VideoView::TYPE_NAME,
            Like::TYPE_NAME,
            Comment::TYPE_NAME,
        ]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["video_daily_stats"]
    }

    /// A view, like or comment changes its video's row; a glitch its
    /// source's.
    fn entity_keys(&self, event: &StoredEvent) -> Vec<String> {
        keys_from_fields(
            event,
            &[
                ("video_id", Video::TYPE_NAME),
                ("source_video_id", Video::TYPE_NAME),
            ],
        )
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, &[event]).await
    }

    /// Set-based: the batch's changes summed per video and day, one upsert.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut sums: HashMap<(Uuid, NaiveDate), Day> = HashMap::new();
        for event in events {
            if let Some((video, day, d)) = change_of(event)? {
                let s = sums.entry((video, day)).or_default();
                s.views += d.views;
                s.likes += d.likes;
                s.comments += d.comments;
                s.glitches += d.glitches;
            }
        }
        if sums.is_empty() {
            return Ok(());
        }
        let n = sums.len();
        let (mut ids, mut days) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut views, mut likes, mut comments, mut glitches) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ((id, day), d) in sums {
            ids.push(id);
            days.push(day);
            views.push(d.views);
            likes.push(d.likes);
            comments.push(d.comments);
            glitches.push(d.glitches);
        }
        sqlx::query(
            "INSERT INTO video_daily_stats AS s (video_id, day, views, likes, comments, glitches)
             SELECT * FROM unnest($1::uuid[], $2::date[], $3::bigint[], $4::bigint[],
                                  $5::bigint[], $6::bigint[])
             ON CONFLICT (video_id, day) DO UPDATE SET
                views = s.views + EXCLUDED.views,
                likes = s.likes + EXCLUDED.likes,
                comments = s.comments + EXCLUDED.comments,
                glitches = s.glitches + EXCLUDED.glitches",
        )
        .bind(ids)
        .bind(days)
        .bind(views)
        .bind(likes)
        .bind(comments)
        .bind(glitches)
        .execute(conn)
        .await?;
        Ok(())
    }
}
