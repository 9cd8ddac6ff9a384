//! Notifications: the seed's NotificationManager flow, coalesced likes,
//! settings, blocks, and live delivery over a WebSocket held by another API
//! process than the one that took the like.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use lokiz_tests::cluster::ServeProcess;
use lokiz_tests::{expect_error, position_of, spawn_app, Registered, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

async fn post(app: &TestApp, path: &str, body: Value, who: &Registered) -> reqwest::Response {
    app.post(path, body, Some(&who.access_token)).await
}

async fn list(app: &TestApp, who: &Registered, min: i64) -> Vec<Value> {
    let r = app
        .get("/v1/notifications/", Some(&who.access_token), Some(min))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["has_more"], false);
    assert!(body["next_cursor"].is_null());
    body["notifications"].as_array().unwrap().clone()
}

async fn unread(app: &TestApp, who: &Registered) -> Value {
    let r = app
        .get(
            "/v1/notifications/unread-count",
            Some(&who.access_token),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

fn of_type<'a>(list: &'a [Value], kind: &str) -> Vec<&'a Value> {
    list.iter().filter(|n| n["type"] == kind).collect()
}

#[tokio::test]
async fn the_notification_manager_flow_coalesces_marks_and_respects_settings_and_blocks() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let dave = app.register("dave").await;
    let (video, mut head) = app.upload_video(&alice, Some("look")).await;
    let like = format!("/v1/likes/videos/{video}");
    let comments = format!("/v1/comments/videos/{video}");
    // bob and carol like it; alice likes and comments on her own (never news)
    for who in [&bob, &carol, &alice] {
        let r = post(&app, &like, json!({}), who).await;
        assert_eq!(r.status(), StatusCode::OK);
        head = head.max(position_of(&r));
    }
    let r = post(&app, &comments, json!({"content": "mine"}), &alice).await;
    head = head.max(position_of(&r));
    let r = post(&app, &comments, json!({"content": "nice one"}), &bob).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    head = head.max(position_of(&r));
    let bobs_comment: Value = r.json().await.unwrap();
    let bobs_comment = bobs_comment["id"].as_str().unwrap().to_owned();
    // carol replies to bob: bob hears of the reply, alice of the comment
    let r = post(
        &app,
        &comments,
        json!({"content": "agreed", "parent_id": bobs_comment}),
        &carol,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    head = head.max(position_of(&r));
    let r = post(
        &app,
        &format!("/v1/follows/users/{}", alice.id),
        json!({}),
        &dave,
    )
    .await;
    head = head.max(position_of(&r));

    // 1. list: newest change first, the seed's shape
    let notes = list(&app, &alice, head).await;
    let kinds: Vec<&str> = notes.iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        vec!["follow", "comment", "comment", "like"],
        "{notes:#?}"
    );
    let liked = of_type(&notes, "like")[0];
    assert_eq!(liked["actor_count"], 2);
    assert_eq!(liked["other_count"], 1);
    assert_eq!(
        liked["actor"]["id"],
        carol.id.to_string(),
        "the latest liker"
    );
    assert_eq!(liked["message"], "carol and 1 other liked your video");
    assert_eq!(liked["video_id"], video.to_string());
    assert_eq!(liked["is_read"], false);
    for n in &notes {
        for key in [
            "id",
            "type",
            "actor",
            "actor_count",
            "message",
            "is_read",
            "created_at",
            "cursor",
        ] {
            assert!(n.get(key).is_some(), "{key} in {n}");
        }
        assert_ne!(
            n["actor"]["id"],
            alice.id.to_string(),
            "own actions never notify"
        );
    }
    let bobs = list(&app, &bob, head).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["type"], "reply");
    assert_eq!(bobs[0]["message"], "carol replied to your comment");
    assert_eq!(unread(&app, &alice).await, json!({"unread_count": 4}));

    // 2. batch-mark-read: only the caller's unread ones count
    let follow_id = of_type(&notes, "follow")[0]["id"].clone();
    let comment_ids: Vec<Value> = of_type(&notes, "comment")
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    let ids = json!([liked["id"], comment_ids[0], Uuid::new_v4(), bobs[0]["id"]]);
    let r = post(
        &app,
        "/v1/notifications/batch-mark-read",
        json!({"notification_ids": ids}),
        &alice,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"marked_count": 2, "success": true})
    );
    let r = post(
        &app,
        "/v1/notifications/batch-mark-read",
        json!({"notification_ids": ids}),
        &alice,
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"marked_count": 0, "success": true})
    );
    // 3. unread-count, at once (the marks answered once the read model had them)
    assert_eq!(unread(&app, &alice).await, json!({"unread_count": 2}));
    assert_eq!(
        unread(&app, &bob).await,
        json!({"unread_count": 1}),
        "bob's stays unread"
    );
    let r = post(
        &app,
        "/v1/notifications/batch-mark-read",
        json!({"notification_ids": (0..101).map(|_| Uuid::new_v4()).collect::<Vec<_>>()}),
        &alice,
    )
    .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;

    // one by one, and all
    let r = post(
        &app,
        &format!("/v1/notifications/{}/read", follow_id.as_str().unwrap()),
        json!({}),
        &alice,
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["marked_count"], 1);
    let r = post(
        &app,
        &format!("/v1/notifications/{}/read", bobs[0]["id"].as_str().unwrap()),
        json!({}),
        &alice,
    )
    .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = post(&app, "/v1/notifications/read-all", json!({}), &alice).await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"marked_count": 1, "success": true})
    );
    assert_eq!(unread(&app, &alice).await, json!({"unread_count": 0}));

    // a like after the read ones starts a new notification
    let r = post(&app, &like, json!({}), &dave).await;
    head = head.max(position_of(&r));
    let notes = list(&app, &alice, head).await;
    let likes = of_type(&notes, "like");
    assert_eq!(likes.len(), 2);
    assert_eq!(likes[0]["actor_count"], 1);
    assert_eq!(likes[0]["message"], "dave liked your video");

    // settings: likes off, then a like notifies nobody
    let r = app
        .patch(
            "/v1/notifications/settings",
            json!({"like": false}),
            &alice.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"like": false, "comment": true, "reply": true, "follow": true, "glitch": true, "ai_job": true})
    );
    for bad in [json!({"bogus": true}), json!({}), json!({"like": "no"})] {
        let r = app
            .patch("/v1/notifications/settings", bad, &alice.access_token)
            .await;
        expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    }
    let erin = app.register("erin").await;
    let r = post(&app, &like, json!({}), &erin).await;
    head = head.max(position_of(&r));
    assert_eq!(of_type(&list(&app, &alice, head).await, "like").len(), 2);
    let settings: Value = app
        .get(
            "/v1/notifications/settings",
            Some(&alice.access_token),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(settings["like"], false);

    // a block hides what the other did, and stops what they do next
    let r = post(
        &app,
        &format!("/v1/blocks/users/{}", dave.id),
        json!({}),
        &alice,
    )
    .await;
    head = head.max(position_of(&r));
    let notes = list(&app, &alice, head).await;
    assert!(
        notes
            .iter()
            .all(|n| n["actor"]["id"] != dave.id.to_string()),
        "dave's follow and like are hidden: {notes:#?}"
    );

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &str, token: Option<&str>, query: &str) -> Socket {
    let url = format!(
        "{}/v1/notifications/ws{query}",
        base.replacen("http", "ws", 1)
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(t) = token {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("socket opens");
    socket
}

/// The next message that is not a heartbeat.
async fn next(socket: &mut Socket, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, socket.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("a message");
        if let Message::Text(text) = m {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] != "heartbeat" {
                return v;
            }
        }
    }
}

