use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LikeEvent {
    VideoLiked {
        user_id: Uuid,
        video_id: Uuid,
        liked_at: DateTime<Utc>,
    },
    VideoUnliked {
        user_id: Uuid,
        video_id: Uuid,
        unliked_at: DateTime<Utc>,
    },
}

impl DomainEvent for LikeEvent {
    fn event_type(&self) -> String {
        match self {
            LikeEvent::VideoLiked { .. } => "VideoLiked",
            LikeEvent::VideoUnliked { .. } => "VideoUnliked",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
