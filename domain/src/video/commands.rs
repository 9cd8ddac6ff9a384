use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::values::{Caption, ModerationReason, VideoDimensions, Visibility};

#[derive(Debug, Clone, PartialEq)]
pub enum VideoCommand {
    /// A user asked for an upload URL: the video exists from now on, in
    /// `processing`.
    RequestUpload {
        video_id: Uuid,
        owner_id: Uuid,
        file_key: String,
        content_type: String,
        file_size: u64,
        caption: Option<Caption>,
        /// The caller's draft this upload publishes once it completes.
        draft_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
    /// The owner reports the upload finished. `stored_size` is what the blob
    /// store holds under the file key (`None`: nothing there yet); the
    /// caller looks it up, the aggregate decides.
    CompleteUpload {
        actor: Uuid,
        dimensions: VideoDimensions,
        stored_size: Option<u64>,
        at: DateTime<Utc>,
    },
    UpdateMetadata {
        actor: Uuid,
        caption: Option<Option<Caption>>,
        visibility: Option<Visibility>,
        at: DateTime<Utc>,
    },
    DeleteVideo {
        actor: Uuid,
        at: DateTime<Utc>,
    },
    /// An admin takes the video down (its reports are resolved with it).
    RemoveVideo {
        admin_id: Uuid,
        reason: ModerationReason,
        at: DateTime<Utc>,
    },
    /// An AI job's output becomes a published video of the job's owner,
    /// glitched from the job's source video. The worker issues it after the
    /// file is stored.
    PublishGlitch {
        video_id: Uuid,
        owner_id: Uuid,
        source_video_id: Uuid,
        job_id: Uuid,
        file_key: String,
        content_type: String,
        file_size: u64,
        dimensions: VideoDimensions,
        caption: Option<Caption>,
        at: DateTime<Utc>,
    },
}
