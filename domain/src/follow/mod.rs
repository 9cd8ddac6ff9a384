//! The Follow aggregate (id = `<follower id>:<followee id>`). Following twice
//! or unfollowing someone not followed records nothing; following yourself is
//! refused.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Follow, FollowError};
pub use commands::FollowCommand;
pub use events::FollowEvent;
