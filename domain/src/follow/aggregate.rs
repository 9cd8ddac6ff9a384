use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{FollowCommand, FollowEvent};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Follow {
    following: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    #[error("you cannot follow yourself")]
    CannotFollowSelf,
}

impl Follow {
    pub const TYPE_NAME: &'static str = "Follow";

    pub fn id(follower_id: Uuid, followee_id: Uuid) -> String {
        format!("{follower_id}:{followee_id}")
    }
}

impl Aggregate for Follow {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = FollowCommand;
    type Event = FollowEvent;
    type Error = FollowError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            FollowCommand::FollowUser {
                follower_id,
                followee_id,
                at,
            } => {
                if follower_id == followee_id {
                    return Err(FollowError::CannotFollowSelf);
                }
                if !self.following {
                    let event = FollowEvent::UserFollowed {
                        follower_id,
                        followee_id,
                        followed_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
            FollowCommand::UnfollowUser {
                follower_id,
                followee_id,
                at,
            } => {
                if self.following {
                    let event = FollowEvent::UserUnfollowed {
                        follower_id,
                        followee_id,
                        unfollowed_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.following = matches!(event, FollowEvent::UserFollowed { .. });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }
    const A: Uuid = Uuid::from_u128(1);
    const B: Uuid = Uuid::from_u128(2);

    fn followed() -> FollowEvent {
        FollowEvent::UserFollowed {
            follower_id: A,
            followee_id: B,
            followed_at: at(),
        }
    }
    fn follow(followee_id: Uuid) -> FollowCommand {
        FollowCommand::FollowUser {
            follower_id: A,
            followee_id,
            at: at(),
        }
    }
    fn unfollow() -> FollowCommand {
        FollowCommand::UnfollowUser {
            follower_id: A,
            followee_id: B,
            at: at(),
        }
    }

    #[test]
    fn follow_once() {
        TestFramework::<Follow>::with(())
            .given_no_previous_events()
            .when(follow(B))
            .then_expect_events(vec![followed()]);
        TestFramework::<Follow>::with(())
            .given(vec![followed()])
            .when(follow(B))
            .then_expect_events(vec![]);
    }

    #[test]
    fn no_self_follow() {
        TestFramework::<Follow>::with(())
            .given_no_previous_events()
            .when(follow(A))
            .then_expect_error(FollowError::CannotFollowSelf);
    }

    #[test]
    fn unfollow_only_when_following() {
        TestFramework::<Follow>::with(())
            .given(vec![followed()])
            .when(unfollow())
            .then_expect_events(vec![FollowEvent::UserUnfollowed {
                follower_id: A,
                followee_id: B,
                unfollowed_at: at(),
            }]);
        TestFramework::<Follow>::with(())
            .given_no_previous_events()
            .when(unfollow())
            .then_expect_events(vec![]);
    }
}
