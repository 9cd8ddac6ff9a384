//! A LOKIZ deployment as separate OS processes, for fault tests: `lokiz
//! serve`, `relay`, `project` and `worker` (the binary `cargo build --bin
//! lokiz` makes; `scripts/test.sh` builds it first), a `nats-server` of its
//! own on a free port with its own store directory, and a fresh Postgres
//! database. Processes can be killed (SIGKILL) or stopped (SIGTERM) and
//! started again; NATS too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lokiz_infra::{Config, StoredEvent, StreamPosition};
use sqlx::PgPool;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::{test_config, Api};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Serve,
    Relay,
    Project,
    Worker,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Serve, Role::Relay, Role::Project, Role::Worker];

    /// The `lokiz` subcommand, and the name of its log file.
    pub fn name(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Relay => "relay",
            Role::Project => "project",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: the process dies wherever it is.
    Kill,
    /// SIGTERM: a graceful stop, as a deploy does.
    Term,
}

/// The `lokiz` binary next to this test binary (`target/<profile>/lokiz`),
/// or `$LOKIZ_BIN`.
pub fn lokiz_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LOKIZ_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test binary>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("lokiz");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin lokiz` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `nats-server` with JetStream on its own port and store directory.
pub struct NatsServer {
    pub port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    pub async fn start(dir: &Path) -> NatsServer {
        let mut s = NatsServer {
            port: free_port(),
            store: dir.join("nats-store"),
            log: dir.join("nats.log"),
            child: None,
        };
        s.spawn().await;
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("nats log");
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server runs (Debian package nats-server)");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10)).await;
    }

    /// SIGKILL, then the same server again on the same port and store.
    pub async fn kill_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
        self.spawn().await;
    }
}

async fn wait_for_port(port: u16, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Cluster {
    pub api: Api,
    pub config: Config,
    pub pool: PgPool,
    pub nats: NatsServer,
    pub dir: PathBuf,
    bin: PathBuf,
    env: Vec<(String, String)>,
    procs: HashMap<Role, Child>,
}

impl Cluster {
    /// Migrates a fresh database and starts every role once.
    pub async fn start() -> Cluster {
        let dir = std::env::temp_dir()
            .join("lokiz-cluster")
            .join(Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let nats = NatsServer::start(&dir).await;
        let http_port = free_port();
        let nats_url = nats.url();
        let bind = format!("127.0.0.1:{http_port}");
        let data_dir = dir.join("data").to_string_lossy().into_owned();
        let config = test_config(&[
            ("NATS_URL", &nats_url),
            ("LOKIZ_BIND", &bind),
            ("LOKIZ_DATA_DIR", &data_dir),
        ]);
        let env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), config.database_url.clone()),
            ("NATS_URL".into(), nats_url),
            ("LOKIZ_STREAM".into(), config.stream.clone()),
            ("LOKIZ_BIND".into(), bind),
            ("LOKIZ_DATA_DIR".into(), data_dir),
            ("LOKIZ_JWT_SECRET".into(), crate::TEST_SECRET.into()),
            ("LOKIZ_DB_POOL_SIZE".into(), "8".into()),
            ("RUST_LOG".into(), "info".into()),
            // the fault tests check that reservations left by a killed API
            // are released
            ("LOKIZ_JOBS_ORPHAN_AFTER_SECS".into(), "3".into()),
        ];
        let mut env = env;
        env.extend(
            crate::TEST_RATE_LIMITS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let bin = lokiz_bin();
        let mut cluster = Cluster {
            api: Api::new(format!("http://127.0.0.1:{http_port}")),
            pool: PgPool::connect_lazy(&config.database_url).expect("pool"),
            config,
            nats,
            dir,
            bin,
            env,
            procs: HashMap::new(),
        };
        let out = cluster.lokiz(&["migrate"]).await;
        assert!(out.status.success(), "migrate: {out:?}");
        for role in Role::ALL {
            cluster.spawn(role).await;
        }
        cluster
    }

    /// Runs a one-off `lokiz` command (e.g. `projections verify --all`).
    pub async fn lokiz(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("lokiz runs")
    }

    /// A process of `role` logging to `<log_name>.log`, killed when the
    /// child is dropped: the cluster's own, or a second one beside it (two
    /// workers sharing the job consumer, say).
    pub fn spawn_extra(&self, role: Role, log_name: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{log_name}.log")))
            .expect("log file");
        Command::new(&self.bin)
            .arg(role.name())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("lokiz starts")
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to `role`'s process.
    pub async fn signal(&self, role: Role, signal: &str) {
        let pid = self
            .procs
            .get(&role)
            .and_then(Child::id)
            .expect("the role is running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    async fn spawn(&mut self, role: Role) {
        let child = self.spawn_extra(role, role.name());
        self.procs.insert(role, child);
        if role == Role::Serve {
            self.wait_until_serving(Duration::from_secs(20)).await;
        }
    }

    async fn wait_until_serving(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(r) = self.api.client.get(self.api.url("/health")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "lokiz serve did not come up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops `role` (SIGKILL or SIGTERM), waits for it to exit, waits
    /// `pause`, and starts it again.
    pub async fn restart(&mut self, role: Role, how: Stop, pause: Duration) {
        self.stop_role(role, how).await;
        tokio::time::sleep(pause).await;
        self.start_role(role).await;
    }

    /// Stops `role` (SIGKILL or SIGTERM) and waits for it to exit.
    pub async fn stop_role(&mut self, role: Role, how: Stop) {
        let Some(mut child) = self.procs.remove(&role) else {
            return;
        };
        match how {
            Stop::Kill => {
                let _ = child.start_kill();
            }
            Stop::Term => {
                if let Some(pid) = child.id() {
                    let _ = Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status()
                        .await;
                }
            }
        }
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            // a graceful stop that hangs is a failure of its own
            let _ = child.start_kill();
            let _ = child.wait().await;
            panic!("{role:?} did not stop within 30 s of SIGTERM");
        }
    }

    /// Starts `role` (when it is not running).
    pub async fn start_role(&mut self, role: Role) {
        if !self.procs.contains_key(&role) {
            self.spawn(role).await;
        }
    }

    /// Command lines of the `ffmpeg`/`ffprobe` processes working on this
    /// cluster's files.
    pub async fn media_processes(&self) -> Vec<String> {
        let out = Command::new("pgrep")
            .args(["-a", "-f", "^ff(mpeg|probe) "])
            .output()
            .await
            .expect("pgrep runs");
        let dir = self.dir.to_string_lossy().into_owned();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&dir))
            .map(str::to_owned)
            .collect()
    }

    /// Every role still running (none exited on its own)?
    pub fn exited(&mut self) -> Vec<(Role, std::process::ExitStatus)> {
        self.procs
            .iter_mut()
            .filter_map(|(role, c)| c.try_wait().ok().flatten().map(|s| (*role, s)))
            .collect()
    }

    /// Cuts every Postgres connection of the cluster's processes.
    pub async fn terminate_backends(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
               FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap_or(0)
    }

    /// The tail of a role's log, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Stops everything and removes the database, stream store and files.
    pub async fn stop(mut self) {
        for (_, mut c) in self.procs.drain() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
        if let Some(mut c) = self.nats.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
        self.pool.close().await;
        crate::drop_database(&self.config).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The (xid, position) of every message in `stream`, in stream order, read
/// with an ordered consumer from a connection of its own.
pub async fn stream_positions(nats_url: &str, stream: &str) -> Vec<StreamPosition> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    use futures::StreamExt;
    let client = async_nats::connect(nats_url).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream(stream).await.expect("stream");
    let last = s.info().await.expect("stream info").state.last_sequence;
    let mut out = Vec::new();
    if last == 0 {
        return out;
    }
    let consumer = s
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    while let Some(m) = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("the stream delivers to its end")
    {
        let m = m.expect("message");
        let event: StoredEvent = serde_json::from_slice(&m.payload).expect("an event");
        out.push(event.stream_position());
        if m.info().map(|i| i.stream_sequence).unwrap_or(0) >= last {
            break;
        }
    }
    out
}

/// Every stored event's (xid, position), in commit order: what the stream
/// must hold, in this order, each once.
pub async fn store_positions(pool: &PgPool) -> Vec<StreamPosition> {
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT xid::text::bigint, position FROM events ORDER BY xid, position")
            .fetch_all(pool)
            .await
            .expect("events in commit order");
    rows.into_iter()
        .map(|(xid, position)| StreamPosition { xid, position })
        .collect()
}

/// A `lokiz serve` OS process of its own on an app's database and stream
/// (another API process beside the test's), with `extra` settings.
pub struct ServeProcess {
    pub api: Api,
    child: Child,
}

impl ServeProcess {
    pub async fn start(config: &Config, extra: &[(&str, &str)]) -> ServeProcess {
        let port = free_port();
        let data_dir = std::env::temp_dir().join("lokiz-tests");
        let mut cmd = Command::new(lokiz_bin());
        cmd.arg("serve")
            .env("DATABASE_URL", &config.database_url)
            .env("NATS_URL", &config.nats_url)
            .env("LOKIZ_STREAM", &config.stream)
            .env("LOKIZ_BIND", format!("127.0.0.1:{port}"))
            .env("LOKIZ_DATA_DIR", &data_dir)
            .env("LOKIZ_JWT_SECRET", crate::TEST_SECRET)
            .env("LOKIZ_DB_POOL_SIZE", "4")
            .env("RUST_LOG", "warn");
        for (k, v) in crate::TEST_RATE_LIMITS.iter().chain(extra) {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("lokiz serve starts");
        wait_for_port(port, Duration::from_secs(20)).await;
        ServeProcess {
            api: Api::new(format!("http://127.0.0.1:{port}")),
            child,
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
