use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{VideoViewCommand, VideoViewEvent};

/// A viewer counts again after this many hours.
pub const VIEW_WINDOW_HOURS: i64 = 24;

/// Who watched: `u:<user id>` for a signed-in user, `a:<hex>` for an
/// anonymous viewer, where `<hex>` is a salted hash of their address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ViewerKey(String);

impl ViewerKey {
    pub fn user(user_id: Uuid) -> Self {
        Self(format!("u:{user_id}"))
    }

    /// `salted_hash` must already be a one-way hash (hex), never an address.
    pub fn anonymous(salted_hash: &str) -> Self {
        Self(format!("a:{salted_hash}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VideoView {
    last_counted_at: Option<DateTime<Utc>>,
}

/// Counting can not fail: a view that does not count records nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoViewError {}

impl VideoView {
    pub const TYPE_NAME: &'static str = "VideoView";

    pub fn id(video_id: Uuid, viewer: &ViewerKey) -> String {
        format!("{video_id}:{}", viewer.as_str())
    }
}

impl Aggregate for VideoView {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = VideoViewCommand;
    type Event = VideoViewEvent;
    type Error = VideoViewError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            VideoViewCommand::CountView {
                video_id,
                viewer,
                viewer_is_owner,
                at,
            } => {
                if viewer_is_owner {
                    return Ok(());
                }
                let window = Duration::hours(VIEW_WINDOW_HOURS);
                if self.last_counted_at.is_some_and(|last| at - last < window) {
                    return Ok(());
                }
                let event = VideoViewEvent::ViewCounted {
                    video_id,
                    viewer,
                    counted_at: at,
                };
                sink.write(event, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            VideoViewEvent::ViewCounted { counted_at, .. } => {
                self.last_counted_at = Some(counted_at)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    const V: Uuid = Uuid::from_u128(7);

    fn t(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap() + Duration::hours(hours)
    }
    fn viewer() -> ViewerKey {
        ViewerKey::anonymous("9f86d081884c7d65")
    }
    fn count(at: DateTime<Utc>, viewer_is_owner: bool) -> VideoViewCommand {
        VideoViewCommand::CountView {
            video_id: V,
            viewer: viewer(),
            viewer_is_owner,
            at,
        }
    }
    fn counted(at: DateTime<Utc>) -> VideoViewEvent {
        VideoViewEvent::ViewCounted {
            video_id: V,
            viewer: viewer(),
            counted_at: at,
        }
    }

    #[test]
    fn first_view_counts() {
        TestFramework::<VideoView>::with(())
            .given_no_previous_events()
            .when(count(t(0), false))
            .then_expect_events(vec![counted(t(0))]);
    }

    #[test]
    fn owner_never_counts() {
        TestFramework::<VideoView>::with(())
            .given_no_previous_events()
            .when(count(t(0), true))
            .then_expect_events(vec![]);
    }

    #[test]
    fn once_per_24_hours() {
        TestFramework::<VideoView>::with(())
            .given(vec![counted(t(0))])
            .when(count(t(23), false))
            .then_expect_events(vec![]);
        TestFramework::<VideoView>::with(())
            .given(vec![counted(t(0))])
            .when(count(t(24), false))
            .then_expect_events(vec![counted(t(24))]);
    }

    #[test]
    fn keys() {
        assert_eq!(
            ViewerKey::user(Uuid::nil()).as_str(),
            format!("u:{}", Uuid::nil())
        );
        assert_eq!(
            VideoView::id(V, &viewer()),
            format!("{V}:a:9f86d081884c7d65")
        );
    }
}
