use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FollowEvent {
    UserFollowed {
        follower_id: Uuid,
        followee_id: Uuid,
        followed_at: DateTime<Utc>,
    },
    UserUnfollowed {
        follower_id: Uuid,
        followee_id: Uuid,
        unfollowed_at: DateTime<Utc>,
    },
}

impl DomainEvent for FollowEvent {
    fn event_type(&self) -> String {
        match self {
            FollowEvent::UserFollowed { .. } => "UserFollowed",
            FollowEvent::UserUnfollowed { .. } => "UserUnfollowed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
