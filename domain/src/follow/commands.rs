use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub enum FollowCommand {
    FollowUser {
        follower_id: Uuid,
        followee_id: Uuid,
        at: DateTime<Utc>,
    },
    UnfollowUser {
        follower_id: Uuid,
        followee_id: Uuid,
        at: DateTime<Utc>,
    },
}
