//! The subscription saga: each paid period of a subscription grants its
//! plan's monthly credits, once. On `SubscriptionStarted` and
//! `SubscriptionRenewed` it commands the wallet's `GrantCredits` with the
//! reference `subscription:<user id>:<period start, unix seconds>`; the
//! wallet records nothing for a reference it already granted, so a
//! redelivered event, or a crash between the grant and the ack, never grants
//! twice. A failed payment records no renewal, so its period grants nothing.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lokiz_domain::subscription::{Subscription, SubscriptionEvent};
use lokiz_domain::wallet::{GrantReason, WalletCommand};
use uuid::Uuid;

use crate::event_store::EventStore;
use crate::process_manager::{HandleError, ProcessManager};
use crate::StoredEvent;

pub const CONSUMER: &str = "subscription-saga";

/// The wallet grant reference of `user_id`'s period starting at `period_start`.
pub fn grant_reference(user_id: Uuid, period_start: DateTime<Utc>) -> String {
    format!("subscription:{user_id}:{}", period_start.timestamp())
}

pub struct SubscriptionSaga {
    store: Arc<EventStore>,
}

impl SubscriptionSaga {
    pub fn new(store: Arc<EventStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl ProcessManager for SubscriptionSaga {
    fn consumer(&self) -> &'static str {
        CONSUMER
    }

    fn aggregate_type(&self) -> &'static str {
        Subscription::TYPE_NAME
    }

    async fn handle(&self, event: &StoredEvent) -> Result<(), HandleError> {
        if !matches!(
            event.event_type.as_str(),
            "SubscriptionStarted" | "SubscriptionRenewed"
        ) {
            return Ok(());
        }
        let (user_id, credits, period_start, at) = match event.decode::<SubscriptionEvent>()? {
            SubscriptionEvent::SubscriptionStarted {
                user_id,
                credits_per_month,
                period_start,
                started_at,
                ..
            } => (user_id, credits_per_month, period_start, started_at),
            SubscriptionEvent::SubscriptionRenewed {
                user_id,
                credits_per_month,
                period_start,
                renewed_at,
                ..
            } => (user_id, credits_per_month, period_start, renewed_at),
            _ => return Ok(()),
        };
        if credits <= 0 {
            return Ok(());
        }
        self.store
            .wallets
            .execute(
                &user_id.to_string(),
                WalletCommand::GrantCredits {
                    amount: credits,
                    reason: GrantReason::Subscription,
                    reference: grant_reference(user_id, period_start),
                    at,
                },
                HashMap::from([(
                    "subscription".to_owned(),
                    format!("{}:{}", event.aggregate_id, event.sequence),
                )]),
            )
            .await
            .map_err(HandleError::command)?;
        Ok(())
    }
}
