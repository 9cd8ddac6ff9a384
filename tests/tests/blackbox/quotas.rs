//! AI job admission, replayed as an abuser would: many paid jobs at once,
//! endless free jobs, a capture-frames batch beyond the free slots, and a
//! reservation left behind by a request that died before recording its job.

use std::collections::HashMap;
use std::time::Duration;

use lokiz_api::Components;
use lokiz_domain::ai_job::{AiJobCommand, JobError, JobParams};
use lokiz_domain::wallet::WalletCommand;
use lokiz_tests::{expect_error, spawn_app_with, Registered, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// No worker: requested jobs stay queued (active).
fn no_worker() -> Components {
    Components {
        workers: false,
        ..Components::ALL
    }
}

async fn job(app: &TestApp, user: &Registered, kind: &str, body: Value) -> reqwest::Response {
    app.post(&format!("/v1/ai/{kind}"), body, Some(&user.access_token))
        .await
}

async fn balance(app: &TestApp, user: &Registered) -> (i64, i64) {
    let head = app.head().await;
    let b: Value = app
        .get("/v1/credits/balance", Some(&user.access_token), Some(head))
        .await
        .json()
        .await
        .expect("balance");
    (
        b["balance"].as_i64().expect("balance"),
        b["reserved"].as_i64().expect("reserved"),
    )
}

#[tokio::test]
async fn paid_jobs_beyond_the_active_limit_are_429_and_reserve_nothing() {
    let app = spawn_app_with(no_worker(), &[("LOKIZ_JOBS_MAX_ACTIVE", "2")]).await;
    let user = app.register("greedy").await;
    let (video, _) = app.upload_video(&user, None).await;
    let template = json!({"video_id": video, "timestamp": 1.0});
    for _ in 0..2 {
        assert_eq!(
            job(&app, &user, "template", template.clone())
                .await
                .status(),
            StatusCode::ACCEPTED
        );
    }
    let r = job(&app, &user, "template", template.clone()).await;
    assert!(r.headers().contains_key("retry-after"));
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED").await;
    assert_eq!(
        balance(&app, &user).await,
        (60, 40),
        "two jobs hold 20 each; the third nothing"
    );
    // free jobs have slots of their own: not kept out by the paid ones
    let r = job(
        &app,
        &user,
        "capture-frame",
        json!({"video_id": video, "timestamp": 1.0}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // and the paid slots do not fill up with free jobs either
    let other = app.register("patient").await;
    let (theirs, _) = app.upload_video(&other, None).await;
    for t in [0.5, 1.0, 1.5] {
        let r = job(
            &app,
            &other,
            "capture-frame",
            json!({"video_id": theirs, "timestamp": t}),
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let r = job(
        &app,
        &other,
        "template",
        json!({"video_id": theirs, "timestamp": 1.0}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.stop().await;
}

#[tokio::test]
async fn free_jobs_beyond_the_daily_quota_are_429_until_tomorrow() {
    let app = spawn_app_with(Components::ALL, &[("LOKIZ_JOBS_FREE_PER_DAY", "2")]).await;
    let user = app.register("freeloader").await;
    let (video, _) = app.upload_media(&user, (320, 568), 2.0).await;
    for t in [0.5, 1.0] {
        let r = job(
            &app,
            &user,
            "capture-frame",
            json!({"video_id": video, "timestamp": t}),
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let r = job(
        &app,
        &user,
        "capture-frame",
        json!({"video_id": video, "timestamp": 1.5}),
    )
    .await;
    let retry: i64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    let now = chrono::Utc::now();
    let midnight = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    assert!(
        (retry - (midnight - now).num_seconds()).abs() <= 5,
        "until midnight UTC: {retry}"
    );
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "QUOTA_DAILY_EXCEEDED").await;
    // a paid job is not held back by the free quota
    let r = job(
        &app,
        &user,
        "music",
        json!({"video_id": video, "start_time": 0.0, "end_time": 1.0, "preset": "arcade"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text().await);
    app.stop().await;
}

#[tokio::test]
async fn a_frames_batch_beyond_the_free_slots_is_refused_whole() {
    let app = spawn_app_with(no_worker(), &[("LOKIZ_JOBS_MAX_ACTIVE_FREE", "3")]).await;
    let user = app.register("batcher").await;
    let (video, _) = app.upload_video(&user, None).await;
    let r = app
        .post(
            "/v1/ai/capture-frames",
            json!({"video_id": video, "timestamps": [0.5, 1.0, 1.5, 2.0, 2.5]}),
            Some(&user.access_token),
        )
        .await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED").await;
    // the frames requested before the limit were canceled: none stays queued
    app.eventually(10, "the batch's frames canceled", || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ai_jobs WHERE status IN ('queued', 'processing')",
        )
        .fetch_one(&app.pool)
        .await
        .expect("count");
        let canceled: i64 =
            sqlx::query_scalar("SELECT count(*) FROM ai_jobs WHERE status = 'canceled'")
                .fetch_one(&app.pool)
                .await
                .expect("count");
        open == 0 && canceled == 3
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_reservation_whose_job_was_never_recorded_is_released_by_the_sweeper() {
    let app = spawn_app_with(Components::ALL, &[("LOKIZ_JOBS_ORPHAN_AFTER_SECS", "1")]).await;
    let user = app.register("orphaned").await;
    let (video, _) = app.upload_media(&user, (320, 568), 2.0).await;
    // a real job: reserved, recorded, run; never touched by the sweeper
    let r = job(
        &app,
        &user,
        "template",
        json!({"video_id": video, "timestamp": 1.0}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let live: Value = r.json().await.expect("job");
    // the request that died between its two commands: a reservation only
    let orphan = Uuid::now_v7();
    let limits = app.config.jobs.limits();
    app.ctx
        .store
        .wallets
        .execute(
            &user.id.to_string(),
            WalletCommand::AdmitJob {
                job_id: orphan,
                cost: 30,
                limits,
                at: chrono::Utc::now(),
            },
            HashMap::new(),
        )
        .await
        .expect("reserved");
    app.eventually(20, "the orphan's 30 credits back", || async {
        let refunded: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE event_type = 'CreditsRefunded'
                AND payload->'CreditsRefunded'->>'job_id' = $1",
        )
        .bind(orphan.to_string())
        .fetch_one(&app.pool)
        .await
        .expect("count");
        refunded == 1
    })
    .await;
    // the job id is closed: a late RequestJob of the dead request is refused
    let late = app
        .ctx
        .store
        .ai_jobs
        .execute(
            &orphan.to_string(),
            AiJobCommand::RequestJob {
                job_id: orphan,
                owner_id: user.id,
                source_video_id: video,
                params: JobParams::CaptureFrame { at_secs: 1.0 },
                at: chrono::Utc::now(),
            },
            HashMap::new(),
        )
        .await;
    assert!(
        matches!(
            late,
            Err(cqrs_es::AggregateError::UserError(
                JobError::AlreadyRequested
            ))
        ),
        "{late:?}"
    );
    // the live job was settled by its outcome, never refunded by the sweeper
    let live_id = live["job_id"].as_str().expect("id").to_owned();
    app.eventually(60, "the live job settled", || async {
        let settled: Vec<String> = sqlx::query_scalar(
            "SELECT event_type FROM events WHERE event_type IN ('CreditsCaptured', 'CreditsRefunded')
                AND coalesce(payload->'CreditsCaptured'->>'job_id', payload->'CreditsRefunded'->>'job_id') = $1",
        )
        .bind(&live_id)
        .fetch_all(&app.pool)
        .await
        .expect("events");
        settled == ["CreditsCaptured"]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (balance, reserved) = balance(&app, &user).await;
    assert_eq!(
        (balance, reserved),
        (80, 0),
        "20 spent on the live job, the orphan's 30 back"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_job_past_its_time_limit_fails_refunded_and_publishes_nothing() {
    let app = spawn_app_with(
        Components::ALL,
        &[("LOKIZ_JOBS_TIME_LIMITS", "glitch_animate=0.2")],
    )
    .await;
    let user = app.register("slowpoke").await;
    let (video, _) = app.upload_media(&user, (320, 568), 3.0).await;
    let r = job(
        &app,
        &user,
        "glitch/animate",
        json!({"video_id": video, "start_time": 0.0, "end_time": 3.0, "preset": "hue-jump"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.expect("job")["job_id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.eventually(30, "the job failed", || {
        let (app, user, id) = (&app, &user, &id);
        async move {
            let j: Value = app
                .get(&format!("/v1/ai/jobs/{id}"), Some(&user.access_token), None)
                .await
                .json()
                .await
                .unwrap_or_default();
            j["status"] == "failed"
        }
    })
    .await;
    let job_view: Value = app
        .get(&format!("/v1/ai/jobs/{id}"), Some(&user.access_token), None)
        .await
        .json()
        .await
        .expect("job");
    assert_eq!(job_view["error_code"], "TIMED_OUT", "{job_view}");
    assert!(job_view["output_video_id"].is_null());
    app.eventually(20, "the 30 credits refunded", || async {
        balance(&app, &user).await == (100, 0)
    })
    .await;
    let published: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'GlitchedFrom'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(published, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_job_publishing_its_output_can_no_longer_be_canceled() {
    let app = spawn_app_with(no_worker(), &[]).await;
    let user = app.register("publisher").await;
    let (video, _) = app.upload_video(&user, None).await;
    let r = job(
        &app,
        &user,
        "glitch/animate",
        json!({"video_id": video, "start_time": 0.0, "end_time": 2.0, "preset": "hue-jump"}),
    )
    .await;
    let id = r.json::<Value>().await.expect("job")["job_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // a worker took the job and has its output: it fences out cancels
    let now = chrono::Utc::now();
    for command in [
        AiJobCommand::StartJob {
            worker: "w".into(),
            lease_until: now + chrono::Duration::seconds(60),
            at: now,
        },
        AiJobCommand::BeginPublish {
            attempt: 1,
            at: now,
        },
    ] {
        app.ctx
            .store
            .ai_jobs
            .execute(&id, command, HashMap::new())
            .await
            .expect("worker command");
    }
    let r = app
        .client
        .delete(app.url(&format!("/v1/ai/jobs/{id}")))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .expect("cancel");
    expect_error(r, StatusCode::CONFLICT, "JOB_PUBLISHING").await;
    let canceled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'JobCanceled'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(canceled, 0);
    app.stop().await;
}
