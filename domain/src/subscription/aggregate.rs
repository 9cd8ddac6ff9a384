use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SubscriptionCommand, SubscriptionEvent};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Subscription {
    user_id: Option<Uuid>,
    plan: String,
    credits_per_month: i64,
    /// The provider's id of the latest subscription started.
    provider_subscription_id: Option<String>,
    period_start: Option<DateTime<Utc>>,
    period_end: Option<DateTime<Utc>>,
    /// When set, the subscription ends then (canceled, or a renewal failed).
    ends_at: Option<DateTime<Utc>>,
    canceled: bool,
    payment_failed: bool,
    /// The provider ended it.
    ended: bool,
    /// Start attempts so far: subscriptions started and first payments
    /// declined (the next attempt's provider idempotency key counts them).
    #[serde(default)]
    attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("a subscription is already running")]
    AlreadySubscribed,
    #[error("no running subscription")]
    NotSubscribed,
    #[error("the provider's message is about another subscription")]
    OtherSubscription,
    #[error("this subscription has ended")]
    SubscriptionEnded,
    #[error("a period must end after it starts")]
    InvalidPeriod,
    #[error("a subscription plan must grant credits")]
    NonPositiveCredits,
}

impl Subscription {
    pub const TYPE_NAME: &'static str = "Subscription";

    /// Started, and neither ended by the provider nor past the end it was
    /// given (cancellation or failed renewal) at `at`.
    pub fn is_running(&self, at: DateTime<Utc>) -> bool {
        self.provider_subscription_id.is_some()
            && !self.ended
            && self.ends_at.is_none_or(|end| at < end)
    }

    pub fn provider_subscription_id(&self) -> Option<&str> {
        self.provider_subscription_id.as_deref()
    }

    /// Start attempts so far (subscriptions started, first payments
    /// declined): the next attempt's number.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The provider id a provider's message must name.
    fn check_provider_id(&self, id: &str) -> Result<(), SubscriptionError> {
        match &self.provider_subscription_id {
            None => Err(SubscriptionError::NotSubscribed),
            Some(known) if known != id => Err(SubscriptionError::OtherSubscription),
            Some(_) => Ok(()),
        }
    }
}

