use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ViewerKey;

#[derive(Debug, Clone, PartialEq)]
pub enum VideoViewCommand {
    CountView {
        video_id: Uuid,
        viewer: ViewerKey,
        /// The viewer owns the video (their views never count).
        viewer_is_owner: bool,
        at: DateTime<Utc>,
    },
}
