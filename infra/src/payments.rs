//! Payments behind one trait. The default provider, [`TestPayments`],
//! completes every charge at once (development, tests, demos); a real one
//! (Stripe-compatible) plugs in here and confirms by signed webhook.

use async_trait::async_trait;
use uuid::Uuid;

/// What the user buys.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub user_id: Uuid,
    /// What is bought (a credits package id).
    pub item: String,
    pub amount_cents: i64,
    pub currency: &'static str,
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
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("the payment was declined")]
    Declined,
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    fn name(&self) -> &'static str;
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, PaymentError>;
}

/// Completes every charge immediately, without moving money.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestPayments;

#[async_trait]
impl PaymentProvider for TestPayments {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn charge(&self, _request: &ChargeRequest) -> Result<Charge, PaymentError> {
        Ok(Charge {
            payment_id: format!("test_{}", Uuid::now_v7().simple()),
            status: ChargeStatus::Succeeded,
        })
    }
}
