use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AiJobCommand, AiJobEvent, JobKind, JobParams};

/// How many workers may take a job before it is failed as `WORKER_LOST`.
pub const MAX_ATTEMPTS: u32 = 3;
/// Progress is recorded when it rose by at least this many points…
const PROGRESS_STEP: u8 = 5;
/// …or rose at all and this long has passed since the last record.
const PROGRESS_INTERVAL: Duration = Duration::seconds(1);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Not requested (the aggregate has no events).
    #[default]
    None,
    Queued,
    Processing,
    Completed,
    Failed,
    Canceled,
    /// Never requested; its id is closed (`JobAbandoned`).
    Abandoned,
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled | JobStatus::Abandoned
        )
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AiJob {
    status: JobStatus,
    owner_id: Option<Uuid>,
    kind: Option<JobKind>,
    source_video_id: Option<Uuid>,
    params: Option<JobParams>,
    attempt: u32,
    lease_until: Option<DateTime<Utc>>,
    progress: u8,
    progress_at: Option<DateTime<Utc>>,
    /// The output is being published (`JobPublishing`): no cancel now.
    #[serde(default)]
    publishing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("this job was already requested")]
    AlreadyRequested,
    #[error("no such job")]
    NotFound,
    #[error("only the job's owner can do this")]
    NotOwner,
    #[error("the job has finished")]
    Finished,
    #[error("the job was canceled")]
    Canceled,
    #[error("another worker holds the job")]
    LeaseHeld,
    #[error("this worker's attempt is no longer the job's")]
    LeaseLost,
    #[error("the job is not running")]
    NotRunning,
    #[error("the job ran out of attempts")]
    AttemptsExhausted,
    #[error("progress must be 0..=100")]
    BadProgress,
    #[error("the job's output is being published")]
    Publishing,
}

impl AiJob {
    pub const TYPE_NAME: &'static str = "AiJob";

    pub fn status(&self) -> JobStatus {
        self.status
    }

    pub fn params(&self) -> Option<&JobParams> {
        self.params.as_ref()
    }

    pub fn owner_id(&self) -> Option<Uuid> {
        self.owner_id
    }

