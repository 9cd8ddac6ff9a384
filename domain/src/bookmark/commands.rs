use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub enum BookmarkCommand {
    BookmarkVideo {
        user_id: Uuid,
        video_id: Uuid,
        at: DateTime<Utc>,
    },
    RemoveBookmark {
        user_id: Uuid,
        video_id: Uuid,
        at: DateTime<Utc>,
    },
}
