//! Delivery through failures, deterministically: a projection runner that
//! dies holding delivered messages, a NATS connection cut in the middle of
//! the relay's pipelined batches, parked events and the events behind them,
//! transient database errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lokiz_api::tools::change_role;
use lokiz_api::Components;
use lokiz_domain::like::{Like, LikeCommand};
use lokiz_domain::user::Role;
use lokiz_infra::relay::Relay;
use lokiz_infra::{StoredEvent, StreamPosition};
use lokiz_projections::runtime::{ProjectionRunner, RuntimeOptions};
use lokiz_projections::{ProjectionError, Projector};
use lokiz_tests::cluster::{store_positions, stream_positions};
use lokiz_tests::{spawn_app, spawn_app_with, TestApp};
use serde_json::json;
use sqlx::PgConnection;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A projector that takes its messages and then hangs in `apply`, as a
/// process does that is about to be killed.
struct Hanging {
    inner: Arc<dyn Projector>,
    entered: Arc<Notify>,
}

#[async_trait]
impl Projector for Hanging {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        self.inner.aggregate_types()
    }
    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }
    async fn apply(&self, _: &mut PgConnection, _: &StoredEvent) -> Result<(), ProjectionError> {
        self.entered.notify_one();
        futures::future::pending().await
    }
    async fn apply_batch(
        &self,
        _: &mut PgConnection,
        _: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        self.entered.notify_one();
        futures::future::pending().await
    }
}

fn runner(app: &TestApp, projector: Arc<dyn Projector>) -> ProjectionRunner {
    runner_with(app, projector, RuntimeOptions::default())
}

fn runner_with(
    app: &TestApp,
    projector: Arc<dyn Projector>,
    options: RuntimeOptions,
) -> ProjectionRunner {
    ProjectionRunner::new(
        app.pool.clone(),
        app.ctx.js.clone(),
        (*app.ctx.config).clone(),
        projector,
        options,
    )
}

/// HTTP and the relay, no projections: each test runs the runners it needs.
async fn spawn_app_without_projections() -> TestApp {
    spawn_app_with(
        Components {
            http: true,
            relay: true,
            ..Components::NONE
        },
        &[],
    )
    .await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

/// A runner dies holding delivered, unapplied messages; another takes over
/// at once and more events follow. The new runner starts from the
/// checkpoint, so the dead runner's messages are applied, not passed over.
#[tokio::test]
async fn a_runner_that_dies_holding_messages_passes_none_over() {
    let app = spawn_app_without_projections().await;
    for i in 0..3 {
        app.register(&format!("early_{i}")).await;
    }
    let users = lokiz_projections::by_name("users").unwrap();
    let entered = Arc::new(Notify::new());
    let dying = runner(
        &app,
        Arc::new(Hanging {
            inner: users.clone(),
            entered: entered.clone(),
        }),
    );
    let first = tokio::spawn(async move { dying.run(CancellationToken::new()).await });
    tokio::time::timeout(Duration::from_secs(20), entered.notified())
        .await
        .expect("the first runner received the early events");
    first.abort(); // dies mid-transaction, its messages delivered and unapplied
    let _ = first.await;

    let taker = runner(&app, users);
    let stop = CancellationToken::new();
    let second = tokio::spawn({
        let stop = stop.clone();
        async move { taker.run(stop).await }
    });
    for i in 0..2 {
        app.register(&format!("late_{i}")).await;
    }
    app.eventually(20, "all five users projected", || async {
        count(&app, "SELECT count(*) FROM users").await == 5
    })
    .await;
    stop.cancel();
    let _ = second.await;
    app.stop().await;
}

/// A TCP proxy in front of NATS that the test can cut: every open
/// connection is closed at once, whatever is in flight.
async fn cuttable_proxy(upstream: String, cut: Arc<Notify>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let cut = cut.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::select! {
                    _ = tokio::io::copy(&mut cr, &mut sw) => {}
                    _ = tokio::io::copy(&mut sr, &mut cw) => {}
                    _ = cut.notified() => {}
                }
                let _ = cw.shutdown().await;
                let _ = sw.shutdown().await;
            });
        }
    });
    port
}

