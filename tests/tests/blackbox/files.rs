//! Files, replayed as a scraper and a cheat would: fetching private and
//! unfinished videos by their key, uploading over a published video,
//! completing an upload that is not a video, lying about its size.

use lokiz_tests::{expect_error, position_of, sample_video, spawn_app, Registered, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn upload_url(app: &TestApp, user: &Registered, size: usize) -> Value {
    let r = app
        .post(
            "/v1/videos/upload-url",
            json!({"filename": "clip.mp4", "content_type": "video/mp4", "file_size": size}),
            Some(&user.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

async fn put(app: &TestApp, url: &str, bytes: Vec<u8>) -> reqwest::Response {
    app.client
        .put(url)
        .header("content-type", "video/mp4")
        .body(bytes)
        .send()
        .await
        .expect("put")
}

#[tokio::test]
async fn private_and_unfinished_files_are_served_only_through_signed_urls() {
    let app = spawn_app().await;
    let owner = app.register("filer").await;
    let other = app.register("scraper").await;
    let media = sample_video(72, 128, 2.0).await;

    // unfinished: uploaded, not completed
    let up = upload_url(&app, &owner, media.len()).await;
    assert_eq!(
        put(&app, up["upload_url"].as_str().unwrap(), media.clone())
            .await
            .status(),
        StatusCode::OK
    );
    let plain = app.url(&format!("/v1/blobs/{}", up["file_key"].as_str().unwrap()));
    let r = app.client.get(&plain).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "an unfinished upload is not public"
    );
    // the answer's file_url is signed and works for whoever holds it
    let signed = up["file_url"].as_str().unwrap();
    assert!(signed.contains("sig="), "{signed}");
    assert_eq!(
        app.client.get(signed).send().await.unwrap().status(),
        StatusCode::OK
    );

    // completed and public: the plain URL serves it
    let (video, completed) = app.upload_video(&owner, None).await;
    let v: Value = app
        .get(&format!("/v1/videos/{video}"), None, Some(completed))
        .await
        .json()
        .await
        .unwrap();
    let public_url = v["file_url"].as_str().unwrap().to_owned();
    assert!(!public_url.contains("sig="), "{public_url}");
    assert_eq!(
        app.client.get(&public_url).send().await.unwrap().status(),
        StatusCode::OK
    );

    // made private: the plain URL stops working; others get no URL at all
    let r = app
        .patch(
            &format!("/v1/videos/{video}"),
            json!({"visibility": "private"}),
            &owner.access_token,
        )
        .await;
    let position = position_of(&r);
    let mine: Value = app
        .get(
            &format!("/v1/videos/{video}"),
            Some(&owner.access_token),
            Some(position),
        )
        .await
        .json()
        .await
        .unwrap();
    let r = app.client.get(&public_url).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "a private file by its key"
    );
    let r = app
        .get(
            &format!("/v1/videos/{video}"),
            Some(&other.access_token),
            Some(position),
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    // the owner's answer carries a signed URL, which works
    let signed = mine["file_url"].as_str().unwrap();
    assert!(signed.contains("sig="), "{signed}");
    assert_eq!(
        app.client.get(signed).send().await.unwrap().status(),
        StatusCode::OK
    );
    // one for another key does not
    let forged = signed.replace(&video.to_string(), &uuid::Uuid::now_v7().to_string());
    let r = app.client.get(&forged).send().await.unwrap();
    expect_error(r, StatusCode::FORBIDDEN, "INVALID_SIGNATURE").await;
    app.stop().await;
}

#[tokio::test]
async fn an_upload_url_works_once() {
    let app = spawn_app().await;
    let owner = app.register("once").await;
    let media = sample_video(72, 128, 2.0).await;
    let up = upload_url(&app, &owner, media.len()).await;
    let url = up["upload_url"].as_str().unwrap();
    assert_eq!(put(&app, url, media.clone()).await.status(), StatusCode::OK);
    let id = up["video_id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/v1/videos/{id}/complete"),
            json!({"width": 72, "height": 128, "actual_duration": 2.0}),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // swapping the published file through the same URL: refused, unchanged
    let mut other = media.clone();
    other.reverse();
    let r = put(&app, url, other).await;
    expect_error(r, StatusCode::CONFLICT, "ALREADY_UPLOADED").await;
    let stored = tokio::fs::read(
        app.ctx
            .local_blobs
            .as_ref()
            .unwrap()
            .path(up["file_key"].as_str().unwrap())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(stored, media);
    app.stop().await;
}

#[tokio::test]
async fn a_file_that_is_not_a_video_is_refused_at_complete_and_removed() {
    let app = spawn_app().await;
    let owner = app.register("faker").await;
    let junk = b"this is not a video, whatever the client says".repeat(20);
    let up = upload_url(&app, &owner, junk.len()).await;
    assert_eq!(
        put(&app, up["upload_url"].as_str().unwrap(), junk)
            .await
            .status(),
        StatusCode::OK
    );
    let key = up["file_key"].as_str().unwrap().to_owned();
    let before = app.head().await;
    let id = up["video_id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/v1/videos/{id}/complete"),
            json!({"width": 1080, "height": 1920, "actual_duration": 12.0}),
            Some(&owner.access_token),
        )
        .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(err["details"]["fields"][0]["field"], "file", "{err}");
    assert_eq!(err["details"]["fields"][0]["code"], "unplayable");
    assert_eq!(app.head().await, before, "nothing recorded");
    assert_eq!(
        app.ctx.blobs.stored_size(&key).await.unwrap(),
        None,
        "the file is removed"
    );
    app.stop().await;
}

#[tokio::test]
async fn abandoned_uploads_and_deleted_videos_lose_their_files() {
    let app = lokiz_tests::spawn_app_with(
        lokiz_api::Components::ALL,
        &[
            ("LOKIZ_UPLOAD_EXPIRY_SECS", "3"),
            ("LOKIZ_DELETED_FILES_GRACE_SECS", "1"),
        ],
    )
    .await;
    let owner = app.register("janitor").await;
    // a video (completed well within the upload expiry), then deleted
    let (video, position) = app.upload_video(&owner, None).await;
    let v: Value = app
        .get(
            &format!("/v1/videos/{video}"),
            Some(&owner.access_token),
            Some(position),
        )
        .await
        .json()
        .await
        .unwrap();
    let deleted = v["file_key"].as_str().unwrap().to_owned();
    let r = app
        .client
        .delete(app.url(&format!("/v1/videos/{video}")))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // an upload never completed
    let media = sample_video(72, 128, 2.0).await;
    let up = upload_url(&app, &owner, media.len()).await;
    assert_eq!(
        put(&app, up["upload_url"].as_str().unwrap(), media)
            .await
            .status(),
        StatusCode::OK
    );
    let abandoned = up["file_key"].as_str().unwrap().to_owned();
    app.eventually(30, "both files removed", || async {
        app.ctx
            .blobs
            .stored_size(&abandoned)
            .await
            .unwrap()
            .is_none()
            && app.ctx.blobs.stored_size(&deleted).await.unwrap().is_none()
            // the sweep is recorded right after its file goes
            && sqlx::query_scalar::<_, i64>("SELECT count(*) FROM file_sweeps")
                .fetch_one(&app.pool)
                .await
                .unwrap()
                == 2
    })
    .await;
    let swept: Vec<String> = sqlx::query_scalar("SELECT reason FROM file_sweeps ORDER BY reason")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(swept, ["deleted_video", "expired_upload"]);
    let metrics = app.get("/metrics", None, None).await.text().await.unwrap();
    assert!(
        metrics.contains("lokiz_files_removed_total{reason=\"deleted_video\"}"),
        "{metrics}"
    );
    app.stop().await;
}
