use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{LikeCommand, LikeEvent};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Like {
    liked: bool,
}

/// Liking can not fail: repeating a like or an unlike records nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LikeError {}

impl Like {
    pub const TYPE_NAME: &'static str = "Like";

    /// The aggregate id of `user_id` liking `video_id`.
    pub fn id(user_id: Uuid, video_id: Uuid) -> String {
        format!("{user_id}:{video_id}")
    }

    pub fn is_liked(&self) -> bool {
        self.liked
    }
}

impl Aggregate for Like {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = LikeCommand;
    type Event = LikeEvent;
    type Error = LikeError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            LikeCommand::LikeVideo {
                user_id,
                video_id,
                at,
            } => {
                if !self.liked {
                    let event = LikeEvent::VideoLiked {
                        user_id,
                        video_id,
                        liked_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
            LikeCommand::UnlikeVideo {
                user_id,
                video_id,
                at,
            } => {
                if self.liked {
                    let event = LikeEvent::VideoUnliked {
                        user_id,
                        video_id,
                        unliked_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.liked = matches!(event, LikeEvent::VideoLiked { .. });
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
    const U: Uuid = Uuid::from_u128(1);
    const V: Uuid = Uuid::from_u128(2);

    fn liked() -> LikeEvent {
        LikeEvent::VideoLiked {
            user_id: U,
            video_id: V,
            liked_at: at(),
        }
    }
    fn like() -> LikeCommand {
        LikeCommand::LikeVideo {
            user_id: U,
            video_id: V,
            at: at(),
        }
    }
    fn unlike() -> LikeCommand {
        LikeCommand::UnlikeVideo {
            user_id: U,
            video_id: V,
            at: at(),
        }
    }

    #[test]
    fn like_then_like_again_records_once() {
        TestFramework::<Like>::with(())
            .given_no_previous_events()
            .when(like())
            .then_expect_events(vec![liked()]);
        TestFramework::<Like>::with(())
            .given(vec![liked()])
            .when(like())
            .then_expect_events(vec![]);
    }

    #[test]
    fn unlike_only_what_is_liked() {
        TestFramework::<Like>::with(())
            .given(vec![liked()])
            .when(unlike())
            .then_expect_events(vec![LikeEvent::VideoUnliked {
                user_id: U,
                video_id: V,
                unliked_at: at(),
            }]);
        TestFramework::<Like>::with(())
            .given_no_previous_events()
            .when(unlike())
            .then_expect_events(vec![]);
    }

    #[test]
    fn ids_pair_user_and_video() {
        assert_eq!(
            Like::id(U, V),
            "00000000-0000-0000-0000-000000000001:00000000-0000-0000-0000-000000000002"
        );
    }
}
