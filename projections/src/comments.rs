//! `comments`: comments and replies, with each comment's live reply count.

use async_trait::async_trait;
use lokiz_domain::comment::{Comment, CommentEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, keys_from_fields, uuid_id, ProjectionError, Projector};

pub struct CommentsProjector;

#[async_trait]
impl Projector for CommentsProjector {
    fn name(&self) -> &'static str {
        "comments"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Comment::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["comments"]
    }

    /// A reply changes its parent's reply count.
    fn entity_keys(&self, event: &StoredEvent) -> Vec<String> {
        keys_from_fields(event, &[("parent_id", Comment::TYPE_NAME)])
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let id = uuid_id(event)?;
        match decode::<CommentEvent>(event)? {
            CommentEvent::CommentPosted {
                video_id,
                author_id,
                parent_id,
                body,
                posted_at,
                ..
            } => {
                let inserted = sqlx::query(
                    "INSERT INTO comments (id, video_id, author_id, parent_id, body, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(video_id)
                .bind(author_id)
                .bind(parent_id)
                .bind(body.as_str())
                .bind(posted_at)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if let (1, Some(parent)) = (inserted, parent_id) {
                    sqlx::query("UPDATE comments SET reply_count = reply_count + 1 WHERE id = $1")
                        .bind(parent)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            CommentEvent::CommentEdited { body, edited_at } => {
                sqlx::query("UPDATE comments SET body = $2, edited_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(body.as_str())
                    .bind(edited_at)
                    .execute(&mut *conn)
                    .await?;
            }
            CommentEvent::CommentDeleted {
                parent_id,
                deleted_at,
                ..
            } => {
                let deleted = sqlx::query(
                    "UPDATE comments SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .bind(deleted_at)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if let (1, Some(parent)) = (deleted, parent_id) {
                    sqlx::query("UPDATE comments SET reply_count = reply_count - 1 WHERE id = $1")
                        .bind(parent)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        Ok(())
    }
}
