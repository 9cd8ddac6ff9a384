use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{Caption, ModerationReason, VideoDimensions, Visibility};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VideoEvent {
    UploadRequested {
        video_id: Uuid,
        owner_id: Uuid,
        file_key: String,
        content_type: String,
        file_size: u64,
        caption: Option<Caption>,
        requested_at: DateTime<Utc>,
        /// The draft this upload publishes once it completes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        draft_id: Option<Uuid>,
    },
    UploadCompleted {
        dimensions: VideoDimensions,
        completed_at: DateTime<Utc>,
    },
    /// The video appears in feeds from now on (when public).
    Published {
        published_at: DateTime<Utc>,
    },
    MetadataUpdated {
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::user::double_option"
        )]
        caption: Option<Option<Caption>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visibility: Option<Visibility>,
        updated_at: DateTime<Utc>,
    },
    Deleted {
        deleted_at: DateTime<Utc>,
    },
    /// Taken down by an admin, for `reason`.
    Removed {
        admin_id: Uuid,
        reason: ModerationReason,
        removed_at: DateTime<Utc>,
    },
    /// This video was made by AI job `job_id` from `source_video_id`.
    GlitchedFrom {
        source_video_id: Uuid,
        job_id: Uuid,
        glitched_at: DateTime<Utc>,
    },
}

impl DomainEvent for VideoEvent {
    fn event_type(&self) -> String {
        match self {
            VideoEvent::UploadRequested { .. } => "UploadRequested",
            VideoEvent::UploadCompleted { .. } => "UploadCompleted",
            VideoEvent::Published { .. } => "Published",
            VideoEvent::MetadataUpdated { .. } => "MetadataUpdated",
            VideoEvent::Deleted { .. } => "Deleted",
            VideoEvent::GlitchedFrom { .. } => "GlitchedFrom",
            VideoEvent::Removed { .. } => "Removed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
