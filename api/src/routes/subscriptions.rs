//! Subscriptions: `POST /v1/subscriptions/subscribe` (the provider starts a
//! monthly subscription and takes its first payment; a Subscription
//! aggregate per user records it), `GET /v1/subscriptions/me` (the
//! `subscriptions` read model) and `DELETE /v1/subscriptions/cancel` (it
//! runs to the end of its paid period). Renewals, failed payments and the
//! provider's end arrive through `POST /v1/payments/webhook`
//! ([`on_webhook`]); the subscription saga grants each paid period's credits
//! once.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use lokiz_domain::subscription::{SubscriptionCommand, SubscriptionError};
use lokiz_infra::payments::{self, SubscribeError, SubscriptionRequest, WebhookEvent};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{command_error, ApiError};
use crate::extract::{parse_id, AuthUser, Fields, JsonObject, MinPosition};
use crate::routes::credits::{Plan, PLANS};
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/subscriptions/subscribe", post(subscribe))
        .route("/subscriptions/me", get(me))
        .route("/subscriptions/cancel", delete(cancel))
}

/// A plan one can subscribe to (it grants credits every month).
fn paid_plan(id: &str) -> Option<&'static Plan> {
    PLANS
        .iter()
        .find(|p| p.id == id && p.credits_per_month > 0 && p.price_cents > 0)
}

fn paid_plan_ids() -> Vec<&'static str> {
    PLANS
        .iter()
        .filter(|p| p.credits_per_month > 0 && p.price_cents > 0)
        .map(|p| p.id)
        .collect()
}

/// Body of `POST /v1/subscriptions/subscribe`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SubscribeRequest {
    /// A paid plan of GET /v1/subscriptions/plans.
    #[schema(pattern = "^(basic|pro|enterprise)$")]
    plan: String,
    /// The provider's payment method for every monthly payment (Stripe:
    /// `pm_…`).
    #[schema(min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_]+$")]
    payment_method: Option<String>,
}

/// The caller's subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    /// The plan in force now: the subscription's while it runs, else `free`.
    pub tier: String,
    /// The latest subscription's plan (`free` when there never was one).
    pub plan: String,
    /// `none` (never subscribed), `active`, `canceled` (canceled by the
    /// user; runs to `ends_at`) or `ended`.
    #[schema(pattern = "^(none|active|canceled|ended)$")]
    pub status: String,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    /// It will not renew: it ends at `ends_at`, the end of the paid period
    /// (canceled, or the renewal payment failed).
    pub cancel_at_period_end: bool,
    /// When it ends (or ended); `null` while it renews.
    pub ends_at: Option<DateTime<Utc>>,
    /// The last renewal payment failed (no credits for that period).
    pub payment_failed: bool,
    /// Credits granted for every paid period while it runs (0 on the free tier).
    pub monthly_credits: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    plan: String,
    credits_per_month: i64,
    current_period_start: DateTime<Utc>,
    current_period_end: DateTime<Utc>,
    canceled: bool,
    payment_failed: bool,
    ends_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
}

impl SubscriptionView {
    fn free() -> Self {
        Self {
            tier: "free".into(),
            plan: "free".into(),
            status: "none".into(),
            current_period_start: None,
            current_period_end: None,
            cancel_at_period_end: false,
            ends_at: None,
            payment_failed: false,
            monthly_credits: 0,
        }
    }

    fn from_row(row: Row, now: DateTime<Utc>) -> Self {
        let ended = row.ended_at.is_some() || row.ends_at.is_some_and(|e| e <= now);
        let status = if ended {
            "ended"
        } else if row.canceled {
            "canceled"
        } else {
            "active"
        };
        Self {
            tier: if ended {
                "free".into()
            } else {
                row.plan.clone()
            },
            plan: row.plan,
            status: status.into(),
            current_period_start: Some(row.current_period_start),
            current_period_end: Some(row.current_period_end),
            cancel_at_period_end: !ended && row.ends_at.is_some(),
            ends_at: row.ends_at,
            payment_failed: row.payment_failed,
            monthly_credits: if ended { 0 } else { row.credits_per_month },
        }
    }
}

