use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ImageCommand, ImageEvent};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// No upload requested: the aggregate does not exist.
    #[default]
    None,
    /// Upload URL handed out; waiting for the file.
    Processing,
    Completed,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Image {
    status: ImageStatus,
    owner_id: Option<Uuid>,
    file_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("an upload was already requested for this image")]
    AlreadyRequested,
    #[error("image not found")]
    NotFound,
    #[error("only the owner may do this")]
    NotOwner,
    #[error("the upload is already complete")]
    AlreadyCompleted,
    #[error("the uploaded file is not in storage yet")]
    ObjectMissing,
    #[error("the stored file has {stored} bytes, {declared} were declared")]
    SizeMismatch { declared: u64, stored: u64 },
}

impl Image {
    pub const TYPE_NAME: &'static str = "Image";

    pub fn status(&self) -> ImageStatus {
        self.status
    }
}

impl Aggregate for Image {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = ImageCommand;
    type Event = ImageEvent;
    type Error = ImageError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            ImageCommand::RequestUpload {
                image_id,
                owner_id,
                purpose,
                file_key,
                content_type,
                file_size,
                at,
            } => {
                if self.status != ImageStatus::None {
                    return Err(ImageError::AlreadyRequested);
                }
                let event = ImageEvent::UploadRequested {
                    image_id,
                    owner_id,
                    purpose,
                    file_key,
                    content_type,
                    file_size,
                    requested_at: at,
                };
                sink.write(event, self).await;
            }
            ImageCommand::CompleteUpload {
                actor,
                width,
                height,
                stored_size,
                at,
            } => {
                if self.status == ImageStatus::None {
                    return Err(ImageError::NotFound);
                }
                if self.owner_id != Some(actor) {
                    return Err(ImageError::NotOwner);
                }
                if self.status == ImageStatus::Completed {
                    return Err(ImageError::AlreadyCompleted);
                }
                let stored = stored_size.ok_or(ImageError::ObjectMissing)?;
                if stored != self.file_size {
                    return Err(ImageError::SizeMismatch {
                        declared: self.file_size,
                        stored,
                    });
                }
                let event = ImageEvent::UploadCompleted {
                    width,
                    height,
                    completed_at: at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ImageEvent::UploadRequested {
                owner_id,
                file_size,
                ..
            } => {
                self.status = ImageStatus::Processing;
                self.owner_id = Some(owner_id);
                self.file_size = file_size;
            }
            ImageEvent::UploadCompleted { .. } => self.status = ImageStatus::Completed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImagePurpose;
    use chrono::{DateTime, TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    type ImageTest = TestFramework<Image>;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap()
    }
    const OWNER: Uuid = Uuid::from_u128(1);
    const STRANGER: Uuid = Uuid::from_u128(2);
    const ID: Uuid = Uuid::from_u128(3);

    fn request() -> ImageCommand {
        ImageCommand::RequestUpload {
            image_id: ID,
            owner_id: OWNER,
            purpose: ImagePurpose::Profile,
            file_key: "images/3.png".into(),
            content_type: "image/png".into(),
            file_size: 500,
            at: at(),
        }
    }
    fn requested() -> ImageEvent {
        ImageEvent::UploadRequested {
            image_id: ID,
            owner_id: OWNER,
            purpose: ImagePurpose::Profile,
            file_key: "images/3.png".into(),
            content_type: "image/png".into(),
            file_size: 500,
            requested_at: at(),
        }
    }
    fn complete(actor: Uuid, stored: Option<u64>) -> ImageCommand {
        ImageCommand::CompleteUpload {
            actor,
            width: 64,
            height: 48,
            stored_size: stored,
            at: at(),
        }
    }
    fn completed() -> ImageEvent {
        ImageEvent::UploadCompleted {
            width: 64,
            height: 48,
            completed_at: at(),
        }
    }

    #[test]
    fn an_upload_is_requested_once() {
        ImageTest::with(())
            .given_no_previous_events()
            .when(request())
            .then_expect_events(vec![requested()]);
        ImageTest::with(())
            .given(vec![requested()])
            .when(request())
            .then_expect_error(ImageError::AlreadyRequested);
    }

    #[test]
    fn the_owner_completes_a_stored_upload_of_the_declared_size() {
        ImageTest::with(())
            .given(vec![requested()])
            .when(complete(OWNER, Some(500)))
            .then_expect_events(vec![completed()]);
    }

    #[test]
    fn completing_is_refused_for_a_missing_image_a_stranger_or_twice() {
        ImageTest::with(())
            .given_no_previous_events()
            .when(complete(OWNER, Some(500)))
            .then_expect_error(ImageError::NotFound);
        ImageTest::with(())
            .given(vec![requested()])
            .when(complete(STRANGER, Some(500)))
            .then_expect_error(ImageError::NotOwner);
        ImageTest::with(())
            .given(vec![requested(), completed()])
            .when(complete(OWNER, Some(500)))
            .then_expect_error(ImageError::AlreadyCompleted);
    }

    #[test]
    fn completing_needs_the_file_at_its_declared_size() {
        ImageTest::with(())
            .given(vec![requested()])
            .when(complete(OWNER, None))
            .then_expect_error(ImageError::ObjectMissing);
        ImageTest::with(())
            .given(vec![requested()])
            .when(complete(OWNER, Some(499)))
            .then_expect_error(ImageError::SizeMismatch {
                declared: 500,
                stored: 499,
            });
    }

    #[test]
    fn purposes_parse_from_their_names() {
        for p in [ImagePurpose::Profile, ImagePurpose::Thumbnail] {
            assert_eq!(ImagePurpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(ImagePurpose::parse("banner"), None);
    }
}
