use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Role;
use crate::values::{Bio, DisplayName, Email, ImageUrl, ModerationReason, Username};

#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    RegisterUser {
        user_id: Uuid,
        username: Username,
        email: Email,
        display_name: DisplayName,
        at: DateTime<Utc>,
    },
    UpdateProfile {
        changes: ProfileChanges,
        at: DateTime<Utc>,
    },
    /// Operators only (`lokiz users grant-admin`); no HTTP route issues it.
    ChangeRole { role: Role, at: DateTime<Utc> },
    /// An admin bans the user: their tokens stop working and their videos
    /// leave every list.
    BanUser {
        admin_id: Uuid,
        reason: ModerationReason,
        at: DateTime<Utc>,
    },
    UnbanUser {
        admin_id: Uuid,
        reason: ModerationReason,
        at: DateTime<Utc>,
    },
}

/// What a profile update sets. `None` leaves a field alone; for the optional
/// fields `Some(None)` clears them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileChanges {
    pub display_name: Option<DisplayName>,
    pub bio: Option<Option<Bio>>,
    pub profile_image_url: Option<Option<ImageUrl>>,
}

impl ProfileChanges {
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none() && self.bio.is_none() && self.profile_image_url.is_none()
    }
}