/// The relay publishes a large backlog through a proxy that cuts its NATS
/// connection every few milliseconds, mid-batch. The stream ends up holding
/// every event once, strictly in commit order; a batch published again is
/// refused by JetStream, not silently dropped as a duplicate.
#[tokio::test]
async fn relay_cut_mid_batch_keeps_the_stream_in_order_and_once() {
    let app = spawn_app_with(Components::NONE, &[]).await;
    // ten batches of the relay's 5,000
    const EVENTS: i64 = 50_000;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'CutTest', 'a' || (i % 100), i, 'Cut', '1.0', jsonb_build_object('pad', repeat('x', 200)), '{}'
           FROM generate_series(1, $1) i",
    )
    .bind(EVENTS)
    .execute(&app.pool)
    .await
    .unwrap();

    let cut = Arc::new(Notify::new());
    let upstream = app.config.nats_url.trim_start_matches("nats://").to_owned();
    let port = cuttable_proxy(upstream, cut.clone()).await;
    let client = async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .reconnect_delay_callback(|_| Duration::from_millis(20))
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let relay = Relay::new(app.pool.clone(), client, &app.config);
    let stop = CancellationToken::new();
    let running = tokio::spawn(relay.clone().run(stop.clone()));
    // Cut right after the relay made progress (so the cut lands in the next
    // pipelined batch, not between batches), eight times, then let it
    // finish. Cutting on a clock instead either misses the batches on a
    // fast machine or starves the relay on a loaded one: a PubAck lost in a
    // cut is waited for up to the JetStream timeout, 5 s.
    const CUTS: u32 = 8;
    let mut cuts = 0;
    let mut last = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    loop {
        let position = relay.checkpoint().await.unwrap().position;
        if position >= EVENTS {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "relay stalled");
        if cuts < CUTS && position > last {
            tokio::time::sleep(Duration::from_millis(25)).await;
            cut.notify_waiters();
            cuts += 1;
            last = position;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let _ = running.await;
    assert!(
        cuts >= 5,
        "the connection was cut while publishing only {cuts} times"
    );

    let in_store = store_positions(&app.pool).await;
    let in_stream = stream_positions(&app.config.nats_url, &app.config.stream).await;
    assert_eq!(in_stream.len(), in_store.len(), "each event once");
    assert!(in_stream == in_store, "strictly in commit order");

    // Publishing the first events again (a relay that lost track) is
    // refused, and the stream does not change.
    let again = Relay::new(app.pool.clone(), app.ctx.nats.clone(), &app.config);
    let first = again
        .fetch_batch(StreamPosition::default())
        .await
        .unwrap()
        .into_iter()
        .take(2)
        .collect::<Vec<_>>();
    let (stored, error) = again.publish(&first, 0).await;
    assert_eq!(stored, 0);
    assert!(error.is_some(), "a second publish is an error");
    let mut stream = app.ctx.js.get_stream(&app.config.stream).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, EVENTS as u64);
    app.stop().await;
}

