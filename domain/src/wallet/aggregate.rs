use std::collections::HashSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{WalletCommand, WalletEvent};

/// Credits every new account receives.
pub const SIGNUP_CREDITS: i64 = 100;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Wallet {
    balance: i64,
    grant_references: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("amount must be positive")]
    NonPositiveAmount,
}

impl Wallet {
    pub const TYPE_NAME: &'static str = "Wallet";

    pub fn balance(&self) -> i64 {
        self.balance
    }
}

impl Aggregate for Wallet {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = WalletCommand;
    type Event = WalletEvent;
    type Error = WalletError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            WalletCommand::GrantCredits {
                amount,
                reason,
                reference,
                at,
            } => {
                if amount <= 0 {
                    return Err(WalletError::NonPositiveAmount);
                }
                if self.grant_references.contains(&reference) {
                    return Ok(());
                }
                let event = WalletEvent::CreditsGranted {
                    amount,
                    reason,
                    reference,
                    balance_after: self.balance + amount,
                    granted_at: at,
                };
                sink.write(event, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            WalletEvent::CreditsGranted {
                amount, reference, ..
            } => {
                self.balance += amount;
                self.grant_references.insert(reference);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wallet::GrantReason;
    use chrono::{TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    fn at() -> chrono::DateTime<chrono::Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn grant(amount: i64, reference: &str) -> WalletCommand {
        WalletCommand::GrantCredits {
            amount,
            reason: GrantReason::Signup,
            reference: reference.to_owned(),
            at: at(),
        }
    }

    fn granted(amount: i64, reference: &str, balance_after: i64) -> WalletEvent {
        WalletEvent::CreditsGranted {
            amount,
            reason: GrantReason::Signup,
            reference: reference.to_owned(),
            balance_after,
            granted_at: at(),
        }
    }

    #[test]
    fn signup_grant_gives_credits() {
        TestFramework::<Wallet>::with(())
            .given_no_previous_events()
            .when(grant(SIGNUP_CREDITS, "signup"))
            .then_expect_events(vec![granted(100, "signup", 100)]);
    }

    #[test]
    fn balance_after_accumulates() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100)])
            .when(grant(20, "pay_1"))
            .then_expect_events(vec![granted(20, "pay_1", 120)]);
    }

    #[test]
    fn same_reference_twice_records_nothing() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100)])
            .when(grant(100, "signup"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn non_positive_amount_is_refused() {
        TestFramework::<Wallet>::with(())
            .given_no_previous_events()
            .when(grant(0, "x"))
            .then_expect_error(WalletError::NonPositiveAmount);
        TestFramework::<Wallet>::with(())
            .given_no_previous_events()
            .when(grant(-5, "y"))
            .then_expect_error(WalletError::NonPositiveAmount);
    }
}
