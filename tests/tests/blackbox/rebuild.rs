//! Rebuild, verify, reset-parked, events show and export against a running
//! system.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lokiz_api::tools::{change_role, export, history, ExportFormat};
use lokiz_domain::user::Role;
use lokiz_projections::rebuild::{rebuild, reset_parked, verify};
use lokiz_tests::seed::{seed, SeedArgs};
use lokiz_tests::{position_of, spawn_app, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// Waits until no projection has events left to apply.
pub async fn caught_up(app: &TestApp) {
    let projectors = lokiz_projections::all();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let status = lokiz_projections::status::status(&app.pool, &projectors)
            .await
            .unwrap();
        if status.iter().all(|s| s.lag_events == 0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "read models did not catch up: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every read-model table, each as its rows (JSON text) in a fixed order.
pub async fn read_models(app: &TestApp) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut tables: Vec<&str> = lokiz_projections::all()
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .collect();
    tables.sort_unstable();
    for t in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t)::text AS r FROM {t} t ORDER BY 1"
        ))
        .fetch_all(&app.pool)
        .await
        .unwrap();
        out.push((t.to_owned(), rows));
    }
    out
}

/// Verify finds no drift, and a rebuild of everything gives the same rows.
pub async fn assert_rebuild_is_identical(app: &TestApp) {
    caught_up(app).await;
    let before = read_models(app).await;
    assert!(before.iter().any(|(_, rows)| !rows.is_empty()));
    let report = verify(&app.pool, &lokiz_projections::all(), 5, None)
        .await
        .unwrap();
    assert!(report.drift.is_empty(), "drift: {:?}", report.drift);
    let rebuilt = rebuild(&app.pool, &lokiz_projections::all(), None)
        .await
        .unwrap();
    assert_eq!(rebuilt.parked, 0);
    let after = read_models(app).await;
    for ((table, old), (_, new)) in before.iter().zip(&after) {
        assert_eq!(old.len(), new.len(), "rows of {table}");
        assert!(old == new, "{table} differs after the rebuild");
    }
}

