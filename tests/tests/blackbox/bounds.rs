//! How much one request may cost the server, and what it may learn:
//! read-your-writes waits are bounded in time and in number, every request
//! has a deadline, and another user's private videos stay invisible to
//! batch reads and to PATCH/DELETE probes.

use lokiz_api::Components;
use lokiz_tests::{expect_error, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A server whose read models never move (no projections): every read
/// with the position of a new command waits.
fn stalled() -> Components {
    Components {
        projections: false,
        ..Components::ALL
    }
}

#[tokio::test]
async fn a_request_past_the_deadline_is_cut_with_503() {
    let app = spawn_app_with(
        stalled(),
        &[
            // long enough for sign-up's password hashing on a loaded
            // machine, far below the 20 s consistency wait
            ("LOKIZ_REQUEST_TIMEOUT_MS", "2000"),
            ("LOKIZ_CONSISTENCY_TIMEOUT_MS", "20000"),
        ],
    )
    .await;
    let user = app.register("waiter").await;
    let started = std::time::Instant::now();
    let r = app
        .get(
            "/v1/credits/balance",
            Some(&user.access_token),
            Some(user.position),
        )
        .await;
    expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "REQUEST_TIMEOUT").await;
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(6),
        "cut at the deadline, not after the 20 s wait: {took:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn waiting_readers_are_capped() {
    let app = spawn_app_with(
        stalled(),
        &[
            ("LOKIZ_CONSISTENCY_WAITERS", "3"),
            ("LOKIZ_CONSISTENCY_TIMEOUT_MS", "1500"),
        ],
    )
    .await;
    let user = app.register("crowd").await;
    let reads = (0..8).map(|_| {
        app.get(
            "/v1/credits/balance",
            Some(&user.access_token),
            Some(user.position),
        )
    });
    let answers = futures::future::join_all(reads).await;
    let mut timeouts = 0;
    let mut refused = 0;
    for r in answers {
        let body: Value = r.json().await.expect("envelope");
        match body["error"]["code"].as_str() {
            Some("CONSISTENCY_TIMEOUT") => timeouts += 1,
            Some("SERVICE_UNAVAILABLE") => refused += 1,
            other => panic!("unexpected {other:?}: {body}"),
        }
    }
    assert_eq!(
        (timeouts, refused),
        (3, 5),
        "3 waited, the rest refused at once"
    );
    app.stop().await;
}

#[tokio::test]
async fn another_users_private_video_is_invisible_to_batch_reads_and_probes() {
    let app = spawn_app_with(Components::ALL, &[]).await;
    let owner = app.register("secretive").await;
    let other = app.register("prober").await;
    let (video, _) = app.upload_video(&owner, None).await;
    // the owner likes it, then makes it private
    let r = app
        .post(
            &format!("/v1/likes/videos/{video}"),
            json!({}),
            Some(&owner.access_token),
        )
        .await;
    assert!(r.status().is_success());
    let r = app
        .patch(
            &format!("/v1/videos/{video}"),
            json!({"visibility": "private"}),
            &owner.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let position = lokiz_tests::position_of(&r);
    let batch = |token: Option<String>| {
        let api = &app;
        async move {
            let mut req = api
                .client
                .post(api.url("/v1/videos/batch-metadata"))
                .header("X-Lokiz-Min-Position", position.to_string())
                .json(&json!({"video_ids": [video]}));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let body: Value = req.send().await.expect("batch").json().await.expect("json");
            body["videos"][video.to_string()]["like_count"].clone()
        }
    };
    assert_eq!(
        batch(Some(owner.access_token.clone())).await,
        1,
        "the owner sees it"
    );
    assert_eq!(
        batch(Some(other.access_token.clone())).await,
        0,
        "as if unknown"
    );
    assert_eq!(batch(None).await, 0);
    // PATCH and DELETE by another user: 404, as for an id that names nothing
    let r = app
        .patch(
            &format!("/v1/videos/{video}"),
            json!({"caption": "mine"}),
            &other.access_token,
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/videos/{video}")))
        .bearer_auth(&other.access_token)
        .send()
        .await
        .expect("delete");
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let nothing = uuid::Uuid::now_v7();
    let r = app
        .patch(
            &format!("/v1/videos/{nothing}"),
            json!({"caption": "x"}),
            &other.access_token,
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    app.stop().await;
}
