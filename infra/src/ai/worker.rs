//! `lokiz worker`: runs AI jobs.
//!
//! A durable JetStream consumer (`ai-worker`, shared by every worker process)
//! delivers AiJob events; each `JobRequested` is one job. A worker takes the
//! job with `StartJob` (a lease), fetches the source video from the blob
//! store, runs the provider, and reports progress every tick — which also
//! renews the lease and is how a cancel reaches it: the aggregate refuses the
//! report, the worker cancels the provider (ffmpeg is killed). The outcome is
//! stored (blob), published as a video when the kind makes one, and recorded
//! with `CompleteJob` or `FailJob`; then the message is acked.
//!
//! A worker that dies leaves its message unacked: JetStream delivers it again
//! after the ack wait (the lease), and the next worker's `StartJob` succeeds
//! once the lease ran out (a new attempt), or, after the last attempt, the
//! job is failed as `WORKER_LOST`. While the lease is held the message is
//! put back with a delay, so no job stays in `processing` without a worker.
//!
//! All deliveries of a message are one message to JetStream: an ack from
//! any of them ends every one. So a worker acks only when the job needs
//! nothing more (it ended, or never can run). A worker whose attempt was
//! overtaken by a later one (its lease ran out while it was stalled) must
//! not ack: the later attempt's worker may die too, and only a redelivery
//! brings the job to a worker again. It puts the message back for a lease
//! instead (`Delivery::Later`), as when the lease is held.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use chrono::Utc;
use cqrs_es::AggregateError;
use futures::StreamExt;
use lokiz_domain::ai_job::{AiJobCommand, AiJobEvent, FailureCode, JobError, JobParams};
use lokiz_domain::values::VideoDimensions;
use lokiz_domain::video::{VideoCommand, VideoError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::provider::{JobInput, Provider, ProviderError};
use crate::blob::BlobStore;
use crate::event_store::EventStore;
use crate::process_manager::UNDECODABLE_PAUSE;
use crate::{Config, StoredEvent};

/// The durable consumer every worker shares.
pub const CONSUMER: &str = "ai-worker";

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How long a job is held without a sign of life (also JetStream's ack
    /// wait for job messages).
    pub lease: Duration,
    /// Progress reports, lease renewals and cancel checks.
    pub tick: Duration,
    /// Jobs run at once by this process.
    pub concurrency: usize,
    /// Names this worker in `JobStarted`.
    pub worker_id: String,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            tick: Duration::from_millis(500),
            concurrency: 2,
            worker_id: format!("{}-{}", hostname(), std::process::id()),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("JetStream: {0}")]
    JetStream(String),
}

pub struct Worker {
    pool: PgPool,
    js: jetstream::Context,
    config: Config,
    store: Arc<EventStore>,
    blobs: Arc<dyn BlobStore>,
    provider: Arc<dyn Provider>,
    options: WorkerOptions,
}

/// What happened to one delivery of a job.
enum Delivery {
    /// Finished with (or nothing left to do): ack.
    Done,
    /// Try again later: nak with this delay.
    Later(Duration),
}

impl Worker {
    pub fn new(
        pool: PgPool,
        js: jetstream::Context,
        config: Config,
        store: Arc<EventStore>,
        blobs: Arc<dyn BlobStore>,
        provider: Arc<dyn Provider>,
        options: WorkerOptions,
    ) -> Self {
        Self {
            pool,
            js,
            config,
            store,
            blobs,
            provider,
            options,
        }
    }

