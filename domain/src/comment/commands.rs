use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::values::CommentBody;

#[derive(Debug, Clone, PartialEq)]
pub enum CommentCommand {
    PostComment {
        comment_id: Uuid,
        video_id: Uuid,
        author_id: Uuid,
        /// The comment this replies to (same video; checked by the caller).
        parent_id: Option<Uuid>,
        body: CommentBody,
        at: DateTime<Utc>,
    },
    EditComment {
        actor: Uuid,
        body: CommentBody,
        at: DateTime<Utc>,
    },
    DeleteComment {
        actor: Uuid,
        /// The actor owns the video the comment is on.
        actor_owns_video: bool,
        at: DateTime<Utc>,
    },
}
