//! The bench harness: `lokiz bench`.
//!
//! In one run, on one machine, it measures each scenario beside its raw
//! ceiling and prints one table (scenario, ceiling, ours, ratio, p50, p99,
//! target, pass); `--out FILE` also writes it as Markdown.
//!
//! - Ceiling: single-event INSERT transactions/s into an events-shaped table,
//!   `--clients` connections, straight to Postgres.
//! - Command append through HTTP: `PATCH /v1/users/me` (one `ProfileUpdated`
//!   each), `--clients` concurrent clients, against a `lokiz all` child process.
//! - Projection lag: `PATCH` offered at `--lag-rate`/s for `--lag-seconds`;
//!   commit→read-model lag quantiles from the server's
//!   `lokiz_projection_lag_seconds` histogram (fine buckets, interpolated).
//! - Server memory: the child's peak RSS (VmHWM) over the whole run.
//!
//! Everything runs in a fresh database and stream that are dropped afterwards.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use lokiz_infra::Config;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Seconds each throughput scenario runs.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent clients for the append scenarios.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Offered events/s for the lag scenario.
    #[arg(long, default_value_t = 1000)]
    pub lag_rate: u64,
    /// Seconds the lag scenario runs.
    #[arg(long, default_value_t = 30)]
    pub lag_seconds: u64,
    /// Also write the table as Markdown to this file (e.g. docs/BENCHMARKS.md).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

struct Row {
    scenario: String,
    ceiling: String,
    ours: String,
    ratio: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    target: String,
    pass: bool,
}

pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let db_name = format!("lokiz_bench_{tag}");
    let base = config
        .database_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .context("DATABASE_URL")?;
    let bench_url = format!("{base}/{db_name}");
    let stream = format!("BENCH{tag}");
    eprintln!("bench: database {db_name}, stream {stream}");

    let mut rows = Vec::new();
    let result = scenarios(&config, &args, &bench_url, &stream, &mut rows).await;

    // clean up whatever happened
    if let Ok(mut admin) = PgConnection::connect(&format!("{base}/postgres")).await {
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
        ))
        .execute(&mut admin)
        .await;
    }
    if let Ok(client) = async_nats::connect(&config.nats_url).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&stream)
            .await;
    }
    result?;

    let table = render(&rows, &args);
    println!("{table}");
    if let Some(path) = &args.out {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &table)?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

async fn scenarios(
    config: &Config,
    args: &BenchArgs,
    bench_url: &str,
    stream: &str,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    lokiz_infra::db::ensure_database(bench_url).await?;

    // 1. the raw ceiling
    eprintln!(
        "bench: raw insert ceiling, {} clients, {}s",
        args.clients, args.duration
    );
    let ceiling = raw_insert_ceiling(bench_url, args.clients, args.duration).await?;

    // the server under test, as its own process
    let port = free_port()?;
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("all")
        .env("DATABASE_URL", bench_url)
        .env("NATS_URL", &config.nats_url)
        .env("LOKIZ_BIND", format!("127.0.0.1:{port}"))
        .env("LOKIZ_STREAM", stream)
        .env(
            "LOKIZ_JWT_SECRET",
            "bench-secret-bench-secret-bench-secret-0",
        )
        .env("LOKIZ_DB_POOL_SIZE", "32")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the server")?;
    let pid = child.id().unwrap_or(0);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 4)
        .timeout(Duration::from_secs(30))
        .build()?;
    let outcome = server_scenarios(&http, &base, bench_url, args, ceiling, pid, rows).await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    outcome
}