    pub fn source_video_id(&self) -> Option<Uuid> {
        self.source_video_id
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    fn refuse_terminal(&self) -> Result<(), JobError> {
        match self.status {
            JobStatus::None | JobStatus::Abandoned => Err(JobError::NotFound),
            JobStatus::Canceled => Err(JobError::Canceled),
            JobStatus::Completed | JobStatus::Failed => Err(JobError::Finished),
            JobStatus::Queued | JobStatus::Processing => Ok(()),
        }
    }

    /// The running attempt must be `attempt`.
    fn running(&self, attempt: u32) -> Result<(), JobError> {
        self.refuse_terminal()?;
        if self.status != JobStatus::Processing {
            return Err(JobError::NotRunning);
        }
        if self.attempt != attempt {
            return Err(JobError::LeaseLost);
        }
        Ok(())
    }
}

impl Aggregate for AiJob {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = AiJobCommand;
    type Event = AiJobEvent;
    type Error = JobError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            AiJobCommand::RequestJob {
                job_id: _,
                owner_id,
                source_video_id,
                params,
                at,
            } => {
                if self.status != JobStatus::None {
                    return Err(JobError::AlreadyRequested);
                }
                let kind = params.kind();
                AiJobEvent::JobRequested {
                    owner_id,
                    kind,
                    cost: kind.cost(),
                    source_video_id,
                    params,
                    requested_at: at,
                }
            }
            AiJobCommand::StartJob {
                worker,
                lease_until,
                at,
            } => {
                self.refuse_terminal()?;
                if self.status == JobStatus::Processing
                    && self.lease_until.is_some_and(|until| at < until)
                {
                    return Err(JobError::LeaseHeld);
                }
                if self.attempt >= MAX_ATTEMPTS {
                    return Err(JobError::AttemptsExhausted);
                }
                AiJobEvent::JobStarted {
                    attempt: self.attempt + 1,
                    worker,
                    lease_until,
                    started_at: at,
                }
            }
            AiJobCommand::ReportProgress {
                attempt,
                percent,
                lease_until,
                at,
            } => {
                if percent > 100 {
                    return Err(JobError::BadProgress);
                }
                self.running(attempt)?;
                let rose = percent > self.progress;
                let step = percent >= self.progress.saturating_add(PROGRESS_STEP);
                let waited = self
                    .progress_at
                    .is_none_or(|last| at - last >= PROGRESS_INTERVAL);
                // renew when less than half of the new lease's length is left
                let renew = self
                    .lease_until
                    .is_none_or(|until| (until - at) * 2 < lease_until - at);
                if !((rose && (step || waited)) || renew) {
                    return Ok(());
                }
                AiJobEvent::JobProgressed {
                    percent: percent.max(self.progress),
                    lease_until,
                    at,
                }
            }
            AiJobCommand::CompleteJob {
                attempt,
                result_key,
                output_video_id,
                at,
            } => {
                self.running(attempt)?;
                AiJobEvent::JobCompleted {
                    result_key,
                    output_video_id,
                    completed_at: at,
                }
            }
            AiJobCommand::FailJob {
                attempt,
                code,
                message,
                at,
            } => {
                match attempt {
                    Some(a) => self.running(a)?,
                    None => self.refuse_terminal()?,
                }
                AiJobEvent::JobFailed {
                    code,
                    message,
                    failed_at: at,
                }
            }
            AiJobCommand::CancelJob { actor, at } => {
                // a stranger learns nothing about the job, not even its state
                if self.status != JobStatus::None && self.owner_id != Some(actor) {
                    return Err(JobError::NotOwner);
                }
                self.refuse_terminal()?;
                if self.publishing {
                    return Err(JobError::Publishing);
                }
                AiJobEvent::JobCanceled { canceled_at: at }
            }
            AiJobCommand::BeginPublish { attempt, at } => {
                self.running(attempt)?;
                if self.publishing {
                    return Ok(());
                }
                AiJobEvent::JobPublishing {
                    attempt,
                    publishing_at: at,
                }
            }
            AiJobCommand::AbandonRequest { at } => match self.status {
                JobStatus::None => AiJobEvent::JobAbandoned { abandoned_at: at },
                JobStatus::Abandoned => return Ok(()),
                _ => return Err(JobError::AlreadyRequested),
            },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AiJobEvent::JobRequested {
                owner_id,
                kind,
                source_video_id,
                params,
                ..
            } => {
                self.status = JobStatus::Queued;
                self.owner_id = Some(owner_id);
                self.kind = Some(kind);
                self.source_video_id = Some(source_video_id);
                self.params = Some(params);
            }
            AiJobEvent::JobStarted {
                attempt,
                lease_until,
                started_at,
                ..
            } => {
                self.status = JobStatus::Processing;
                self.attempt = attempt;
                self.lease_until = Some(lease_until);
                self.progress = 0;
                self.progress_at = Some(started_at);
            }
            AiJobEvent::JobProgressed {
                percent,
                lease_until,
                at,
            } => {
                if percent > self.progress {
                    self.progress = percent;
                    self.progress_at = Some(at);
                }
                self.lease_until = Some(lease_until);
            }
            AiJobEvent::JobCompleted { .. } => {
                self.status = JobStatus::Completed;
                self.progress = 100;
            }
            AiJobEvent::JobFailed { .. } => self.status = JobStatus::Failed,
            AiJobEvent::JobCanceled { .. } => self.status = JobStatus::Canceled,
            AiJobEvent::JobAbandoned { .. } => self.status = JobStatus::Abandoned,
            AiJobEvent::JobPublishing { .. } => self.publishing = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai_job::FailureCode;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    type JobTest = TestFramework<AiJob>;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap() + Duration::seconds(secs)
    }
    fn owner() -> Uuid {
        Uuid::from_u128(1)
    }
    fn video() -> Uuid {
        Uuid::from_u128(2)
    }
    fn params() -> JobParams {
        JobParams::GlitchAnimate {
            start_secs: 0.0,
            end_secs: 2.0,
            preset: "rgb-split".into(),
        }
    }
    fn requested() -> AiJobEvent {
        AiJobEvent::JobRequested {
            owner_id: owner(),
            kind: JobKind::GlitchAnimate,
            cost: 30,
            source_video_id: video(),
            params: params(),
            requested_at: t(0),
        }
    }
    fn started(attempt: u32, at: i64) -> AiJobEvent {
        AiJobEvent::JobStarted {
            attempt,
            worker: "w".into(),
            lease_until: t(at + 30),
            started_at: t(at),
        }
    }
    fn start(at: i64) -> AiJobCommand {
        AiJobCommand::StartJob {
            worker: "w".into(),
            lease_until: t(at + 30),
            at: t(at),
        }
    }
    fn progress(attempt: u32, percent: u8, at: i64) -> AiJobCommand {
        AiJobCommand::ReportProgress {
            attempt,
            percent,
            lease_until: t(at + 30),
            at: t(at),
        }
    }
    fn progressed(percent: u8, at: i64) -> AiJobEvent {
        AiJobEvent::JobProgressed {
            percent,
            lease_until: t(at + 30),
            at: t(at),
        }
    }
    fn completed() -> AiJobEvent {
        AiJobEvent::JobCompleted {
            result_key: "r".into(),
            output_video_id: None,
            completed_at: t(5),
        }
    }
    fn complete(attempt: u32) -> AiJobCommand {
        AiJobCommand::CompleteJob {
            attempt,
            result_key: "r".into(),
            output_video_id: None,
            at: t(5),
        }
    }
    fn fail(attempt: Option<u32>) -> AiJobCommand {
        AiJobCommand::FailJob {
            attempt,
            code: FailureCode::ProviderError,
            message: "boom".into(),
            at: t(5),
        }
    }
    fn failed() -> AiJobEvent {
        AiJobEvent::JobFailed {
            code: FailureCode::ProviderError,
            message: "boom".into(),
            failed_at: t(5),
        }
    }
    fn cancel(actor: Uuid) -> AiJobCommand {
        AiJobCommand::CancelJob { actor, at: t(3) }
    }

