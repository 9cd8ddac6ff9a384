use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{BlockCommand, BlockEvent};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Block {
    blocking: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("you cannot block yourself")]
    CannotBlockSelf,
}

impl Block {
    pub const TYPE_NAME: &'static str = "Block";

    /// The aggregate id of `blocker_id` blocking `blocked_id`.
    pub fn id(blocker_id: Uuid, blocked_id: Uuid) -> String {
        format!("{blocker_id}:{blocked_id}")
    }

    pub fn is_blocking(&self) -> bool {
        self.blocking
    }
}

impl Aggregate for Block {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = BlockCommand;
    type Event = BlockEvent;
    type Error = BlockError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            BlockCommand::BlockUser {
                blocker_id,
                blocked_id,
                at,
            } => {
                if blocker_id == blocked_id {
                    return Err(BlockError::CannotBlockSelf);
                }
                if !self.blocking {
                    let event = BlockEvent::UserBlocked {
                        blocker_id,
                        blocked_id,
                        blocked_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
            BlockCommand::UnblockUser {
                blocker_id,
                blocked_id,
                at,
            } => {
                if self.blocking {
                    let event = BlockEvent::UserUnblocked {
                        blocker_id,
                        blocked_id,
                        unblocked_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.blocking = matches!(event, BlockEvent::UserBlocked { .. });
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
    const A: Uuid = Uuid::from_u128(1);
    const B: Uuid = Uuid::from_u128(2);

    fn blocked() -> BlockEvent {
        BlockEvent::UserBlocked {
            blocker_id: A,
            blocked_id: B,
            blocked_at: at(),
        }
    }
    fn block(blocked_id: Uuid) -> BlockCommand {
        BlockCommand::BlockUser {
            blocker_id: A,
            blocked_id,
            at: at(),
        }
    }
    fn unblock() -> BlockCommand {
        BlockCommand::UnblockUser {
            blocker_id: A,
            blocked_id: B,
            at: at(),
        }
    }

    #[test]
    fn block_records_once() {
        TestFramework::<Block>::with(())
            .given_no_previous_events()
            .when(block(B))
            .then_expect_events(vec![blocked()]);
        TestFramework::<Block>::with(())
            .given(vec![blocked()])
            .when(block(B))
            .then_expect_events(vec![]);
    }

    #[test]
    fn blocking_yourself_is_refused() {
        TestFramework::<Block>::with(())
            .given_no_previous_events()
            .when(block(A))
            .then_expect_error(BlockError::CannotBlockSelf);
    }

    #[test]
    fn unblock_only_who_is_blocked() {
        TestFramework::<Block>::with(())
            .given(vec![blocked()])
            .when(unblock())
            .then_expect_events(vec![BlockEvent::UserUnblocked {
                blocker_id: A,
                blocked_id: B,
                unblocked_at: at(),
            }]);
        TestFramework::<Block>::with(())
            .given_no_previous_events()
            .when(unblock())
            .then_expect_events(vec![]);
        TestFramework::<Block>::with(())
            .given(vec![
                blocked(),
                BlockEvent::UserUnblocked {
                    blocker_id: A,
                    blocked_id: B,
                    unblocked_at: at(),
                },
            ])
            .when(unblock())
            .then_expect_events(vec![]);
    }
}
