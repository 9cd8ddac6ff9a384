//! The VideoView aggregate (id = `<video id>:<viewer key>`): at most one
//! counted view per viewer per video per 24 hours; the owner's views never
//! count. Anonymous viewers are keyed by a salted hash of their address,
//! computed outside the domain: no raw IP ever reaches an event.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{VideoView, VideoViewError, ViewerKey, VIEW_WINDOW_HOURS};
pub use commands::VideoViewCommand;
pub use events::VideoViewEvent;
