//! LOKIZ HTTP API and composition root.
//!
//! `Application::build(config, components)` wires Postgres, the event store,
//! NATS, the relay and the projections; `run_until_stopped` runs whichever
//! components were asked for until the shutdown token fires.

pub mod auth;
pub mod cli;
pub mod error;
pub mod extract;
pub mod files;
pub mod idempotency;
pub mod live;
pub mod openapi;
pub mod pagination;
pub mod rate_limit;
pub mod reads;
pub mod routes;
pub mod telemetry;
pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt as _;
use lokiz_infra::ai::credits::CreditsSaga;
use lokiz_infra::ai::provider::{LocalProvider, Provider};
use lokiz_infra::ai::remote::ReplicateProvider;
use lokiz_infra::ai::replicate::ReplicateClient;
use lokiz_infra::ai::worker::{Worker, WorkerOptions};
use lokiz_infra::block_saga::BlockSaga;
use lokiz_infra::config::{AiConfig, PaymentsConfig};
use lokiz_infra::event_store::EventStore;
use lokiz_infra::process_manager::{self, ProcessManager};
use lokiz_infra::relay::Relay;
use lokiz_infra::subscription_saga::SubscriptionSaga;
use lokiz_infra::Config;
use lokiz_projections::runtime::RuntimeOptions;
use lokiz_projections::Projector;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::jwt::JwtKeys;
use crate::error::ApiError;

/// Shared state of every request handler.
#[derive(Clone)]
pub struct ApiContext {
    pub config: Arc<Config>,
    pub pool: PgPool,
    /// The same database, each statement planned once per connection
    /// (`lokiz_infra::db::connect_generic`): search rankings.
    pub generic_pool: PgPool,
    pub store: Arc<EventStore>,
    pub jwt: Arc<JwtKeys>,
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub projectors: Arc<Vec<Arc<dyn Projector>>>,
    /// Where uploads go (`LOKIZ_BLOB_STORE`): signed upload URLs, object URLs, sizes.
    pub blobs: Arc<dyn lokiz_infra::blob::BlobStore>,
    /// The same store when it is the local one (it takes uploads and serves
    /// files at `/v1/blobs/{key}`); `None` with S3.
    pub local_blobs: Option<Arc<lokiz_infra::blob::LocalBlobStore>>,
    /// Charges for credit purchases (`LOKIZ_PAYMENTS`).
    pub payments: Arc<dyn lokiz_infra::payments::PaymentProvider>,
    /// The studio's renders, bounded (`LOKIZ_STUDIO_CACHE_*`).
    pub render_cache: lokiz_infra::render_cache::RenderCache,
    /// Places for requests waiting on `X-Lokiz-Min-Position`.
    pub waiters: Arc<tokio::sync::Semaphore>,
    /// Positions this process knows the read models have reached, so a
    /// request naming one again waits for nothing and asks nobody.
    pub reached: Arc<lokiz_projections::consistency::Reached>,
    /// Users this process found not banned in the last second
    /// (`extract::NotBannedCache`).
    pub not_banned: Arc<extract::NotBannedCache>,
    /// Request limits shared with the other API processes (`rate_limit.rs`).
    pub rate_limiter: lokiz_infra::rate_limit::RateLimiter,
    /// This process's live notification sockets (`live.rs`).
    pub live: Arc<live::LiveHub>,
    /// Where clients reach this service (`LOKIZ_PUBLIC_URL`, else the bound
    /// address): the base of share links.
    pub public_base: Arc<str>,
    /// The hashtag trends, computed at most every few seconds per process.
    pub trends: Arc<routes::hashtags::TrendsCache>,
    /// Recent rankings of search queries (see `routes::search::Rankings`).
    pub search: Arc<routes::search::SearchRankings>,
}

impl ApiContext {
    /// Read-your-writes: when the client sent `X-Lokiz-Min-Position`, waits
    /// until the named read models have reached it.
    pub async fn wait_for(&self, min: Option<i64>, projections: &[&str]) -> Result<(), ApiError> {
        let Some(position) = min else {
            return Ok(());
        };
        let wanted = self.projectors_named(projections)?;
        if self.reached.all(position, &wanted) {
            return Ok(());
        }
        let _waiter = self.waiter()?;
        lokiz_projections::consistency::wait_for(
            &self.pool,
            position,
            &wanted,
            self.config.consistency_timeout,
        )
        .await?;
        self.reached.record(position, &wanted);
        Ok(())
    }

    /// Waits until the named read models reflect everything committed so
    /// far (the newest event in commit order).
    pub async fn wait_for_head(&self, projections: &[&str]) -> Result<(), ApiError> {
        let wanted = self.projectors_named(projections)?;
        let _waiter = self.waiter()?;
        lokiz_projections::consistency::wait_for_head(
            &self.pool,
            &wanted,
            self.config.consistency_timeout,
        )
        .await?;
        Ok(())
    }

