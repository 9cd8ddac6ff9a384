//! `/v1/credits`: the caller's balance and credits history (the `wallets`
//! projection) and credit purchases (a Payment aggregate per purchase, a
//! `PaymentProvider` charge, then a `GrantCredits` referencing the payment;
//! `payments.rs` takes the provider's webhook); `/v1/subscriptions/plans`
//! (subscribing: `subscriptions.rs`); and
//! `/v1/presets`: the glitch and music presets the AI providers use.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lokiz_infra::ai::presets::{self, GlitchPreset, MusicPreset};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use lokiz_domain::payment::{PaymentCommand, PaymentError, PaymentOutcome};
use lokiz_infra::payments::{self, ChargeError, ChargeRequest, ChargeStatus, SettleError};

use crate::error::{command_error, ApiError};
use crate::extract::{AuthUser, Fields, JsonObject, MinPosition};
use crate::pagination::{check, encode_cursor, page, Params};
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/credits/balance", get(balance))
        .route("/credits/history", get(history))
        .route("/credits/purchase", post(purchase))
        .route("/credits/packages", get(packages))
        .route("/subscriptions/plans", get(plans))
        .route("/presets/glitch", get(glitch_presets))
        .route("/presets/music", get(music_presets))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Balance {
    /// Spendable credits.
    pub balance: i64,
    /// Held for jobs still running.
    pub reserved: i64,
    /// Spent on completed jobs, ever.
    pub spent: i64,
    /// Granted (signup, purchases, subscriptions), ever.
    pub granted: i64,
}

#[utoipa::path(get, path = "/v1/credits/balance", tag = "credits", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    responses((status = 200, body = Balance), (status = 401, body = crate::error::ErrorEnvelope)))]
pub async fn balance(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
) -> Result<Json<Balance>, ApiError> {
    ctx.wait_for(min, &["wallets"]).await?;
    let row = sqlx::query_as::<_, Balance>(
        "SELECT balance, reserved, spent, granted FROM wallets WHERE user_id = $1",
    )
    .bind(user.user_id)
    .fetch_optional(&ctx.pool)
    .await?;
    Ok(Json(row.unwrap_or(Balance {
        balance: 0,
        reserved: 0,
        spent: 0,
        granted: 0,
    })))
}

/// One change to the wallet.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct CreditTransaction {
    /// The event's position: unique, increasing.
    pub id: i64,
    /// grant, reserve, capture or refund.
    #[serde(rename = "type")]
    pub kind: String,
    /// Change to the spendable balance (negative for a reservation; 0 for a
    /// capture, which spends what was reserved).
    pub amount: i64,
    /// Credits concerned.
    pub credits: i64,
    pub balance_after: i64,
    /// Grants: signup, purchase or subscription.
    pub reason: Option<String>,
    pub job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditHistory {
    pub transactions: Vec<CreditTransaction>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[utoipa::path(get, path = "/v1/credits/history", tag = "credits", security(("bearer" = [])),
    params(crate::extract::MinPosition, ("cursor" = Option<String>, Query, description = "Opaque: the `next_cursor` of the page before; empty or absent for the first page"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 50, description = "Page size (default 20)")),
    responses((status = 200, body = CreditHistory, description = "Newest first"),
              (status = 401, body = crate::error::ErrorEnvelope), (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn history(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<CreditHistory>, ApiError> {
    let mut errors = Vec::new();
    let before: Option<i64> = params.cursor(&mut errors);
    let limit = params.limit(&mut errors);
    check(errors)?;
    ctx.wait_for(min, &["wallets"]).await?;
    let rows = sqlx::query_as::<_, CreditTransaction>(
        "SELECT position AS id, kind, amount, credits, balance_after, reason, job_id, created_at
           FROM credit_transactions
          WHERE user_id = $1 AND ($2::bigint IS NULL OR position < $2)
          ORDER BY position DESC
          LIMIT $3",
    )
    .bind(user.user_id)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(&ctx.pool)
    .await?;
    let (transactions, has_more) = page(rows, limit);
    let next_cursor = if has_more {
        transactions.last().map(|t| encode_cursor(&t.id))
    } else {
        None
    };
    Ok(Json(CreditHistory {
        transactions,
        next_cursor,
        has_more,
    }))
}

/// Presets of one family, with the presets file's version.
#[derive(Debug, Serialize, ToSchema)]
pub struct GlitchPresets {
    pub version: u32,
    #[schema(value_type = Vec<Object>)]
    pub presets: Vec<PresetView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PresetView {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Glitch presets: `animate` (POST /v1/ai/glitch/animate) or `replace`
    /// (POST /v1/ai/glitch/replace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Music presets: tempo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpm: Option<u32>,
}

impl From<&GlitchPreset> for PresetView {
    fn from(p: &GlitchPreset) -> Self {
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            kind: serde_json::to_value(p.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned)),
            bpm: None,
        }
    }
}

impl From<&MusicPreset> for PresetView {
    fn from(p: &MusicPreset) -> Self {
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            kind: None,
            bpm: Some(p.bpm),
        }
    }
}

#[utoipa::path(get, path = "/v1/presets/glitch", tag = "ai",
    responses((status = 200, body = GlitchPresets)))]
pub async fn glitch_presets() -> Json<GlitchPresets> {
    let p = presets::bundled();
    Json(GlitchPresets {
        version: p.version,
        presets: p.glitch.iter().map(PresetView::from).collect(),
    })
}

#[utoipa::path(get, path = "/v1/presets/music", tag = "ai",
    responses((status = 200, body = GlitchPresets)))]
