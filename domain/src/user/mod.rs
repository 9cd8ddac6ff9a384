//! The User aggregate: a person's registration and public profile.
//!
//! Credentials (the password hash) deliberately live outside the event stream;
//! see ARCHITECTURE.md "Identity and credentials".

mod aggregate;
mod commands;
mod events;

pub use aggregate::{User, UserError};
pub use commands::{ProfileChanges, UserCommand};
pub(crate) use events::double_option;
pub use events::{Role, UserEvent, REGISTERED_VERSION};