async fn view(ctx: &ApiContext, user_id: Uuid) -> Result<SubscriptionView, ApiError> {
    let row = sqlx::query_as::<_, Row>(
        "SELECT plan, credits_per_month, current_period_start, current_period_end, canceled,
                payment_failed, ends_at, ended_at
           FROM subscriptions WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&ctx.pool)
    .await?;
    Ok(row.map_or_else(SubscriptionView::free, |r| {
        SubscriptionView::from_row(r, crate::now())
    }))
}

fn exists() -> ApiError {
    ApiError::Conflict {
        code: "SUBSCRIPTION_EXISTS",
        message: "A subscription is already running; cancel it, or wait for it to end.".into(),
        details: None,
    }
}

fn store_error(e: String) -> ApiError {
    ApiError::Internal(anyhow::anyhow!(e))
}

#[utoipa::path(post, path = "/v1/subscriptions/subscribe", tag = "credits", security(("bearer" = [])),
    request_body(content = SubscribeRequest, description = "A retried request (also after a 5xx) is the same subscription at the provider, recorded once."),
    responses((status = 201, body = SubscriptionView, description = "Subscribed; the first month's credits are granted shortly after (the wallet shows them)"),
              (status = 402, description = "PAYMENT_DECLINED: the first payment was declined", body = crate::error::ErrorEnvelope),
              (status = 409, description = "SUBSCRIPTION_EXISTS: a subscription is already running (also a canceled one, until its period ends); SUBSCRIPTION_CONFLICT: another plan is being subscribed to at this moment", body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn subscribe(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let plan_id = f.required_str("plan");
    let plan = plan_id.and_then(paid_plan);
    if plan_id.is_some() && plan.is_none() {
        f.reject(
            "plan",
            "unknown",
            format!("must be one of {}", paid_plan_ids().join(", ")),
        );
    }
    let payment_method = f.optional_str("payment_method");
    if let Some(pm) = payment_method {
        if pm.is_empty()
            || pm.len() > 255
            || !pm.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            f.reject(
                "payment_method",
                "invalid",
                "must be 1-255 letters, digits or '_' (a provider payment method id)",
            );
        }
    }
    f.finish()?;
    let plan = plan.ok_or_else(|| ApiError::internal(anyhow::anyhow!("validated plan missing")))?;
    // refuse before the provider is asked: a second running subscription
    // would be billed and never recorded
    let current = payments::load_subscription(&ctx.store, user.user_id)
        .await
        .map_err(store_error)?;
    if current.is_running(crate::now()) {
        return Err(exists());
    }
    let attempt = current.attempts();
    let started = ctx
        .payments
        .create_subscription(&SubscriptionRequest {
            user_id: user.user_id,
            plan: plan.id.to_owned(),
            amount_cents: plan.price_cents,
            currency: plan.currency,
            payment_method: payment_method.map(str::to_owned),
            idempotency_key: payments::subscription_key(user.user_id, attempt),
        })
        .await;
    let provided = match started {
        Ok(s) => s,
        Err(SubscribeError::Declined { code }) => {
            // recorded, so the next attempt is a new one at the provider (a
            // declined attempt's key answers the decline again)
            ctx.store
                .subscriptions
                .execute(
                    &user.user_id.to_string(),
                    SubscriptionCommand::DeclineStart {
                        attempt,
                        plan: plan.id.to_owned(),
                        code,
                        at: crate::now(),
                    },
                    HashMap::from([("actor".to_owned(), user.user_id.to_string())]),
                )
                .await
                .map_err(|e| command_error(e, |e| ApiError::internal(anyhow::anyhow!(e))))?;
            return Err(ApiError::PaymentDeclined);
        }
        Err(SubscribeError::Conflict) => {
            return Err(ApiError::Conflict {
                code: "SUBSCRIPTION_CONFLICT",
                message: "A subscription to another plan is being started; retry that one.".into(),
                details: None,
            })
        }
        Err(SubscribeError::Unavailable(cause)) => {
            tracing::warn!(%cause, "payment provider unavailable");
            return Err(ApiError::Unavailable("The payment provider"));
        }
    };
    let written = ctx
        .store
        .subscriptions
        .execute(
            &user.user_id.to_string(),
            SubscriptionCommand::StartSubscription {
                user_id: user.user_id,
                plan: plan.id.to_owned(),
                credits_per_month: plan.credits_per_month,
                provider: ctx.payments.name().to_owned(),
                provider_subscription_id: provided.id,
                period_start: provided.period_start,
                period_end: provided.period_end,
                at: crate::now(),
            },
            HashMap::from([("actor".to_owned(), user.user_id.to_string())]),
        )
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                SubscriptionError::AlreadySubscribed => exists(),
                SubscriptionError::InvalidPeriod => {
                    tracing::error!("the provider's subscription period is empty");
                    ApiError::Unavailable("The payment provider")
                }
                other => ApiError::internal(anyhow::anyhow!(other)),
            })
        })?;
    ctx.wait_for(written.position, &["subscriptions"]).await?;
    let answer = view(&ctx, user.user_id).await?;
    Ok(with_position(
        written.position,
        (StatusCode::CREATED, Json(answer)),
    ))
}