    #[test]
    fn request_records_kind_and_cost() {
        JobTest::with(())
            .given_no_previous_events()
            .when(AiJobCommand::RequestJob {
                job_id: Uuid::from_u128(9),
                owner_id: owner(),
                source_video_id: video(),
                params: params(),
                at: t(0),
            })
            .then_expect_events(vec![requested()]);
    }

    fn abandoned() -> AiJobEvent {
        AiJobEvent::JobAbandoned { abandoned_at: t(9) }
    }

    #[test]
    fn an_unrequested_job_is_abandoned_once_and_never_requested_after() {
        JobTest::with(())
            .given_no_previous_events()
            .when(AiJobCommand::AbandonRequest { at: t(9) })
            .then_expect_events(vec![abandoned()]);
        JobTest::with(())
            .given(vec![abandoned()])
            .when(AiJobCommand::AbandonRequest { at: t(9) })
            .then_expect_events(vec![]);
        JobTest::with(())
            .given(vec![abandoned()])
            .when(AiJobCommand::RequestJob {
                job_id: Uuid::from_u128(9),
                owner_id: owner(),
                source_video_id: video(),
                params: params(),
                at: t(0),
            })
            .then_expect_error(JobError::AlreadyRequested);
        JobTest::with(())
            .given(vec![abandoned()])
            .when(cancel(owner()))
            .then_expect_error(JobError::NotOwner);
    }

    fn publishing(attempt: u32) -> AiJobEvent {
        AiJobEvent::JobPublishing {
            attempt,
            publishing_at: t(4),
        }
    }

    #[test]
    fn publishing_fences_out_cancel_and_cancel_fences_out_publishing() {
        let running = vec![requested(), started(1, 1)];
        JobTest::with(())
            .given(running.clone())
            .when(AiJobCommand::BeginPublish {
                attempt: 1,
                at: t(4),
            })
            .then_expect_events(vec![publishing(1)]);
        let mut publishing_now = running.clone();
        publishing_now.push(publishing(1));
        JobTest::with(())
            .given(publishing_now.clone())
            .when(AiJobCommand::BeginPublish {
                attempt: 1,
                at: t(4),
            })
            .then_expect_events(vec![]);
        JobTest::with(())
            .given(publishing_now)
            .when(cancel(owner()))
            .then_expect_error(JobError::Publishing);
        let mut canceled = running;
        canceled.push(AiJobEvent::JobCanceled { canceled_at: t(3) });
        JobTest::with(())
            .given(canceled)
            .when(AiJobCommand::BeginPublish {
                attempt: 1,
                at: t(4),
            })
            .then_expect_error(JobError::Canceled);
    }

    #[test]
    fn a_requested_job_is_not_abandoned() {
        JobTest::with(())
            .given(vec![requested()])
            .when(AiJobCommand::AbandonRequest { at: t(9) })
            .then_expect_error(JobError::AlreadyRequested);
    }

    #[test]
    fn request_twice_is_refused() {
        JobTest::with(())
            .given(vec![requested()])
            .when(AiJobCommand::RequestJob {
                job_id: Uuid::from_u128(9),
                owner_id: owner(),
                source_video_id: video(),
                params: params(),
                at: t(0),
            })
            .then_expect_error(JobError::AlreadyRequested);
    }

    #[test]
    fn start_takes_a_queued_job_as_attempt_one() {
        JobTest::with(())
            .given(vec![requested()])
            .when(start(1))
            .then_expect_events(vec![started(1, 1)]);
    }

    #[test]
    fn start_of_an_unknown_job_is_refused() {
        JobTest::with(())
            .given_no_previous_events()
            .when(start(1))
            .then_expect_error(JobError::NotFound);
    }