    /// A place among the requests waiting for the read models; at most
    /// `LOKIZ_CONSISTENCY_WAITERS` wait at once (each polls the database
    /// now and then), the others are answered 503 at once.
    fn waiter(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.waiters.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("lokiz_consistency_waiters_refused_total").increment(1);
            ApiError::Unavailable("Read-your-writes waiting")
        })
    }

    fn projectors_named(&self, projections: &[&str]) -> Result<Vec<&dyn Projector>, ApiError> {
        let wanted: Vec<&dyn Projector> = self
            .projectors
            .iter()
            .filter(|p| projections.contains(&p.name()))
            .map(|p| p.as_ref())
            .collect();
        if wanted.len() != projections.len() {
            // a route names a read model this build does not project: waiting
            // on nothing would silently serve stale reads
            return Err(ApiError::internal(anyhow::anyhow!(
                "unknown projection in {projections:?}"
            )));
        }
        Ok(wanted)
    }
}

/// The current time at the precision Postgres keeps (microseconds), so a
/// time answered from a command equals the same time read back later.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Which parts of LOKIZ a process runs.
#[derive(Debug, Clone, Copy)]
pub struct Components {
    pub http: bool,
    pub relay: bool,
    pub projections: bool,
    /// The AI worker and the credits saga (`lokiz worker`).
    pub workers: bool,
}

impl Components {
    pub const ALL: Components = Components {
        http: true,
        relay: true,
        projections: true,
        workers: true,
    };
    pub const NONE: Components = Components {
        http: false,
        relay: false,
        projections: false,
        workers: false,
    };
}

pub struct Application {
    listener: Option<TcpListener>,
    port: u16,
    /// `LOKIZ_OPS_BIND`'s listener (with `http`).
    ops_listener: Option<TcpListener>,
    ctx: ApiContext,
    components: Components,
    runtime_options: RuntimeOptions,
    worker_options: WorkerOptions,
    provider: Arc<dyn Provider>,
}

