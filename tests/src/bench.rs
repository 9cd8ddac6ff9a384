//! The bench harness: `lokiz-bench run` (`src/bin/lokiz-bench.rs`).
//!
//! It drives the system from outside, as the black-box tests do: the server
//! under test is a `lokiz all` child process (the `lokiz` binary beside
//! `lokiz-bench`, or `--lokiz PATH`), so the numbers are a release build's.
//!
//! In one run, on one machine, it measures each scenario beside its raw
//! ceiling and prints one table (scenario, ceiling, ours, ratio, p50, p99,
//! target, pass); `--out FILE` also writes it as Markdown. `--only` picks
//! scenarios (`append,lag,likes,views,batch,feed`; default all).
//!
//! - Ceiling: single-event INSERT transactions/s into an events-shaped table,
//!   `--clients` connections, straight to Postgres.
//! - `append`: `UpdateProfile` through cqrs-es in-process, and
//!   `PATCH /v1/users/me` (one `ProfileUpdated` each) through HTTP,
//!   `--clients` concurrent clients, against a `lokiz all` child process.
//! - `lag`: `PATCH` offered at `--lag-rate`/s for `--lag-seconds`;
//!   commit→read-model lag quantiles from the server's
//!   `lokiz_projection_lag_seconds` histogram (fine buckets, interpolated).
//! - `likes`: `POST`/`DELETE /v1/likes/videos/{id}` alternating (each records
//!   an event) on videos uploaded through the real flow, vs the ceiling.
//! - `views`: `POST /v1/videos/{id}/view` by signed-in users, every request a
//!   new (viewer, video) pair so each counts; counted views/s vs the ceiling.
//! - `batch`: `POST /v1/videos/batch-metadata` with 100 ids, `--read-clients`
//!   clients, vs the route's own SQL with 100 ids straight to Postgres.
//! - `feed`: feed pages (20 items) for each algorithm, `--read-clients`
//!   clients walking 5 pages deep, over `--feed-videos` seeded videos.
//! - Catch-up: the data is seeded ([`crate::seed`]) into the bench database
//!   before the server starts; the server's relay and projections then build
//!   the read models from JetStream, timed as events/s.
//! - Server memory: the child's peak RSS (VmHWM) over the whole run.
//!
//! Everything runs in a fresh database and stream that are dropped afterwards.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use lokiz_infra::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::seed::{SeedArgs, SeedReport};

/// Scenario names `--only` accepts.
pub const SCENARIOS: &[&str] = &[
    "append", "lag", "likes", "limits", "views", "batch", "feed", "search", "rebuild", "jobs",
];

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Seconds each throughput scenario runs.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent clients for the write scenarios.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Concurrent clients for the read scenarios (batch-metadata, feeds).
    #[arg(long, default_value_t = 8)]
    pub read_clients: usize,
    /// Offered events/s for the lag scenario.
    #[arg(long, default_value_t = 1000)]
    pub lag_rate: u64,
    /// Seconds the lag scenario runs.
    #[arg(long, default_value_t = 30)]
    pub lag_seconds: u64,
    /// Videos seeded for the feed scenario (smaller for a quick run).
    #[arg(long, default_value_t = 1_000_000)]
    pub feed_videos: usize,
    /// Capture-frame jobs offered at once in the jobs scenario.
    #[arg(long, default_value_t = 200)]
    pub jobs: usize,
    /// Only these scenarios, comma-separated: append, lag, likes, limits, views, batch, feed, search, rebuild, jobs.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Also write the table as Markdown to this file (e.g. docs/BENCHMARKS.md).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Keep the bench's database afterwards (its name is printed first), to
    /// look into it with psql or `EXPLAIN`; drop it by hand.
    #[arg(long)]
    pub keep_database: bool,
    /// The `lokiz` binary to run as the server under test; default: the one
    /// beside this program (`target/release/lokiz` for a release build).
    #[arg(long, env = "LOKIZ_BIN")]
    pub lokiz: Option<std::path::PathBuf>,
}

impl BenchArgs {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
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
    if let Some(bad) = args.only.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
        anyhow::bail!(
            "--only: unknown scenario {bad:?} (known: {})",
            SCENARIOS.join(", ")
        );
    }
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let db_name = format!("lokiz_bench_{tag}");
    let base = config
        .database_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .context("DATABASE_URL")?;
    let bench_url = format!("{base}/{db_name}");
    let stream = format!("BENCH{tag}");
    let data_dir = std::env::temp_dir().join(format!("lokiz-bench-{tag}"));
    eprintln!("bench: database {db_name}, stream {stream}");

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let result = scenarios(
        &config, &args, &bench_url, &stream, &data_dir, &mut rows, &mut notes,
    )
    .await;

    // clean up whatever happened
    if args.keep_database {
        eprintln!("bench: kept database {db_name}");
    } else if let Ok(mut admin) = PgConnection::connect(&format!("{base}/postgres")).await {
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
    let _ = std::fs::remove_dir_all(&data_dir);
    result?;

    let table = render(&rows, &notes, &args);
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

/// What is seeded before the server starts: the feed's dataset, or a
/// smaller one when only views/batch need videos.
fn seed_args(args: &BenchArgs) -> Option<SeedArgs> {
    if args.wants("feed") || args.wants("search") || args.wants("rebuild") {
        let n = args.feed_videos;
        let users = (n / 100).clamp(1_000, 10_000);
        Some(SeedArgs {
            users,
            videos: n,
            likes: n / 10,
            follows: users * 5,
            comments: n / 20,
            views: n / 10,
            ..Default::default()
        })
    } else if args.wants("views") || args.wants("batch") {
        Some(SeedArgs {
            users: 1_000,
            videos: 50_000,
            likes: 5_000,
            follows: 2_000,
            comments: 2_000,
            views: 5_000,
            ..Default::default()
        })
    } else {
        None
    }
}

async fn scenarios(
    config: &Config,
    args: &BenchArgs,
    bench_url: &str,
    stream: &str,
    data_dir: &std::path::Path,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    lokiz_infra::db::ensure_database(bench_url).await?;

    // 1. the raw ceiling of the write scenarios
    let ceiling = if args.wants("append")
        || args.wants("likes")
        || args.wants("limits")
        || args.wants("views")
    {
        eprintln!(
            "bench: raw insert ceiling, {} clients, {}s",
            args.clients, args.duration
        );
        let c = raw_insert_ceiling(bench_url, args.clients, args.duration).await?;
        rows.push(Row {
            scenario: format!(
                "raw INSERT tx/s (events-shaped table), {} clients",
                args.clients
            ),
            ceiling: format!("{:.0}/s", c.per_sec),
            ours: "—".into(),
            ratio: None,
            p50_ms: Some(c.p50_ms),
            p99_ms: Some(c.p99_ms),
            target: "ceiling".into(),
            pass: true,
        });
        Some(c)
    } else {
        None
    };

    // 2. the dataset, through the event store, before the server starts
    let seeded = match seed_args(args) {
        Some(seed_args) => {
            let pool = bench_pool(bench_url, 6).await?;
            lokiz_infra::db::migrate(&pool).await?;
            eprintln!(
                "bench: seeding {} users, {} videos, {} likes, {} follows, {} comments, {} views",
                seed_args.users,
                seed_args.videos,
                seed_args.likes,
                seed_args.follows,
                seed_args.comments,
                seed_args.views
            );
            let report = crate::seed::seed(&pool, &seed_args).await?;
            eprintln!("bench: seeded {report}");
            rows.push(Row {
                scenario: format!(
                    "`lokiz-bench seed`: {} videos, {} users + social ({} events, {} connections)",
                    report.videos, report.users, report.events, seed_args.connections
                ),
                ceiling: "—".into(),
                ours: format!(
                    "{:.0} events/s ({:.0} s)",
                    report.events_per_sec(),
                    report.elapsed.as_secs_f64()
                ),
                ratio: None,
                p50_ms: None,
                p99_ms: None,
                target: "—".into(),
                pass: true,
            });
            pool.close().await;
            Some(report)
        }
        None => None,
    };

    // the server under test, as its own process
    let server = Server {
        lokiz: lokiz_bin(args)?,
        bench_url: bench_url.to_owned(),
        nats_url: config.nats_url.clone(),
        stream: stream.to_owned(),
        data_dir: data_dir.to_owned(),
    };
    let started = Instant::now();
    let (mut child, base) = server.spawn("all", &[])?;
    let pid = child.id().unwrap_or(0);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients.max(args.read_clients) * 4)
        .timeout(Duration::from_secs(30))
        .build()?;
    let pool = bench_pool(bench_url, args.read_clients.max(4) as u32 + 2).await?;
    let b = Bench {
        http,
        base,
        bench_url: bench_url.to_owned(),
        pool,
        ceiling,
        server,
    };
    let outcome = b
        .server_scenarios(args, seeded, started, pid, rows, notes)
        .await;
    b.pool.close().await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    outcome
}

