//! `videos`: every video with its metadata and counters (views, likes,
//! comments, remixes, glitches) and its hot-rank score; feeds and
//! batch-metadata read it. It reads Video events for the video itself and
//! VideoView, Like and Comment events for the counters.

use async_trait::async_trait;
use lokiz_domain::comment::{Comment, CommentEvent};
use lokiz_domain::like::{Like, LikeEvent};
use lokiz_domain::video::{Video, VideoEvent};
use lokiz_domain::video_view::{VideoView, VideoViewEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{decode, uuid_id, ProjectionError, Projector};

pub struct VideosProjector;

/// Counter changes for one video.
#[derive(Default)]
struct Deltas {
    views: i64,
    likes: i64,
    comments: i64,
}

async fn bump(conn: &mut PgConnection, video_id: Uuid, d: Deltas) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE videos SET
            view_count = view_count + $2,
            like_count = like_count + $3,
            comment_count = comment_count + $4,
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
        ]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["videos"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match event.aggregate_type.as_str() {
            Video::TYPE_NAME => apply_video(conn, uuid_id(event)?, decode(event)?).await,
            VideoView::TYPE_NAME => match decode::<VideoViewEvent>(event)? {
                VideoViewEvent::ViewCounted { video_id, .. } => {
                    let d = Deltas {
                        views: 1,
                        ..Default::default()
                    };
                    bump(conn, video_id, d).await
                }
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
                bump(conn, video_id, d).await
            }
            Comment::TYPE_NAME => {
                let (video_id, comments) = match decode::<CommentEvent>(event)? {
                    CommentEvent::CommentPosted { video_id, .. } => (video_id, 1),
                    CommentEvent::CommentDeleted { video_id, .. } => (video_id, -1),
                    CommentEvent::CommentEdited { .. } => return Ok(()),
                };
                let d = Deltas {
                    comments,
                    ..Default::default()
                };
                bump(conn, video_id, d).await
            }
            _ => Ok(()),
        }
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
            ..
        } => {
            sqlx::query(
                "INSERT INTO videos (id, owner_id, file_key, content_type, file_size, caption,
                                     visibility, status, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'public', 'processing', $7, $7)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(owner_id)
            .bind(file_key)
            .bind(content_type)
            .bind(file_size as i64)
            .bind(caption.map(|c| c.into_inner()))
            .bind(requested_at)
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
        VideoEvent::Deleted { deleted_at } => {
            sqlx::query(
                "UPDATE videos SET status = 'deleted', listed = false, deleted_at = $2,
                                   updated_at = $2
                  WHERE id = $1",
            )
            .bind(id)
            .bind(deleted_at)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}
