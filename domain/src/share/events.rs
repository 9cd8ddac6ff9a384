use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a video was shared to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareChannel {
    /// The link, copied.
    Link,
    Kakao,
    Instagram,
    Facebook,
    X,
    Line,
    Whatsapp,
    Telegram,
    Email,
    Sms,
    Other,
}

impl ShareChannel {
    pub const ALL: [ShareChannel; 11] = [
        ShareChannel::Link,
        ShareChannel::Kakao,
        ShareChannel::Instagram,
        ShareChannel::Facebook,
        ShareChannel::X,
        ShareChannel::Line,
        ShareChannel::Whatsapp,
        ShareChannel::Telegram,
        ShareChannel::Email,
        ShareChannel::Sms,
        ShareChannel::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ShareChannel::Link => "link",
            ShareChannel::Kakao => "kakao",
            ShareChannel::Instagram => "instagram",
            ShareChannel::Facebook => "facebook",
            ShareChannel::X => "x",
            ShareChannel::Line => "line",
            ShareChannel::Whatsapp => "whatsapp",
            ShareChannel::Telegram => "telegram",
            ShareChannel::Email => "email",
            ShareChannel::Sms => "sms",
            ShareChannel::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShareEvent {
    VideoShared {
        user_id: Uuid,
        video_id: Uuid,
        channel: ShareChannel,
        shared_at: DateTime<Utc>,
    },
}

impl DomainEvent for ShareEvent {
    fn event_type(&self) -> String {
        match self {
            ShareEvent::VideoShared { .. } => "VideoShared",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
