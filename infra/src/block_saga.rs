//! The block saga: when one user blocks another, it ends their follows both
//! ways (`UnfollowUser` records nothing when there is no follow, so a
//! redelivered `UserBlocked` is harmless). Until it has run, the API already
//! hides the pair from each other's lists (it reads `blocks`).

use std::sync::Arc;

use async_trait::async_trait;
use lokiz_domain::block::{Block, BlockEvent};
use lokiz_domain::follow::{Follow, FollowCommand};

use crate::event_store::EventStore;
use crate::process_manager::{HandleError, ProcessManager};
use crate::StoredEvent;

pub const CONSUMER: &str = "block-saga";

pub struct BlockSaga {
    store: Arc<EventStore>,
}

impl BlockSaga {
    pub fn new(store: Arc<EventStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl ProcessManager for BlockSaga {
    fn consumer(&self) -> &'static str {
        CONSUMER
    }

    fn aggregate_type(&self) -> &'static str {
        Block::TYPE_NAME
    }

    async fn handle(&self, event: &StoredEvent) -> Result<(), HandleError> {
        if event.event_type != "UserBlocked" {
            return Ok(());
        }
        let BlockEvent::UserBlocked {
            blocker_id,
            blocked_id,
            blocked_at,
        } = event.decode::<BlockEvent>()?
        else {
            return Ok(());
        };
        for (follower_id, followee_id) in [(blocker_id, blocked_id), (blocked_id, blocker_id)] {
            self.store
                .follows
                .execute(
                    &Follow::id(follower_id, followee_id),
                    FollowCommand::UnfollowUser {
                        follower_id,
                        followee_id,
                        at: blocked_at,
                    },
                    std::collections::HashMap::from([("actor".to_owned(), blocker_id.to_string())]),
                )
                .await
                .map_err(HandleError::command)?;
        }
        Ok(())
    }
}