fn small_seed() -> SeedArgs {
    SeedArgs {
        users: 30,
        videos: 120,
        likes: 300,
        follows: 60,
        comments: 120,
        views: 200,
        batch: 50,
        connections: 2,
        seed_rng: 11,
        quiet: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn verify_reports_drift_and_rebuild_repairs_it_while_reads_go_on() {
    let app = spawn_app().await;
    seed(&app.pool, &small_seed()).await.unwrap();
    caught_up(&app).await;

    // the most liked video, as the events say
    let (video, likes): (Uuid, i64) = sqlx::query_as(
        "SELECT id, like_count FROM videos WHERE listed ORDER BY like_count DESC, id LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(likes > 0);

    // a counter changed by hand is reported, with its row
    sqlx::query("UPDATE videos SET like_count = like_count + 7 WHERE id = $1")
        .bind(video)
        .execute(&app.pool)
        .await
        .unwrap();
    let videos = vec![lokiz_projections::by_name("videos").unwrap()];
    let report = verify(&app.pool, &videos, 10, None).await.unwrap();
    assert_eq!(report.drift.len(), 1, "{:?}", report.drift);
    let d = &report.drift[0];
    assert_eq!((d.table, d.only_live, d.only_replayed), ("videos", 1, 1));
    let live_row = d.sample.iter().find(|(side, _)| side == "live").unwrap();
    assert_eq!(live_row.1["id"], video.to_string());
    assert_eq!(live_row.1["like_count"], likes + 7);
    // the command fails (non-zero exit)
    let command = lokiz_api::cli::ProjectionsCommand::Verify {
        name: Some("videos".into()),
        all: false,
        rows: 10,
        json: false,
    };
    assert!(lokiz_api::tools::projections(&app.pool, command)
        .await
        .is_err());

    // reads keep working during the rebuild and never see a partial table
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let listed: i64 = sqlx::query_scalar("SELECT count(*) FROM videos WHERE listed")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let reader = {
        let (client, base, stop, reads) = (
            app.client.clone(),
            app.address.clone(),
            stop.clone(),
            reads.clone(),
        );
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM videos WHERE listed LIMIT 100")
            .fetch_all(&app.pool)
            .await
            .unwrap();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .post(format!("{base}/v1/videos/batch-metadata"))
                    .json(&json!({ "video_ids": ids }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let body: Value = r.json().await.unwrap();
                // every id present: a half-built table would miss some
                assert_eq!(body["videos"].as_object().unwrap().len(), ids.len());
                let r = client
                    .get(format!("{base}/v1/videos/{video}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let mut cursor: Option<String> = None;
                let mut seen = 0;
                loop {
                    let mut url = format!("{base}/v1/videos/?limit=50");
                    if let Some(c) = &cursor {
                        url.push_str(&format!("&cursor={c}"));
                    }
                    let r = client.get(url).send().await.unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                    let page: Value = r.json().await.unwrap();
                    seen += page["videos"].as_array().map_or(0, |v| v.len()) as i64;
                    match page["next_cursor"].as_str() {
                        Some(c) if page["has_more"] == true => cursor = Some(c.to_owned()),
                        _ => break,
                    }
                }
                assert_eq!(seen, listed, "the whole feed, every time");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = rebuild(&app.pool, &lokiz_projections::all(), None)
        .await
        .unwrap();
    assert!(report.events > 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    assert!(reads.load(Ordering::Relaxed) > 0);

    // repaired, and the projection goes on from the new checkpoint
    let fixed: i64 = sqlx::query_scalar("SELECT like_count FROM videos WHERE id = $1")
        .bind(video)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(fixed, likes);
    let fan = app.register("late_fan").await;
    let r = app
        .client
        .post(app.url(&format!("/v1/likes/videos/{video}")))
        .bearer_auth(&fan.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let pos = position_of(&r);
    let v: Value = app
        .get(&format!("/v1/videos/{video}"), None, Some(pos))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["like_count"], likes + 1);
    assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

/// A reader inside a transaction holds `videos` while the swap wants every
/// table; the reader then reads `users`, which the swap may already hold. The
/// swap gives way (and retries) instead of deadlocking: the reader's query
/// succeeds and so does the rebuild.
#[tokio::test]
async fn a_reader_holding_tables_never_deadlocks_with_the_swap() {
    let app = spawn_app().await;
    let user = app.register("holder").await;
    app.upload_video(&user, Some("held")).await;
    caught_up(&app).await;

    let pool = app.pool.clone();
    let (held_tx, held) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM videos")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let _ = held_tx.send(());
        // wait until the swap is asking for the live tables' locks
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                  WHERE NOT l.granted AND c.relname = 'videos'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the swap never waited"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let users: Result<i64, sqlx::Error> = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&mut *tx)
            .await;
        tx.commit().await.unwrap();
        users
    });
    held.await.unwrap();
    let report = rebuild(&app.pool, &lokiz_projections::all(), None)
        .await
        .expect("the swap completes");
    let users = reader
        .await
        .unwrap()
        .expect("the reader is never a deadlock victim");
    assert_eq!(users, 1);
    assert!(report.events > 0);
    assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn parked_events_are_retried_by_reset_parked() {
    let app = spawn_app().await;
    let user = app.register("parked_user").await;
    caught_up(&app).await;
    // an event the users projector cannot apply: its payload lacks fields
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('User', $1, 99, 'ProfileUpdated', '1.0', '{\"ProfileUpdated\":{\"display_name\":42}}', '{}')
         RETURNING position",
    )
    .bind(user.id.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    app.eventually(30, "the broken event is parked", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM parked_events WHERE projection = 'users' AND position = $1",
        )
        .bind(position)
        .fetch_one(&app.pool)
        .await
        .unwrap()
            == 1
    })
    .await;
    let users = lokiz_projections::by_name("users").unwrap();
    // still broken: stays parked, attempts counted
    assert_eq!(reset_parked(&app.pool, &users).await.unwrap(), (0, 1));
    // "fixed" (here: the stored payload is corrected), then retried
    sqlx::query(
        "UPDATE events SET payload = jsonb_build_object('ProfileUpdated', jsonb_build_object(
            'display_name', 'Fixed Name', 'updated_at', '2026-01-01T00:00:00Z'))::json
          WHERE position = $1",
    )
    .bind(position)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(reset_parked(&app.pool, &users).await.unwrap(), (1, 0));
    let name: String = sqlx::query_scalar("SELECT display_name FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(name, "Fixed Name");
    app.stop().await;
}

#[tokio::test]
async fn events_show_as_of_and_export_in_commit_order() {
    let app = spawn_app().await;
    let user = app.register("historian").await;
    let r = app
        .patch(
            "/v1/users/me",
            json!({"display_name": "Before"}),
            &user.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = app
        .patch(
            "/v1/users/me",
            json!({"display_name": "After"}),
            &user.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let id = user.id.to_string();
    let now = history(&app.pool, "User", &id, None).await.unwrap();
    assert_eq!(now.events.len(), 3);
    assert_eq!(now.state["display_name"], "After", "{}", now.state);
    let then = history(&app.pool, "User", &id, Some(between))
        .await
        .unwrap();
    assert_eq!(then.events.len(), 2);
    assert_eq!(then.state["display_name"], "Before", "{}", then.state);
    assert!(history(&app.pool, "Nope", &id, None).await.is_err());

    // export: every event, one line each, in (xid, position) order
    let total = app.event_count().await;
    let mut out = Vec::new();
    let n = export(
        &app.pool,
        None,
        None,
        &[],
        ExportFormat::Jsonl,
        &mut out,
        false,
    )
    .await
    .unwrap();
    assert_eq!(n as i64, total);
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as i64, total);
    let order: Vec<(i64, i64)> = lines
        .iter()
        .map(|l| (l["xid"].as_i64().unwrap(), l["position"].as_i64().unwrap()))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "commit order");
    // filtered by type, as CSV with a header
    let mut csv = Vec::new();
    let n = export(
        &app.pool,
        None,
        None,
        &["ProfileUpdated".to_owned()],
        ExportFormat::Csv,
        &mut csv,
        false,
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(csv
        .lines()
        .nth(1)
        .unwrap()
        .contains("\"{\"\"ProfileUpdated\"\""));
    app.stop().await;
}

/// Rebuild, verify and reset-parked run one at a time per database: a second
/// one is refused at once, naming the run that holds the lock.
#[tokio::test]
async fn a_second_maintenance_run_is_refused_naming_the_first() {
    let app = spawn_app().await;
    app.register("maintainer").await;
    let options = (*app.pool.connect_options())
        .clone()
        .application_name("lokiz maintenance: verify");
    let mut first = sqlx::ConnectOptions::connect(&options).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut first)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtext('lokiz-maintenance'))")
        .execute(&mut first)
        .await
        .unwrap();
    let all = lokiz_projections::all();
    for outcome in [
        verify(&app.pool, &all, 5, None).await.map(|_| ()),
        rebuild(&app.pool, &all, None).await.map(|_| ()),
        reset_parked(&app.pool, &all[0]).await.map(|_| ()),
    ] {
        match outcome {
            Err(lokiz_projections::rebuild::RebuildError::Busy { holder, pid: p, .. }) => {
                assert_eq!((holder.as_str(), p), ("verify", pid));
            }
            other => panic!("expected Busy, got {other:?}"),
        }
    }
    sqlx::Connection::close(first).await.unwrap();
    caught_up(&app).await;
    let report = verify(&app.pool, &all, 5, None).await.unwrap();
    assert!(report.drift.is_empty());
    app.stop().await;
}

/// A transaction that holds the relay's horizon (it wrote something and
/// stays open) is named by `/ready` and by `horizon_holder`, with its pid,
/// application name and age.
#[tokio::test]
async fn the_transaction_holding_the_relay_back_is_named() {
    // named after 300 ms (not 5 s): the horizon is cluster-wide, and holding
    // it stalls every other test's relay meanwhile
    let app = lokiz_tests::spawn_app_with(
        lokiz_api::Components::ALL,
        &[("LOKIZ_HORIZON_REPORT_MS", "300")],
    )
    .await;
    let options = (*app.pool.connect_options())
        .clone()
        .application_name("forgotten-session");
    let mut holder = sqlx::ConnectOptions::connect(&options).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    let (pid, xid): (i32, String) =
        sqlx::query_as("SELECT pg_backend_pid(), pg_current_xact_id()::text")
            .fetch_one(&mut holder)
            .await
            .unwrap();
    // other tests' transactions may be older for a moment
    app.eventually(30, "ours is the oldest open transaction", || async {
        let oldest: String =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        oldest == xid
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let ready: Value = app.get("/ready", None, None).await.json().await.unwrap();
    let named = &ready["checks"]["relay"]["held_back_by"];
    let found = lokiz_infra::db::horizon_holder(&app.pool, Duration::from_millis(300))
        .await
        .unwrap();
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let found = found.expect("a holder");
    assert_eq!(found.pid, pid);
    assert_eq!(found.application_name, "forgotten-session");
    assert!(found.age_seconds >= 0.3);
    // (once ours is the oldest, no older one can appear: xids only grow)
    assert_eq!(named["pid"], pid, "{ready}");
    assert_eq!(named["application_name"], "forgotten-session");
    app.stop().await;
}

/// The `videos` projection's set-based batches (which fold a new video's
/// completion and publication into its insert) leave exactly the rows that
/// applying the same events one at a time leaves; so do `search`'s and
/// `hashtags`' (each folds a batch per video before writing).
#[tokio::test]
async fn videos_batches_equal_event_by_event_application() {
    let app = spawn_app().await;
    seed(&app.pool, &small_seed()).await.unwrap();
    // a few lives the seed does not have: never completed, made private, deleted
    let owner = app.register("lifecycles").await;
    let r = app
        .post(
            "/v1/videos/upload-url",
            json!({"filename": "a.mp4", "content_type": "video/mp4", "file_size": 64}),
            Some(&owner.access_token),
        )
        .await;
    assert!(r.status().is_success());
    let (private, _) = app.upload_video(&owner, Some("soon private #Secret")).await;
    // private, its caption edited, then shown again: postings, tag rows and
    // tag uses leave and come back (search, hashtags)
    for change in [
        json!({"visibility": "private"}),
        json!({"caption": "back again #Reveal #댄스"}),
        json!({"visibility": "public"}),
        json!({"visibility": "private"}),
    ] {
        let r = app
            .patch(
                &format!("/v1/videos/{private}"),
                change,
                &owner.access_token,
            )
            .await;
        assert!(r.status().is_success(), "{}", r.status());
    }
    let (gone, _) = app.upload_video(&owner, None).await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/videos/{gone}")))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    caught_up(&app).await;
    let rows = batches_equal_event_by_event(&app, "videos").await;
    assert!(rows >= 123, "{rows} rows");
    for (name, at_least) in [("search", 700), ("hashtags", 650)] {
        let rows = batches_equal_event_by_event(&app, name).await;
        assert!(rows >= at_least, "{name}: {rows} rows");
    }
    app.stop().await;
}

/// The `notifications` projection applies runs of likes, follows, comments
/// and uploads set-based, and everything between them (read marks, settings,
/// blocks, deleted comments) on its own; `likes`, `follows` and `comments`
/// fold their batches too. Each leaves the rows of applying every event on
/// its own: coalesced likes and distinct actors, a like, unlike and like
/// again, a follow, unfollow and follow again with its counts, replies,
/// edits and deletions. `users` folds a batch's profile edits, role
/// changes and bans into one update per user.
#[tokio::test]
async fn notification_and_social_batches_equal_event_by_event_application() {
    let app = spawn_app().await;
    seed(&app.pool, &small_seed()).await.unwrap();
    let [alice, bob, carol, dave, erin] = [
        app.register("alice").await,
        app.register("bob").await,
        app.register("carol").await,
        app.register("dave").await,
        app.register("erin").await,
    ];
    let (video, _) = app.upload_video(&alice, Some("look")).await;
    let like = format!("/v1/likes/videos/{video}");
    let comments = format!("/v1/comments/videos/{video}");
    // likes gather; carol's like, unlike and like again counts once; alice's own is no news
    for who in [&bob, &carol] {
        send(&app, "POST", &like, json!({}), who).await;
    }
    send(&app, "DELETE", &like, json!({}), &carol).await;
    send(&app, "POST", &like, json!({}), &carol).await;
    send(&app, "POST", &like, json!({}), &alice).await;
    let follow_alice = format!("/v1/follows/users/{}", alice.id);
    send(&app, "POST", &follow_alice, json!({}), &bob).await;
    let follow_bob = format!("/v1/follows/users/{}", bob.id);
    for method in ["POST", "DELETE", "POST", "DELETE"] {
        send(&app, method, &follow_bob, json!({}), &carol).await;
    }
    // read: the next like starts a new notification
    send(
        &app,
        "POST",
        "/v1/notifications/read-all",
        json!({}),
        &alice,
    )
    .await;
    send(&app, "POST", &like, json!({}), &dave).await;
    // a comment, a reply to it, and the comment deleted (the reply stays)
    let c = send(&app, "POST", &comments, json!({"content": "nice"}), &bob).await;
    let parent = c["id"].as_str().unwrap().to_owned();
    let reply = json!({"content": "agreed", "parent_id": parent});
    send(&app, "POST", &comments, reply, &carol).await;
    let comment = format!("/v1/comments/{parent}");
    send(&app, "PATCH", &comment, json!({"content": "nicer"}), &bob).await;
    send(&app, "DELETE", &comment, json!({}), &bob).await;
    // likes turned off, then on; a block, then lifted
    let settings = "/v1/notifications/settings";
    send(&app, "PATCH", settings, json!({"like": false}), &alice).await;
    send(&app, "DELETE", &like, json!({}), &dave).await;
    send(&app, "POST", &like, json!({}), &dave).await;
    let block_erin = format!("/v1/blocks/users/{}", erin.id);
    send(&app, "POST", &block_erin, json!({}), &alice).await;
    send(&app, "POST", &follow_alice, json!({}), &dave).await;
    send(&app, "PATCH", settings, json!({"like": true}), &alice).await;
    send(&app, "DELETE", &block_erin, json!({}), &alice).await;
    send(&app, "POST", &like, json!({}), &erin).await;
    // profile edits, a role change, a ban and its lifting (users): each
    // field keeps its last word, the untouched ones stay
    let me = "/v1/users/me";
    let edits = [
        json!({"bio": "first", "display_name": "Bobby"}),
        json!({"display_name": "Robert"}),
        json!({"bio": null, "profile_image_url": null}),
        json!({"bio": "last"}),
    ];
    for edit in edits {
        send(&app, "PATCH", me, edit, &bob).await;
    }
    send(&app, "PATCH", me, json!({"bio": "carol's"}), &carol).await;
    send(&app, "PATCH", me, json!({"bio": null}), &carol).await;
    change_role(&app.pool, "alice", Role::Admin).await.unwrap();
    caught_up(&app).await; // (admin routes check the role in the read model)
    let ban_dave = format!("/v1/admin/users/{}/ban", dave.id);
    send(&app, "PATCH", &ban_dave, json!({"reason": "spam"}), &alice).await;
    let ban_erin = format!("/v1/admin/users/{}/ban", erin.id);
    send(&app, "PATCH", &ban_erin, json!({"reason": "spam"}), &alice).await;
    let unban = json!({"reason": "appeal", "banned": false});
    send(&app, "PATCH", &ban_erin, unban, &alice).await;
    caught_up(&app).await;
    let profiles: Vec<(String, Option<String>, String, bool)> = sqlx::query_as(
        "SELECT display_name, bio, role, banned FROM users WHERE id = ANY($1) ORDER BY username",
    )
    .bind(vec![alice.id, bob.id, carol.id, dave.id, erin.id])
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let profiles: Vec<(&str, Option<&str>, &str, bool)> = profiles
        .iter()
        .map(|(n, b, r, x)| (n.as_str(), b.as_deref(), r.as_str(), *x))
        .collect();
    assert_eq!(
        profiles,
        [
            ("alice", None, "admin", false),
            ("Robert", Some("last"), "member", false),
            ("carol", None, "member", false),
            ("dave", None, "member", true),
            ("erin", None, "member", false),
        ]
    );

    let alices: Vec<(String, i32)> = sqlx::query_as(
        "SELECT kind, actor_count FROM notifications WHERE user_id = $1 ORDER BY seq_xid, seq_pos",
    )
    .bind(alice.id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let kinds: Vec<(&str, i32)> = alices.iter().map(|(k, c)| (k.as_str(), *c)).collect();
    assert_eq!(
        kinds,
        [
            ("like", 2),
            ("follow", 1),
            ("comment", 1),
            ("follow", 1),
            ("like", 2)
        ],
        "bob and carol; bob; carol's reply (bob's comment went with its deletion); dave; \
         dave, then erin once unblocked (dave's like while likes were off is no news)"
    );
    let rows = batches_equal_event_by_event(&app, "notifications").await;
    assert!(rows >= 300, "{rows} rows");
    for (name, at_least) in [
        ("likes", 300),
        ("follows", 60),
        ("comments", 120),
        ("users", 35),
        ("people", 70),
    ] {
        let rows = batches_equal_event_by_event(&app, name).await;
        assert!(rows >= at_least, "{name}: {rows} rows");
    }
    app.stop().await;
}

/// A request that must succeed; its JSON body (null when there is none).
async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Value,
    who: &lokiz_tests::Registered,
) -> Value {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = app
        .client
        .request(method.clone(), app.url(path))
        .bearer_auth(&who.access_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{method} {path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

/// Applies every event of `name`'s types one at a time into a copy of its
/// tables (schema `one_by_one`), then rebuilds it (thousands of events per
/// batch) and asserts that both leave the same rows. Returns the rows.
async fn batches_equal_event_by_event(app: &TestApp, name: &str) -> i64 {
    let projector = lokiz_projections::by_name(name).unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    let mut ddl = String::from("CREATE SCHEMA one_by_one;");
    for t in projector.tables() {
        ddl.push_str(&format!(
            "CREATE TABLE one_by_one.{t} (LIKE public.{t} INCLUDING ALL);"
        ));
    }
    ddl.push_str("SET LOCAL search_path TO one_by_one, public;");
    sqlx::raw_sql(&ddl).execute(&mut *tx).await.unwrap();
    let events: Vec<lokiz_infra::StoredEvent> = sqlx::query_as(&format!(
        "SELECT {} FROM events WHERE aggregate_type = ANY($1) ORDER BY events.xid, events.position",
        lokiz_infra::stored_event::STORED_EVENT_COLUMNS
    ))
    .bind(
        projector
            .aggregate_types()
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    for e in &events {
        projector.apply(&mut tx, e).await.unwrap();
    }
    tx.commit().await.unwrap();

    // in batches (a rebuild replays thousands per batch)
    rebuild(&app.pool, std::slice::from_ref(&projector), None)
        .await
        .unwrap();
    let mut total = 0;
    for t in projector.tables() {
        let (differing, rows): (i64, i64) = sqlx::query_as(&format!(
            "SELECT (SELECT count(*) FROM (SELECT to_jsonb(v) FROM public.{t} v
                                           EXCEPT ALL SELECT to_jsonb(w) FROM one_by_one.{t} w) a)
                  + (SELECT count(*) FROM (SELECT to_jsonb(w) FROM one_by_one.{t} w
                                           EXCEPT ALL SELECT to_jsonb(v) FROM public.{t} v) b),
                    (SELECT count(*) FROM one_by_one.{t})"
        ))
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(differing, 0, "{t}: batched and one-by-one rows differ");
        total += rows;
    }
    sqlx::raw_sql("DROP SCHEMA one_by_one CASCADE")
        .execute(&app.pool)
        .await
        .unwrap();
    total
}
