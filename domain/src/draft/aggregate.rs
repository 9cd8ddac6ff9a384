use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DraftCommand, DraftEvent};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DraftStatus {
    /// Never saved: the aggregate does not exist.
    #[default]
    None,
    Draft,
    Published {
        video_id: Uuid,
    },
    Deleted,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Draft {
    status: DraftStatus,
    owner_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    #[error("draft not found")]
    NotFound,
    #[error("a draft with this id exists already")]
    AlreadyExists,
    #[error("only the draft's owner may do this")]
    NotOwner,
    #[error("the draft was deleted")]
    Deleted,
    #[error("the draft was already published")]
    AlreadyPublished,
}

impl Draft {
    pub const TYPE_NAME: &'static str = "Draft";

    pub fn status(&self) -> DraftStatus {
        self.status
    }

    /// The draft exists, is `actor`'s, and is still a draft.
    fn live_for(&self, actor: Uuid) -> Result<(), DraftError> {
        match self.status {
            DraftStatus::None => Err(DraftError::NotFound),
            _ if self.owner_id != Some(actor) => Err(DraftError::NotOwner),
            DraftStatus::Deleted => Err(DraftError::Deleted),
            DraftStatus::Published { .. } => Err(DraftError::AlreadyPublished),
            DraftStatus::Draft => Ok(()),
        }
    }
}

impl Aggregate for Draft {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = DraftCommand;
    type Event = DraftEvent;
    type Error = DraftError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            DraftCommand::SaveDraft {
                draft_id,
                owner_id,
                caption,
                params,
                create,
                at,
            } => {
                match (create, self.status) {
                    (true, DraftStatus::None) => {}
                    (true, _) => return Err(DraftError::AlreadyExists),
                    (false, _) => self.live_for(owner_id)?,
                }
                let event = DraftEvent::DraftSaved {
                    draft_id,
                    owner_id,
                    caption,
                    params,
                    saved_at: at,
                };
                sink.write(event, self).await;
            }
            DraftCommand::DeleteDraft { actor, at } => {
                self.live_for(actor)?;
                let event = DraftEvent::DraftDeleted {
                    owner_id: actor,
                    deleted_at: at,
                };
                sink.write(event, self).await;
            }
            DraftCommand::PublishDraft {
                actor,
                video_id,
                at,
            } => {
                if let DraftStatus::Published { video_id: done } = self.status {
                    if done == video_id && self.owner_id == Some(actor) {
                        // the same completion again: already recorded
                        return Ok(());
                    }
                }
                self.live_for(actor)?;
                let event = DraftEvent::DraftPublished {
                    owner_id: actor,
                    video_id,
                    published_at: at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DraftEvent::DraftSaved { owner_id, .. } => {
                self.status = DraftStatus::Draft;
                self.owner_id = Some(owner_id);
            }
            DraftEvent::DraftDeleted { .. } => self.status = DraftStatus::Deleted,
            DraftEvent::DraftPublished { video_id, .. } => {
                self.status = DraftStatus::Published { video_id }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draft::DraftParams;
    use crate::values::Caption;
    use chrono::{DateTime, TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    type DraftTest = TestFramework<Draft>;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap()
    }
    const D: Uuid = Uuid::from_u128(10);
    const OWNER: Uuid = Uuid::from_u128(1);
    const STRANGER: Uuid = Uuid::from_u128(2);
    const VIDEO: Uuid = Uuid::from_u128(20);
    const OTHER_VIDEO: Uuid = Uuid::from_u128(21);

    fn caption(s: &str) -> Caption {
        Caption::parse("caption", s).unwrap()
    }
    fn params() -> DraftParams {
        DraftParams::parse(
            "params",
            &serde_json::json!({"preset": "vhs", "speed": 1.5}),
        )
        .unwrap()
    }
    fn save(who: Uuid, text: &str, create: bool) -> DraftCommand {
        DraftCommand::SaveDraft {
            draft_id: D,
            owner_id: who,
            caption: caption(text),
            params: Some(params()),
            create,
            at: at(),
        }
    }
    fn saved(text: &str) -> DraftEvent {
        DraftEvent::DraftSaved {
            draft_id: D,
            owner_id: OWNER,
            caption: caption(text),
            params: Some(params()),
            saved_at: at(),
        }
    }
    fn deleted() -> DraftEvent {
        DraftEvent::DraftDeleted {
            owner_id: OWNER,
            deleted_at: at(),
        }
    }
    fn published(video_id: Uuid) -> DraftEvent {
        DraftEvent::DraftPublished {
            owner_id: OWNER,
            video_id,
            published_at: at(),
        }
    }
    fn delete(actor: Uuid) -> DraftCommand {
        DraftCommand::DeleteDraft { actor, at: at() }
    }
    fn publish(actor: Uuid, video_id: Uuid) -> DraftCommand {
        DraftCommand::PublishDraft {
            actor,
            video_id,
            at: at(),
        }
    }

    // ------------------------------------------------------------ SaveDraft

    #[test]
    fn saving_a_new_draft_creates_it() {
        DraftTest::with(())
            .given_no_previous_events()
            .when(save(OWNER, "first cut", true))
            .then_expect_events(vec![saved("first cut")]);
    }

    #[test]
    fn creating_over_an_existing_id_is_refused() {
        DraftTest::with(())
            .given(vec![saved("first cut")])
            .when(save(OWNER, "again", true))
            .then_expect_error(DraftError::AlreadyExists);
    }

    #[test]
    fn the_owner_replaces_a_draft() {
        DraftTest::with(())
            .given(vec![saved("first cut")])
            .when(save(OWNER, "second cut", false))
            .then_expect_events(vec![saved("second cut")]);
    }

    #[test]
    fn updating_a_draft_that_does_not_exist_is_not_found() {
        DraftTest::with(())
            .given_no_previous_events()
            .when(save(OWNER, "x", false))
            .then_expect_error(DraftError::NotFound);
    }

    #[test]
    fn another_user_cannot_update_a_draft() {
        DraftTest::with(())
            .given(vec![saved("first cut")])
            .when(save(STRANGER, "mine now", false))
            .then_expect_error(DraftError::NotOwner);
    }

    #[test]
    fn a_deleted_draft_cannot_be_updated() {
        DraftTest::with(())
            .given(vec![saved("first cut"), deleted()])
            .when(save(OWNER, "back", false))
            .then_expect_error(DraftError::Deleted);
    }

    #[test]
    fn a_published_draft_cannot_be_updated() {
        DraftTest::with(())
            .given(vec![saved("first cut"), published(VIDEO)])
            .when(save(OWNER, "later", false))
            .then_expect_error(DraftError::AlreadyPublished);
    }

    // ---------------------------------------------------------- DeleteDraft

    #[test]
    fn the_owner_deletes_a_draft() {
        DraftTest::with(())
            .given(vec![saved("first cut")])
            .when(delete(OWNER))
            .then_expect_events(vec![deleted()]);
    }

    #[test]
    fn deleting_a_missing_draft_is_not_found() {
        DraftTest::with(())
            .given_no_previous_events()
            .when(delete(OWNER))
            .then_expect_error(DraftError::NotFound);
    }

    #[test]
    fn another_user_cannot_delete_a_draft() {
        DraftTest::with(())
            .given(vec![saved("first cut")])
            .when(delete(STRANGER))
            .then_expect_error(DraftError::NotOwner);
    }

    #[test]
    fn deleting_twice_is_refused() {
        DraftTest::with(())
            .given(vec![saved("first cut"), deleted()])
            .when(delete(OWNER))
            .then_expect_error(DraftError::Deleted);
    }

    #[test]
    fn a_published_draft_cannot_be_deleted() {
        DraftTest::with(())
            .given(vec![saved("first cut"), published(VIDEO)])
            .when(delete(OWNER))
            .then_expect_error(DraftError::AlreadyPublished);
    }

    // --------------------------------------------------------- PublishDraft

    #[test]
    fn completing_the_upload_publishes_the_draft() {
        DraftTest::with(())
            .given(vec![saved("first cut")])
            .when(publish(OWNER, VIDEO))
            .then_expect_events(vec![published(VIDEO)]);
    }

    #[test]
    fn publishing_again_for_the_same_video_records_nothing() {
        DraftTest::with(())
            .given(vec![saved("first cut"), published(VIDEO)])
            .when(publish(OWNER, VIDEO))
            .then_expect_events(vec![]);
    }

    #[test]
    fn publishing_for_another_video_is_refused() {
        DraftTest::with(())
            .given(vec![saved("first cut"), published(VIDEO)])
            .when(publish(OWNER, OTHER_VIDEO))
            .then_expect_error(DraftError::AlreadyPublished);
    }

    #[test]
    fn publishing_a_missing_draft_is_not_found() {
        DraftTest::with(())
            .given_no_previous_events()
            .when(publish(OWNER, VIDEO))
            .then_expect_error(DraftError::NotFound);
    }

    #[test]
    fn another_user_cannot_publish_a_draft() {
        DraftTest::with(())
            .given(vec![saved("first cut")])
            .when(publish(STRANGER, VIDEO))
            .then_expect_error(DraftError::NotOwner);
        // not even by replaying the owner's completion
        DraftTest::with(())
            .given(vec![saved("first cut"), published(VIDEO)])
            .when(publish(STRANGER, VIDEO))
            .then_expect_error(DraftError::NotOwner);
    }

    #[test]
    fn a_deleted_draft_cannot_be_published() {
        DraftTest::with(())
            .given(vec![saved("first cut"), deleted()])
            .when(publish(OWNER, VIDEO))
            .then_expect_error(DraftError::Deleted);
    }

    // --------------------------------------------------------------- params

    #[test]
    fn params_are_a_json_object_of_at_most_16_kib() {
        assert!(DraftParams::parse("params", &serde_json::json!([1, 2])).is_err());
        assert!(DraftParams::parse("params", &serde_json::json!("x")).is_err());
        let big = serde_json::json!({ "k": "x".repeat(DraftParams::MAX_BYTES) });
        assert_eq!(
            DraftParams::parse("params", &big).unwrap_err().code,
            "too_large"
        );
        let fits = serde_json::json!({ "k": "x".repeat(DraftParams::MAX_BYTES - 10) });
        assert!(DraftParams::parse("params", &fits).is_ok());
    }
}