async fn server_scenarios(
    http: &reqwest::Client,
    base: &str,
    bench_url: &str,
    args: &BenchArgs,
    ceiling: Throughput,
    pid: u32,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    wait_healthy(http, base).await?;
    let tokens = register_users(http, base, args.clients.max(16)).await?;

    // 2a. command append straight through cqrs-es/postgres-es (no HTTP)
    eprintln!(
        "bench: cqrs-es UpdateProfile, {} clients, {}s",
        args.clients, args.duration
    );
    let direct = direct_append(bench_url, args.clients, args.duration).await?;
    let direct_ratio = direct.per_sec / ceiling.per_sec;
    eprintln!(
        "bench: ceiling {:.0}/s; cqrs-es {:.0}/s ({:.0} %), p50 {:.2} ms, p99 {:.2} ms",
        ceiling.per_sec,
        direct.per_sec,
        direct_ratio * 100.0,
        direct.p50_ms,
        direct.p99_ms
    );

    // 2b. command append through HTTP
    eprintln!(
        "bench: PATCH /v1/users/me, {} clients, {}s",
        args.clients, args.duration
    );
    let ours = http_append(http, base, &tokens, args.clients, args.duration).await?;
    let ratio = ours.per_sec / ceiling.per_sec;
    eprintln!(
        "bench: HTTP {:.0}/s ({:.0} %), p50 {:.2} ms, p99 {:.2} ms, {} errors",
        ours.per_sec,
        ratio * 100.0,
        ours.p50_ms,
        ours.p99_ms,
        ours.errors
    );
    rows.push(Row {
        scenario: "raw INSERT tx/s (events-shaped table)".into(),
        ceiling: format!("{:.0}/s", ceiling.per_sec),
        ours: "—".into(),
        ratio: None,
        p50_ms: Some(ceiling.p50_ms),
        p99_ms: Some(ceiling.p99_ms),
        target: "ceiling".into(),
        pass: true,
    });
    rows.push(Row {
        scenario: format!(
            "command append via cqrs-es in-process (UpdateProfile), {} clients",
            args.clients
        ),
        ceiling: format!("{:.0}/s", ceiling.per_sec),
        ours: format!("{:.0}/s", direct.per_sec),
        ratio: Some(direct_ratio),
        p50_ms: Some(direct.p50_ms),
        p99_ms: Some(direct.p99_ms),
        target: "≥ 40 % of ceiling".into(),
        pass: direct_ratio >= 0.40 && direct.errors == 0,
    });
    rows.push(Row {
        scenario: format!(
            "command append via HTTP (PATCH /users/me), {} clients",
            args.clients
        ),
        ceiling: format!("{:.0}/s", ceiling.per_sec),
        ours: format!("{:.0}/s", ours.per_sec),
        ratio: Some(ratio),
        p50_ms: Some(ours.p50_ms),
        p99_ms: Some(ours.p99_ms),
        target: "≥ 40 % of ceiling".into(),
        pass: ratio >= 0.40 && ours.errors == 0,
    });

    // 3. projection lag at a fixed offered rate
    settle(http, base).await?;
    eprintln!(
        "bench: lag at {}/s for {}s",
        args.lag_rate, args.lag_seconds
    );
    let before = lag_histogram(http, base).await?;
    let offered = offered_load(http, base, &tokens, args.lag_rate, args.lag_seconds).await?;
    settle(http, base).await?;
    let after = lag_histogram(http, base).await?;
    let delta = after.minus(&before);
    let (p50, p99) = (delta.quantile(0.50) * 1e3, delta.quantile(0.99) * 1e3);
    rows.push(Row {
        scenario: format!(
            "projection lag, {}/s offered for {}s ({} events, {} errors)",
            args.lag_rate, args.lag_seconds, offered.ok, offered.errors
        ),
        ceiling: "—".into(),
        ours: format!(
            "{:.0} events/s",
            offered.ok as f64 / args.lag_seconds as f64
        ),
        ratio: None,
        p50_ms: Some(p50),
        p99_ms: Some(p99),
        target: "p99 ≤ 100 ms".into(),
        pass: p99 <= 100.0 && offered.errors == 0 && delta.total > 0.0,
    });

    // 4. memory
    let peak_mb = peak_rss_mb(pid).unwrap_or(f64::NAN);
    rows.push(Row {
        scenario: "server peak RSS over the run".into(),
        ceiling: "—".into(),
        ours: format!("{peak_mb:.0} MB"),
        ratio: None,
        p50_ms: None,
        p99_ms: None,
        target: "≤ 200 MB".into(),
        pass: peak_mb <= 200.0,
    });
    Ok(())
}

