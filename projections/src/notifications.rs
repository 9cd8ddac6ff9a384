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

use std::collections::{HashMap, HashSet};
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

/// An event a batch applies set-based. Between two events that are not of
/// this kind (blocks, read marks, settings, deletions, jobs, glitches), the
/// blocks, settings and read marks this projector decides with stay as they
/// are, so a run of these can be decided with one look at them and written
/// with a few statements, with the outcome of applying them one by one.
enum Simple {
    /// Nothing this projector keeps.
    Nothing,
    VideoUploaded {
        video_id: Uuid,
        owner_id: Uuid,
    },
    Liked {
        video_id: Uuid,
        user_id: Uuid,
        at: DateTime<Utc>,
    },
    Followed {
        follower_id: Uuid,
        followee_id: Uuid,
        at: DateTime<Utc>,
    },
    CommentPosted {
        comment_id: Uuid,
        video_id: Uuid,
        author_id: Uuid,
        parent_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
}

/// `Some` for an event a run can take, `None` for one applied on its own.
fn simple(event: &StoredEvent) -> Result<Option<Simple>, ProjectionError> {
    Ok(Some(match event.aggregate_type.as_str() {
        Video::TYPE_NAME => match decode::<VideoEvent>(event)? {
            VideoEvent::UploadRequested { owner_id, .. } => Simple::VideoUploaded {
                video_id: uuid_id(event)?,
                owner_id,
            },
            VideoEvent::GlitchedFrom { .. } => return Ok(None),
            _ => Simple::Nothing,
        },
        Like::TYPE_NAME => match decode::<LikeEvent>(event)? {
            LikeEvent::VideoLiked {
                user_id,
                video_id,
                liked_at,
            } => Simple::Liked {
                video_id,
                user_id,
                at: liked_at,
            },
            _ => Simple::Nothing,
        },
        Follow::TYPE_NAME => match decode::<FollowEvent>(event)? {
            FollowEvent::UserFollowed {
                follower_id,
                followee_id,
                followed_at,
            } => Simple::Followed {
                follower_id,
                followee_id,
                at: followed_at,
            },
            _ => Simple::Nothing,
        },
        Comment::TYPE_NAME => match decode::<CommentEvent>(event)? {
            CommentEvent::CommentPosted {
                comment_id,
                video_id,
                author_id,
                parent_id,
                posted_at,
                ..
            } => Simple::CommentPosted {
                comment_id,
                video_id,
                author_id,
                parent_id,
                at: posted_at,
            },
            CommentEvent::CommentEdited { .. } => Simple::Nothing,
            CommentEvent::CommentDeleted { .. } => return Ok(None),
        },
        AiJob::TYPE_NAME | Block::TYPE_NAME | NotificationInbox::TYPE_NAME => return Ok(None),
        _ => Simple::Nothing,
    }))
}

/// Who owns what, as a run sees it at its `i`-th event: what the tables held
/// before the run, else what the run itself recorded before `i` (the first
/// record wins, as `ON CONFLICT DO NOTHING` does).
struct Known {
    before: HashMap<Uuid, Uuid>,
    in_run: HashMap<Uuid, (usize, Uuid)>,
    added: Vec<(Uuid, Uuid)>,
}

impl Known {
    fn new(before: Vec<(Uuid, Uuid)>) -> Self {
        Self {
            before: before.into_iter().collect(),
            in_run: HashMap::new(),
            added: Vec::new(),
        }
    }

    fn record(&mut self, i: usize, id: Uuid, owner: Uuid) {
        if !self.before.contains_key(&id) && !self.in_run.contains_key(&id) {
            self.in_run.insert(id, (i, owner));
            self.added.push((id, owner));
        }
    }

