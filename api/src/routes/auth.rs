//! `/v1/auth`: register, login, me, refresh, logout.
//!
//! Registration claims the username and email in the write-side `identities`
//! table (unique keys: holds under concurrent sign-ups) together with the
//! password hash, then records `Registered` on the User aggregate and the
//! signup grant on the Wallet. See ARCHITECTURE.md "Identity and credentials".

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lokiz_domain::user::{UserCommand, UserError};
use lokiz_domain::values::{DisplayName, Email, Password, Username};
use lokiz_domain::wallet::{GrantReason, WalletCommand, WalletError, SIGNUP_CREDITS};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{password, refresh};
use crate::error::{command_error, ApiError};
use crate::extract::{AuthUser, Fields, JsonObject, MinPosition};
use crate::routes::users::{load_me, load_me_settled, MeView, ME_READS};
use crate::routes::with_position;
use crate::ApiContext;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/me", get(me))
        .route("/auth/refresh", post(refresh_tokens))
        .route("/auth/logout", post(logout))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until `access_token` expires (900).
    pub expires_in: i64,
    /// Single-use: exchange at `/v1/auth/refresh` for a new pair.
    pub refresh_token: String,
    pub user: MeView,
    /// Global position of the last event this call recorded, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

/// Body of `POST /v1/auth/register`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RegisterRequest {
    /// 3–30 letters, digits or underscores, starting with a letter; unique
    /// ignoring case.
    #[schema(min_length = 3, max_length = 30, pattern = r"^[A-Za-z][A-Za-z0-9_]*$")]
    username: String,
    /// Unique ignoring case.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 8–128 characters.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    /// Defaults to the username (also when null). 1–50 characters, one line.
    #[schema(
        max_length = 50,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    display_name: Option<String>,
}

/// Body of `POST /v1/auth/login`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoginRequest {
    email: String,
    password: String,
}

/// Body of `POST /v1/auth/refresh` and `POST /v1/auth/logout`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RefreshRequest {
    refresh_token: String,
}

fn conflict(fields: Vec<&'static str>) -> ApiError {
    let message = match fields.as_slice() {
        ["username"] => "This username is already taken.".to_owned(),
        ["email"] => "An account with this email already exists.".to_owned(),
        _ => "This username and email are already in use.".to_owned(),
    };
    ApiError::Conflict {
        code: "ALREADY_EXISTS",
        message,
        details: Some(json!({ "fields": fields })),
    }
}

async fn tokens_for(
    ctx: &ApiContext,
    user: MeView,
    position: Option<i64>,
) -> Result<AuthResponse, ApiError> {
    let (access_token, expires_in) = ctx.jwt.issue_access(user.id).map_err(ApiError::internal)?;
    let refresh_token = refresh::issue(&ctx.pool, user.id).await?;
    Ok(AuthResponse {
        access_token,
        token_type: "bearer",
        expires_in,
        refresh_token,
        user,
        position,
    })
}

#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = AuthResponse, headers(("X-Lokiz-Position" = i64))),
              (status = 409, description = "ALREADY_EXISTS", body = crate::error::ErrorEnvelope),
              (status = 422, description = "VALIDATION_FAILED", body = crate::error::ErrorEnvelope)))]
