use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::DraftParams;
use crate::values::Caption;

#[derive(Debug, Clone, PartialEq)]
pub enum DraftCommand {
    /// Creates the draft (`create`: the id is new), or replaces the caption
    /// and parameters of an existing one.
    SaveDraft {
        draft_id: Uuid,
        owner_id: Uuid,
        caption: Caption,
        params: Option<DraftParams>,
        create: bool,
        at: DateTime<Utc>,
    },
    DeleteDraft {
        actor: Uuid,
        at: DateTime<Utc>,
    },
    /// The upload of `video_id`, made from this draft, completed. Issued
    /// again for the same video it records nothing (a retried completion).
    PublishDraft {
        actor: Uuid,
        video_id: Uuid,
        at: DateTime<Utc>,
    },
}
