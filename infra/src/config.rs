//! Configuration from the environment. Every variable has a default that
//! works on a developer machine; a bad value stops the process with a message
//! naming the variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::RngCore;

pub use crate::rate_limit::Limit;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
    #[error("{var}: could not read or write {path}: {source}")]
    Io {
        var: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// A secret that never prints itself.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Live notification sockets (`GET /v1/notifications/ws`).
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `LOKIZ_WS_HEARTBEAT_MS` (20 s): a heartbeat message, and a look at the
    /// read model for anything a lost wake-up left out.
    pub heartbeat: Duration,
    /// `LOKIZ_WS_MAX_SOCKETS` (10,000): open sockets per process.
    pub max_sockets: usize,
    /// `LOKIZ_WS_MAX_PER_USER` (5): open sockets per user and process.
    pub max_per_user: usize,
    /// `LOKIZ_WS_SEND_QUEUE` (64): messages queued for one socket; a client
    /// that falls further behind is disconnected (it resumes with `since`).
    pub send_queue: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub env: Environment,
    pub database_url: String,
    pub nats_url: String,
    pub bind: SocketAddr,
    /// `LOKIZ_OPS_BIND`: where `/metrics` and `/ready` are served instead of
    /// `bind` (with `/health` on both); unset: on `bind`.
    pub ops_bind: Option<SocketAddr>,
    /// JetStream stream name; subjects are `<stream>.events.<AggregateType>.<id>`.
    pub stream: String,
    pub data_dir: PathBuf,
    pub jwt_secret: Secret,
    /// Longest a read with `X-Lokiz-Min-Position` waits for the read models.
    pub consistency_timeout: Duration,
    /// Connections in the Postgres pool.
    pub db_pool_size: u32,
    /// How long a transaction must hold the relay's xmin horizon before
    /// `/ready` names it (`LOKIZ_HORIZON_REPORT_MS`).
    pub horizon_report_after: Duration,
    /// The server's public URL (`LOKIZ_PUBLIC_URL`, no trailing slash); when
    /// unset, `http://<bound address>`.
    pub public_url: Option<String>,
    /// Where uploads are stored (`LOKIZ_BLOB_STORE`).
    pub blob: BlobConfig,
    /// Who runs AI jobs (`LOKIZ_AI_PROVIDER`).
    pub ai: AiConfig,
    /// Who charges credit purchases (`LOKIZ_PAYMENTS`).
    pub payments: PaymentsConfig,
    /// Request rate limits (`LOKIZ_RATE_LIMIT_*`).
    pub rate_limits: RateLimits,
    /// Longest a request may take to answer (`LOKIZ_REQUEST_TIMEOUT_MS`,
    /// uploads excepted).
    pub request_timeout: Duration,
    /// Requests of one process that may wait on `X-Lokiz-Min-Position` at
    /// once (`LOKIZ_CONSISTENCY_WAITERS`); more are answered 503 at once.
    pub consistency_waiters: usize,
    /// Live notification sockets (`LOKIZ_WS_*`).
    pub live: LiveConfig,
    /// Per-user AI job limits and the reservation sweeper (`LOKIZ_JOBS_*`).
    pub jobs: JobsConfig,
    /// `LOKIZ_STUDIO_CACHE_MB` (1024): the studio's renders kept at most.
    pub studio_cache_bytes: u64,
    /// `LOKIZ_STUDIO_CACHE_HOURS` (168): a render is made again after this.
    pub studio_cache_age: Duration,
    /// `LOKIZ_UPLOAD_EXPIRY_SECS` (86400): an upload never completed is
    /// removed after this.
    pub upload_expiry: Duration,
    /// `LOKIZ_DELETED_FILES_GRACE_SECS` (259200): a deleted video's files
    /// are removed after this.
    pub deleted_files_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsConfig {
    /// `LOKIZ_JOBS_MAX_ACTIVE` (3): paid jobs one user may have open.
    pub max_active: u32,
    /// `LOKIZ_JOBS_MAX_ACTIVE_FREE` (20, one full capture-frames batch):
    /// free jobs one user may have open (their own slots: free jobs never
    /// keep paid ones out).
    pub max_active_free: u32,
    /// `LOKIZ_JOBS_FREE_PER_DAY` (500): free jobs per user and UTC day.
    pub free_per_day: u32,
    /// `LOKIZ_JOBS_ORPHAN_AFTER_SECS` (600): a reservation whose job was
    /// never recorded is released by the sweeper after this long.
    pub orphan_after: Duration,
    /// `LOKIZ_JOBS_TIME_LIMITS`: `kind=seconds` pairs (fractions allowed)
    /// overriding the defaults: capture_frame 60, template 300,
    /// glitch_animate 600, glitch_replace 600, music 600. A run past its
    /// limit is stopped and the job fails (`TIMED_OUT`), refunded.
    pub time_limits: std::collections::BTreeMap<String, Duration>,
}

impl JobsConfig {
    /// The wall-clock limit of a run of `kind` (`JobKind::as_str`).
    pub fn time_limit(&self, kind: &str) -> Duration {
        self.time_limits
            .get(kind)
            .copied()
            .unwrap_or(Duration::from_secs(600))
    }

    pub fn limits(&self) -> lokiz_domain::wallet::JobLimits {
        lokiz_domain::wallet::JobLimits {
            max_active: self.max_active,
            max_active_free: self.max_active_free,
            free_per_day: self.free_per_day,
        }
    }
}

/// Request limits, Mastodon's defaults; each `LOKIZ_RATE_LIMIT_<NAME>` is
/// `<count>/<window>` with the window in `s`, `m` or `h` (at most `24h`),
/// e.g. `300/5m`. `LOKIZ_RATE_LIMITS=off` turns them all off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub enabled: bool,
    /// Requests without a valid token, per IP (IPv6: per /64).
    pub anonymous: Limit,
    /// Requests with a valid token, per user.
    pub user: Limit,
    /// `POST /v1/auth/login` per IP.
    pub login_ip: Limit,
    /// `POST /v1/auth/login` per account (the email or username tried).
    pub login_account: Limit,
    /// `POST /v1/auth/register` per IP.
    pub signup_ip: Limit,
    /// `POST /v1/videos/{id}/view` per IP and video.
    pub views: Limit,
    /// `LOKIZ_TRUSTED_PROXIES` (default 0): how many proxies in front of the
    /// server append to `X-Forwarded-For`; the client is the address that
    /// many entries from the right. 0: the TCP peer, the header is ignored.
    pub trusted_proxies: u8,
}

