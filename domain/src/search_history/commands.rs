use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::values::SearchQuery;

#[derive(Debug, Clone, PartialEq)]
pub enum SearchHistoryCommand {
    /// Remember `query` as the newest search. `entry_id` names the entry when
    /// the text is new to the history (an entry for the same text keeps its id).
    RecordSearch {
        user_id: Uuid,
        entry_id: Uuid,
        query: SearchQuery,
        at: DateTime<Utc>,
    },
    DeleteSearch {
        entry_id: Uuid,
        at: DateTime<Utc>,
    },
    ClearHistory {
        at: DateTime<Utc>,
    },
}
