//! LOKIZ domain: aggregates, their commands and events, and the value types
//! commands are built from.
//!
//! Invariant: this crate performs no I/O. It depends on no sqlx, axum or NATS
//! crate; time and identifiers arrive inside commands.

pub mod user;
pub mod values;
pub mod wallet;

/// Every aggregate type name as stored in the event store's `aggregate_type`
/// column and used in NATS subjects.
pub const AGGREGATE_TYPES: &[&str] = &[user::User::TYPE_NAME, wallet::Wallet::TYPE_NAME];
