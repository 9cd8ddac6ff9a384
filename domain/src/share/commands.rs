use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ShareChannel;

#[derive(Debug, Clone, PartialEq)]
pub enum ShareCommand {
    ShareVideo {
        user_id: Uuid,
        video_id: Uuid,
        channel: ShareChannel,
        at: DateTime<Utc>,
    },
}
