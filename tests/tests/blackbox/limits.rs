//! Rate limits, replayed as an abuser would: one address hammering the API,
//! one user hammering it, password guessing, sign-up floods, view inflation,
//! and the same flood spread over two API processes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lokiz_api::Components;
use lokiz_tests::cluster::ServeProcess;
use lokiz_tests::{expect_error, spawn_app_with, Api};
use reqwest::{Response, StatusCode};
use serde_json::json;

fn header(r: &Response, name: &str) -> i64 {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in {:?}", r.headers()))
}

/// Sleeps until a fresh `window`-second window has just begun, so a test's
/// burst falls into one window.
async fn at_window_start(window: u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let into = now % (window * 1000);
    tokio::time::sleep(Duration::from_millis(window * 1000 - into + 20)).await;
}

async fn packages(api: &Api, token: Option<&str>) -> Response {
    api.get("/v1/credits/packages", token, None).await
}

#[tokio::test]
async fn an_address_over_its_limit_gets_429_with_headers_then_recovers() {
    let app = spawn_app_with(Components::ALL, &[("LOKIZ_RATE_LIMIT_ANONYMOUS", "5/3s")]).await;
    at_window_start(3).await;
    for expected_remaining in (0..5).rev() {
        let r = packages(&app, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-limit"), 5);
        assert_eq!(header(&r, "x-ratelimit-remaining"), expected_remaining);
    }
    let r = packages(&app, None).await;
    let reset = header(&r, "x-ratelimit-reset");
    let retry_after = header(&r, "retry-after");
    assert_eq!(header(&r, "x-ratelimit-remaining"), 0);
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        reset > now - 1 && reset <= now + 3,
        "reset {reset}, now {now}"
    );
    let err = expect_error(r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED").await;
    assert_eq!(err["details"]["retry_after"], retry_after);
    // also a write is refused, and records nothing
    let before = app.head().await;
    let r = app
        .post(
            "/v1/auth/register",
            json!({"username": "late", "email": "late@example.com", "password": "password123"}),
            None,
        )
        .await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED").await;
    assert_eq!(app.head().await, before);
    // the next window lets it through again
    tokio::time::sleep(Duration::from_secs(retry_after as u64) + Duration::from_millis(100)).await;
    let r = packages(&app, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 4);
    app.stop().await;
}

#[tokio::test]
async fn a_signed_in_user_has_a_budget_of_its_own() {
    let app = spawn_app_with(Components::ALL, &[("LOKIZ_RATE_LIMIT_USER", "4/1h")]).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    for _ in 0..4 {
        assert_eq!(
            packages(&app, Some(&alice.access_token)).await.status(),
            StatusCode::OK
        );
    }
    let r = packages(&app, Some(&alice.access_token)).await;
    assert!(header(&r, "retry-after") >= 1);
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED").await;
    // another user, and anonymous callers from the same address, are not hit
    let r = packages(&app, Some(&bob.access_token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "x-ratelimit-limit"), 4);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 3);
    assert_eq!(packages(&app, None).await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn password_guessing_is_limited_per_account_and_per_address() {
    let app = spawn_app_with(
        Components::ALL,
        &[
            ("LOKIZ_RATE_LIMIT_LOGIN_ACCOUNT", "3/1h"),
            ("LOKIZ_RATE_LIMIT_LOGIN_IP", "6/1h"),
        ],
    )
    .await;
    app.register("victim").await;
    app.register("other").await;
    let login = |email: &'static str, password: &'static str| {
        app.post(
            "/v1/auth/login",
            json!({"email": email, "password": password}),
            None,
        )
    };
    for _ in 0..3 {
        let r = login("victim@example.com", "wrong-guess").await;
        expect_error(r, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    }
    // the account is closed to further tries, even the right password
    let r = login("VICTIM@example.com", "password123").await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED").await;
    // another account still logs in from here…
    let r = login("other@example.com", "password123").await;
    assert_eq!(r.status(), StatusCode::OK);
    // …until the address spent its own budget (6 tries in all)
    let r = login("nobody@example.com", "x-password").await;
    expect_error(r, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    let r = login("other@example.com", "password123").await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED").await;
    app.stop().await;
}

#[tokio::test]
async fn sign_up_floods_are_cut_and_store_nothing() {
    let app = spawn_app_with(Components::ALL, &[("LOKIZ_RATE_LIMIT_SIGNUP", "2/1h")]).await;
    app.register("first").await;
    app.register("second").await;
    let before = app.head().await;
    let r = app
        .post(
            "/v1/auth/register",
            json!({"username": "third", "email": "third@example.com", "password": "password123"}),
            None,
        )
        .await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED").await;
    assert_eq!(app.head().await, before, "no event recorded");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM identities")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(users, 2);
    app.stop().await;
}

#[tokio::test]
async fn views_from_one_address_count_a_few_times_per_video() {
    let app = spawn_app_with(Components::ALL, &[("LOKIZ_RATE_LIMIT_VIEWS", "2/1h")]).await;
    let owner = app.register("creator").await;
    let (first, _) = app.upload_video(&owner, None).await;
    let (second, _) = app.upload_video(&owner, None).await;
    let view = |id: uuid::Uuid| {
        let path = format!("/v1/videos/{id}/view");
        let api = &app;
        async move { api.post(&path, json!({}), None).await }
    };
    for _ in 0..2 {
        assert_eq!(view(first).await.status(), StatusCode::OK);
    }
    let before = app.head().await;
    expect_error(
        view(first).await,
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMIT_EXCEEDED",
    )
    .await;
    assert_eq!(
        app.head().await,
        before,
        "the refused view recorded nothing"
    );
    assert_eq!(view(second).await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn the_limit_holds_across_two_api_processes() {
    let limits = [("LOKIZ_RATE_LIMIT_ANONYMOUS", "10/1h")];
    let app = spawn_app_with(Components::ALL, &limits).await;
    let a = ServeProcess::start(&app.config, &limits).await;
    let b = ServeProcess::start(&app.config, &limits).await;
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..30 {
        let api = if i % 2 == 0 { &a.api } else { &b.api };
        match packages(api, None).await.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, refused), (10, 20), "10 in all, not 10 per process");
    // and the test's own server (a third process's limiter) agrees
    let r = packages(&app, None).await;
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED").await;
    a.stop().await;
    b.stop().await;
    app.stop().await;
}
