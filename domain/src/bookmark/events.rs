use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BookmarkEvent {
    VideoBookmarked {
        user_id: Uuid,
        video_id: Uuid,
        bookmarked_at: DateTime<Utc>,
    },
    BookmarkRemoved {
        user_id: Uuid,
        video_id: Uuid,
        unbookmarked_at: DateTime<Utc>,
    },
}

impl DomainEvent for BookmarkEvent {
    fn event_type(&self) -> String {
        match self {
            BookmarkEvent::VideoBookmarked { .. } => "VideoBookmarked",
            BookmarkEvent::BookmarkRemoved { .. } => "BookmarkRemoved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
