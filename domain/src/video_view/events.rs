use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ViewerKey;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VideoViewEvent {
    ViewCounted {
        video_id: Uuid,
        viewer: ViewerKey,
        counted_at: DateTime<Utc>,
    },
}

impl DomainEvent for VideoViewEvent {
    fn event_type(&self) -> String {
        "ViewCounted".to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
