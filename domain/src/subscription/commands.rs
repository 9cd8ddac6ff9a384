use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionCommand {
    /// The provider took the first payment of `plan`. Starting the same
    /// provider subscription again records nothing (a retried request, or
    /// its first invoice's webhook); another one while this one runs is
    /// refused.
    StartSubscription {
        user_id: Uuid,
        plan: String,
        credits_per_month: i64,
        provider: String,
        provider_subscription_id: String,
        period_start: DateTime<Utc>,
        period_end: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The provider declined the first payment of start attempt `attempt`
    /// (see `Subscription::attempts`): the next attempt is a new one at the
    /// provider. A decline of an attempt already counted records nothing.
    DeclineStart {
        attempt: u32,
        plan: String,
        code: String,
        at: DateTime<Utc>,
    },
    /// The provider was paid for a period. A period already recorded (a
    /// repeated or late invoice) records nothing.
    RenewSubscription {
        provider_subscription_id: String,
        invoice_id: String,
        period_start: DateTime<Utc>,
        period_end: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The provider could not collect the payment for the period starting
    /// at `period_start`: the subscription ends when its paid period does.
    /// A failure for a period already paid records nothing.
    RecordPaymentFailure {
        provider_subscription_id: String,
        invoice_id: String,
        period_start: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The user cancels: the subscription runs to the end of its paid
    /// period, then ends. Canceling again records nothing.
    CancelSubscription { at: DateTime<Utc> },
    /// The provider ended the subscription. Once.
    EndSubscription {
        provider_subscription_id: String,
        at: DateTime<Utc>,
    },
}