    fn at(&self, i: usize, id: Uuid) -> Option<Uuid> {
        self.before.get(&id).copied().or_else(|| {
            self.in_run
                .get(&id)
                .filter(|(j, _)| *j < i)
                .map(|(_, owner)| *owner)
        })
    }
}

/// The likes of one video for one recipient in a run: one unread like
/// notification takes them all.
struct LikeGroup {
    /// The first like's notification id and time (if the group starts a
    /// new notification), the last like's actor, time and order key.
    id: Uuid,
    created_at: DateTime<Utc>,
    actor: Uuid,
    updated_at: DateTime<Utc>,
    seq: (i64, i64),
    actors: Vec<Uuid>,
}

impl NotificationsProjector {
    /// Applies a run of [`Simple`] events (see [`Projector::apply_batch`]).
    async fn apply_run(
        &self,
        conn: &mut PgConnection,
        run: &[(&StoredEvent, Simple)],
    ) -> Result<(), ProjectionError> {
        if run.is_empty() {
            return Ok(());
        }
        let mut videos: HashSet<Uuid> = HashSet::new();
        let mut parents: HashSet<Uuid> = HashSet::new();
        for (_, s) in run {
            match s {
                Simple::Liked { video_id, .. } => {
                    videos.insert(*video_id);
                }
                Simple::CommentPosted {
                    video_id,
                    parent_id,
                    ..
                } => {
                    videos.insert(*video_id);
                    parents.extend(*parent_id);
                }
                _ => {}
            }
        }
        let videos: Vec<Uuid> = videos.into_iter().collect();
        let parents: Vec<Uuid> = parents.into_iter().collect();
        let mut owners = Known::new(
            sqlx::query_as(
                "SELECT video_id, owner_id FROM notification_videos WHERE video_id = ANY($1)",
            )
            .bind(&videos)
            .fetch_all(&mut *conn)
            .await?,
        );
        let mut authors = Known::new(if parents.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT comment_id, author_id FROM notification_comments
                  WHERE comment_id = ANY($1)",
            )
            .bind(&parents)
            .fetch_all(&mut *conn)
            .await?
        });

        // what each event would record, in order
        let mut wanted: Vec<(&StoredEvent, New, DateTime<Utc>)> = Vec::new();
        for (i, (event, s)) in run.iter().enumerate() {
            match *s {
                Simple::Nothing => {}
                Simple::VideoUploaded { video_id, owner_id } => {
                    owners.record(i, video_id, owner_id);
                }
                Simple::Liked {
                    video_id,
                    user_id,
                    at,
                } => {
                    if let Some(owner) = owners.at(i, video_id) {
                        let mut new = New::about(owner, NotificationKind::Like, Some(user_id));
                        new.video_id = Some(video_id);
                        wanted.push((event, new, at));
                    }
                }
                Simple::Followed {
                    follower_id,
                    followee_id,
                    at,
                } => {
                    let new = New::about(followee_id, NotificationKind::Follow, Some(follower_id));
                    wanted.push((event, new, at));
                }
                Simple::CommentPosted {
                    comment_id,
                    video_id,
                    author_id,
                    parent_id,
                    at,
                } => {
                    authors.record(i, comment_id, author_id);
                    let parent_author = parent_id.and_then(|p| authors.at(i, p));
                    if let Some(recipient) = parent_author {
                        let mut new =
                            New::about(recipient, NotificationKind::Reply, Some(author_id));
                        new.video_id = Some(video_id);
                        new.comment_id = Some(comment_id);
                        wanted.push((event, new, at));
                    }
                    if let Some(owner) = owners.at(i, video_id) {
                        if Some(owner) != parent_author {
                            let mut new =
                                New::about(owner, NotificationKind::Comment, Some(author_id));
                            new.video_id = Some(video_id);
                            new.comment_id = Some(comment_id);
                            wanted.push((event, new, at));
                        }
                    }
                }
            }
        }
        Self::write_known(conn, &owners.added, &authors.added).await?;

