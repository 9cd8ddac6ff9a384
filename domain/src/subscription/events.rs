use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubscriptionEvent {
    SubscriptionStarted {
        user_id: Uuid,
        plan: String,
        credits_per_month: i64,
        provider: String,
        provider_subscription_id: String,
        period_start: DateTime<Utc>,
        period_end: DateTime<Utc>,
        started_at: DateTime<Utc>,
    },
    /// The first payment of a start attempt was declined: nothing runs.
    SubscriptionDeclined {
        attempt: u32,
        plan: String,
        code: String,
        declined_at: DateTime<Utc>,
    },
    /// A new paid period. Plan and credits are the subscription's, so the
    /// saga granting them needs nothing else.
    SubscriptionRenewed {
        user_id: Uuid,
        plan: String,
        credits_per_month: i64,
        provider_subscription_id: String,
        invoice_id: String,
        period_start: DateTime<Utc>,
        period_end: DateTime<Utc>,
        renewed_at: DateTime<Utc>,
    },
    /// The renewal was not paid: the subscription ends at `ends_at` (the
    /// paid period's end).
    SubscriptionPaymentFailed {
        provider_subscription_id: String,
        invoice_id: String,
        ends_at: DateTime<Utc>,
        failed_at: DateTime<Utc>,
    },
    /// Canceled by the user: it ends at `ends_at` (the paid period's end).
    SubscriptionCanceled {
        ends_at: DateTime<Utc>,
        canceled_at: DateTime<Utc>,
    },
    SubscriptionEnded {
        provider_subscription_id: String,
        ended_at: DateTime<Utc>,
    },
}

impl DomainEvent for SubscriptionEvent {
    fn event_type(&self) -> String {
        match self {
            SubscriptionEvent::SubscriptionStarted { .. } => "SubscriptionStarted",
            SubscriptionEvent::SubscriptionDeclined { .. } => "SubscriptionDeclined",
            SubscriptionEvent::SubscriptionRenewed { .. } => "SubscriptionRenewed",
            SubscriptionEvent::SubscriptionPaymentFailed { .. } => "SubscriptionPaymentFailed",
            SubscriptionEvent::SubscriptionCanceled { .. } => "SubscriptionCanceled",
            SubscriptionEvent::SubscriptionEnded { .. } => "SubscriptionEnded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
