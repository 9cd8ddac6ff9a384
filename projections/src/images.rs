//! `images`: every uploaded image (profile pictures, thumbnails), its
//! owner, purpose and whether its upload completed.

use async_trait::async_trait;
use lokiz_domain::image::{Image, ImageEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, uuid_id, ProjectionError, Projector};

pub struct ImagesProjector;

#[async_trait]
impl Projector for ImagesProjector {
    fn name(&self) -> &'static str {
        "images"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Image::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["images"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let id = uuid_id(event)?;
        match decode::<ImageEvent>(event)? {
            ImageEvent::UploadRequested {
                owner_id,
                purpose,
                file_key,
                content_type,
                file_size,
                requested_at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO images (id, owner_id, purpose, file_key, content_type, file_size,
                                         status, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, 'processing', $7)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(owner_id)
                .bind(purpose.as_str())
                .bind(file_key)
                .bind(content_type)
                .bind(file_size as i64)
                .bind(requested_at)
                .execute(conn)
                .await?;
            }
            ImageEvent::UploadCompleted {
                width,
                height,
                completed_at,
            } => {
                sqlx::query(
                    "UPDATE images SET status = 'completed', width = $2, height = $3,
                                       completed_at = $4
                      WHERE id = $1",
                )
                .bind(id)
                .bind(width as i32)
                .bind(height as i32)
                .bind(completed_at)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}
