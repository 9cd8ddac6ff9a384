use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{PaymentCommand, PaymentEvent, PaymentOutcome};

/// Where a purchase stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentState {
    #[default]
    None,
    /// Started; the provider has not (yet) given a verdict.
    Pending,
    Succeeded,
    /// Declined or failed; a later success of the same payment still counts
    /// (the customer retried with another card).
    Failed,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Payment {
    state: PaymentState,
    user_id: Option<Uuid>,
    package_id: String,
    credits: i64,
    amount_cents: i64,
    currency: String,
    /// The provider's id, once it named one.
    provider_payment_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("no such purchase")]
    NotStarted,
    #[error("this purchase was started with other terms")]
    TermsDiffer,
    #[error("the provider's amount or currency is not the purchase's")]
    AmountMismatch,
    #[error("the purchase is already paid by another payment")]
    OtherPayment,
    #[error("a purchase must cost something and grant something")]
    NonPositiveAmount,
}

impl Payment {
    pub const TYPE_NAME: &'static str = "Payment";

    pub fn state(&self) -> PaymentState {
        self.state
    }

    pub fn user_id(&self) -> Option<Uuid> {
        self.user_id
    }

    /// Credits the purchase grants.
    pub fn credits(&self) -> i64 {
        self.credits
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            PaymentCommand::StartPayment {
                user_id,
                package_id,
                credits,
                amount_cents,
                currency,
                provider,
                at,
            } => {
                if credits <= 0 || amount_cents <= 0 {
                    return Err(PaymentError::NonPositiveAmount);
                }
                if self.state != PaymentState::None {
                    let same = self.user_id == Some(user_id)
                        && self.package_id == package_id
                        && self.credits == credits
                        && self.amount_cents == amount_cents
                        && self.currency == currency;
                    return if same {
                        Ok(())
                    } else {
                        Err(PaymentError::TermsDiffer)
                    };
                }
                let event = PaymentEvent::PaymentStarted {
                    user_id,
                    package_id,
                    credits,
                    amount_cents,
                    currency,
                    provider,
                    started_at: at,
                };
                sink.write(event, self).await;
                Ok(())
            }
            PaymentCommand::SettlePayment {
                provider_payment_id,
                outcome,
                amount_cents,
                currency,
                at,
            } => {
                if self.state == PaymentState::None {
                    return Err(PaymentError::NotStarted);
                }
                if let Some(known) = &self.provider_payment_id {
                    if *known != provider_payment_id {
                        return Err(PaymentError::OtherPayment);
                    }
                }
                if amount_cents != self.amount_cents
                    || !currency.eq_ignore_ascii_case(&self.currency)
                {
                    return Err(PaymentError::AmountMismatch);
                }
                let event = match (outcome, self.state) {
                    // the verdict is known: a repeated or late message changes nothing
                    (_, PaymentState::Succeeded) => return Ok(()),
                    (PaymentOutcome::Failed { .. }, PaymentState::Failed) => return Ok(()),
                    (PaymentOutcome::Succeeded, _) => PaymentEvent::PaymentSucceeded {
                        provider_payment_id,
                        succeeded_at: at,
                    },
                    (PaymentOutcome::Failed { code }, _) => PaymentEvent::PaymentFailed {
                        provider_payment_id,
                        code,
                        failed_at: at,
                    },
                };
                sink.write(event, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PaymentEvent::PaymentStarted {
                user_id,
                package_id,
                credits,
                amount_cents,
                currency,
                ..
            } => {
                self.state = PaymentState::Pending;
                self.user_id = Some(user_id);
                self.package_id = package_id;
                self.credits = credits;
                self.amount_cents = amount_cents;
                self.currency = currency;
            }
            PaymentEvent::PaymentSucceeded {
                provider_payment_id,
                ..
            } => {
                self.state = PaymentState::Succeeded;
                self.provider_payment_id = Some(provider_payment_id);
            }
            PaymentEvent::PaymentFailed {
                provider_payment_id,
                ..
            } => {
                self.state = PaymentState::Failed;
                self.provider_payment_id = Some(provider_payment_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use cqrs_es::test::TestFramework;

    fn at() -> chrono::DateTime<chrono::Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    fn user() -> Uuid {
        Uuid::from_u128(1)
    }

    fn start(package: &str, credits: i64) -> PaymentCommand {
        PaymentCommand::StartPayment {
            user_id: user(),
            package_id: package.to_owned(),
            credits,
            amount_cents: 99,
            currency: "usd".to_owned(),
            provider: "stripe".to_owned(),
            at: at(),
        }
    }

    fn started() -> PaymentEvent {
        PaymentEvent::PaymentStarted {
            user_id: user(),
            package_id: "credits_100".to_owned(),
            credits: 100,
            amount_cents: 99,
            currency: "usd".to_owned(),
            provider: "stripe".to_owned(),
            started_at: at(),
        }
    }

    fn settle(pid: &str, outcome: PaymentOutcome, amount: i64) -> PaymentCommand {
        PaymentCommand::SettlePayment {
            provider_payment_id: pid.to_owned(),
            outcome,
            amount_cents: amount,
            currency: "USD".to_owned(),
            at: at(),
        }
    }

    fn succeeded(pid: &str) -> PaymentEvent {
        PaymentEvent::PaymentSucceeded {
            provider_payment_id: pid.to_owned(),
            succeeded_at: at(),
        }
    }

    fn declined() -> PaymentOutcome {
        PaymentOutcome::Failed {
            code: "card_declined".to_owned(),
        }
    }

    fn failed(pid: &str) -> PaymentEvent {
        PaymentEvent::PaymentFailed {
            provider_payment_id: pid.to_owned(),
            code: "card_declined".to_owned(),
            failed_at: at(),
        }
    }

    #[test]
    fn a_purchase_starts_once() {
        TestFramework::<Payment>::with(())
            .given_no_previous_events()
            .when(start("credits_100", 100))
            .then_expect_events(vec![started()]);
        TestFramework::<Payment>::with(())
            .given(vec![started()])
            .when(start("credits_100", 100))
            .then_expect_events(vec![]);
    }

    #[test]
    fn the_same_purchase_with_other_terms_is_refused() {
        TestFramework::<Payment>::with(())
            .given(vec![started()])
            .when(start("credits_500", 500))
            .then_expect_error(PaymentError::TermsDiffer);
    }

    #[test]
    fn a_free_purchase_is_refused() {
        TestFramework::<Payment>::with(())
            .given_no_previous_events()
            .when(start("credits_100", 0))
            .then_expect_error(PaymentError::NonPositiveAmount);
    }

    #[test]
    fn settling_an_unknown_purchase_is_refused() {
        TestFramework::<Payment>::with(())
            .given_no_previous_events()
            .when(settle("pi_1", PaymentOutcome::Succeeded, 99))
            .then_expect_error(PaymentError::NotStarted);
    }

    #[test]
    fn success_is_recorded_once() {
        TestFramework::<Payment>::with(())
            .given(vec![started()])
            .when(settle("pi_1", PaymentOutcome::Succeeded, 99))
            .then_expect_events(vec![succeeded("pi_1")]);
        TestFramework::<Payment>::with(())
            .given(vec![started(), succeeded("pi_1")])
            .when(settle("pi_1", PaymentOutcome::Succeeded, 99))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_late_failure_after_success_changes_nothing() {
        TestFramework::<Payment>::with(())
            .given(vec![started(), succeeded("pi_1")])
            .when(settle("pi_1", declined(), 99))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_failure_is_recorded_once_and_a_later_success_counts() {
        TestFramework::<Payment>::with(())
            .given(vec![started()])
            .when(settle("pi_1", declined(), 99))
            .then_expect_events(vec![failed("pi_1")]);
        TestFramework::<Payment>::with(())
            .given(vec![started(), failed("pi_1")])
            .when(settle("pi_1", declined(), 99))
            .then_expect_events(vec![]);
        TestFramework::<Payment>::with(())
            .given(vec![started(), failed("pi_1")])
            .when(settle("pi_1", PaymentOutcome::Succeeded, 99))
            .then_expect_events(vec![succeeded("pi_1")]);
    }

    #[test]
    fn another_amount_is_refused() {
        TestFramework::<Payment>::with(())
            .given(vec![started()])
            .when(settle("pi_1", PaymentOutcome::Succeeded, 1))
            .then_expect_error(PaymentError::AmountMismatch);
    }

    #[test]
    fn another_payment_for_a_settled_purchase_is_refused() {
        TestFramework::<Payment>::with(())
            .given(vec![started(), failed("pi_1")])
            .when(settle("pi_2", PaymentOutcome::Succeeded, 99))
            .then_expect_error(PaymentError::OtherPayment);
    }
}