/// The server binary: `--lokiz`, or `lokiz` beside this program.
fn lokiz_bin(args: &BenchArgs) -> anyhow::Result<std::path::PathBuf> {
    let bin = match &args.lokiz {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this program's directory")?
            .join("lokiz"),
    };
    if !bin.exists() {
        anyhow::bail!(
            "{} is missing: build it beside lokiz-bench (`cargo build --release --bin lokiz \
             --bin lokiz-bench`) or name it with --lokiz",
            bin.display()
        );
    }
    Ok(bin)
}

async fn bench_pool(url: &str, connections: u32) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(connections)
        // the same connection options the server uses
        .connect_with(lokiz_infra::db::options(url)?)
        .await?)
}

/// How the bench starts `lokiz` processes on its database and stream.
struct Server {
    lokiz: std::path::PathBuf,
    bench_url: String,
    nats_url: String,
    stream: String,
    data_dir: std::path::PathBuf,
}

impl Server {
    /// `lokiz <role>` on a free port, with `extra` settings; its base URL.
    ///
    /// Rate limits are on, as in production, with budgets no bench client
    /// reaches: per user 1,500 per 2 s (the default's lease size, 30, so the
    /// limiter does the work it does in production), the others far above
    /// what the bench sends from its one address.
    fn spawn(
        &self,
        role: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(tokio::process::Child, String)> {
        let port = free_port()?;
        let mut cmd = tokio::process::Command::new(&self.lokiz);
        cmd.arg(role)
            .env("DATABASE_URL", &self.bench_url)
            .env("NATS_URL", &self.nats_url)
            .env("LOKIZ_BIND", format!("127.0.0.1:{port}"))
            .env("LOKIZ_STREAM", &self.stream)
            .env("LOKIZ_DATA_DIR", &self.data_dir)
            .env("LOKIZ_BLOB_STORE", "local")
            .env(
                "LOKIZ_JWT_SECRET",
                "bench-secret-bench-secret-bench-secret-0",
            )
            .env("LOKIZ_DB_POOL_SIZE", "32")
            .env("LOKIZ_RATE_LIMIT_USER", "1500/2s")
            .env("LOKIZ_RATE_LIMIT_ANONYMOUS", "10000000/1h")
            .env("LOKIZ_RATE_LIMIT_SIGNUP", "10000000/1h")
            .env("LOKIZ_RATE_LIMIT_LOGIN_IP", "10000000/1h")
            .env("LOKIZ_RATE_LIMIT_VIEWS", "10000000/1h")
            .env("LOKIZ_JOBS_MAX_ACTIVE_FREE", "1000")
            .env("LOKIZ_JOBS_FREE_PER_DAY", "1000000")
            .env("RUST_LOG", "warn");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the server")?;
        Ok((child, format!("http://127.0.0.1:{port}")))
    }
}

struct Bench {
    http: reqwest::Client,
    base: String,
    bench_url: String,
    server: Server,
    /// Straight to the bench database, for raw queries and look-ups.
    pool: PgPool,
    ceiling: Option<Throughput>,
}

impl Bench {
    async fn server_scenarios(
        &self,
        args: &BenchArgs,
        seeded: Option<SeedReport>,
        started: Instant,
        pid: u32,
        rows: &mut Vec<Row>,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let (http, base) = (&self.http, self.base.as_str());
        wait_healthy(http, base).await?;

        // 3. catch-up: relay and projections over the seeded events
        if let Some(report) = &seeded {
            eprintln!("bench: waiting for the read models to catch up");
            let events = self.wait_caught_up(Duration::from_secs(3600)).await?;
            let secs = started.elapsed().as_secs_f64();
            let rate = events as f64 / secs;
            eprintln!("bench: caught up with {events} events in {secs:.1} s ({rate:.0}/s)");
            rows.push(Row {
                scenario: format!(
                    "catch-up: relay + projections over the seeded store ({events} events, {} videos), from server start",
                    report.videos
                ),
                ceiling: "—".into(),
                ours: format!("{rate:.0} events/s ({secs:.0} s)"),
                ratio: None,
                p50_ms: None,
                p99_ms: None,
                target: "≥ 20000 events/s".into(),
                pass: rate >= 20_000.0,
            });
            // This Postgres runs with autovacuum off: give the read models the
            // statistics and visibility a production database keeps by itself
            // (every projection's tables: a table left out is planned blind
            // and read through its heap).
            let mut tables: Vec<&str> = lokiz_projections::all()
                .iter()
                .flat_map(|p| p.tables().iter().copied())
                .collect();
            tables.sort_unstable();
            tables.dedup();
            sqlx::raw_sql(&format!("VACUUM (ANALYZE) {}", tables.join(", ")))
                .execute(&self.pool)
                .await?;
            notes.push(format!(
                "Seeded with `lokiz-bench seed` ({report}); after the catch-up the read-model tables \
                 were `VACUUM (ANALYZE)`d (autovacuum is off on this Postgres)."
            ));
        }

        let tokens = register_users(http, base, args.clients.max(16)).await?;

        // seeded videos (none of them the bench users' own)
        let videos: Vec<Uuid> = if seeded.is_some() {
            sqlx::query_scalar("SELECT id FROM videos WHERE listed LIMIT 200000")
                .fetch_all(&self.pool)
                .await?
        } else {
            Vec::new()
        };
        if args.wants("append") {
            self.append(args, &tokens, rows).await?;
        }
        if args.wants("lag") {
            self.lag(args, &tokens, rows).await?;
        }
        if args.wants("likes") {
            self.likes(args, &tokens, rows).await?;
        }
        if args.wants("limits") {
            self.limits(args, &tokens, rows).await?;
        }
        if args.wants("views") {
            self.views(args, &tokens, &videos, rows).await?;
        }
        if args.wants("batch") {
            self.batch(args, &videos, rows).await?;
        }
        if args.wants("feed") {
            let n = seeded.as_ref().map_or(0, |r| r.videos);
            self.feeds(args, &tokens, n, rows).await?;
        }

        if args.wants("search") {
            let n = seeded.as_ref().map_or(0, |r| r.videos);
            let users = seeded.as_ref().map_or(0, |r| r.users);
            self.search(args, n, users, rows).await?;
        }
        if args.wants("rebuild") {
            self.rebuild(rows).await?;
        }
        if args.wants("jobs") {
            self.jobs(args, &tokens, rows, notes).await?;
        }

        // memory
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

    /// AI job throughput: `args.jobs` capture-frame jobs requested at once
    /// through HTTP, run by the worker (2 at a time, its default), against
    /// the same ffmpeg captures run directly, 2 at a time: the ceiling. Also
    /// the state machine's cost per job: events written and the time a job
    /// spends beyond its ffmpeg run.
    async fn jobs(
        &self,
        args: &BenchArgs,
        tokens: &[String],
        rows: &mut Vec<Row>,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let (http, base) = (&self.http, self.base.as_str());
        let token = tokens.first().context("a bench user")?;
        let dir =
            std::env::temp_dir().join(format!("lokiz-bench-media-{}", Uuid::new_v4().simple()));
        tokio::fs::create_dir_all(&dir).await?;
        let source = dir.join("source.mp4");
        let made = tokio::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=360x640:rate=25",
            ])
            .args([
                "-t",
                "5",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .arg(&source)
            .status()
            .await?;
        anyhow::ensure!(made.success(), "ffmpeg could not make the bench video");
        let bytes = tokio::fs::read(&source).await?;

        // the ceiling: the captures themselves, 2 at a time
        eprintln!("bench: raw ffmpeg frame captures");
        let n = args.jobs.max(10);
        let raw_started = Instant::now();
        let mut raw_hist = new_hist()?;
        let mut next = 0usize;
        while next < n {
            let batch: Vec<_> = (next..(next + 2).min(n))
                .map(|i| {
                    let (source, out) = (source.clone(), dir.join(format!("raw-{i}.jpg")));
                    async move {
                        let t = Instant::now();
                        let job = lokiz_infra::ai::media::Render::CaptureFrame {
                            at_secs: (i % 5) as f64 * 0.9,
                        };
                        lokiz_infra::ai::media::render(
                            &source,
                            &out,
                            &job,
                            &mut |_| {},
                            &tokio_util::sync::CancellationToken::new(),
                        )
                        .await
                        .map(|_| t.elapsed())
                    }
                })
                .collect();
            for r in futures::future::join_all(batch).await {
                raw_hist.record(r?.as_micros() as u64)?;
            }
            next += 2;
        }
        let raw = throughput(n as u64, raw_started.elapsed(), &raw_hist, 0);

        // upload the source
        let up: Value = http
            .post(format!("{base}/v1/videos/upload-url"))
            .bearer_auth(token)
            .json(&json!({"filename": "bench.mp4", "content_type": "video/mp4", "file_size": bytes.len()}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let video = up["video_id"].as_str().context("video_id")?.to_owned();
        http.put(up["upload_url"].as_str().context("upload_url")?)
            .header("content-type", "video/mp4")
            .body(bytes)
            .send()
            .await?
            .error_for_status()?;
        let done = http
            .post(format!("{base}/v1/videos/{video}/complete"))
            .bearer_auth(token)
            .json(&json!({"width": 360, "height": 640, "actual_duration": 5.0}))
            .send()
            .await?
            .error_for_status()?;
        let position = done
            .headers()
            .get("x-lokiz-position")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("0")
            .to_owned();

        // the jobs, all requested at once, then run by the worker
        eprintln!("bench: {n} capture-frame jobs through the worker");
        let before: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
            .fetch_one(&self.pool)
            .await?;
        let started = Instant::now();
        let requests = (0..n).map(|i| {
            http.post(format!("{base}/v1/ai/capture-frame"))
                .bearer_auth(token)
                .header("X-Lokiz-Min-Position", &position)
                .json(&json!({"video_id": video, "timestamp": (i % 5) as f64 * 0.9}))
                .send()
        });
        let mut errors = 0u64;
        for r in futures::future::join_all(requests).await {
            if !r.is_ok_and(|r| r.status() == reqwest::StatusCode::ACCEPTED) {
                errors += 1;
            }
        }
        let accepted = n as i64 - errors as i64;
        loop {
            let finished: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM ai_jobs WHERE status IN ('completed', 'failed')",
            )
            .fetch_one(&self.pool)
            .await?;
            if finished >= accepted {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(1800),
                "jobs did not finish"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let mut hist = new_hist()?;
        let mut run_hist = new_hist()?;
        let times: Vec<(f64, f64)> = sqlx::query_as(
            "SELECT extract(epoch FROM finished_at - created_at)::float8,
                    extract(epoch FROM finished_at - started_at)::float8
               FROM ai_jobs WHERE status = 'completed'",
        )
        .fetch_all(&self.pool)
        .await?;
        for (total, run) in &times {
            hist.record((total * 1e6).max(1.0) as u64)?;
            run_hist.record((run * 1e6).max(1.0) as u64)?;
        }
        let ours = throughput(times.len() as u64, elapsed, &hist, errors);
        let (events, kinds): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT event_type) FROM events
              WHERE aggregate_type = 'AiJob' AND position > $1",
        )
        .bind(before)
        .fetch_one(&self.pool)
        .await?;
        let per_job = events as f64 / accepted.max(1) as f64;
        let ratio = ours.per_sec / raw.per_sec;
        rows.push(Row {
            scenario: format!(
                "capture-frame jobs via HTTP + worker ({n} at once, 2 running), vs the same ffmpeg captures run directly 2 at a time"
            ),
            ceiling: format!("{:.1} captures/s", raw.per_sec),
            ours: format!("{:.1} jobs/s", ours.per_sec),
            ratio: Some(ratio),
            p50_ms: Some(raw_hist.value_at_quantile(0.5) as f64 / 1000.0),
            p99_ms: Some(raw_hist.value_at_quantile(0.99) as f64 / 1000.0),
            target: "—".into(),
            pass: errors == 0,
        });
        let run_p50 = run_hist.value_at_quantile(0.5) as f64 / 1000.0;
        let raw_p50 = raw_hist.value_at_quantile(0.5) as f64 / 1000.0;
        rows.push(Row {
            scenario: format!(
                "job state machine per job: {per_job:.1} events ({kinds} kinds); started → completed p50 {run_p50:.0} ms vs raw capture p50 {raw_p50:.0} ms"
            ),
            ceiling: "—".into(),
            ours: format!("{:.0} ms overhead", (run_p50 - raw_p50).max(0.0)),
            ratio: None,
            p50_ms: None,
            p99_ms: None,
            target: "—".into(),
            pass: true,
        });
        notes.push(format!(
            "Jobs: requested → finished p50 {:.0} ms, p99 {:.0} ms (queueing included: {n} jobs offered at once).",
            ours.p50_ms, ours.p99_ms
        ));
        let _ = tokio::fs::remove_dir_all(&dir).await;
        Ok(())
    }

    fn ceiling(&self) -> anyhow::Result<&Throughput> {
        self.ceiling.as_ref().context("no ceiling measured")
    }

    /// A row of a write scenario against the raw insert ceiling.
    fn write_row(&self, scenario: String, ours: &Throughput, unit: &str) -> anyhow::Result<Row> {
        let ceiling = self.ceiling()?;
        let ratio = ours.per_sec / ceiling.per_sec;
        eprintln!(
            "bench: {scenario}: {:.0}{unit} ({:.0} %), p50 {:.2} ms, p99 {:.2} ms, {} errors",
            ours.per_sec,
            ratio * 100.0,
            ours.p50_ms,
            ours.p99_ms,
            ours.errors
        );
        Ok(Row {
            scenario,
            ceiling: format!("{:.0}/s", ceiling.per_sec),
            ours: format!("{:.0}{unit}", ours.per_sec),
            ratio: Some(ratio),
            p50_ms: Some(ours.p50_ms),
            p99_ms: Some(ours.p99_ms),
            target: "≥ 40 % of ceiling".into(),
            pass: ratio >= 0.40 && ours.errors == 0,
        })
    }

    async fn append(
        &self,
        args: &BenchArgs,
        tokens: &[String],
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        // command append straight through cqrs-es/postgres-es (no HTTP)
        eprintln!(
            "bench: cqrs-es UpdateProfile, {} clients, {}s",
            args.clients, args.duration
        );
        let direct = direct_append(&self.bench_url, args.clients, args.duration).await?;
        rows.push(self.write_row(
            format!(
                "command append via cqrs-es in-process (UpdateProfile), {} clients",
                args.clients
            ),
            &direct,
            "/s",
        )?);
        // command append through HTTP
        eprintln!(
            "bench: PATCH /v1/users/me, {} clients, {}s",
            args.clients, args.duration
        );
        let ours = http_append(&self.http, &self.base, tokens, args.clients, args.duration).await?;
        rows.push(self.write_row(
            format!(
                "command append via HTTP (PATCH /users/me), {} clients",
                args.clients
            ),
            &ours,
            "/s",
        )?);
        Ok(())
    }

    async fn lag(
        &self,
        args: &BenchArgs,
        tokens: &[String],
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        let (http, base) = (&self.http, self.base.as_str());
        settle(http, base).await?;
        eprintln!(
            "bench: lag at {}/s for {}s",
            args.lag_rate, args.lag_seconds
        );
        let before = lag_histogram(http, base).await?;
        let offered = offered_load(http, base, tokens, args.lag_rate, args.lag_seconds).await?;
        settle(http, base).await?;
        let after = lag_histogram(http, base).await?;
        let delta = after.all.minus(&before.all);
        let (p50, p99) = (delta.quantile(0.50) * 1e3, delta.quantile(0.99) * 1e3);
        let worst: Vec<String> = after
            .worst(&before, 3)
            .into_iter()
            .map(|(name, p99)| format!("{name} {p99:.1} ms"))
            .collect();
        eprintln!(
            "bench: lag p99 by projection, worst first: {}",
            worst.join(", ")
        );
        // PERFORMANCE.md: p99 ≤ 50 ms at 1,000 events/s, ≤ 100 ms at 5,000
        let target_ms = if args.lag_rate <= 1000 { 50.0 } else { 100.0 };
        rows.push(Row {
            scenario: format!(
                "projection lag, {}/s offered for {}s ({} events, {} errors{}; slowest p99: {})",
                args.lag_rate,
                args.lag_seconds,
                offered.ok,
                offered.errors,
                if offered.kinds.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": {}",
                        offered
                            .kinds
                            .iter()
                            .map(|(k, n)| format!("{n} × {k}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                worst.join(", "),
            ),
            ceiling: "—".into(),
            ours: format!(
                "{:.0} events/s",
                offered.ok as f64 / args.lag_seconds as f64
            ),
            ratio: None,
            p50_ms: Some(p50),
            p99_ms: Some(p99),
            target: format!("p99 ≤ {target_ms:.0} ms, 0 errors"),
            pass: p99 <= target_ms && offered.errors == 0 && delta.total > 0.0,
        });
        Ok(())
    }

    /// Like/unlike through HTTP on videos uploaded through the real flow.
    async fn likes(
        &self,
        args: &BenchArgs,
        tokens: &[String],
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        let (http, base) = (&self.http, self.base.as_str());
        let mut videos = Vec::new();
        for token in tokens {
            videos.push(upload_video(http, base, token).await?);
        }
        settle(http, base).await?;
        eprintln!(
            "bench: POST/DELETE /v1/likes/videos/{{id}}, {} clients, {}s",
            args.clients, args.duration
        );
        let ours = like_loop(http, base, tokens, &videos, args, 0).await?;
        rows.push(self.write_row(
            format!(
                "like/unlike via HTTP (POST/DELETE /likes/videos/{{id}}), {} clients",
                args.clients
            ),
            &ours,
            " commands/s",
        )?);
        Ok(())
    }

    /// What the rate limiter costs: like/unlike against two `lokiz serve`
    /// processes on the same database, identical but for
    /// `LOKIZ_RATE_LIMITS`, taken in eight turns of `--duration` each in a
    /// balanced order, so drift in the database hits both alike.
    async fn limits(
        &self,
        args: &BenchArgs,
        tokens: &[String],
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        let (mut on_proc, on) = self.server.spawn("serve", &[])?;
        let (mut off_proc, off) = self
            .server
            .spawn("serve", &[("LOKIZ_RATE_LIMITS", "off")])?;
        wait_healthy(&self.http, &on).await?;
        wait_healthy(&self.http, &off).await?;
        let mut videos = Vec::new();
        for token in tokens {
            videos.push(upload_video(&self.http, &self.base, token).await?);
        }
        settle(&self.http, &self.base).await?;
        // warm both up (connections, caches), unmeasured
        let warm = BenchArgs {
            duration: 2,
            ..args.clone()
        };
        like_loop(&self.http, &on, tokens, &videos, &warm, 0).await?;
        like_loop(&self.http, &off, tokens, &videos, &warm, 1).await?;
        // eight rounds in a balanced order (on off off on, off on on off):
        // a drift over the run weighs on both alike
        let (mut on_total, mut off_total) = (Vec::new(), Vec::new());
        let order = [true, false, false, true, false, true, true, false];
        for (round, limits_on) in order.into_iter().enumerate() {
            let (base, label) = if limits_on {
                (&on, "on")
            } else {
                (&off, "off")
            };
            let t = like_loop(&self.http, base, tokens, &videos, args, round + 2).await?;
            eprintln!(
                "bench: like/unlike with rate limits {label}: {:.0}/s, {} errors",
                t.per_sec, t.errors
            );
            if limits_on {
                on_total.push(t);
            } else {
                off_total.push(t);
            }
        }
        let _ = on_proc.start_kill();
        let _ = off_proc.start_kill();
        let _ = on_proc.wait().await;
        let _ = off_proc.wait().await;
        let rate = |ts: &[Throughput]| ts.iter().map(|t| t.per_sec).sum::<f64>() / ts.len() as f64;
        let errors: u64 = on_total.iter().chain(&off_total).map(|t| t.errors).sum();
        let (on_rate, off_rate) = (rate(&on_total), rate(&off_total));
        let ratio = on_rate / off_rate;
        eprintln!(
            "bench: rate limits on {on_rate:.0}/s, off {off_rate:.0}/s ({:.1} %), {errors} errors",
            ratio * 100.0
        );
        rows.push(Row {
            scenario: format!(
                "like/unlike with rate limits on (1,500 per user per window, lease 30) vs off, {} clients, `lokiz serve` ×2, 8 alternating rounds of {} s",
                args.clients, args.duration
            ),
            ceiling: format!("{off_rate:.0}/s (off)"),
            ours: format!("{on_rate:.0} commands/s (on)"),
            ratio: Some(ratio),
            p50_ms: on_total.first().map(|t| t.p50_ms),
            p99_ms: on_total.first().map(|t| t.p99_ms),
            target: "≥ 95 % of off".into(),
            pass: ratio >= 0.95 && errors == 0,
        });
        Ok(())
    }

    /// Counted views through HTTP: signed-in users, each request a new
    /// (viewer, video) pair.
    async fn views(
        &self,
        args: &BenchArgs,
        tokens: &[String],
        videos: &[Uuid],
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(!videos.is_empty(), "views: no seeded videos");
        settle(&self.http, &self.base).await?;
        eprintln!(
            "bench: POST /v1/videos/{{id}}/view, {} clients over {} videos, {}s",
            args.clients,
            videos.len(),
            args.duration
        );
        let clients = args.clients;
        // each client its own user and its own slice of videos
        let slice = (videos.len() / clients).max(1);
        let (http, base, tokens, videos) = (
            self.http.clone(),
            self.base.clone(),
            Arc::new(tokens.to_vec()),
            Arc::new(videos.to_vec()),
        );
        let ours = closed_loop(clients, args.duration, move |client, n| {
            let (http, base, tokens, videos) =
                (http.clone(), base.clone(), tokens.clone(), videos.clone());
            async move {
                let token = &tokens[client % tokens.len()];
                let video = videos[(client * slice + n as usize % slice) % videos.len()];
                let r = http
                    .post(format!("{base}/v1/videos/{video}/view"))
                    .bearer_auth(token)
                    .send()
                    .await?;
                if !r.status().is_success() {
                    return Ok(false);
                }
                let body: Value = r.json().await?;
                Ok(body["counted"] == true)
            }
        })
        .await?;
        rows.push(self.write_row(
            format!(
                "views via HTTP (POST /videos/{{id}}/view, signed in, distinct pairs), {clients} clients"
            ),
            &ours,
            " counted/s",
        )?);
        Ok(())
    }

    /// batch-metadata with 100 ids vs the same SQL straight to Postgres.
    async fn batch(
        &self,
        args: &BenchArgs,
        videos: &[Uuid],
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(videos.len() >= 100, "batch: not enough seeded videos");
        let clients = args.read_clients;
        let mut rng = StdRng::seed_from_u64(7);
        let sets: Vec<Vec<Uuid>> = (0..512)
            .map(|_| {
                (0..100)
                    .map(|_| videos[rng.gen_range(0..videos.len())])
                    .collect()
            })
            .collect();
        let bodies: Vec<Vec<u8>> = sets
            .iter()
            .map(|ids| serde_json::to_vec(&json!({ "video_ids": ids })))
            .collect::<Result<_, _>>()?;
        let (sets, bodies) = (Arc::new(sets), Arc::new(bodies));

        eprintln!(
            "bench: raw 100-id SELECT on videos, {clients} clients, {}s",
            args.duration
        );
        let pool = self.pool.clone();
        let s = sets.clone();
        let raw = closed_loop(clients, args.duration, move |client, n| {
            let (pool, sets) = (pool.clone(), s.clone());
            async move {
                let ids = &sets[(client * 61 + n as usize) % sets.len()];
                let rows: Vec<(Uuid, bool, i64, i64, i64, i64, i64)> = sqlx::query_as(
                    "SELECT id, status = 'deleted', view_count, like_count, comment_count, remix_count,
                            glitch_count
                       FROM videos WHERE id = ANY($1)",
                )
                .bind(ids)
                .fetch_all(&pool)
                .await?;
                Ok(!rows.is_empty())
            }
        })
        .await?;

        eprintln!(
            "bench: POST /v1/videos/batch-metadata (100 ids), {clients} clients, {}s",
            args.duration
        );
        let (http, base) = (self.http.clone(), self.base.clone());
        let ours = closed_loop(clients, args.duration, move |client, n| {
            let (http, base, bodies) = (http.clone(), base.clone(), bodies.clone());
            async move {
                let body = bodies[(client * 61 + n as usize) % bodies.len()].clone();
                let r = http
                    .post(format!("{base}/v1/videos/batch-metadata"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let ok = r.status().is_success();
                let _ = r.bytes().await?;
                Ok(ok)
            }
        })
        .await?;
        let ratio = ours.per_sec / raw.per_sec;
        eprintln!(
            "bench: raw {:.0}/s p99 {:.2} ms; HTTP {:.0}/s ({:.0} %), p50 {:.2} ms, p99 {:.2} ms, {} errors",
            raw.per_sec, raw.p99_ms, ours.per_sec, ratio * 100.0, ours.p50_ms, ours.p99_ms, ours.errors
        );
        rows.push(Row {
            scenario: format!(
                "raw SELECT of 100 ids by primary key on `videos` ({} rows), {clients} clients",
                self.video_count().await?
            ),
            ceiling: format!("{:.0} q/s", raw.per_sec),
            ours: "—".into(),
            ratio: None,
            p50_ms: Some(raw.p50_ms),
            p99_ms: Some(raw.p99_ms),
            target: "ceiling".into(),
            pass: raw.errors == 0,
        });
        rows.push(Row {
            scenario: format!(
                "batch-metadata via HTTP (POST /videos/batch-metadata, 100 ids), {clients} clients"
            ),
            ceiling: format!("{:.0} q/s", raw.per_sec),
            ours: format!("{:.0} req/s", ours.per_sec),
            ratio: Some(ratio),
            p50_ms: Some(ours.p50_ms),
            p99_ms: Some(ours.p99_ms),
            target: "≥ 80 % of ceiling, p99 ≤ 8 ms".into(),
            pass: ratio >= 0.80 && ours.p99_ms <= 8.0 && ours.errors == 0,
        });
        Ok(())
    }

    /// `projections rebuild --all` and `projections verify --all` over the
    /// seeded store, with the server running (its projections wait at the swap).
    async fn rebuild(&self, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        settle(&self.http, &self.base).await?;
        let all = lokiz_projections::all();
        eprintln!("bench: projections rebuild --all");
        let report = lokiz_projections::rebuild::rebuild(&self.pool, &all, None).await?;
        eprintln!(
            "bench: rebuilt {} events in {:.1} s ({:.0}/s)",
            report.events,
            report.elapsed.as_secs_f64(),
            report.events_per_sec()
        );
        rows.push(Row {
            scenario: format!(
                "`projections rebuild --all` over {} events (server running)",
                report.events
            ),
            ceiling: "—".into(),
            ours: format!(
                "{:.0} events/s ({:.0} s)",
                report.events_per_sec(),
                report.elapsed.as_secs_f64()
            ),
            ratio: None,
            p50_ms: None,
            p99_ms: None,
            target: "≥ 50000 events/s".into(),
            pass: report.events_per_sec() >= 50_000.0 && report.parked == 0,
        });
        eprintln!("bench: projections verify --all");
        let report = lokiz_projections::rebuild::verify(&self.pool, &all, 5, None).await?;
        eprintln!(
            "bench: verified {} events in {:.1} s, {} differing rows",
            report.events,
            report.elapsed.as_secs_f64(),
            report.differing_rows()
        );
        rows.push(Row {
            scenario: format!(
                "`projections verify --all` over {} events (replay + row-for-row diff)",
                report.events
            ),
            ceiling: "—".into(),
            ours: format!(
                "{:.0} s, {} differing rows",
                report.elapsed.as_secs_f64(),
                report.differing_rows()
            ),
            ratio: None,
            p50_ms: None,
            p99_ms: None,
            target: "zero drift".into(),
            pass: report.drift.is_empty(),
        });
        Ok(())
    }

    async fn video_count(&self) -> anyhow::Result<usize> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM videos")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as usize)
    }

    /// Feed pages (20 items) per algorithm; every client walks 5 pages deep
    /// along `next_cursor`, then starts over.
    async fn feeds(
        &self,
        args: &BenchArgs,
        tokens: &[String],
        videos: usize,
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        const PAGES: u64 = 5;
        let clients = args.read_clients;
        // the bench users follow 25 creators each (following, personalized)
        let creators: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM users WHERE username NOT LIKE 'bench%' ORDER BY id LIMIT 5000",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut rng = StdRng::seed_from_u64(11);
        for token in tokens {
            for _ in 0..25.min(creators.len()) {
                let who = creators[rng.gen_range(0..creators.len())];
                self.http
                    .post(format!("{}/v1/follows/users/{who}", self.base))
                    .bearer_auth(token)
                    .send()
                    .await?
                    .error_for_status()?;
            }
        }
        settle(&self.http, &self.base).await?;
        for algorithm in ["latest", "trending", "following", "personalized"] {
            eprintln!(
                "bench: GET /v1/videos/feed?algorithm={algorithm}, {clients} clients, {}s",
                args.duration
            );
            let cursors: Arc<Vec<Mutex<Option<String>>>> =
                Arc::new((0..clients).map(|_| Mutex::new(None)).collect());
            let (http, base, tokens) = (
                self.http.clone(),
                self.base.clone(),
                Arc::new(tokens.to_vec()),
            );
            let ours = closed_loop(clients, args.duration, move |client, n| {
                let (http, base, tokens, cursors) =
                    (http.clone(), base.clone(), tokens.clone(), cursors.clone());
                async move {
                    let cursor = if n % PAGES == 1 {
                        None
                    } else {
                        cursors[client].lock().map(|c| c.clone()).unwrap_or(None)
                    };
                    let mut url = format!("{base}/v1/videos/feed?algorithm={algorithm}&limit=20");
                    if let Some(c) = &cursor {
                        url.push_str("&cursor=");
                        url.push_str(c);
                    }
                    let r = http
                        .get(url)
                        .bearer_auth(&tokens[client % tokens.len()])
                        .send()
                        .await?;
                    if !r.status().is_success() {
                        return Ok(false);
                    }
                    let page: Value = r.json().await?;
                    let full = page["videos"].as_array().is_some_and(|v| !v.is_empty());
                    let next = page["next_cursor"].as_str().map(str::to_owned);
                    if let Ok(mut c) = cursors[client].lock() {
                        *c = next;
                    }
                    Ok(full)
                }
            })
            .await?;
            eprintln!(
                "bench: {algorithm}: {:.0} pages/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                ours.per_sec, ours.p50_ms, ours.p99_ms, ours.errors
            );
            rows.push(Row {
                scenario: format!(
                    "feed page via HTTP ({algorithm}, 20 items, ≤ {PAGES} pages deep), {videos} videos, {clients} clients"
                ),
                ceiling: "—".into(),
                ours: format!("{:.0} pages/s", ours.per_sec),
                ratio: None,
                p50_ms: Some(ours.p50_ms),
                p99_ms: Some(ours.p99_ms),
                target: "p99 ≤ 15 ms".into(),
                pass: ours.p99_ms <= 15.0 && ours.errors == 0,
            });
        }
        Ok(())
    }

    /// Search and autocomplete through HTTP, anonymous, over the seeded
    /// videos and users: `--read-clients` clients cycling through a fixed
    /// mix of queries (common and rare caption words, two words, Korean,
    /// misspelt names, username and tag prefixes), one row per kind.
    async fn search(
        &self,
        args: &BenchArgs,
        videos: usize,
        users: usize,
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        const SEARCHES: &[&str] = &[
            "/v1/search/videos?q=glitch",
            "/v1/search/videos?q=grandma%20reacts",
            "/v1/search/videos?q=vaporwave",
            "/v1/search/videos?q=beat%20drop",
            "/v1/search/videos?q=%EA%B3%A0%EC%96%91%EC%9D%B4",
            "/v1/search/videos?q=nothingmatchesthis",
            "/v1/search/users?q=kosmic%20phenix",
            "/v1/search/users?q=neon",
            "/v1/search?q=synth",
        ];
        const COMPLETIONS: &[&str] = &[
            "/v1/search/autocomplete?q=gl",
            "/v1/search/autocomplete?q=%23ret",
            "/v1/search/autocomplete?q=%40neo",
            "/v1/search/autocomplete?q=danc",
            "/v1/search/autocomplete?q=%23%EB%8C%84",
            "/v1/search/autocomplete?q=vaporwav",
            "/v1/search/autocomplete?q=glich",
        ];
        let clients = args.read_clients;
        // A search reuses a query's ranking for a few seconds unless the
        // request names a position it must see: "cold" asks for position 1
        // on every request, so each one ranks anew.
        for (kind, paths, cold) in [
            ("search", SEARCHES, false),
            ("search, cold (every request ranks anew)", SEARCHES, true),
            ("autocomplete", COMPLETIONS, false),
        ] {
            eprintln!(
                "bench: {kind} via HTTP, {clients} clients, {}s",
                args.duration
            );
            let (http, base) = (self.http.clone(), self.base.clone());
            let ours = closed_loop(clients, args.duration, move |client, n| {
                let (http, base) = (http.clone(), base.clone());
                async move {
                    let path = paths[(client + n as usize) % paths.len()];
                    let mut request = http.get(format!("{base}{path}"));
                    if cold {
                        request = request.header("X-Lokiz-Min-Position", "1");
                    }
                    let r = request.send().await?;
                    Ok(r.status().is_success())
                }
            })
            .await?;
            eprintln!(
                "bench: {kind}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                ours.per_sec, ours.p50_ms, ours.p99_ms, ours.errors
            );
            rows.push(Row {
                scenario: format!(
                    "{kind} via HTTP ({} queries in the mix), {videos} videos, {users} users, {clients} clients",
                    paths.len()
                ),
                ceiling: "—".into(),
                ours: format!("{:.0} requests/s", ours.per_sec),
                ratio: None,
                p50_ms: Some(ours.p50_ms),
                p99_ms: Some(ours.p99_ms),
                target: "p99 ≤ 20 ms".into(),
                pass: ours.p99_ms <= 20.0 && ours.errors == 0,
            });
        }
        Ok(())
    }

    /// Waits until the relay and every projection have passed the newest
    /// event of the types they read; returns the events in the store. Polls
    /// the checkpoints (cheap), not the lag counts (a scan of everything
    /// behind, which would slow the catch-up it measures).
    async fn wait_caught_up(&self, limit: Duration) -> anyhow::Result<i64> {
        let mut newest: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for t in lokiz_domain::AGGREGATE_TYPES {
            let row: Option<(i64, i64)> = sqlx::query_as(
                "SELECT xid::text::bigint, position FROM events WHERE aggregate_type = $1
                  ORDER BY xid DESC, position DESC LIMIT 1",
            )
            .bind(t)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = row {
                newest.insert((*t).to_owned(), r);
            }
        }
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await?;
        let overall = newest.values().max().copied().unwrap_or_default();
        let targets: Vec<(&'static str, (i64, i64))> = lokiz_projections::all()
            .iter()
            .filter_map(|p| {
                p.aggregate_types()
                    .iter()
                    .filter_map(|t| newest.get(*t).copied())
                    .max()
                    .map(|t| (p.name(), t))
            })
            .collect();
        let deadline = Instant::now() + limit;
        loop {
            let checkpoints: Vec<(String, i64, i64)> = sqlx::query_as(
                "SELECT projection, last_xid, last_position FROM projection_checkpoints",
            )
            .fetch_all(&self.pool)
            .await?;
            let relay: Option<(i64, i64)> =
                sqlx::query_as("SELECT last_xid, last_position FROM relay_checkpoints")
                    .fetch_optional(&self.pool)
                    .await?;
            let relay_done = relay.is_some_and(|r| r >= overall);
            let projections_done = targets.iter().all(|(name, target)| {
                checkpoints
                    .iter()
                    .any(|(n, x, p)| n == name && (*x, *p) >= *target)
            });
            if relay_done && projections_done {
                return Ok(events);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the read models did not catch up within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A small video through the real upload flow: upload URL, PUT, complete.
/// A tiny real video (the server probes what it stores), made once by
/// ffmpeg.
async fn bench_media() -> anyhow::Result<Vec<u8>> {
    static MEDIA: tokio::sync::OnceCell<Vec<u8>> = tokio::sync::OnceCell::const_new();
    MEDIA
        .get_or_try_init(|| async {
            let path =
                std::env::temp_dir().join(format!("lokiz-bench-{}.mp4", Uuid::new_v4().simple()));
            let status = tokio::process::Command::new("ffmpeg")
                .args([
                    "-v",
                    "error",
                    "-y",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=64x112:rate=10",
                    "-t",
                    "1",
                ])
                .args([
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-pix_fmt",
                    "yuv420p",
                ])
                .arg(&path)
                .status()
                .await
                .context("ffmpeg (Debian package ffmpeg) makes the bench's video")?;
            anyhow::ensure!(status.success(), "ffmpeg failed to make the bench's video");
            let bytes = tokio::fs::read(&path).await?;
            let _ = tokio::fs::remove_file(&path).await;
            Ok(bytes)
        })
        .await
        .cloned()
}

async fn upload_video(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<Uuid> {
    let bytes = bench_media().await?;
    let up: Value = http
        .post(format!("{base}/v1/videos/upload-url"))
        .bearer_auth(token)
        .json(
            &json!({"filename": "bench.mp4", "content_type": "video/mp4",
                      "file_size": bytes.len(), "caption": "bench #lokiz"}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id: Uuid = up["video_id"].as_str().context("video_id")?.parse()?;
    http.put(up["upload_url"].as_str().context("upload_url")?)
        .header("content-type", "video/mp4")
        .body(bytes)
        .send()
        .await?
        .error_for_status()?;
    http.post(format!("{base}/v1/videos/{id}/complete"))
        .bearer_auth(token)
        .json(&json!({"width": 64, "height": 112, "actual_duration": 1.0}))
        .send()
        .await?
        .error_for_status()?;
    Ok(id)
}

/// Each client likes and unlikes someone else's video in turn for
/// `args.duration` seconds. Round `round` uses (user, video) pairs no
/// earlier round used (a round may end with a like in place), up to
/// `videos.len() - 1` rounds.
async fn like_loop(
    http: &reqwest::Client,
    base: &str,
    tokens: &[String],
    videos: &[Uuid],
    args: &BenchArgs,
    round: usize,
) -> anyhow::Result<Throughput> {
    let (http, base, tokens, videos) = (
        http.clone(),
        base.to_owned(),
        Arc::new(tokens.to_vec()),
        Arc::new(videos.to_vec()),
    );
    closed_loop(args.clients, args.duration, move |client, n| {
        let (http, base, tokens, videos) =
            (http.clone(), base.clone(), tokens.clone(), videos.clone());
        async move {
            let token = &tokens[client % tokens.len()];
            // someone else's video; consecutive requests alternate
            let video = videos[(client % tokens.len() + 1 + round) % videos.len()];
            let url = format!("{base}/v1/likes/videos/{video}");
            let req = if n % 2 == 1 {
                http.post(url)
            } else {
                http.delete(url)
            };
            let r = req.bearer_auth(token).send().await?;
            if !r.status().is_success() {
                return Ok(false);
            }
            let body: Value = r.json().await?;
            Ok(body["changed"] == true)
        }
    })
    .await
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
    Ok(patch_outcome(http, base, token, n).await.is_none())
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
                    at: lokiz_api::now(),
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
                at: lokiz_api::now(),
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
    /// Failed requests by kind: `HTTP <status> <code>`, `timeout`, `connect`, …
    kinds: BTreeMap<String, u64>,
}

/// What one `PATCH /v1/users/me` came to (the value alternates with `n`, so
/// every request records an event): `None` for 2xx, else the kind of failure.
async fn patch_outcome(http: &reqwest::Client, base: &str, token: &str, n: u64) -> Option<String> {
    let name = if n.is_multiple_of(2) {
        "Glitch A"
    } else {
        "Glitch B"
    };
    let sent = http
        .patch(format!("{base}/v1/users/me"))
        .bearer_auth(token)
        .json(&json!({ "display_name": name }))
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let code = body
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("?");
            Some(format!("HTTP {status} {code}"))
        }
        Err(e) if e.is_timeout() => Some("client timeout (30 s)".into()),
        Err(e) if e.is_connect() => Some("connect".into()),
        Err(_) => Some("transport".into()),
    }
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
    let kinds: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // consecutive requests to one user alternate its value (one event each)
    let users = tokens.len() as u64;
    for i in 0..total {
        tokio::time::sleep_until(started + interval * i as u32).await;
        let (http, base, token, ok, kinds) = (
            http.clone(),
            base.to_owned(),
            tokens[i as usize % tokens.len()].clone(),
            ok.clone(),
            kinds.clone(),
        );
        tasks.spawn(async move {
            match patch_outcome(&http, &base, &token, i / users).await {
                None => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Some(kind) => {
                    let mut k = kinds.lock().unwrap_or_else(|p| p.into_inner());
                    *k.entry(kind).or_default() += 1;
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let kinds = kinds.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Offered {
        ok: ok.load(Ordering::Relaxed),
        errors: kinds.values().sum(),
        kinds,
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

/// Cumulative bucket counts of `lokiz_projection_lag_seconds`, keyed by
/// upper bound.
#[derive(Default)]
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

/// `lokiz_projection_lag_seconds` over all projections, and per projection.
async fn lag_histogram(http: &reqwest::Client, base: &str) -> anyhow::Result<LagHistograms> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut all = LagHistogram::default();
    let mut each: BTreeMap<String, LagHistogram> = BTreeMap::new();
    for line in text.lines() {
        let (bucket, rest) =
            if let Some(r) = line.strip_prefix("lokiz_projection_lag_seconds_bucket{") {
                (true, r)
            } else if let Some(r) = line.strip_prefix("lokiz_projection_lag_seconds_count{") {
                (false, r)
            } else {
                continue;
            };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(str::to_owned)
        };
        let projection = label("projection").unwrap_or_default();
        let mine = each.entry(projection).or_default();
        if !bucket {
            all.total += value;
            mine.total += value;
            continue;
        }
        let Some(le) = label("le") else {
            continue;
        };
        if le == "+Inf" {
            continue;
        }
        let le_ns = (le.parse::<f64>().unwrap_or(f64::MAX) * 1e9) as u64;
        *all.buckets.entry(le_ns).or_default() += value;
        *mine.buckets.entry(le_ns).or_default() += value;
    }
    Ok(LagHistograms { all, each })
}

struct LagHistograms {
    all: LagHistogram,
    each: BTreeMap<String, LagHistogram>,
}

impl LagHistograms {
    /// The projections with the highest p99 over `self - earlier` (ms), worst
    /// first.
    fn worst(&self, earlier: &LagHistograms, n: usize) -> Vec<(String, f64)> {
        let mut p99s: Vec<(String, f64)> = self
            .each
            .iter()
            .filter_map(|(name, h)| {
                let d = match earlier.each.get(name) {
                    Some(e) => h.minus(e),
                    None => h.minus(&LagHistogram::default()),
                };
                (d.total > 0.0).then(|| (name.clone(), d.quantile(0.99) * 1e3))
            })
            .collect();
        p99s.sort_by(|a, b| b.1.total_cmp(&a.1));
        p99s.truncate(n);
        p99s
    }
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn render(rows: &[Row], notes: &[String], args: &BenchArgs) -> String {
    let fmt_opt = |v: Option<f64>, suffix: &str| match v {
        Some(v) if v.is_finite() => format!("{v:.2}{suffix}"),
        _ => "—".into(),
    };
    let mut out = String::new();
    let only = if args.only.is_empty() {
        String::new()
    } else {
        format!(" --only {}", args.only.join(","))
    };
    out.push_str(&format!(
        "# LOKIZ benchmarks\n\nMachine: {} cores; run `lokiz-bench run --duration {} --clients {} --read-clients {} --lag-rate {} --lag-seconds {} --feed-videos {}{only}` (release build).\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        args.duration, args.clients, args.read_clients, args.lag_rate, args.lag_seconds,
        args.feed_videos
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
    for note in notes {
        out.push('\n');
        out.push_str(note);
        out.push('\n');
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