impl RateLimits {
    pub const DEFAULT: RateLimits = RateLimits {
        enabled: true,
        anonymous: Limit::new(300, 300),
        user: Limit::new(1_500, 300),
        login_ip: Limit::new(25, 300),
        login_account: Limit::new(10, 300),
        signup_ip: Limit::new(5, 1_800),
        views: Limit::new(10, 3_600),
        trusted_proxies: 0,
    };
}

fn parse_rate_limits(var: &impl Fn(&str) -> Option<String>) -> Result<RateLimits, ConfigError> {
    let d = RateLimits::DEFAULT;
    let enabled = match var("LOKIZ_RATE_LIMITS").as_deref().map(str::trim) {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => {
            return Err(ConfigError::Invalid {
                var: "LOKIZ_RATE_LIMITS",
                message: format!("{other:?}: on or off"),
            })
        }
    };
    let limit = |name: &'static str, default: Limit| -> Result<Limit, ConfigError> {
        let Some(raw) = var(name) else {
            return Ok(default);
        };
        parse_limit(raw.trim()).ok_or_else(|| ConfigError::Invalid {
            var: name,
            message: format!(
                "{raw:?} is not <count>/<window>, e.g. 300/5m (count 1-10000000, window 1s-24h)"
            ),
        })
    };
    Ok(RateLimits {
        enabled,
        anonymous: limit("LOKIZ_RATE_LIMIT_ANONYMOUS", d.anonymous)?,
        user: limit("LOKIZ_RATE_LIMIT_USER", d.user)?,
        login_ip: limit("LOKIZ_RATE_LIMIT_LOGIN_IP", d.login_ip)?,
        login_account: limit("LOKIZ_RATE_LIMIT_LOGIN_ACCOUNT", d.login_account)?,
        signup_ip: limit("LOKIZ_RATE_LIMIT_SIGNUP", d.signup_ip)?,
        views: limit("LOKIZ_RATE_LIMIT_VIEWS", d.views)?,
        trusted_proxies: parse_num(var, "LOKIZ_TRUSTED_PROXIES", 0, 0, 5)? as u8,
    })
}

/// `300/5m` → 300 per 300 s.
fn parse_limit(raw: &str) -> Option<Limit> {
    let (count, window) = raw.split_once('/')?;
    let count: u32 = count.trim().parse().ok()?;
    let window = window.trim();
    let (n, unit) = window.split_at(window.len().checked_sub(1)?);
    let n: u64 = if n.is_empty() { 1 } else { n.parse().ok()? };
    let secs = n.checked_mul(match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        _ => return None,
    })?;
    ((1..=10_000_000).contains(&count) && (1..=86_400).contains(&secs))
        .then_some(Limit::new(count, secs))
}

/// `LOKIZ_PAYMENTS`: `test` (every charge succeeds at once, no money moves;
/// the default in development, refused in production) or `stripe` (a
/// Stripe-compatible API; required in production).
#[derive(Debug, Clone)]
pub enum PaymentsConfig {
    Test,
    Stripe(Box<StripeConfig>),
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `LOKIZ_STRIPE_URL` (default `https://api.stripe.com`).
    pub base_url: url::Url,
    /// `LOKIZ_STRIPE_SECRET_KEY` (`sk_…`).
    pub secret_key: Secret,
    /// `LOKIZ_STRIPE_WEBHOOK_SECRET` (`whsec_…`): verifies
    /// `POST /v1/payments/webhook`.
    pub webhook_secret: Secret,
}

