//! `POST /v1/payments/webhook`: the payment provider's verdicts, signed with
//! `Stripe-Signature` (`LOKIZ_STRIPE_WEBHOOK_SECRET`). A verified
//! `payment_intent.succeeded` grants the purchase's credits (once, however
//! often it is delivered); `payment_intent.payment_failed` is recorded.
//! Subscription events (`invoice.paid`, `invoice.payment_failed`,
//! `customer.subscription.deleted`) go to `subscriptions::on_webhook`.
//! Stale or forged deliveries are answered 401 and change nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use lokiz_domain::payment::{PaymentError, PaymentOutcome};
use lokiz_infra::payments::{self, verify_webhook, SettleError, WebhookEvent, WEBHOOK_TOLERANCE};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::parse_id;
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/payments/webhook", post(webhook))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceived {
    pub received: bool,
    /// `granted` (the credits are, or already were, granted), `failed` (the
    /// payment failed; recorded), `ignored` (not a payment verdict, or no
    /// purchase of this server), or `refused` (the verdict does not fit
    /// its purchase: another amount or payment; nothing granted).
    /// Subscriptions: `started`, `renewed` (the paid period is, or already
    /// was, recorded; its credits follow), `payment_failed` (the
    /// subscription ends with its paid period) and `ended`.
    #[schema(pattern = "^(granted|failed|ignored|refused|started|renewed|payment_failed|ended)$")]
    pub outcome: &'static str,
}

#[utoipa::path(post, path = "/v1/payments/webhook", tag = "credits",
    params(("Stripe-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">` under LOKIZ_STRIPE_WEBHOOK_SECRET; at most 5 minutes old")),
    request_body(content = Object, description = "A Stripe event (`payment_intent.succeeded`, `payment_intent.payment_failed`, `invoice.paid`, `invoice.payment_succeeded`, `invoice.payment_failed`, `customer.subscription.deleted`; others are ignored)"),
    responses((status = 200, body = WebhookReceived),
              (status = 400, description = "Signed, but not an event", body = crate::error::ErrorEnvelope),
              (status = 401, description = "INVALID_SIGNATURE: missing, forged or stale (also when this server takes no webhooks: LOKIZ_PAYMENTS=test)", body = crate::error::ErrorEnvelope),
              (status = 500, description = "INTERNAL_ERROR: the event could not be recorded; the provider delivers it again", body = crate::error::ErrorEnvelope)))]
pub async fn webhook(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let invalid = ApiError::Unauthorized {
        code: "INVALID_SIGNATURE",
        message: "The webhook signature does not verify.",
    };
    let Some(secret) = ctx.payments.webhook_secret() else {
        return Err(invalid);
    };
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(reason) = verify_webhook(
        secret,
        header,
        &body,
        Utc::now().timestamp(),
        WEBHOOK_TOLERANCE,
    ) {
        tracing::warn!(%reason, "payment webhook refused");
        return Err(invalid);
    }
    let event: WebhookEvent = serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest {
        code: "INVALID_EVENT",
        message: "The body is not a payment event.".into(),
    })?;
    if let Some(handled) = super::subscriptions::on_webhook(&ctx, &event).await? {
        return Ok(received(handled.outcome, handled.position));
    }
    let outcome = match event.kind.as_str() {
        "payment_intent.succeeded" => PaymentOutcome::Succeeded,
        "payment_intent.payment_failed" => PaymentOutcome::Failed {
            code: event
                .intent()
                .and_then(|i| i.last_payment_error)
                .and_then(|e| e.decline_code.or(e.code))
                .unwrap_or_else(|| "payment_failed".to_owned()),
        },
        _ => return Ok(received("ignored", None)),
    };
    let Some(intent) = event.intent() else {
        return Err(ApiError::BadRequest {
            code: "INVALID_EVENT",
            message: "The event carries no payment intent.".into(),
        });
    };
    let Some(purchase_id) = intent
        .metadata
        .get("purchase_id")
        .and_then(|id| parse_id(id))
    else {
        // a payment made elsewhere on the same account
        return Ok(received("ignored", None));
    };
    let failed = matches!(outcome, PaymentOutcome::Failed { .. });
    let settled = payments::settle(
        &ctx.store,
        purchase_id,
        &intent.id,
        outcome,
        intent.amount,
        &intent.currency,
        crate::now(),
    )
    .await;
    match settled {
        Ok(s) if s.granted.is_some() => Ok(received("granted", s.position)),
        // a failure, or a failure arriving after the success: nothing granted
        Ok(s) if failed => Ok(received("failed", s.position)),
        Ok(s) => Ok(received("ignored", s.position)),
        Err(SettleError::Refused(PaymentError::NotStarted)) => Ok(received("ignored", None)),
        Err(SettleError::Refused(reason)) => {
            tracing::error!(%purchase_id, event = %event.id, %reason, "payment webhook refused; nothing granted");
            Ok(received("refused", None))
        }
        // the provider retries: the next delivery completes what this one began
        Err(SettleError::Store(cause)) => Err(ApiError::Internal(anyhow::anyhow!(cause))),
    }
}

fn received(outcome: &'static str, position: Option<i64>) -> Response {
    with_position(
        position,
        Json(WebhookReceived {
            received: true,
            outcome,
        }),
    )
}
