//! `reports`: users' reports of videos, for moderation.

use async_trait::async_trait;
use lokiz_domain::report::{Report, ReportEvent};
use lokiz_domain::video::{Video, VideoEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, keys_from_fields, uuid_id, ProjectionError, Projector};

pub struct ReportsProjector;

#[async_trait]
impl Projector for ReportsProjector {
    fn name(&self) -> &'static str {
        "reports"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Report::TYPE_NAME, Video::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["reports"]
    }

    /// A report and its video's removal meet on the video.
    fn entity_keys(&self, event: &StoredEvent) -> Vec<String> {
        keys_from_fields(event, &[("video_id", Video::TYPE_NAME)])
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        if event.aggregate_type == Video::TYPE_NAME {
            // an admin's removal of a video resolves its open reports
            if let VideoEvent::Removed {
                admin_id,
                removed_at,
                ..
            } = decode::<VideoEvent>(event)?
            {
                sqlx::query(
                    "UPDATE reports SET status = 'resolved', resolved_at = $2, resolved_by = $3
                      WHERE video_id = $1 AND status = 'open'",
                )
                .bind(uuid_id(event)?)
                .bind(removed_at)
                .bind(admin_id)
                .execute(conn)
                .await?;
            }
            return Ok(());
        }
        match decode::<ReportEvent>(event)? {
            ReportEvent::ReportFiled {
                report_id,
                reporter_id,
                video_id,
                reason,
                note,
                filed_at,
            } => {
                sqlx::query(
                    "INSERT INTO reports (id, reporter_id, video_id, reason, note, status, created_at)
                     VALUES ($1, $2, $3, $4, $5, 'open', $6)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(report_id)
                .bind(reporter_id)
                .bind(video_id)
                .bind(reason.as_str())
                .bind(note)
                .bind(filed_at)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}
