//! Reports of videos: the seed's reasons, one open report per user and video.

use lokiz_tests::{expect_error, position_of, spawn_app};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn a_user_reports_a_video_once_with_a_reason() {
    let app = spawn_app().await;
    let creator = app.register("creator").await;
    let viewer = app.register("viewer").await;
    let (video, _) = app.upload_video(&creator, None).await;
    let path = format!("/v1/videos/{video}/report");

    // bad input: every bad field, nothing stored
    let before = app.head().await;
    let r = app
        .post(
            &path,
            json!({"reason": "boring", "note": "x".repeat(501)}),
            Some(&viewer.access_token),
        )
        .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(
        err["details"]["fields"].as_array().unwrap().len(),
        2,
        "{err}"
    );
    assert_eq!(app.head().await, before);

    // the report, then a second one while it is open
    let r = app
        .post(
            &path,
            json!({"reason": "spam", "note": "a bot posting links"}),
            Some(&viewer.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(position_of(&r) > 0);
    let filed: Value = r.json().await.unwrap();
    assert_eq!(filed["reason"], "spam");
    assert_eq!(filed["status"], "open");
    let r = app
        .post(
            &path,
            json!({"reason": "violence"}),
            Some(&viewer.access_token),
        )
        .await;
    let err = expect_error(r, StatusCode::CONFLICT, "REPORT_ALREADY_OPEN").await;
    assert_eq!(err["details"]["report_id"], filed["report_id"]);

    // one's own video cannot be reported; anonymous callers cannot report
    let r = app
        .post(
            &path,
            json!({"reason": "other"}),
            Some(&creator.access_token),
        )
        .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(err["details"]["fields"][0]["field"], "video_id");
    let r = app.post(&path, json!({"reason": "other"}), None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;

    // the moderators' read model has it, once
    crate::rebuild::caught_up(&app).await;
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT reason, status, note FROM reports WHERE video_id = $1")
            .bind(video)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![(
            "spam".to_owned(),
            "open".to_owned(),
            Some("a bot posting links".to_owned())
        )]
    );
    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}
