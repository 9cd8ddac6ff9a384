//! The event spine: gap-safe relay, exactly-once projections, parking.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lokiz_api::Components;
use lokiz_infra::relay::Relay;
use lokiz_infra::{StoredEvent, StreamPosition};
use lokiz_tests::{spawn_app, spawn_app_with, TestApp};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

const NO_RELAY: Components = Components {
    http: true,
    relay: false,
    projections: true,
    workers: false,
};

/// Every message in the app's stream, in stream order.
async fn stream_events(app: &TestApp) -> Vec<(String, StoredEvent)> {
    let mut stream = app.ctx.js.get_stream(&app.config.stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.unwrap();
        let id = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push((id, serde_json::from_slice(&m.payload).unwrap()));
    }
    out
}

async fn stream_len(app: &TestApp) -> u64 {
    let mut stream = app.ctx.js.get_stream(&app.config.stream).await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test]
async fn relay_never_skips_a_late_commit_and_publishes_each_event_once() {
    let app = spawn_app_with(
        Components {
            relay: true,
            ..Components::NONE
        },
        &[],
    )
    .await;
    let writers = PgPoolOptions::new()
        .max_connections(24)
        .connect(&app.config.database_url)
        .await
        .unwrap();
    const WRITERS: usize = 20;
    const PER_WRITER: i64 = 5;
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                  VALUES ('RaceTest', $1, $2, 'Raced', '1.0', '{}', '{}')";

    // Every 4th writer opens its transaction first and holds it open…
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
    let release = CancellationToken::new();
    let mut tasks = Vec::new();
    for w in (0..WRITERS).filter(|w| w % 4 == 0) {
        let (pool, held_tx, release) = (writers.clone(), held_tx.clone(), release.clone());
        tasks.push(tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            for s in 1..=PER_WRITER {
                sqlx::query(insert)
                    .bind(format!("w{w}"))
                    .bind(s)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            held_tx.send(xid).unwrap();
            release.cancelled().await;
            tx.commit().await.unwrap();
        }));
    }
    drop(held_tx);
    let mut held_xids = Vec::new();
    for _ in 0..WRITERS / 4 {
        held_xids.push(held_rx.recv().await.unwrap());
    }
    let oldest_held = *held_xids.iter().min().unwrap();

    // …while all the others start later and commit first.
    for w in (0..WRITERS).filter(|w| w % 4 != 0) {
        let pool = writers.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            for s in 1..=PER_WRITER {
                sqlx::query(insert)
                    .bind(format!("w{w}"))
                    .bind(s)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tx.commit().await.unwrap();
        }));
    }

    // While the early transactions are open, no checkpoint passes them.
    let relay = Relay::new(app.pool.clone(), app.ctx.nats.clone(), &app.config);
    for _ in 0..40 {
        let cp = relay.checkpoint().await.unwrap();
        assert!(
            cp.xid < oldest_held,
            "checkpoint {cp:?} passed open transaction {oldest_held}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    release.cancel();
    for t in tasks {
        t.await.unwrap();
    }

    let total = WRITERS as u64 * PER_WRITER as u64;
    app.eventually(20, "all events published", || async {
        stream_len(&app).await >= total
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = stream_events(&app).await;
    assert_eq!(published.len() as u64, total, "each event exactly once");
    let ids: HashSet<&str> = published.iter().map(|(id, _)| id.as_str()).collect();
    let expected: HashSet<String> = (0..WRITERS)
        .flat_map(|w| (1..=PER_WRITER).map(move |s| format!("RaceTest:w{w}:{s}")))
        .collect();
    assert_eq!(
        ids,
        expected.iter().map(String::as_str).collect::<HashSet<_>>()
    );
    // and in commit order: (xid, position) strictly increasing
    let order: Vec<StreamPosition> = published.iter().map(|(_, e)| e.stream_position()).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order: {order:?}"
    );
    writers.close().await;
    app.stop().await;
}

#[tokio::test]
async fn crash_between_publish_and_checkpoint_duplicates_nothing() {
    let app = spawn_app_with(NO_RELAY, &[]).await;
    let u = app.register("crashy").await;

    // The first relay publishes, then dies before its checkpoint.
    // Fetches are retried: an open transaction anywhere in the cluster (another
    // test's, say) holds back the xmin horizon, and with it every relay.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first = Relay::new(app.pool.clone(), app.ctx.nats.clone(), &app.config);
    let batch = loop {
        let from = first.checkpoint().await.unwrap();
        let batch = first.fetch_batch(from).await.unwrap();
        if batch.len() >= 2 || tokio::time::Instant::now() > deadline {
            break batch;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(batch.len(), 2, "Registered + CreditsGranted");
    let (stored, error) = first.publish(&batch, 0).await;
    assert_eq!((stored, error.is_none()), (2, true));
    drop(first);

    // After a restart the relay resumes after what the stream holds, not
    // after its checkpoint: nothing goes out twice (not even into the
    // duplicate window), and its checkpoint catches up with the stream.
    let second = Relay::new(app.pool.clone(), app.ctx.nats.clone(), &app.config);
    assert_eq!(second.pump_once().await.unwrap(), 0);
    assert_eq!(stream_len(&app).await, 2);
    assert_eq!(
        second.checkpoint().await.unwrap(),
        batch[1].stream_position()
    );

    let me: Value = app
        .get("/v1/auth/me", Some(&u.access_token), Some(u.position))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["credits"], 100);

    // A duplicate that arrives after the dedupe window (a new message id)
    // is skipped by the projection's checkpoint.
    let (_, grant) = stream_events(&app)
        .await
        .into_iter()
        .find(|(_, e)| e.event_type == "CreditsGranted")
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "late-duplicate-1");
    app.ctx
        .js
        .publish_with_headers(
            grant.subject(&app.config.subject_prefix()),
            headers,
            serde_json::to_vec(&grant).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(stream_len(&app).await, 3);
    // Behind it, a new event. The relay's idea of the stream's end is now
    // stale: its first publish is refused (wrong last sequence), it reads
    // the tail again and publishes after the duplicate.
    // (Its Registered and CreditsGranted commit one after the other: an
    // open transaction elsewhere in the cluster may hold the second back from
    // the relay for a while, so pump until both are out.)
    let later = app.register("crashy_later").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut refused = 0;
    while stream_len(&app).await < 5 {
        if second.pump_once().await.is_err() {
            refused += 1;
        }
        assert!(tokio::time::Instant::now() < deadline, "relay stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refused, 1, "one refused publish, then in order");
    assert_eq!(stream_len(&app).await, 5);
    app.ctx
        .wait_for(Some(later.position), &["wallets"])
        .await
        .expect("wallets read past the duplicate");
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = $1")
        .bind(u.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(balance, 100, "the duplicate was applied");
    app.stop().await;
}

#[tokio::test]
async fn of_two_relays_only_one_publishes() {
    let app = spawn_app_with(NO_RELAY, &[]).await;
    let a = Relay::new(app.pool.clone(), app.ctx.nats.clone(), &app.config);
    let b = Relay::new(app.pool.clone(), app.ctx.nats.clone(), &app.config);
    let (count_a, count_b) = (a.published_counter(), b.published_counter());
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let run_a = tokio::spawn(a.run(stop_a.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run_b = tokio::spawn(b.run(stop_b.clone()));

    for name in ["relay_one", "relay_two", "relay_three"] {
        app.register(name).await;
    }
    app.eventually(15, "six events published", || async {
        count_a.load(Ordering::Relaxed) + count_b.load(Ordering::Relaxed) >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count_a.load(Ordering::Relaxed), 6);
    assert_eq!(
        count_b.load(Ordering::Relaxed),
        0,
        "the standby relay published"
    );

    // When the active relay stops, the standby takes over.
    stop_a.cancel();
    run_a.await.unwrap().unwrap();
    app.register("relay_four").await;
    app.eventually(15, "standby takes over", || async {
        count_b.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert_eq!(count_a.load(Ordering::Relaxed), 6);
    assert_eq!(stream_len(&app).await, 8);
    stop_b.cancel();
    run_b.await.unwrap().unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_poison_event_is_parked_and_the_projection_goes_on() {
    let app = spawn_app().await;
    let bad_id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('User', $1, 1, 'Registered', '1.0', '{\"Registered\": {\"surprise\": true}}', '{}')",
    )
    .bind(bad_id.to_string())
    .execute(&app.pool)
    .await
    .unwrap();

    // A later, good event is still projected.
    let u = app.register("afterpoison").await;
    let resp = app
        .get(&format!("/v1/users/{}", u.id), None, Some(u.position))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // and found by people search, which reads registrations too
    let found: Value = app
        .get("/v1/search/users?q=afterpoison", None, Some(u.position))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["users"][0]["id"], u.id.to_string(), "{found}");

    // parked once by each projection that decodes a registration (the
    // people search too), and by no other
    let parked: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT projection, aggregate_id, error FROM parked_events ORDER BY projection",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let projections: Vec<&str> = parked.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(projections, ["people", "users"], "{parked:?}");
    for (_, aggregate_id, error) in &parked {
        assert_eq!(*aggregate_id, bad_id.to_string());
        assert!(
            error.contains("Registered"),
            "error names the event: {error}"
        );
    }

    let status = lokiz_projections::status::status(&app.pool, &lokiz_projections::all())
        .await
        .unwrap();
    let users = status.iter().find(|s| s.name == "users").unwrap();
    assert_eq!(users.parked, 1);
    assert_eq!(users.lag_events, 0);
    let metrics = app.get("/metrics", None, None).await.text().await.unwrap();
    assert!(
        metrics.contains("lokiz_projection_parked{projection=\"users\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}
