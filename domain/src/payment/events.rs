use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PaymentEvent {
    PaymentStarted {
        user_id: Uuid,
        package_id: String,
        credits: i64,
        amount_cents: i64,
        currency: String,
        provider: String,
        started_at: DateTime<Utc>,
    },
    PaymentSucceeded {
        provider_payment_id: String,
        succeeded_at: DateTime<Utc>,
    },
    PaymentFailed {
        provider_payment_id: String,
        code: String,
        failed_at: DateTime<Utc>,
    },
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match self {
            PaymentEvent::PaymentStarted { .. } => "PaymentStarted",
            PaymentEvent::PaymentSucceeded { .. } => "PaymentSucceeded",
            PaymentEvent::PaymentFailed { .. } => "PaymentFailed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
