//! The Postgres pool, database creation and migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::Config;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL: {0}")]
    Url(sqlx::Error),
    #[error("cannot reach Postgres: {0}")]
    Connect(sqlx::Error),
    #[error("cannot create database {name}: {source}")]
    Create { name: String, source: sqlx::Error },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Connection options from a URL. On loopback, unless the URL sets
/// `sslmode`, TLS is off: it protects nothing there and costs both sides CPU
/// on every query (measured: a fifth of the API's CPU time).
pub fn options(url: &str) -> Result<PgConnectOptions, DbError> {
    let mut opts = PgConnectOptions::from_str(url).map_err(DbError::Url)?;
    let loopback = matches!(opts.get_host(), "127.0.0.1" | "localhost" | "::1")
        || opts.get_host().starts_with('/');
    if loopback && !url.contains("sslmode=") {
        opts = opts.ssl_mode(sqlx::postgres::PgSslMode::Disable);
    }
    Ok(opts
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2)))
}

/// Creates the configured database when it does not exist yet.
pub async fn ensure_database(database_url: &str) -> Result<(), DbError> {
    let opts = options(database_url)?;
    let name = opts.get_database().unwrap_or("postgres").to_owned();
    if PgConnection::connect_with(&opts).await.is_ok() {
        return Ok(());
    }
    let mut admin = PgConnection::connect_with(&opts.clone().database("postgres"))
        .await
        .map_err(DbError::Connect)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .map_err(DbError::Connect)?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(e) = sqlx::query(&sql).execute(&mut admin).await {
            // another process may have created it meanwhile
            let duplicate = e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "42P04" || c == "23505");
            if !duplicate {
                return Err(DbError::Create { name, source: e });
            }
        }
    }
    Ok(())
}

/// Creates the database when missing and opens a pool on it.
pub async fn connect(config: &Config) -> Result<PgPool, DbError> {
    ensure_database(&config.database_url).await?;
    pool_options(config.db_pool_size)
        .connect_with(options(&config.database_url)?)
        .await
        .map_err(DbError::Connect)
}

/// A pool on the same database whose connections plan each statement once
/// (`plan_cache_mode = force_generic_plan`), opened lazily, at most half as
/// many connections as the main pool (at least 2).
///
/// For statements whose best plan does not depend on their parameters but
/// whose custom plans Postgres keeps making on every execution: it stays
/// with custom plans whenever the generic plan's *estimate* is higher, even
/// when planning costs more than running (search rankings: 0.5–1 ms of
/// planning for 0.4–2.6 ms of execution, `api/src/routes/search.rs`). Only
/// statements written to plan well without their parameters' values (no
/// `LIKE $1`, no `LIMIT $1`) belong here.
pub fn connect_generic(config: &Config) -> Result<PgPool, DbError> {
    let opts = options(&config.database_url)?.options([("plan_cache_mode", "force_generic_plan")]);
    Ok(pool_options((config.db_pool_size / 2).max(2)).connect_lazy_with(opts))
}

/// Both pools: at most `max` connections, none held open while idle, 5 s
/// to get one.
fn pool_options(max: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
}

/// Applies pending migrations (idempotent; safe from several processes, sqlx
/// serializes them with an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Waits until this process holds the session-level advisory lock `key`, and
/// returns the connection that holds it (the lock lives as long as it does).
/// `None` when `shutdown` fires first.
pub async fn acquire_session_lock(
    database_url: &str,
    key: &str,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<PgConnection> {
    let mut logged = false;
    loop {
        if shutdown.is_cancelled() {
            return None;
        }
        let connected = match options(database_url) {
            Ok(opts) => PgConnection::connect_with(&opts).await,
            Err(DbError::Url(e)) => Err(e),
            Err(_) => continue,
        };
        match connected {
            Ok(mut conn) => {
                let got: Result<bool, _> =
                    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                        .bind(key)
                        .fetch_one(&mut conn)
                        .await;
                match got {
                    Ok(true) => return Some(conn),
                    Ok(false) if !logged => {
                        tracing::info!(lock = key, "another process holds the lock; standing by");
                        logged = true;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(lock = key, error = %e, "cannot take lock"),
                }
                let _ = conn.close().await;
            }
            Err(e) => tracing::warn!(lock = key, error = %e, "cannot connect to take lock"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// A transaction that holds back the cluster-wide xmin horizon: the relay
/// publishes nothing committed after it started until it ends (see
/// `relay.rs`). Any long transaction that has written anything, in any
/// database of the cluster, does this; `idle_in_transaction_session_timeout`
/// bounds forgotten ones.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct HorizonHolder {
    pub pid: i32,
    pub application_name: String,
    pub database: Option<String>,
    pub state: Option<String>,
    /// Since the transaction began.
    pub age_seconds: f64,
}

/// The transaction holding the horizon, when it has for `min_age` or more.
pub async fn horizon_holder(
    pool: &PgPool,
    min_age: Duration,
) -> Result<Option<HorizonHolder>, sqlx::Error> {
    sqlx::query_as(
        "SELECT pid, application_name, datname::text AS database, state,
                extract(epoch FROM now() - xact_start)::float8 AS age_seconds
           FROM pg_stat_activity
          WHERE backend_xid = xid(pg_snapshot_xmin(pg_current_snapshot()))
            AND now() - xact_start >= make_interval(secs => $1)
          LIMIT 1",
    )
    .bind(min_age.as_secs_f64())
    .fetch_optional(pool)
    .await
}
