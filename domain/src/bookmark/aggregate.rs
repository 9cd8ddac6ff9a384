use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{BookmarkCommand, BookmarkEvent};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bookmark {
    bookmarked: bool,
}

/// Bookmarking can not fail: repeating either records nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookmarkError {}

impl Bookmark {
    pub const TYPE_NAME: &'static str = "Bookmark";

    /// The aggregate id of `user_id` bookmarking `video_id`.
    pub fn id(user_id: Uuid, video_id: Uuid) -> String {
        format!("{user_id}:{video_id}")
    }

    pub fn is_bookmarked(&self) -> bool {
        self.bookmarked
    }
}

impl Aggregate for Bookmark {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = BookmarkCommand;
    type Event = BookmarkEvent;
    type Error = BookmarkError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            BookmarkCommand::BookmarkVideo {
                user_id,
                video_id,
                at,
            } => {
                if !self.bookmarked {
                    let event = BookmarkEvent::VideoBookmarked {
                        user_id,
                        video_id,
                        bookmarked_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
            BookmarkCommand::RemoveBookmark {
                user_id,
                video_id,
                at,
            } => {
                if self.bookmarked {
                    let event = BookmarkEvent::BookmarkRemoved {
                        user_id,
                        video_id,
                        unbookmarked_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.bookmarked = matches!(event, BookmarkEvent::VideoBookmarked { .. });
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

    fn bookmarked() -> BookmarkEvent {
        BookmarkEvent::VideoBookmarked {
            user_id: U,
            video_id: V,
            bookmarked_at: at(),
        }
    }
    fn bookmark() -> BookmarkCommand {
        BookmarkCommand::BookmarkVideo {
            user_id: U,
            video_id: V,
            at: at(),
        }
    }
    fn remove() -> BookmarkCommand {
        BookmarkCommand::RemoveBookmark {
            user_id: U,
            video_id: V,
            at: at(),
        }
    }

    #[test]
    fn bookmark_then_bookmark_again_records_once() {
        TestFramework::<Bookmark>::with(())
            .given_no_previous_events()
            .when(bookmark())
            .then_expect_events(vec![bookmarked()]);
        TestFramework::<Bookmark>::with(())
            .given(vec![bookmarked()])
            .when(bookmark())
            .then_expect_events(vec![]);
    }

    #[test]
    fn remove_only_what_is_bookmarked() {
        TestFramework::<Bookmark>::with(())
            .given(vec![bookmarked()])
            .when(remove())
            .then_expect_events(vec![BookmarkEvent::BookmarkRemoved {
                user_id: U,
                video_id: V,
                unbookmarked_at: at(),
            }]);
        TestFramework::<Bookmark>::with(())
            .given_no_previous_events()
            .when(remove())
            .then_expect_events(vec![]);
    }

    #[test]
    fn ids_pair_user_and_video() {
        assert_eq!(
            Bookmark::id(U, V),
            "00000000-0000-0000-0000-000000000001:00000000-0000-0000-0000-000000000002"
        );
    }
}
