//! The Draft aggregate (id = the draft's UUID): a video a user is preparing —
//! its caption and the editor's parameters — before any file exists. A draft
//! is saved (created or replaced) by its owner, deleted, or published once
//! through the normal upload flow (the video's upload names the draft; the
//! upload's completion publishes it). Published and deleted drafts are final.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Draft, DraftError, DraftStatus};
pub use commands::DraftCommand;
pub use events::{DraftEvent, DraftParams};
