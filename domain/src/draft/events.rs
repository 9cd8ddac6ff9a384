use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::values::{Caption, FieldError};

/// The editor's parameters of a draft: a JSON object of at most
/// [`DraftParams::MAX_BYTES`] bytes (serialized). LOKIZ stores them and
/// hands them back; it does not interpret them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DraftParams(Map<String, Value>);

impl DraftParams {
    pub const MAX_BYTES: usize = 16 * 1024;

    pub fn parse(field: &'static str, raw: &Value) -> Result<Self, FieldError> {
        let Value::Object(map) = raw else {
            return Err(FieldError::new(field, "type", "must be a JSON object"));
        };
        let size = serde_json::to_vec(raw)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size > Self::MAX_BYTES {
            return Err(FieldError::new(
                field,
                "too_large",
                format!(
                    "must be at most {} bytes as JSON ({size} sent)",
                    Self::MAX_BYTES
                ),
            ));
        }
        Ok(Self(map.clone()))
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DraftEvent {
    /// Created (the first) or replaced (later ones).
    DraftSaved {
        draft_id: Uuid,
        owner_id: Uuid,
        caption: Caption,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<DraftParams>,
        saved_at: DateTime<Utc>,
    },
    DraftDeleted {
        owner_id: Uuid,
        deleted_at: DateTime<Utc>,
    },
    DraftPublished {
        owner_id: Uuid,
        video_id: Uuid,
        published_at: DateTime<Utc>,
    },
}

impl DomainEvent for DraftEvent {
    fn event_type(&self) -> String {
        match self {
            DraftEvent::DraftSaved { .. } => "DraftSaved",
            DraftEvent::DraftDeleted { .. } => "DraftDeleted",
            DraftEvent::DraftPublished { .. } => "DraftPublished",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
