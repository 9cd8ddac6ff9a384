//! Wakes relays after appends: `NOTIFY lokiz_events`, debounced.
//!
//! A NOTIFY inside each event transaction (say, from a trigger) takes
//! Postgres' global notification lock at every commit and serializes them:
//! measured here, it halved append throughput. Instead each process that
//! appends sends at most one NOTIFY per `DEBOUNCE`, outside the event
//! transactions; relays also poll, so nothing depends on a notification
//! arriving.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::relay::NOTIFY_CHANNEL;

const DEBOUNCE: Duration = Duration::from_millis(2);

#[derive(Clone)]
pub struct AppendSignal {
    pending: Arc<Notify>,
}

impl AppendSignal {
    /// Starts the notifier task on the current Tokio runtime.
    pub fn spawn(pool: PgPool) -> Self {
        let pending = Arc::new(Notify::new());
        let waiting = pending.clone();
        tokio::spawn(async move {
            loop {
                waiting.notified().await;
                if pool.is_closed() {
                    break;
                }
                if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(NOTIFY_CHANNEL)
                    .execute(&pool)
                    .await
                {
                    tracing::debug!(error = %e, "cannot notify relays; they will poll");
                }
                tokio::time::sleep(DEBOUNCE).await;
            }
        });
        Self { pending }
    }

    /// Records that events were appended; cheap, never blocks.
    pub fn appended(&self) {
        self.pending.notify_one();
    }
}