impl Aggregate for Subscription {
    const TYPE: &'static str = Self::TYPE_NAME;
    type Command = SubscriptionCommand;
    type Event = SubscriptionEvent;
    type Error = SubscriptionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            SubscriptionCommand::StartSubscription {
                user_id,
                plan,
                credits_per_month,
                provider,
                provider_subscription_id,
                period_start,
                period_end,
                at,
            } => {
                if credits_per_month <= 0 {
                    return Err(SubscriptionError::NonPositiveCredits);
                }
                if period_end <= period_start {
                    return Err(SubscriptionError::InvalidPeriod);
                }
                let same = self.provider_subscription_id.as_deref()
                    == Some(provider_subscription_id.as_str());
                if self.is_running(at) {
                    return if same {
                        Ok(())
                    } else {
                        Err(SubscriptionError::AlreadySubscribed)
                    };
                }
                if same {
                    return Err(SubscriptionError::SubscriptionEnded);
                }
                SubscriptionEvent::SubscriptionStarted {
                    user_id,
                    plan,
                    credits_per_month,
                    provider,
                    provider_subscription_id,
                    period_start,
                    period_end,
                    started_at: at,
                }
            }
            SubscriptionCommand::DeclineStart {
                attempt,
                plan,
                code,
                at,
            } => {
                if attempt != self.attempts {
                    return Ok(());
                }
                SubscriptionEvent::SubscriptionDeclined {
                    attempt,
                    plan,
                    code,
                    declined_at: at,
                }
            }
            SubscriptionCommand::RenewSubscription {
                provider_subscription_id,
                invoice_id,
                period_start,
                period_end,
                at,
            } => {
                self.check_provider_id(&provider_subscription_id)?;
                if period_end <= period_start {
                    return Err(SubscriptionError::InvalidPeriod);
                }
                if self.period_start.is_some_and(|known| period_start <= known) {
                    // this period (or a later one) is recorded: a repeated or late invoice
                    return Ok(());
                }
                // canceled: no period past its end is paid for
                let past_cancel = self.canceled && self.ends_at.is_some_and(|e| period_start >= e);
                if self.ended || past_cancel {
                    return Err(SubscriptionError::SubscriptionEnded);
                }
                let Some(user_id) = self.user_id else {
                    return Err(SubscriptionError::NotSubscribed);
                };
                SubscriptionEvent::SubscriptionRenewed {
                    user_id,
                    plan: self.plan.clone(),
                    credits_per_month: self.credits_per_month,
                    provider_subscription_id,
                    invoice_id,
                    period_start,
                    period_end,
                    renewed_at: at,
                }
            }
            SubscriptionCommand::RecordPaymentFailure {
                provider_subscription_id,
                invoice_id,
                period_start,
                at,
            } => {
                self.check_provider_id(&provider_subscription_id)?;
                let stale = self.period_start.is_some_and(|known| period_start <= known);
                if self.ended || self.payment_failed || stale {
                    return Ok(());
                }
                let Some(ends_at) = self.period_end else {
                    return Err(SubscriptionError::NotSubscribed);
                };
                SubscriptionEvent::SubscriptionPaymentFailed {
                    provider_subscription_id,
                    invoice_id,
                    ends_at,
                    failed_at: at,
                }
            }
            SubscriptionCommand::CancelSubscription { at } => {
                if !self.is_running(at) {
                    return Err(SubscriptionError::NotSubscribed);
                }
                if self.canceled {
                    return Ok(());
                }
                let Some(ends_at) = self.period_end else {
                    return Err(SubscriptionError::NotSubscribed);
                };
                SubscriptionEvent::SubscriptionCanceled {
                    ends_at,
                    canceled_at: at,
                }
            }
            SubscriptionCommand::EndSubscription {
                provider_subscription_id,
                at,
            } => {
                self.check_provider_id(&provider_subscription_id)?;
                if self.ended {
                    return Ok(());
                }
                SubscriptionEvent::SubscriptionEnded {
                    provider_subscription_id,
                    ended_at: at,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            SubscriptionEvent::SubscriptionStarted {
                user_id,
                plan,
                credits_per_month,
                provider_subscription_id,
                period_start,
                period_end,
                ..
            } => {
                *self = Subscription {
                    user_id: Some(user_id),
                    plan,
                    credits_per_month,
                    provider_subscription_id: Some(provider_subscription_id),
                    period_start: Some(period_start),
                    period_end: Some(period_end),
                    attempts: self.attempts + 1,
                    ..Subscription::default()
                };
            }
            SubscriptionEvent::SubscriptionDeclined { .. } => {
                self.attempts += 1;
            }
            SubscriptionEvent::SubscriptionRenewed {
                period_start,
                period_end,
                ..
            } => {
                self.period_start = Some(period_start);
                self.period_end = Some(period_end);
                // paid again: a failed renewal no longer ends it; a
                // cancellation still does, at the end of the new period
                self.payment_failed = false;
                self.ends_at = self.canceled.then_some(period_end);
            }
            SubscriptionEvent::SubscriptionPaymentFailed { ends_at, .. } => {
                self.payment_failed = true;
                self.ends_at = Some(ends_at);
            }
            SubscriptionEvent::SubscriptionCanceled { ends_at, .. } => {
                self.canceled = true;
                self.ends_at = Some(ends_at);
            }
            SubscriptionEvent::SubscriptionEnded { ended_at, .. } => {
                self.ended = true;
                self.ends_at = Some(self.ends_at.map_or(ended_at, |e| e.min(ended_at)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;

    const U: Uuid = Uuid::from_u128(7);

    fn day(d: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + Duration::days(d)
    }

    fn start_at(sub: &str, at: DateTime<Utc>) -> SubscriptionCommand {
        SubscriptionCommand::StartSubscription {
            user_id: U,
            plan: "pro".to_owned(),
            credits_per_month: 1000,
            provider: "stripe".to_owned(),
            provider_subscription_id: sub.to_owned(),
            period_start: at,
            period_end: at + Duration::days(30),
            at,
        }
    }

    fn started_at(sub: &str, at: DateTime<Utc>) -> SubscriptionEvent {
        SubscriptionEvent::SubscriptionStarted {
            user_id: U,
            plan: "pro".to_owned(),
            credits_per_month: 1000,
            provider: "stripe".to_owned(),
            provider_subscription_id: sub.to_owned(),
            period_start: at,
            period_end: at + Duration::days(30),
            started_at: at,
        }
    }

    fn started() -> SubscriptionEvent {
        started_at("sub_1", day(0))
    }

    fn renew(sub: &str, from: i64, at: i64) -> SubscriptionCommand {
        SubscriptionCommand::RenewSubscription {
            provider_subscription_id: sub.to_owned(),
            invoice_id: format!("in_{from}"),
            period_start: day(from),
            period_end: day(from + 30),
            at: day(at),
        }
    }

    fn renewed(from: i64, at: i64) -> SubscriptionEvent {
        SubscriptionEvent::SubscriptionRenewed {
            user_id: U,
            plan: "pro".to_owned(),
            credits_per_month: 1000,
            provider_subscription_id: "sub_1".to_owned(),
            invoice_id: format!("in_{from}"),
            period_start: day(from),
            period_end: day(from + 30),
            renewed_at: day(at),
        }
    }

    fn fail(sub: &str, from: i64, at: i64) -> SubscriptionCommand {
        SubscriptionCommand::RecordPaymentFailure {
            provider_subscription_id: sub.to_owned(),
            invoice_id: format!("in_{from}"),
            period_start: day(from),
            at: day(at),
        }
    }

    fn failed(from: i64, ends: i64, at: i64) -> SubscriptionEvent {
        SubscriptionEvent::SubscriptionPaymentFailed {
            provider_subscription_id: "sub_1".to_owned(),
            invoice_id: format!("in_{from}"),
            ends_at: day(ends),
            failed_at: day(at),
        }
    }

    fn canceled(ends: i64, at: i64) -> SubscriptionEvent {
        SubscriptionEvent::SubscriptionCanceled {
            ends_at: day(ends),
            canceled_at: day(at),
        }
    }

    fn end(sub: &str, at: i64) -> SubscriptionCommand {
        SubscriptionCommand::EndSubscription {
            provider_subscription_id: sub.to_owned(),
            at: day(at),
        }
    }

    fn ended(at: i64) -> SubscriptionEvent {
        SubscriptionEvent::SubscriptionEnded {
            provider_subscription_id: "sub_1".to_owned(),
            ended_at: day(at),
        }
    }

    fn framework() -> TestFramework<Subscription> {
        TestFramework::<Subscription>::with(())
    }

    #[test]
    fn a_subscription_starts_once() {
        framework()
            .given_no_previous_events()
            .when(start_at("sub_1", day(0)))
            .then_expect_events(vec![started()]);
        // the same provider subscription again (a retry, its first invoice)
        framework()
            .given(vec![started()])
            .when(start_at("sub_1", day(1)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn another_subscription_while_one_runs_is_refused() {
        framework()
            .given(vec![started()])
            .when(start_at("sub_2", day(1)))
            .then_expect_error(SubscriptionError::AlreadySubscribed);
        // a canceled one runs until its period ends
        framework()
            .given(vec![started(), canceled(30, 2)])
            .when(start_at("sub_2", day(29)))
            .then_expect_error(SubscriptionError::AlreadySubscribed);
    }

    #[test]
    fn a_new_subscription_may_start_after_the_last_one_is_over() {
        framework()
            .given(vec![started(), canceled(30, 2)])
            .when(start_at("sub_2", day(31)))
            .then_expect_events(vec![started_at("sub_2", day(31))]);
        framework()
            .given(vec![started(), ended(5)])
            .when(start_at("sub_2", day(6)))
            .then_expect_events(vec![started_at("sub_2", day(6))]);
    }

    #[test]
    fn an_ended_subscription_does_not_start_again() {
        framework()
            .given(vec![started(), ended(5)])
            .when(start_at("sub_1", day(6)))
            .then_expect_error(SubscriptionError::SubscriptionEnded);
    }

    #[test]
    fn a_start_needs_credits_and_a_period() {
        framework()
            .given_no_previous_events()
            .when(SubscriptionCommand::StartSubscription {
                user_id: U,
                plan: "free".to_owned(),
                credits_per_month: 0,
                provider: "stripe".to_owned(),
                provider_subscription_id: "sub_1".to_owned(),
                period_start: day(0),
                period_end: day(30),
                at: day(0),
            })
            .then_expect_error(SubscriptionError::NonPositiveCredits);
        framework()
            .given_no_previous_events()
            .when(SubscriptionCommand::StartSubscription {
                user_id: U,
                plan: "pro".to_owned(),
                credits_per_month: 1000,
                provider: "stripe".to_owned(),
                provider_subscription_id: "sub_1".to_owned(),
                period_start: day(30),
                period_end: day(30),
                at: day(0),
            })
            .then_expect_error(SubscriptionError::InvalidPeriod);
    }

    #[test]
    fn a_renewal_is_recorded_once_per_period() {
        framework()
            .given(vec![started()])
            .when(renew("sub_1", 30, 30))
            .then_expect_events(vec![renewed(30, 30)]);
        framework()
            .given(vec![started(), renewed(30, 30)])
            .when(renew("sub_1", 30, 31))
            .then_expect_events(vec![]);
        // the first invoice's period, or an older one arriving late
        framework()
            .given(vec![started(), renewed(30, 30)])
            .when(renew("sub_1", 0, 32))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_renewal_needs_the_subscription_and_a_period() {
        framework()
            .given_no_previous_events()
            .when(renew("sub_1", 30, 30))
            .then_expect_error(SubscriptionError::NotSubscribed);
        framework()
            .given(vec![started()])
            .when(renew("sub_2", 30, 30))
            .then_expect_error(SubscriptionError::OtherSubscription);
        framework()
            .given(vec![started()])
            .when(SubscriptionCommand::RenewSubscription {
                provider_subscription_id: "sub_1".to_owned(),
                invoice_id: "in_x".to_owned(),
                period_start: day(60),
                period_end: day(30),
                at: day(30),
            })
            .then_expect_error(SubscriptionError::InvalidPeriod);
    }

    #[test]
    fn an_ended_or_canceled_subscription_is_not_renewed() {
        framework()
            .given(vec![started(), ended(10)])
            .when(renew("sub_1", 30, 30))
            .then_expect_error(SubscriptionError::SubscriptionEnded);
        framework()
            .given(vec![started(), canceled(30, 2)])
            .when(renew("sub_1", 30, 31))
            .then_expect_error(SubscriptionError::SubscriptionEnded);
        // also before the end: a canceled subscription has no next period
        framework()
            .given(vec![started(), canceled(30, 2)])
            .when(renew("sub_1", 30, 5))
            .then_expect_error(SubscriptionError::SubscriptionEnded);
    }

    #[test]
    fn a_recovered_payment_renews_after_a_failure() {
        framework()
            .given(vec![started(), failed(30, 30, 30)])
            .when(renew("sub_1", 30, 33))
            .then_expect_events(vec![renewed(30, 33)]);
    }

    #[test]
    fn a_payment_failure_ends_the_subscription_at_its_period_end_once() {
        framework()
            .given(vec![started()])
            .when(fail("sub_1", 30, 30))
            .then_expect_events(vec![failed(30, 30, 30)]);
        framework()
            .given(vec![started(), failed(30, 30, 30)])
            .when(fail("sub_1", 30, 31))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_failure_for_a_paid_period_or_an_ended_subscription_changes_nothing() {
        framework()
            .given(vec![started(), renewed(30, 30)])
            .when(fail("sub_1", 30, 31))
            .then_expect_events(vec![]);
        framework()
            .given(vec![started(), ended(10)])
            .when(fail("sub_1", 30, 30))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_failure_needs_the_subscription() {
        framework()
            .given_no_previous_events()
            .when(fail("sub_1", 30, 30))
            .then_expect_error(SubscriptionError::NotSubscribed);
        framework()
            .given(vec![started()])
            .when(fail("sub_2", 30, 30))
            .then_expect_error(SubscriptionError::OtherSubscription);
    }

    #[test]
    fn cancel_runs_to_the_period_end_and_is_recorded_once() {
        framework()
            .given(vec![started(), renewed(30, 30)])
            .when(SubscriptionCommand::CancelSubscription { at: day(35) })
            .then_expect_events(vec![canceled(60, 35)]);
        framework()
            .given(vec![started(), canceled(30, 2)])
            .when(SubscriptionCommand::CancelSubscription { at: day(3) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn cancel_needs_a_running_subscription() {
        framework()
            .given_no_previous_events()
            .when(SubscriptionCommand::CancelSubscription { at: day(0) })
            .then_expect_error(SubscriptionError::NotSubscribed);
        framework()
            .given(vec![started(), ended(5)])
            .when(SubscriptionCommand::CancelSubscription { at: day(6) })
            .then_expect_error(SubscriptionError::NotSubscribed);
        framework()
            .given(vec![started(), canceled(30, 2)])
            .when(SubscriptionCommand::CancelSubscription { at: day(30) })
            .then_expect_error(SubscriptionError::NotSubscribed);
    }

    #[test]
    fn the_provider_ends_a_subscription_once() {
        framework()
            .given(vec![started()])
            .when(end("sub_1", 10))
            .then_expect_events(vec![ended(10)]);
        framework()
            .given(vec![started(), ended(10)])
            .when(end("sub_1", 11))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_end_needs_the_subscription() {
        framework()
            .given_no_previous_events()
            .when(end("sub_1", 10))
            .then_expect_error(SubscriptionError::NotSubscribed);
        framework()
            .given(vec![started()])
            .when(end("sub_2", 10))
            .then_expect_error(SubscriptionError::OtherSubscription);
    }

    #[test]
    fn running_depends_on_the_end_it_was_given() {
        let mut s = Subscription::default();
        assert!(!s.is_running(day(0)));
        s.apply(started());
        assert!(s.is_running(day(40)), "awaiting the provider's renewal");
        s.apply(failed(30, 30, 30));
        assert!(s.is_running(day(29)));
        assert!(!s.is_running(day(30)));
        assert_eq!(s.attempts(), 1);
    }

    fn decline(attempt: u32) -> SubscriptionCommand {
        SubscriptionCommand::DeclineStart {
            attempt,
            plan: "pro".to_owned(),
            code: "card_declined".to_owned(),
            at: day(0),
        }
    }

    fn declined(attempt: u32) -> SubscriptionEvent {
        SubscriptionEvent::SubscriptionDeclined {
            attempt,
            plan: "pro".to_owned(),
            code: "card_declined".to_owned(),
            declined_at: day(0),
        }
    }

    #[test]
    fn a_declined_attempt_counts_once_and_the_next_one_is_new() {
        framework()
            .given_no_previous_events()
            .when(decline(0))
            .then_expect_events(vec![declined(0)]);
        // the same attempt's decline again (a retried request)
        framework()
            .given(vec![declined(0)])
            .when(decline(0))
            .then_expect_events(vec![]);
        framework()
            .given(vec![declined(0), started_at("sub_1", day(1))])
            .when(decline(1))
            .then_expect_events(vec![]);
        let mut s = Subscription::default();
        s.apply(declined(0));
        s.apply(started_at("sub_1", day(1)));
        assert_eq!(s.attempts(), 2);
        assert!(s.is_running(day(2)));
    }
}
