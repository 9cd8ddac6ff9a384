//! Rotating refresh tokens. A token is 32 random bytes (base64url); only its
//! SHA-256 is stored. Each use spends it and issues the next one in the same
//! family; presenting a spent token again revokes the whole family (the token
//! was stolen, or the client is confused — either way everyone signs in again).

use base64::Engine;
use chrono::{Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

pub const REFRESH_TTL_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("unknown, expired or revoked refresh token")]
    Invalid,
    #[error("refresh token reused; its family is revoked")]
    Reused,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn insert(
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    family_id: Uuid,
) -> Result<String, sqlx::Error> {
    let token = new_token();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(digest(&token))
    .bind(family_id)
    .bind(user_id)
    .bind(Utc::now() + Duration::days(REFRESH_TTL_DAYS))
    .execute(conn)
    .await?;
    Ok(token)
}

/// Starts a new family (a sign-in).
pub async fn issue(pool: &PgPool, user_id: Uuid) -> Result<String, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    insert(&mut conn, user_id, Uuid::now_v7()).await
}

/// Spends `token` and returns its user with the next token of the family.
pub async fn rotate(pool: &PgPool, token: &str) -> Result<(Uuid, String), RefreshError> {
    let mut tx = pool.begin().await?;
    let row: Option<(Uuid, Uuid, bool, bool, bool)> = sqlx::query_as(
        "SELECT user_id, family_id, used_at IS NOT NULL, revoked_at IS NOT NULL, expires_at < now()
           FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(digest(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user_id, family_id, used, revoked, expired)) = row else {
        return Err(RefreshError::Invalid);
    };
    if used {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::warn!(%user_id, "refresh token reuse; family revoked");
        return Err(RefreshError::Reused);
    }
    if revoked || expired {
        return Err(RefreshError::Invalid);
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1")
        .bind(digest(token))
        .execute(&mut *tx)
        .await?;
    let next = insert(&mut tx, user_id, family_id).await?;
    tx.commit().await?;
    Ok((user_id, next))
}

/// Revokes the family `token` belongs to (sign-out). Unknown tokens are
/// ignored: signing out twice is not an error.
pub async fn revoke_family(pool: &PgPool, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now()
          WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)
            AND revoked_at IS NULL",
    )
    .bind(digest(token))
    .execute(pool)
    .await?;
    Ok(())
}
