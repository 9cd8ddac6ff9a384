//! The Image aggregate (id = the image's UUID): a picture a user uploads for
//! their profile or as a thumbnail, through the same flow as videos — an
//! upload URL (the image exists from then on, unfinished), the PUT, and a
//! completion that records what ffprobe found in the stored file. Only a
//! completed image's URL may be used (`PATCH /v1/users/me`).

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Image, ImageError, ImageStatus};
pub use commands::ImageCommand;
pub use events::{ImageEvent, ImagePurpose};
