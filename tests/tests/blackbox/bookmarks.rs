//! Bookmarks: saved videos, private to the user who saved them.

use lokiz_tests::{expect_error, position_of, spawn_app, Registered, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    who: &Registered,
    min: i64,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(&who.access_token)
        .header("X-Lokiz-Min-Position", min.to_string())
        .send()
        .await
        .expect("request")
}

fn ids(page: &Value) -> Vec<String> {
    page["videos"]
        .as_array()
        .expect("videos")
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn saved_videos_are_listed_checked_paged_and_private() {
    let app = spawn_app().await;
    let creator = app.register("creator").await;
    let saver = app.register("saver").await;
    let stranger = app.register("stranger").await;
    let mut videos = Vec::new();
    let mut head = 0;
    for _ in 0..3 {
        let (v, pos) = app.upload_video(&creator, None).await;
        videos.push(v);
        head = head.max(pos);
    }
    // save all three (the second save of one changes nothing)
    for v in &videos {
        let r = send(
            &app,
            Method::POST,
            &format!("/v1/bookmarks/videos/{v}"),
            &saver,
            head,
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        head = head.max(position_of(&r));
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (body["bookmarked"].clone(), body["changed"].clone()),
            (json!(true), json!(true))
        );
    }
    let r = send(
        &app,
        Method::POST,
        &format!("/v1/bookmarks/videos/{}", videos[0]),
        &saver,
        head,
    )
    .await;
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["changed"], false);

    // newest saved first, two per page, then the rest
    let first: Value = send(&app, Method::GET, "/v1/bookmarks/?limit=2", &saver, head)
        .await
        .json()
        .await
        .unwrap();
    let expected: Vec<String> = videos.iter().rev().map(Uuid::to_string).collect();
    assert_eq!(ids(&first), expected[..2].to_vec(), "{first}");
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = send(
        &app,
        Method::GET,
        &format!("/v1/bookmarks/?limit=2&cursor={cursor}"),
        &saver,
        head,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(ids(&second), expected[2..].to_vec());
    assert_eq!(second["has_more"], false);

    // private to the saver: others see no bookmarks and check false
    let theirs: Value = send(&app, Method::GET, "/v1/bookmarks/", &stranger, head)
        .await
        .json()
        .await
        .unwrap();
    assert!(ids(&theirs).is_empty());
    let check: Value = send(
        &app,
        Method::GET,
        &format!("/v1/bookmarks/videos/{}/check", videos[0]),
        &stranger,
        head,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(check["bookmarked"], false);
    let check: Value = send(
        &app,
        Method::GET,
        &format!("/v1/bookmarks/videos/{}/check", videos[0]),
        &saver,
        head,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(check["bookmarked"], true);
    let r = app.get("/v1/bookmarks/", None, None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;

    // a saved video made private leaves the saver's list; a private one
    // cannot be saved by others
    let r = app
        .patch(
            &format!("/v1/videos/{}", videos[1]),
            json!({"visibility": "private"}),
            &creator.access_token,
        )
        .await;
    head = head.max(position_of(&r));
    let list: Value = send(&app, Method::GET, "/v1/bookmarks/", &saver, head)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        ids(&list),
        vec![videos[2].to_string(), videos[0].to_string()]
    );
    let r = send(
        &app,
        Method::POST,
        &format!("/v1/bookmarks/videos/{}", videos[1]),
        &stranger,
        head,
    )
    .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // removing: once, then nothing to remove
    let r = send(
        &app,
        Method::DELETE,
        &format!("/v1/bookmarks/videos/{}", videos[0]),
        &saver,
        head,
    )
    .await;
    head = head.max(position_of(&r));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["bookmarked"].clone(), body["changed"].clone()),
        (json!(false), json!(true))
    );
    let r = send(
        &app,
        Method::DELETE,
        &format!("/v1/bookmarks/videos/{}", videos[0]),
        &saver,
        head,
    )
    .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["changed"], false);
    let list: Value = send(&app, Method::GET, "/v1/bookmarks/", &saver, head)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&list), vec![videos[2].to_string()]);
    // a rebuild from the store reproduces the bookmarks row for row
    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}
