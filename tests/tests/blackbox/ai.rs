//! AI jobs through HTTP with the local ffmpeg provider: lifecycle, credits
//! saga, cancel, concurrency on one wallet, batch-status, a worker dying.

use std::time::Duration;

use futures::future::join_all;
use lokiz_infra::ai::credits::{CreditsSaga, Settlement};
use lokiz_infra::ai::media::{ffmpeg_processes_for, probe};
use lokiz_infra::StoredEvent;
use lokiz_tests::{
    expect_error, position_of, spawn_app, spawn_app_with, test_worker_options, TestApp,
    WorkerOptions, WorkerProcess,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let r = app.get(path, Some(token), None).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().await.unwrap()
}

/// Requests a job at `path` as `token` once the read models reached
/// `after`; asserts 202 and returns the job id.
async fn request_job(app: &TestApp, token: &str, path: &str, body: Value, after: i64) -> String {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("X-Lokiz-Min-Position", after.to_string())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{path}");
    r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Where attempt `attempt` of a job renders its output (ffmpeg's target).
fn work_output(app: &TestApp, job_id: &str, attempt: u32) -> std::path::PathBuf {
    app.config
        .data_dir
        .join("work")
        .join(format!("{job_id}-{attempt}"))
        .join("result.mp4")
}

/// Downloads `url` and probes it with ffprobe (which must accept it).
async fn probe_url(app: &TestApp, url: &str) -> lokiz_infra::ai::media::MediaInfo {
    let bytes = app
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let file = std::env::temp_dir().join(format!("lokiz-probe-{}.mp4", Uuid::new_v4().simple()));
    tokio::fs::write(&file, &bytes).await.unwrap();
    let info = probe(&file).await.expect("ffprobe accepts the file");
    let _ = tokio::fs::remove_file(&file).await;
    info
}

/// Polls the job until `done` holds; returns every progress value seen.
async fn poll_job(
    app: &TestApp,
    token: &str,
    job_id: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> (Value, Vec<i64>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let job = get_json(app, &format!("/v1/ai/jobs/{job_id}"), token).await;
        seen.push(job["progress"].as_i64().unwrap());
        if done(&job) {
            return (job, seen);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never got there: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |j| j["status"] == s
}

/// The wallet's history (newest first), once the wallets projection settles.
async fn history(app: &TestApp, token: &str) -> Vec<Value> {
    get_json(app, "/v1/credits/history?limit=50", token).await["transactions"]
        .as_array()
        .unwrap()
        .clone()
}

fn kinds(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .rev()
        .map(|t| t["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_for_history(app: &TestApp, token: &str, expect: &[&str]) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let h = history(app, token).await;
        if kinds(&h) == expect {
            return h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history {:?}, expected {expect:?}",
            kinds(&h)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn glitch_lifecycle_progress_result_and_one_capture() {
    let app = spawn_app().await;
    let bob = app.register("bob").await;
    let alice = app.register("alice").await;
    let (video, settled) = app.upload_media(&bob, (360, 640), 4.0).await;

    let r = app
        .client
        .post(app.url("/v1/ai/glitch/animate"))
        .bearer_auth(&alice.access_token)
        .header("X-Lokiz-Min-Position", settled.to_string())
        .json(
            &json!({"video_id": video, "start_time": 0.5, "end_time": 3.0, "preset": "scanlines"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    position_of(&r);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["status"], "queued");
    assert_eq!(job["cost"], 30);
    assert_eq!(job["kind"], "glitch_animate");
    let job_id = job["job_id"].as_str().unwrap().to_owned();

    let (done, seen) = poll_job(
        &app,
        &alice.access_token,
        &job_id,
        120,
        status_is("completed"),
    )
    .await;
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress never falls: {seen:?}"
    );
    assert_eq!(done["progress"], 100);
    // progress rose through recorded steps, not only 0 → 100
    let steps: Vec<i64> = sqlx::query_scalar(
        "SELECT (payload->'JobProgressed'->>'percent')::bigint FROM events
          WHERE aggregate_type = 'AiJob' AND aggregate_id = $1 AND event_type = 'JobProgressed'
          ORDER BY sequence",
    )
    .bind(&job_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(
        steps.iter().any(|p| (1..100).contains(p)),
        "progress between 0 and 100 recorded: {steps:?}"
    );

    // the result is a real file of the segment's length
    let url = done["result_url"].as_str().unwrap();
    let info = probe_url(&app, url).await;
    assert!((info.duration_secs - 2.5).abs() < 0.3, "{info:?}");
    assert!(info.has_video);

    // published as alice's video, glitched from bob's; the source counts it
    let out = done["output_video_id"].as_str().unwrap();
    let v = get_json(&app, &format!("/v1/videos/{out}"), &alice.access_token).await;
    assert_eq!(v["user"]["id"], alice.id.to_string(), "{v}");
    let meta: Value = app
        .post(
            "/v1/videos/batch-metadata",
            json!({"video_ids": [video]}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["videos"][video.to_string()]["glitch_count"],
        1,
        "{meta}"
    );
    assert_eq!(
        meta["videos"][video.to_string()]["remix_count"],
        1,
        "{meta}"
    );

    // exactly one reservation and one capture: 70 left
    let h = wait_for_history(&app, &alice.access_token, &["grant", "reserve", "capture"]).await;
    assert_eq!(h[0]["job_id"], job_id.as_str());
    let balance = get_json(&app, "/v1/credits/balance", &alice.access_token).await;
    assert_eq!(balance["balance"], 70, "{balance}");
    assert_eq!(balance["reserved"], 0);
    assert_eq!(balance["spent"], 30);
    app.stop().await;
}

#[tokio::test]
async fn cancel_while_running_kills_ffmpeg_and_refunds_exactly_once() {
    let app = spawn_app().await;
    let user = app.register("canceler").await;
    let (video, settled) = app.upload_media(&user, (540, 960), 12.0).await;
    let job_id = request_job(
        &app,
        &user.access_token,
        "/v1/ai/glitch/animate",
        json!({"video_id": video, "start_time": 0, "end_time": 10, "preset": "scanlines"}),
        settled,
    )
    .await;
    poll_job(&app, &user.access_token, &job_id, 60, |j| {
        j["status"] == "processing" && j["progress"].as_i64().unwrap() > 0
    })
    .await;
    let output = work_output(&app, &job_id, 1);
    assert!(
        !ffmpeg_processes_for(&output).is_empty(),
        "ffmpeg is running"
    );

    let r = app
        .client
        .delete(app.url(&format!("/v1/ai/jobs/{job_id}")))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "canceled");
    assert_eq!(body["refund"], 30);

    app.eventually(10, "ffmpeg killed", || async {
        ffmpeg_processes_for(&output).is_empty()
    })
    .await;
    poll_job(&app, &user.access_token, &job_id, 10, status_is("canceled")).await;
    wait_for_history(&app, &user.access_token, &["grant", "reserve", "refund"]).await;

    // the refund trigger delivered twice more: nothing more is refunded
    let canceled: StoredEvent = sqlx::query_as(&format!(
        "SELECT {} FROM events WHERE aggregate_type = 'AiJob' AND aggregate_id = $1
            AND event_type = 'JobCanceled'",
        lokiz_infra::stored_event::STORED_EVENT_COLUMNS
    ))
    .bind(&job_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let saga = CreditsSaga::new(app.pool.clone(), app.ctx.store.clone());
    for _ in 0..2 {
        assert_eq!(
            saga.settle(&canceled).await.unwrap(),
            Settlement::AlreadySettled
        );
    }
    let refunds: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Wallet' AND event_type = 'CreditsRefunded'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(refunds, 1);
    let balance = get_json(&app, "/v1/credits/balance", &user.access_token).await;
    assert_eq!(balance["balance"], 100);

    // canceling again: the job is finished
    let r = app
        .client
        .delete(app.url(&format!("/v1/ai/jobs/{job_id}")))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::CONFLICT, "JOB_FINISHED").await;
    app.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_jobs_on_100_credits_accept_exactly_three() {
    let app = spawn_app().await;
    let user = app.register("spender").await;
    let (video, settled) = app.upload_media(&user, (180, 320), 3.0).await;
    let requests = (0..20).map(|_| {
        app.client
            .post(app.url("/v1/ai/glitch/animate"))
            .bearer_auth(&user.access_token)
            .header("X-Lokiz-Min-Position", settled.to_string())
            .json(
                &json!({"video_id": video, "start_time": 0, "end_time": 1, "preset": "rgb-split"}),
            )
            .send()
    });
    let mut accepted = 0;
    let mut refused = 0;
    for r in join_all(requests).await {
        let r = r.unwrap();
        match r.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::PAYMENT_REQUIRED => {
                let err =
                    expect_error(r, StatusCode::PAYMENT_REQUIRED, "INSUFFICIENT_CREDITS").await;
                assert_eq!(err["details"]["needed"], 30);
                let events: Vec<(String, serde_json::Value)> = sqlx::query_as(
                    "SELECT event_type, payload::jsonb FROM events WHERE aggregate_type = 'Wallet' ORDER BY position",
                )
                .fetch_all(&app.pool)
                .await
                .unwrap();
                assert_eq!(err["details"]["balance"], 10, "{events:?}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", r.text().await.unwrap_or_default()),
        }
    }
    assert_eq!((accepted, refused), (3, 17));
    let jobs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'AiJob' AND event_type = 'JobRequested'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(jobs, 3, "no job for a refused request");
    // the wallet never went below zero
    let lowest: i64 = sqlx::query_scalar(
        "SELECT min(coalesce((payload->'CreditsReserved'->>'balance_after')::bigint, 0))
           FROM events WHERE aggregate_type = 'Wallet'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(lowest >= 0, "balance went to {lowest}");
    app.stop().await;
}

#[tokio::test]
async fn batch_status_follows_the_seed_and_the_monitor_flow_works() {
    let app = spawn_app().await;
    let me = app.register("monitor").await;
    let other = app.register("other").await;
    let (video, settled) = app.upload_media(&me, (180, 320), 3.0).await;
    let request = |token: String, path: &'static str, body: Value| {
        let app = &app;
        async move { request_job(app, &token, path, body, settled).await }
    };
    let mine = request(
        me.access_token.clone(),
        "/v1/ai/music",
        json!({"video_id": video, "start_time": 0, "end_time": 2, "preset": "arcade"}),
    )
    .await;
    let frame = request(
        me.access_token.clone(),
        "/v1/ai/capture-frame",
        json!({"video_id": video, "timestamp": 1.5}),
    )
    .await;
    let template = request(
        me.access_token.clone(),
        "/v1/ai/template",
        json!({"video_id": video, "timestamp": 1, "duration": 2, "prompt": "zoom in"}),
    )
    .await;
    let replace = request(
        me.access_token.clone(),
        "/v1/ai/glitch/replace",
        json!({"video_id": video, "start_time": 0.5, "end_time": 2, "preset": "neon-midtones"}),
    )
    .await;
    let theirs = request(
        other.access_token.clone(),
        "/v1/ai/capture-frame",
        json!({"video_id": video, "timestamp": 1}),
    )
    .await;
    let unknown = Uuid::new_v4().to_string();

    // the seed's AIJobMonitor: poll batch-status until every job is done
    let ids = json!({"job_ids": [mine, frame, template, replace, theirs, unknown]});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let jobs = loop {
        let r = app
            .post(
                "/v1/ai/jobs/batch-status",
                ids.clone(),
                Some(&me.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let jobs = r.json::<Value>().await.unwrap()["jobs"].clone();
        for id in [&mine, &frame, &theirs, &unknown] {
            let j = &jobs[id];
            let mut keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["error", "progress", "result_url", "status"], "{j}");
        }
        if [&mine, &frame, &template, &replace]
            .iter()
            .all(|id| jobs[*id]["status"] == "completed")
        {
            break jobs;
        }
        assert!(tokio::time::Instant::now() < deadline, "{jobs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(jobs[&theirs]["status"], "not_found", "another user's job");
    assert_eq!(jobs[&unknown]["status"], "not_found");
    assert_eq!(jobs[&mine]["progress"], 100);
    // the frame is a JPEG; the music result has an audio track
    let frame_url = jobs[&frame]["result_url"].as_str().unwrap();
    let r = app.client.get(frame_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..2], &[0xFF, 0xD8]);
    let info = probe_url(&app, jobs[&mine]["result_url"].as_str().unwrap()).await;
    assert!(
        info.has_audio && (info.duration_secs - 2.0).abs() < 0.3,
        "{info:?}"
    );
    // the template clip and the replaced segment: videos of the asked length
    for (id, seconds) in [(&template, 2.0), (&replace, 1.5)] {
        let info = probe_url(&app, jobs[id]["result_url"].as_str().unwrap()).await;
        assert!(
            info.has_video && (info.duration_secs - seconds).abs() < 0.3,
            "{id}: {info:?}"
        );
    }
    // 5 + 20 + 30 captured, the frame free: 45 left
    app.eventually(20, "three captures", || async {
        history(&app, &me.access_token)
            .await
            .iter()
            .filter(|t| t["type"] == "capture")
            .count()
            == 3
    })
    .await;
    let balance = get_json(&app, "/v1/credits/balance", &me.access_token).await;
    assert_eq!(
        (balance["balance"].as_i64(), balance["spent"].as_i64()),
        (Some(45), Some(55))
    );

    // 51 ids → 422; malformed ids named
    let many: Vec<String> = (0..51).map(|_| Uuid::new_v4().to_string()).collect();
    let r = app
        .post(
            "/v1/ai/jobs/batch-status",
            json!({"job_ids": many}),
            Some(&me.access_token),
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = app
        .post(
            "/v1/ai/jobs/batch-status",
            json!({"job_ids": ["nope"]}),
            Some(&me.access_token),
        )
        .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert!(err["details"]["fields"][0]["message"]
        .as_str()
        .unwrap()
        .contains("nope"));
    let r = app.post("/v1/ai/jobs/batch-status", ids, None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;

    // another user's job is not found for GET and DELETE either
    let r = app
        .get(
            &format!("/v1/ai/jobs/{theirs}"),
            Some(&me.access_token),
            None,
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/ai/jobs/{theirs}")))
        .bearer_auth(&me.access_token)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    app.stop().await;
}

#[tokio::test]
async fn job_requests_refuse_bad_input_and_store_nothing() {
    let app = spawn_app().await;
    let user = app.register("picky").await;
    let stranger = app.register("stranger").await;
    let (video, settled) = app.upload_media(&user, (180, 320), 3.0).await;
    let post = |path: &'static str, body: Value, token: Option<String>| {
        let mut req = app
            .client
            .post(app.url(path))
            .header("X-Lokiz-Min-Position", settled.to_string())
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap() }
    };
    let token = Some(user.access_token.clone());
    let fields = |err: &Value| -> Vec<String> {
        err["details"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap().to_owned())
            .collect()
    };

    // no token
    let r = post("/v1/ai/glitch/animate", json!({}), None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    // every malformed field at once
    let r = post(
        "/v1/ai/glitch/animate",
        json!({"video_id": "x", "start_time": "a", "preset": 3}),
        token.clone(),
    )
    .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(
        fields(&err),
        ["video_id", "start_time", "end_time", "preset"],
        "{err}"
    );
    // times outside the video, too long a segment, wrong preset family
    let r = post(
        "/v1/ai/glitch/replace",
        json!({"video_id": video, "start_time": 1, "end_time": 9, "preset": "rgb-split"}),
        token.clone(),
    )
    .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(fields(&err), ["end_time", "preset"], "{err}");
    let r = post(
        "/v1/ai/music",
        json!({"video_id": video, "start_time": 2, "end_time": 1, "preset": "nope"}),
        token.clone(),
    )
    .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(fields(&err), ["end_time", "preset"], "{err}");
    let r = post(
        "/v1/ai/template",
        json!({"video_id": video, "timestamp": -1, "duration": 30}),
        token.clone(),
    )
    .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(fields(&err), ["timestamp", "duration"], "{err}");
    let r = post(
        "/v1/ai/capture-frames",
        json!({"video_id": video, "timestamps": (0..21).collect::<Vec<_>>()}),
        token.clone(),
    )
    .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = post(
        "/v1/ai/capture-frames",
        json!({"video_id": video, "timestamps": [1, 99]}),
        token.clone(),
    )
    .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert!(err["details"]["fields"][0]["message"]
        .as_str()
        .unwrap()
        .contains("99"));
    // unknown video; another user's private video
    let r = post(
        "/v1/ai/capture-frame",
        json!({"video_id": Uuid::new_v4(), "timestamp": 1}),
        token.clone(),
    )
    .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .patch(
            &format!("/v1/videos/{video}"),
            json!({"visibility": "private"}),
            &user.access_token,
        )
        .await;
    let hidden = position_of(&r);
    let r = app
        .client
        .post(app.url("/v1/ai/capture-frame"))
        .bearer_auth(&stranger.access_token)
        .header("X-Lokiz-Min-Position", hidden.to_string())
        .json(&json!({"video_id": video, "timestamp": 1}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    // bad job ids
    let r = app
        .get("/v1/ai/jobs/nope", Some(&user.access_token), None)
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // nothing stored: no job, no reservation
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'AiJob'
            OR (aggregate_type = 'Wallet' AND event_type <> 'CreditsGranted')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);

    // capture-frames: the owner still can; the frames come back as JPEGs
    let r = post(
        "/v1/ai/capture-frames",
        json!({"video_id": video, "timestamps": [0.5, 2.0]}),
        token.clone(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let frames: Value = r.json().await.unwrap();
    for f in frames["frames"].as_array().unwrap() {
        assert_eq!(f["status"], "completed", "{frames}");
        let r = app
            .client
            .get(f["image_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(&r.bytes().await.unwrap()[..2], &[0xFF, 0xD8]);
    }
    let balance = get_json(&app, "/v1/credits/balance", &user.access_token).await;
    assert_eq!(balance["balance"], 100, "frames are free");
    app.stop().await;
}

#[tokio::test]
async fn a_worker_dying_mid_job_hands_it_over_after_its_lease() {
    let app = spawn_app_with(
        lokiz_api::Components {
            workers: false,
            ..lokiz_api::Components::ALL
        },
        &[],
    )
    .await;
    let options = WorkerOptions {
        lease: Duration::from_secs(3),
        ..test_worker_options()
    };
    let first = WorkerProcess::start(&app.config, options.clone()).await;
    let user = app.register("survivor").await;
    let (video, settled) = app.upload_media(&user, (540, 960), 8.0).await;
    let job_id = request_job(
        &app,
        &user.access_token,
        "/v1/ai/glitch/animate",
        json!({"video_id": video, "start_time": 0, "end_time": 6, "preset": "scanlines"}),
        settled,
    )
    .await;
    poll_job(&app, &user.access_token, &job_id, 60, |j| {
        j["status"] == "processing" && j["progress"].as_i64().unwrap() > 0
    })
    .await;
    let died = tokio::time::Instant::now();
    first.kill().await;
    let output = work_output(&app, &job_id, 1);
    app.eventually(10, "the dead worker's ffmpeg gone", || async {
        ffmpeg_processes_for(&output).is_empty()
    })
    .await;

    let _second = WorkerProcess::start(&app.config, options).await;
    let (job, _) = poll_job(&app, &user.access_token, &job_id, 120, |j| {
        j["status"] == "completed" || j["status"] == "failed"
    })
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    let attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'AiJob' AND aggregate_id = $1
            AND event_type = 'JobStarted'",
    )
    .bind(&job_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(attempts, 2, "taken over as a second attempt");
    assert!(died.elapsed() < Duration::from_secs(90));
    wait_for_history(&app, &user.access_token, &["grant", "reserve", "capture"]).await;
    app.stop().await;
}

/// Requests a glitch and waits for it; returns the job.
async fn glitch(app: &TestApp, token: &str, video: &str, end: f64, after: i64) -> Value {
    let id = request_job(
        app,
        token,
        "/v1/ai/glitch/animate",
        json!({"video_id": video, "start_time": 0, "end_time": end, "preset": "hue-jump"}),
        after,
    )
    .await;
    poll_job(app, token, &id, 90, status_is("completed"))
        .await
        .0
}

fn ids(page: &Value) -> Vec<(String, i64)> {
    page["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_owned(),
                v["depth"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn glitch_chains_are_transitive_and_the_studio_serves_media() {
    let app = spawn_app().await;
    let bob = app.register("bob").await;
    let alice = app.register("alice").await;
    let carol = app.register("carol").await;
    let (v, settled) = app.upload_media(&bob, (360, 640), 4.0).await;
    let v = v.to_string();
    let g1 = glitch(&app, &alice.access_token, &v, 1.5, settled).await;
    let g1 = g1["output_video_id"].as_str().unwrap().to_owned();
    let head = lokiz_infra::event_store::head(&app.pool).await.unwrap();
    let g2 = glitch(&app, &carol.access_token, &g1, 1.0, head).await;
    let g2 = g2["output_video_id"].as_str().unwrap().to_owned();
    let head = lokiz_infra::event_store::head(&app.pool).await.unwrap();

    // glitches of the original: both, newest first, with their depth; paged
    let page = app
        .get(&format!("/v1/glitch/videos/{v}/glitches"), None, Some(head))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert!(page["videos"].is_array(), "{page}");
    assert_eq!(ids(&page), [(g2.clone(), 2), (g1.clone(), 1)], "{page}");
    assert_eq!(page["videos"][0]["source_video_id"], g1.as_str());
    let first = app
        .get(
            &format!("/v1/glitch/videos/{v}/glitches?limit=1"),
            None,
            None,
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(ids(&first), [(g2.clone(), 2)]);
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .get(
            &format!("/v1/glitch/videos/{v}/glitches?limit=1&cursor={cursor}"),
            None,
            None,
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(ids(&second), [(g1.clone(), 1)]);
    assert_eq!(second["has_more"], false);
    // the source chain of the newest: its source, then the original
    let up = app
        .get(&format!("/v1/glitch/videos/{g2}/source"), None, None)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(ids(&up), [(g1.clone(), 1), (v.clone(), 2)], "{up}");
    let meta: Value = app
        .post(
            "/v1/videos/batch-metadata",
            json!({"video_ids": [v, g1]}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta["videos"][&v]["glitch_count"], 1);
    assert_eq!(meta["videos"][&g1]["glitch_count"], 1);
    // alice hides her glitch: listed glitches no longer name it as a source
    // to others (its owner still sees it)
    let r = app
        .patch(
            &format!("/v1/videos/{g1}"),
            json!({"visibility": "private"}),
            &alice.access_token,
        )
        .await;
    let hidden = position_of(&r);
    for (token, expected) in [
        (None, Value::Null),
        (Some(carol.access_token.as_str()), Value::Null),
        (Some(alice.access_token.as_str()), json!(g1)),
    ] {
        let page = app
            .get(
                &format!("/v1/glitch/videos/{v}/glitches"),
                token,
                Some(hidden),
            )
            .await
            .json::<Value>()
            .await
            .unwrap();
        let g2_row = page["videos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == g2.as_str())
            .cloned()
            .unwrap();
        assert_eq!(g2_row["source_video_id"], expected, "{page}");
    }
    let r = app
        .patch(
            &format!("/v1/videos/{g1}"),
            json!({"visibility": "public"}),
            &alice.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .get(
            &format!("/v1/glitch/videos/{}/glitches", Uuid::new_v4()),
            None,
            None,
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .get(
            &format!("/v1/glitch/videos/{v}/source?cursor=garbage"),
            None,
            None,
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;

    // studio: signed-in users only (each render costs ffmpeg time)
    for path in [
        format!("/v1/studio/videos/{v}/timeline"),
        format!("/v1/studio/videos/{v}/preview?start_time=0&end_time=1"),
    ] {
        let r = app.get(&path, None, None).await;
        expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    }
    // a timeline of real thumbnails (made once, then reused); the width
    // snaps to one of a few sizes, so a sweep of widths renders no more
    let timeline = app
        .get(
            &format!("/v1/studio/videos/{v}/timeline?interval=1&width=90"),
            Some(&bob.access_token),
            None,
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(timeline["duration"], 4.0);
    let thumbs = timeline["thumbnails"].as_array().unwrap();
    // one every second, before the end
    assert_eq!(thumbs.len(), 4, "{timeline}");
    for t in thumbs {
        let r = app
            .client
            .get(t["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(&r.bytes().await.unwrap()[..2], &[0xFF, 0xD8]);
    }
    let again = app
        .get(
            &format!("/v1/studio/videos/{v}/timeline?interval=1&width=90"),
            Some(&bob.access_token),
            None,
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(again, timeline);
    let snapped = app
        .get(
            &format!("/v1/studio/videos/{v}/timeline?interval=1&width=85"),
            Some(&bob.access_token),
            None,
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(snapped, timeline, "85 and 90 both snap to 80");
    let metrics = app.get("/metrics", None, None).await.text().await.unwrap();
    assert!(
        metrics.contains("lokiz_render_cache_hits_total"),
        "{metrics}"
    );
    assert!(metrics.contains("lokiz_render_cache_bytes"), "{metrics}");
    // a preview of a range: a small video of that length
    let preview = app
        .get(
            &format!("/v1/studio/videos/{v}/preview?start_time=0.6&end_time=1.9"),
            Some(&bob.access_token),
            None,
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    // snapped outwards to half seconds
    assert_eq!(
        (preview["start_time"].clone(), preview["end_time"].clone()),
        (json!(0.5), json!(2.0))
    );
    let info = probe_url(&app, preview["preview_url"].as_str().unwrap()).await;
    assert!((info.duration_secs - 1.5).abs() < 0.3, "{info:?}");
    // select-range: at most 10 s, inside the video
    let r = app
        .post(
            &format!("/v1/studio/videos/{v}/select-range"),
            json!({"start_time": 1, "end_time": 3}),
            Some(&bob.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let sel: Value = r.json().await.unwrap();
    assert_eq!(sel["length"], 2.0);
    assert_eq!(sel["costs"]["glitch_animate"], 30);
    let r = app
        .post(
            &format!("/v1/studio/videos/{v}/select-range"),
            json!({"start_time": -1, "end_time": 30}),
            Some(&bob.access_token),
        )
        .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(
        err["details"]["fields"].as_array().unwrap().len(),
        2,
        "{err}"
    );
    let r = app
        .post(
            &format!("/v1/studio/videos/{v}/select-range"),
            json!({"start_time": "a"}),
            Some(&bob.access_token),
        )
        .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(
        err["details"]["fields"].as_array().unwrap().len(),
        2,
        "{err}"
    );
    let r = app
        .get(
            &format!("/v1/studio/videos/{v}/timeline?interval=0"),
            Some(&bob.access_token),
            None,
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = app
        .get(
            &format!("/v1/studio/videos/{v}/preview?start_time=x"),
            Some(&bob.access_token),
            None,
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = app
        .get(
            &format!("/v1/studio/videos/{}/timeline", Uuid::new_v4()),
            Some(&bob.access_token),
            None,
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // presets: the versioned file the providers use
    let glitch_presets: Value = app
        .get("/v1/presets/glitch", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(glitch_presets["version"].as_u64().unwrap() >= 1);
    let ids: Vec<&str> = glitch_presets["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"hue-jump") && ids.contains(&"fractal-sky"),
        "{ids:?}"
    );
    let music: Value = app
        .get("/v1/presets/music", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(music["presets"][0]["bpm"].as_u64().is_some());
    app.stop().await;
}

#[tokio::test]
async fn credit_purchases_grant_once_per_idempotency_key() {
    let app = spawn_app().await;
    let user = app.register("buyer").await;
    let buy = |key: Option<&'static str>, body: Value| {
        let mut req = app
            .client
            .post(app.url("/v1/credits/purchase"))
            .bearer_auth(&user.access_token)
            .json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        async move { req.send().await.unwrap() }
    };
    let r = buy(Some("buy-1"), json!({"package_id": "credits_100"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["credits"], 100);
    // the same key again: the first answer, no second charge
    let r = buy(Some("buy-1"), json!({"package_id": "credits_100"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["payment_id"], first["payment_id"]);
    let r = buy(None, json!({"package_id": "credits_500"})).await;
    let settled = position_of(&r);
    let balance: Value = app
        .get(
            "/v1/credits/balance",
            Some(&user.access_token),
            Some(settled),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance["balance"], 700, "{balance}");
    assert_eq!(balance["granted"], 700);
    let h = history(&app, &user.access_token).await;
    let reasons: Vec<&str> = h.iter().map(|t| t["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["purchase", "purchase", "signup"]);

    // bad input
    let r = buy(None, json!({"package_id": "credits_9999"})).await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(err["details"]["fields"][0]["field"], "package_id");
    let r = buy(None, json!({})).await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = app
        .post(
            "/v1/credits/purchase",
            json!({"package_id": "credits_100"}),
            None,
        )
        .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    let r = app
        .get(
            "/v1/credits/history?limit=0",
            Some(&user.access_token),
            None,
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;

    // what is for sale
    let plans: Value = app
        .get("/v1/subscriptions/plans", None, None)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = plans["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["free", "basic", "pro", "enterprise"]);
    let packages: Value = app
        .get("/v1/credits/packages", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(packages["packages"].as_array().unwrap().len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn the_replicate_provider_runs_jobs_on_a_fake_and_webhooks_are_verified() {
    use lokiz_tests::fake_replicate::FakeReplicate;
    let fake = FakeReplicate::start().await;
    fake.set_output(lokiz_tests::sample_video(180, 320, 2.0).await);
    // the fake serves outputs over http on loopback
    let env = fake.env(true);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(lokiz_api::Components::ALL, &pairs).await;
    let user = app.register("remote").await;
    let (video, settled) = app.upload_media(&user, (180, 320), 3.0).await;
    let request = || {
        app.client
            .post(app.url("/v1/ai/glitch/animate"))
            .bearer_auth(&user.access_token)
            .header("X-Lokiz-Min-Position", settled.to_string())
            .json(
                &json!({"video_id": video, "start_time": 0, "end_time": 2, "preset": "rgb-split"}),
            )
            .send()
    };
    let r = request().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let job_id = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // the worker creates a prediction with the kind's model and the job's input
    app.eventually(30, "a prediction", || async {
        fake.predictions().len() == 1
    })
    .await;
    let p = fake.predictions()[0].clone();
    assert_eq!(p.version, "anim-v1");
    assert_eq!(p.input["preset"], "rgb-split");
    assert_eq!(p.input["end"], 2.0);
    assert!(
        p.input["video"].as_str().unwrap().starts_with("http"),
        "{:?}",
        p.input
    );
    let webhook = p.webhook.clone().unwrap();
    assert!(webhook.contains("/v1/ai/callbacks/replicate"), "{webhook}");

    // processing: the signed webhook is accepted and the logged progress shows
    fake.advance(&p.id).await;
    let delivered = fake.deliveries();
    assert_eq!(
        delivered.last().unwrap().response_status,
        Some(200),
        "{delivered:?}"
    );
    poll_job(&app, &user.access_token, &job_id, 30, |j| {
        j["status"] == "processing" && j["progress"].as_i64().unwrap() >= 40
    })
    .await;
    // succeeded: the output is downloaded, stored and published
    fake.advance(&p.id).await;
    let (job, _) = poll_job(
        &app,
        &user.access_token,
        &job_id,
        30,
        status_is("completed"),
    )
    .await;
    let info = probe_url(&app, job["result_url"].as_str().unwrap()).await;
    assert!((info.duration_secs - 2.0).abs() < 0.3, "{info:?}");
    wait_for_history(&app, &user.access_token, &["grant", "reserve", "capture"]).await;

    // a forged webhook (another secret) and an unsigned one: 401; unknown provider: 404
    let body = serde_json::to_vec(&json!({"id": p.id, "status": "succeeded"})).unwrap();
    let now = chrono::Utc::now().timestamp();
    let forged = lokiz_infra::ai::replicate::sign_webhook(
        "whsec_c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1yaWdodC1vbmU=",
        "msg_1",
        now,
        &body,
    )
    .unwrap();
    let callback = |signature: Option<String>, path: &'static str| {
        let mut req = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", now.to_string())
            .body(body.clone());
        if let Some(s) = signature {
            req = req.header("webhook-signature", s);
        }
        async move { req.send().await.unwrap() }
    };
    let r = callback(Some(forged), "/v1/ai/callbacks/replicate").await;
    expect_error(r, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE").await;
    let r = callback(None, "/v1/ai/callbacks/replicate").await;
    expect_error(r, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE").await;
    let genuine =
        lokiz_infra::ai::replicate::sign_webhook(&fake.webhook_secret, "msg_1", now, &body)
            .unwrap();
    let r = callback(Some(genuine.clone()), "/v1/ai/callbacks/replicate").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = callback(Some(genuine), "/v1/ai/callbacks/nope").await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // cancel: the prediction is canceled too, the credits refunded
    let r = request().await.unwrap();
    let second = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.eventually(30, "a second prediction", || async {
        fake.predictions().len() == 2
    })
    .await;
    let p2 = fake.predictions()[1].id.clone();
    poll_job(
        &app,
        &user.access_token,
        &second,
        30,
        status_is("processing"),
    )
    .await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/ai/jobs/{second}")))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.eventually(30, "the prediction canceled", || async {
        fake.canceled().contains(&p2)
    })
    .await;
    wait_for_history(
        &app,
        &user.access_token,
        &["grant", "reserve", "capture", "reserve", "refund"],
    )
    .await;
    app.stop().await;
}
