//! Test harness: `spawn_app()` starts the whole system in-process on port 0,
//! against its own fresh Postgres database and its own JetStream stream, so
//! tests run in parallel and never see each other's data.
//!
//! The same outside view serves the developer tools of `lokiz-bench`
//! (`src/bin/lokiz-bench.rs`): the benchmark harness ([`bench`]) and the
//! data seeder ([`seed`]), which the rebuild tests also use.

pub mod bench;
pub mod cluster;
pub mod fake_replicate;
pub mod fake_stripe;
pub mod seed;

use std::collections::HashMap;
use std::time::Duration;

use lokiz_api::{ApiContext, Application, Components};
pub use lokiz_infra::ai::worker::WorkerOptions;
use lokiz_infra::Config;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// An HTTP client of one LOKIZ API (in-process or a separate process).
pub struct Api {
    pub address: String,
    pub client: reqwest::Client,
}

/// The whole system in-process; its HTTP helpers are [`Api`]'s.
pub struct TestApp {
    pub api: Api,
    pub config: Config,
    pub ctx: ApiContext,
    pub pool: PgPool,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub struct Registered {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
    pub position: i64,
    pub body: Value,
}

/// Rate limits and job limits for tests: on (every request goes through the
/// limiter and every job through admission), but far above what any test
/// sends from its one address, except the tests of the limits themselves,
/// which set their own.
pub const TEST_RATE_LIMITS: &[(&str, &str)] = &[
    ("LOKIZ_RATE_LIMIT_ANONYMOUS", "10000000/1h"),
    ("LOKIZ_RATE_LIMIT_USER", "10000000/1h"),
    ("LOKIZ_RATE_LIMIT_LOGIN_IP", "10000000/1h"),
    ("LOKIZ_RATE_LIMIT_LOGIN_ACCOUNT", "10000000/1h"),
    ("LOKIZ_RATE_LIMIT_SIGNUP", "10000000/1h"),
    ("LOKIZ_RATE_LIMIT_VIEWS", "10000000/1h"),
    ("LOKIZ_JOBS_MAX_ACTIVE", "1000"),
    ("LOKIZ_JOBS_MAX_ACTIVE_FREE", "1000"),
    ("LOKIZ_JOBS_FREE_PER_DAY", "1000000"),
];

/// A configuration with a unique database and stream.
pub fn test_config(extra: &[(&str, &str)]) -> Config {
    let tag = Uuid::new_v4().simple().to_string();
    let base = std::env::var("LOKIZ_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut vars: HashMap<String, String> = HashMap::from([
        (
            "DATABASE_URL".into(),
            format!("{base}/lokiz_t_{}", &tag[..16]),
        ),
        ("LOKIZ_BIND".into(), "127.0.0.1:0".into()),
        ("LOKIZ_STREAM".into(), format!("T{}", &tag[..16])),
        ("LOKIZ_JWT_SECRET".into(), TEST_SECRET.into()),
        ("LOKIZ_DB_POOL_SIZE".into(), "8".into()),
        (
            "LOKIZ_DATA_DIR".into(),
            std::env::temp_dir()
                .join("lokiz-tests")
                .to_string_lossy()
                .into(),
        ),
    ]);
    if let Ok(n) = std::env::var("NATS_URL") {
        vars.insert("NATS_URL".into(), n);
    }
    for (k, v) in TEST_RATE_LIMITS {
        vars.insert((*k).into(), (*v).into());
    }
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration")
}

/// Workers in tests report often (so short jobs show progress) and hold
/// leases briefly.
pub fn test_worker_options() -> WorkerOptions {
    WorkerOptions {
        lease: Duration::from_secs(10),
        tick: Duration::from_millis(100),
        concurrency: 2,
        worker_id: format!("test-{}", Uuid::new_v4().simple()),
    }
}

