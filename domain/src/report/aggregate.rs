use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ReportCommand, ReportEvent};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// The open report, if any.
    open: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("this user already has an open report of this video")]
    AlreadyOpen { report_id: Uuid },
}

impl Report {
    pub const TYPE_NAME: &'static str = "Report";

    /// The aggregate id of `reporter_id` reporting `video_id`.
    pub fn id(reporter_id: Uuid, video_id: Uuid) -> String {
        format!("{reporter_id}:{video_id}")
    }
}

impl Aggregate for Report {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = ReportCommand;
    type Event = ReportEvent;
    type Error = ReportError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            ReportCommand::FileReport {
                report_id,
                reporter_id,
                video_id,
                reason,
                note,
                at,
            } => {
                if let Some(open) = self.open {
                    return Err(ReportError::AlreadyOpen { report_id: open });
                }
                let event = ReportEvent::ReportFiled {
                    report_id,
                    reporter_id,
                    video_id,
                    reason,
                    note,
                    filed_at: at,
                };
                sink.write(event, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ReportEvent::ReportFiled { report_id, .. } => self.open = Some(report_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ReportReason;
    use chrono::{TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    fn file(report: u128) -> ReportCommand {
        ReportCommand::FileReport {
            report_id: Uuid::from_u128(report),
            reporter_id: Uuid::from_u128(1),
            video_id: Uuid::from_u128(2),
            reason: ReportReason::Spam,
            note: Some("bot".into()),
            at: Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap(),
        }
    }

    fn filed(report: u128) -> ReportEvent {
        ReportEvent::ReportFiled {
            report_id: Uuid::from_u128(report),
            reporter_id: Uuid::from_u128(1),
            video_id: Uuid::from_u128(2),
            reason: ReportReason::Spam,
            note: Some("bot".into()),
            filed_at: Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap(),
        }
    }

    #[test]
    fn a_report_is_filed() {
        TestFramework::<Report>::with(())
            .given_no_previous_events()
            .when(file(9))
            .then_expect_events(vec![filed(9)]);
    }

    #[test]
    fn a_second_open_report_is_refused() {
        TestFramework::<Report>::with(())
            .given(vec![filed(9)])
            .when(file(10))
            .then_expect_error(ReportError::AlreadyOpen {
                report_id: Uuid::from_u128(9),
            });
    }

    #[test]
    fn reasons_parse_as_the_seed_lists_them() {
        for r in ReportReason::ALL {
            assert_eq!(ReportReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(ReportReason::parse("boring"), None);
    }
}