struct Throughput {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn throughput(count: u64, elapsed: Duration, hist: &Histogram<u64>, errors: u64) -> Throughput {
    Throughput {
        per_sec: count as f64 / elapsed.as_secs_f64(),
        p50_ms: hist.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        errors,
    }
}

fn new_hist() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?)
}

async fn raw_insert_ceiling(url: &str, clients: usize, secs: u64) -> anyhow::Result<Throughput> {
    let pool = PgPoolOptions::new()
        .max_connections(clients as u32 + 1)
        // the same connection options the server uses
        .connect_with(lokiz_infra::db::options(url)?)
        .await?;
    sqlx::query("DROP TABLE IF EXISTS bench_events")
        .execute(&pool)
        .await?;
    // the shape of `events` (migrations/…_event_store.sql), by hand: the
    // server under test has not migrated this database yet
    sqlx::query(
        "CREATE TABLE bench_events (
            aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence bigint NOT NULL,
            event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL,
            metadata json NOT NULL,
            position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    )
    .execute(&pool)
    .await?;
    let payload = Arc::new(
        json!({"ProfileUpdated": {"display_name": "bench", "updated_at": "2026-01-01T00:00:00Z"}}),
    );
    let p = pool.clone();
    let result = closed_loop(clients, secs, move |client, n| {
        let (pool, payload) = (p.clone(), payload.clone());
        async move {
            sqlx::query(
                "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 VALUES ('User', $1, $2, 'ProfileUpdated', '1.0', $3, '{}')",
            )
            .bind(format!("bench-{client}"))
            .bind(n as i64)
            .bind(&*payload)
            .execute(&pool)
            .await?;
            Ok(true)
        }
    })
    .await;
    sqlx::query("DROP TABLE bench_events")
        .execute(&pool)
        .await?;
    pool.close().await;
    result
}

/// `clients` tasks each run `op(client, n)` back to back (n = 1, 2, …) until
/// `secs` pass; latencies of successful operations are recorded.
async fn closed_loop<F, Fut>(clients: usize, secs: u64, op: F) -> anyhow::Result<Throughput>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<bool>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = new_hist()?;
            let (mut ok, mut errors, mut n) = (0u64, 0u64, 0u64);
            while Instant::now() < deadline {
                n += 1;
                let t = Instant::now();
                match op(client, n).await {
                    Ok(true) => {
                        ok += 1;
                        hist.record(t.elapsed().as_micros() as u64)?;
                    }
                    _ => errors += 1,
                }
            }
            anyhow::Ok((ok, errors, hist))
        }));
    }
    let (mut total, mut errors) = (0, 0);
    let mut hist = new_hist()?;
    for t in tasks {
        let (n, e, h) = t.await??;
        total += n;
        errors += e;
        hist.add(&h)?;
    }
    Ok(throughput(total, started.elapsed(), &hist, errors))
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn wait_healthy(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/health")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the server did not become healthy")
}

async fn register_users(
    http: &reqwest::Client,
    base: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let resp: Value = http
            .post(format!("{base}/v1/auth/register"))
            .json(
                &json!({"username": format!("bench_{i}"), "email": format!("bench{i}@example.com"),
                          "password": "password123"}),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        tokens.push(
            resp["access_token"]
                .as_str()
                .context("access_token")?
                .to_owned(),
        );
    }
    Ok(tokens)
}

