use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub enum LikeCommand {
    LikeVideo {
        user_id: Uuid,
        video_id: Uuid,
        at: DateTime<Utc>,
    },
    UnlikeVideo {
        user_id: Uuid,
        video_id: Uuid,
        at: DateTime<Utc>,
    },
}
