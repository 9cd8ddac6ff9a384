use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::NaiveDate;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{WalletCommand, WalletEvent};

/// Credits every new account receives.
pub const SIGNUP_CREDITS: i64 = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Wallet {
    /// Spendable credits (reservations already taken out).
    balance: i64,
    grant_references: HashSet<String>,
    /// Open reservations: job → credits held.
    #[serde(default)]
    reserved: BTreeMap<Uuid, i64>,
    /// Jobs whose reservation was captured or refunded.
    #[serde(default)]
    settled: HashSet<Uuid>,
    /// Free jobs holding a slot.
    #[serde(default)]
    free_active: BTreeSet<Uuid>,
    /// Free jobs admitted on `free_day` (UTC).
    #[serde(default)]
    free_day: Option<NaiveDate>,
    #[serde(default)]
    free_today: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("amount must be positive")]
    NonPositiveAmount,
    #[error("insufficient credits: {needed} needed, {balance} available")]
    InsufficientCredits { needed: i64, balance: i64 },
    #[error("no reservation for this job")]
    NoReservation,
    #[error("this job's reservation is already settled")]
    AlreadySettled,
    #[error("{limit} jobs of this kind are already running")]
    TooManyActiveJobs { limit: u32 },
    #[error("today's {limit} free jobs are used up")]
    DailyQuotaExceeded { limit: u32 },
}

impl Wallet {
    pub const TYPE_NAME: &'static str = "Wallet";

    pub fn balance(&self) -> i64 {
        self.balance
    }

