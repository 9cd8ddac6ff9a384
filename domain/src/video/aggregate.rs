use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{VideoCommand, VideoEvent};
use crate::values::{Caption, Visibility};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoStatus {
    /// No upload requested yet: the aggregate does not exist.
    #[default]
    None,
    /// Upload URL handed out; waiting for the object.
    Processing,
    Completed,
    Deleted,
    /// Taken down by an admin: gone for everyone, its owner included.
    Removed,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Video {
    status: VideoStatus,
    owner_id: Option<Uuid>,
    file_size: u64,
    caption: Option<Caption>,
    visibility: Option<Visibility>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoError {
    #[error("an upload was already requested for this video")]
    AlreadyRequested,
    #[error("video not found")]
    NotFound,
    #[error("only the owner may do this")]
    NotOwner,
    #[error("the upload is already complete")]
    AlreadyCompleted,
    #[error("the uploaded object is not in storage yet")]
    ObjectMissing,
    #[error("the stored object has {stored} bytes, {declared} were declared")]
    SizeMismatch { declared: u64, stored: u64 },
}

impl Video {
    pub const TYPE_NAME: &'static str = "Video";

    pub fn status(&self) -> VideoStatus {
        self.status
    }

    fn owned_by(&self, actor: Uuid) -> Result<(), VideoError> {
        match self.status {
            VideoStatus::None | VideoStatus::Deleted | VideoStatus::Removed => {
                Err(VideoError::NotFound)
            }
            _ if self.owner_id != Some(actor) => Err(VideoError::NotOwner),
            _ => Ok(()),
        }
    }
}

impl Aggregate for Video {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = VideoCommand;
    type Event = VideoEvent;
    type Error = VideoError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            VideoCommand::RequestUpload {
                video_id,
                owner_id,
                file_key,
                content_type,
                file_size,
                caption,
                draft_id,
                at,
            } => {
                if self.status != VideoStatus::None {
                    return Err(VideoError::AlreadyRequested);
                }
                let event = VideoEvent::UploadRequested {
                    video_id,
                    owner_id,
                    file_key,
                    content_type,
                    file_size,
                    caption,
                    requested_at: at,
                    draft_id,
                };
                sink.write(event, self).await;
            }
            VideoCommand::CompleteUpload {
                actor,
                dimensions,
                stored_size,
                at,
            } => {
                self.owned_by(actor)?;
                if self.status == VideoStatus::Completed {
                    return Err(VideoError::AlreadyCompleted);
                }
                let stored = stored_size.ok_or(VideoError::ObjectMissing)?;
                if stored != self.file_size {
                    return Err(VideoError::SizeMismatch {
                        declared: self.file_size,
                        stored,
                    });
                }
                sink.write(
                    VideoEvent::UploadCompleted {
                        dimensions,
                        completed_at: at,
                    },
                    self,
                )
                .await;
                sink.write(VideoEvent::Published { published_at: at }, self)
                    .await;
            }
            VideoCommand::UpdateMetadata {
                actor,
                caption,
                visibility,
                at,
            } => {
                self.owned_by(actor)?;
                let caption = caption.filter(|c| &self.caption != c);
                let visibility = visibility.filter(|v| self.visibility != Some(*v));
                if caption.is_none() && visibility.is_none() {
                    return Ok(());
                }
                sink.write(
                    VideoEvent::MetadataUpdated {
                        caption,
                        visibility,
                        updated_at: at,
                    },
                    self,
                )
                .await;
            }
            VideoCommand::PublishGlitch {
                video_id,
                owner_id,
                source_video_id,
                job_id,
                file_key,
                content_type,
                file_size,
                dimensions,
                caption,
                at,
            } => {
                if self.status != VideoStatus::None {
                    return Err(VideoError::AlreadyRequested);
                }
                let events = [
                    VideoEvent::UploadRequested {
                        video_id,
                        owner_id,
                        file_key,
                        content_type,
                        file_size,
                        caption,
                        requested_at: at,
                        draft_id: None,
                    },
                    VideoEvent::UploadCompleted {
                        dimensions,
                        completed_at: at,
                    },
                    VideoEvent::GlitchedFrom {
                        source_video_id,
                        job_id,
                        glitched_at: at,
                    },
                    VideoEvent::Published { published_at: at },
                ];
                for e in events {
                    sink.write(e, self).await;
                }
            }
            VideoCommand::DeleteVideo { actor, at } => {
                self.owned_by(actor)?;
                sink.write(VideoEvent::Deleted { deleted_at: at }, self)
                    .await;
            }
            VideoCommand::RemoveVideo {
                admin_id,
                reason,
                at,
            } => match self.status {
                VideoStatus::None | VideoStatus::Deleted => return Err(VideoError::NotFound),
                VideoStatus::Removed => {}
                VideoStatus::Processing | VideoStatus::Completed => {
                    let event = VideoEvent::Removed {
                        admin_id,
                        reason,
                        removed_at: at,
                    };
                    sink.write(event, self).await;
                }
            },
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            VideoEvent::UploadRequested {
                owner_id,
                file_size,
                caption,
                ..
            } => {
                self.status = VideoStatus::Processing;
                self.owner_id = Some(owner_id);
                self.file_size = file_size;
                self.caption = caption;
                self.visibility = Some(Visibility::Public);
            }
            VideoEvent::UploadCompleted { .. } => self.status = VideoStatus::Completed,
            VideoEvent::Published { .. } | VideoEvent::GlitchedFrom { .. } => {}
            VideoEvent::MetadataUpdated {
                caption,
                visibility,
                ..
            } => {
                if let Some(c) = caption {
                    self.caption = c;
                }
                if let Some(v) = visibility {
                    self.visibility = Some(v);
                }
            }
            VideoEvent::Deleted { .. } => self.status = VideoStatus::Deleted,
            VideoEvent::Removed { .. } => self.status = VideoStatus::Removed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{ModerationReason, VideoDimensions};
    use chrono::{DateTime, TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    type VideoTest = TestFramework<Video>;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }
    fn owner() -> Uuid {
        Uuid::from_u128(1)
    }
    fn stranger() -> Uuid {
        Uuid::from_u128(2)
    }
    fn dims() -> VideoDimensions {
        VideoDimensions::parse(1080, 1920, 12.5).unwrap()
    }

    fn requested() -> VideoEvent {
        VideoEvent::UploadRequested {
            video_id: Uuid::from_u128(9),
            owner_id: owner(),
            file_key: "videos/9.mp4".into(),
            content_type: "video/mp4".into(),
            file_size: 1000,
            caption: None,
            requested_at: at(),
            draft_id: None,
        }
    }

    fn request_cmd() -> VideoCommand {
        VideoCommand::RequestUpload {
            video_id: Uuid::from_u128(9),
            owner_id: owner(),
            file_key: "videos/9.mp4".into(),
            content_type: "video/mp4".into(),
            file_size: 1000,
            caption: None,
            draft_id: None,
            at: at(),
        }
    }

    fn complete(actor: Uuid, stored_size: Option<u64>) -> VideoCommand {
        VideoCommand::CompleteUpload {
            actor,
            dimensions: dims(),
            stored_size,
            at: at(),
        }
    }

    fn completed() -> Vec<VideoEvent> {
        vec![
            VideoEvent::UploadCompleted {
                dimensions: dims(),
                completed_at: at(),
            },
            VideoEvent::Published { published_at: at() },
        ]
    }

    #[test]
    fn request_upload() {
        VideoTest::with(())
            .given_no_previous_events()
            .when(request_cmd())
            .then_expect_events(vec![requested()]);
        VideoTest::with(())
            .given(vec![requested()])
            .when(request_cmd())
            .then_expect_error(VideoError::AlreadyRequested);
    }

    #[test]
    fn complete_publishes() {
        VideoTest::with(())
            .given(vec![requested()])
            .when(complete(owner(), Some(1000)))
            .then_expect_events(completed());
    }

    #[test]
    fn complete_refusals() {
        VideoTest::with(())
            .given_no_previous_events()
            .when(complete(owner(), Some(1000)))
            .then_expect_error(VideoError::NotFound);
        VideoTest::with(())
            .given(vec![requested()])
            .when(complete(stranger(), Some(1000)))
            .then_expect_error(VideoError::NotOwner);
        VideoTest::with(())
            .given(vec![requested()])
            .when(complete(owner(), None))
            .then_expect_error(VideoError::ObjectMissing);
        VideoTest::with(())
            .given(vec![requested()])
            .when(complete(owner(), Some(999)))
            .then_expect_error(VideoError::SizeMismatch {
                declared: 1000,
                stored: 999,
            });
        let mut done = vec![requested()];
        done.extend(completed());
        VideoTest::with(())
            .given(done)
            .when(complete(owner(), Some(1000)))
            .then_expect_error(VideoError::AlreadyCompleted);
    }

    #[test]
    fn update_metadata_records_changes_only() {
        let caption = Caption::parse("caption", "#glitch me").unwrap();
        VideoTest::with(())
            .given(vec![requested()])
            .when(VideoCommand::UpdateMetadata {
                actor: owner(),
                caption: Some(Some(caption.clone())),
                visibility: Some(Visibility::Public),
                at: at(),
            })
            .then_expect_events(vec![VideoEvent::MetadataUpdated {
                caption: Some(Some(caption)),
                visibility: None,
                updated_at: at(),
            }]);
        VideoTest::with(())
            .given(vec![requested()])
            .when(VideoCommand::UpdateMetadata {
                actor: owner(),
                caption: Some(None),
                visibility: None,
                at: at(),
            })
            .then_expect_events(vec![]);
        VideoTest::with(())
            .given(vec![requested()])
            .when(VideoCommand::UpdateMetadata {
                actor: stranger(),
                caption: None,
                visibility: Some(Visibility::Private),
                at: at(),
            })
            .then_expect_error(VideoError::NotOwner);
    }

    fn publish_glitch() -> VideoCommand {
        VideoCommand::PublishGlitch {
            video_id: Uuid::from_u128(5),
            owner_id: owner(),
            source_video_id: Uuid::from_u128(6),
            job_id: Uuid::from_u128(7),
            file_key: "results/7.mp4".into(),
            content_type: "video/mp4".into(),
            file_size: 1234,
            dimensions: dims(),
            caption: None,
            at: at(),
        }
    }

    #[test]
    fn publish_glitch_records_a_published_video_glitched_from_its_source() {
        VideoTest::with(())
            .given_no_previous_events()
            .when(publish_glitch())
            .then_expect_events(vec![
                VideoEvent::UploadRequested {
                    video_id: Uuid::from_u128(5),
                    owner_id: owner(),
                    file_key: "results/7.mp4".into(),
                    content_type: "video/mp4".into(),
                    file_size: 1234,
                    caption: None,
                    requested_at: at(),
                    draft_id: None,
                },
                VideoEvent::UploadCompleted {
                    dimensions: dims(),
                    completed_at: at(),
                },
                VideoEvent::GlitchedFrom {
                    source_video_id: Uuid::from_u128(6),
                    job_id: Uuid::from_u128(7),
                    glitched_at: at(),
                },
                VideoEvent::Published { published_at: at() },
            ]);
    }

    #[test]
    fn publish_glitch_twice_is_refused() {
        VideoTest::with(())
            .given(vec![requested()])
            .when(publish_glitch())
            .then_expect_error(VideoError::AlreadyRequested);
    }

    #[test]
    fn delete() {
        VideoTest::with(())
            .given(vec![requested()])
            .when(VideoCommand::DeleteVideo {
                actor: owner(),
                at: at(),
            })
            .then_expect_events(vec![VideoEvent::Deleted { deleted_at: at() }]);
        VideoTest::with(())
            .given(vec![requested()])
            .when(VideoCommand::DeleteVideo {
                actor: stranger(),
                at: at(),
            })
            .then_expect_error(VideoError::NotOwner);
        VideoTest::with(())
            .given(vec![requested(), VideoEvent::Deleted { deleted_at: at() }])
            .when(VideoCommand::DeleteVideo {
                actor: owner(),
                at: at(),
            })
            .then_expect_error(VideoError::NotFound);
    }

    fn removal() -> (VideoCommand, VideoEvent) {
        let reason = ModerationReason::parse("reason", "violence").unwrap();
        let admin_id = Uuid::from_u128(99);
        (
            VideoCommand::RemoveVideo {
                admin_id,
                reason: reason.clone(),
                at: at(),
            },
            VideoEvent::Removed {
                admin_id,
                reason,
                removed_at: at(),
            },
        )
    }

    #[test]
    fn remove_takes_a_video_down_once() {
        let (remove, removed) = removal();
        VideoTest::with(())
            .given(vec![requested()])
            .when(remove.clone())
            .then_expect_events(vec![removed.clone()]);
        VideoTest::with(())
            .given(vec![requested(), removed.clone()])
            .when(remove.clone())
            .then_expect_events(vec![]);
        VideoTest::with(())
            .given(vec![requested(), VideoEvent::Deleted { deleted_at: at() }])
            .when(remove.clone())
            .then_expect_error(VideoError::NotFound);
        VideoTest::with(())
            .given_no_previous_events()
            .when(remove)
            .then_expect_error(VideoError::NotFound);
    }

    #[test]
    fn a_removed_video_is_gone_for_its_owner() {
        let (_, removed) = removal();
        VideoTest::with(())
            .given(vec![requested(), removed])
            .when(VideoCommand::DeleteVideo {
                actor: owner(),
                at: at(),
            })
            .then_expect_error(VideoError::NotFound);
    }
}
