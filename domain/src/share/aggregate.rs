use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ShareChannel, ShareCommand, ShareEvent};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Share {
    channels: BTreeSet<ShareChannel>,
}

/// Sharing can not fail: sharing to a channel again records nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {}

impl Share {
    pub const TYPE_NAME: &'static str = "Share";

    /// The aggregate id of `user_id`'s shares of `video_id`.
    pub fn id(user_id: Uuid, video_id: Uuid) -> String {
        format!("{user_id}:{video_id}")
    }
}

impl Aggregate for Share {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = ShareCommand;
    type Event = ShareEvent;
    type Error = ShareError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            ShareCommand::ShareVideo {
                user_id,
                video_id,
                channel,
                at,
            } => {
                if !self.channels.contains(&channel) {
                    let event = ShareEvent::VideoShared {
                        user_id,
                        video_id,
                        channel,
                        shared_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ShareEvent::VideoShared { channel, .. } => {
                self.channels.insert(channel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }
    const U: Uuid = Uuid::from_u128(1);
    const V: Uuid = Uuid::from_u128(2);

    fn share(channel: ShareChannel) -> ShareCommand {
        ShareCommand::ShareVideo {
            user_id: U,
            video_id: V,
            channel,
            at: at(),
        }
    }
    fn shared(channel: ShareChannel) -> ShareEvent {
        ShareEvent::VideoShared {
            user_id: U,
            video_id: V,
            channel,
            shared_at: at(),
        }
    }

    #[test]
    fn a_channel_counts_once_per_user_and_video() {
        TestFramework::<Share>::with(())
            .given_no_previous_events()
            .when(share(ShareChannel::Kakao))
            .then_expect_events(vec![shared(ShareChannel::Kakao)]);
        TestFramework::<Share>::with(())
            .given(vec![shared(ShareChannel::Kakao)])
            .when(share(ShareChannel::Kakao))
            .then_expect_events(vec![]);
    }

    #[test]
    fn another_channel_counts() {
        TestFramework::<Share>::with(())
            .given(vec![shared(ShareChannel::Kakao)])
            .when(share(ShareChannel::Link))
            .then_expect_events(vec![shared(ShareChannel::Link)]);
    }

    #[test]
    fn channels_parse_from_their_names() {
        for c in ShareChannel::ALL {
            assert_eq!(ShareChannel::parse(c.as_str()), Some(c));
        }
        assert_eq!(ShareChannel::parse("myspace"), None);
    }
}
