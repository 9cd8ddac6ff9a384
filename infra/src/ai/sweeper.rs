//! The reservation sweeper: releases what a job request reserved when the
//! job itself was never recorded (the API process died, or its client hung
//! up, between `AdmitJob` and `RequestJob`).
//!
//! Every reservation (`CreditsReserved`, `FreeJobAdmitted`) older than
//! `LOKIZ_JOBS_ORPHAN_AFTER_SECS` is looked at once, in position order
//! (a cursor kept in memory; a restarted worker looks at them all again,
//! which is harmless). If its job id has a `JobRequested`, the credits saga
//! settles it when the job ends: nothing to do. Otherwise the sweeper first
//! closes the job id (`AbandonRequest` on the AiJob aggregate: refused once
//! the job is requested, so a request that was merely slow is never
//! refunded under a live job), then refunds or frees the slot (the Wallet
//! settles a job once, however often asked).

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::AggregateError;
use lokiz_domain::ai_job::{AiJob, AiJobCommand, JobError};
use lokiz_domain::wallet::{Wallet, WalletCommand};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::event_store::EventStore;

/// Reservations looked at per query.
const BATCH: i64 = 1_000;

pub struct ReservationSweeper {
    pool: PgPool,
    store: Arc<EventStore>,
    orphan_after: Duration,
    /// Every reservation at or below this position has been looked at.
    cursor: i64,
}

/// What one look at a reservation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swept {
    /// Its job was requested: the credits saga settles it.
    Live,
    /// Its job was never requested: released now.
    Released,
}

impl ReservationSweeper {
    pub fn new(pool: PgPool, store: Arc<EventStore>, orphan_after: Duration) -> Self {
        Self {
            pool,
            store,
            orphan_after,
            cursor: 0,
        }
    }

    /// Sweeps until `shutdown`, every half `orphan_after` (at most a minute).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let every =
            (self.orphan_after / 2).clamp(Duration::from_millis(200), Duration::from_secs(60));
        loop {
            match self.sweep_once().await {
                Ok(n) if n > 0 => {
                    tracing::info!(released = n, "reservation sweeper released orphans")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reservation sweep failed; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Looks at every reservation past the cursor and older than the
    /// horizon; returns how many it released.
    pub async fn sweep_once(&mut self) -> Result<u64, anyhow::Error> {
        let mut released = 0;
        loop {
            let rows: Vec<(i64, String, Option<String>, String)> = sqlx::query_as(
                "SELECT position, aggregate_id,
                        coalesce(payload->'CreditsReserved'->>'job_id',
                                 payload->'FreeJobAdmitted'->>'job_id'),
                        event_type
                   FROM events
                  WHERE position > $1
                    AND aggregate_type = $2
                    AND event_type IN ('CreditsReserved', 'FreeJobAdmitted')
                    AND recorded_at < now() - make_interval(secs => $3)
                  ORDER BY position
                  LIMIT $4",
            )
            .bind(self.cursor)
            .bind(Wallet::TYPE_NAME)
            .bind(self.orphan_after.as_secs_f64())
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            let done = (rows.len() as i64) < BATCH;
            for (position, user, job, kind) in rows {
                if let (Ok(user_id), Some(Ok(job_id))) =
                    (Uuid::parse_str(&user), job.as_deref().map(Uuid::parse_str))
                {
                    if self
                        .release(user_id, job_id, kind == "FreeJobAdmitted")
                        .await?
                        == Swept::Released
                    {
                        released += 1;
                    }
                }
                self.cursor = position;
            }
            if done {
                return Ok(released);
            }
        }
    }

    /// Releases the reservation of `job_id` unless the job was requested.
    pub async fn release(
        &self,
        user_id: Uuid,
        job_id: Uuid,
        free: bool,
    ) -> Result<Swept, anyhow::Error> {
        let requested: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events
                             WHERE aggregate_type = $1 AND aggregate_id = $2
                               AND event_type = 'JobRequested')",
        )
        .bind(AiJob::TYPE_NAME)
        .bind(job_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        if requested {
            return Ok(Swept::Live);
        }
        let at = chrono::Utc::now();
        let metadata = std::collections::HashMap::from([(
            "actor".to_owned(),
            "reservation-sweeper".to_owned(),
        )]);
        match self
            .store
            .ai_jobs
            .execute(
                &job_id.to_string(),
                AiJobCommand::AbandonRequest { at },
                metadata.clone(),
            )
            .await
        {
            Ok(_) => {}
            // requested a moment ago, after all
            Err(AggregateError::UserError(JobError::AlreadyRequested)) => return Ok(Swept::Live),
            Err(e) => return Err(anyhow::anyhow!("abandon {job_id}: {e}")),
        }
        let command = if free {
            WalletCommand::ReleaseFreeJob { job_id, at }
        } else {
            WalletCommand::RefundCredits { job_id, at }
        };
        let written = self
            .store
            .wallets
            .execute(&user_id.to_string(), command, metadata)
            .await
            .map_err(|e| anyhow::anyhow!("release {job_id}: {e}"))?;
        if written.appended {
            metrics::counter!("lokiz_reservations_swept_total").increment(1);
            tracing::warn!(%job_id, %user_id, free, "released the reservation of a job never recorded");
            Ok(Swept::Released)
        } else {
            // settled before (an earlier sweep that died after abandoning)
            Ok(Swept::Live)
        }
    }
}
