//! Creator tools (issue 14): a video's stats per day (owner only).

use lokiz_tests::{expect_error, position_of, spawn_app, Registered, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
    min: i64,
) -> reqwest::Response {
    let mut req = app
        .client
        .request(method, app.url(path))
        .header("X-Lokiz-Min-Position", min.to_string());
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn stats_count_views_likes_and_comments_per_day_for_the_owner_only() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let (video, mut head) = app.upload_video(&alice, Some("count me")).await;
    let token = |u: &Registered| Some(u.access_token.clone());

    // views: bob and carol count (twice each: once), the owner never does
    for who in [&alice, &bob, &bob, &carol] {
        let r = app
            .post(
                &format!("/v1/videos/{video}/view"),
                json!({}),
                token(who).as_deref(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        // (a view that does not count records nothing: no position)
        if r.headers().contains_key("x-lokiz-position") {
            head = head.max(position_of(&r));
        }
    }
    // likes: bob and carol like, carol takes hers back: net 1 today
    for (who, method) in [
        (&bob, reqwest::Method::POST),
        (&carol, reqwest::Method::POST),
        (&carol, reqwest::Method::DELETE),
    ] {
        let r = send(
            &app,
            method,
            &format!("/v1/likes/videos/{video}"),
            Some(json!({})),
            Some(&who.access_token),
            head,
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        head = head.max(position_of(&r));
    }
    // comments: three posted, one deleted: net 2 today
    let mut comments = Vec::new();
    for (who, text) in [(&bob, "nice"), (&carol, "wow"), (&bob, "again")] {
        let r = app
            .post(
                &format!("/v1/comments/videos/{video}"),
                json!({"content": text}),
                Some(&who.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        head = head.max(position_of(&r));
        let body: Value = r.json().await.unwrap();
        let id = body["comment_id"]
            .as_str()
            .or_else(|| body["comment"]["id"].as_str())
            .or_else(|| body["id"].as_str())
            .unwrap()
            .to_owned();
        comments.push(id);
    }
    let r = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/comments/{}", comments[1]),
        None,
        Some(&carol.access_token),
        head,
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    head = head.max(position_of(&r));

    let stats = |days: Option<&str>, who: Option<&Registered>| {
        let path = match days {
            Some(d) => format!("/v1/videos/{video}/stats?days={d}"),
            None => format!("/v1/videos/{video}/stats"),
        };
        let t = who.map(|u| u.access_token.clone());
        let app = &app;
        async move { app.get(&path, t.as_deref(), Some(head)).await }
    };
    let r = stats(Some("7"), Some(&alice)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let s: Value = r.json().await.unwrap();
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(s["days"], 7);
    assert_eq!(s["to"], today);
    for (series, field, today_count) in [
        ("views_by_day", "views", 2),
        ("likes_by_day", "likes", 1),
        ("comments_by_day", "comments", 2),
        ("glitches_by_day", "glitches", 0),
    ] {
        let days = s[series].as_array().unwrap();
        assert_eq!(days.len(), 7, "{series}: one entry per day");
        // oldest first, today last; the days before had nothing
        assert_eq!(days[6], json!({"date": today, field: today_count}), "{s}");
        for d in &days[..6] {
            assert_eq!(d[field], 0, "{series}: {d}");
        }
        assert_eq!(s["totals"][field], today_count);
    }
    assert!(s.get("demographics").is_none() && s.get("traffic_sources").is_none());
    let r = stats(None, Some(&alice)).await;
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["views_by_day"].as_array().unwrap().len(), 30);
    assert_eq!(s["totals"]["views"], 2);

    // another user, even one who engaged with the video, sees no stats
    let r = stats(Some("7"), Some(&bob)).await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = stats(Some("7"), None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    for bad in ["0", "91", "seven", "-1", ""] {
        let r = stats(Some(bad), Some(&alice)).await;
        let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
        assert_eq!(e["details"]["fields"][0]["field"], "days", "{bad}");
    }
    let r = app
        .get(
            &format!("/v1/videos/{}/stats", Uuid::new_v4()),
            Some(&alice.access_token),
            None,
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}
