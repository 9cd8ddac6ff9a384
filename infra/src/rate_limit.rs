//! Fixed-window rate limits shared by every API process, kept in Postgres
//! (`rate_limits`, an UNLOGGED table).
//!
//! Why Postgres: every LOKIZ process already depends on it, so the limits
//! hold across any number of API processes without another server to run,
//! secure and monitor; and the counters need only atomic increments, which
//! one `INSERT … ON CONFLICT DO UPDATE` gives.
//!
//! Why it costs (almost) nothing per request: a process takes *leases* — it
//! adds `lease` requests at once to the shared counter and hands them out
//! from memory — so a busy key costs one round trip per lease, not per
//! request. Leased requests count as used everywhere, so the limit is never
//! exceeded across processes; a process may stop a caller slightly early
//! (its own unused lease, or another process's, counts as used). Small
//! limits (login, sign-up) lease one request at a time and are exact.
//!
//! When Postgres cannot be reached the request is let through (logged and
//! counted): a limiter must not turn a database blip into a total outage,
//! and the request needs the database anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;

/// `count` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub window: Duration,
}

impl Limit {
    pub const fn new(count: u32, window_secs: u64) -> Self {
        Self {
            count,
            window: Duration::from_secs(window_secs),
        }
    }

    /// How many requests a process takes from the shared counter at once.
    fn lease(&self) -> u32 {
        (self.count / 50).clamp(1, 100)
    }

    fn window_secs(&self) -> i64 {
        self.window.as_secs().max(1) as i64
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    /// Requests left in this window (an estimate across processes).
    pub remaining: u32,
    /// Unix seconds when the window ends.
    pub reset_at: i64,
    /// Seconds until then (at least 1).
    pub retry_after: u64,
}

#[derive(Debug)]
struct Local {
    window_start: i64,
    window_secs: i64,
    /// Leased requests not handed out yet.
    left: u32,
    /// The shared counter as last seen (leases of every process).
    used: u64,
    /// The shared counter reached the limit: refuse until the window ends
    /// without asking again.
    exhausted: bool,
}

/// Keys kept in memory at most; beyond, past windows are dropped and, if
/// that is not enough, every lease (their requests stay counted as used).
const MAX_KEYS: usize = 100_000;

#[derive(Clone)]
pub struct RateLimiter {
    pool: PgPool,
    local: Arc<Mutex<HashMap<String, Local>>>,
    last_sweep: Arc<Mutex<i64>>,
}

impl RateLimiter {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            local: Arc::new(Mutex::new(HashMap::new())),
            last_sweep: Arc::new(Mutex::new(0)),
        }
    }

    /// Counts one request of `key` against `limit`.
    pub async fn check(&self, key: &str, limit: Limit) -> Decision {
        let now = chrono::Utc::now().timestamp();
        let secs = limit.window_secs();
        let window_start = now - now.rem_euclid(secs);
        let reset_at = window_start + secs;
        let decision = |allowed: bool, used: u64, left: u32| Decision {
            allowed,
            limit: limit.count,
            remaining: (u64::from(limit.count).saturating_sub(used) + u64::from(left))
                .min(u64::from(limit.count)) as u32,
            reset_at,
            retry_after: (reset_at - now).max(1) as u64,
        };
        // served from this process's lease?
        {
            let mut local = self.lock();
            if local.len() >= MAX_KEYS {
                local.retain(|_, l| l.window_start + l.window_secs > now);
                if local.len() >= MAX_KEYS {
                    local.clear();
                }
            }
            let entry = local.entry(key.to_owned()).or_insert(Local {
                window_start,
                window_secs: secs,
                left: 0,
                used: 0,
                exhausted: false,
            });
            if entry.window_start != window_start || entry.window_secs != secs {
                *entry = Local {
                    window_start,
                    window_secs: secs,
                    left: 0,
                    used: 0,
                    exhausted: false,
                };
            }
            if entry.left > 0 {
                entry.left -= 1;
                return decision(true, entry.used, entry.left);
            }
            if entry.exhausted {
                return decision(false, entry.used, 0);
            }
        }
        // take a lease from the shared counter
        let lease = limit.lease().min(limit.count.max(1));
        self.maybe_sweep(now);
        let used: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO rate_limits AS r (key, window_start, used) VALUES ($1, $2, $3)
             ON CONFLICT (key, window_start) DO UPDATE SET used = r.used + EXCLUDED.used
             RETURNING used",
        )
        .bind(key)
        .bind(window_start)
        .bind(i64::from(lease))
        .fetch_one(&self.pool)
        .await;
        let used = match used {
            Ok(u) => u.max(0) as u64,
            Err(e) => {
                tracing::warn!(error = %e, "rate limit store unavailable; request let through");
                metrics::counter!("lokiz_rate_limit_store_errors_total").increment(1);
                return decision(true, 0, limit.count);
            }
        };
        let before = used.saturating_sub(u64::from(lease));
        let granted = u64::from(limit.count)
            .saturating_sub(before)
            .min(u64::from(lease)) as u32;
        let mut local = self.lock();
        let entry = local.entry(key.to_owned()).or_insert(Local {
            window_start,
            window_secs: secs,
            left: 0,
            used: 0,
            exhausted: false,
        });
        if entry.window_start != window_start {
            // the window turned while we asked: this lease was for the old one
            return decision(granted > 0, used, 0);
        }
        entry.used = entry.used.max(used);
        if granted == 0 {
            entry.exhausted = true;
            return decision(false, entry.used, entry.left);
        }
        entry.left += granted - 1;
        decision(true, entry.used, entry.left)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes past windows (older than a day) at most once a minute.
    fn maybe_sweep(&self, now: i64) {
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
            if now - *last < 60 {
                return;
            }
            *last = now;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let swept = sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
                .bind(now - 86_400)
                .execute(&pool)
                .await;
            if let Err(e) = swept {
                tracing::warn!(error = %e, "rate limit sweep failed");
            }
        });
    }
}
