//! Credit purchases: a [`PaymentProvider`] chosen by `LOKIZ_PAYMENTS`
//! (`test` completes every charge at once and is refused in production;
//! `stripe` is any Stripe-compatible API), the Stripe webhook's signature
//! check, and [`settle`], which records the provider's verdict on the
//! Payment aggregate and grants the credits once.
//!
//! Exactly once, through retries and crashes:
//! - the purchase id is derived from the client's `Idempotency-Key`, and the
//!   provider is called with an idempotency key derived from the purchase id,
//!   so a retried request (also after a 5xx between charge and grant) is the
//!   same charge;
//! - the wallet grants with the provider's payment id as reference, and a
//!   reference grants once, whoever asks (the purchase request or the
//!   webhook, once or many times).

mod stripe;

use std::collections::HashMap;

use async_trait::async_trait;
use cqrs_es::{Aggregate, AggregateError};
use lokiz_domain::payment::{Payment, PaymentCommand, PaymentError, PaymentEvent, PaymentOutcome};
use lokiz_domain::wallet::{GrantReason, WalletCommand, WalletError};
use uuid::Uuid;

use crate::event_store::{history, EventStore};

pub use stripe::{
    sign_webhook, verify_webhook, Invoice, StripePayments, StripeSubscription, WebhookError,
    WebhookEvent, WEBHOOK_TOLERANCE,
};

/// What the user buys.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// The purchase (the Payment aggregate's id); the provider's idempotency
    /// key is derived from it.
    pub purchase_id: Uuid,
    pub user_id: Uuid,
    /// What is bought (a credits package id).
    pub item: String,
    pub amount_cents: i64,
    pub currency: &'static str,
    /// The provider's payment method to charge at once (Stripe: `pm_…`);
    /// without one the payment waits for the client to confirm it.
    pub payment_method: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    Succeeded,
    /// Confirmed later by the provider's webhook.
    Pending,
}

#[derive(Debug, Clone)]
pub struct Charge {
    /// The provider's id for the payment; also the credit grant's reference,
    /// so one payment never grants twice.
    pub payment_id: String,
    pub status: ChargeStatus,
    /// For a pending payment the client confirms (Stripe.js).
    pub client_secret: Option<String>,
    /// What the provider says it charges.
    pub amount_cents: i64,
    pub currency: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    #[error("the payment was declined ({code})")]
    Declined {
        code: String,
        /// The provider's payment, when it made one.
        payment_id: Option<String>,
    },
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    fn name(&self) -> &'static str;
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ChargeError>;
    /// The secret that signs this provider's webhooks; `None`: it sends none.
    fn webhook_secret(&self) -> Option<&str> {
        None
    }
    /// Starts a monthly subscription and takes its first payment. The same
    /// `request.idempotency_key` is the same subscription (a retry never
    /// starts a second one).
    async fn create_subscription(
        &self,
        request: &SubscriptionRequest,
    ) -> Result<ProviderSubscription, SubscribeError>;
    /// Stops renewing subscription `id`: it runs to the end of its paid
    /// period. Asking twice is harmless.
    async fn cancel_subscription(&self, id: &str) -> Result<(), SubscribeError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("the first payment was declined ({code})")]
    Declined { code: String },
    /// The idempotency key already names a subscription with other terms
    /// (another plan asked for while the first was being started).
    #[error("a subscription with other terms is being started")]
    Conflict,
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

/// A monthly subscription to start.
#[derive(Debug, Clone)]
pub struct SubscriptionRequest {
    pub user_id: Uuid,
    /// The plan id (also in the provider's metadata, with the user id, so
    /// its webhooks name both).
    pub plan: String,
    pub amount_cents: i64,
    pub currency: &'static str,
    /// The provider's payment method (Stripe: `pm_…`) for every invoice.
    pub payment_method: Option<String>,
    /// Names this subscription at the provider: see [`subscription_key`].
    pub idempotency_key: String,
}

/// A subscription the provider started: paid for its first period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSubscription {
    pub id: String,
    pub period_start: chrono::DateTime<chrono::Utc>,
    pub period_end: chrono::DateTime<chrono::Utc>,
}

/// The provider's idempotency key of a user's next subscription: the user
/// and the number of their start attempt (subscriptions started and first
/// payments declined before). Concurrent or retried subscribe requests (also
/// after an answer lost on the way) therefore name the same provider
/// subscription, and it is recorded once; after a decline (recorded) the
/// next attempt is a new one.
pub fn subscription_key(user_id: Uuid, attempt: u32) -> String {
    format!("lokiz-subscription-{user_id}-{attempt}")
}

/// The test provider's subscription period: 30 days.
pub const TEST_PERIOD_DAYS: i64 = 30;

/// Completes every charge immediately, without moving money. Development
/// and tests only: the process refuses it when `LOKIZ_ENV=production`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestPayments;

#[async_trait]
impl PaymentProvider for TestPayments {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ChargeError> {
        Ok(Charge {
            // the same purchase is the same payment
            payment_id: format!("test_{}", request.purchase_id.simple()),
            status: ChargeStatus::Succeeded,
            client_secret: None,
            amount_cents: request.amount_cents,
            currency: request.currency.to_owned(),
        })
    }

