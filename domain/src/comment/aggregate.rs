use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CommentCommand, CommentEvent};
use crate::values::CommentBody;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Comment {
    video_id: Option<Uuid>,
    parent_id: Option<Uuid>,
    author_id: Option<Uuid>,
    body: Option<CommentBody>,
    deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommentError {
    #[error("the comment already exists")]
    AlreadyPosted,
    #[error("comment not found")]
    NotFound,
    #[error("only the author may edit a comment")]
    NotAuthor,
    #[error("only the author or the video's owner may delete a comment")]
    NotAllowedToDelete,
}

impl Comment {
    pub const TYPE_NAME: &'static str = "Comment";

    fn live_author(&self) -> Result<Uuid, CommentError> {
        match self.author_id {
            Some(a) if !self.deleted => Ok(a),
            _ => Err(CommentError::NotFound),
        }
    }

    /// The video this comment is on, once posted.
    pub fn video_id(&self) -> Option<Uuid> {
        self.video_id
    }
}

impl Aggregate for Comment {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = CommentCommand;
    type Event = CommentEvent;
    type Error = CommentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            CommentCommand::PostComment {
                comment_id,
                video_id,
                author_id,
                parent_id,
                body,
                at,
            } => {
                if self.author_id.is_some() {
                    return Err(CommentError::AlreadyPosted);
                }
                let event = CommentEvent::CommentPosted {
                    comment_id,
                    video_id,
                    author_id,
                    parent_id,
                    body,
                    posted_at: at,
                };
                sink.write(event, self).await;
            }
            CommentCommand::EditComment { actor, body, at } => {
                if self.live_author()? != actor {
                    return Err(CommentError::NotAuthor);
                }
                if self.body.as_ref() != Some(&body) {
                    let event = CommentEvent::CommentEdited {
                        body,
                        edited_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
            CommentCommand::DeleteComment {
                actor,
                actor_owns_video,
                at,
            } => {
                if self.live_author()? != actor && !actor_owns_video {
                    return Err(CommentError::NotAllowedToDelete);
                }
                let video_id = self.video_id.ok_or(CommentError::NotFound)?;
                let event = CommentEvent::CommentDeleted {
                    video_id,
                    parent_id: self.parent_id,
                    deleted_by: actor,
                    deleted_at: at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CommentEvent::CommentPosted {
                video_id,
                parent_id,
                author_id,
                body,
                ..
            } => {
                self.video_id = Some(video_id);
                self.parent_id = parent_id;
                self.author_id = Some(author_id);
                self.body = Some(body);
            }
            CommentEvent::CommentEdited { body, .. } => self.body = Some(body),
            CommentEvent::CommentDeleted { .. } => self.deleted = true,
        }
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
    const AUTHOR: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);
    const C: Uuid = Uuid::from_u128(3);
    const V: Uuid = Uuid::from_u128(4);

    fn body(s: &str) -> CommentBody {
        CommentBody::parse("body", s).unwrap()
    }
    fn posted() -> CommentEvent {
        CommentEvent::CommentPosted {
            comment_id: C,
            video_id: V,
            author_id: AUTHOR,
            parent_id: None,
            body: body("nice glitch"),
            posted_at: at(),
        }
    }
    fn deleted(by: Uuid) -> CommentEvent {
        CommentEvent::CommentDeleted {
            video_id: V,
            parent_id: None,
            deleted_by: by,
            deleted_at: at(),
        }
    }
    fn delete(actor: Uuid, actor_owns_video: bool) -> CommentCommand {
        CommentCommand::DeleteComment {
            actor,
            actor_owns_video,
            at: at(),
        }
    }
    fn edit(actor: Uuid, text: &str) -> CommentCommand {
        CommentCommand::EditComment {
            actor,
            body: body(text),
            at: at(),
        }
    }

    #[test]
    fn post_once() {
        let post = CommentCommand::PostComment {
            comment_id: C,
            video_id: V,
            author_id: AUTHOR,
            parent_id: None,
            body: body("nice glitch"),
            at: at(),
        };
        TestFramework::<Comment>::with(())
            .given_no_previous_events()
            .when(post.clone())
            .then_expect_events(vec![posted()]);
        TestFramework::<Comment>::with(())
            .given(vec![posted()])
            .when(post)
            .then_expect_error(CommentError::AlreadyPosted);
    }

    #[test]
    fn edit_by_author_only() {
        TestFramework::<Comment>::with(())
            .given(vec![posted()])
            .when(edit(AUTHOR, "even nicer"))
            .then_expect_events(vec![CommentEvent::CommentEdited {
                body: body("even nicer"),
                edited_at: at(),
            }]);
        TestFramework::<Comment>::with(())
            .given(vec![posted()])
            .when(edit(AUTHOR, "nice glitch"))
            .then_expect_events(vec![]);
        TestFramework::<Comment>::with(())
            .given(vec![posted()])
            .when(edit(OTHER, "mine now"))
            .then_expect_error(CommentError::NotAuthor);
        TestFramework::<Comment>::with(())
            .given(vec![posted(), deleted(AUTHOR)])
            .when(edit(AUTHOR, "back"))
            .then_expect_error(CommentError::NotFound);
        TestFramework::<Comment>::with(())
            .given_no_previous_events()
            .when(edit(AUTHOR, "ghost"))
            .then_expect_error(CommentError::NotFound);
    }

    #[test]
    fn delete_by_author_or_video_owner() {
        TestFramework::<Comment>::with(())
            .given(vec![posted()])
            .when(delete(AUTHOR, false))
            .then_expect_events(vec![deleted(AUTHOR)]);
        TestFramework::<Comment>::with(())
            .given(vec![posted()])
            .when(delete(OTHER, true))
            .then_expect_events(vec![deleted(OTHER)]);
        TestFramework::<Comment>::with(())
            .given(vec![posted()])
            .when(delete(OTHER, false))
            .then_expect_error(CommentError::NotAllowedToDelete);
        TestFramework::<Comment>::with(())
            .given(vec![posted(), deleted(AUTHOR)])
            .when(delete(AUTHOR, false))
            .then_expect_error(CommentError::NotFound);
    }
}
