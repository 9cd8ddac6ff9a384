//! Shares: a deep link per share, counted once per person and channel,
//! `share_count` in video reads, per-channel counts, the landing page.

use lokiz_tests::{expect_error, position_of, spawn_app};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn shares_count_once_per_person_and_channel_and_link_to_a_landing_page() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let (video, _) = app
        .upload_video(&alice, Some("<script>alert(1)</script> tricks"))
        .await;
    let path = format!("/v1/videos/{video}/share");
    let mut head = 0;
    let mut last = Value::Null;
    for (who, channel, count, changed) in [
        (&bob, "kakao", 1, true),
        (&bob, "kakao", 1, false),
        (&bob, "link", 2, true),
        (&carol, "link", 3, true),
    ] {
        let r = app
            .post(&path, json!({"channel": channel}), Some(&who.access_token))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        head = head.max(position_of(&r));
        last = r.json().await.unwrap();
        assert_eq!(last["share_count"], count, "{channel}: {last}");
        assert_eq!(last["changed"], changed);
        assert_eq!(last["app_url"], format!("lokiz://videos/{video}"));
    }
    let r = app
        .post(
            &path,
            json!({"channel": "myspace"}),
            Some(&bob.access_token),
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = app.post(&path, json!({"channel": "link"}), None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;

    let counts: Value = app
        .get(&format!("/v1/videos/{video}/share-count"), None, Some(head))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        counts,
        json!({"video_id": video, "share_count": 3, "channels": {"kakao": 1, "link": 2}})
    );
    let read: Value = app
        .get(&format!("/v1/videos/{video}"), None, Some(head))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["share_count"], 3);

    // the link opens a page with previews and the app link; text is escaped
    let url = last["share_url"].as_str().unwrap();
    assert!(
        url.contains(&format!("/v/{video}?utm_source=link")),
        "{url}"
    );
    let page = app
        .client
        .get(url.replace(&url[..url.find("/v/").unwrap()], &app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("og:title") && html.contains(&format!("lokiz://videos/{video}")));
    assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));

    // only public videos are shared
    let r = app
        .patch(
            &format!("/v1/videos/{video}"),
            json!({"visibility": "private"}),
            &alice.access_token,
        )
        .await;
    head = head.max(position_of(&r));
    let r = app
        .client
        .post(app.url(&path))
        .bearer_auth(&alice.access_token)
        .header("X-Lokiz-Min-Position", head.to_string())
        .json(&json!({"channel": "link"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::CONFLICT, "VIDEO_PRIVATE").await;
    let r = app
        .client
        .post(app.url(&path))
        .bearer_auth(&bob.access_token)
        .header("X-Lokiz-Min-Position", head.to_string())
        .json(&json!({"channel": "link"}))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app.get(&format!("/v/{video}"), None, Some(head)).await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}
