//! `comments`: comments and replies, with each comment's live reply count.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lokiz_domain::comment::{Comment, CommentEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

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

    /// Runs of new comments are inserted with one statement and their
    /// parents' reply counts raised with one more; edits and deletions are
    /// applied on their own, in order.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut run = Posted::default();
        for event in events {
            match decode::<CommentEvent>(event)? {
                CommentEvent::CommentPosted {
                    video_id,
                    author_id,
                    parent_id,
                    body,
                    posted_at,
                    ..
                } => {
                    run.ids.push(uuid_id(event)?);
                    run.videos.push(video_id);
                    run.authors.push(author_id);
                    run.parents.push(parent_id);
                    run.bodies.push(body.as_str().to_owned());
                    run.times.push(posted_at);
                }
                _ => {
                    run.write(conn).await?;
                    self.apply(conn, event).await?;
                }
            }
        }
        run.write(conn).await
    }
}

/// Comments posted in a row, as columns.
#[derive(Default)]
struct Posted {
    ids: Vec<Uuid>,
    videos: Vec<Uuid>,
    authors: Vec<Uuid>,
    parents: Vec<Option<Uuid>>,
    bodies: Vec<String>,
    times: Vec<DateTime<Utc>>,
}

impl Posted {
    /// Inserts the run (a comment already there is left as it is) and
    /// counts each reply inserted on its parent; empties the run.
    async fn write(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let run = std::mem::take(self);
        let parents: Vec<Option<Uuid>> = sqlx::query_scalar(
            "INSERT INTO comments (id, video_id, author_id, parent_id, body, created_at)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[],
                                  $6::timestamptz[])
             ON CONFLICT (id) DO NOTHING
             RETURNING parent_id",
        )
        .bind(&run.ids)
        .bind(&run.videos)
        .bind(&run.authors)
        .bind(&run.parents)
        .bind(&run.bodies)
        .bind(&run.times)
        .fetch_all(&mut *conn)
        .await?;
        let mut replies: HashMap<Uuid, i64> = HashMap::new();
        for parent in parents.into_iter().flatten() {
            *replies.entry(parent).or_default() += 1;
        }
        if !replies.is_empty() {
            let (ids, counts): (Vec<Uuid>, Vec<i64>) = replies.into_iter().unzip();
            sqlx::query(
                "UPDATE comments c SET reply_count = c.reply_count + r.n
                   FROM unnest($1::uuid[], $2::bigint[]) AS r(id, n)
                  WHERE c.id = r.id",
            )
            .bind(&ids)
            .bind(&counts)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}