pub async fn music_presets() -> Json<GlitchPresets> {
    let p = presets::bundled();
    Json(GlitchPresets {
        version: p.version,
        presets: p.music.iter().map(PresetView::from).collect(),
    })
}

/// A credits package for sale.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Package {
    pub id: &'static str,
    pub credits: i64,
    pub price_cents: i64,
    pub currency: &'static str,
}

pub const PACKAGES: &[Package] = &[
    Package {
        id: "credits_100",
        credits: 100,
        price_cents: 99,
        currency: "usd",
    },
    Package {
        id: "credits_500",
        credits: 500,
        price_cents: 399,
        currency: "usd",
    },
    Package {
        id: "credits_1200",
        credits: 1200,
        price_cents: 799,
        currency: "usd",
    },
];

#[derive(Debug, Serialize, ToSchema)]
pub struct Packages {
    pub packages: Vec<Package>,
}

#[utoipa::path(get, path = "/v1/credits/packages", tag = "credits",
    responses((status = 200, body = Packages)))]
pub async fn packages() -> Json<Packages> {
    Json(Packages {
        packages: PACKAGES.to_vec(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Purchase {
    /// The purchase: the same `Idempotency-Key` from the same user names
    /// the same purchase (and the same charge).
    pub purchase_id: Uuid,
    /// The provider's payment id.
    pub payment_id: String,
    pub package_id: String,
    pub credits: i64,
    pub price_cents: i64,
    pub currency: String,
    /// `succeeded`: the credits are granted. `pending`: they are granted
    /// when the provider confirms the payment (its webhook); the client may
    /// have to confirm it first with `client_secret`.
    #[schema(pattern = "^(succeeded|pending)$")]
    pub status: String,
    /// For a pending payment: what the client confirms it with (Stripe.js).
    pub client_secret: Option<String>,
}

/// Body of `POST /v1/credits/purchase`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PurchaseRequest {
    /// One of GET /v1/credits/packages (the document lists them).
    package_id: String,
    /// The provider's payment method to charge now (Stripe: `pm_…`);
    /// without it the payment stays pending until the client confirms it.
    #[schema(min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9_]+$")]
    payment_method: Option<String>,
}

#[utoipa::path(post, path = "/v1/credits/purchase", tag = "credits", security(("bearer" = [])),
    request_body(content = PurchaseRequest, description = "Send an `Idempotency-Key`: a retried purchase (also after a 5xx) is the same purchase and is charged once."),
    responses((status = 201, body = Purchase), (status = 401, body = crate::error::ErrorEnvelope),
              (status = 402, description = "PAYMENT_DECLINED", body = crate::error::ErrorEnvelope),
              (status = 409, description = "PURCHASE_CONFLICT: this Idempotency-Key was used for another package", body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn purchase(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let package_id = f.required_str("package_id");
    let package = package_id.and_then(|id| PACKAGES.iter().find(|p| p.id == id));
    if package_id.is_some() && package.is_none() {
        let ids: Vec<&str> = PACKAGES.iter().map(|p| p.id).collect();
        f.reject(
            "package_id",
            "unknown",
            format!("must be one of {}", ids.join(", ")),
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
    let package = package.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no package")))?;
    let key = headers
        .get(crate::idempotency::IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok());
    let purchase_id = payments::purchase_id(user.user_id, key);
    let metadata = HashMap::from([("actor".to_owned(), user.user_id.to_string())]);
    ctx.store
        .payments
        .execute(
            &purchase_id.to_string(),
            PaymentCommand::StartPayment {
                user_id: user.user_id,
                package_id: package.id.to_owned(),
                credits: package.credits,
                amount_cents: package.price_cents,
                currency: package.currency.to_owned(),
                provider: ctx.payments.name().to_owned(),
                at: crate::now(),
            },
            metadata,
        )
        .await
        .map_err(|e| {
            command_error(e, |e| match e {
                PaymentError::TermsDiffer => ApiError::Conflict {
                    code: "PURCHASE_CONFLICT",
                    message: "This Idempotency-Key names a purchase of another package.".into(),
                    details: None,
                },
                other => ApiError::Internal(anyhow::anyhow!(other)),
            })
        })?;
    let charged = ctx
        .payments
        .charge(&ChargeRequest {
            purchase_id,
            user_id: user.user_id,
            item: package.id.to_owned(),
            amount_cents: package.price_cents,
            currency: package.currency,
            payment_method: payment_method.map(str::to_owned),
        })
        .await;
    let charge = match charged {
        Ok(charge) => charge,
        Err(ChargeError::Declined { code, payment_id }) => {
            if let Some(payment_id) = payment_id {
                let failed = payments::settle(
                    &ctx.store,
                    purchase_id,
                    &payment_id,
                    PaymentOutcome::Failed { code },
                    package.price_cents,
                    package.currency,
                    crate::now(),
                )
                .await;
                if let Err(e) = failed {
                    tracing::warn!(%purchase_id, error = %e, "declined payment not recorded");
                }
            }
            return Err(ApiError::PaymentDeclined);
        }
        Err(ChargeError::Unavailable(cause)) => {
            tracing::warn!(%cause, "payment provider unavailable");
            return Err(ApiError::Unavailable("The payment provider"));
        }
    };
    let mut position = None;
    if charge.status == ChargeStatus::Succeeded {
        let settled = payments::settle(
            &ctx.store,
            purchase_id,
            &charge.payment_id,
            PaymentOutcome::Succeeded,
            charge.amount_cents,
            &charge.currency,
            crate::now(),
        )
        .await
        .map_err(settle_error)?;
        position = settled.position;
    }
    Ok(with_position(
        position,
        (
            StatusCode::CREATED,
            Json(Purchase {
                purchase_id,
                payment_id: charge.payment_id,
                package_id: package.id.to_owned(),
                credits: package.credits,
                price_cents: package.price_cents,
                currency: package.currency.to_owned(),
                status: match charge.status {
                    ChargeStatus::Succeeded => "succeeded",
                    ChargeStatus::Pending => "pending",
                }
                .to_owned(),
                client_secret: match charge.status {
                    ChargeStatus::Succeeded => None,
                    ChargeStatus::Pending => charge.client_secret,
                },
            }),
        ),
    ))
}

/// A verdict that does not fit its purchase grants nothing; it is the
/// provider's fault (or an attack), logged, and answered as unavailable.
pub fn settle_error(e: SettleError) -> ApiError {
    match e {
        SettleError::Refused(reason) => {
            tracing::error!(%reason, "payment verdict refused; nothing granted");
            ApiError::Unavailable("The payment provider")
        }
        SettleError::Store(cause) => ApiError::Internal(anyhow::anyhow!(cause)),
    }
}

/// A subscription plan (POST /v1/subscriptions/subscribe takes the paid ones).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Plan {
    /// free, basic, pro or enterprise.
    pub id: &'static str,
    pub name: &'static str,
    pub credits_per_month: i64,
    pub price_cents: i64,
    pub currency: &'static str,
}

pub const PLANS: &[Plan] = &[
    Plan {
        id: "free",
        name: "Free",
        credits_per_month: 0,
        price_cents: 0,
        currency: "usd",
    },
    Plan {
        id: "basic",
        name: "Basic",
        credits_per_month: 300,
        price_cents: 499,
        currency: "usd",
    },
    Plan {
        id: "pro",
        name: "Pro",
        credits_per_month: 1000,
        price_cents: 1299,
        currency: "usd",
    },
    Plan {
        id: "enterprise",
        name: "Enterprise",
        credits_per_month: 5000,
        price_cents: 4999,
        currency: "usd",
    },
];

#[derive(Debug, Serialize, ToSchema)]
pub struct Plans {
    pub plans: Vec<Plan>,
}

#[utoipa::path(get, path = "/v1/subscriptions/plans", tag = "credits",
    responses((status = 200, body = Plans)))]
pub async fn plans() -> Json<Plans> {
    Json(Plans {
        plans: PLANS.to_vec(),
    })
}