/// Messages until `want` notifications arrived.
async fn notifications(socket: &mut Socket, want: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < want {
        let m = next(socket, Duration::from_secs(10)).await;
        if m["type"] == "notification" {
            got.push(m["notification"].clone());
        }
    }
    got
}

#[tokio::test]
async fn a_like_reaches_a_socket_on_another_process_and_a_reconnect_resumes() {
    let app = spawn_app().await;
    // a second API process: it holds the socket, the first takes the like
    let other = ServeProcess::start(&app.config, &[("LOKIZ_WS_HEARTBEAT_MS", "500")]).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let (video, _) = app.upload_video(&alice, None).await;

    let mut socket = connect(&other.api.address, Some(&alice.access_token), "").await;
    assert_eq!(
        next(&mut socket, Duration::from_secs(5)).await,
        json!({"type": "unread_count", "unread_count": 0})
    );
    let sent = Instant::now();
    let r = post(&app, &format!("/v1/likes/videos/{video}"), json!({}), &bob).await;
    assert_eq!(r.status(), StatusCode::OK);
    let m = next(&mut socket, Duration::from_secs(5)).await;
    let took = sent.elapsed();
    assert_eq!(m["type"], "notification", "{m}");
    assert_eq!(m["notification"]["type"], "like");
    assert_eq!(m["notification"]["actor"]["id"], bob.id.to_string());
    assert!(took < Duration::from_secs(1), "the like took {took:?}");
    assert_eq!(
        next(&mut socket, Duration::from_secs(5)).await,
        json!({"type": "unread_count", "unread_count": 1})
    );
    let since = m["notification"]["cursor"].as_str().unwrap().to_owned();
    socket.close(None).await.unwrap();

    // while no socket is open: a comment and a follow
    post(
        &app,
        &format!("/v1/comments/videos/{video}"),
        json!({"content": "hey"}),
        &bob,
    )
    .await;
    post(
        &app,
        &format!("/v1/follows/users/{}", alice.id),
        json!({}),
        &bob,
    )
    .await;
    app.eventually(10, "both notified", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications WHERE user_id = $1")
            .bind(alice.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        n == 3
    })
    .await;

    // a browser signs in with its first message and resumes with `since`
    let mut socket = connect(&other.api.address, None, &format!("?since={since}")).await;
    socket
        .send(Message::Text(
            json!({"type": "auth", "token": alice.access_token})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let missed = notifications(&mut socket, 2).await;
    let kinds: Vec<&str> = missed.iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        vec!["comment", "follow"],
        "what the closed socket missed, in order"
    );
    // heartbeats keep coming
    let beat = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Ok(Message::Text(t))) = socket.next().await {
                if t.contains("heartbeat") {
                    return;
                }
            }
        }
    })
    .await;
    assert!(beat.is_ok(), "a heartbeat within the interval");

    // a wrong first message closes the socket; a token in the URL is refused
    let mut stranger = connect(&other.api.address, None, "").await;
    stranger.send(Message::Text("hello".into())).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stranger.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an unsigned socket is closed");
    let r = other
        .api
        .get(
            &format!("/v1/notifications/ws?token={}", alice.access_token),
            None,
            None,
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = other
        .api
        .get("/v1/notifications/ws", Some(&alice.access_token), None)
        .await;
    expect_error(r, StatusCode::BAD_REQUEST, "WEBSOCKET_REQUIRED").await;

    socket.close(None).await.unwrap();
    other.stop().await;
    app.stop().await;
}
