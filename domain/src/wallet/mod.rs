//! The Wallet aggregate (id = the owner's user id): credits granted, and later
//! reserved, captured and refunded by AI jobs.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Wallet, WalletError, SIGNUP_CREDITS};
pub use commands::{JobLimits, WalletCommand};
pub use events::{GrantReason, WalletEvent};
