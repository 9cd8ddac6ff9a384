//! `videos`: every video with its metadata and counters (views, likes,
//! comments, remixes, glitches) and its hot-rank score; feeds and
//! batch-metadata read it. It reads Video events for the video itself and
//! VideoView, Like, Comment and AiJob events for the counters.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lokiz_domain::ai_job::{AiJob, AiJobEvent, JobKind};
use lokiz_domain::comment::{Comment, CommentEvent};
use lokiz_domain::like::{Like, LikeEvent};
use lokiz_domain::share::{Share, ShareEvent};
use lokiz_domain::video::{Video, VideoEvent};
use lokiz_domain::video_view::{VideoView, VideoViewEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{decode, keys_from_fields, uuid_id, ProjectionError, Projector};

pub struct VideosProjector;

/// Counter changes for one video.
#[derive(Default)]
struct Deltas {
    views: i64,
    likes: i64,
    comments: i64,
    /// AI jobs requested from the video (`remix_count`).
    remixes: i64,
    /// (user, channel) pairs it was shared to (`share_count`).
    shares: i64,
}

async fn bump(conn: &mut PgConnection, video_id: Uuid, d: Deltas) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE videos SET
            view_count = view_count + $2,
            like_count = like_count + $3,
            comment_count = comment_count + $4,
            remix_count = remix_count + $5,
            share_count = share_count + $6,
            hot_score = lokiz_hot_score(
                (view_count + $2) + 3 * (like_count + $3) + 4 * (comment_count + $4)
                    + 6 * glitch_count,
                coalesce(published_at, created_at))
          WHERE id = $1",
    )
    .bind(video_id)
    .bind(d.views)
    .bind(d.likes)
    .bind(d.comments)
    .bind(d.remixes)
    .bind(d.shares)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Projector for VideosProjector {
    fn name(&self) -> &'static str {
        "videos"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[
            Video::TYPE_NAME,
            VideoView::TYPE_NAME,
            Like::TYPE_NAME,
            Comment::TYPE_NAME,
            AiJob::TYPE_NAME,
            Share::TYPE_NAME,
        ]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["videos"]
    }

    /// A like, view, comment or job changes its video's row (and a glitch
    /// its source's).
    fn entity_keys(&self, event: &StoredEvent) -> Vec<String> {
        keys_from_fields(
            event,
            &[
                ("video_id", Video::TYPE_NAME),
                ("source_video_id", Video::TYPE_NAME),
                ("output_video_id", Video::TYPE_NAME),
            ],
        )
    }

    /// Set-based: new videos in one `INSERT` — with the completion and
    /// publication that follow them in the same batch folded into the row,
    /// so a video's usual life (requested, completed, published) costs one
    /// insert instead of an insert and two updates — then the later lifecycle
    /// changes in layers (the n-th change of each video in layer n, so each
    /// video's changes keep their order; one `UPDATE … FROM unnest` per kind
    /// and layer), then every counter change summed per video in one
    /// `UPDATE`. Counter bumps commute with lifecycle changes (they touch
    /// other columns) and recompute the hot score from the final state, so
    /// applying them last gives what applying them in order gives.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut created = NewVideos::default();
        // videos created in this batch whose changes so far were folded in
        let mut folding: HashMap<Uuid, usize> = HashMap::new();
        let mut layers: Vec<Vec<(Uuid, VideoEvent)>> = Vec::new();
        let mut changes_of: HashMap<Uuid, usize> = HashMap::new();
        let mut deltas: HashMap<Uuid, Deltas> = HashMap::new();
        for event in events {
            match event.aggregate_type.as_str() {
                Video::TYPE_NAME => {
                    let id = uuid_id(event)?;
                    match decode::<VideoEvent>(event)? {
                        VideoEvent::UploadRequested {
                            owner_id,
                            file_key,
                            content_type,
                            file_size,
                            caption,
                            requested_at,
                            draft_id,
                            ..
                        } => {
                            folding.insert(id, created.ids.len());
                            created.push(
                                id,
                                owner_id,
                                file_key,
                                content_type,
                                file_size as i64,
                                caption.map(|c| c.into_inner()),
                                requested_at,
                                draft_id,
                            )
                        }
                        change => {
                            let change = match folding.get(&id) {
                                Some(&row) => match created.fold(row, change) {
                                    None => continue,
                                    Some(unfolded) => {
                                        folding.remove(&id);
                                        unfolded
                                    }
                                },
                                None => change,
                            };
                            let n = changes_of.entry(id).or_default();
                            if layers.len() <= *n {
                                layers.push(Vec::new());
                            }
                            layers[*n].push((id, change));
                            *n += 1;
                        }
                    }
                }
                _ => {
                    if let Some((video_id, d)) = counter_change(event)? {
                        let sum = deltas.entry(video_id).or_default();
                        sum.views += d.views;
                        sum.likes += d.likes;
                        sum.comments += d.comments;
                        sum.remixes += d.remixes;
                        sum.shares += d.shares;
                    }
                }
            }
        }
        created.insert(conn).await?;
        for layer in layers {
            let mut completed = Completions::default();
            let mut published = Publications::default();
            for (id, change) in layer {
                match change {
                    VideoEvent::UploadCompleted {
                        dimensions,
                        completed_at,
                    } => completed.push(id, dimensions, completed_at),
                    VideoEvent::Published { published_at } => published.push(id, published_at),
                    // rare: one statement each, as `apply` does
                    other => apply_video(conn, id, other).await?,
                }
            }
            completed.update(conn).await?;
            published.update(conn).await?;
        }
        bump_all(conn, deltas).await
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        if event.aggregate_type == Video::TYPE_NAME {
            return apply_video(conn, uuid_id(event)?, decode(event)?).await;
        }
        match counter_change(event)? {
            Some((video_id, d)) => bump(conn, video_id, d).await,
            None => Ok(()),
        }
    }
}

