//! The Report aggregate (id = `<reporter id>:<video id>`): a user's report
//! of a video. One open report per user and video: a second is refused
//! until the first is resolved (by moderation).

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Report, ReportError};
pub use commands::ReportCommand;
pub use events::{ReportEvent, ReportReason};