fn parse_payments_config(
    var: &impl Fn(&str) -> Option<String>,
    env: Environment,
) -> Result<PaymentsConfig, ConfigError> {
    let required = |k: &'static str| {
        var(k).ok_or_else(|| ConfigError::Invalid {
            var: k,
            message: "is required when LOKIZ_PAYMENTS=stripe".into(),
        })
    };
    match (var("LOKIZ_PAYMENTS").as_deref().map(str::trim), env) {
        (None, Environment::Production) => Err(ConfigError::Invalid {
            var: "LOKIZ_PAYMENTS",
            message: "is required when LOKIZ_ENV=production (stripe)".into(),
        }),
        (Some("test"), Environment::Production) => Err(ConfigError::Invalid {
            var: "LOKIZ_PAYMENTS",
            message: "the test provider grants credits without payment; \
                      it is refused when LOKIZ_ENV=production"
                .into(),
        }),
        (None | Some("test"), Environment::Development) => Ok(PaymentsConfig::Test),
        (Some("stripe"), _) => {
            let raw = var("LOKIZ_STRIPE_URL").unwrap_or_else(|| "https://api.stripe.com".into());
            let base_url = parse_base_url("LOKIZ_STRIPE_URL", &raw)?;
            let base_url =
                url::Url::parse(&format!("{base_url}/")).map_err(|e| ConfigError::Invalid {
                    var: "LOKIZ_STRIPE_URL",
                    message: e.to_string(),
                })?;
            if env == Environment::Production && base_url.scheme() != "https" {
                return Err(ConfigError::Invalid {
                    var: "LOKIZ_STRIPE_URL",
                    message: "must be https when LOKIZ_ENV=production".into(),
                });
            }
            Ok(PaymentsConfig::Stripe(Box::new(StripeConfig {
                base_url,
                secret_key: Secret::new(required("LOKIZ_STRIPE_SECRET_KEY")?),
                webhook_secret: Secret::new(required("LOKIZ_STRIPE_WEBHOOK_SECRET")?),
            })))
        }
        (Some(other), _) => Err(ConfigError::Invalid {
            var: "LOKIZ_PAYMENTS",
            message: format!("unknown provider {other:?} (test|stripe)"),
        }),
    }
}

/// `LOKIZ_AI_PROVIDER`: `local` (ffmpeg on the worker's machine, the
/// default) or `replicate` (a Replicate-compatible HTTP API; frame captures
/// stay local).
#[derive(Debug, Clone)]
pub enum AiConfig {
    Local,
    Replicate(Box<ReplicateConfig>),
}

#[derive(Debug, Clone)]
pub struct ReplicateConfig {
    /// `LOKIZ_REPLICATE_URL` (default `https://api.replicate.com`).
    pub base_url: url::Url,
    /// `LOKIZ_REPLICATE_TOKEN`
    pub token: Secret,
    /// `LOKIZ_REPLICATE_WEBHOOK_SECRET` (`whsec_…`): verifies callbacks at
    /// `POST /v1/ai/callbacks/replicate`.
    pub webhook_secret: Secret,
    /// `LOKIZ_REPLICATE_VERSIONS`: `kind=version` pairs, comma-separated, for
    /// `template`, `glitch_animate`, `glitch_replace` and `music`.
    pub versions: std::collections::BTreeMap<String, String>,
    /// `LOKIZ_REPLICATE_OUTPUT_HOSTS` (default `replicate.delivery,
    /// *.replicate.delivery`): the only hosts outputs are downloaded from.
    pub output_hosts: Vec<String>,
    /// `LOKIZ_REPLICATE_INSECURE_OUTPUTS=1`: http and non-public addresses
    /// allowed for outputs (a local fake provider); refused in production.
    pub insecure_outputs: bool,
}

/// `LOKIZ_BLOB_STORE`: `local` (files under `$LOKIZ_DATA_DIR/blobs`, served
/// by this server) or `s3`.
#[derive(Debug, Clone)]
pub enum BlobConfig {
    Local,
    S3(Box<S3Config>),
}

