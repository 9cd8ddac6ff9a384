use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::CommentBody;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommentEvent {
    CommentPosted {
        comment_id: Uuid,
        video_id: Uuid,
        author_id: Uuid,
        parent_id: Option<Uuid>,
        body: CommentBody,
        posted_at: DateTime<Utc>,
    },
    CommentEdited {
        body: CommentBody,
        edited_at: DateTime<Utc>,
    },
    CommentDeleted {
        video_id: Uuid,
        parent_id: Option<Uuid>,
        deleted_by: Uuid,
        deleted_at: DateTime<Utc>,
    },
}

impl DomainEvent for CommentEvent {
    fn event_type(&self) -> String {
        match self {
            CommentEvent::CommentPosted { .. } => "CommentPosted",
            CommentEvent::CommentEdited { .. } => "CommentEdited",
            CommentEvent::CommentDeleted { .. } => "CommentDeleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
