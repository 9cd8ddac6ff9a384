//! The file janitor (in the worker process): removes files nobody can use
//! any more, each once (`file_sweeps` remembers), and counts them in
//! `/metrics` (`lokiz_files_removed_total{reason}`):
//! - `expired_upload`: uploads never completed, `LOKIZ_UPLOAD_EXPIRY_SECS`
//!   (24 h) after they were requested — their upload URL is long expired;
//! - `expired_image_upload`: the same for images (`images` read model);
//! - `deleted_video`: the file and studio renders of a video deleted
//!   `LOKIZ_DELETED_FILES_GRACE_SECS` (72 h) ago — time to undo a mistake
//!   by hand, or to finish a takedown review.
//!
//! It reads the `videos` and `images` read models (a lagging projection only delays it)
//! and acts on the blob store; it writes no event and no read model.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::blob::BlobStore;

/// Videos handled per sweep query.
const BATCH: i64 = 500;

pub struct FileJanitor {
    pool: PgPool,
    blobs: Arc<dyn BlobStore>,
    upload_expiry: Duration,
    deleted_grace: Duration,
}

impl FileJanitor {
    pub fn new(
        pool: PgPool,
        blobs: Arc<dyn BlobStore>,
        upload_expiry: Duration,
        deleted_grace: Duration,
    ) -> Self {
        Self {
            pool,
            blobs,
            upload_expiry,
            deleted_grace,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let every = (self.upload_expiry.min(self.deleted_grace) / 2)
            .clamp(Duration::from_millis(500), Duration::from_secs(600));
        loop {
            match self.sweep_once().await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "file janitor removed files"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "file sweep failed; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One pass over both kinds; returns how many videos' files it removed.
    pub async fn sweep_once(&self) -> Result<u64, anyhow::Error> {
        let mut removed = 0;
        for (reason, query, horizon) in [
            (
                "expired_upload",
                "SELECT v.id, v.file_key FROM videos v
                  WHERE v.status = 'processing' AND v.created_at < now() - make_interval(secs => $1)
                    AND NOT EXISTS (SELECT 1 FROM file_sweeps s WHERE s.video_id = v.id)
                  LIMIT $2",
                self.upload_expiry,
            ),
            (
                "expired_image_upload",
                "SELECT i.id, i.file_key FROM images i
                  WHERE i.status = 'processing' AND i.created_at < now() - make_interval(secs => $1)
                    AND NOT EXISTS (SELECT 1 FROM file_sweeps s WHERE s.video_id = i.id)
                  LIMIT $2",
                self.upload_expiry,
            ),
            (
                "deleted_video",
                "SELECT v.id, v.file_key FROM videos v
                  WHERE v.status = 'deleted' AND v.deleted_at < now() - make_interval(secs => $1)
                    AND NOT EXISTS (SELECT 1 FROM file_sweeps s WHERE s.video_id = v.id)
                  LIMIT $2",
                self.deleted_grace,
            ),
        ] {
            let rows: Vec<(Uuid, String)> = sqlx::query_as(query)
                .bind(horizon.as_secs_f64())
                .bind(BATCH)
                .fetch_all(&self.pool)
                .await?;
            for (video_id, key) in rows {
                let completed = match reason {
                    "expired_upload" => {
                        self.completed_in_store(video_id, "Video", "UploadCompleted")
                            .await?
                    }
                    "expired_image_upload" => {
                        self.completed_in_store(video_id, "Image", "ImageUploadCompleted")
                            .await?
                    }
                    _ => false,
                };
                if completed {
                    // completed a moment ago; the read model has not caught up
                    continue;
                }
                self.blobs.delete(&key).await?;
                if reason == "deleted_video" {
                    self.remove_renders(video_id).await?;
                }
                sqlx::query(
                    "INSERT INTO file_sweeps (video_id, reason) VALUES ($1, $2)
                     ON CONFLICT (video_id) DO NOTHING",
                )
                .bind(video_id)
                .bind(reason)
                .execute(&self.pool)
                .await?;
                metrics::counter!("lokiz_files_removed_total", "reason" => reason).increment(1);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The store, not the (lagging) read model, says whether the upload was
    /// completed.
    async fn completed_in_store(
        &self,
        id: Uuid,
        aggregate_type: &str,
        completed: &str,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events
                             WHERE aggregate_type = $2 AND aggregate_id = $1
                               AND event_type = $3)",
        )
        .bind(id.to_string())
        .bind(aggregate_type)
        .bind(completed)
        .fetch_one(&self.pool)
        .await
    }

    /// The studio's renders of a video (`studio/<video>/…`).
    async fn remove_renders(&self, video_id: Uuid) -> Result<(), anyhow::Error> {
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT key FROM render_cache WHERE key LIKE $1")
                .bind(format!("studio/{video_id}/%"))
                .fetch_all(&self.pool)
                .await?;
        for key in keys {
            self.blobs.delete(&key).await?;
            sqlx::query("DELETE FROM render_cache WHERE key = $1")
                .bind(&key)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}
