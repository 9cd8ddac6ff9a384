use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{Role, UserCommand, UserEvent};
use crate::values::{Bio, DisplayName, ImageUrl};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct User {
    registered: bool,
    display_name: Option<DisplayName>,
    bio: Option<Bio>,
    profile_image_url: Option<ImageUrl>,
    /// Absent from snapshots written before roles existed.
    #[serde(default)]
    role: Role,
    #[serde(default)]
    banned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user is already registered")]
    AlreadyRegistered,
    #[error("user is not registered")]
    NotRegistered,
    #[error("an admin cannot be banned")]
    CannotBanAdmin,
}

impl User {
    pub const TYPE_NAME: &'static str = "User";

    pub fn is_banned(&self) -> bool {
        self.banned
    }
}

impl Aggregate for User {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            UserCommand::RegisterUser {
                user_id,
                username,
                email,
                display_name,
                at,
            } => {
                if self.registered {
                    return Err(UserError::AlreadyRegistered);
                }
                let event = UserEvent::Registered {
                    user_id,
                    username,
                    email,
                    display_name,
                    role: Role::Member,
                    registered_at: at,
                };
                sink.write(event, self).await;
                Ok(())
            }
            UserCommand::UpdateProfile { changes, at } => {
                if !self.registered {
                    return Err(UserError::NotRegistered);
                }
                // Only what really changes becomes part of the event; an update
                // that changes nothing records nothing.
                let display_name = changes
                    .display_name
                    .filter(|d| self.display_name.as_ref() != Some(d));
                let bio = changes.bio.filter(|b| &self.bio != b);
                let profile_image_url = changes
                    .profile_image_url
                    .filter(|u| &self.profile_image_url != u);
                if display_name.is_none() && bio.is_none() && profile_image_url.is_none() {
                    return Ok(());
                }
                let event = UserEvent::ProfileUpdated {
                    display_name,
                    bio,
                    profile_image_url,
                    updated_at: at,
                };
                sink.write(event, self).await;
                Ok(())
            }
            UserCommand::ChangeRole { role, at } => {
                if !self.registered {
                    return Err(UserError::NotRegistered);
                }
                if self.role == role {
                    return Ok(());
                }
                let event = UserEvent::RoleChanged {
                    role,
                    changed_at: at,
                };
                sink.write(event, self).await;
                Ok(())
            }
            UserCommand::BanUser {
                admin_id,
                reason,
                at,
            } => {
                if !self.registered {
                    return Err(UserError::NotRegistered);
                }
                if self.role == Role::Admin {
                    return Err(UserError::CannotBanAdmin);
                }
                if !self.banned {
                    let event = UserEvent::Banned {
                        admin_id,
                        reason,
                        banned_at: at,
                    };
                    sink.write(event, self).await;
                }
                Ok(())
            }
            UserCommand::UnbanUser {
                admin_id,
                reason,
                at,
            } => {
                if !self.registered {
                    return Err(UserError::NotRegistered);
                }
                if self.banned {
                    let event = UserEvent::Unbanned {
                        admin_id,
                        reason,
                        unbanned_at: at,
                    };
                    sink.write(event, self).await;
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::Registered {
                display_name, role, ..
            } => {
                self.registered = true;
                self.display_name = Some(display_name);
                self.role = role;
            }
            UserEvent::RoleChanged { role, .. } => self.role = role,
            UserEvent::Banned { .. } => self.banned = true,
            UserEvent::Unbanned { .. } => self.banned = false,
            UserEvent::ProfileUpdated {
                display_name,
                bio,
                profile_image_url,
                ..
            } => {
                if let Some(d) = display_name {
                    self.display_name = Some(d);
                }
                if let Some(b) = bio {
                    self.bio = b;
                }
                if let Some(u) = profile_image_url {
                    self.profile_image_url = u;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::ProfileChanges;
    use crate::values::{Email, Username};
    use chrono::{TimeZone, Utc};
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    type UserTest = TestFramework<User>;

    fn at() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn registered() -> UserEvent {
        UserEvent::Registered {
            user_id: Uuid::nil(),
            username: Username::parse("username", "trickster").unwrap(),
            email: Email::parse("email", "t@lokiz.dev").unwrap(),
            display_name: DisplayName::parse("display_name", "trickster").unwrap(),
            role: Role::Member,
            registered_at: at(),
        }
    }

    fn register_cmd() -> UserCommand {
        UserCommand::RegisterUser {
            user_id: Uuid::nil(),
            username: Username::parse("username", "trickster").unwrap(),
            email: Email::parse("email", "t@lokiz.dev").unwrap(),
            display_name: DisplayName::parse("display_name", "trickster").unwrap(),
            at: at(),
        }
    }

    fn reason() -> crate::values::ModerationReason {
        crate::values::ModerationReason::parse("reason", "spam").unwrap()
    }
    const ADMIN: Uuid = Uuid::from_u128(99);

    fn banned() -> UserEvent {
        UserEvent::Banned {
            admin_id: ADMIN,
            reason: reason(),
            banned_at: at(),
        }
    }
    fn ban() -> UserCommand {
        UserCommand::BanUser {
            admin_id: ADMIN,
            reason: reason(),
            at: at(),
        }
    }
    fn unban() -> UserCommand {
        UserCommand::UnbanUser {
            admin_id: ADMIN,
            reason: reason(),
            at: at(),
        }
    }

    #[test]
    fn ban_records_the_admin_and_reason_once() {
        UserTest::with(())
            .given(vec![registered()])
            .when(ban())
            .then_expect_events(vec![banned()]);
        UserTest::with(())
            .given(vec![registered(), banned()])
            .when(ban())
            .then_expect_events(vec![]);
    }

    #[test]
    fn ban_of_an_admin_or_nobody_is_refused() {
        UserTest::with(())
            .given(vec![
                registered(),
                UserEvent::RoleChanged {
                    role: Role::Admin,
                    changed_at: at(),
                },
            ])
            .when(ban())
            .then_expect_error(UserError::CannotBanAdmin);
        UserTest::with(())
            .given_no_previous_events()
            .when(ban())
            .then_expect_error(UserError::NotRegistered);
        UserTest::with(())
            .given_no_previous_events()
            .when(unban())
            .then_expect_error(UserError::NotRegistered);
    }

    #[test]
    fn unban_lifts_only_a_ban() {
        UserTest::with(())
            .given(vec![registered(), banned()])
            .when(unban())
            .then_expect_events(vec![UserEvent::Unbanned {
                admin_id: ADMIN,
                reason: reason(),
                unbanned_at: at(),
            }]);
        UserTest::with(())
            .given(vec![registered()])
            .when(unban())
            .then_expect_events(vec![]);
    }

    #[test]
    fn register_records_registered() {
        UserTest::with(())
            .given_no_previous_events()
            .when(register_cmd())
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn register_twice_is_refused() {
        UserTest::with(())
            .given(vec![registered()])
            .when(register_cmd())
            .then_expect_error(UserError::AlreadyRegistered);
    }

    #[test]
    fn update_before_register_is_refused() {
        UserTest::with(())
            .given_no_previous_events()
            .when(UserCommand::UpdateProfile {
                changes: ProfileChanges::default(),
                at: at(),
            })
            .then_expect_error(UserError::NotRegistered);
    }

    #[test]
    fn update_records_only_changed_fields() {
        let bio = Bio::parse("bio", "glitch everything").unwrap();
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::UpdateProfile {
                changes: ProfileChanges {
                    // unchanged: left out of the event
                    display_name: Some(DisplayName::parse("d", "trickster").unwrap()),
                    bio: Some(Some(bio.clone())),
                    profile_image_url: None,
                },
                at: at(),
            })
            .then_expect_events(vec![UserEvent::ProfileUpdated {
                display_name: None,
                bio: Some(Some(bio)),
                profile_image_url: None,
                updated_at: at(),
            }]);
    }

    #[test]
    fn update_that_changes_nothing_records_nothing() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::UpdateProfile {
                changes: ProfileChanges {
                    display_name: Some(DisplayName::parse("d", "trickster").unwrap()),
                    bio: Some(None),
                    profile_image_url: Some(None),
                },
                at: at(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn change_role_before_register_is_refused() {
        UserTest::with(())
            .given_no_previous_events()
            .when(UserCommand::ChangeRole {
                role: Role::Admin,
                at: at(),
            })
            .then_expect_error(UserError::NotRegistered);
    }

    #[test]
    fn change_role_records_role_changed() {
        UserTest::with(())
            .given(vec![registered()])
            .when(UserCommand::ChangeRole {
                role: Role::Admin,
                at: at(),
            })
            .then_expect_events(vec![UserEvent::RoleChanged {
                role: Role::Admin,
                changed_at: at(),
            }]);
    }

    #[test]
    fn change_to_the_current_role_records_nothing() {
        UserTest::with(())
            .given(vec![
                registered(),
                UserEvent::RoleChanged {
                    role: Role::Admin,
                    changed_at: at(),
                },
            ])
            .when(UserCommand::ChangeRole {
                role: Role::Admin,
                at: at(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn revoke_goes_back_to_member() {
        UserTest::with(())
            .given(vec![
                registered(),
                UserEvent::RoleChanged {
                    role: Role::Admin,
                    changed_at: at(),
                },
            ])
            .when(UserCommand::ChangeRole {
                role: Role::Member,
                at: at(),
            })
            .then_expect_events(vec![UserEvent::RoleChanged {
                role: Role::Member,
                changed_at: at(),
            }]);
    }

    #[test]
    fn cleared_bio_round_trips_as_null() {
        let e = UserEvent::ProfileUpdated {
            display_name: None,
            bio: Some(None),
            profile_image_url: None,
            updated_at: at(),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert!(json["ProfileUpdated"]
            .get("bio")
            .is_some_and(|v| v.is_null()));
        assert!(json["ProfileUpdated"].get("profile_image_url").is_none());
        let back: UserEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }
}