    async fn create_subscription(
        &self,
        request: &SubscriptionRequest,
    ) -> Result<ProviderSubscription, SubscribeError> {
        let id = Uuid::new_v5(&PURCHASE_NAMESPACE, request.idempotency_key.as_bytes());
        let start = chrono::Utc::now();
        let start = chrono::DateTime::from_timestamp(start.timestamp(), 0).unwrap_or(start);
        Ok(ProviderSubscription {
            id: format!("test_sub_{}", id.simple()),
            period_start: start,
            period_end: start + chrono::Duration::days(TEST_PERIOD_DAYS),
        })
    }

    async fn cancel_subscription(&self, _id: &str) -> Result<(), SubscribeError> {
        Ok(())
    }
}

/// The purchase a client's `Idempotency-Key` names: the same key from the
/// same user is the same purchase; without a key every request is a new one.
pub fn purchase_id(user_id: Uuid, idempotency_key: Option<&str>) -> Uuid {
    match idempotency_key {
        Some(key) => Uuid::new_v5(&PURCHASE_NAMESPACE, format!("{user_id}:{key}").as_bytes()),
        None => Uuid::now_v7(),
    }
}

const PURCHASE_NAMESPACE: Uuid = Uuid::from_u128(0x6c6f_6b69_7a2d_7075_7263_6861_7365_0001);

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The provider's verdict does not fit the purchase (another amount or
    /// payment, or a purchase never started): nothing is granted.
    #[error("payment refused: {0}")]
    Refused(PaymentError),
    #[error("{0}")]
    Store(String),
}

/// What [`settle`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The wallet's grant (`Some` when the payment succeeded); `None` for a
    /// failed payment.
    pub granted: Option<Grant>,
    /// Position of the last event written or found.
    pub position: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user_id: Uuid,
    pub credits: i64,
}

/// Records the provider's verdict on purchase `purchase_id` and, when the
/// payment succeeded, grants the purchase's credits (reference: the
/// provider's payment id). Safe to repeat: a repeated verdict records
/// nothing and the grant happens once; a process dying between the two
/// steps is repaired by the next delivery of the same verdict.
pub async fn settle(
    store: &EventStore,
    purchase_id: Uuid,
    provider_payment_id: &str,
    outcome: PaymentOutcome,
    amount_cents: i64,
    currency: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Settled, SettleError> {
    let metadata = HashMap::from([("purchase".to_owned(), purchase_id.to_string())]);
    let written = store
        .payments
        .execute(
            &purchase_id.to_string(),
            PaymentCommand::SettlePayment {
                provider_payment_id: provider_payment_id.to_owned(),
                outcome,
                amount_cents,
                currency: currency.to_owned(),
                at,
            },
            metadata.clone(),
        )
        .await
        .map_err(|e| match e {
            AggregateError::UserError(e) => SettleError::Refused(e),
            other => SettleError::Store(other.to_string()),
        })?;
    let payment = load(store, purchase_id).await?;
    if payment.state() != lokiz_domain::payment::PaymentState::Succeeded {
        return Ok(Settled {
            granted: None,
            position: written.position,
        });
    }
    let (Some(user_id), credits) = (payment.user_id(), payment.credits()) else {
        return Err(SettleError::Store(
            "a succeeded payment without a user".into(),
        ));
    };
    let granted = store
        .wallets
        .execute(
            &user_id.to_string(),
            WalletCommand::GrantCredits {
                amount: credits,
                reason: GrantReason::Purchase,
                reference: provider_payment_id.to_owned(),
                at,
            },
            metadata,
        )
        .await
        .map_err(|e: AggregateError<WalletError>| SettleError::Store(e.to_string()))?;
    Ok(Settled {
        granted: Some(Grant { user_id, credits }),
        position: granted.position.max(written.position),
    })
}

/// A user's subscription as the store holds it.
pub async fn load_subscription(
    store: &EventStore,
    user_id: Uuid,
) -> Result<lokiz_domain::subscription::Subscription, String> {
    use lokiz_domain::subscription::{Subscription, SubscriptionEvent};
    let events = history(&store.pool, Subscription::TYPE_NAME, &user_id.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let mut subscription = Subscription::default();
    for e in events {
        let event: SubscriptionEvent =
            e.decode().map_err(|e| format!("subscription event: {e}"))?;
        subscription.apply(event);
    }
    Ok(subscription)
}

/// The purchase as the store holds it.
pub async fn load(store: &EventStore, purchase_id: Uuid) -> Result<Payment, SettleError> {
    let events = history(&store.pool, Payment::TYPE_NAME, &purchase_id.to_string())
        .await
        .map_err(|e| SettleError::Store(e.to_string()))?;
    let mut payment = Payment::default();
    for e in events {
        let event: PaymentEvent = e
            .decode()
            .map_err(|e| SettleError::Store(format!("payment event: {e}")))?;
        payment.apply(event);
    }
    Ok(payment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_test_provider_names_one_subscription_per_key() {
        let request = |key: &str| SubscriptionRequest {
            user_id: Uuid::from_u128(1),
            plan: "pro".into(),
            amount_cents: 1299,
            currency: "usd",
            payment_method: None,
            idempotency_key: key.into(),
        };
        let user = Uuid::from_u128(1);
        let a = TestPayments
            .create_subscription(&request(&subscription_key(user, 0)))
            .await
            .unwrap();
        let again = TestPayments
            .create_subscription(&request(&subscription_key(user, 0)))
            .await
            .unwrap();
        let next = TestPayments
            .create_subscription(&request(&subscription_key(user, 1)))
            .await
            .unwrap();
        assert_eq!(a.id, again.id);
        assert_ne!(a.id, next.id);
        assert_eq!(a.period_end - a.period_start, chrono::Duration::days(30));
    }
}
