use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::NotificationSettings;

#[derive(Debug, Clone, PartialEq)]
pub enum NotificationInboxCommand {
    /// Marks these notifications read (the API passes only the caller's
    /// unread ones).
    MarkRead {
        user_id: Uuid,
        notification_ids: Vec<Uuid>,
        at: DateTime<Utc>,
    },
    /// Marks every notification the user has so far read.
    MarkAllRead { user_id: Uuid, at: DateTime<Utc> },
    /// Replaces the per-kind settings.
    ChangeSettings {
        user_id: Uuid,
        settings: NotificationSettings,
        at: DateTime<Utc>,
    },
}