/// The counter change a VideoView, Like, Comment or AiJob event makes, and to
/// which video. A remix is any AI job requested from a video except frame
/// captures (a studio step, not a remix).
fn counter_change(event: &StoredEvent) -> Result<Option<(Uuid, Deltas)>, ProjectionError> {
    let (video_id, d) = match event.aggregate_type.as_str() {
        VideoView::TYPE_NAME => match decode::<VideoViewEvent>(event)? {
            VideoViewEvent::ViewCounted { video_id, .. } => (
                video_id,
                Deltas {
                    views: 1,
                    ..Default::default()
                },
            ),
        },
        Like::TYPE_NAME => {
            let (video_id, likes) = match decode::<LikeEvent>(event)? {
                LikeEvent::VideoLiked { video_id, .. } => (video_id, 1),
                LikeEvent::VideoUnliked { video_id, .. } => (video_id, -1),
            };
            let d = Deltas {
                likes,
                ..Default::default()
            };
            (video_id, d)
        }
        Comment::TYPE_NAME => {
            let (video_id, comments) = match decode::<CommentEvent>(event)? {
                CommentEvent::CommentPosted { video_id, .. } => (video_id, 1),
                CommentEvent::CommentDeleted { video_id, .. } => (video_id, -1),
                CommentEvent::CommentEdited { .. } => return Ok(None),
            };
            let d = Deltas {
                comments,
                ..Default::default()
            };
            (video_id, d)
        }
        AiJob::TYPE_NAME => match decode::<AiJobEvent>(event)? {
            AiJobEvent::JobRequested {
                source_video_id,
                kind,
                ..
            } if kind != JobKind::CaptureFrame => (
                source_video_id,
                Deltas {
                    remixes: 1,
                    ..Default::default()
                },
            ),
            _ => return Ok(None),
        },
        Share::TYPE_NAME => match decode::<ShareEvent>(event)? {
            ShareEvent::VideoShared { video_id, .. } => (
                video_id,
                Deltas {
                    shares: 1,
                    ..Default::default()
                },
            ),
        },
        _ => return Ok(None),
    };
    Ok(Some((video_id, d)))
}

