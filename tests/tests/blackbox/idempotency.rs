//! `Idempotency-Key` on command POSTs: a retry gets the first answer back and
//! records nothing new.

use lokiz_tests::{expect_error, position_of, spawn_app, TestApp};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

const REPLAYED: &str = "idempotent-replayed";

async fn post_keyed(
    app: &TestApp,
    path: &str,
    body: &Value,
    token: Option<&str>,
    key: &str,
) -> Response {
    let mut req = app
        .client
        .post(app.url(path))
        .header("Idempotency-Key", key)
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request")
}

fn replayed(resp: &Response) -> bool {
    resp.headers()
        .get(REPLAYED)
        .map(|v| v == "true")
        .unwrap_or(false)
}

async fn count(app: &TestApp, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

fn upload_body() -> Value {
    json!({"filename": "clip.mp4", "content_type": "video/mp4", "file_size": 64})
}

#[tokio::test]
async fn idempotency_retry_replays_the_first_answer() {
    let app = spawn_app().await;
    let user = app.register("retrier").await;
    let body = upload_body();
    let token = Some(user.access_token.as_str());

    let first = post_keyed(&app, "/v1/videos/upload-url", &body, token, "upload-1").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(!replayed(&first));
    let first_position = position_of(&first);
    let first_body: Value = first.json().await.unwrap();

    let second = post_keyed(&app, "/v1/videos/upload-url", &body, token, "upload-1").await;
    assert_eq!(second.status(), StatusCode::OK);
    assert!(replayed(&second), "Idempotent-Replayed on the retry");
    assert_eq!(position_of(&second), first_position);
    assert!(second.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let second_body: Value = second.json().await.unwrap();
    assert_eq!(second_body, first_body, "the same video, the same URL");
    assert_eq!(count(&app, "UploadRequested").await, 1);

    // without the key the same body is a new request: a second video
    let third = app.post("/v1/videos/upload-url", body, token).await;
    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(count(&app, "UploadRequested").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_concurrent_retries_run_the_command_once() {
    let app = spawn_app().await;
    let user = app.register("racer").await;
    let body = upload_body();
    let token = Some(user.access_token.as_str());
    let (a, b) = tokio::join!(
        post_keyed(&app, "/v1/videos/upload-url", &body, token, "race"),
        post_keyed(&app, "/v1/videos/upload-url", &body, token, "race"),
    );
    let mut ok = 0;
    for resp in [a, b] {
        match resp.status() {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {
                assert_eq!(resp.headers()["retry-after"], "1");
                expect_error(resp, StatusCode::CONFLICT, "IDEMPOTENCY_IN_PROGRESS").await;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 1);
    assert_eq!(count(&app, "UploadRequested").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_like_and_comment_are_recorded_once() {
    let app = spawn_app().await;
    let owner = app.register("owner").await;
    let fan = app.register("fan").await;
    let (video, _) = app.upload_video(&owner, Some("clip")).await;

    // like
    let path = format!("/v1/likes/videos/{video}");
    let token = Some(fan.access_token.as_str());
    let first = post_keyed(&app, &path, &json!({}), token, "like-1").await;
    assert_eq!(first.status(), StatusCode::OK);
    let first_body: Value = first.json().await.unwrap();
    assert_eq!(first_body["changed"], true);
    let second = post_keyed(&app, &path, &json!({}), token, "like-1").await;
    assert_eq!(second.status(), StatusCode::OK);
    assert!(replayed(&second));
    assert_eq!(second.json::<Value>().await.unwrap(), first_body);
    assert_eq!(count(&app, "VideoLiked").await, 1);

    // comment
    let path = format!("/v1/comments/videos/{video}");
    let body = json!({"content": "hi"});
    let first = post_keyed(&app, &path, &body, token, "comment-1").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first_body: Value = first.json().await.unwrap();
    let second = post_keyed(&app, &path, &body, token, "comment-1").await;
    assert_eq!(second.status(), StatusCode::CREATED);
    assert!(replayed(&second));
    let second_body: Value = second.json().await.unwrap();
    assert_eq!(second_body["id"], first_body["id"]);
    assert_eq!(second_body, first_body);
    assert_eq!(count(&app, "CommentPosted").await, 1);

    // a new key is a new comment
    let third = post_keyed(&app, &path, &body, token, "comment-2").await;
    assert_eq!(third.status(), StatusCode::CREATED);
    assert!(!replayed(&third));
    let third_body: Value = third.json().await.unwrap();
    assert_ne!(third_body["id"], first_body["id"]);
    assert_eq!(count(&app, "CommentPosted").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_key_misuse_and_scopes() {
    let app = spawn_app().await;
    let owner = app.register("keyowner").await;
    let other = app.register("keyother").await;
    let (video, _) = app.upload_video(&owner, None).await;
    let path = format!("/v1/comments/videos/{video}");
    let token = Some(owner.access_token.as_str());

    let first = post_keyed(&app, &path, &json!({"content": "one"}), token, "k").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first_body: Value = first.json().await.unwrap();

    // same key, other body → 422
    let before = app.event_count().await;
    expect_error(
        post_keyed(&app, &path, &json!({"content": "two"}), token, "k").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    // same key, other path → 422
    expect_error(
        post_keyed(
            &app,
            &format!("/v1/likes/videos/{video}"),
            &json!({}),
            token,
            "k",
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    assert_eq!(app.event_count().await, before);

    // bad keys → 400 in the envelope, nothing runs
    for bad in ["x".repeat(300), "has space".into(), "tab\there".into()] {
        expect_error(
            post_keyed(&app, &path, &json!({"content": "bad"}), token, &bad).await,
            StatusCode::BAD_REQUEST,
            "INVALID_IDEMPOTENCY_KEY",
        )
        .await;
    }
    let empty = app
        .client
        .post(app.url(&path))
        .header("Idempotency-Key", "")
        .bearer_auth(&owner.access_token)
        .json(&json!({"content": "bad"}))
        .send()
        .await
        .unwrap();
    expect_error(empty, StatusCode::BAD_REQUEST, "INVALID_IDEMPOTENCY_KEY").await;
    let longest = "k".repeat(255);
    let ok = post_keyed(&app, &path, &json!({"content": "max"}), token, &longest).await;
    assert_eq!(ok.status(), StatusCode::CREATED);
    assert_eq!(app.event_count().await, before + 1);

    // another user with the same key string: their own request
    let theirs = post_keyed(
        &app,
        &path,
        &json!({"content": "one"}),
        Some(&other.access_token),
        "k",
    )
    .await;
    assert_eq!(theirs.status(), StatusCode::CREATED);
    assert!(!replayed(&theirs));
    let theirs: Value = theirs.json().await.unwrap();
    assert_ne!(theirs["id"], first_body["id"]);
    assert_eq!(count(&app, "CommentPosted").await, 3);

    // a bad token: the handler's 401, and nothing remembered under the key
    expect_error(
        post_keyed(
            &app,
            &path,
            &json!({"content": "one"}),
            Some("not-a-token"),
            "k2",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    )
    .await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'k2'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_remembers_neither_validation_errors_nor_anonymous_keys() {
    let app = spawn_app().await;
    let user = app.register("badrequester").await;
    let token = Some(user.access_token.as_str());
    let bad = json!({"filename": "", "content_type": "image/png", "file_size": -1});
    let before = app.event_count().await;
    let first = post_keyed(&app, "/v1/videos/upload-url", &bad, token, "bad-upload").await;
    assert!(!replayed(&first));
    expect_error(first, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(app.event_count().await, before);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "a refused request is not remembered");
    // the corrected request under the same key runs, and is remembered
    let good = json!({"filename": "a.mp4", "content_type": "video/mp4", "file_size": 64});
    let second = post_keyed(&app, "/v1/videos/upload-url", &good, token, "bad-upload").await;
    assert!(!replayed(&second));
    assert_eq!(second.status(), StatusCode::OK);
    let third = post_keyed(&app, "/v1/videos/upload-url", &good, token, "bad-upload").await;
    assert!(replayed(&third));
    // anonymous requests are not keyed: nothing stored, nothing replayed
    let (video, _) = app.upload_video(&user, None).await;
    let path = format!("/v1/videos/{video}/view");
    for _ in 0..2 {
        let r = post_keyed(&app, &path, &json!({}), None, "anon-key").await;
        assert!(!replayed(&r));
        assert_eq!(r.status(), StatusCode::OK);
    }
    let anonymous: i64 =
        sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'anon-key'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(anonymous, 0);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_excluded_routes_ignore_the_key() {
    let app = spawn_app().await;
    let user = app.register("loginner").await;
    let body = json!({"email": user.email, "password": "password123"});
    let first = post_keyed(&app, "/v1/auth/login", &body, None, "login").await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = post_keyed(&app, "/v1/auth/login", &body, None, "login").await;
    assert_eq!(second.status(), StatusCode::OK);
    assert!(!replayed(&second));
    let (a, b): (Value, Value) = (first.json().await.unwrap(), second.json().await.unwrap());
    assert_ne!(
        a["refresh_token"], b["refresh_token"],
        "a fresh pair each time"
    );
    // registration is not replayed (its answer holds live tokens): a retry
    // meets the taken name instead, and still one user exists
    let body = json!({"username": "signer", "email": "signer@example.com",
                      "password": "password123"});
    let first = post_keyed(&app, "/v1/auth/register", &body, None, "signup").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let second = post_keyed(&app, "/v1/auth/register", &body, None, "signup").await;
    assert!(!replayed(&second));
    expect_error(second, StatusCode::CONFLICT, "ALREADY_EXISTS").await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_expiry_sweep_and_abandoned_claims() {
    let app = spawn_app().await;
    // an expired row, there before any keyed request: the first one sweeps it
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, method, path, request_hash, state, created_at)
         VALUES ('anonymous', 'ancient', 'POST', '/v1/x', '\\x00', 'in_flight',
                 now() - interval '25 hours')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let user = app.register("sweeper").await;
    let (video, _) = app.upload_video(&user, None).await;
    let path = format!("/v1/comments/videos/{video}");
    let token = Some(user.access_token.as_str());
    let first = post_keyed(&app, &path, &json!({"content": "a"}), token, "old").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let pool = app.pool.clone();
    app.eventually(10, "the sweep", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM idempotency_keys WHERE key = 'ancient'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
                == 0
        }
    })
    .await;

    // older than 24 h: the key is free again, even for another body
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let again = post_keyed(&app, &path, &json!({"content": "b"}), token, "old").await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert!(!replayed(&again));
    assert_eq!(count(&app, "CommentPosted").await, 2);

    // still in flight → 409 with Retry-After
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'in_flight', response_status = NULL,
                response_headers = NULL, response_body = NULL WHERE key = 'old'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let busy = post_keyed(&app, &path, &json!({"content": "b"}), token, "old").await;
    assert_eq!(busy.headers()["retry-after"], "1");
    expect_error(busy, StatusCode::CONFLICT, "IDEMPOTENCY_IN_PROGRESS").await;

    // a claim abandoned for longer than the lease is taken over
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = now() - interval '10 minutes' WHERE key = 'old'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let taken = post_keyed(&app, &path, &json!({"content": "b"}), token, "old").await;
    assert_eq!(taken.status(), StatusCode::CREATED);
    assert!(!replayed(&taken));
    let replay = post_keyed(&app, &path, &json!({"content": "b"}), token, "old").await;
    assert!(replayed(&replay));
    assert_eq!(count(&app, "CommentPosted").await, 3);
    app.stop().await;
}
