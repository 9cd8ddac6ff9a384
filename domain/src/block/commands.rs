use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub enum BlockCommand {
    BlockUser {
        blocker_id: Uuid,
        blocked_id: Uuid,
        at: DateTime<Utc>,
    },
    UnblockUser {
        blocker_id: Uuid,
        blocked_id: Uuid,
        at: DateTime<Utc>,
    },
}
