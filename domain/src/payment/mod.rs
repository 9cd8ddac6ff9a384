//! The Payment aggregate (id = the purchase id): one credit purchase, from
//! the moment it is started to the provider's verdict. The API charges the
//! provider with an idempotency key derived from this id, so a retried
//! purchase is the same payment; the wallet grants on `PaymentSucceeded`
//! with the provider's payment id as the grant reference (once).

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Payment, PaymentError, PaymentState};
pub use commands::{PaymentCommand, PaymentOutcome};
pub use events::PaymentEvent;
