use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a video is reported (the seed's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportReason {
    Inappropriate,
    Spam,
    Copyright,
    Violence,
    Other,
}

impl ReportReason {
    pub const ALL: [ReportReason; 5] = [
        ReportReason::Inappropriate,
        ReportReason::Spam,
        ReportReason::Copyright,
        ReportReason::Violence,
        ReportReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportReason::Inappropriate => "inappropriate",
            ReportReason::Spam => "spam",
            ReportReason::Copyright => "copyright",
            ReportReason::Violence => "violence",
            ReportReason::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReportEvent {
    ReportFiled {
        report_id: Uuid,
        reporter_id: Uuid,
        video_id: Uuid,
        reason: ReportReason,
        note: Option<String>,
        filed_at: DateTime<Utc>,
    },
}

impl DomainEvent for ReportEvent {
    fn event_type(&self) -> String {
        match self {
            ReportEvent::ReportFiled { .. } => "ReportFiled",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