/// Summed counter changes, one `UPDATE` for all videos.
async fn bump_all(
    conn: &mut PgConnection,
    deltas: HashMap<Uuid, Deltas>,
) -> Result<(), ProjectionError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(deltas.len());
    let (mut views, mut likes, mut comments, mut remixes, mut shares) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, d) in deltas {
        ids.push(id);
        views.push(d.views);
        likes.push(d.likes);
        comments.push(d.comments);
        remixes.push(d.remixes);
        shares.push(d.shares);
    }
    sqlx::query(
        "UPDATE videos v SET
            view_count = v.view_count + u.dv,
            like_count = v.like_count + u.dl,
            comment_count = v.comment_count + u.dc,
            remix_count = v.remix_count + u.dr,
            share_count = v.share_count + u.ds,
            hot_score = lokiz_hot_score(
                (v.view_count + u.dv) + 3 * (v.like_count + u.dl) + 4 * (v.comment_count + u.dc)
                    + 6 * v.glitch_count,
                coalesce(v.published_at, v.created_at))
           FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                       $6::bigint[])
                AS u(id, dv, dl, dc, dr, ds)
          WHERE v.id = u.id",
    )
    .bind(ids)
    .bind(views)
    .bind(likes)
    .bind(comments)
    .bind(remixes)
    .bind(shares)
    .execute(conn)
    .await?;
    Ok(())
}

/// `UploadRequested` rows of a batch, each with the state the video's next
/// changes in the same batch give it, as long as they are completions and
/// publications (what `apply_video` would do, in order, to a new row).
#[derive(Default)]
struct NewVideos {
    ids: Vec<Uuid>,
    owners: Vec<Uuid>,
    keys: Vec<String>,
    types: Vec<String>,
    sizes: Vec<i64>,
    captions: Vec<Option<String>>,
    at: Vec<DateTime<Utc>>,
    statuses: Vec<&'static str>,
    widths: Vec<Option<i32>>,
    heights: Vec<Option<i32>>,
    durations: Vec<Option<f64>>,
    updated: Vec<DateTime<Utc>>,
    published: Vec<Option<DateTime<Utc>>>,
    listed: Vec<bool>,
    drafts: Vec<Option<Uuid>>,
    /// The changes folded into each row, to apply one by one should the row
    /// exist already.
    folded: Vec<Vec<VideoEvent>>,
}