    /// The reservation of `amount` for `job_id`, if the balance covers it.
    fn reservation(
        &self,
        job_id: Uuid,
        amount: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<WalletEvent, WalletError> {
        if self.balance < amount {
            return Err(WalletError::InsufficientCredits {
                needed: amount,
                balance: self.balance,
            });
        }
        Ok(WalletEvent::CreditsReserved {
            job_id,
            amount,
            balance_after: self.balance - amount,
            reserved_at: at,
        })
    }

    /// Settling twice is a no-op (the saga may see its trigger again);
    /// settling what was never reserved is an error.
    fn already_settled_or_missing(&self, job_id: Uuid) -> Result<(), WalletError> {
        if self.settled.contains(&job_id) {
            Ok(())
        } else {
            Err(WalletError::NoReservation)
        }
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
            WalletCommand::ReserveCredits { job_id, amount, at } => {
                if amount <= 0 {
                    return Err(WalletError::NonPositiveAmount);
                }
                if self.reserved.contains_key(&job_id) {
                    return Ok(());
                }
                if self.settled.contains(&job_id) {
                    return Err(WalletError::AlreadySettled);
                }
                let event = self.reservation(job_id, amount, at)?;
                sink.write(event, self).await;
                Ok(())
            }
            WalletCommand::AdmitJob {
                job_id,
                cost,
                limits,
                at,
            } => {
                if cost < 0 {
                    return Err(WalletError::NonPositiveAmount);
                }
                if self.reserved.contains_key(&job_id) || self.free_active.contains(&job_id) {
                    return Ok(());
                }
                if self.settled.contains(&job_id) {
                    return Err(WalletError::AlreadySettled);
                }
                let event = if cost == 0 {
                    if self.free_active.len() >= limits.max_active_free as usize {
                        return Err(WalletError::TooManyActiveJobs {
                            limit: limits.max_active_free,
                        });
                    }
                    let today = at.date_naive();
                    let used = if self.free_day == Some(today) {
                        self.free_today
                    } else {
                        0
                    };
                    if used >= limits.free_per_day {
                        return Err(WalletError::DailyQuotaExceeded {
                            limit: limits.free_per_day,
                        });
                    }
                    WalletEvent::FreeJobAdmitted {
                        job_id,
                        admitted_at: at,
                    }
                } else {
                    if self.reserved.len() >= limits.max_active as usize {
                        return Err(WalletError::TooManyActiveJobs {
                            limit: limits.max_active,
                        });
                    }
                    self.reservation(job_id, cost, at)?
                };
                sink.write(event, self).await;
                Ok(())
            }
            WalletCommand::ReleaseFreeJob { job_id, at } => {
                if !self.free_active.contains(&job_id) {
                    return Ok(());
                }
                let event = WalletEvent::FreeJobReleased {
                    job_id,
                    released_at: at,
                };
                sink.write(event, self).await;
                Ok(())
            }
            WalletCommand::CaptureCredits { job_id, at } => {
                let Some(&amount) = self.reserved.get(&job_id) else {
                    return self.already_settled_or_missing(job_id);
                };
                let event = WalletEvent::CreditsCaptured {
                    job_id,
                    amount,
                    captured_at: at,
                };
                sink.write(event, self).await;
                Ok(())
            }
            WalletCommand::RefundCredits { job_id, at } => {
                let Some(&amount) = self.reserved.get(&job_id) else {
                    return self.already_settled_or_missing(job_id);
                };
                let event = WalletEvent::CreditsRefunded {
                    job_id,
                    amount,
                    balance_after: self.balance + amount,
                    refunded_at: at,
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
            WalletEvent::CreditsReserved { job_id, amount, .. } => {
                self.balance -= amount;
                self.reserved.insert(job_id, amount);
            }
            WalletEvent::CreditsCaptured { job_id, .. } => {
                self.reserved.remove(&job_id);
                self.settled.insert(job_id);
            }
            WalletEvent::CreditsRefunded { job_id, amount, .. } => {
                self.balance += amount;
                self.reserved.remove(&job_id);
                self.settled.insert(job_id);
            }
            WalletEvent::FreeJobAdmitted {
                job_id,
                admitted_at,
            } => {
                self.free_active.insert(job_id);
                let day = admitted_at.date_naive();
                if self.free_day == Some(day) {
                    self.free_today += 1;
                } else {
                    self.free_day = Some(day);
                    self.free_today = 1;
                }
            }
            WalletEvent::FreeJobReleased { job_id, .. } => {
                self.free_active.remove(&job_id);
                self.settled.insert(job_id);
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

    fn job() -> Uuid {
        Uuid::from_u128(7)
    }

    fn reserve(amount: i64) -> WalletCommand {
        WalletCommand::ReserveCredits {
            job_id: job(),
            amount,
            at: at(),
        }
    }

    fn reserved(amount: i64, balance_after: i64) -> WalletEvent {
        WalletEvent::CreditsReserved {
            job_id: job(),
            amount,
            balance_after,
            reserved_at: at(),
        }
    }

    fn captured(amount: i64) -> WalletEvent {
        WalletEvent::CreditsCaptured {
            job_id: job(),
            amount,
            captured_at: at(),
        }
    }

    fn refunded(amount: i64, balance_after: i64) -> WalletEvent {
        WalletEvent::CreditsRefunded {
            job_id: job(),
            amount,
            balance_after,
            refunded_at: at(),
        }
    }

    fn capture() -> WalletCommand {
        WalletCommand::CaptureCredits {
            job_id: job(),
            at: at(),
        }
    }

    fn refund() -> WalletCommand {
        WalletCommand::RefundCredits {
            job_id: job(),
            at: at(),
        }
    }

    #[test]
    fn reserve_takes_credits_out_of_the_balance() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100)])
            .when(reserve(30))
            .then_expect_events(vec![reserved(30, 70)]);
    }

    #[test]
    fn reserve_more_than_the_balance_is_refused() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100), {
                WalletEvent::CreditsReserved {
                    job_id: Uuid::from_u128(1),
                    amount: 90,
                    balance_after: 10,
                    reserved_at: at(),
                }
            }])
            .when(reserve(30))
            .then_expect_error(WalletError::InsufficientCredits {
                needed: 30,
                balance: 10,
            });
    }

    #[test]
    fn reserve_nothing_is_refused() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100)])
            .when(reserve(0))
            .then_expect_error(WalletError::NonPositiveAmount);
    }

    #[test]
    fn reserve_for_the_same_job_twice_records_nothing() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100), reserved(30, 70)])
            .when(reserve(30))
            .then_expect_events(vec![]);
    }

    #[test]
    fn reserve_for_a_settled_job_is_refused() {
        TestFramework::<Wallet>::with(())
            .given(vec![
                granted(100, "signup", 100),
                reserved(30, 70),
                refunded(30, 100),
            ])
            .when(reserve(30))
            .then_expect_error(WalletError::AlreadySettled);
    }

    #[test]
    fn capture_spends_the_reservation_once() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100), reserved(30, 70)])
            .when(capture())
            .then_expect_events(vec![captured(30)]);
        TestFramework::<Wallet>::with(())
            .given(vec![
                granted(100, "signup", 100),
                reserved(30, 70),
                captured(30),
            ])
            .when(capture())
            .then_expect_events(vec![]);
    }

    #[test]
    fn refund_returns_the_reservation_once() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100), reserved(30, 70)])
            .when(refund())
            .then_expect_events(vec![refunded(30, 100)]);
        TestFramework::<Wallet>::with(())
            .given(vec![
                granted(100, "signup", 100),
                reserved(30, 70),
                refunded(30, 100),
            ])
            .when(refund())
            .then_expect_events(vec![]);
    }

    #[test]
    fn refund_after_capture_records_nothing() {
        TestFramework::<Wallet>::with(())
            .given(vec![
                granted(100, "signup", 100),
                reserved(30, 70),
                captured(30),
            ])
            .when(refund())
            .then_expect_events(vec![]);
    }

    #[test]
    fn settling_without_a_reservation_is_refused() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100)])
            .when(capture())
            .then_expect_error(WalletError::NoReservation);
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100)])
            .when(refund())
            .then_expect_error(WalletError::NoReservation);
    }

    const LIMITS: crate::wallet::JobLimits = crate::wallet::JobLimits {
        max_active: 2,
        max_active_free: 1,
        free_per_day: 2,
    };

    fn admit(job: u128, cost: i64, hour: u32) -> WalletCommand {
        WalletCommand::AdmitJob {
            job_id: Uuid::from_u128(job),
            cost,
            limits: LIMITS,
            at: Utc.with_ymd_and_hms(2026, 11, 23, hour, 0, 0).unwrap(),
        }
    }

    fn free_admitted(job: u128, hour: u32) -> WalletEvent {
        WalletEvent::FreeJobAdmitted {
            job_id: Uuid::from_u128(job),
            admitted_at: Utc.with_ymd_and_hms(2026, 11, 23, hour, 0, 0).unwrap(),
        }
    }

    fn free_released(job: u128) -> WalletEvent {
        WalletEvent::FreeJobReleased {
            job_id: Uuid::from_u128(job),
            released_at: at(),
        }
    }

    fn paid(job: u128, amount: i64, balance_after: i64) -> WalletEvent {
        WalletEvent::CreditsReserved {
            job_id: Uuid::from_u128(job),
            amount,
            balance_after,
            reserved_at: Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap(),
        }
    }

    #[test]
    fn a_paid_job_is_admitted_by_reserving_its_cost() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100)])
            .when(admit(1, 30, 1))
            .then_expect_events(vec![paid(1, 30, 70)]);
        // again: nothing
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100), paid(1, 30, 70)])
            .when(admit(1, 30, 1))
            .then_expect_events(vec![]);
    }

    #[test]
    fn paid_jobs_beyond_the_active_limit_are_refused() {
        TestFramework::<Wallet>::with(())
            .given(vec![
                granted(100, "signup", 100),
                paid(1, 10, 90),
                paid(2, 10, 80),
            ])
            .when(admit(3, 10, 1))
            .then_expect_error(WalletError::TooManyActiveJobs { limit: 2 });
    }

    #[test]
    fn a_paid_job_without_the_credits_is_refused() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(20, "signup", 20)])
            .when(admit(1, 30, 1))
            .then_expect_error(WalletError::InsufficientCredits {
                needed: 30,
                balance: 20,
            });
    }

    #[test]
    fn a_settled_job_is_not_admitted_again() {
        TestFramework::<Wallet>::with(())
            .given(vec![
                granted(100, "signup", 100),
                free_admitted(5, 1),
                free_released(5),
            ])
            .when(admit(5, 0, 2))
            .then_expect_error(WalletError::AlreadySettled);
    }

    #[test]
    fn a_negative_cost_is_refused() {
        TestFramework::<Wallet>::with(())
            .given_no_previous_events()
            .when(admit(1, -1, 1))
            .then_expect_error(WalletError::NonPositiveAmount);
    }

    #[test]
    fn free_jobs_have_their_own_slots_and_do_not_keep_paid_ones_out() {
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100)])
            .when(admit(1, 0, 1))
            .then_expect_events(vec![free_admitted(1, 1)]);
        // the free slot is taken: another free job waits…
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100), free_admitted(1, 1)])
            .when(admit(2, 0, 1))
            .then_expect_error(WalletError::TooManyActiveJobs { limit: 1 });
        // …a paid one does not
        TestFramework::<Wallet>::with(())
            .given(vec![granted(100, "signup", 100), free_admitted(1, 1)])
            .when(admit(3, 30, 1))
            .then_expect_events(vec![paid(3, 30, 70)]);
    }

    #[test]
    fn free_jobs_are_counted_per_day() {
        let two_today = vec![
            granted(100, "signup", 100),
            free_admitted(1, 1),
            free_released(1),
            free_admitted(2, 2),
            free_released(2),
        ];
        TestFramework::<Wallet>::with(())
            .given(two_today.clone())
            .when(admit(3, 0, 3))
            .then_expect_error(WalletError::DailyQuotaExceeded { limit: 2 });
        // the next day starts afresh
        TestFramework::<Wallet>::with(())
            .given(two_today)
            .when(WalletCommand::AdmitJob {
                job_id: Uuid::from_u128(3),
                cost: 0,
                limits: LIMITS,
                at: Utc.with_ymd_and_hms(2026, 11, 24, 0, 5, 0).unwrap(),
            })
            .then_expect_events(vec![WalletEvent::FreeJobAdmitted {
                job_id: Uuid::from_u128(3),
                admitted_at: Utc.with_ymd_and_hms(2026, 11, 24, 0, 5, 0).unwrap(),
            }]);
    }

    #[test]
    fn a_free_slot_is_released_once() {
        TestFramework::<Wallet>::with(())
            .given(vec![free_admitted(1, 1)])
            .when(WalletCommand::ReleaseFreeJob {
                job_id: Uuid::from_u128(1),
                at: at(),
            })
            .then_expect_events(vec![free_released(1)]);
        TestFramework::<Wallet>::with(())
            .given(vec![free_admitted(1, 1), free_released(1)])
            .when(WalletCommand::ReleaseFreeJob {
                job_id: Uuid::from_u128(1),
                at: at(),
            })
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