async fn parked(app: &TestApp, projection: &str) -> Vec<(i64, String, String)> {
    sqlx::query_as(
        "SELECT position, event_type, error FROM parked_events WHERE projection = $1 ORDER BY position",
    )
    .bind(projection)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// An `UploadRequested` the `videos` projection cannot apply is parked; the
/// likes of that video that follow are parked behind it instead of counting
/// on a row that does not exist. After the fix, `reset-parked` applies them
/// in order and the counter is right.
#[tokio::test]
async fn likes_wait_behind_their_parked_video() {
    let app = spawn_app().await;
    let owner = app.register("parked_owner").await;
    let fans = [app.register("fan_a").await, app.register("fan_b").await];
    // a projection bug, simulated: this caption cannot be stored
    sqlx::query(
        "ALTER TABLE videos ADD CONSTRAINT poison CHECK (caption IS DISTINCT FROM 'poison')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let r = app
        .post(
            "/v1/videos/upload-url",
            json!({"filename": "a.mp4", "content_type": "video/mp4", "file_size": 64,
                   "caption": "poison"}),
            Some(&owner.access_token),
        )
        .await;
    assert!(r.status().is_success());
    let video: uuid::Uuid = r.json::<serde_json::Value>().await.unwrap()["video_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.eventually(20, "the upload parked", || async {
        !parked(&app, "videos").await.is_empty()
    })
    .await;
    for fan in &fans {
        app.ctx
            .store
            .likes
            .execute(
                &Like::id(fan.id, video),
                LikeCommand::LikeVideo {
                    user_id: fan.id,
                    video_id: video,
                    at: lokiz_api::now(),
                },
                HashMap::new(),
            )
            .await
            .unwrap();
    }
    app.eventually(20, "the likes parked behind it", || async {
        parked(&app, "videos").await.len() == 3
    })
    .await;
    let rows = parked(&app, "videos").await;
    assert_eq!(rows[0].1, "UploadRequested");
    for row in &rows[1..] {
        assert_eq!(row.1, "VideoLiked");
        assert_eq!(
            row.2,
            format!("behind parked event at position {}", rows[0].0)
        );
    }
    // the likes projection, which lacks nothing, applied them
    app.eventually(20, "likes projected", || async {
        count(&app, "SELECT count(*) FROM likes").await == 2
    })
    .await;

    sqlx::query("ALTER TABLE videos DROP CONSTRAINT poison")
        .execute(&app.pool)
        .await
        .unwrap();
    let videos = lokiz_projections::by_name("videos").unwrap();
    let (applied, still) = lokiz_projections::rebuild::reset_parked(&app.pool, &videos)
        .await
        .unwrap();
    assert_eq!((applied, still), (3, 0));
    let likes: i64 = sqlx::query_scalar("SELECT like_count FROM videos WHERE id = $1")
        .bind(video)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(likes, 2);
    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

/// A parked `RoleChanged{admin}` followed by `RoleChanged{member}`: the
/// revocation waits behind the grant, and `reset-parked` applies both in
/// order, so the revoked admin never comes back.
#[tokio::test]
async fn a_revoked_admin_never_comes_back_through_parking() {
    let app = spawn_app().await;
    let u = app.register("flipflop").await;
    app.eventually(20, "user projected", || async {
        count(&app, "SELECT count(*) FROM users").await == 1
    })
    .await;
    sqlx::query("ALTER TABLE users ADD CONSTRAINT poison CHECK (role <> 'admin')")
        .execute(&app.pool)
        .await
        .unwrap();
    change_role(&app.pool, &u.username, Role::Admin)
        .await
        .unwrap();
    app.eventually(20, "the grant parked", || async {
        parked(&app, "users").await.len() == 1
    })
    .await;
    change_role(&app.pool, &u.username, Role::Member)
        .await
        .unwrap();
    app.eventually(20, "the revocation parked behind it", || async {
        parked(&app, "users").await.len() == 2
    })
    .await;
    sqlx::query("ALTER TABLE users DROP CONSTRAINT poison")
        .execute(&app.pool)
        .await
        .unwrap();
    let users = lokiz_projections::by_name("users").unwrap();
    let (applied, still) = lokiz_projections::rebuild::reset_parked(&app.pool, &users)
        .await
        .unwrap();
    assert_eq!((applied, still), (2, 0));
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(u.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(role, "member");
    app.stop().await;
}

/// Statements cancelled again and again (57014, as a statement timeout or
/// an operator's `pg_cancel_backend` does) are retried, never parked.
#[tokio::test]
async fn cancelled_statements_are_retried_not_parked() {
    let app = spawn_app().await;
    let owner = app.register("lock_owner").await;
    let fan = app.register("lock_fan").await;
    let (video, _) = app.upload_video(&owner, None).await;
    let mut blocker = app.pool.acquire().await.unwrap().detach();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    // SHARE blocks the projection's writes; unlike ACCESS EXCLUSIVE it takes
    // no transaction id, so the relay's horizon is not held back
    sqlx::query("LOCK TABLE likes IN SHARE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let r = app
        .post(
            &format!("/v1/likes/videos/{video}"),
            json!({}),
            Some(&fan.access_token),
        )
        .await;
    assert!(r.status().is_success(), "like: {}", r.status());
    // cancel every statement that waits for the lock, five times (the old
    // runtime parked the event after four)
    let mut cancelled = 0i64;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while cancelled < 5 && tokio::time::Instant::now() < until {
        cancelled += count(
            &app,
            "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cancelled, 5, "the projection kept retrying");
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    app.eventually(30, "the like projected", || async {
        count(&app, "SELECT count(*) FROM likes").await == 1
    })
    .await;
    assert!(parked(&app, "likes").await.is_empty());
    app.stop().await;
}

/// "Everything committed so far" is the newest event in commit order, not the
/// highest position: a transaction that began earlier (lower xid) can insert
/// later (higher position). Waiting for the highest position would call a
/// projection current that has not seen the other event.
#[tokio::test]
async fn the_head_is_the_newest_event_in_commit_order() {
    let app = spawn_app_with(Components::NONE, &[]).await;
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                  VALUES ('User', $1, 1, 'Probe', '1.0', '{}', '{}') RETURNING position";
    let mut early = app.pool.begin().await.unwrap();
    let early_xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *early)
        .await
        .unwrap();
    let mut late = app.pool.begin().await.unwrap();
    let late_xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *late)
        .await
        .unwrap();
    assert!(late_xid > early_xid);
    let low: i64 = sqlx::query_scalar(insert)
        .bind("late")
        .fetch_one(&mut *late)
        .await
        .unwrap();
    let high: i64 = sqlx::query_scalar(insert)
        .bind("early")
        .fetch_one(&mut *early)
        .await
        .unwrap();
    assert!(high > low);
    late.commit().await.unwrap();
    early.commit().await.unwrap();

    let users = lokiz_projections::by_name("users").unwrap();
    let set_checkpoint = |xid: i64, position: i64| {
        let pool = app.pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO projection_checkpoints (projection, last_xid, last_position)
                 VALUES ('users', $1, $2)
                 ON CONFLICT (projection) DO UPDATE SET last_xid = $1, last_position = $2",
            )
            .bind(xid)
            .bind(position)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    let projectors = [users.as_ref()];
    let wait = || {
        lokiz_projections::consistency::wait_for_head(
            &app.pool,
            &projectors,
            Duration::from_millis(300),
        )
    };
    // applied up to the highest position only: the other event is still ahead
    set_checkpoint(early_xid, high).await;
    assert!(wait().await.is_err(), "the later-committed event is missed");
    set_checkpoint(late_xid, low).await;
    wait().await.expect("the head in commit order is reached");
    app.stop().await;
}

/// Projections that read several aggregate types share one consumer, which
/// starts after the lowest of their checkpoints. One member far ahead of
/// another reads again what it has applied, and must skip it: a like counted
/// twice would show on the video (`like_count`), and a like missed on its
/// daily stats.
#[tokio::test]
async fn a_shared_consumer_applies_each_event_once_to_members_at_different_checkpoints() {
    let app = spawn_app_without_projections().await;
    // users read model, for the API's checks of the uploader
    let users = runner(&app, lokiz_projections::by_name("users").unwrap());
    let stop_users = CancellationToken::new();
    let users_task = tokio::spawn({
        let stop = stop_users.clone();
        async move { users.run(stop).await }
    });
    let owner = app.register("group_owner").await;
    let mut fans = Vec::new();
    for i in 0..5 {
        fans.push(app.register(&format!("group_fan_{i}")).await);
    }
    let r = app
        .post(
            "/v1/videos/upload-url",
            json!({"filename": "a.mp4", "content_type": "video/mp4", "file_size": 64,
                   "caption": "shared"}),
            Some(&owner.access_token),
        )
        .await;
    assert!(r.status().is_success(), "upload-url: {}", r.status());
    let video: uuid::Uuid = r.json::<serde_json::Value>().await.unwrap()["video_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let like = |fan: uuid::Uuid| {
        let app = &app;
        async move {
            app.ctx
                .store
                .likes
                .execute(
                    &Like::id(fan, video),
                    LikeCommand::LikeVideo {
                        user_id: fan,
                        video_id: video,
                        at: lokiz_api::now(),
                    },
                    HashMap::new(),
                )
                .await
                .unwrap();
        }
    };
    let like_count = || async {
        count(
            &app,
            &format!("SELECT coalesce(max(like_count), -1) FROM videos WHERE id = '{video}'"),
        )
        .await
    };
    let daily_likes = || async {
        count(
            &app,
            &format!(
                "SELECT coalesce(sum(likes), 0)::bigint FROM video_daily_stats WHERE video_id = '{video}'"
            ),
        )
        .await
    };
    for fan in &fans[..3] {
        like(fan.id).await;
    }
    // `videos` alone, up to the third like
    let videos = Arc::new(runner(&app, lokiz_projections::by_name("videos").unwrap()));
    let stop = CancellationToken::new();
    let alone = tokio::spawn({
        let (videos, stop) = (videos.clone(), stop.clone());
        async move { videos.run(stop).await }
    });
    app.eventually(30, "videos counted three likes", || async {
        like_count().await == 3
    })
    .await;
    stop.cancel();
    alone.await.unwrap().unwrap();
    assert_eq!(daily_likes().await, 0, "video_stats has not run yet");

    for fan in &fans[3..] {
        like(fan.id).await;
    }
    // both on one consumer, from video_stats' checkpoint (the start)
    let stats = Arc::new(runner(
        &app,
        lokiz_projections::by_name("video_stats").unwrap(),
    ));
    let stop = CancellationToken::new();
    let group = tokio::spawn({
        let (members, stop) = (vec![videos, stats], stop.clone());
        async move { lokiz_projections::runtime::run_group(&members, stop).await }
    });
    app.eventually(30, "both members at five likes", || async {
        like_count().await == 5 && daily_likes().await == 5
    })
    .await;
    // and no late double count
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((like_count().await, daily_likes().await), (5, 5));
    stop.cancel();
    group.await.unwrap().unwrap();
    stop_users.cancel();
    users_task.await.unwrap().unwrap();
    app.stop().await;
}

/// A member of a shared consumer that stops taking batches (here, as when
/// `projections verify` freezes its tables) is detached after
/// `group_stall`: the others go on instead of waiting for it, and it catches
/// up on its own once it is free.
#[tokio::test]
async fn a_stuck_member_of_a_shared_consumer_holds_no_one_else_up() {
    let app = spawn_app_without_projections().await;
    let options = RuntimeOptions {
        group_stall: Duration::from_secs(1),
        ..RuntimeOptions::default()
    };
    let member = |name: &str| {
        Arc::new(runner_with(
            &app,
            lokiz_projections::by_name(name).unwrap(),
            options.clone(),
        ))
    };
    // what `projections verify` holds while it compares a projection's tables
    let mut freezer = app.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(lokiz_projections::runtime::freeze_key("wallets"))
        .execute(&mut *freezer)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let group = tokio::spawn({
        let (members, stop) = (vec![member("wallets"), member("users")], stop.clone());
        async move { lokiz_projections::runtime::run_group(&members, stop).await }
    });
    // each registration is a batch or two: far more than a member may run
    // ahead of another
    for i in 0..12 {
        app.register(&format!("stuck_{i}")).await;
    }
    app.eventually(
        30,
        "every user projected past the frozen member",
        || async { count(&app, "SELECT count(*) FROM users").await == 12 },
    )
    .await;
    assert_eq!(count(&app, "SELECT count(*) FROM wallets").await, 0);
    sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(lokiz_projections::runtime::freeze_key("wallets"))
        .execute(&mut *freezer)
        .await
        .unwrap();
    app.eventually(30, "the member caught up once free", || async {
        count(&app, "SELECT count(*) FROM wallets").await == 12
    })
    .await;
    stop.cancel();
    group.await.unwrap().unwrap();
    app.stop().await;
}

/// Records the events a process manager was handed.
struct Recording(std::sync::Mutex<Vec<String>>);

#[async_trait]
impl lokiz_infra::process_manager::ProcessManager for Recording {
    fn consumer(&self) -> &'static str {
        "recording"
    }
    fn aggregate_type(&self) -> &'static str {
        "AiJob"
    }
    async fn handle(
        &self,
        event: &StoredEvent,
    ) -> Result<(), lokiz_infra::process_manager::HandleError> {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(event.event_type.clone());
        }
        Ok(())
    }
}

/// A process manager never drops a message it cannot decode (in a rolling
/// deploy, a newer process may read it): it stays unacknowledged, to be
/// delivered again, while the messages after it are handled and acked.
#[tokio::test]
async fn a_process_manager_keeps_what_it_cannot_decode() {
    let config = lokiz_tests::test_config(&[]);
    let client = lokiz_infra::nats::connect(&config).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = lokiz_infra::nats::ensure_stream(&js, &config)
        .await
        .unwrap();
    let subject = format!("{}.AiJob.{}", config.subject_prefix(), uuid::Uuid::new_v4());
    // a payload of a format this build does not know, then a good event
    js.publish(subject.clone(), r#"{"format":2,"body":"?"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let event = json!({
        "position": 2, "xid": 7, "aggregate_type": "AiJob",
        "aggregate_id": uuid::Uuid::new_v4().to_string(), "sequence": 1,
        "event_type": "JobCanceled", "event_version": "1.0",
        "payload": {"JobCanceled": {"canceled_at": "2026-12-03T12:00:00Z"}},
        "metadata": {}, "recorded_at": "2026-12-03T12:00:00Z"
    });
    js.publish(subject, serde_json::to_vec(&event).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();

    let pm = Arc::new(Recording(std::sync::Mutex::new(Vec::new())));
    let stop = CancellationToken::new();
    let running = tokio::spawn(lokiz_infra::process_manager::run_forever(
        js.clone(),
        config.clone(),
        pm.clone(),
        stop.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while pm.0.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the good event was never handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the good event acked, the undecodable one still pending
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let info = loop {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer("recording").await.unwrap();
        let info = consumer.info().await.unwrap().clone();
        if info.ack_floor.stream_sequence == 0 && info.num_ack_pending == 1 {
            break info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the undecodable message was not kept: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(info.delivered.stream_sequence, 2, "both were delivered");
    assert_eq!(*pm.0.lock().unwrap(), vec!["JobCanceled".to_owned()]);
    stop.cancel();
    let _ = running.await;
    lokiz_tests::drop_stream(&config).await;
}
