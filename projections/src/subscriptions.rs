//! `subscriptions`: each user's latest subscription (plan, paid period,
//! whether and when it ends). `GET /v1/subscriptions/me` reads it and
//! compares `ends_at` with the time of the request.

use async_trait::async_trait;
use lokiz_domain::subscription::{Subscription, SubscriptionEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{decode, ProjectionError, Projector};

pub struct SubscriptionsProjector;

#[async_trait]
impl Projector for SubscriptionsProjector {
    fn name(&self) -> &'static str {
        "subscriptions"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Subscription::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["subscriptions"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let user_id = Uuid::parse_str(&event.aggregate_id)
            .map_err(|_| ProjectionError::AggregateId(event.aggregate_id.clone()))?;
        match decode::<SubscriptionEvent>(event)? {
            SubscriptionEvent::SubscriptionStarted {
                plan,
                credits_per_month,
                provider,
                provider_subscription_id,
                period_start,
                period_end,
                started_at,
                ..
            } => {
                // a new subscription replaces the user's last one
                sqlx::query(
                    "INSERT INTO subscriptions (user_id, plan, credits_per_month, provider,
                         provider_subscription_id, current_period_start, current_period_end,
                         canceled, payment_failed, ends_at, ended_at, started_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, false, false, NULL, NULL, $8, $8)
                     ON CONFLICT (user_id) DO UPDATE SET
                         plan = EXCLUDED.plan,
                         credits_per_month = EXCLUDED.credits_per_month,
                         provider = EXCLUDED.provider,
                         provider_subscription_id = EXCLUDED.provider_subscription_id,
                         current_period_start = EXCLUDED.current_period_start,
                         current_period_end = EXCLUDED.current_period_end,
                         canceled = false, payment_failed = false,
                         ends_at = NULL, ended_at = NULL,
                         started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at",
                )
                .bind(user_id)
                .bind(plan)
                .bind(credits_per_month)
                .bind(provider)
                .bind(provider_subscription_id)
                .bind(period_start)
                .bind(period_end)
                .bind(started_at)
                .execute(conn)
                .await?;
            }
            // nothing runs: the user's row (if any) is their last subscription
            SubscriptionEvent::SubscriptionDeclined { .. } => {}
            SubscriptionEvent::SubscriptionRenewed {
                period_start,
                period_end,
                renewed_at,
                ..
            } => {
                sqlx::query(
                    "UPDATE subscriptions SET current_period_start = $2, current_period_end = $3,
                         payment_failed = false,
                         ends_at = CASE WHEN canceled THEN $3 ELSE NULL END,
                         updated_at = $4
                      WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(period_start)
                .bind(period_end)
                .bind(renewed_at)
                .execute(conn)
                .await?;
            }
            SubscriptionEvent::SubscriptionPaymentFailed {
                ends_at, failed_at, ..
            } => {
                sqlx::query(
                    "UPDATE subscriptions SET payment_failed = true, ends_at = $2, updated_at = $3
                      WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(ends_at)
                .bind(failed_at)
                .execute(conn)
                .await?;
            }
            SubscriptionEvent::SubscriptionCanceled {
                ends_at,
                canceled_at,
            } => {
                sqlx::query(
                    "UPDATE subscriptions SET canceled = true, ends_at = $2, updated_at = $3
                      WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(ends_at)
                .bind(canceled_at)
                .execute(conn)
                .await?;
            }
            SubscriptionEvent::SubscriptionEnded { ended_at, .. } => {
                sqlx::query(
                    "UPDATE subscriptions SET ended_at = $2,
                         ends_at = LEAST(coalesce(ends_at, $2), $2), updated_at = $2
                      WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(ended_at)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}
