//! `notifications`: what happened to a user's videos, comments and jobs,
//! from others — likes (coalesced per video while unread: "A and 12 others
//! liked your video"), comments, replies, follows, glitches — and their own
//! finished AI jobs; with the read marks and per-kind settings of their
//! NotificationInbox.
//!
//! Never for one's own actions, never from a user either side blocks, never
//! of a kind the recipient turned off (all decided when the event is applied,
//! from this projector's own tables, so a rebuild decides the same).
//!
//! After each commit the runtime publishes a wake-up per recipient
//! (`<stream>.wake.notifications.<user id>`, see [`Projector::take_wakeups`]);
//! the API's live sockets read the rows themselves.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lokiz_domain::ai_job::{AiJob, AiJobEvent, JobKind};
use lokiz_domain::block::{Block, BlockEvent};
use lokiz_domain::comment::{Comment, CommentEvent};
use lokiz_domain::follow::{Follow, FollowEvent};
use lokiz_domain::like::{Like, LikeEvent};
use lokiz_domain::notification_inbox::{
    NotificationInbox, NotificationInboxEvent, NotificationKind,
};
use lokiz_domain::video::{Video, VideoEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{decode, uuid_id, ProjectionError, Projector};

/// Recipients waiting for a wake-up are capped: beyond this, live sockets
/// catch up at their next heartbeat instead.
const MAX_PENDING_WAKEUPS: usize = 10_000;

#[derive(Default)]
pub struct NotificationsProjector {
    woken: Mutex<HashSet<Uuid>>,
}

/// A notification about to be recorded.
struct New {
    recipient: Uuid,
    kind: NotificationKind,
    actor: Option<Uuid>,
    video_id: Option<Uuid>,
    comment_id: Option<Uuid>,
    glitch_video_id: Option<Uuid>,
    job_id: Option<Uuid>,
    job_status: Option<&'static str>,
}

impl New {
    fn about(recipient: Uuid, kind: NotificationKind, actor: Option<Uuid>) -> Self {
        Self {
            recipient,
            kind,
            actor,
            video_id: None,
            comment_id: None,
            glitch_video_id: None,
            job_id: None,
            job_status: None,
        }
    }
}

/// A notification's id: the event that created it, and its kind (one event
/// may notify two people: a reply notifies the parent's author and the
/// video's owner).
fn notification_id(event: &StoredEvent, kind: NotificationKind) -> Uuid {
    let name = format!(
        "{}:{}:{}:{}",
        event.aggregate_type,
        event.aggregate_id,
        event.sequence,
        kind.as_str()
    );
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

impl NotificationsProjector {
    fn wake(&self, user: Uuid) {
        if let Ok(mut woken) = self.woken.lock() {
            if woken.len() < MAX_PENDING_WAKEUPS {
                woken.insert(user);
            }
        }
    }

    /// Whether `new` may be recorded: not one's own action, no block either
    /// way, the kind not turned off.
    async fn wanted(conn: &mut PgConnection, new: &New) -> Result<bool, ProjectionError> {
        if new.actor == Some(new.recipient) {
            return Ok(false);
        }
        let wanted: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM notification_blocks
                                 WHERE (blocker_id = $1 AND blocked_id = $2)
                                    OR (blocker_id = $2 AND blocked_id = $1))
                AND NOT EXISTS (SELECT 1 FROM notification_settings
                                 WHERE user_id = $1 AND kind = $3 AND NOT enabled)",
        )
        .bind(new.recipient)
        .bind(new.actor.unwrap_or(Uuid::nil()))
        .bind(new.kind.as_str())
        .fetch_one(conn)
        .await?;
        Ok(wanted)
    }

    async fn record(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
        new: New,
        at: DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        if !Self::wanted(conn, &new).await? {
            return Ok(());
        }
        let id = notification_id(event, new.kind);
        // likes of one video gather in its unread like notification
        let conflict = if new.kind == NotificationKind::Like {
            "ON CONFLICT (user_id, video_id) WHERE kind = 'like' AND read_at IS NULL
             DO UPDATE SET actor_id = EXCLUDED.actor_id, updated_at = EXCLUDED.updated_at,
                           seq_xid = EXCLUDED.seq_xid, seq_pos = EXCLUDED.seq_pos"
        } else {
            "ON CONFLICT (id) DO NOTHING"
        };
        let id: Option<Uuid> = sqlx::query_scalar(&format!(
            "INSERT INTO notifications (id, user_id, kind, actor_id, actor_count, video_id,
                                        comment_id, glitch_video_id, job_id, job_status,
                                        created_at, updated_at, seq_xid, seq_pos)
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8, $9, $10, $10, $11, $12)
             {conflict}
             RETURNING id"
        ))
        .bind(id)
        .bind(new.recipient)
        .bind(new.kind.as_str())
        .bind(new.actor)
        .bind(new.video_id)
        .bind(new.comment_id)
        .bind(new.glitch_video_id)
        .bind(new.job_id)
        .bind(new.job_status)
        .bind(at)
        .bind(event.xid)
        .bind(event.position)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(id) = id else {
            return Ok(());
        };
        if let Some(actor) = new.actor {
            // distinct actors: a like, unlike and like again counts once
            sqlx::query(
                "WITH added AS (INSERT INTO notification_actors (notification_id, actor_id)
                                VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1)
                 UPDATE notifications SET actor_count = actor_count + (SELECT count(*) FROM added)
                  WHERE id = $1",
            )
            .bind(id)
            .bind(actor)
            .execute(&mut *conn)
            .await?;
        }
        self.wake(new.recipient);
        Ok(())
    }

    async fn owner_of_video(
        conn: &mut PgConnection,
        video_id: Uuid,
    ) -> Result<Option<Uuid>, ProjectionError> {
        Ok(
            sqlx::query_scalar("SELECT owner_id FROM notification_videos WHERE video_id = $1")
                .bind(video_id)
                .fetch_optional(conn)
                .await?,
        )
    }

    async fn apply_video(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let video_id = uuid_id(event)?;
        match decode::<VideoEvent>(event)? {
            VideoEvent::UploadRequested { owner_id, .. } => {
                sqlx::query(
                    "INSERT INTO notification_videos (video_id, owner_id) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                )
                .bind(video_id)
                .bind(owner_id)
                .execute(conn)
                .await?;
            }
            VideoEvent::GlitchedFrom {
                source_video_id,
                glitched_at,
                ..
            } => {
                let source_owner = Self::owner_of_video(conn, source_video_id).await?;
                let glitcher = Self::owner_of_video(conn, video_id).await?;
                if let (Some(recipient), Some(glitcher)) = (source_owner, glitcher) {
                    let mut new = New::about(recipient, NotificationKind::Glitch, Some(glitcher));
                    new.video_id = Some(source_video_id);
                    new.glitch_video_id = Some(video_id);
                    self.record(conn, event, new, glitched_at).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn apply_comment(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match decode::<CommentEvent>(event)? {
            CommentEvent::CommentPosted {
                comment_id,
                video_id,
                author_id,
                parent_id,
                posted_at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO notification_comments (comment_id, author_id) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                )
                .bind(comment_id)
                .bind(author_id)
                .execute(&mut *conn)
                .await?;
                let parent_author: Option<Uuid> = match parent_id {
                    Some(parent) => {
                        sqlx::query_scalar(
                            "SELECT author_id FROM notification_comments WHERE comment_id = $1",
                        )
                        .bind(parent)
                        .fetch_optional(&mut *conn)
                        .await?
                    }
                    None => None,
                };
                if let Some(recipient) = parent_author {
                    let mut new = New::about(recipient, NotificationKind::Reply, Some(author_id));
                    new.video_id = Some(video_id);
                    new.comment_id = Some(comment_id);
                    self.record(conn, event, new, posted_at).await?;
                }
                // the video's owner hears of every comment (once, when the
                // reply was already to them)
                if let Some(owner) = Self::owner_of_video(conn, video_id).await? {
                    if Some(owner) != parent_author {
                        let mut new = New::about(owner, NotificationKind::Comment, Some(author_id));
                        new.video_id = Some(video_id);
                        new.comment_id = Some(comment_id);
                        self.record(conn, event, new, posted_at).await?;
                    }
                }
            }
            CommentEvent::CommentDeleted { .. } => {
                // a deleted comment's notifications go with it
                let comment_id = uuid_id(event)?;
                let gone: Vec<Uuid> = sqlx::query_scalar(
                    "DELETE FROM notifications WHERE comment_id = $1 RETURNING user_id",
                )
                .bind(comment_id)
                .fetch_all(conn)
                .await?;
                for user in gone {
                    self.wake(user);
                }
            }
            CommentEvent::CommentEdited { .. } => {}
        }
        Ok(())
    }

    async fn apply_job(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let job_id = uuid_id(event)?;
        let (status, at, output) = match decode::<AiJobEvent>(event)? {
            AiJobEvent::JobRequested {
                owner_id,
                kind,
                source_video_id,
                ..
            } => {
                // frame captures are studio steps, many at once: not news
                if kind != JobKind::CaptureFrame {
                    sqlx::query(
                        "INSERT INTO notification_jobs (job_id, owner_id, kind, source_video_id)
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(job_id)
                    .bind(owner_id)
                    .bind(kind.as_str())
                    .bind(source_video_id)
                    .execute(conn)
                    .await?;
                }
                return Ok(());
            }
            AiJobEvent::JobCompleted {
                completed_at,
                output_video_id,
                ..
            } => ("completed", completed_at, output_video_id),
            AiJobEvent::JobFailed { failed_at, .. } => ("failed", failed_at, None),
            _ => return Ok(()),
        };
        let job: Option<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT owner_id, source_video_id FROM notification_jobs WHERE job_id = $1",
        )
        .bind(job_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((owner, source)) = job {
            let mut new = New::about(owner, NotificationKind::AiJob, None);
            new.video_id = Some(source);
            new.glitch_video_id = output;
            new.job_id = Some(job_id);
            new.job_status = Some(status);
            self.record(conn, event, new, at).await?;
        }
        Ok(())
    }

    async fn apply_inbox(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match decode::<NotificationInboxEvent>(event)? {
            NotificationInboxEvent::NotificationsRead {
                user_id,
                notification_ids,
                read_at,
            } => {
                sqlx::query(
                    "UPDATE notifications SET read_at = $3
                      WHERE user_id = $1 AND id = ANY($2) AND read_at IS NULL",
                )
                .bind(user_id)
                .bind(notification_ids)
                .bind(read_at)
                .execute(conn)
                .await?;
                self.wake(user_id);
            }
            NotificationInboxEvent::AllNotificationsRead { user_id, read_at } => {
                sqlx::query(
                    "UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL",
                )
                .bind(user_id)
                .bind(read_at)
                .execute(conn)
                .await?;
                self.wake(user_id);
            }
            NotificationInboxEvent::NotificationSettingsChanged {
                user_id, settings, ..
            } => {
                let kinds: Vec<&str> = settings.keys().map(|k| k.as_str()).collect();
                let enabled: Vec<bool> = settings.values().copied().collect();
                sqlx::query(
                    "INSERT INTO notification_settings (user_id, kind, enabled)
                     SELECT $1, k, e FROM unnest($2::text[], $3::bool[]) AS s(k, e)
                     ON CONFLICT (user_id, kind) DO UPDATE SET enabled = EXCLUDED.enabled",
                )
                .bind(user_id)
                .bind(kinds)
                .bind(enabled)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Projector for NotificationsProjector {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[
            Video::TYPE_NAME,
            Like::TYPE_NAME,
            Comment::TYPE_NAME,
            Follow::TYPE_NAME,
            AiJob::TYPE_NAME,
            Block::TYPE_NAME,
            NotificationInbox::TYPE_NAME,
        ]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "notifications",
            "notification_actors",
            "notification_videos",
            "notification_comments",
            "notification_jobs",
            "notification_blocks",
            "notification_settings",
        ]
    }

    /// Notifications gather events of many aggregates, and decisions depend
    /// on blocks and settings: one key per recipient would need lookups, so
    /// a parked event here holds back every later one of the projection's
    /// inputs that names the same users or video.
    fn entity_keys(&self, event: &StoredEvent) -> Vec<String> {
        crate::projector::keys_from_fields(
            event,
            &[
                ("video_id", Video::TYPE_NAME),
                ("source_video_id", Video::TYPE_NAME),
                ("user_id", "User"),
                ("owner_id", "User"),
                ("author_id", "User"),
                ("follower_id", "User"),
                ("followee_id", "User"),
                ("blocker_id", "User"),
                ("blocked_id", "User"),
                ("parent_id", Comment::TYPE_NAME),
            ],
        )
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match event.aggregate_type.as_str() {
            Video::TYPE_NAME => self.apply_video(conn, event).await,
            Comment::TYPE_NAME => self.apply_comment(conn, event).await,
            AiJob::TYPE_NAME => self.apply_job(conn, event).await,
            NotificationInbox::TYPE_NAME => self.apply_inbox(conn, event).await,
            Like::TYPE_NAME => {
                if let LikeEvent::VideoLiked {
                    user_id,
                    video_id,
                    liked_at,
                } = decode::<LikeEvent>(event)?
                {
                    if let Some(owner) = Self::owner_of_video(conn, video_id).await? {
                        let mut new = New::about(owner, NotificationKind::Like, Some(user_id));
                        new.video_id = Some(video_id);
                        self.record(conn, event, new, liked_at).await?;
                    }
                }
                Ok(())
            }
            Follow::TYPE_NAME => {
                if let FollowEvent::UserFollowed {
                    follower_id,
                    followee_id,
                    followed_at,
                } = decode::<FollowEvent>(event)?
                {
                    let new = New::about(followee_id, NotificationKind::Follow, Some(follower_id));
                    self.record(conn, event, new, followed_at).await?;
                }
                Ok(())
            }
            Block::TYPE_NAME => {
                match decode::<BlockEvent>(event)? {
                    BlockEvent::UserBlocked {
                        blocker_id,
                        blocked_id,
                        ..
                    } => {
                        sqlx::query(
                            "INSERT INTO notification_blocks (blocker_id, blocked_id)
                             VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        )
                        .bind(blocker_id)
                        .bind(blocked_id)
                        .execute(conn)
                        .await?;
                        // what the pair already sent each other disappears
                        // from the lists (the API filters by `blocks`)
                        self.wake(blocker_id);
                        self.wake(blocked_id);
                    }
                    BlockEvent::UserUnblocked {
                        blocker_id,
                        blocked_id,
                        ..
                    } => {
                        sqlx::query(
                            "DELETE FROM notification_blocks
                              WHERE blocker_id = $1 AND blocked_id = $2",
                        )
                        .bind(blocker_id)
                        .bind(blocked_id)
                        .execute(conn)
                        .await?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn take_wakeups(&self) -> Vec<String> {
        match self.woken.lock() {
            Ok(mut woken) => woken
                .drain()
                .map(|user| format!("notifications.{user}"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}