        // not one's own action, no block either way, the kind not turned off
        wanted.retain(|(_, new, _)| new.actor != Some(new.recipient));
        if wanted.is_empty() {
            return Ok(());
        }
        let people: Vec<Uuid> = wanted
            .iter()
            .flat_map(|(_, new, _)| [Some(new.recipient), new.actor])
            .flatten()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let blocked: HashSet<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT blocker_id, blocked_id FROM notification_blocks
              WHERE blocker_id = ANY($1) AND blocked_id = ANY($1)",
        )
        .bind(&people)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        let off: HashSet<(Uuid, String)> = sqlx::query_as(
            "SELECT user_id, kind FROM notification_settings
              WHERE user_id = ANY($1) AND NOT enabled",
        )
        .bind(&people)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        wanted.retain(|(_, new, _)| {
            let actor = new.actor.unwrap_or(Uuid::nil());
            !blocked.contains(&(new.recipient, actor))
                && !blocked.contains(&(actor, new.recipient))
                && !off.contains(&(new.recipient, new.kind.as_str().to_owned()))
        });

        // likes of one video gather per recipient; everything else is one
        // notification per event and kind
        let mut groups: Vec<((Uuid, Uuid), LikeGroup)> = Vec::new();
        let mut group_of: HashMap<(Uuid, Uuid), usize> = HashMap::new();
        let mut others: Vec<(&StoredEvent, New, DateTime<Utc>)> = Vec::new();
        for (event, new, at) in wanted {
            let (NotificationKind::Like, Some(video), Some(actor)) =
                (new.kind, new.video_id, new.actor)
            else {
                others.push((event, new, at));
                continue;
            };
            let key = (new.recipient, video);
            let seq = (event.xid, event.position);
            match group_of.get(&key) {
                Some(&g) => {
                    let group = &mut groups[g].1;
                    group.actor = actor;
                    group.updated_at = at;
                    group.seq = seq;
                    if !group.actors.contains(&actor) {
                        group.actors.push(actor);
                    }
                }
                None => {
                    group_of.insert(key, groups.len());
                    let group = LikeGroup {
                        id: notification_id(event, NotificationKind::Like),
                        created_at: at,
                        actor,
                        updated_at: at,
                        seq,
                        actors: vec![actor],
                    };
                    groups.push((key, group));
                }
            }
        }

        // (notification, actor) pairs to count
        let mut actor_rows: Vec<(Uuid, Uuid)> = Vec::new();
        if !others.is_empty() {
            let mut c = Columns::default();
            for (event, new, at) in &others {
                c.push(notification_id(event, new.kind), new, *at, event);
            }
            let inserted: Vec<(Uuid, Uuid, Option<Uuid>)> = sqlx::query_as(
                "INSERT INTO notifications (id, user_id, kind, actor_id, actor_count, video_id,
                                            comment_id, created_at, updated_at, seq_xid, seq_pos)
                 SELECT id, user_id, kind, actor_id, 0, video_id, comment_id, at, at, x, p
                   FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[],
                               $6::uuid[], $7::timestamptz[], $8::bigint[], $9::bigint[])
                        AS i(id, user_id, kind, actor_id, video_id, comment_id, at, x, p)
                 ON CONFLICT (id) DO NOTHING
                 RETURNING id, user_id, actor_id",
            )
            .bind(&c.ids)
            .bind(&c.recipients)
            .bind(&c.kinds)
            .bind(&c.actors)
            .bind(&c.videos)
            .bind(&c.comments)
            .bind(&c.times)
            .bind(&c.xids)
            .bind(&c.positions)
            .fetch_all(&mut *conn)
            .await?;
            for (id, recipient, actor) in inserted {
                self.wake(recipient);
                actor_rows.extend(actor.map(|a| (id, a)));
            }
        }
        if !groups.is_empty() {
            let mut ids = Vec::with_capacity(groups.len());
            let mut recipients = Vec::with_capacity(groups.len());
            let mut videos = Vec::with_capacity(groups.len());
            let mut actors = Vec::with_capacity(groups.len());
            let mut created = Vec::with_capacity(groups.len());
            let mut updated = Vec::with_capacity(groups.len());
            let mut xids = Vec::with_capacity(groups.len());
            let mut positions = Vec::with_capacity(groups.len());
            for ((recipient, video), g) in &groups {
                ids.push(g.id);
                recipients.push(*recipient);
                videos.push(*video);
                actors.push(g.actor);
                created.push(g.created_at);
                updated.push(g.updated_at);
                xids.push(g.seq.0);
                positions.push(g.seq.1);
            }
            let rows: Vec<(Uuid, Uuid, Uuid)> = sqlx::query_as(
                "INSERT INTO notifications (id, user_id, kind, actor_id, actor_count, video_id,
                                            created_at, updated_at, seq_xid, seq_pos)
                 SELECT id, user_id, 'like', actor_id, 0, video_id, c, u, x, p
                   FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[],
                               $5::timestamptz[], $6::timestamptz[], $7::bigint[], $8::bigint[])
                        AS i(id, user_id, video_id, actor_id, c, u, x, p)
                 ON CONFLICT (user_id, video_id) WHERE kind = 'like' AND read_at IS NULL
                 DO UPDATE SET actor_id = EXCLUDED.actor_id, updated_at = EXCLUDED.updated_at,
                               seq_xid = EXCLUDED.seq_xid, seq_pos = EXCLUDED.seq_pos
                 RETURNING id, user_id, video_id",
            )
            .bind(&ids)
            .bind(&recipients)
            .bind(&videos)
            .bind(&actors)
            .bind(&created)
            .bind(&updated)
            .bind(&xids)
            .bind(&positions)
            .fetch_all(&mut *conn)
            .await?;
            for (id, recipient, video) in rows {
                self.wake(recipient);
                if let Some(&g) = group_of.get(&(recipient, video)) {
                    actor_rows.extend(groups[g].1.actors.iter().map(|a| (id, *a)));
                }
            }
        }
        if !actor_rows.is_empty() {
            // distinct actors: a like, unlike and like again counts once
            let (ids, actors): (Vec<Uuid>, Vec<Uuid>) = actor_rows.into_iter().unzip();
            sqlx::query(
                "WITH added AS (INSERT INTO notification_actors (notification_id, actor_id)
                                SELECT * FROM unnest($1::uuid[], $2::uuid[])
                                ON CONFLICT DO NOTHING RETURNING notification_id)
                 UPDATE notifications n SET actor_count = n.actor_count + a.c
                   FROM (SELECT notification_id, count(*) AS c FROM added GROUP BY 1) a
                  WHERE n.id = a.notification_id",
            )
            .bind(&ids)
            .bind(&actors)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// The run's new video owners and comment authors.
    async fn write_known(
        conn: &mut PgConnection,
        videos: &[(Uuid, Uuid)],
        comments: &[(Uuid, Uuid)],
    ) -> Result<(), ProjectionError> {
        if !videos.is_empty() {
            let (ids, owners): (Vec<Uuid>, Vec<Uuid>) = videos.iter().copied().unzip();
            sqlx::query(
                "INSERT INTO notification_videos (video_id, owner_id)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT DO NOTHING",
            )
            .bind(&ids)
            .bind(&owners)
            .execute(&mut *conn)
            .await?;
        }
        if !comments.is_empty() {
            let (ids, authors): (Vec<Uuid>, Vec<Uuid>) = comments.iter().copied().unzip();
            sqlx::query(
                "INSERT INTO notification_comments (comment_id, author_id)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT DO NOTHING",
            )
            .bind(&ids)
            .bind(&authors)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// Columns of non-like notifications, for one `unnest` insert.
#[derive(Default)]
struct Columns {
    ids: Vec<Uuid>,
    recipients: Vec<Uuid>,
    kinds: Vec<&'static str>,
    actors: Vec<Option<Uuid>>,
    videos: Vec<Option<Uuid>>,
    comments: Vec<Option<Uuid>>,
    times: Vec<DateTime<Utc>>,
    xids: Vec<i64>,
    positions: Vec<i64>,
}

impl Columns {
    fn push(&mut self, id: Uuid, new: &New, at: DateTime<Utc>, event: &StoredEvent) {
        self.ids.push(id);
        self.recipients.push(new.recipient);
        self.kinds.push(new.kind.as_str());
        self.actors.push(new.actor);
        self.videos.push(new.video_id);
        self.comments.push(new.comment_id);
        self.times.push(at);
        self.xids.push(event.xid);
        self.positions.push(event.position);
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

    /// Runs of likes, follows, comments and uploads are applied set-based
    /// (see [`Simple`]); anything else is applied on its own, in order.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut run: Vec<(&StoredEvent, Simple)> = Vec::new();
        for event in events {
            match simple(event)? {
                Some(Simple::Nothing) => {}
                Some(s) => run.push((event, s)),
                None => {
                    self.apply_run(conn, &run).await?;
                    run.clear();
                    self.apply(conn, event).await?;
                }
            }
        }
        self.apply_run(conn, &run).await
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
