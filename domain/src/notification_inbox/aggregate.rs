use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    NotificationInboxCommand, NotificationInboxEvent, NotificationKind, NotificationSettings,
};

/// The most notifications one `MarkRead` may name (the seed's batch limit).
pub const MARK_READ_MAX: usize = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NotificationInbox {
    settings: NotificationSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationInboxError {
    #[error("at most {MARK_READ_MAX} notifications at once")]
    TooMany,
}

impl NotificationInbox {
    pub const TYPE_NAME: &'static str = "NotificationInbox";

    pub fn id(user_id: Uuid) -> String {
        user_id.to_string()
    }

    /// Every kind with its setting (on unless turned off).
    pub fn settings(&self) -> NotificationSettings {
        complete(&self.settings)
    }
}

fn complete(settings: &NotificationSettings) -> NotificationSettings {
    NotificationKind::ALL
        .into_iter()
        .map(|k| (k, settings.get(&k).copied().unwrap_or(true)))
        .collect()
}

impl Aggregate for NotificationInbox {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = NotificationInboxCommand;
    type Event = NotificationInboxEvent;
    type Error = NotificationInboxError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            NotificationInboxCommand::MarkRead {
                user_id,
                mut notification_ids,
                at,
            } => {
                if notification_ids.len() > MARK_READ_MAX {
                    return Err(NotificationInboxError::TooMany);
                }
                notification_ids.sort();
                notification_ids.dedup();
                if !notification_ids.is_empty() {
                    let event = NotificationInboxEvent::NotificationsRead {
                        user_id,
                        notification_ids,
                        read_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
            NotificationInboxCommand::MarkAllRead { user_id, at } => {
                let event = NotificationInboxEvent::AllNotificationsRead {
                    user_id,
                    read_at: at,
                };
                sink.write(event, self).await;
            }
            NotificationInboxCommand::ChangeSettings {
                user_id,
                settings,
                at,
            } => {
                let mut next = self.settings();
                next.extend(settings);
                if next != self.settings() {
                    let event = NotificationInboxEvent::NotificationSettingsChanged {
                        user_id,
                        settings: next,
                        changed_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        if let NotificationInboxEvent::NotificationSettingsChanged { settings, .. } = event {
            self.settings = settings;
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
    const N1: Uuid = Uuid::from_u128(10);
    const N2: Uuid = Uuid::from_u128(11);

    #[test]
    fn mark_read_records_the_ids_once_each() {
        TestFramework::<NotificationInbox>::with(())
            .given_no_previous_events()
            .when(NotificationInboxCommand::MarkRead {
                user_id: U,
                notification_ids: vec![N2, N1, N2],
                at: at(),
            })
            .then_expect_events(vec![NotificationInboxEvent::NotificationsRead {
                user_id: U,
                notification_ids: vec![N1, N2],
                read_at: at(),
            }]);
    }

    #[test]
    fn mark_read_of_nothing_records_nothing() {
        TestFramework::<NotificationInbox>::with(())
            .given_no_previous_events()
            .when(NotificationInboxCommand::MarkRead {
                user_id: U,
                notification_ids: vec![],
                at: at(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn mark_read_of_more_than_the_batch_limit_is_refused() {
        TestFramework::<NotificationInbox>::with(())
            .given_no_previous_events()
            .when(NotificationInboxCommand::MarkRead {
                user_id: U,
                notification_ids: (0..=MARK_READ_MAX as u128).map(Uuid::from_u128).collect(),
                at: at(),
            })
            .then_expect_error(NotificationInboxError::TooMany);
    }

    #[test]
    fn mark_all_read_is_recorded() {
        TestFramework::<NotificationInbox>::with(())
            .given_no_previous_events()
            .when(NotificationInboxCommand::MarkAllRead {
                user_id: U,
                at: at(),
            })
            .then_expect_events(vec![NotificationInboxEvent::AllNotificationsRead {
                user_id: U,
                read_at: at(),
            }]);
    }

    fn likes_off() -> NotificationInboxEvent {
        let mut settings = complete(&NotificationSettings::new());
        settings.insert(NotificationKind::Like, false);
        NotificationInboxEvent::NotificationSettingsChanged {
            user_id: U,
            settings,
            changed_at: at(),
        }
    }

    #[test]
    fn settings_change_records_every_kind() {
        TestFramework::<NotificationInbox>::with(())
            .given_no_previous_events()
            .when(NotificationInboxCommand::ChangeSettings {
                user_id: U,
                settings: NotificationSettings::from([(NotificationKind::Like, false)]),
                at: at(),
            })
            .then_expect_events(vec![likes_off()]);
    }

    #[test]
    fn settings_that_change_nothing_record_nothing() {
        TestFramework::<NotificationInbox>::with(())
            .given(vec![likes_off()])
            .when(NotificationInboxCommand::ChangeSettings {
                user_id: U,
                settings: NotificationSettings::from([
                    (NotificationKind::Like, false),
                    (NotificationKind::Follow, true),
                ]),
                at: at(),
            })
            .then_expect_events(vec![]);
        TestFramework::<NotificationInbox>::with(())
            .given_no_previous_events()
            .when(NotificationInboxCommand::ChangeSettings {
                user_id: U,
                settings: NotificationSettings::from([(NotificationKind::Like, true)]),
                at: at(),
            })
            .then_expect_events(vec![]);
    }
}
