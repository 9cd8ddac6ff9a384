use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Someone liked your video (coalesced per video while unread).
    Like,
    /// Someone commented on your video.
    Comment,
    /// Someone replied to your comment.
    Reply,
    /// Someone followed you.
    Follow,
    /// Someone glitched your video.
    Glitch,
    /// One of your AI jobs finished (completed or failed).
    AiJob,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 6] = [
        NotificationKind::Like,
        NotificationKind::Comment,
        NotificationKind::Reply,
        NotificationKind::Follow,
        NotificationKind::Glitch,
        NotificationKind::AiJob,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Like => "like",
            NotificationKind::Comment => "comment",
            NotificationKind::Reply => "reply",
            NotificationKind::Follow => "follow",
            NotificationKind::Glitch => "glitch",
            NotificationKind::AiJob => "ai_job",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Per kind: on (true) or off. A kind not named is on.
pub type NotificationSettings = BTreeMap<NotificationKind, bool>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NotificationInboxEvent {
    NotificationsRead {
        user_id: Uuid,
        notification_ids: Vec<Uuid>,
        read_at: DateTime<Utc>,
    },
    AllNotificationsRead {
        user_id: Uuid,
        read_at: DateTime<Utc>,
    },
    NotificationSettingsChanged {
        user_id: Uuid,
        /// Every kind, after the change.
        settings: NotificationSettings,
        changed_at: DateTime<Utc>,
    },
}

impl DomainEvent for NotificationInboxEvent {
    fn event_type(&self) -> String {
        match self {
            NotificationInboxEvent::NotificationsRead { .. } => "NotificationsRead",
            NotificationInboxEvent::AllNotificationsRead { .. } => "AllNotificationsRead",
            NotificationInboxEvent::NotificationSettingsChanged { .. } => {
                "NotificationSettingsChanged"
            }
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
