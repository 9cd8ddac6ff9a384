//! `wallets` (each user's spendable, reserved and spent credits) and
//! `credit_transactions` (one row per wallet event: the credits history).

use async_trait::async_trait;
use lokiz_domain::wallet::{Wallet, WalletEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projector::{decode, uuid_id, ProjectionError, Projector};

pub struct WalletsProjector;

/// One history row.
struct Transaction<'a> {
    kind: &'static str,
    amount: i64,
    credits: i64,
    balance_after: i64,
    reason: Option<&'a str>,
    reference: Option<&'a str>,
    job_id: Option<Uuid>,
}

#[async_trait]
impl Projector for WalletsProjector {
    fn name(&self) -> &'static str {
        "wallets"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Wallet::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["wallets", "credit_transactions"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let user_id = uuid_id(event)?;
        let e = decode::<WalletEvent>(event)?;
        // Increments, not `balance_after`: the balances are the projection's
        // own running sums, which exactly-once delivery keeps equal to the
        // aggregate's; `balance_after` is kept in the history as recorded.
        let (balance, reserved, spent, granted, at) = match &e {
            WalletEvent::CreditsGranted {
                amount, granted_at, ..
            } => (*amount, 0, 0, *amount, *granted_at),
            WalletEvent::CreditsReserved {
                amount,
                reserved_at,
                ..
            } => (-amount, *amount, 0, 0, *reserved_at),
            WalletEvent::CreditsCaptured {
                amount,
                captured_at,
                ..
            } => (0, -amount, *amount, 0, *captured_at),
            WalletEvent::CreditsRefunded {
                amount,
                refunded_at,
                ..
            } => (*amount, -amount, 0, 0, *refunded_at),
            // free job slots move no credits: not in the balance or history
            WalletEvent::FreeJobAdmitted { .. } | WalletEvent::FreeJobReleased { .. } => {
                return Ok(())
            }
        };
        sqlx::query(
            "INSERT INTO wallets AS w (user_id, balance, reserved, spent, granted, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id) DO UPDATE
                SET balance = w.balance + EXCLUDED.balance,
                    reserved = w.reserved + EXCLUDED.reserved,
                    spent = w.spent + EXCLUDED.spent,
                    granted = w.granted + EXCLUDED.granted,
                    updated_at = EXCLUDED.updated_at",
        )
        .bind(user_id)
        .bind(balance)
        .bind(reserved)
        .bind(spent)
        .bind(granted)
        .bind(at)
        .execute(&mut *conn)
        .await?;

        let t = match &e {
            WalletEvent::CreditsGranted {
                amount,
                reason,
                reference,
                balance_after,
                ..
            } => Transaction {
                kind: "grant",
                amount: *amount,
                credits: *amount,
                balance_after: *balance_after,
                reason: Some(reason.as_str()),
                reference: Some(reference),
                job_id: None,
            },
            WalletEvent::CreditsReserved {
                job_id,
                amount,
                balance_after,
                ..
            } => Transaction {
                kind: "reserve",
                amount: -amount,
                credits: *amount,
                balance_after: *balance_after,
                reason: None,
                reference: None,
                job_id: Some(*job_id),
            },
            WalletEvent::CreditsCaptured { job_id, amount, .. } => Transaction {
                kind: "capture",
                amount: 0,
                credits: *amount,
                // a capture leaves the spendable balance as it was
                balance_after: sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *conn)
                    .await?,
                reason: None,
                reference: None,
                job_id: Some(*job_id),
            },
            WalletEvent::CreditsRefunded {
                job_id,
                amount,
                balance_after,
                ..
            } => Transaction {
                kind: "refund",
                amount: *amount,
                credits: *amount,
                balance_after: *balance_after,
                reason: None,
                reference: None,
                job_id: Some(*job_id),
            },
            WalletEvent::FreeJobAdmitted { .. } | WalletEvent::FreeJobReleased { .. } => {
                return Ok(())
            }
        };
        sqlx::query(
            "INSERT INTO credit_transactions
                (position, user_id, kind, amount, credits, balance_after, reason, reference, job_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (position) DO NOTHING",
        )
        .bind(event.position)
        .bind(user_id)
        .bind(t.kind)
        .bind(t.amount)
        .bind(t.credits)
        .bind(t.balance_after)
        .bind(t.reason)
        .bind(t.reference)
        .bind(t.job_id)
        .bind(at)
        .execute(conn)
        .await?;
        Ok(())
    }
}
