use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{Bio, DisplayName, Email, ImageUrl, ModerationReason, Username};

/// What a user may do beyond their own content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    Member,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

/// `Registered` is at version 2.0 (it gained `role`); version-1.0 events in the
/// store are read through [`crate::upcast`], never rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    Registered {
        user_id: Uuid,
        username: Username,
        email: Email,
        display_name: DisplayName,
        role: Role,
        registered_at: DateTime<Utc>,
    },
    /// Only the fields that changed are present; `bio`/`profile_image_url`
    /// present as `null` mean "cleared".
    ProfileUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<DisplayName>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "double_option"
        )]
        bio: Option<Option<Bio>>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "double_option"
        )]
        profile_image_url: Option<Option<ImageUrl>>,
        updated_at: DateTime<Utc>,
    },
    RoleChanged {
        role: Role,
        changed_at: DateTime<Utc>,
    },
    Banned {
        admin_id: Uuid,
        reason: ModerationReason,
        banned_at: DateTime<Utc>,
    },
    Unbanned {
        admin_id: Uuid,
        reason: ModerationReason,
        unbanned_at: DateTime<Utc>,
    },
}

/// The version `Registered` is written at.
pub const REGISTERED_VERSION: &str = "2.0";

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::Registered { .. } => "Registered",
            UserEvent::ProfileUpdated { .. } => "ProfileUpdated",
            UserEvent::RoleChanged { .. } => "RoleChanged",
            UserEvent::Banned { .. } => "Banned",
            UserEvent::Unbanned { .. } => "Unbanned",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            UserEvent::Registered { .. } => REGISTERED_VERSION,
            _ => "1.0",
        }
        .to_owned()
    }
}

/// Distinguishes an absent field from an explicit `null`.
pub mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}
