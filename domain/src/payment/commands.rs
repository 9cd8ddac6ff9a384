use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    /// A user buys a package. Starting the same purchase again with the same
    /// terms records nothing (a retried request); other terms are refused.
    StartPayment {
        user_id: Uuid,
        package_id: String,
        credits: i64,
        amount_cents: i64,
        currency: String,
        provider: String,
        at: DateTime<Utc>,
    },
    /// The provider's verdict on the payment (its answer to the charge, or a
    /// webhook). Amount and currency are the provider's: they must be the
    /// purchase's.
    SettlePayment {
        provider_payment_id: String,
        outcome: PaymentOutcome,
        amount_cents: i64,
        currency: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    Succeeded,
    /// Declined or failed; the provider's code (e.g. `card_declined`).
    Failed {
        code: String,
    },
}
