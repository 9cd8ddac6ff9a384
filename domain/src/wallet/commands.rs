use chrono::{DateTime, Utc};

use super::GrantReason;

#[derive(Debug, Clone, PartialEq)]
pub enum WalletCommand {
    /// Adds credits. `reference` identifies the grant (e.g. `signup`, a
    /// payment id): granting the same reference twice records nothing.
    GrantCredits {
        amount: i64,
        reason: GrantReason,
        reference: String,
        at: DateTime<Utc>,
    },
}