impl NewVideos {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        id: Uuid,
        owner: Uuid,
        key: String,
        content_type: String,
        size: i64,
        caption: Option<String>,
        at: DateTime<Utc>,
        draft: Option<Uuid>,
    ) {
        self.ids.push(id);
        self.owners.push(owner);
        self.keys.push(key);
        self.types.push(content_type);
        self.sizes.push(size);
        self.captions.push(caption);
        self.at.push(at);
        self.statuses.push("processing");
        self.widths.push(None);
        self.heights.push(None);
        self.durations.push(None);
        self.updated.push(at);
        self.published.push(None);
        self.listed.push(false);
        self.drafts.push(draft);
        self.folded.push(Vec::new());
    }

    /// Folds `change` into row `row` when it is a completion or a
    /// publication; gives it back otherwise.
    fn fold(&mut self, row: usize, change: VideoEvent) -> Option<VideoEvent> {
        match &change {
            VideoEvent::UploadCompleted {
                dimensions,
                completed_at,
            } => {
                self.statuses[row] = "completed";
                self.widths[row] = Some(dimensions.width as i32);
                self.heights[row] = Some(dimensions.height as i32);
                self.durations[row] = Some(dimensions.duration);
                self.updated[row] = *completed_at;
            }
            VideoEvent::Published { published_at } => {
                self.published[row] = Some(*published_at);
                // new rows are public
                self.listed[row] = self.statuses[row] == "completed";
            }
            _ => return Some(change),
        }
        self.folded[row].push(change);
        None
    }

    async fn insert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO videos (id, owner_id, file_key, content_type, file_size, caption,
                                 visibility, status, width, height, duration,
                                 created_at, updated_at, published_at, listed, hot_score,
                                 draft_id)
             SELECT u.id, u.owner_id, u.file_key, u.content_type, u.file_size, u.caption,
                    'public', u.status, u.width, u.height, u.duration,
                    u.at, u.updated, u.published, u.listed,
                    CASE WHEN u.published IS NULL THEN 0 ELSE lokiz_hot_score(0, u.published) END,
                    u.draft_id
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[],
                           $6::text[], $7::timestamptz[], $8::text[], $9::int[], $10::int[],
                           $11::float8[], $12::timestamptz[], $13::timestamptz[], $14::bool[],
                           $15::uuid[])
                    AS u(id, owner_id, file_key, content_type, file_size, caption, at,
                         status, width, height, duration, updated, published, listed,
                         draft_id)
             ON CONFLICT (id) DO NOTHING
             RETURNING id",
        )
        .bind(&self.ids)
        .bind(self.owners)
        .bind(self.keys)
        .bind(self.types)
        .bind(self.sizes)
        .bind(self.captions)
        .bind(self.at)
        .bind(self.statuses)
        .bind(self.widths)
        .bind(self.heights)
        .bind(self.durations)
        .bind(self.updated)
        .bind(self.published)
        .bind(self.listed)
        .bind(self.drafts)
        .fetch_all(&mut *conn)
        .await?;
        if inserted.len() == self.ids.len() {
            return Ok(());
        }
        // a row that existed already takes its folded changes as `apply` would
        let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
        for (id, changes) in self.ids.iter().zip(self.folded) {
            if !inserted.contains(id) {
                for change in changes {
                    apply_video(conn, *id, change).await?;
                }
            }
        }
        Ok(())
    }
}

/// `UploadCompleted` changes of one layer.
#[derive(Default)]
struct Completions {
    ids: Vec<Uuid>,
    widths: Vec<i32>,
    heights: Vec<i32>,
    durations: Vec<f64>,
    at: Vec<DateTime<Utc>>,
}

impl Completions {
    fn push(&mut self, id: Uuid, d: lokiz_domain::values::VideoDimensions, at: DateTime<Utc>) {
        self.ids.push(id);
        self.widths.push(d.width as i32);
        self.heights.push(d.height as i32);
        self.durations.push(d.duration);
        self.at.push(at);
    }

    async fn update(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE videos v SET status = 'completed', width = u.w, height = u.h,
                                 duration = u.d, updated_at = u.at
               FROM unnest($1::uuid[], $2::int[], $3::int[], $4::float8[], $5::timestamptz[])
                    AS u(id, w, h, d, at)
              WHERE v.id = u.id",
        )
        .bind(self.ids)
        .bind(self.widths)
        .bind(self.heights)
        .bind(self.durations)
        .bind(self.at)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// `Published` changes of one layer.
#[derive(Default)]
struct Publications {
    ids: Vec<Uuid>,
    at: Vec<DateTime<Utc>>,
}

impl Publications {
    fn push(&mut self, id: Uuid, at: DateTime<Utc>) {
        self.ids.push(id);
        self.at.push(at);
    }

    async fn update(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE videos v SET published_at = u.at,
                    listed = (v.visibility = 'public' AND v.status = 'completed'),
                    hot_score = lokiz_hot_score(
                        v.view_count + 3 * v.like_count + 4 * v.comment_count
                            + 6 * v.glitch_count, u.at)
               FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)
              WHERE v.id = u.id",
        )
        .bind(self.ids)
        .bind(self.at)
        .execute(conn)
        .await?;
        Ok(())
    }
}

