//! `drafts`: each user's drafts (caption, parameters) and what became of
//! them. The list shows rows in `draft`; a published draft keeps the video
//! it became, a deleted one stays as `deleted`.

use async_trait::async_trait;
use lokiz_domain::draft::{Draft, DraftEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, uuid_id, ProjectionError, Projector};

pub struct DraftsProjector;

#[async_trait]
impl Projector for DraftsProjector {
    fn name(&self) -> &'static str {
        "drafts"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Draft::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["drafts"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let id = uuid_id(event)?;
        match decode::<DraftEvent>(event)? {
            DraftEvent::DraftSaved {
                owner_id,
                caption,
                params,
                saved_at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO drafts (id, owner_id, caption, params, status, created_at,
                                         updated_at)
                     VALUES ($1, $2, $3, $4, 'draft', $5, $5)
                     ON CONFLICT (id) DO UPDATE SET caption = EXCLUDED.caption,
                                                    params = EXCLUDED.params,
                                                    updated_at = EXCLUDED.updated_at",
                )
                .bind(id)
                .bind(owner_id)
                .bind(caption.into_inner())
                .bind(params.map(|p| p.into_value()))
                .bind(saved_at)
                .execute(conn)
                .await?;
            }
            DraftEvent::DraftDeleted { deleted_at, .. } => {
                sqlx::query("UPDATE drafts SET status = 'deleted', updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(deleted_at)
                    .execute(conn)
                    .await?;
            }
            DraftEvent::DraftPublished {
                video_id,
                published_at,
                ..
            } => {
                sqlx::query(
                    "UPDATE drafts SET status = 'published', video_id = $2, updated_at = $3
                      WHERE id = $1",
                )
                .bind(id)
                .bind(video_id)
                .bind(published_at)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}
