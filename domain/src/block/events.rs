use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BlockEvent {
    UserBlocked {
        blocker_id: Uuid,
        blocked_id: Uuid,
        blocked_at: DateTime<Utc>,
    },
    UserUnblocked {
        blocker_id: Uuid,
        blocked_id: Uuid,
        unblocked_at: DateTime<Utc>,
    },
}

impl DomainEvent for BlockEvent {
    fn event_type(&self) -> String {
        match self {
            BlockEvent::UserBlocked { .. } => "UserBlocked",
            BlockEvent::UserUnblocked { .. } => "UserUnblocked",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