async fn apply_video(
    conn: &mut PgConnection,
    id: Uuid,
    event: VideoEvent,
) -> Result<(), ProjectionError> {
    match event {
        VideoEvent::UploadRequested {
            owner_id,
            file_key,
            content_type,
            file_size,
            caption,
            requested_at,
            draft_id,
            ..
        } => {
            sqlx::query(
                "INSERT INTO videos (id, owner_id, file_key, content_type, file_size, caption,
                                     visibility, status, created_at, updated_at, draft_id)
                 VALUES ($1, $2, $3, $4, $5, $6, 'public', 'processing', $7, $7, $8)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(owner_id)
            .bind(file_key)
            .bind(content_type)
            .bind(file_size as i64)
            .bind(caption.map(|c| c.into_inner()))
            .bind(requested_at)
            .bind(draft_id)
            .execute(conn)
            .await?;
        }
        VideoEvent::UploadCompleted {
            dimensions,
            completed_at,
        } => {
            sqlx::query(
                "UPDATE videos SET status = 'completed', width = $2, height = $3, duration = $4,
                                   updated_at = $5
                  WHERE id = $1",
            )
            .bind(id)
            .bind(dimensions.width as i32)
            .bind(dimensions.height as i32)
            .bind(dimensions.duration)
            .bind(completed_at)
            .execute(conn)
            .await?;
        }
        VideoEvent::Published { published_at } => {
            sqlx::query(
                "UPDATE videos SET published_at = $2,
                        listed = (visibility = 'public' AND status = 'completed'),
                        hot_score = lokiz_hot_score(
                            view_count + 3 * like_count + 4 * comment_count + 6 * glitch_count, $2)
                  WHERE id = $1",
            )
            .bind(id)
            .bind(published_at)
            .execute(conn)
            .await?;
        }
        VideoEvent::MetadataUpdated {
            caption,
            visibility,
            updated_at,
        } => {
            sqlx::query(
                "UPDATE videos SET
                        caption = CASE WHEN $2 THEN $3 ELSE caption END,
                        visibility = coalesce($4, visibility),
                        listed = (coalesce($4, visibility) = 'public' AND status = 'completed'
                                  AND published_at IS NOT NULL),
                        updated_at = $5
                  WHERE id = $1",
            )
            .bind(id)
            .bind(caption.is_some())
            .bind(caption.flatten().map(|c| c.into_inner()))
            .bind(visibility.map(|v| v.as_str()))
            .bind(updated_at)
            .execute(conn)
            .await?;
        }
        // a video an admin removed is gone like a deleted one, for its owner
        // too; `removed_at` tells the two apart
        VideoEvent::Deleted { deleted_at: at } | VideoEvent::Removed { removed_at: at, .. } => {
            let removed = matches!(event, VideoEvent::Removed { .. });
            // a deleted glitch no longer counts for its source
            sqlx::query(
                "UPDATE videos s SET glitch_count = s.glitch_count - 1,
                        hot_score = lokiz_hot_score(
                            s.view_count + 3 * s.like_count + 4 * s.comment_count
                                + 6 * (s.glitch_count - 1),
                            coalesce(s.published_at, s.created_at))
                   FROM videos v
                  WHERE v.id = $1 AND v.status <> 'deleted' AND s.id = v.source_video_id",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE videos SET status = 'deleted', listed = false, deleted_at = $2,
                                   updated_at = $2,
                                   removed_at = CASE WHEN $3 THEN $2 ELSE removed_at END
                  WHERE id = $1",
            )
            .bind(id)
            .bind(at)
            .bind(removed)
            .execute(conn)
            .await?;
        }
        VideoEvent::GlitchedFrom {
            source_video_id,
            glitched_at,
            ..
        } => {
            sqlx::query("UPDATE videos SET source_video_id = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(source_video_id)
                .bind(glitched_at)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE videos SET glitch_count = glitch_count + 1,
                        hot_score = lokiz_hot_score(
                            view_count + 3 * like_count + 4 * comment_count + 6 * (glitch_count + 1),
                            coalesce(published_at, created_at))
                  WHERE id = $1",
            )
            .bind(source_video_id)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}
