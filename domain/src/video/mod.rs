//! The Video aggregate (id = video id): an upload's life from the signed
//! upload URL to publication, metadata edits and deletion.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Video, VideoError, VideoStatus};
pub use commands::VideoCommand;
pub use events::VideoEvent;
