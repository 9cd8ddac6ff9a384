//! The Like aggregate (id = `<user id>:<video id>`): whether a user likes a
//! video. Liking twice or unliking what is not liked records nothing.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Like, LikeError};
pub use commands::LikeCommand;
pub use events::LikeEvent;
