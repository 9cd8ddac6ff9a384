use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantReason {
    Signup,
    Purchase,
    Subscription,
}

impl GrantReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantReason::Signup => "signup",
            GrantReason::Purchase => "purchase",
            GrantReason::Subscription => "subscription",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WalletEvent {
    CreditsGranted {
        amount: i64,
        reason: GrantReason,
        reference: String,
        balance_after: i64,
        granted_at: DateTime<Utc>,
    },
    CreditsReserved {
        job_id: Uuid,
        amount: i64,
        balance_after: i64,
        reserved_at: DateTime<Utc>,
    },
    CreditsCaptured {
        job_id: Uuid,
        amount: i64,
        captured_at: DateTime<Utc>,
    },
    CreditsRefunded {
        job_id: Uuid,
        amount: i64,
        balance_after: i64,
        refunded_at: DateTime<Utc>,
    },
    /// A free (0-credit) job took one of the owner's free slots.
    FreeJobAdmitted {
        job_id: Uuid,
        admitted_at: DateTime<Utc>,
    },
    FreeJobReleased {
        job_id: Uuid,
        released_at: DateTime<Utc>,
    },
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> String {
        match self {
            WalletEvent::CreditsGranted { .. } => "CreditsGranted",
            WalletEvent::CreditsReserved { .. } => "CreditsReserved",
            WalletEvent::CreditsCaptured { .. } => "CreditsCaptured",
            WalletEvent::CreditsRefunded { .. } => "CreditsRefunded",
            WalletEvent::FreeJobAdmitted { .. } => "FreeJobAdmitted",
            WalletEvent::FreeJobReleased { .. } => "FreeJobReleased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
