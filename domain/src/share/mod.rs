//! The Share aggregate (id = `<user id>:<video id>`): the channels a user
//! shared a video to. Each channel counts once per user and video (sharing
//! again to it records nothing), so the share count measures reach, not
//! button presses.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Share, ShareError};
pub use commands::ShareCommand;
pub use events::{ShareChannel, ShareEvent};
