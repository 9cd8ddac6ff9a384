//! `reports`: users' reports of videos, for moderation.

use async_trait::async_trait;
use lokiz_domain::report::{Report, ReportEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, ProjectionError, Projector};

pub struct ReportsProjector;

#[async_trait]
impl Projector for ReportsProjector {
    fn name(&self) -> &'static str {
        "reports"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Report::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["reports"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
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
