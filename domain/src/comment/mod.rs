//! The Comment aggregate (id = comment id): a comment on a video, or a reply
//! to one. Its author may edit and delete it; the video's owner may delete
//! it too.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Comment, CommentError};
pub use commands::CommentCommand;
pub use events::CommentEvent;