#[utoipa::path(get, path = "/v1/subscriptions/me", tag = "credits", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    responses((status = 200, body = SubscriptionView, description = "The caller's subscription, or the free tier (`status: none`)")))]
pub async fn me(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
) -> Result<Json<SubscriptionView>, ApiError> {
    ctx.wait_for(min, &["subscriptions"]).await?;
    Ok(Json(view(&ctx, user.user_id).await?))
}

#[utoipa::path(delete, path = "/v1/subscriptions/cancel", tag = "credits", security(("bearer" = [])),
    responses((status = 200, body = SubscriptionView, description = "Canceled (or already): it runs to `ends_at`, the end of the paid period, and is not renewed"),
              (status = 404, description = "NOT_FOUND: no running subscription", body = crate::error::ErrorEnvelope)))]
pub async fn cancel(State(ctx): State<ApiContext>, user: AuthUser) -> Result<Response, ApiError> {
    let not_found = ApiError::NotFound {
        what: "Running subscription",
    };
    let current = payments::load_subscription(&ctx.store, user.user_id)
        .await
        .map_err(store_error)?;
    let Some(provider_id) = current
        .provider_subscription_id()
        .filter(|_| current.is_running(crate::now()))
    else {
        return Err(not_found);
    };
    // the provider first: recorded as canceled only once it will not renew
    if let Err(e) = ctx.payments.cancel_subscription(provider_id).await {
        tracing::warn!(error = %e, "payment provider unavailable");
        return Err(ApiError::Unavailable("The payment provider"));
    }
    let written = ctx
        .store
        .subscriptions
        .execute(
            &user.user_id.to_string(),
            SubscriptionCommand::CancelSubscription { at: crate::now() },
            HashMap::from([("actor".to_owned(), user.user_id.to_string())]),
        )
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                SubscriptionError::NotSubscribed => ApiError::NotFound {
                    what: "Running subscription",
                },
                other => ApiError::internal(anyhow::anyhow!(other)),
            })
        })?;
    ctx.wait_for(written.position, &["subscriptions"]).await?;
    let answer = view(&ctx, user.user_id).await?;
    Ok(with_position(written.position, Json(answer)))
}

/// What a subscription webhook did: `started`, `renewed` (the period is, or
/// already was, recorded), `payment_failed`, `ended`, `ignored` or `refused`.
pub struct Handled {
    pub outcome: &'static str,
    pub position: Option<i64>,
}

