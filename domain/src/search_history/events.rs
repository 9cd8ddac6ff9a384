use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::SearchQuery;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SearchHistoryEvent {
    /// `query` is the newest entry (new, or moved up when `entry_id` was
    /// already in the history).
    SearchRecorded {
        user_id: Uuid,
        entry_id: Uuid,
        query: SearchQuery,
        searched_at: DateTime<Utc>,
    },
    /// Deleted by its owner.
    SearchDeleted {
        entry_id: Uuid,
        deleted_at: DateTime<Utc>,
    },
    /// Dropped because newer entries filled the history.
    SearchForgotten {
        entry_id: Uuid,
    },
    HistoryCleared {
        cleared_at: DateTime<Utc>,
    },
}

impl DomainEvent for SearchHistoryEvent {
    fn event_type(&self) -> String {
        match self {
            SearchHistoryEvent::SearchRecorded { .. } => "SearchRecorded",
            SearchHistoryEvent::SearchDeleted { .. } => "SearchDeleted",
            SearchHistoryEvent::SearchForgotten { .. } => "SearchForgotten",
            SearchHistoryEvent::HistoryCleared { .. } => "HistoryCleared",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
