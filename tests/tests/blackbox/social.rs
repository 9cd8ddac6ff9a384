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

    // the seed's shape; a real (tiny) video, as the server probes it
    let media = lokiz_tests::sample_video(72, 128, 2.0).await;
    let n = media.len();
    let resp = app
        .post(
            "/v1/videos/upload-url",
            json!({"filename": "a.mp4", "content_type": "video/mp4", "file_size": n,
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
    let tampered = url.replace(&format!("size={n}"), &format!("size={}", n + 1));
    let r = app
        .client
        .put(&tampered)
        .header("content-type", "video/mp4")
        .body(vec![0u8; n + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .client
        .put(url)
        .header("content-type", "video/mp4")
        .body(vec![0u8; n + 24])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = app
        .client
        .put(url)
        .header("content-type", "video/webm")
        .body(vec![0u8; n])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());

    // the real upload, then complete (not by someone else)
    let r = app
        .client
        .put(url)
        .header("content-type", "video/mp4")
        .body(media.clone())
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
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
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
    // what the server probed, not what the client said (720)
    assert_eq!(video["width"], 72);
    assert_eq!(video["height"], 128);
    // file_url streams the object, with ranges
    let r = app
        .client
        .get(video["file_url"].as_str().unwrap())
        .header("range", "bytes=4-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().to_vec(), media[4..8].to_vec());

    // only the owner may edit or delete
    expect_error(
        app.patch(
            &format!("/v1/videos/{id}"),
            json!({"caption": "mine"}),
            &other.access_token,
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/videos/{id}")))
        .bearer_auth(&other.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
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

/// Exactly what `loadFeedWithAllStatuses` in lokiz-batch-apis.md does: the
/// feed, then likes/check-batch, follows/check-batch and batch-metadata,
/// merged per video.
#[tokio::test]
async fn the_seed_clients_feed_flow() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let viewer = app.register("viewer").await;
    let (a1, _) = app.upload_video(&alice, Some("alice one")).await;
    let (b1, _) = app.upload_video(&bob, Some("bob one")).await;
    let (a2, _) = app.upload_video(&alice, Some("alice two")).await;

    app.post(
        &format!("/v1/likes/videos/{a1}"),
        json!({}),
        Some(&viewer.access_token),
    )
    .await;
    app.post(
        &format!("/v1/likes/videos/{b1}"),
        json!({}),
        Some(&alice.access_token),
    )
    .await;
    app.post(
        &format!("/v1/follows/users/{}", alice.id),
        json!({}),
        Some(&viewer.access_token),
    )
    .await;
    let r = app
        .post(
            &format!("/v1/comments/videos/{a2}"),
            json!({"content": "wow"}),
            Some(&bob.access_token),
        )
        .await;
    let settled = position_of(&r);

    // 1. the feed
    let feed: Value = app
        .get("/v1/videos/?cursor=", None, Some(settled))
        .await
        .json()
        .await
        .unwrap();
    let videos = feed["videos"].as_array().unwrap().clone();
    assert_eq!(videos.len(), 3);
    assert_eq!(feed["has_more"], false);
    assert!(feed["next_cursor"].is_null());
    // newest first, each with its user embedded
    let ids: Vec<String> = videos
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![a2.to_string(), b1.to_string(), a1.to_string()]);
    // 2. ids
    let user_ids: Vec<String> = {
        let mut u: Vec<String> = videos
            .iter()
            .map(|v| v["user"]["id"].as_str().unwrap().to_owned())
            .collect();
        u.sort();
        u.dedup();
        u
    };
    // 3. every status at once
    // (each read waits for the client's last write: the likes and follows
    // projections run independently of the feed's)
    let batch = |path: &'static str, body: Value, token: Option<String>| {
        let mut req = app
            .client
            .post(app.url(path))
            .header("X-Lokiz-Min-Position", settled.to_string())
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let (likes, follows, meta) = tokio::join!(
        batch(
            "/v1/likes/check-batch",
            json!({"video_ids": ids}),
            Some(viewer.access_token.clone())
        ),
        batch(
            "/v1/follows/check-batch",
            json!({"user_ids": user_ids}),
            Some(viewer.access_token.clone())
        ),
        batch("/v1/videos/batch-metadata", json!({"video_ids": ids}), None),
    );
    // 4. merge, as the client does
    let merged: Vec<Value> = videos
        .iter()
        .map(|v| {
            let id = v["id"].as_str().unwrap();
            json!({
                "id": id,
                "is_liked": likes["liked_videos"][id].as_bool().unwrap_or(false),
                "is_following": follows["following_users"][v["user"]["id"].as_str().unwrap()].as_bool().unwrap_or(false),
                "stats": meta["videos"][id].clone(),
            })
        })
        .collect();
    let expect = |id: Uuid, liked: bool, following: bool, likes: i64, comments: i64| {
        json!({"id": id.to_string(), "is_liked": liked, "is_following": following,
               "stats": {"view_count": 0, "like_count": likes, "comment_count": comments,
                         "remix_count": 0, "glitch_count": 0}})
    };
    assert_eq!(
        merged,
        vec![
            expect(a2, false, true, 0, 1),
            expect(b1, false, false, 1, 0),
            expect(a1, true, true, 1, 0),
        ]
    );
    app.stop().await;
}

/// 50 users liking, unliking, commenting and viewing 20 videos at once:
/// afterwards every counter equals a recount from the event store.
#[tokio::test]
async fn concurrent_storm_counters_match_the_event_store() {
    let app = spawn_app().await;
    let owner = app.register("storm_owner").await;
    let mut videos = Vec::new();
    for _ in 0..20 {
        videos.push(app.upload_video(&owner, None).await.0);
    }
    let mut users = Vec::new();
    for i in 0..50 {
        users.push(app.register(&format!("stormer_{i}")).await);
    }
    let mut tasks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let client = app.client.clone();
        let base = app.address.clone();
        let token = u.access_token.clone();
        let videos = videos.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = 0i64;
            for step in 0..12usize {
                let v = videos[(i * 7 + step * 3) % videos.len()];
                let req = match (i + step) % 4 {
                    0 => client.post(format!("{base}/v1/likes/videos/{v}")),
                    1 => client.delete(format!("{base}/v1/likes/videos/{v}")),
                    2 => client
                        .post(format!("{base}/v1/comments/videos/{v}"))
                        .json(&json!({"content": format!("storm {i}-{step}")})),
                    _ => client.post(format!("{base}/v1/videos/{v}/view")),
                };
                let r = req.bearer_auth(&token).send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                if let Some(p) = r.headers().get("x-lokiz-position") {
                    last = last.max(p.to_str().unwrap().parse().unwrap());
                }
            }
            last
        }));
    }
    let mut settled = 0;
    for t in tasks {
        settled = settled.max(t.await.unwrap());
    }
    let meta: Value = app
        .client
        .post(app.url("/v1/videos/batch-metadata"))
        .header("X-Lokiz-Min-Position", settled.to_string())
        .json(&json!({ "video_ids": videos }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // the likes table is another projection than the one behind batch-metadata
    app.ctx
        .wait_for(Some(settled), &["likes"])
        .await
        .expect("likes projection reached the last write");
    for v in &videos {
        let (likes, comments, views): (i64, i64, i64) = sqlx::query_as(
            "SELECT
                count(*) FILTER (WHERE event_type = 'VideoLiked' AND payload->'VideoLiked'->>'video_id' = $1)
              - count(*) FILTER (WHERE event_type = 'VideoUnliked' AND payload->'VideoUnliked'->>'video_id' = $1),
                count(*) FILTER (WHERE event_type = 'CommentPosted' AND payload->'CommentPosted'->>'video_id' = $1),
                count(*) FILTER (WHERE event_type = 'ViewCounted' AND payload->'ViewCounted'->>'video_id' = $1)
               FROM events",
        )
        .bind(v.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap();
        let m = &meta["videos"][v.to_string()];
        assert_eq!(m["like_count"], likes, "likes of {v}");
        assert_eq!(m["comment_count"], comments, "comments of {v}");
        assert_eq!(m["view_count"], views, "views of {v}");
        let liked_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM likes WHERE video_id = $1")
            .bind(v)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(liked_rows, likes, "likes table of {v}");
    }
    // replaying the store gives the same read models, row for row
    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn comments_threads_and_permissions() {
    let app = spawn_app().await;
    let owner = app.register("vid_owner").await;
    let author = app.register("commenter").await;
    let other = app.register("bystander").await;
    let (vid, _) = app.upload_video(&owner, None).await;

    let mut top_ids = Vec::new();
    for i in 0..3 {
        let r = app
            .post(
                &format!("/v1/comments/videos/{vid}"),
                json!({"content": format!("top {i}")}),
                Some(&author.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        top_ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut last = 0;
    for i in 0..4 {
        let r = app
            .post(
                &format!("/v1/comments/videos/{vid}"),
                json!({"content": format!("reply {i}"), "parent_id": top_ids[0]}),
                Some(&other.access_token),
            )
            .await;
        last = position_of(&r);
    }
    // bad input: empty content, parent from nowhere
    let err = expect_error(
        app.post(
            &format!("/v1/comments/videos/{vid}"),
            json!({"content": "  ", "parent_id": "x"}),
            Some(&author.access_token),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(err["details"]["fields"].as_array().unwrap().len(), 2);
    expect_error(
        app.post(
            &format!("/v1/comments/videos/{vid}"),
            json!({"content": "hi", "parent_id": Uuid::new_v4()}),
            Some(&author.access_token),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;

    // threaded listing with cursor: 2 per page, newest top-level first
    let page1: Value = app
        .get(
            &format!("/v1/comments/videos/{vid}?limit=2"),
            None,
            Some(last),
        )
        .await
        .json()
        .await
        .unwrap();
    let c = page1["comments"].as_array().unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["content"], "top 2");
    assert_eq!(page1["has_more"], true);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2: Value = app
        .get(
            &format!("/v1/comments/videos/{vid}?limit=2&cursor={cursor}"),
            None,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let c = page2["comments"].as_array().unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["content"], "top 0");
    assert_eq!(c[0]["reply_count"], 4);
    let inline: Vec<&str> = c[0]["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["content"].as_str().unwrap())
        .collect();
    assert_eq!(inline, vec!["reply 0", "reply 1", "reply 2"]);
    let replies: Value = app
        .get(
            &format!("/v1/comments/videos/{vid}?parent_id={}", top_ids[0]),
            None,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replies["comments"].as_array().unwrap().len(), 4);

    // edit: author only
    expect_error(
        app.patch(
            &format!("/v1/comments/{}", top_ids[1]),
            json!({"content": "hijack"}),
            &other.access_token,
        )
        .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    let r = app
        .patch(
            &format!("/v1/comments/{}", top_ids[1]),
            json!({"content": "edited"}),
            &author.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // delete: author or the video's owner, nobody else
    let del = |id: &str, token: &str| {
        app.client
            .delete(app.url(&format!("/v1/comments/{id}")))
            .bearer_auth(token.to_owned())
            .send()
    };
    assert_eq!(
        del(&top_ids[2], &other.access_token)
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        del(&top_ids[2], &owner.access_token)
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let r = del(&top_ids[1], &author.access_token).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let p = position_of(&r);
    assert_eq!(
        del(&top_ids[1], &author.access_token)
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    let list: Value = app
        .get(&format!("/v1/comments/videos/{vid}"), None, Some(p))
        .await
        .json()
        .await
        .unwrap();
    let left: Vec<&str> = list["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec!["top 0"]);
    let video: Value = app
        .get(&format!("/v1/videos/{vid}"), None, Some(p))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(video["comment_count"], 5, "3 top + 4 replies - 2 deleted");
    app.stop().await;
}

#[tokio::test]
async fn feeds_page_stably_and_rank() {
    let app = spawn_app().await;
    let star = app.register("star").await;
    let nobody = app.register("nobody").await;
    let viewer = app.register("feedviewer").await;
    let mut star_videos = Vec::new();
    for _ in 0..3 {
        star_videos.push(app.upload_video(&star, None).await.0);
    }
    let mut other_videos = Vec::new();
    for _ in 0..4 {
        other_videos.push(app.upload_video(&nobody, None).await.0);
    }
    // engagement on one of nobody's videos makes it trend
    let hot = other_videos[0];
    let mut last = 0;
    for i in 0..5 {
        let u = app.register(&format!("liker_{i}")).await;
        last = position_of(
            &app.post(
                &format!("/v1/likes/videos/{hot}"),
                json!({}),
                Some(&u.access_token),
            )
            .await,
        );
    }
    last = last.max(position_of(
        &app.post(
            &format!("/v1/follows/users/{}", star.id),
            json!({}),
            Some(&viewer.access_token),
        )
        .await,
    ));

    // latest, 3 per page; a video published between pages shifts nothing
    let page1: Value = app
        .get("/v1/videos/feed?algorithm=latest&limit=3", None, Some(last))
        .await
        .json()
        .await
        .unwrap();
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    let (_, newest_pos) = app.upload_video(&nobody, None).await;
    let page2: Value = app
        .get(
            &format!("/v1/videos/feed?algorithm=latest&limit=3&cursor={cursor}"),
            None,
            Some(newest_pos),
        )
        .await
        .json()
        .await
        .unwrap();
    let page3: Value = app
        .get(
            &format!(
                "/v1/videos/feed?algorithm=latest&limit=3&cursor={}",
                page2["next_cursor"].as_str().unwrap()
            ),
            None,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let seen: Vec<String> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| {
            p["videos"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        7,
        "a video repeated across pages"
    );
    assert_eq!(page3["has_more"], false);

    // trending: the liked video first
    let trending: Value = app
        .get("/v1/videos/feed?algorithm=trending", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(trending["videos"][0]["id"], hot.to_string());
    // following: only the followed creator's videos, and it needs a sign-in
    let following: Value = app
        .get(
            "/v1/videos/feed?algorithm=following",
            Some(&viewer.access_token),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let owners: HashSet<&str> = following["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["user"]["username"].as_str().unwrap())
        .collect();
    assert_eq!(owners, HashSet::from(["star"]));
    assert_eq!(following["videos"].as_array().unwrap().len(), 3);
    expect_error(
        app.get("/v1/videos/feed?algorithm=following", None, None)
            .await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
    // personalized: the followed creator's videos are lifted above the others'
    // equally fresh ones (the much-liked one may still lead)
    let personal: Value = app
        .get(
            "/v1/videos/feed?algorithm=personalized",
            Some(&viewer.access_token),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let order: Vec<String> = personal["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    let rank = |id: &Uuid| order.iter().position(|x| *x == id.to_string()).unwrap();
    let worst_star = star_videos.iter().map(rank).max().unwrap();
    let best_plain = other_videos[1..].iter().map(rank).min().unwrap();
    assert!(worst_star < best_plain, "{order:?}");
    // a cursor of another algorithm, a bad algorithm, a bad limit
    expect_error(
        app.get(
            &format!("/v1/videos/feed?algorithm=trending&cursor={cursor}"),
            None,
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let err = expect_error(
        app.get("/v1/videos/feed?algorithm=chaos&limit=0", None, None)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(err["details"]["fields"].as_array().unwrap().len(), 2);
    // prefetch: the next videos after a cursor
    let pre: Value = app
        .get(
            &format!("/v1/videos/prefetch?count=2&cursor={cursor}"),
            None,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pre["videos"].as_array().unwrap().len(), 2);
    app.stop().await;
}
