//! `bookmarks`: which user saved which video (private to that user).

use async_trait::async_trait;
use lokiz_domain::bookmark::{Bookmark, BookmarkEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, ProjectionError, Projector};

pub struct BookmarksProjector;

#[async_trait]
impl Projector for BookmarksProjector {
    fn name(&self) -> &'static str {
        "bookmarks"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Bookmark::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["bookmarks"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match decode::<BookmarkEvent>(event)? {
            BookmarkEvent::VideoBookmarked {
                user_id,
                video_id,
                bookmarked_at,
            } => {
                sqlx::query(
                    "INSERT INTO bookmarks (user_id, video_id, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(user_id)
                .bind(video_id)
                .bind(bookmarked_at)
                .execute(conn)
                .await?;
            }
            BookmarkEvent::BookmarkRemoved {
                user_id, video_id, ..
            } => {
                sqlx::query("DELETE FROM bookmarks WHERE user_id = $1 AND video_id = $2")
                    .bind(user_id)
                    .bind(video_id)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}
