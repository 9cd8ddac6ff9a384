//! Moderation: admin stats and lists, ban and unban (a banned user's next
//! request is refused, their videos leave every list), video removal
//! (reports resolved), every action an event with the admin and a reason.

use lokiz_api::tools::change_role;
use lokiz_domain::user::Role;
use lokiz_tests::{expect_error, position_of, spawn_app, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

async fn get_ok(app: &TestApp, path: &str, token: &str, min: Option<i64>) -> Value {
    let r = app.get(path, Some(token), min).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().await.unwrap()
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn bans_and_removals_take_effect_at_once_and_are_audited() {
    let app = spawn_app().await;
    let admin = app.register("admin").await;
    let granted = change_role(&app.pool, "admin", Role::Admin).await.unwrap();
    let mut head = granted.position.unwrap();
    let mallory = app.register("mallory").await;
    let viewer = app.register("viewer").await;
    let (spam, _) = app.upload_video(&mallory, Some("buy now")).await;
    let (bad, p) = app.upload_video(&viewer, Some("oops")).await;
    head = head.max(p);
    // reports: two of the bad video, one of the spam
    let reporter = app.register("reporter").await;
    for (who, video) in [(&mallory, bad), (&reporter, bad), (&reporter, spam)] {
        let r = app
            .post(
                &format!("/v1/videos/{video}/report"),
                json!({"reason": "inappropriate"}),
                Some(&who.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        head = head.max(position_of(&r));
    }
    let r = app
        .post(
            &format!("/v1/likes/videos/{spam}"),
            json!({}),
            Some(&viewer.access_token),
        )
        .await;
    head = head.max(position_of(&r));

    // non-admins get 403 on every admin route (the matrix has the rest)
    for path in [
        "/v1/admin/stats",
        "/v1/admin/users",
        "/v1/admin/videos",
        "/v1/admin/reports",
    ] {
        let r = app.get(path, Some(&viewer.access_token), None).await;
        expect_error(r, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    }

    let stats = get_ok(&app, "/v1/admin/stats", &admin.access_token, Some(head)).await;
    assert_eq!(stats["total_users"], 4);
    assert_eq!(stats["total_videos"], 2);
    assert_eq!(stats["open_reports"], 3);
    assert_eq!(stats["daily_active_users"], 4, "{stats}");
    assert!(stats["ai_job_success_rate"].is_null());
    let reports = get_ok(&app, "/v1/admin/reports", &admin.access_token, Some(head)).await;
    let counts: Vec<(String, i64)> = reports["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["video_id"].as_str().unwrap().to_owned(),
                r["video_open_reports"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts.len(), 3);
    assert!(counts.contains(&(bad.to_string(), 2)) && counts.contains(&(spam.to_string(), 1)));

    // a ban needs a reason; an admin cannot be banned
    let ban_path = format!("/v1/admin/users/{}/ban", mallory.id);
    let r = app.patch(&ban_path, json!({}), &admin.access_token).await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = app
        .patch(
            &format!("/v1/admin/users/{}/ban", admin.id),
            json!({"reason": "self"}),
            &admin.access_token,
        )
        .await;
    expect_error(r, StatusCode::CONFLICT, "CANNOT_BAN_ADMIN").await;
    let r = app
        .patch(
            &format!("/v1/admin/users/{}/ban", Uuid::new_v4()),
            json!({"reason": "nobody"}),
            &admin.access_token,
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // mallory is banned: her very next request is refused, her video is gone
    let r = app
        .patch(
            &ban_path,
            json!({"reason": "spam links"}),
            &admin.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    head = head.max(position_of(&r));
    assert_eq!(r.json::<Value>().await.unwrap()["banned"], true);
    let r = app
        .get("/v1/auth/me", Some(&mallory.access_token), None)
        .await;
    expect_error(r, StatusCode::FORBIDDEN, "USER_BANNED").await;
    let r = app
        .post(
            "/v1/auth/login",
            json!({"email": mallory.email, "password": "password123"}),
            None,
        )
        .await;
    expect_error(r, StatusCode::FORBIDDEN, "USER_BANNED").await;
    let r = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": mallory.refresh_token}),
            None,
        )
        .await;
    expect_error(r, StatusCode::FORBIDDEN, "USER_BANNED").await;
    let feed: Value = app
        .get("/v1/videos/", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&feed, "videos"), vec![bad.to_string()]);
    let r = app.get(&format!("/v1/videos/{spam}"), None, None).await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .get(&format!("/v1/users/{}", mallory.id), None, None)
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let banned = get_ok(
        &app,
        "/v1/admin/users?banned=true",
        &admin.access_token,
        None,
    )
    .await;
    assert_eq!(ids(&banned, "users"), vec![mallory.id.to_string()]);

    // unban restores her (her old access token works again)
    let r = app
        .patch(
            &ban_path,
            json!({"reason": "appeal accepted", "banned": false}),
            &admin.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .get("/v1/auth/me", Some(&mallory.access_token), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let feed: Value = app
        .get("/v1/videos/", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(feed["videos"].as_array().unwrap().len(), 2);

    // removal: the video leaves every list, its reports are resolved
    let remove = format!("/v1/admin/videos/{bad}/remove");
    let r = app
        .patch(&remove, json!({"reason": "   "}), &admin.access_token)
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = app
        .patch(
            &remove,
            json!({"reason": "graphic content"}),
            &admin.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    head = head.max(position_of(&r));
    let feed: Value = app
        .get("/v1/videos/", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&feed, "videos"), vec![spam.to_string()]);
    let r = app
        .get(
            &format!("/v1/videos/{bad}"),
            Some(&viewer.access_token),
            None,
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .client
        .delete(app.url(&format!("/v1/videos/{bad}")))
        .bearer_auth(&viewer.access_token)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let reports = get_ok(&app, "/v1/admin/reports", &admin.access_token, Some(head)).await;
    let statuses: Vec<(String, String)> = reports["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["video_id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (spam.to_string(), "open".to_owned()),
            (bad.to_string(), "resolved".to_owned()),
            (bad.to_string(), "resolved".to_owned()),
        ],
        "open first"
    );
    assert_eq!(reports["reports"][1]["resolved_by"], admin.id.to_string());
    let videos = get_ok(
        &app,
        "/v1/admin/videos?reported=true",
        &admin.access_token,
        None,
    )
    .await;
    assert_eq!(ids(&videos, "videos"), vec![spam.to_string()]);
    let all = get_ok(&app, "/v1/admin/videos", &admin.access_token, None).await;
    let removed = all["videos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == bad.to_string())
        .unwrap()
        .clone();
    assert!(removed["removed_at"].is_string());

    // every action is in the audit, with the admin and the reason
    let audit = get_ok(
        &app,
        &format!("/v1/admin/audit/User/{}", mallory.id),
        &admin.access_token,
        None,
    )
    .await;
    let actions: Vec<(Value, Value, Value)> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|e| {
            let body = e["payload"]
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap();
            (
                e["event_type"].clone(),
                body["admin_id"].clone(),
                body["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            (json!("Banned"), json!(admin.id), json!("spam links")),
            (json!("Unbanned"), json!(admin.id), json!("appeal accepted")),
        ]
    );
    let audit = get_ok(
        &app,
        &format!("/v1/admin/audit/Video/{bad}"),
        &admin.access_token,
        None,
    )
    .await;
    let last = audit["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event_type"], "Removed");
    assert_eq!(last["payload"]["Removed"]["reason"], "graphic content");

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}
