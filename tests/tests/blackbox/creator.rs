//! Creator tools (issue 14): a video's stats per day (owner only), drafts
//! (saved, listed, deleted, published through the upload flow), the Redoc
//! page and bundle, and images (profile pictures and thumbnails).

use lokiz_tests::{expect_error, position_of, sample_video, spawn_app, Registered, TestApp};
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
async fn stats_count_views_likes_comments_and_glitches_per_day_for_the_owner_only() {
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
    // a glitch: bob's AI job publishes a video glitched from alice's
    let r = send(
        &app,
        reqwest::Method::POST,
        "/v1/ai/glitch/animate",
        Some(json!({"video_id": video, "start_time": 0, "end_time": 1.0, "preset": "hue-jump"})),
        Some(&bob.access_token),
        head,
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let job = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let j: Value = app
            .get(&format!("/v1/ai/jobs/{job}"), Some(&bob.access_token), None)
            .await
            .json()
            .await
            .unwrap();
        if j["status"] == "completed" {
            break;
        }
        assert!(j["status"] != "failed", "{j}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "glitch never done: {j}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    head = head.max(app.head().await);

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
        ("glitches_by_day", "glitches", 1),
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

/// Upload-url (from `draft_id`), PUT and complete; returns the video id and
/// the completion's position.
async fn upload_from_draft(
    app: &TestApp,
    user: &Registered,
    draft_id: &str,
    caption: Option<&str>,
) -> (String, i64) {
    let bytes = sample_video(108, 192, 3.5).await;
    let mut body = json!({"filename": "clip.mp4", "content_type": "video/mp4",
                          "file_size": bytes.len(), "draft_id": draft_id});
    if let Some(c) = caption {
        body["caption"] = json!(c);
    }
    let r = app
        .post("/v1/videos/upload-url", body, Some(&user.access_token))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let up: Value = r.json().await.unwrap();
    let put = app
        .client
        .put(up["upload_url"].as_str().unwrap())
        .header("content-type", "video/mp4")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let id = up["video_id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/v1/videos/{id}/complete"),
            json!({"width": 108, "height": 192, "actual_duration": 3.5}),
            Some(&user.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let position = position_of(&r);
    (id, position)
}

#[tokio::test]
async fn drafts_are_saved_listed_deleted_and_published_through_the_upload() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut head = 0;

    let r = app
        .post(
            "/v1/videos/draft",
            json!({"caption": "first idea", "params": {"preset": "vhs", "speed": 1.5}}),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    head = head.max(position_of(&r));
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["created"], true);
    let d1 = first["draft_id"].as_str().unwrap().to_owned();

    // updated: the caption and params are replaced
    let r = app
        .post(
            "/v1/videos/draft",
            json!({"caption": "  better idea ", "params": {"preset": "glitch"}, "draft_id": d1}),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    head = head.max(position_of(&r));
    let updated: Value = r.json().await.unwrap();
    assert_eq!(updated["created"], false);
    assert_eq!(updated["draft_id"], d1.as_str());
    assert_eq!(updated["caption"], "better idea");

    let r = app
        .post(
            "/v1/videos/draft",
            json!({"caption": "second"}),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    head = head.max(position_of(&r));
    let d2 = r.json::<Value>().await.unwrap()["draft_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // newest first, one per page
    let r = app
        .get(
            "/v1/videos/drafts?limit=1",
            Some(&alice.access_token),
            Some(head),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page1: Value = r.json().await.unwrap();
    assert_eq!(page1["drafts"].as_array().unwrap().len(), 1);
    assert_eq!(page1["drafts"][0]["id"], d2.as_str());
    assert_eq!(page1["has_more"], true);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2: Value = app
        .get(
            &format!("/v1/videos/drafts?limit=1&cursor={cursor}"),
            Some(&alice.access_token),
            Some(head),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page2["drafts"][0]["id"], d1.as_str());
    assert_eq!(page2["drafts"][0]["caption"], "better idea");
    assert_eq!(page2["drafts"][0]["params"], json!({"preset": "glitch"}));
    assert_eq!(page2["has_more"], false);
    assert_eq!(page2["next_cursor"], Value::Null);

    // bob neither sees nor changes alice's drafts
    let bobs: Value = app
        .get("/v1/videos/drafts", Some(&bob.access_token), Some(head))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["drafts"], json!([]));
    let r = app
        .post(
            "/v1/videos/draft",
            json!({"caption": "mine", "draft_id": d1}),
            Some(&bob.access_token),
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/videos/drafts/{d1}"),
        None,
        Some(&bob.access_token),
        head,
    )
    .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .post(
            "/v1/videos/draft",
            json!({"caption": "x", "draft_id": Uuid::new_v4()}),
            Some(&alice.access_token),
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // every bad field at once; params bounded at 16 KiB
    let r = app
        .post(
            "/v1/videos/draft",
            json!({"params": {"k": "x".repeat(17 * 1024)}, "draft_id": "nope"}),
            Some(&alice.access_token),
        )
        .await;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let mut fields: Vec<&str> = e["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["caption", "draft_id", "params"], "{e}");
    let r = app
        .post(
            "/v1/videos/draft",
            json!({"caption": "x", "params": [1, 2]}),
            Some(&alice.access_token),
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;

    // deleted: out of the list, and gone for good
    let r = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/videos/drafts/{d2}"),
        None,
        Some(&alice.access_token),
        head,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    head = head.max(position_of(&r));
    let r = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/videos/drafts/{d2}"),
        None,
        Some(&alice.access_token),
        head,
    )
    .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let list: Value = app
        .get("/v1/videos/drafts", Some(&alice.access_token), Some(head))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["drafts"].as_array().unwrap().len(), 1);

    // an upload can only be made from the caller's live draft
    for (who, draft) in [(&bob, &d1), (&alice, &d2)] {
        let r = app
            .post(
                "/v1/videos/upload-url",
                json!({"filename": "a.mp4", "content_type": "video/mp4", "file_size": 100,
                       "draft_id": draft}),
                Some(&who.access_token),
            )
            .await;
        let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
        assert_eq!(e["details"]["fields"][0]["field"], "draft_id");
    }

    // published through the upload: the video takes the draft's caption,
    // and the draft leaves the list
    let (video, position) = upload_from_draft(&app, &alice, &d1, None).await;
    head = head.max(position);
    let v: Value = app
        .get(
            &format!("/v1/videos/{video}"),
            Some(&alice.access_token),
            Some(head),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["caption"], "better idea");
    let list: Value = app
        .get("/v1/videos/drafts", Some(&alice.access_token), Some(head))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["drafts"], json!([]));
    // a published draft is final
    let r = app
        .post(
            "/v1/videos/draft",
            json!({"caption": "later", "draft_id": d1}),
            Some(&alice.access_token),
        )
        .await;
    expect_error(r, StatusCode::CONFLICT, "DRAFT_PUBLISHED").await;
    // a caption given with the upload wins over the draft's
    let r = app
        .post(
            "/v1/videos/draft",
            json!({"caption": "draft words"}),
            Some(&alice.access_token),
        )
        .await;
    let d3 = r.json::<Value>().await.unwrap()["draft_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (video, position) = upload_from_draft(&app, &alice, &d3, Some("my own words")).await;
    head = head.max(position);
    let v: Value = app
        .get(
            &format!("/v1/videos/{video}"),
            Some(&alice.access_token),
            Some(head),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["caption"], "my own words");
    let list: Value = app
        .get("/v1/videos/drafts", Some(&alice.access_token), Some(head))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["drafts"], json!([]));

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn redoc_serves_its_page_and_bundle_from_the_server() {
    let app = spawn_app().await;
    let r = app.get("/redoc", None, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // the browser may load nothing from elsewhere (Redoc's sidebar logo is
    // on its CDN)
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("img-src 'self' data: blob:"));
    let html = r.text().await.unwrap();
    assert!(html.contains("spec-url=\"/openapi.json\""), "{html}");
    assert!(
        html.contains("src=\"/redoc/redoc.standalone.js\""),
        "{html}"
    );
    assert!(!html.contains("http://") && !html.contains("https://"));
    let r = app.get("/redoc/redoc.standalone.js", None, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let js = r.bytes().await.unwrap();
    assert!(js.len() > 500_000, "the whole bundle: {} bytes", js.len());
    // the docs pages document the API, not themselves
    let doc: Value = app
        .get("/openapi.json", None, None)
        .await
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths
        .keys()
        .all(|p| !p.starts_with("/redoc") && !p.starts_with("/docs")));
    assert!(paths.contains_key("/v1/videos/{id}/stats"));
    assert!(paths.contains_key("/v1/videos/draft"));
    app.stop().await;
}

/// A real 64×48 image made by ffmpeg (`ext`: png, jpg or webp).
async fn image_bytes(ext: &str) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("lokiz-image-{}.{ext}", Uuid::new_v4()));
    let status = tokio::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x48",
        ])
        .args(["-frames:v", "1"])
        .arg(&path)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "ffmpeg made the image");
    let bytes = tokio::fs::read(&path).await.unwrap();
    let _ = tokio::fs::remove_file(&path).await;
    bytes
}

/// Asks for an upload URL and PUTs `bytes` there; returns the answer.
async fn upload_image(
    app: &TestApp,
    user: &Registered,
    purpose: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Value {
    let r = app
        .post(
            "/v1/images/upload-url",
            json!({"purpose": purpose, "content_type": content_type, "size_bytes": bytes.len()}),
            Some(&user.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let up: Value = r.json().await.unwrap();
    let put = app
        .client
        .put(up["upload_url"].as_str().unwrap())
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "PUT {}", put.status());
    up
}

async fn complete_image(app: &TestApp, user: &Registered, id: &str) -> reqwest::Response {
    app.post(
        &format!("/v1/images/{id}/complete"),
        json!({}),
        Some(&user.access_token),
    )
    .await
}

#[tokio::test]
async fn a_probed_profile_image_becomes_the_owners_profile_picture() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;

    // every bad field at once
    let r = app
        .post(
            "/v1/images/upload-url",
            json!({"purpose": "banner", "content_type": "image/gif", "size_bytes": 6 * 1024 * 1024}),
            Some(&alice.access_token),
        )
        .await;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let mut fields: Vec<&str> = e["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["content_type", "purpose", "size_bytes"], "{e}");

    let up = upload_image(
        &app,
        &alice,
        "profile",
        "image/png",
        image_bytes("png").await,
    )
    .await;
    let id = up["image_id"].as_str().unwrap().to_owned();
    let url = up["file_url"].as_str().unwrap().to_owned();
    assert!(up["file_key"].as_str().unwrap().ends_with(".png"));
    // a stable URL of this server (redirecting to the file), whatever the store
    assert_eq!(url, app.url(&format!("/v1/images/{id}/file")));
    // not served before it is completed
    let r = app.client.get(&url).send().await.unwrap();
    assert_ne!(r.status(), StatusCode::OK);
    // nor usable as a profile picture
    let r = app
        .patch(
            "/v1/users/me",
            json!({"profile_image_url": url}),
            &alice.access_token,
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;

    // only its owner completes it
    let r = complete_image(&app, &bob, &id).await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = complete_image(&app, &alice, &id).await;
    assert_eq!(r.status(), StatusCode::OK);
    let done: Value = r.json().await.unwrap();
    assert_eq!(
        (done["width"].as_u64(), done["height"].as_u64()),
        (Some(64), Some(48))
    );
    assert_eq!(done["file_url"], url.as_str());
    let r = complete_image(&app, &alice, &id).await;
    expect_error(r, StatusCode::CONFLICT, "ALREADY_COMPLETED").await;
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap().starts_with(b"\x89PNG"));

    // someone else's image is refused as bob's picture
    let r = app
        .patch(
            "/v1/users/me",
            json!({"profile_image_url": url}),
            &bob.access_token,
        )
        .await;
    let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(e["details"]["fields"][0]["field"], "profile_image_url");
    // an outside URL too
    let r = app
        .patch(
            "/v1/users/me",
            json!({"profile_image_url": "https://cdn.example.com/a.png"}),
            &bob.access_token,
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;

    // alice's own: set, and shown on her public profile
    let r = app
        .patch(
            "/v1/users/me",
            json!({"profile_image_url": url}),
            &alice.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let position = position_of(&r);
    let public: Value = app
        .get(&format!("/v1/users/{}", alice.id), None, Some(position))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(public["profile_image_url"], url.as_str());

    // a thumbnail is not a profile picture
    let up = upload_image(
        &app,
        &alice,
        "thumbnail",
        "image/webp",
        image_bytes("webp").await,
    )
    .await;
    let r = complete_image(&app, &alice, up["image_id"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .patch(
            "/v1/users/me",
            json!({"profile_image_url": up["file_url"]}),
            &alice.access_token,
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;

    // not an image, or not the declared type: refused and removed
    for (content_type, bytes) in [
        ("image/png", b"this is not a picture at all".to_vec()),
        ("image/png", image_bytes("jpg").await),
        ("image/jpeg", sample_video(64, 48, 1.0).await),
    ] {
        let up = upload_image(&app, &alice, "profile", content_type, bytes).await;
        let id = up["image_id"].as_str().unwrap();
        let r = complete_image(&app, &alice, id).await;
        let e = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
        assert_eq!(e["details"]["fields"][0]["field"], "file", "{e}");
        let r = complete_image(&app, &alice, id).await;
        expect_error(r, StatusCode::CONFLICT, "UPLOAD_NOT_FOUND").await;
    }

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_completion_retried_after_a_crash_publishes_its_draft() {
    use lokiz_domain::values::VideoDimensions;
    use lokiz_domain::video::VideoCommand;

    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let r = app
        .post(
            "/v1/videos/draft",
            json!({"caption": "from a draft"}),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let draft = r.json::<Value>().await.unwrap()["draft_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes = sample_video(108, 192, 3.5).await;
    let size = bytes.len() as u64;
    let r = app
        .post(
            "/v1/videos/upload-url",
            json!({"filename": "clip.mp4", "content_type": "video/mp4",
                   "file_size": size, "draft_id": draft}),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let up: Value = r.json().await.unwrap();
    let video = up["video_id"].as_str().unwrap().to_owned();
    let put = app
        .client
        .put(up["upload_url"].as_str().unwrap())
        .header("content-type", "video/mp4")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());

    // the server completes the video and dies before publishing the draft:
    // the video's command alone
    let written = app
        .ctx
        .store
        .videos
        .execute(
            &video,
            VideoCommand::CompleteUpload {
                actor: alice.id,
                dimensions: VideoDimensions::parse(108, 192, 3.5).unwrap(),
                stored_size: Some(size),
                at: chrono::Utc::now(),
            },
            Default::default(),
        )
        .await
        .unwrap();
    let list: Value = app
        .get(
            "/v1/videos/drafts",
            Some(&alice.access_token),
            written.position,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["drafts"].as_array().unwrap().len(), 1, "still listed");

    // the client retries the completion: already complete, and the draft is
    // published now
    let r = app
        .post(
            &format!("/v1/videos/{video}/complete"),
            json!({"width": 108, "height": 192, "actual_duration": 3.5}),
            Some(&alice.access_token),
        )
        .await;
    expect_error(r, StatusCode::CONFLICT, "ALREADY_COMPLETED").await;
    let head = app.head().await;
    let list: Value = app
        .get("/v1/videos/drafts", Some(&alice.access_token), Some(head))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["drafts"], json!([]));
    let v: Value = app
        .get(
            &format!("/v1/videos/{video}"),
            Some(&alice.access_token),
            Some(head),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["caption"], "from a draft");

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn abandoned_image_uploads_lose_their_files() {
    let app = lokiz_tests::spawn_app_with(
        lokiz_api::Components::ALL,
        &[("LOKIZ_UPLOAD_EXPIRY_SECS", "3")],
    )
    .await;
    let alice = app.register("alice").await;
    let kept = upload_image(
        &app,
        &alice,
        "profile",
        "image/png",
        image_bytes("png").await,
    )
    .await;
    let r = complete_image(&app, &alice, kept["image_id"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let abandoned = upload_image(
        &app,
        &alice,
        "thumbnail",
        "image/png",
        image_bytes("png").await,
    )
    .await;
    let key = abandoned["file_key"].as_str().unwrap().to_owned();
    app.eventually(30, "the abandoned image removed", || async {
        app.ctx.blobs.stored_size(&key).await.unwrap().is_none()
            && sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM file_sweeps WHERE reason = 'expired_image_upload'",
            )
            .fetch_one(&app.pool)
            .await
            .unwrap()
                == 1
    })
    .await;
    // the completed one stays
    let r = app
        .client
        .get(kept["file_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
}
