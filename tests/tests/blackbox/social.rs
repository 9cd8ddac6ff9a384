//! The social core through HTTP: uploads, videos, views, likes, follows,
//! comments, batch endpoints and feeds.

use std::collections::HashSet;

use lokiz_tests::{expect_error, position_of, spawn_app};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test]
async fn upload_flow_and_ownership() {
    let app = spawn_app().await;
    let owner = app.register("uploader").await;
    let other = app.register("stranger").await;

    // bad requests for an upload URL: every bad field listed, nothing stored
    let before = app.event_count().await;
    let err = expect_error(
        app.post(
            "/v1/videos/upload-url",
            json!({"filename": "", "content_type": "image/png", "file_size": 600_000_000u64}),
            Some(&owner.access_token),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let fields: HashSet<&str> = err["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        HashSet::from(["filename", "content_type", "file_size"])
    );
    assert_eq!(app.event_count().await, before);

    // the seed's shape
    let resp = app
        .post(
            "/v1/videos/upload-url",
            json!({"filename": "a.mp4", "content_type": "video/mp4", "file_size": 16,
                   "caption": "first #glitch"}),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let up: Value = resp.json().await.unwrap();
    for field in ["upload_url", "file_key", "file_url", "video_id"] {
        assert!(up[field].is_string(), "{field} in {up}");
    }
    let id = up["video_id"].as_str().unwrap().to_owned();

    // complete before the object exists → 409
    expect_error(
        app.post(
            &format!("/v1/videos/{id}/complete"),
            json!({"width": 720, "height": 1280, "actual_duration": 2.0}),
            Some(&owner.access_token),
        )
        .await,
        StatusCode::CONFLICT,
        "UPLOAD_NOT_FOUND",
    )
    .await;

    // a tampered upload URL → 403; oversize body → 413; wrong type → 415
    let url = up["upload_url"].as_str().unwrap();
    let tampered = url.replace("size=16", "size=17");
    let r = app
        .client
        .put(&tampered)
        .header("content-type", "video/mp4")
        .body(vec![0u8; 17])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .client
        .put(url)
        .header("content-type", "video/mp4")
        .body(vec![0u8; 40])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = app
        .client
        .put(url)
        .header("content-type", "video/webm")
        .body(vec![0u8; 16])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());

    // the real upload, then complete (not by someone else)
    let r = app
        .client
        .put(url)
        .header("content-type", "video/mp4")
        .body((0u8..16).collect::<Vec<u8>>())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    expect_error(
        app.post(
            &format!("/v1/videos/{id}/complete"),
            json!({"width": 720, "height": 1280, "actual_duration": 2.0}),
            Some(&other.access_token),
        )
        .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    expect_error(
        app.post(
            &format!("/v1/videos/{id}/complete"),
            json!({"width": 0, "height": "tall"}),
            Some(&owner.access_token),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let resp = app
        .post(
            &format!("/v1/videos/{id}/complete"),
            json!({"width": 720, "height": 1280, "actual_duration": 2.0}),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let pos = position_of(&resp);

    let video: Value = app
        .get(&format!("/v1/videos/{id}"), None, Some(pos))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(video["status"], "completed");
    assert_eq!(video["caption"], "first #glitch");
    assert_eq!(video["user"]["username"], "uploader");
    assert_eq!(video["width"], 720);
    // file_url streams the object, with ranges
    let r = app
        .client
        .get(video["file_url"].as_str().unwrap())
        .header("range", "bytes=4-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().to_vec(), vec![4u8, 5, 6, 7]);

    // only the owner may edit or delete
    expect_error(
        app.patch(
            &format!("/v1/videos/{id}"),
            json!({"caption": "mine"}),
            &other.access_token,
        )
        .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/videos/{id}")))
        .bearer_auth(&other.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .patch(
            &format!("/v1/videos/{id}"),
            json!({"caption": null, "visibility": "nope"}),
            &owner.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .patch(
            &format!("/v1/videos/{id}"),
            json!({"caption": "edited"}),
            &owner.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pos = position_of(&r);
    let video: Value = app
        .get(&format!("/v1/videos/{id}"), None, Some(pos))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(video["caption"], "edited");

    // deleted: 404, gone from feeds and batch-metadata
    let r = app
        .client
        .delete(app.url(&format!("/v1/videos/{id}")))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let pos = position_of(&r);
    expect_error(
        app.get(&format!("/v1/videos/{id}"), None, Some(pos)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    let feed: Value = app
        .get("/v1/videos/", None, Some(pos))
        .await
        .json()
        .await
        .unwrap();
    assert!(feed["videos"].as_array().unwrap().is_empty());
    let meta: Value = app
        .post(
            "/v1/videos/batch-metadata",
            json!({"video_ids": [id]}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta["videos"], json!({}));
    app.stop().await;
}

#[tokio::test]
async fn likes_follows_and_views_edge_cases() {
    let app = spawn_app().await;
    let owner = app.register("creator").await;
    let fan = app.register("fan").await;
    let (vid, pos) = app.upload_video(&owner, Some("hello")).await;
    let like_path = format!("/v1/likes/videos/{vid}");

    // like twice → one like; the second changes nothing
    let client = &app.client;
    let like = || async {
        client
            .post(app.url(&like_path))
            .bearer_auth(&fan.access_token)
            .header("X-Lokiz-Min-Position", pos.to_string())
            .send()
            .await
            .unwrap()
    };
    let first: Value = like().await.json().await.unwrap();
    let second = like().await;
    assert_eq!(second.status(), StatusCode::OK);
    let p = position_of(&second);
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        (first["changed"].clone(), second["changed"].clone()),
        (json!(true), json!(false))
    );
    let meta: Value = app
        .client
        .post(app.url("/v1/videos/batch-metadata"))
        .header("X-Lokiz-Min-Position", p.to_string())
        .json(&json!({"video_ids": [vid]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["videos"][vid.to_string()]["like_count"], 1);

    // unlike twice: the second changes nothing
    let r = app
        .client
        .delete(app.url(&like_path))
        .bearer_auth(&fan.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["changed"], true);
    let r = app
        .client
        .delete(app.url(&like_path))
        .bearer_auth(&fan.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["changed"], false);
    // liking what does not exist → 404
    expect_error(
        app.post(
            &format!("/v1/likes/videos/{}", Uuid::new_v4()),
            json!({}),
            Some(&fan.access_token),
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;

    // follow yourself → 422; follow twice → one follow
    expect_error(
        app.post(
            &format!("/v1/follows/users/{}", fan.id),
            json!({}),
            Some(&fan.access_token),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    app.post(
        &format!("/v1/follows/users/{}", owner.id),
        json!({}),
        Some(&fan.access_token),
    )
    .await;
    let r = app
        .post(
            &format!("/v1/follows/users/{}", owner.id),
            json!({}),
            Some(&fan.access_token),
        )
        .await;
    let p = position_of(&r);
    assert_eq!(r.json::<Value>().await.unwrap()["changed"], false);
    let profile: Value = app
        .get(&format!("/v1/users/{}", owner.id), None, Some(p))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["follower_count"], 1);
    assert_eq!(profile["video_count"], 1);
    let followers: Value = app
        .get(
            &format!("/v1/follows/users/{}/followers", owner.id),
            None,
            Some(p),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(followers["users"][0]["username"], "fan");

    // views: the owner's never count; a viewer counts once per 24 h;
    // anonymous viewers count once too
    let view = |token: Option<String>| {
        let req = app.client.post(app.url(&format!("/v1/videos/{vid}/view")));
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(
        view(Some(owner.access_token.clone())).await["counted"],
        false
    );
    assert_eq!(view(Some(fan.access_token.clone())).await["counted"], true);
    assert_eq!(view(Some(fan.access_token.clone())).await["counted"], false);
    assert_eq!(view(None).await["counted"], true);
    let last = view(None).await;
    assert_eq!(last["counted"], false);
    let p = last["position"].as_i64().unwrap();
    let video: Value = app
        .get(&format!("/v1/videos/{vid}"), None, Some(p))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(video["view_count"], 2);

    // no raw IP anywhere: not in events, not in any read model
    let hits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE payload::text LIKE '%127.0.0.1%' OR metadata::text LIKE '%127.0.0.1%'
                                        OR aggregate_id LIKE '%127.0.0.1%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(hits, 0, "a raw IP is in the event store");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    for t in tables {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{t}\" x WHERE x::text LIKE '%127.0.0.1%'"
        ))
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(n, 0, "a raw IP is in table {t}");
    }
    app.stop().await;
}

#[tokio::test]
async fn batch_endpoints_refuse_bad_lists() {
    let app = spawn_app().await;
    let u = app.register("batcher").await;
    let many: Vec<String> = (0..101).map(|_| Uuid::new_v4().to_string()).collect();
    for (path, field, token) in [
        (
            "/v1/likes/check-batch",
            "video_ids",
            Some(u.access_token.as_str()),
        ),
        (
            "/v1/follows/check-batch",
            "user_ids",
            Some(u.access_token.as_str()),
        ),
        ("/v1/videos/batch-metadata", "video_ids", None),
    ] {
        let err = expect_error(
            app.post(path, json!({ field: many }), token).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(err["details"]["fields"][0]["code"], "too_many", "{path}");
        let err = expect_error(
            app.post(
                path,
                json!({ field: [Uuid::new_v4().to_string(), "not-an-id", 5] }),
                token,
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        let message = err["details"]["fields"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("not-an-id") && message.contains('5'),
            "{message}"
        );
    }
    // unknown ids: all zeros
    let unknown = Uuid::new_v4().to_string();
    let meta: Value = app
        .post(
            "/v1/videos/batch-metadata",
            json!({"video_ids": [unknown]}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["videos"][&unknown],
        json!({"view_count": 0, "like_count": 0, "comment_count": 0, "remix_count": 0, "glitch_count": 0})
    );
    app.stop().await;
}
