//! The Bookmark aggregate (id = `<user id>:<video id>`): whether a user
//! saved a video for later (private to them). Bookmarking twice or removing
//! what is not bookmarked records nothing.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Bookmark, BookmarkError};
pub use commands::BookmarkCommand;
pub use events::BookmarkEvent;