pub async fn register(
    State(ctx): State<ApiContext>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let raw = f.required_str("username");
    let username = f.parse("username", raw, Username::parse);
    let raw = f.required_str("email");
    let email = f.parse("email", raw, Email::parse);
    let raw = f.required_str("password");
    let password = f.parse("password", raw, Password::parse);
    let raw = f.optional_str("display_name");
    let display_name = f.parse("display_name", raw, DisplayName::parse);
    f.finish()?;
    let (Some(username), Some(email), Some(password)) = (username, email, password) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    let display_name = display_name.unwrap_or_else(|| DisplayName::from_username(&username));

    // Tell the client about every taken field up front; the unique keys below
    // still decide races.
    let taken: Vec<(bool, bool)> = sqlx::query_as(
        "SELECT username_key = $1, email_key = $2 FROM identities
          WHERE username_key = $1 OR email_key = $2",
    )
    .bind(username.normalized())
    .bind(email.as_str())
    .fetch_all(&ctx.pool)
    .await?;
    let mut fields = Vec::new();
    if taken.iter().any(|t| t.0) {
        fields.push("username");
    }
    if taken.iter().any(|t| t.1) {
        fields.push("email");
    }
    if !fields.is_empty() {
        return Err(conflict(fields));
    }

    let hash = password::hash(password).await.map_err(ApiError::internal)?;
    let user_id = Uuid::now_v7();
    let claimed = sqlx::query(
        "INSERT INTO identities (user_id, username_key, email_key, password_hash)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(user_id)
    .bind(username.normalized())
    .bind(email.as_str())
    .bind(&hash)
    .execute(&ctx.pool)
    .await;
    if let Err(e) = claimed {
        let constraint = e
            .as_database_error()
            .and_then(|d| d.constraint())
            .map(str::to_owned);
        return Err(match constraint.as_deref() {
            Some("identities_username_key_key") => conflict(vec!["username"]),
            Some("identities_email_key_key") => conflict(vec!["email"]),
            _ => e.into(),
        });
    }

    let at = crate::now();
    let metadata = HashMap::from([("actor".to_owned(), user_id.to_string())]);
    let registered = ctx
        .store
        .users
        .execute(
            &user_id.to_string(),
            UserCommand::RegisterUser {
                user_id,
                username: username.clone(),
                email: email.clone(),
                display_name: display_name.clone(),
                at,
            },
            metadata.clone(),
        )
        .await;
    if let Err(e) = registered {
        // Nothing was recorded: release the claim so the names stay free.
        let _ = sqlx::query("DELETE FROM identities WHERE user_id = $1")
            .bind(user_id)
            .execute(&ctx.pool)
            .await;
        return Err(command_error(e, |e: UserError| {
            ApiError::internal(anyhow::anyhow!("{e}"))
        }));
    }
    let granted = ctx
        .store
        .wallets
        .execute(
            &user_id.to_string(),
            WalletCommand::GrantCredits {
                amount: SIGNUP_CREDITS,
                reason: GrantReason::Signup,
                reference: "signup".into(),
                at,
            },
            metadata,
        )
        .await
        .map_err(|e| {
            command_error(e, |e: WalletError| {
                ApiError::internal(anyhow::anyhow!("{e}"))
            })
        })?;

    let user = MeView {
        id: user_id,
        username: username.into_inner(),
        email: email.into_inner(),
        display_name: display_name.into_inner(),
        bio: None,
        profile_image_url: None,
        credits: SIGNUP_CREDITS,
        created_at: at,
    };
    let body = tokens_for(&ctx, user, granted.position).await?;
    Ok(with_position(
        granted.position,
        (StatusCode::CREATED, Json(body)),
    ))
}

const BAD_CREDENTIALS: ApiError = ApiError::Unauthorized {
    code: "INVALID_CREDENTIALS",
    message: "Email or password is incorrect.",
};

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = AuthResponse),
              (status = 401, description = "INVALID_CREDENTIALS: unknown email and wrong password alike", body = crate::error::ErrorEnvelope),
              (status = 403, description = "USER_BANNED", body = crate::error::ErrorEnvelope),
              (status = 422, body = crate::error::ErrorEnvelope)))]
