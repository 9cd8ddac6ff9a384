use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ImagePurpose;

#[derive(Debug, Clone, PartialEq)]
pub enum ImageCommand {
    /// A user asked for an upload URL.
    RequestUpload {
        image_id: Uuid,
        owner_id: Uuid,
        purpose: ImagePurpose,
        file_key: String,
        content_type: String,
        file_size: u64,
        at: DateTime<Utc>,
    },
    /// The owner reports the upload finished; `stored_size` is what the blob
    /// store holds (`None`: nothing yet), `width`×`height` what ffprobe found
    /// in it (the caller checked it is an image of the declared type).
    CompleteUpload {
        actor: Uuid,
        width: u32,
        height: u32,
        stored_size: Option<u64>,
        at: DateTime<Utc>,
    },
}