impl Application {
    /// Connects to Postgres (creating the database and migrating it) and NATS
    /// (creating the stream), and binds the HTTP port (port 0: any free one).
    pub async fn build(config: Config, components: Components) -> anyhow::Result<Self> {
        let _ = telemetry::prometheus();
        let pool = lokiz_infra::db::connect(&config).await?;
        lokiz_infra::db::migrate(&pool).await?;
        let generic_pool = lokiz_infra::db::connect_generic(&config)?;
        let nats = lokiz_infra::nats::connect(&config).await?;
        let js = async_nats::jetstream::new(nats.clone());
        lokiz_infra::nats::ensure_stream(&js, &config).await?;

        let (listener, port) = if components.http {
            let l = TcpListener::bind(config.bind)
                .await
                .with_context(|| format!("LOKIZ_BIND: cannot listen on {}", config.bind))?;
            let port = l.local_addr()?.port();
            (Some(l), port)
        } else {
            (None, 0)
        };
        let ops_listener = match (components.http, config.ops_bind) {
            (true, Some(addr)) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("LOKIZ_OPS_BIND: cannot listen on {addr}"))?,
            ),
            _ => None,
        };
        let public_base = match (&config.public_url, &listener) {
            (Some(url), _) => url.clone(),
            (None, Some(l)) => format!("http://{}", l.local_addr()?),
            (None, None) => format!("http://{}", config.bind),
        };
        let (blobs, local_blobs) = lokiz_infra::blob::from_config(
            &config,
            &public_base,
            config.jwt_secret.expose().as_bytes(),
        )?;
        let provider: Arc<dyn Provider> = match &config.ai {
            AiConfig::Local => Arc::new(LocalProvider),
            AiConfig::Replicate(r) => Arc::new(ReplicateProvider::new(
                ReplicateClient::new(
                    r.base_url.clone(),
                    r.token.expose().to_owned(),
                    Duration::from_secs(30),
                )?,
                r.versions.clone(),
                Some(format!("{public_base}/v1/ai/callbacks/replicate")),
                nats.clone(),
                &config.stream,
                Duration::from_secs(5),
                lokiz_infra::ai::outbound::OutputPolicy {
                    hosts: r.output_hosts.clone(),
                    insecure: r.insecure_outputs,
                },
            )?),
        };
        let payments: Arc<dyn lokiz_infra::payments::PaymentProvider> = match &config.payments {
            PaymentsConfig::Test => Arc::new(lokiz_infra::payments::TestPayments),
            PaymentsConfig::Stripe(s) => Arc::new(
                lokiz_infra::payments::StripePayments::new(s)
                    .context("LOKIZ_PAYMENTS: HTTP client")?,
            ),
        };
        let render_cache = lokiz_infra::render_cache::RenderCache::new(
            pool.clone(),
            blobs.clone(),
            config.studio_cache_bytes,
            config.studio_cache_age,
        );
        let ctx = ApiContext {
            render_cache,
            blobs,
            local_blobs,
            jwt: Arc::new(JwtKeys::new(config.jwt_secret.expose().as_bytes())),
            store: Arc::new(EventStore::new(pool.clone())),
            rate_limiter: lokiz_infra::rate_limit::RateLimiter::new(pool.clone()),
            waiters: Arc::new(tokio::sync::Semaphore::new(config.consistency_waiters)),
            reached: Arc::default(),
            not_banned: Arc::default(),
            live: live::LiveHub::new(config.live.clone()),
            public_base: public_base.trim_end_matches('/').into(),
            trends: Arc::default(),
            search: Arc::default(),
            config: Arc::new(config),
            pool,
            generic_pool,
            nats,
            js,
            projectors: Arc::new(lokiz_projections::all()),
            payments,
        };
        Ok(Self {
            listener,
            port,
            ops_listener,
            ctx,
            components,
            runtime_options: RuntimeOptions::default(),
            worker_options: WorkerOptions::default(),
            provider,
        })
    }

    pub fn with_runtime_options(mut self, options: RuntimeOptions) -> Self {
        self.runtime_options = options;
        self
    }

    pub fn with_worker_options(mut self, options: WorkerOptions) -> Self {
        self.worker_options = options;
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The operations listener's port (`LOKIZ_OPS_BIND`), if any.
    pub fn ops_port(&self) -> Option<u16> {
        self.ops_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    pub fn context(&self) -> &ApiContext {
        &self.ctx
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let ctx = self.ctx;
        if self.components.relay {
            let relay = Relay::new(ctx.pool.clone(), ctx.nats.clone(), &ctx.config);
            let token = shutdown.clone();
            tasks.spawn(async move {
                while !token.is_cancelled() {
                    if let Err(e) = relay.clone().run(token.clone()).await {
                        tracing::error!(error = %e, "relay failed; restarting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                Ok(())
            });
        }
        if self.components.projections {
            let (pool, js, config) = (ctx.pool.clone(), ctx.js.clone(), (*ctx.config).clone());
            let projectors = (*ctx.projectors).clone();
            let mut options = self.runtime_options.clone();
            options.nats = Some(ctx.nats.clone());
            let token = shutdown.clone();
            tasks.spawn(async move {
                lokiz_projections::runtime::run_all(pool, js, config, projectors, options, token)
                    .await;
                Ok(())
            });
        }
        if self.components.workers {
            let worker = Arc::new(Worker::new(
                ctx.pool.clone(),
                ctx.js.clone(),
                (*ctx.config).clone(),
                ctx.store.clone(),
                ctx.blobs.clone(),
                self.provider.clone(),
                self.worker_options.clone(),
            ));
            let token = shutdown.clone();
            tasks.spawn(async move {
                while !token.is_cancelled() {
                    if let Err(e) = worker.clone().run(token.clone()).await {
                        tracing::error!(error = %e, "AI worker failed; restarting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                Ok(())
            });
            let sweeper = lokiz_infra::ai::sweeper::ReservationSweeper::new(
                ctx.pool.clone(),
                ctx.store.clone(),
                ctx.config.jobs.orphan_after,
            );
            tasks.spawn(sweeper.run(shutdown.clone()).map(Ok));
            let janitor = lokiz_infra::janitor::FileJanitor::new(
                ctx.pool.clone(),
                ctx.blobs.clone(),
                ctx.config.upload_expiry,
                ctx.config.deleted_files_grace,
            );
            tasks.spawn(janitor.run(shutdown.clone()).map(Ok));
            let managers: [Arc<dyn ProcessManager>; 3] = [
                Arc::new(CreditsSaga::new(ctx.pool.clone(), ctx.store.clone())),
                Arc::new(BlockSaga::new(ctx.store.clone())),
                Arc::new(SubscriptionSaga::new(ctx.store.clone())),
            ];
            for pm in managers {
                let run = process_manager::run_forever(
                    ctx.js.clone(),
                    (*ctx.config).clone(),
                    pm,
                    shutdown.clone(),
                );
                tasks.spawn(run.map(Ok));
            }
        }
        if let Some(listener) = self.ops_listener {
            let app = routes::ops_router(ctx.clone());
            let token = shutdown.clone();
            tracing::info!(addr = %listener.local_addr()?, "operations listening");
            tasks.spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await
                    .context("operations server")
            });
        }
        if let Some(listener) = self.listener {
            let app = routes::router(ctx.clone());
            tasks.spawn(
                live::run_wakeups(
                    ctx.live.clone(),
                    ctx.nats.clone(),
                    ctx.config.wake_prefix(),
                    shutdown.clone(),
                )
                .map(Ok),
            );
            // open sockets end with the server (graceful shutdown waits for them)
            let (hub, token) = (ctx.live.clone(), shutdown.clone());
            tasks.spawn(async move {
                token.cancelled().await;
                hub.close();
                Ok(())
            });
            let token = shutdown.clone();
            tracing::info!(addr = %listener.local_addr()?, "HTTP listening");
            tasks.spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
                .context("HTTP server")
            });
        }
        let mut result = Ok(());
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    shutdown.cancel();
                    result = Err(e);
                }
                Err(e) => {
                    shutdown.cancel();
                    result = Err(anyhow::anyhow!("task panicked: {e}"));
                }
            }
        }
        result
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn shutdown_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}