    #[test]
    fn start_while_another_worker_holds_the_lease_is_refused() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1)])
            .when(start(10))
            .then_expect_error(JobError::LeaseHeld);
    }

    #[test]
    fn start_after_the_lease_ran_out_is_a_new_attempt() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1)])
            .when(start(40))
            .then_expect_events(vec![started(2, 40)]);
    }

    #[test]
    fn start_after_the_last_attempt_is_refused() {
        JobTest::with(())
            .given(vec![
                requested(),
                started(1, 1),
                started(2, 40),
                started(3, 80),
            ])
            .when(start(200))
            .then_expect_error(JobError::AttemptsExhausted);
    }

    #[test]
    fn start_of_a_canceled_job_is_refused() {
        JobTest::with(())
            .given(vec![
                requested(),
                AiJobEvent::JobCanceled { canceled_at: t(1) },
            ])
            .when(start(2))
            .then_expect_error(JobError::Canceled);
    }

    #[test]
    fn progress_is_recorded_every_five_points() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1)])
            .when(progress(1, 5, 1))
            .then_expect_events(vec![progressed(5, 1)]);
    }

    #[test]
    fn small_quick_progress_is_coalesced_away() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1), progressed(5, 1)])
            .when(progress(1, 7, 1))
            .then_expect_events(vec![]);
    }

    #[test]
    fn small_progress_after_a_second_is_recorded() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1), progressed(5, 1)])
            .when(progress(1, 7, 3))
            .then_expect_events(vec![progressed(7, 3)]);
    }

    #[test]
    fn unchanged_progress_renews_a_lease_running_out() {
        // lease until t(31); at t(25) 6 s are left of a 30 s lease
        JobTest::with(())
            .given(vec![requested(), started(1, 1), progressed(5, 1)])
            .when(progress(1, 5, 25))
            .then_expect_events(vec![progressed(5, 25)]);
    }

    #[test]
    fn progress_above_100_is_refused() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1)])
            .when(progress(1, 101, 2))
            .then_expect_error(JobError::BadProgress);
    }

    #[test]
    fn progress_of_a_canceled_job_is_refused_so_the_worker_stops() {
        JobTest::with(())
            .given(vec![
                requested(),
                started(1, 1),
                AiJobEvent::JobCanceled { canceled_at: t(2) },
            ])
            .when(progress(1, 50, 3))
            .then_expect_error(JobError::Canceled);
    }

    #[test]
    fn progress_from_a_superseded_attempt_is_refused() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1), started(2, 40)])
            .when(progress(1, 50, 41))
            .then_expect_error(JobError::LeaseLost);
    }

    #[test]
    fn progress_of_a_queued_job_is_refused() {
        JobTest::with(())
            .given(vec![requested()])
            .when(progress(1, 50, 41))
            .then_expect_error(JobError::NotRunning);
    }

    #[test]
    fn complete_records_the_result() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1)])
            .when(complete(1))
            .then_expect_events(vec![completed()]);
    }

    #[test]
    fn complete_twice_is_refused() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1), completed()])
            .when(complete(1))
            .then_expect_error(JobError::Finished);
    }

    #[test]
    fn fail_by_the_running_attempt() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1)])
            .when(fail(Some(1)))
            .then_expect_events(vec![failed()]);
    }

    #[test]
    fn fail_without_an_attempt_fails_a_queued_job() {
        JobTest::with(())
            .given(vec![requested()])
            .when(fail(None))
            .then_expect_events(vec![failed()]);
    }

    #[test]
    fn fail_after_cancel_is_refused() {
        JobTest::with(())
            .given(vec![
                requested(),
                AiJobEvent::JobCanceled { canceled_at: t(1) },
            ])
            .when(fail(None))
            .then_expect_error(JobError::Canceled);
    }

    #[test]
    fn cancel_by_the_owner() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1)])
            .when(cancel(owner()))
            .then_expect_events(vec![AiJobEvent::JobCanceled { canceled_at: t(3) }]);
    }

    #[test]
    fn cancel_by_someone_else_is_refused() {
        JobTest::with(())
            .given(vec![requested()])
            .when(cancel(Uuid::from_u128(77)))
            .then_expect_error(JobError::NotOwner);
    }

    #[test]
    fn cancel_of_someone_elses_finished_job_is_not_owner() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1), completed()])
            .when(cancel(Uuid::from_u128(77)))
            .then_expect_error(JobError::NotOwner);
    }

    #[test]
    fn cancel_of_a_finished_job_is_refused() {
        JobTest::with(())
            .given(vec![requested(), started(1, 1), completed()])
            .when(cancel(owner()))
            .then_expect_error(JobError::Finished);
    }

    #[test]
    fn costs_follow_the_spec() {
        assert_eq!(JobKind::CaptureFrame.cost(), 0);
        assert_eq!(JobKind::Template.cost(), 20);
        assert_eq!(JobKind::GlitchAnimate.cost(), 30);
        assert_eq!(JobKind::GlitchReplace.cost(), 30);
        assert_eq!(JobKind::Music.cost(), 5);
    }
}
