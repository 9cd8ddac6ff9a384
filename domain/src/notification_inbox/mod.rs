//! The NotificationInbox aggregate (id = the user's id): what a user did
//! with their notifications — which they read, and which kinds they want.
//! The notifications themselves are a projection of other aggregates'
//! events (`projections/src/notifications.rs`); read marks and settings are
//! events here so that a rebuild restores them.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{NotificationInbox, NotificationInboxError, MARK_READ_MAX};
pub use commands::NotificationInboxCommand;
pub use events::{NotificationInboxEvent, NotificationKind, NotificationSettings};
