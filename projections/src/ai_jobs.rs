//! `ai_jobs`: each AI job's status, progress and outcome, as its owner polls
//! it (`GET /v1/ai/jobs/{id}`, `POST /v1/ai/jobs/batch-status`).

use async_trait::async_trait;
use lokiz_domain::ai_job::{AiJob, AiJobEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, uuid_id, ProjectionError, Projector};

pub struct AiJobsProjector;

#[async_trait]
impl Projector for AiJobsProjector {
    fn name(&self) -> &'static str {
        "ai_jobs"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[AiJob::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["ai_jobs"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let id = uuid_id(event)?;
        let query = match decode::<AiJobEvent>(event)? {
            AiJobEvent::JobRequested {
                owner_id,
                kind,
                cost,
                source_video_id,
                params,
                requested_at,
            } => sqlx::query(
                "INSERT INTO ai_jobs (id, owner_id, kind, status, cost, source_video_id, params,
                                      created_at, updated_at)
                 VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $7)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(owner_id)
            .bind(kind.as_str())
            .bind(cost)
            .bind(source_video_id)
            .bind(sqlx::types::Json(params))
            .bind(requested_at),
            AiJobEvent::JobStarted {
                attempt,
                started_at,
                ..
            } => sqlx::query(
                "UPDATE ai_jobs SET status = 'processing', attempt = $2, progress = 0,
                        started_at = coalesce(started_at, $3), updated_at = $3
                  WHERE id = $1",
            )
            .bind(id)
            .bind(attempt as i32)
            .bind(started_at),
            AiJobEvent::JobProgressed { percent, at, .. } => sqlx::query(
                "UPDATE ai_jobs SET progress = greatest(progress, $2), updated_at = $3
                  WHERE id = $1",
            )
            .bind(id)
            .bind(i16::from(percent))
            .bind(at),
            AiJobEvent::JobCompleted {
                result_key,
                output_video_id,
                completed_at,
            } => sqlx::query(
                "UPDATE ai_jobs SET status = 'completed', progress = 100, result_key = $2,
                        output_video_id = $3, finished_at = $4, updated_at = $4
                  WHERE id = $1",
            )
            .bind(id)
            .bind(result_key)
            .bind(output_video_id)
            .bind(completed_at),
            AiJobEvent::JobFailed {
                code,
                message,
                failed_at,
            } => sqlx::query(
                "UPDATE ai_jobs SET status = 'failed', error_code = $2, error_message = $3,
                        finished_at = $4, updated_at = $4
                  WHERE id = $1",
            )
            .bind(id)
            .bind(code.as_str())
            .bind(message)
            .bind(failed_at),
            AiJobEvent::JobCanceled { canceled_at } => sqlx::query(
                "UPDATE ai_jobs SET status = 'canceled', finished_at = $2, updated_at = $2
                  WHERE id = $1",
            )
            .bind(id)
            .bind(canceled_at),
            // never requested: no row
            AiJobEvent::JobAbandoned { .. } => return Ok(()),
            // still processing, as far as readers are concerned
            AiJobEvent::JobPublishing { .. } => return Ok(()),
        };
        query.execute(conn).await?;
        Ok(())
    }
}