/// A worker process of its own (AI worker + credits saga) on an app's
/// database and stream; stop it to simulate a worker dying.
pub struct WorkerProcess {
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl WorkerProcess {
    pub async fn start(config: &Config, options: WorkerOptions) -> WorkerProcess {
        let app = Application::build(
            config.clone(),
            Components {
                workers: true,
                ..Components::NONE
            },
        )
        .await
        .expect("worker builds")
        .with_worker_options(options);
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        WorkerProcess {
            shutdown,
            handle: Some(handle),
        }
    }

    /// Stops the worker: its running jobs stop where they are and stay
    /// unacked, as when a process dies.
    pub async fn kill(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A real video made by ffmpeg (moving test pattern and a tone), cached per
/// size and length.
pub async fn sample_video(width: u32, height: u32, seconds: f64) -> Vec<u8> {
    let dir = std::env::temp_dir().join("lokiz-test-media");
    tokio::fs::create_dir_all(&dir).await.expect("media dir");
    let path = dir.join(format!("sample-{width}x{height}-{seconds}.mp4"));
    if !path.exists() {
        let tmp = dir.join(format!("{}.mp4", Uuid::new_v4().simple()));
        let status = tokio::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={width}x{height}:rate=25"))
            .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t"])
            .arg(seconds.to_string())
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-c:a", "aac", "-shortest"])
            .arg(&tmp)
            .status()
            .await
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg made the sample");
        tokio::fs::rename(&tmp, &path)
            .await
            .expect("sample in place");
    }
    tokio::fs::read(&path).await.expect("sample")
}

/// A valid 1×1 PNG (one green pixel), for image uploads.
pub fn tiny_png() -> Vec<u8> {
    vec![
        137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 2,
        0, 0, 0, 144, 119, 83, 222, 0, 0, 0, 12, 73, 68, 65, 84, 120, 156, 99, 248, 207, 192, 0, 0,
        3, 1, 1, 0, 201, 254, 146, 239, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
    ]
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Components::ALL, &[]).await
}

pub async fn spawn_app_with(components: Components, extra: &[(&str, &str)]) -> TestApp {
    let config = test_config(extra);
    let app = Application::build(config.clone(), components)
        .await
        .expect("application builds")
        .with_worker_options(test_worker_options());
    let address = format!("http://127.0.0.1:{}", app.port());
    let ctx = app.context().clone();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        api: Api::new(address),
        pool: ctx.pool.clone(),
        ctx,
        config,
        shutdown,
        handle: Some(handle),
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    pub fn new(address: String) -> Api {
        Api {
            address,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> Response {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    pub async fn patch(&self, path: &str, body: Value, token: &str) -> Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(
        &self,
        path: &str,
        token: Option<&str>,
        min_position: Option<i64>,
    ) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(p) = min_position {
            req = req.header("X-Lokiz-Min-Position", p.to_string());
        }
        req.send().await.expect("request")
    }

    /// Registers `username` (email `<username>@example.com`, password
    /// `password123`) and asserts success.
    pub async fn register(&self, username: &str) -> Registered {
        let email = format!("{}@example.com", username.to_lowercase());
        let resp = self
            .post(
                "/v1/auth/register",
                json!({"username": username, "email": email, "password": "password123"}),
                None,
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "register {username}");
        let position: i64 = resp
            .headers()
            .get("x-lokiz-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("X-Lokiz-Position");
        let body: Value = resp.json().await.expect("json");
        Registered {
            id: body["user"]["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("id"),
            username: username.into(),
            email,
            access_token: body["access_token"].as_str().expect("token").into(),
            refresh_token: body["refresh_token"].as_str().expect("refresh").into(),
            position,
            body,
        }
    }

    /// Uploads a real, playable video (see [`sample_video`]) for `user`
    /// through the upload flow; returns its id and the completion's position.
    pub async fn upload_media(
        &self,
        user: &Registered,
        (width, height): (u32, u32),
        seconds: f64,
    ) -> (Uuid, i64) {
        let bytes = sample_video(width, height, seconds).await;
        self.upload_bytes(user, None, bytes, (width, height), seconds)
            .await
    }

    /// The upload flow (upload URL, PUT, complete) for `bytes`, declared as
    /// a video of `width`×`height` lasting `seconds`.
    async fn upload_bytes(
        &self,
        user: &Registered,
        caption: Option<&str>,
        bytes: Vec<u8>,
        (width, height): (u32, u32),
        seconds: f64,
    ) -> (Uuid, i64) {
        let resp = self
            .post(
                "/v1/videos/upload-url",
                json!({"filename": "clip.mp4", "content_type": "video/mp4",
                       "file_size": bytes.len(), "caption": caption}),
                Some(&user.access_token),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "upload-url");
        let body: Value = resp.json().await.expect("json");
        let id: Uuid = body["video_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("video_id");
        let put = self
            .client
            .put(body["upload_url"].as_str().expect("upload_url"))
            .header("content-type", "video/mp4")
            .body(bytes)
            .send()
            .await
            .expect("PUT");
        assert!(put.status().is_success(), "PUT {}", put.status());
        let resp = self
            .post(
                &format!("/v1/videos/{id}/complete"),
                json!({"width": width, "height": height, "actual_duration": seconds}),
                Some(&user.access_token),
            )
            .await;
        let status = resp.status();
        if status != StatusCode::OK {
            panic!(
                "complete: {status} {}",
                resp.text().await.unwrap_or_default()
            );
        }
        (id, position_of(&resp))
    }

    /// Uploads a small video for `user` through the real flow (upload URL,
    /// PUT, complete) and returns its id and the completion's position.
    pub async fn upload_video(&self, user: &Registered, caption: Option<&str>) -> (Uuid, i64) {
        // a real (tiny) video: the server probes what it stores
        let bytes = sample_video(108, 192, 3.5).await;
        self.upload_bytes(user, caption, bytes, (108, 192), 3.5)
            .await
    }
}

impl TestApp {
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// The store's newest position (0 when empty).
    pub async fn head(&self) -> i64 {
        sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("head")
    }

    /// Waits until `cond` holds (polling), failing the test after `secs`.
    pub async fn eventually<F, Fut>(&self, secs: u64, what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if cond().await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the app, then drops its database and stream.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        let _ = self.ctx.js.delete_stream(&self.config.stream).await;
        self.pool.close().await;
        drop_database(&self.config).await;
    }
}

/// Deletes a test's JetStream stream (for a test that built its app by hand;
/// [`TestApp::stop`] does it through the app's own connection).
pub async fn drop_stream(config: &Config) {
    if let Ok(client) = async_nats::connect(&config.nats_url).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&config.stream)
            .await;
    }
}

/// Drops a test's database (its connections too).
pub async fn drop_database(config: &Config) {
    let name = config.database_name();
    let admin_url = config
        .database_url
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/postgres"))
        .unwrap_or_default();
    if let Ok(admin) = PgPool::connect(&admin_url).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&admin)
            .await;
        admin.close().await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The `X-Lokiz-Position` of a command response.
pub fn position_of(resp: &Response) -> i64 {
    resp.headers()
        .get("x-lokiz-position")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("X-Lokiz-Position")
}

/// Asserts the error envelope and returns its `error` object.
pub async fn expect_error(resp: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(resp.status(), status, "status");
    let body: Value = resp.json().await.expect("error body is JSON");
    let err = body.get("error").cloned().expect("envelope has error");
    assert_eq!(err["code"], code, "error code in {body}");
    assert!(err["message"].is_string(), "message in {body}");
    assert!(err.get("details").is_some(), "details in {body}");
    err
}
