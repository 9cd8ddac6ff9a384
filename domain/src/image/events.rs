use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What an image is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImagePurpose {
    Profile,
    Thumbnail,
}

impl ImagePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePurpose::Profile => "profile",
            ImagePurpose::Thumbnail => "thumbnail",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "profile" => Some(ImagePurpose::Profile),
            "thumbnail" => Some(ImagePurpose::Thumbnail),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ImageEvent {
    UploadRequested {
        image_id: Uuid,
        owner_id: Uuid,
        purpose: ImagePurpose,
        file_key: String,
        content_type: String,
        file_size: u64,
        requested_at: DateTime<Utc>,
    },
    UploadCompleted {
        width: u32,
        height: u32,
        completed_at: DateTime<Utc>,
    },
}

impl DomainEvent for ImageEvent {
    fn event_type(&self) -> String {
        match self {
            ImageEvent::UploadRequested { .. } => "ImageUploadRequested",
            ImageEvent::UploadCompleted { .. } => "ImageUploadCompleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