/// An S3-compatible bucket, addressed path-style (`{endpoint}/{bucket}/{key}`).
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `LOKIZ_S3_ENDPOINT`: scheme, host and port only, e.g.
    /// `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: url::Url,
    /// `LOKIZ_S3_BUCKET`
    pub bucket: String,
    /// `LOKIZ_S3_REGION` (default `us-east-1`)
    pub region: String,
    /// `LOKIZ_S3_ACCESS_KEY`
    pub access_key: String,
    /// `LOKIZ_S3_SECRET_KEY`
    pub secret_key: Secret,
    /// `LOKIZ_S3_PUBLIC_URL` (optional, no trailing slash): where objects are
    /// read from, e.g. a CDN; default `{endpoint}/{bucket}`.
    pub public_url: Option<String>,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/lokiz";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_STREAM: &str = "LOKIZ";

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get`, so tests can pass their own values.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());

        let env = match var("LOKIZ_ENV").as_deref() {
            None | Some("development") | Some("dev") | Some("test") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "LOKIZ_ENV",
                    message: format!("unknown environment {other:?} (development|production)"),
                })
            }
        };

        let database_url = var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        match url::Url::parse(&database_url) {
            Ok(u) if (u.scheme() == "postgres" || u.scheme() == "postgresql") => {
                if u.path().trim_start_matches('/').is_empty() {
                    return Err(ConfigError::Invalid {
                        var: "DATABASE_URL",
                        message:
                            "must name a database, e.g. postgres://postgres@127.0.0.1:5432/lokiz"
                                .into(),
                    });
                }
            }
            _ => {
                return Err(ConfigError::Invalid {
                    var: "DATABASE_URL",
                    message: "must be a postgres:// URL".into(),
                })
            }
        }

        let nats_url = var("NATS_URL").unwrap_or_else(|| DEFAULT_NATS_URL.into());
        match url::Url::parse(&nats_url) {
            Ok(u) if matches!(u.scheme(), "nats" | "tls" | "ws" | "wss") && u.has_host() => {}
            _ => {
                return Err(ConfigError::Invalid {
                    var: "NATS_URL",
                    message: "must be a nats:// URL, e.g. nats://127.0.0.1:4222".into(),
                })
            }
        }

        let bind_raw = var("LOKIZ_BIND").unwrap_or_else(|| DEFAULT_BIND.into());
        let bind: SocketAddr = bind_raw.parse().map_err(|_| ConfigError::Invalid {
            var: "LOKIZ_BIND",
            message: format!("{bind_raw:?} is not an address like 127.0.0.1:8080"),
        })?;

        let ops_bind = var("LOKIZ_OPS_BIND")
            .map(|raw| {
                raw.trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Invalid {
                        var: "LOKIZ_OPS_BIND",
                        message: format!("{raw:?} is not an address like 127.0.0.1:9090"),
                    })
            })
            .transpose()?;

        let stream = var("LOKIZ_STREAM").unwrap_or_else(|| DEFAULT_STREAM.into());
        if stream.len() > 32
            || !stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::Invalid {
                var: "LOKIZ_STREAM",
                message: "must be 1-32 characters of letters, digits, '_' or '-'".into(),
            });
        }

        let data_dir = PathBuf::from(var("LOKIZ_DATA_DIR").unwrap_or_else(|| "./data".into()));

        let consistency_timeout = Duration::from_millis(parse_num(
            &var,
            "LOKIZ_CONSISTENCY_TIMEOUT_MS",
            5_000,
            1,
            120_000,
        )?);
        let db_pool_size = parse_num(&var, "LOKIZ_DB_POOL_SIZE", 20, 1, 500)? as u32;
        let horizon_report_after = Duration::from_millis(parse_num(
            &var,
            "LOKIZ_HORIZON_REPORT_MS",
            5_000,
            0,
            3_600_000,
        )?);

        let jwt_secret = match (var("LOKIZ_JWT_SECRET"), var("LOKIZ_JWT_SECRET_FILE")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    var: "LOKIZ_JWT_SECRET_FILE",
                    message: "set LOKIZ_JWT_SECRET or LOKIZ_JWT_SECRET_FILE, not both".into(),
                })
            }
            (Some(s), None) if s.len() >= 32 => Secret::new(s),
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    var: "LOKIZ_JWT_SECRET",
                    message: "must be at least 32 characters".into(),
                })
            }
            (None, Some(file)) => read_secret_file(Path::new(file.trim()), env)?,
            (None, None) if env == Environment::Production => {
                return Err(ConfigError::Invalid {
                    var: "LOKIZ_JWT_SECRET",
                    message: "is required when LOKIZ_ENV=production (or LOKIZ_JWT_SECRET_FILE)"
                        .into(),
                })
            }
            (None, None) => load_or_create_secret(&data_dir)?,
        };

        let public_url = var("LOKIZ_PUBLIC_URL")
            .map(|raw| parse_base_url("LOKIZ_PUBLIC_URL", &raw))
            .transpose()?;
        let blob = parse_blob_config(&var)?;
        let ai = parse_ai_config(&var, env)?;
        let payments = parse_payments_config(&var, env)?;
        let rate_limits = parse_rate_limits(&var)?;
        let request_timeout = Duration::from_millis(parse_num(
            &var,
            "LOKIZ_REQUEST_TIMEOUT_MS",
            30_000,
            100,
            600_000,
        )?);
        let consistency_waiters =
            parse_num(&var, "LOKIZ_CONSISTENCY_WAITERS", 256, 1, 100_000)? as usize;
        let live = LiveConfig {
            heartbeat: Duration::from_millis(parse_num(
                &var,
                "LOKIZ_WS_HEARTBEAT_MS",
                20_000,
                100,
                600_000,
            )?),
            max_sockets: parse_num(&var, "LOKIZ_WS_MAX_SOCKETS", 10_000, 1, 1_000_000)? as usize,
            max_per_user: parse_num(&var, "LOKIZ_WS_MAX_PER_USER", 5, 1, 100)? as usize,
            send_queue: parse_num(&var, "LOKIZ_WS_SEND_QUEUE", 64, 1, 10_000)? as usize,
        };
        let studio_cache_bytes =
            parse_num(&var, "LOKIZ_STUDIO_CACHE_MB", 1024, 1, 10_000_000)? * 1024 * 1024;
        let studio_cache_age = Duration::from_secs(
            parse_num(&var, "LOKIZ_STUDIO_CACHE_HOURS", 168, 1, 87_600)? * 3600,
        );
        let mut time_limits: std::collections::BTreeMap<String, Duration> = [
            ("capture_frame", 60),
            ("template", 300),
            ("glitch_animate", 600),
            ("glitch_replace", 600),
            ("music", 600),
        ]
        .into_iter()
        .map(|(k, s)| (k.to_owned(), Duration::from_secs(s)))
        .collect();
        if let Some(raw) = var("LOKIZ_JOBS_TIME_LIMITS") {
            for pair in raw.split(',').filter(|p| !p.trim().is_empty()) {
                let parsed = pair.split_once('=').and_then(|(k, v)| {
                    let secs: f64 = v.trim().parse().ok()?;
                    let k = k.trim();
                    (time_limits.contains_key(k) && secs > 0.0 && secs <= 86_400.0)
                        .then(|| (k.to_owned(), Duration::from_secs_f64(secs)))
                });
                let Some((k, d)) = parsed else {
                    return Err(ConfigError::Invalid {
                        var: "LOKIZ_JOBS_TIME_LIMITS",
                        message: format!(
                            "{pair:?}: kind=seconds with a kind of capture_frame, template, \
                             glitch_animate, glitch_replace, music"
                        ),
                    });
                };
                time_limits.insert(k, d);
            }
        }
        let upload_expiry = Duration::from_secs(parse_num(
            &var,
            "LOKIZ_UPLOAD_EXPIRY_SECS",
            86_400,
            1,
            30 * 86_400,
        )?);
        let deleted_files_grace = Duration::from_secs(parse_num(
            &var,
            "LOKIZ_DELETED_FILES_GRACE_SECS",
            3 * 86_400,
            1,
            365 * 86_400,
        )?);
        let jobs = JobsConfig {
            time_limits,
            max_active: parse_num(&var, "LOKIZ_JOBS_MAX_ACTIVE", 3, 1, 1_000)? as u32,
            max_active_free: parse_num(&var, "LOKIZ_JOBS_MAX_ACTIVE_FREE", 20, 1, 1_000)? as u32,
            free_per_day: parse_num(&var, "LOKIZ_JOBS_FREE_PER_DAY", 500, 0, 1_000_000)? as u32,
            orphan_after: Duration::from_secs(parse_num(
                &var,
                "LOKIZ_JOBS_ORPHAN_AFTER_SECS",
                600,
                1,
                86_400,
            )?),
        };

        Ok(Self {
            env,
            database_url,
            nats_url,
            bind,
            ops_bind,
            stream,
            data_dir,
            jwt_secret,
            consistency_timeout,
            db_pool_size,
            horizon_report_after,
            public_url,
            blob,
            ai,
            payments,
            rate_limits,
            request_timeout,
            consistency_waiters,
            live,
            jobs,
            studio_cache_bytes,
            studio_cache_age,
            upload_expiry,
            deleted_files_grace,
        })
    }

    /// The database name in `database_url`.
    pub fn database_name(&self) -> String {
        url::Url::parse(&self.database_url)
            .map(|u| u.path().trim_start_matches('/').to_owned())
            .unwrap_or_default()
    }

    /// Subject prefix for events: `<stream>.events`.
    pub fn subject_prefix(&self) -> String {
        format!("{}.events", self.stream)
    }

    /// Where projections announce changes to live readers (core NATS,
    /// outside the stream): `<stream>.wake.<what>`.
    pub fn wake_prefix(&self) -> String {
        format!("{}.wake", self.stream)
    }
}

fn parse_num(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::Invalid {
                var: name,
                message: format!("{raw:?} must be a whole number from {min} to {max}"),
            }),
        },
    }
}

/// An absolute http(s) URL without query or fragment, returned without
/// trailing slashes (a path prefix is kept, for servers behind a proxy).
fn parse_base_url(name: &'static str, raw: &str) -> Result<String, ConfigError> {
    let trimmed = raw.trim().trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.has_host()
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            Ok(trimmed.to_owned())
        }
        _ => Err(ConfigError::Invalid {
            var: name,
            message: format!(
                "{raw:?} must be an absolute http:// or https:// URL, e.g. https://api.example.com"
            ),
        }),
    }
}

fn parse_blob_config(var: &impl Fn(&str) -> Option<String>) -> Result<BlobConfig, ConfigError> {
    match var("LOKIZ_BLOB_STORE").as_deref().map(str::trim) {
        None | Some("local") => return Ok(BlobConfig::Local),
        Some("s3") => {}
        Some(other) => {
            return Err(ConfigError::Invalid {
                var: "LOKIZ_BLOB_STORE",
                message: format!("unknown blob store {other:?} (local|s3)"),
            })
        }
    }
    let required = |name: &'static str| {
        var(name)
            .map(|v| v.trim().to_owned())
            .ok_or(ConfigError::Invalid {
                var: name,
                message: "is required when LOKIZ_BLOB_STORE=s3".into(),
            })
    };
    let endpoint_raw = required("LOKIZ_S3_ENDPOINT")?;
    let endpoint = match url::Url::parse(&endpoint_raw) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.has_host()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty() =>
        {
            u
        }
        _ => {
            return Err(ConfigError::Invalid {
                var: "LOKIZ_S3_ENDPOINT",
                message: format!(
                    "{endpoint_raw:?} must be an http(s) URL of scheme, host and port only, e.g. http://127.0.0.1:9000"
                ),
            })
        }
    };
    let bucket = required("LOKIZ_S3_BUCKET")?;
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !bucket_ok {
        return Err(ConfigError::Invalid {
            var: "LOKIZ_S3_BUCKET",
            message: "must be 3-63 characters of lowercase letters, digits, '.' or '-', starting and ending with a letter or digit".into(),
        });
    }
    let region = var("LOKIZ_S3_REGION")
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "us-east-1".into());
    if region.len() > 64
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ConfigError::Invalid {
            var: "LOKIZ_S3_REGION",
            message: "must be a region name like us-east-1".into(),
        });
    }
    let access_key = required("LOKIZ_S3_ACCESS_KEY")?;
    if !access_key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::Invalid {
            var: "LOKIZ_S3_ACCESS_KEY",
            message: "must be printable ASCII without spaces".into(),
        });
    }
    let secret_key = Secret::new(required("LOKIZ_S3_SECRET_KEY")?);
    let public_url = var("LOKIZ_S3_PUBLIC_URL")
        .map(|raw| parse_base_url("LOKIZ_S3_PUBLIC_URL", &raw))
        .transpose()?;
    Ok(BlobConfig::S3(Box::new(S3Config {
        endpoint,
        bucket,
        region,
        access_key,
        secret_key,
        public_url,
    })))
}

/// Development convenience: a random signing key generated once and kept in
/// the data directory, so tokens survive restarts.
/// `LOKIZ_JWT_SECRET_FILE`: the key in a file; in production the file
/// must be readable by its owner only (a key others can read is a key
/// others can sign tokens with).
fn read_secret_file(path: &Path, env: Environment) -> Result<Secret, ConfigError> {
    let io = |source| ConfigError::Io {
        var: "LOKIZ_JWT_SECRET_FILE",
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if env == Environment::Production && mode & 0o077 != 0 {
            return Err(ConfigError::Invalid {
                var: "LOKIZ_JWT_SECRET_FILE",
                message: format!(
                    "{} is readable by others (mode {mode:o}); chmod 600 it",
                    path.display()
                ),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (meta, env);
    let secret = std::fs::read_to_string(path).map_err(io)?.trim().to_owned();
    if secret.len() < 32 {
        return Err(ConfigError::Invalid {
            var: "LOKIZ_JWT_SECRET_FILE",
            message: "the key must be at least 32 characters".into(),
        });
    }
    Ok(Secret::new(secret))
}

fn load_or_create_secret(data_dir: &Path) -> Result<Secret, ConfigError> {
    let path = data_dir.join("jwt_secret");
    let io = |source| ConfigError::Io {
        var: "LOKIZ_DATA_DIR",
        path: path.clone(),
        source,
    };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= 32 {
            return Ok(Secret::new(existing));
        }
    }
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    use base64::Engine;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, &secret).map_err(io)?;
    Ok(Secret::new(secret))
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

fn parse_ai_config(
    var: &impl Fn(&str) -> Option<String>,
    env: Environment,
) -> Result<AiConfig, ConfigError> {
    match var("LOKIZ_AI_PROVIDER").as_deref() {
        None | Some("local") => Ok(AiConfig::Local),
        Some("replicate") => {
            let required = |name: &'static str| {
                var(name).ok_or(ConfigError::Invalid {
                    var: name,
                    message: "is required when LOKIZ_AI_PROVIDER=replicate".into(),
                })
            };
            let base_raw =
                var("LOKIZ_REPLICATE_URL").unwrap_or_else(|| "https://api.replicate.com".into());
            let base_url = url::Url::parse(&base_raw)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or(ConfigError::Invalid {
                    var: "LOKIZ_REPLICATE_URL",
                    message: "must be an http(s) URL".into(),
                })?;
            let mut versions = std::collections::BTreeMap::new();
            for pair in required("LOKIZ_REPLICATE_VERSIONS")?.split(',') {
                let (kind, version) = pair.split_once('=').ok_or_else(|| ConfigError::Invalid {
                    var: "LOKIZ_REPLICATE_VERSIONS",
                    message: format!("{pair:?} is not kind=version"),
                })?;
                let kind = kind.trim();
                if !matches!(
                    kind,
                    "template" | "glitch_animate" | "glitch_replace" | "music"
                ) {
                    return Err(ConfigError::Invalid {
                        var: "LOKIZ_REPLICATE_VERSIONS",
                        message: format!(
                            "unknown kind {kind:?} (template, glitch_animate, glitch_replace, music)"
                        ),
                    });
                }
                versions.insert(kind.to_owned(), version.trim().to_owned());
            }
            let output_hosts: Vec<String> = var("LOKIZ_REPLICATE_OUTPUT_HOSTS")
                .unwrap_or_else(|| "replicate.delivery,*.replicate.delivery".into())
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect();
            if output_hosts.iter().any(|h| {
                !h.trim_start_matches("*.")
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
            }) {
                return Err(ConfigError::Invalid {
                    var: "LOKIZ_REPLICATE_OUTPUT_HOSTS",
                    message: "host names, comma-separated (`*.example.com` for subdomains)".into(),
                });
            }
            let insecure_outputs = match var("LOKIZ_REPLICATE_INSECURE_OUTPUTS").as_deref() {
                None | Some("0") | Some("false") => false,
                Some("1") | Some("true") if env == Environment::Development => true,
                Some(_) => {
                    return Err(ConfigError::Invalid {
                        var: "LOKIZ_REPLICATE_INSECURE_OUTPUTS",
                        message: "1 or 0, and never when LOKIZ_ENV=production".into(),
                    })
                }
            };
            Ok(AiConfig::Replicate(Box::new(ReplicateConfig {
                base_url,
                token: Secret::new(required("LOKIZ_REPLICATE_TOKEN")?),
                webhook_secret: Secret::new(required("LOKIZ_REPLICATE_WEBHOOK_SECRET")?),
                versions,
                output_hosts,
                insecure_outputs,
            })))
        }
        Some(other) => Err(ConfigError::Invalid {
            var: "LOKIZ_AI_PROVIDER",
            message: format!("unknown provider {other:?} (local|replicate)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| map.get(k).cloned())
    }

    fn var_of(e: ConfigError) -> &'static str {
        match e {
            ConfigError::Invalid { var, .. } | ConfigError::Io { var, .. } => var,
        }
    }

    const SECRET: (&str, &str) = ("LOKIZ_JWT_SECRET", "0123456789abcdef0123456789abcdef");

    #[test]
    fn ai_provider_is_local_by_default_and_replicate_needs_its_settings() {
        assert!(matches!(cfg(&[SECRET]).unwrap().ai, AiConfig::Local));
        let e = cfg(&[SECRET, ("LOKIZ_AI_PROVIDER", "magic")]).unwrap_err();
        assert_eq!(var_of(e), "LOKIZ_AI_PROVIDER");
        let e = cfg(&[SECRET, ("LOKIZ_AI_PROVIDER", "replicate")]).unwrap_err();
        assert_eq!(var_of(e), "LOKIZ_REPLICATE_VERSIONS");
        let replicate = [
            SECRET,
            ("LOKIZ_AI_PROVIDER", "replicate"),
            (
                "LOKIZ_REPLICATE_VERSIONS",
                "music=abc, glitch_animate = def",
            ),
            ("LOKIZ_REPLICATE_WEBHOOK_SECRET", "whsec_abc"),
        ];
        let e = cfg(&replicate).unwrap_err();
        assert_eq!(var_of(e), "LOKIZ_REPLICATE_TOKEN");
        let mut all = replicate.to_vec();
        all.push(("LOKIZ_REPLICATE_TOKEN", "r8_token"));
        match cfg(&all).unwrap().ai {
            AiConfig::Replicate(r) => {
                assert_eq!(r.versions["glitch_animate"], "def");
                assert_eq!(r.base_url.as_str(), "https://api.replicate.com/");
                assert!(
                    !format!("{r:?}").contains("r8_token"),
                    "the token is not printed"
                );
            }
            AiConfig::Local => panic!("replicate expected"),
        }
        all[2] = ("LOKIZ_REPLICATE_VERSIONS", "dance=abc");
        assert_eq!(var_of(cfg(&all).unwrap_err()), "LOKIZ_REPLICATE_VERSIONS");
    }

    #[test]
    fn defaults_work() {
        let c = cfg(&[("LOKIZ_JWT_SECRET", &"s".repeat(40))]).unwrap();
        assert_eq!(c.database_name(), "lokiz");
        assert_eq!(c.stream, "LOKIZ");
        assert_eq!(c.bind.port(), 8080);
        assert_eq!(c.consistency_timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let s = "s".repeat(40);
        let cases = [
            ("DATABASE_URL", "mysql://x/y"),
            ("NATS_URL", "http://x"),
            ("LOKIZ_BIND", "nowhere"),
            ("LOKIZ_STREAM", "a.b"),
            ("LOKIZ_ENV", "staging"),
            ("LOKIZ_CONSISTENCY_TIMEOUT_MS", "soon"),
            ("LOKIZ_JWT_SECRET", "short"),
            ("LOKIZ_PUBLIC_URL", "example.com"),
            ("LOKIZ_PUBLIC_URL", "ftp://example.com"),
            ("LOKIZ_PUBLIC_URL", "https://example.com/?q=1"),
            ("LOKIZ_BLOB_STORE", "gcs"),
        ];
        for (var, value) in cases {
            let mut pairs = vec![(var, value)];
            if var != "LOKIZ_JWT_SECRET" {
                pairs.push(("LOKIZ_JWT_SECRET", &s));
            }
            let err = cfg(&pairs).unwrap_err();
            assert_eq!(var_of(err), var);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_can_read_is_refused_in_production() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lokiz-secret-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwt");
        std::fs::write(&file, "k".repeat(40)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = file.to_string_lossy().into_owned();
        let prod = [
            ("LOKIZ_ENV", "production"),
            ("LOKIZ_JWT_SECRET_FILE", path.as_str()),
            ("LOKIZ_PAYMENTS", "stripe"),
            ("LOKIZ_STRIPE_SECRET_KEY", "sk_x"),
            ("LOKIZ_STRIPE_WEBHOOK_SECRET", "whsec_x"),
        ];
        assert_eq!(var_of(cfg(&prod).unwrap_err()), "LOKIZ_JWT_SECRET_FILE");
        // development takes it (a warning is the operator's business there)
        let c = cfg(&[("LOKIZ_JWT_SECRET_FILE", path.as_str())]).unwrap();
        assert_eq!(c.jwt_secret.expose(), "k".repeat(40));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = cfg(&prod).unwrap();
        assert_eq!(c.jwt_secret.expose(), "k".repeat(40));
        // both ways at once: refused
        let mut both = prod.to_vec();
        both.push(("LOKIZ_JWT_SECRET", "s-s-s-s-s-s-s-s-s-s-s-s-s-s-s-s-s-s"));
        assert_eq!(var_of(cfg(&both).unwrap_err()), "LOKIZ_JWT_SECRET_FILE");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn payments_provider_is_chosen_and_the_test_one_refused_in_production() {
        let s = "s".repeat(40);
        let c = cfg(&[("LOKIZ_JWT_SECRET", &s)]).unwrap();
        assert!(matches!(c.payments, PaymentsConfig::Test));
        let prod = [
            ("LOKIZ_ENV", "production"),
            ("LOKIZ_JWT_SECRET", s.as_str()),
        ];
        // production without a provider, or with the test one: refused
        assert_eq!(var_of(cfg(&prod).unwrap_err()), "LOKIZ_PAYMENTS");
        let mut test = prod.to_vec();
        test.push(("LOKIZ_PAYMENTS", "test"));
        assert_eq!(var_of(cfg(&test).unwrap_err()), "LOKIZ_PAYMENTS");
        let mut stripe = prod.to_vec();
        stripe.push(("LOKIZ_PAYMENTS", "stripe"));
        assert_eq!(var_of(cfg(&stripe).unwrap_err()), "LOKIZ_STRIPE_SECRET_KEY");
        stripe.push(("LOKIZ_STRIPE_SECRET_KEY", "sk_live_x"));
        assert_eq!(
            var_of(cfg(&stripe).unwrap_err()),
            "LOKIZ_STRIPE_WEBHOOK_SECRET"
        );
        stripe.push(("LOKIZ_STRIPE_WEBHOOK_SECRET", "whsec_x"));
        let c = cfg(&stripe).unwrap();
        let PaymentsConfig::Stripe(p) = &c.payments else {
            panic!("stripe expected")
        };
        assert_eq!(p.base_url.as_str(), "https://api.stripe.com/");
        assert!(!format!("{c:?}").contains("sk_live_x"));
        // money over plain http in production: refused
        stripe.push(("LOKIZ_STRIPE_URL", "http://stripe.internal"));
        assert_eq!(var_of(cfg(&stripe).unwrap_err()), "LOKIZ_STRIPE_URL");
        assert_eq!(
            var_of(cfg(&[("LOKIZ_JWT_SECRET", &s), ("LOKIZ_PAYMENTS", "paypal")]).unwrap_err()),
            "LOKIZ_PAYMENTS"
        );
    }

    #[test]
    fn public_url_and_blob_store() {
        let s = "s".repeat(40);
        let c = cfg(&[("LOKIZ_JWT_SECRET", &s)]).unwrap();
        assert!(c.public_url.is_none());
        assert!(matches!(c.blob, BlobConfig::Local));
        let c = cfg(&[
            ("LOKIZ_JWT_SECRET", &s),
            ("LOKIZ_PUBLIC_URL", "https://api.lokiz.dev/"),
        ])
        .unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://api.lokiz.dev"));

        let s3 = [
            ("LOKIZ_JWT_SECRET", s.as_str()),
            ("LOKIZ_BLOB_STORE", "s3"),
            ("LOKIZ_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("LOKIZ_S3_BUCKET", "lokiz-videos"),
            ("LOKIZ_S3_ACCESS_KEY", "minio"),
            ("LOKIZ_S3_SECRET_KEY", "minio-secret"),
        ];
        let c = cfg(&s3).unwrap();
        let BlobConfig::S3(b) = &c.blob else {
            panic!("s3 expected")
        };
        assert_eq!(b.endpoint.as_str(), "http://127.0.0.1:9000/");
        assert_eq!(b.bucket, "lokiz-videos");
        assert_eq!(b.region, "us-east-1");
        assert_eq!(b.secret_key.expose(), "minio-secret");
        assert!(!format!("{c:?}").contains("minio-secret"));

        // every s3 variable is required, and a bad one is named
        for missing in [
            "LOKIZ_S3_ENDPOINT",
            "LOKIZ_S3_BUCKET",
            "LOKIZ_S3_ACCESS_KEY",
            "LOKIZ_S3_SECRET_KEY",
        ] {
            let pairs: Vec<_> = s3.iter().copied().filter(|(k, _)| *k != missing).collect();
            assert_eq!(var_of(cfg(&pairs).unwrap_err()), missing);
        }
        for (var, value) in [
            ("LOKIZ_S3_ENDPOINT", "127.0.0.1:9000"),
            ("LOKIZ_S3_ENDPOINT", "http://127.0.0.1:9000/bucket"),
            ("LOKIZ_S3_BUCKET", "Upper_Case"),
            ("LOKIZ_S3_BUCKET", "ab"),
            ("LOKIZ_S3_REGION", "US East"),
            ("LOKIZ_S3_ACCESS_KEY", "has space"),
            ("LOKIZ_S3_PUBLIC_URL", "cdn.example.com"),
        ] {
            let mut pairs: Vec<_> = s3.iter().copied().filter(|(k, _)| *k != var).collect();
            pairs.push((var, value));
            assert_eq!(var_of(cfg(&pairs).unwrap_err()), var, "{var}={value}");
        }
    }

    #[test]
    fn production_requires_a_secret() {
        let err = cfg(&[("LOKIZ_ENV", "production")]).unwrap_err();
        assert_eq!(var_of(err), "LOKIZ_JWT_SECRET");
    }

    #[test]
    fn generated_secret_is_kept() {
        let dir = std::env::temp_dir().join(format!("lokiz-cfg-{}", uuid::Uuid::new_v4()));
        let d = dir.to_string_lossy().to_string();
        let a = cfg(&[("LOKIZ_DATA_DIR", &d)]).unwrap();
        let b = cfg(&[("LOKIZ_DATA_DIR", &d)]).unwrap();
        assert_eq!(a.jwt_secret.expose(), b.jwt_secret.expose());
        assert!(a.jwt_secret.expose().len() >= 32);
        assert_eq!(format!("{:?}", a.jwt_secret), "Secret(***)");
        let _ = std::fs::remove_dir_all(dir);
    }
}