async fn patch_once(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    n: u64,
) -> anyhow::Result<bool> {
    // alternate the value so every request records an event
    let name = if n.is_multiple_of(2) {
        "Glitch A"
    } else {
        "Glitch B"
    };
    let r = http
        .patch(format!("{base}/v1/users/me"))
        .bearer_auth(token)
        .json(&json!({ "display_name": name }))
        .send()
        .await?;
    Ok(r.status().is_success())
}

async fn http_append(
    http: &reqwest::Client,
    base: &str,
    tokens: &[String],
    clients: usize,
    secs: u64,
) -> anyhow::Result<Throughput> {
    let (http, base, tokens) = (http.clone(), base.to_owned(), Arc::new(tokens.to_vec()));
    closed_loop(clients, secs, move |client, n| {
        let (http, base, tokens) = (http.clone(), base.clone(), tokens.clone());
        async move { patch_once(&http, &base, &tokens[client % tokens.len()], n).await }
    })
    .await
}

/// `UpdateProfile` through the same command bus the API uses, from this
/// process: the cost of cqrs-es + the event store without HTTP.
async fn direct_append(url: &str, clients: usize, secs: u64) -> anyhow::Result<Throughput> {
    use lokiz_domain::user::{ProfileChanges, UserCommand};
    use lokiz_domain::values::{DisplayName, Email, Username};
    let bad = |e: lokiz_domain::values::FieldError| anyhow::anyhow!(e.message);
    let pool = PgPoolOptions::new()
        .max_connections(clients as u32 + 2)
        .connect_with(lokiz_infra::db::options(url)?)
        .await?;
    let store = Arc::new(lokiz_infra::event_store::EventStore::new(pool.clone()));
    let mut ids = Vec::new();
    for i in 0..clients {
        let id = uuid::Uuid::now_v7();
        let username = Username::parse("username", &format!("direct_{i}")).map_err(bad)?;
        let email = Email::parse("email", &format!("direct{i}@example.com")).map_err(bad)?;
        store
            .users
            .execute(
                &id.to_string(),
                UserCommand::RegisterUser {
                    user_id: id,
                    display_name: DisplayName::from_username(&username),
                    username,
                    email,
                    at: crate::now(),
                },
                Default::default(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ids.push(id.to_string());
    }
    let names = [
        DisplayName::parse("d", "Direct A").map_err(bad)?,
        DisplayName::parse("d", "Direct B").map_err(bad)?,
    ];
    let ids = Arc::new(ids);
    let result = closed_loop(clients, secs, move |client, n| {
        let (store, names, ids) = (store.clone(), names.clone(), ids.clone());
        async move {
            let command = UserCommand::UpdateProfile {
                changes: ProfileChanges {
                    display_name: Some(names[(n % 2) as usize].clone()),
                    ..Default::default()
                },
                at: crate::now(),
            };
            Ok(store
                .users
                .execute(&ids[client % ids.len()], command, Default::default())
                .await
                .is_ok())
        }
    })
    .await;
    pool.close().await;
    result
}

struct Offered {
    ok: u64,
    errors: u64,
}

/// Open-loop load: one request every 1/rate s, whatever the responses do.
async fn offered_load(
    http: &reqwest::Client,
    base: &str,
    tokens: &[String],
    rate: u64,
    secs: u64,
) -> anyhow::Result<Offered> {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // consecutive requests to one user alternate its value (one event each)
    let users = tokens.len() as u64;
    for i in 0..total {
        tokio::time::sleep_until(started + interval * i as u32).await;
        let (http, base, token, ok, errors) = (
            http.clone(),
            base.to_owned(),
            tokens[i as usize % tokens.len()].clone(),
            ok.clone(),
            errors.clone(),
        );
        tasks.spawn(async move {
            match patch_once(&http, &base, &token, i / users).await {
                Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                _ => errors.fetch_add(1, Ordering::Relaxed),
            };
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok(Offered {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
    })
}

/// Waits until relay and projections report no lag.
async fn settle(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        let r = http.get(format!("{base}/ready")).send().await?;
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let checks = body
            .get("checks")
            .or_else(|| body.pointer("/error/details"))
            .cloned()
            .unwrap_or(Value::Null);
        let relay_idle = checks.pointer("/relay/lag_events").and_then(Value::as_i64) == Some(0);
        let projections_idle = checks
            .get("projections")
            .and_then(Value::as_array)
            .is_some_and(|l| l.iter().all(|p| p["lag_events"].as_i64() == Some(0)));
        if relay_idle && projections_idle {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the read models did not catch up")
}

/// Cumulative bucket counts of `lokiz_projection_lag_seconds` (all
/// projections), keyed by upper bound.
struct LagHistogram {
    buckets: BTreeMap<u64, f64>, // upper bound in ns → cumulative count
    total: f64,
}

impl LagHistogram {
    fn minus(&self, earlier: &LagHistogram) -> LagHistogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, c)| (*le, c - earlier.buckets.get(le).copied().unwrap_or(0.0)))
            .collect();
        LagHistogram {
            buckets,
            total: self.total - earlier.total,
        }
    }

    /// Linear interpolation inside the bucket holding the quantile, as
    /// Prometheus' `histogram_quantile` does. Seconds.
    fn quantile(&self, q: f64) -> f64 {
        if self.total <= 0.0 {
            return f64::NAN;
        }
        let rank = q * self.total;
        let mut prev_le = 0.0;
        let mut prev_count = 0.0;
        for (le, count) in &self.buckets {
            let le = *le as f64 / 1e9;
            if *count >= rank {
                let in_bucket = count - prev_count;
                if in_bucket <= 0.0 {
                    return le;
                }
                return prev_le + (le - prev_le) * (rank - prev_count) / in_bucket;
            }
            prev_le = le;
            prev_count = *count;
        }
        prev_le
    }
}

async fn lag_histogram(http: &reqwest::Client, base: &str) -> anyhow::Result<LagHistogram> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
    let mut total = 0.0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("lokiz_projection_lag_seconds_bucket{") {
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let Some(le) = labels
                .split("le=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
            else {
                continue;
            };
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            if le == "+Inf" {
                continue;
            }
            let le_ns = (le.parse::<f64>().unwrap_or(f64::MAX) * 1e9) as u64;
            *buckets.entry(le_ns).or_default() += value;
        } else if let Some(rest) = line.strip_prefix("lokiz_projection_lag_seconds_count{") {
            if let Some((_, v)) = rest.split_once("} ") {
                total += v.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    Ok(LagHistogram { buckets, total })
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn render(rows: &[Row], args: &BenchArgs) -> String {
    let fmt_opt = |v: Option<f64>, suffix: &str| match v {
        Some(v) if v.is_finite() => format!("{v:.2}{suffix}"),
        _ => "—".into(),
    };
    let mut out = String::new();
    out.push_str(&format!(
        "# LOKIZ benchmarks\n\nMachine: {} cores; run `lokiz bench --duration {} --clients {} --lag-rate {} --lag-seconds {}` (release build).\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        args.duration, args.clients, args.lag_rate, args.lag_seconds
    ));
    out.push_str("| scenario | ceiling | ours | ratio | p50 | p99 | target | pass |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.ceiling,
            r.ours,
            r.ratio
                .map(|x| format!("{:.0} %", x * 100.0))
                .unwrap_or_else(|| "—".into()),
            fmt_opt(r.p50_ms, " ms"),
            fmt_opt(r.p99_ms, " ms"),
            r.target,
            if r.pass { "yes" } else { "NO" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let h = LagHistogram {
            buckets: BTreeMap::from([(1_000_000, 50.0), (2_000_000, 90.0), (10_000_000, 100.0)]),
            total: 100.0,
        };
        assert!((h.quantile(0.5) - 0.001).abs() < 1e-9);
        assert!((h.quantile(0.7) - 0.0015).abs() < 1e-9);
        assert!((h.quantile(0.95) - 0.006).abs() < 1e-9);
    }
}
