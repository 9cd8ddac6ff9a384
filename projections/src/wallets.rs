//! `wallets`: each user's credit balance.

use async_trait::async_trait;
use lokiz_domain::wallet::{Wallet, WalletEvent};
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

use crate::projector::{decode, uuid_id, ProjectionError, Projector};

pub struct WalletsProjector;

#[async_trait]
impl Projector for WalletsProjector {
    fn name(&self) -> &'static str {
        "wallets"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Wallet::TYPE_NAME]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["wallets"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let user_id = uuid_id(event)?;
        match decode::<WalletEvent>(event)? {
            WalletEvent::CreditsGranted {
                amount, granted_at, ..
            } => {
                // An increment, not `balance_after`: the balance is the
                // projection's own running sum, which exactly-once delivery
                // keeps equal to the event store's.
                sqlx::query(
                    "INSERT INTO wallets (user_id, balance, granted, updated_at) VALUES ($1, $2, $2, $3)
                     ON CONFLICT (user_id) DO UPDATE
                        SET balance = wallets.balance + EXCLUDED.balance,
                            granted = wallets.granted + EXCLUDED.granted,
                            updated_at = EXCLUDED.updated_at",
                )
                .bind(user_id)
                .bind(amount)
                .bind(granted_at)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}