pub async fn login(
    State(ctx): State<ApiContext>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body);
    let email = f.required_str("email");
    let password = f.required_str("password");
    f.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    // guessing one account's password from many addresses: limited per
    // account (the key is a hash: no address is kept in the limits table)
    let account = hex_sha256(email.trim().to_ascii_lowercase().as_bytes());
    if let Err(refused) = crate::rate_limit::check(
        &ctx,
        &format!("login-account:{account}"),
        ctx.config.rate_limits.login_account,
    )
    .await
    {
        return Ok(refused);
    }
    let row: Option<(Uuid, String)> =
        sqlx::query_as("SELECT user_id, password_hash FROM identities WHERE email_key = $1")
            .bind(email.trim().to_ascii_lowercase())
            .fetch_optional(&ctx.pool)
            .await?;
    let (user_id, hash) = match row {
        Some((id, h)) => (Some(id), Some(h)),
        None => (None, None),
    };
    let ok = password::verify(password.to_owned(), hash)
        .await
        .map_err(ApiError::internal)?;
    let Some(user_id) = user_id.filter(|_| ok) else {
        return Err(BAD_CREDENTIALS);
    };
    refuse_banned(&ctx, user_id).await?;
    let user = load_me_settled(&ctx, user_id).await?;
    Ok(Json(tokens_for(&ctx, user, None).await?).into_response())
}

/// 403 `USER_BANNED` for a banned account: it gets no new tokens.
async fn refuse_banned(ctx: &ApiContext, user_id: Uuid) -> Result<(), ApiError> {
    if crate::extract::banned(ctx, user_id).await? {
        return Err(ApiError::Forbidden {
            code: "USER_BANNED",
            message: "This account is banned.",
        });
    }
    Ok(())
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[utoipa::path(get, path = "/v1/auth/me", tag = "auth", security(("bearer" = [])),
    params(crate::extract::MinPosition),
    responses((status = 200, body = MeView), (status = 401, body = crate::error::ErrorEnvelope),
              (status = 503, description = "CONSISTENCY_TIMEOUT", body = crate::error::ErrorEnvelope)))]
pub async fn me(
    State(ctx): State<ApiContext>,
    user: AuthUser,
    MinPosition(min): MinPosition,
) -> Result<Json<MeView>, ApiError> {
    ctx.wait_for(min, ME_READS).await?;
    match load_me(&ctx, user.user_id).await? {
        Some(me) => Ok(Json(me)),
        None => Ok(Json(load_me_settled(&ctx, user.user_id).await?)),
    }
}

fn refresh_field(body: &serde_json::Map<String, serde_json::Value>) -> Result<String, ApiError> {
    let mut f = Fields::new(body);
    let token = f.required_str("refresh_token").map(str::to_owned);
    f.finish()?;
    token.ok_or_else(|| ApiError::internal(anyhow::anyhow!("validated field missing")))
}

#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = AuthResponse),
              (status = 401, description = "INVALID_REFRESH_TOKEN or REFRESH_TOKEN_REUSED (the family is revoked)", body = crate::error::ErrorEnvelope),
              (status = 403, description = "USER_BANNED", body = crate::error::ErrorEnvelope)))]
pub async fn refresh_tokens(
    State(ctx): State<ApiContext>,
    JsonObject(body): JsonObject,
) -> Result<Json<AuthResponse>, ApiError> {
    let token = refresh_field(&body)?;
    let (user_id, next) = refresh::rotate(&ctx.pool, &token)
        .await
        .map_err(|e| match e {
            refresh::RefreshError::Invalid => ApiError::Unauthorized {
                code: "INVALID_REFRESH_TOKEN",
                message: "The refresh token is invalid, expired or revoked.",
            },
            refresh::RefreshError::Reused => ApiError::Unauthorized {
                code: "REFRESH_TOKEN_REUSED",
                message: "This refresh token was already used; sign in again.",
            },
            refresh::RefreshError::Db(e) => e.into(),
        })?;
    refuse_banned(&ctx, user_id).await?;
    let user = load_me_settled(&ctx, user_id).await?;
    let (access_token, expires_in) = ctx.jwt.issue_access(user_id).map_err(ApiError::internal)?;
    Ok(Json(AuthResponse {
        access_token,
        token_type: "bearer",
        expires_in,
        refresh_token: next,
        user,
        position: None,
    }))
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "Signed out: the refresh token's family is revoked")))]
pub async fn logout(
    State(ctx): State<ApiContext>,
    JsonObject(body): JsonObject,
) -> Result<impl IntoResponse, ApiError> {
    let token = refresh_field(&body)?;
    refresh::revoke_family(&ctx.pool, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
