use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ReportReason;

#[derive(Debug, Clone, PartialEq)]
pub enum ReportCommand {
    FileReport {
        report_id: Uuid,
        reporter_id: Uuid,
        video_id: Uuid,
        reason: ReportReason,
        /// At most 500 characters (checked by the API).
        note: Option<String>,
        at: DateTime<Utc>,
    },
}
