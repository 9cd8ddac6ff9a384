//! The Block aggregate (id = `<blocker id>:<blocked id>`): whether one user
//! blocks another. A block hides the two users from each other and forbids
//! likes, comments and follows between them (enforced by the API against the
//! `blocks` read model); the block saga removes their follows both ways.
//! Blocking twice or unblocking who is not blocked records nothing.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Block, BlockError};
pub use commands::BlockCommand;
pub use events::BlockEvent;