/// Handles a verified `invoice.*` or `customer.subscription.*` event;
/// `Ok(None)` for any other event. A store failure is an error (answered
/// 500), so the provider delivers the event again.
pub async fn on_webhook(
    ctx: &ApiContext,
    event: &WebhookEvent,
) -> Result<Option<Handled>, ApiError> {
    let at = crate::now();
    let (user_id, command, kind) = match event.kind.as_str() {
        "invoice.paid" | "invoice.payment_succeeded" | "invoice.payment_failed" => {
            let Some(invoice) = event.invoice() else {
                return Err(invalid_event("The event carries no invoice."));
            };
            let (Some(sub), Some(user_id)) = (
                invoice.subscription_id(),
                invoice.metadata("user_id").and_then(parse_id),
            ) else {
                // not a LOKIZ subscription's invoice
                return Ok(Some(ignored()));
            };
            let Some((period_start, period_end)) = invoice.period() else {
                return Err(invalid_event("The invoice has no period."));
            };
            if event.kind == "invoice.payment_failed" {
                let command = SubscriptionCommand::RecordPaymentFailure {
                    provider_subscription_id: sub,
                    invoice_id: invoice.id.clone(),
                    period_start,
                    at,
                };
                (user_id, command, "payment_failed")
            } else {
                let renew = SubscriptionCommand::RenewSubscription {
                    provider_subscription_id: sub.clone(),
                    invoice_id: invoice.id.clone(),
                    period_start,
                    period_end,
                    at,
                };
                let plan = invoice.metadata("plan").and_then(paid_plan);
                let first = invoice.billing_reason.as_deref() == Some("subscription_create");
                let renewed = execute(ctx, user_id, renew).await?;
                if matches!(renewed, Err(SubscriptionError::NotSubscribed)) {
                    // the first invoice of a subscription whose start was
                    // never recorded (the subscribe answer was lost): start it
                    if let (true, Some(plan)) = (first, plan) {
                        let start = SubscriptionCommand::StartSubscription {
                            user_id,
                            plan: plan.id.to_owned(),
                            credits_per_month: plan.credits_per_month,
                            provider: ctx.payments.name().to_owned(),
                            provider_subscription_id: sub,
                            period_start,
                            period_end,
                            at,
                        };
                        let started = execute(ctx, user_id, start).await?;
                        return Ok(Some(outcome(started, "started", &event.id)));
                    }
                }
                return Ok(Some(outcome(renewed, "renewed", &event.id)));
            }
        }
        "customer.subscription.deleted" => {
            let Some(sub) = event.subscription() else {
                return Err(invalid_event("The event carries no subscription."));
            };
            let Some(user_id) = sub.metadata.get("user_id").and_then(|u| parse_id(u)) else {
                return Ok(Some(ignored()));
            };
            let command = SubscriptionCommand::EndSubscription {
                provider_subscription_id: sub.id,
                at,
            };
            (user_id, command, "ended")
        }
        _ => return Ok(None),
    };
    let done = execute(ctx, user_id, command).await?;
    Ok(Some(outcome(done, kind, &event.id)))
}

/// Runs a provider's command: a domain refusal is the result, a store
/// failure the error.
async fn execute(
    ctx: &ApiContext,
    user_id: Uuid,
    command: SubscriptionCommand,
) -> Result<Result<Option<i64>, SubscriptionError>, ApiError> {
    let metadata = HashMap::from([("provider".to_owned(), ctx.payments.name().to_owned())]);
    match ctx
        .store
        .subscriptions
        .execute(&user_id.to_string(), command, metadata)
        .await
    {
        Ok(w) => Ok(Ok(w.position)),
        Err(AggregateError::UserError(e)) => Ok(Err(e)),
        // the provider retries: the next delivery does what this one could not
        Err(e) => Err(ApiError::internal(anyhow::anyhow!(e.to_string()))),
    }
}

fn outcome(
    done: Result<Option<i64>, SubscriptionError>,
    kind: &'static str,
    event_id: &str,
) -> Handled {
    match done {
        Ok(position) => Handled {
            outcome: kind,
            position,
        },
        // about a subscription this server does not (or no longer) know
        Err(reason @ (SubscriptionError::NotSubscribed | SubscriptionError::OtherSubscription)) => {
            tracing::warn!(event = %event_id, %reason, "subscription webhook ignored");
            ignored()
        }
        Err(reason) => {
            tracing::error!(event = %event_id, %reason, "subscription webhook refused");
            Handled {
                outcome: "refused",
                position: None,
            }
        }
    }
}

fn ignored() -> Handled {
    Handled {
        outcome: "ignored",
        position: None,
    }
}

fn invalid_event(message: &str) -> ApiError {
    ApiError::BadRequest {
        code: "INVALID_EVENT",
        message: message.into(),
    }
}