    async fn consumer(&self) -> Result<consumer::PullConsumer, WorkerError> {
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| WorkerError::JetStream(e.to_string()))?;
        stream
            .get_or_create_consumer(
                CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(CONSUMER.to_owned()),
                    filter_subject: format!(
                        "{}.{}.>",
                        self.config.subject_prefix(),
                        lokiz_domain::ai_job::AiJob::TYPE_NAME
                    ),
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_wait: self.options.lease,
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| WorkerError::JetStream(e.to_string()))
    }

    /// Runs jobs until `shutdown`; jobs running then are canceled locally and
    /// left unacked (another worker takes them once their lease runs out).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let consumer = loop {
            match self.consumer().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "worker: cannot create consumer; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(self.options.concurrency.max(1)));
        let mut running = tokio::task::JoinSet::new();
        tracing::info!(worker = %self.options.worker_id, provider = self.provider.name(), "AI worker running");
        loop {
            // A free slot first, then one message: nothing waits in a local
            // buffer while its ack wait (the lease) runs out, so a long queue
            // is not redelivered behind this worker's back.
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            while running.try_join_next().is_some() {}
            // waits up to `expires` for a message (`fetch` would not wait)
            let fetched = consumer
                .batch()
                .max_messages(1)
                .expires(Duration::from_secs(5))
                .messages()
                .await;
            let mut batch = match fetched {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "worker: fetch failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = batch.next() => m,
            };
            let msg = match next {
                None => continue, // nothing arrived before the fetch expired
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "worker: consumer error");
                    continue;
                }
                Some(Ok(m)) => m,
            };
            let event = match serde_json::from_slice::<StoredEvent>(&msg.payload) {
                Ok(e) if e.event_type == "JobRequested" => e,
                // progress and outcomes: nothing to run
                Ok(_) => {
                    let _ = msg.ack().await;
                    continue;
                }
                // not dropped: in a rolling deploy a newer worker reads it
                Err(e) => {
                    tracing::error!(error = %e, "worker: cannot decode the message; later");
                    let _ = msg.ack_with(AckKind::Nak(Some(UNDECODABLE_PAUSE))).await;
                    continue;
                }
            };
            let worker = self.clone();
            let token = shutdown.child_token();
            running.spawn(async move {
                let _permit = permit;
                let outcome = worker.handle(&event, &msg, &token).await;
                if token.is_cancelled() {
                    return; // shutting down: leave it for the next delivery
                }
                let ack = match outcome {
                    Delivery::Done => msg.ack().await,
                    Delivery::Later(delay) => msg.ack_with(AckKind::Nak(Some(delay))).await,
                };
                if let Err(e) = ack {
                    tracing::warn!(error = %e, "worker: ack failed");
                }
            });
        }
        running.shutdown().await;
        tracing::info!("AI worker stopped");
        Ok(())
    }

    /// One delivery of a `JobRequested`.
    async fn handle(
        &self,
        event: &StoredEvent,
        msg: &jetstream::Message,
        shutdown: &CancellationToken,
    ) -> Delivery {
        let Ok(job_id) = Uuid::parse_str(&event.aggregate_id) else {
            return Delivery::Done;
        };
        let Ok(AiJobEvent::JobRequested {
            owner_id,
            source_video_id,
            params,
            ..
        }) = event.decode::<AiJobEvent>()
        else {
            // a newer build's job, in a rolling deploy: a newer worker runs it
            tracing::error!(%job_id, "worker: JobRequested does not decode; later");
            return Delivery::Later(UNDECODABLE_PAUSE);
        };
        let id = job_id.to_string();
        let now = Utc::now();
        let started = self
            .store
            .ai_jobs
            .execute(
                &id,
                AiJobCommand::StartJob {
                    worker: self.options.worker_id.clone(),
                    lease_until: now + lease(&self.options),
                    at: now,
                },
                Default::default(),
            )
            .await;
        match started {
            Ok(_) => {}
            Err(AggregateError::UserError(JobError::AttemptsExhausted)) => {
                let failed = self
                    .fail(
                        &id,
                        None,
                        FailureCode::WorkerLost,
                        "the job's workers stopped answering",
                    )
                    .await;
                return failed;
            }
            Err(AggregateError::UserError(e)) => {
                // ended (ack), or held by a live attempt (look again later)
                tracing::debug!(%job_id, reason = %e, "worker: not started");
                return after_refusal(&e, self.options.lease);
            }
            Err(e) => {
                tracing::warn!(%job_id, error = %e, "worker: cannot start job; later");
                return Delivery::Later(Duration::from_secs(1));
            }
        }
        let attempt = match self.attempt(&id).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%job_id, error = %e, "worker: cannot read attempt; later");
                return Delivery::Later(self.options.lease);
            }
        };
        tracing::info!(%job_id, attempt, kind = params.kind().as_str(), "job started");
        let work_dir = self
            .config
            .data_dir
            .join("work")
            .join(format!("{job_id}-{attempt}"));
        let outcome = self
            .run_job(
                job_id,
                attempt,
                owner_id,
                source_video_id,
                &params,
                &work_dir,
                msg,
                shutdown,
            )
            .await;
        let _ = tokio::fs::remove_dir_all(&work_dir).await;
        outcome
    }

    /// The running attempt (the number of `JobStarted` so far).
    async fn attempt(&self, id: &str) -> Result<u32, sqlx::Error> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events
              WHERE aggregate_type = 'AiJob' AND aggregate_id = $1 AND event_type = 'JobStarted'",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_job(
        &self,
        job_id: Uuid,
        attempt: u32,
        owner_id: Uuid,
        source_video_id: Uuid,
        params: &JobParams,
        work_dir: &std::path::Path,
        msg: &jetstream::Message,
        shutdown: &CancellationToken,
    ) -> Delivery {
        let id = job_id.to_string();
        if let Err(e) = tokio::fs::create_dir_all(work_dir).await {
            tracing::warn!(%job_id, error = %e, "worker: no work directory");
            return Delivery::Later(self.options.lease);
        }
        // the source video
        let source_key: Option<String> = match sqlx::query_scalar(
            "SELECT file_key FROM videos WHERE id = $1 AND status = 'completed'",
        )
        .bind(source_video_id)
        .fetch_optional(&self.pool)
        .await
        {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(%job_id, error = %e, "worker: cannot look up the source");
                return Delivery::Later(Duration::from_secs(1));
            }
        };
        let source: PathBuf = work_dir.join("source");
        let fetched = match &source_key {
            Some(key) => self.blobs.download(key, &source).await,
            None => Ok(None),
        };
        match fetched {
            Ok(Some(_)) => {}
            Ok(None) => {
                return self
                    .fail(
                        &id,
                        Some(attempt),
                        FailureCode::SourceUnavailable,
                        "the source video is not available",
                    )
                    .await
            }
            Err(e) => {
                tracing::warn!(%job_id, error = %e, "worker: cannot fetch the source");
                return Delivery::Later(Duration::from_secs(1));
            }
        }

        // a remote provider fetches the source itself: a signed URL (the
        // video may be private), valid for as long as a job may run
        let source_url = source_key
            .as_deref()
            .map(|k| {
                self.blobs
                    .signed_url(k, Duration::from_secs(6 * 3600))
                    .unwrap_or_else(|_| self.blobs.object_url(k))
            })
            .unwrap_or_default();

        // run, with a ticker reporting progress (and hearing of cancels)
        let cancel = shutdown.child_token();
        let percent = Arc::new(AtomicU8::new(0));
        // ends with the job's refusal of a progress report, if it refused one
        let ticker = {
            let percent = percent.clone();
            let cancel = cancel.clone();
            let id = id.clone();
            async move {
                let mut every = tokio::time::interval(self.options.tick);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = every.tick() => {}
                    }
                    let _ = msg.ack_with(AckKind::Progress).await;
                    let now = Utc::now();
                    let report = self
                        .store
                        .ai_jobs
                        .execute(
                            &id,
                            AiJobCommand::ReportProgress {
                                attempt,
                                percent: percent.load(Ordering::Relaxed).min(99),
                                lease_until: now + lease(&self.options),
                                at: now,
                            },
                            Default::default(),
                        )
                        .await;
                    match report {
                        Ok(_) => {}
                        Err(AggregateError::UserError(e)) => {
                            tracing::info!(job_id = %id, reason = %e, "job stopped; canceling the provider");
                            cancel.cancel();
                            return Some(e);
                        }
                        Err(e) => tracing::warn!(job_id = %id, error = %e, "progress not recorded"),
                    }
                }
            }
        };
        let run = async {
            let mut on_progress = |p: u8| percent.store(p, Ordering::Relaxed);
            let input = JobInput {
                job_id,
                params,
                source: &source,
                source_url: &source_url,
                work_dir,
            };
            self.provider.run(input, &mut on_progress, &cancel).await
        };
        // the ticker cancels the run when the job stopped; the run's end
        // stops the ticker; the kind's wall-clock limit stops both
        let limit = self.config.jobs.time_limit(params.kind().as_str());
        let (result, refusal) = tokio::join!(
            async {
                let r = tokio::time::timeout(limit, run).await;
                cancel.cancel();
                r
            },
            ticker
        );
        let Ok(result) = result else {
            tracing::warn!(%job_id, ?limit, "job ran past its time limit; stopped");
            metrics::counter!("lokiz_ai_jobs_timed_out_total").increment(1);
            return self
                .fail(
                    &id,
                    Some(attempt),
                    FailureCode::TimedOut,
                    "the job ran past its time limit",
                )
                .await;
        };
        let output = match result {
            Ok(o) => o,
            // by the job's refusal, or by shutdown (then nothing is acked)
            Err(ProviderError::Canceled) => {
                return match refusal {
                    Some(e) => after_refusal(&e, self.options.lease),
                    None => Delivery::Done,
                };
            }
            Err(ProviderError::InvalidInput(m)) => {
                return self
                    .fail(&id, Some(attempt), FailureCode::SourceUnavailable, &m)
                    .await
            }
            Err(ProviderError::Failed(m)) => {
                tracing::warn!(%job_id, error = %m, "provider failed");
                return self
                    .fail(
                        &id,
                        Some(attempt),
                        FailureCode::ProviderError,
                        "the AI provider could not make this output",
                    )
                    .await;
            }
        };

        // store, publish, complete. A video-making job first fences out
        // cancels (`BeginPublish`): a cancel accepted before means no video
        let kind = params.kind();
        if kind.publishes_video() {
            let fenced = self
                .store
                .ai_jobs
                .execute(
                    &id,
                    AiJobCommand::BeginPublish {
                        attempt,
                        at: Utc::now(),
                    },
                    Default::default(),
                )
                .await;
            match fenced {
                Ok(_) => {}
                Err(AggregateError::UserError(e)) => {
                    tracing::info!(%job_id, reason = %e, "job stopped before publishing; output dropped");
                    return after_refusal(&e, self.options.lease);
                }
                Err(e) => {
                    tracing::warn!(%job_id, error = %e, "worker: cannot fence the publish");
                    return Delivery::Later(Duration::from_secs(1));
                }
            }
        }
        let ext = if output.content_type == "image/jpeg" {
            "jpg"
        } else {
            "mp4"
        };
        let key = format!("ai/{job_id}/result.{ext}");
        let size = match self
            .blobs
            .upload(&key, &output.path, output.content_type)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%job_id, error = %e, "worker: cannot store the output");
                return Delivery::Later(Duration::from_secs(1));
            }
        };
        let mut output_video_id = None;
        if kind.publishes_video() {
            // the video made by job X has id X: a retry finds it published
            let dims = VideoDimensions::parse(
                i64::from(output.info.width),
                i64::from(output.info.height),
                output.info.duration_secs,
            );
            let Ok(dimensions) = dims else {
                return self
                    .fail(
                        &id,
                        Some(attempt),
                        FailureCode::ProviderError,
                        "the output is not a usable video",
                    )
                    .await;
            };
            let published = self
                .store
                .videos
                .execute(
                    &id,
                    VideoCommand::PublishGlitch {
                        video_id: job_id,
                        owner_id,
                        source_video_id,
                        job_id,
                        file_key: key.clone(),
                        content_type: output.content_type.to_owned(),
                        file_size: size,
                        dimensions,
                        caption: None,
                        at: Utc::now(),
                    },
                    Default::default(),
                )
                .await;
            match published {
                Ok(_) | Err(AggregateError::UserError(VideoError::AlreadyRequested)) => {}
                Err(e) => {
                    tracing::warn!(%job_id, error = %e, "worker: cannot publish the output");
                    return Delivery::Later(Duration::from_secs(1));
                }
            }
            output_video_id = Some(job_id);
        }
        let completed = self
            .store
            .ai_jobs
            .execute(
                &id,
                AiJobCommand::CompleteJob {
                    attempt,
                    result_key: key,
                    output_video_id,
                    at: Utc::now(),
                },
                Default::default(),
            )
            .await;
        match completed {
            Ok(_) => {
                tracing::info!(%job_id, "job completed");
                Delivery::Done
            }
            // canceled meanwhile, or a later attempt owns it
            Err(AggregateError::UserError(e)) => after_refusal(&e, self.options.lease),
            Err(e) => {
                tracing::warn!(%job_id, error = %e, "worker: cannot record completion");
                Delivery::Later(Duration::from_secs(1))
            }
        }
    }

    async fn fail(
        &self,
        id: &str,
        attempt: Option<u32>,
        code: FailureCode,
        message: &str,
    ) -> Delivery {
        let failed = self
            .store
            .ai_jobs
            .execute(
                id,
                AiJobCommand::FailJob {
                    attempt,
                    code,
                    message: message.to_owned(),
                    at: Utc::now(),
                },
                Default::default(),
            )
            .await;
        match failed {
            Ok(_) => Delivery::Done,
            Err(AggregateError::UserError(e)) => after_refusal(&e, self.options.lease),
            Err(e) => {
                tracing::warn!(job_id = id, error = %e, "worker: cannot record failure");
                Delivery::Later(Duration::from_secs(1))
            }
        }
    }
}

/// What to do with the message when the job refused this attempt's
/// command: ack only when the job has ended (or never began); when another
/// attempt owns it, look again after a lease, in case that attempt's worker
/// dies too.
fn after_refusal(refusal: &JobError, lease: Duration) -> Delivery {
    match refusal {
        // the job ended, or never was: nothing can run it any more
        JobError::Finished
        | JobError::Canceled
        | JobError::NotFound
        | JobError::AlreadyRequested
        | JobError::NotOwner
        | JobError::AttemptsExhausted => Delivery::Done,
        // the job goes on, under another attempt (or not yet started)
        JobError::LeaseLost
        | JobError::LeaseHeld
        | JobError::NotRunning
        | JobError::BadProgress
        | JobError::Publishing => Delivery::Later(lease),
    }
}

fn lease(options: &WorkerOptions) -> chrono::Duration {
    chrono::Duration::from_std(options.lease).unwrap_or(chrono::Duration::seconds(30))
}
