//! The Subscription aggregate (id = the user id): a user's paid plan, from
//! the provider's first successful payment through its renewals to its end.
//! Renewals, payment failures and the end arrive from the payment provider
//! (its signed webhook), each possibly twice or late: a period already
//! recorded records nothing, so the subscription saga grants each period's
//! credits once (the wallet's grant reference names the period).
//!
//! A subscription ends at the end of its paid period when the user cancels
//! or a renewal payment fails; it is over when that moment has passed or
//! the provider says it ended.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Subscription, SubscriptionError};
pub use commands::SubscriptionCommand;
pub use events::SubscriptionEvent;
