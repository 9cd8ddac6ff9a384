//! Admin role (`lokiz users grant-admin`), the admin audit endpoint, and the
//! Registered v1 → v2 upcast.

use std::time::Duration;

use lokiz_api::tools::{change_role, history, ChangeRoleError};
use lokiz_domain::user::Role;
use lokiz_tests::{expect_error, spawn_app};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test]
async fn audit_is_for_admins_and_shows_history_and_state() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let path = format!("/v1/admin/audit/User/{}", bob.id);

    // no token → 401; a member → 403
    let r = app.get(&path, None, None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    let r = app.get(&path, Some(&alice.access_token), None).await;
    expect_error(r, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    // grant-admin matches the username case-insensitively and emits RoleChanged once
    let granted = change_role(&app.pool, "ALICE", Role::Admin).await.unwrap();
    assert!(granted.appended);
    let again = change_role(&app.pool, "alice", Role::Admin).await.unwrap();
    assert!(!again.appended, "granting twice records nothing");
    assert!(matches!(
        change_role(&app.pool, "nobody", Role::Admin).await,
        Err(ChangeRoleError::UnknownUser(_))
    ));
    let granted_at = granted.position.unwrap();

    // bob edits his profile twice, with a moment between
    let r = app
        .patch(
            "/v1/users/me",
            json!({"display_name": "Bob One"}),
            &bob.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = app
        .patch(
            "/v1/users/me",
            json!({"bio": "trickster"}),
            &bob.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let r = app
        .get(&path, Some(&alice.access_token), Some(granted_at))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["aggregate_type"], "User");
    assert_eq!(body["aggregate_id"], bob.id.to_string());
    let types: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Registered", "ProfileUpdated", "ProfileUpdated"]);
    assert_eq!(body["events"][0]["event_version"], "2.0");
    assert_eq!(body["events"][0]["payload"]["Registered"]["role"], "member");
    assert_eq!(body["version"], 3);
    assert_eq!(body["state"]["display_name"], "Bob One");
    assert_eq!(body["state"]["bio"], "trickster");
    assert_eq!(body["state"]["role"], "member");

    // as_of: the state before the second edit
    let url = format!(
        "{path}?as_of={}",
        between.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    let r = app
        .client
        .get(app.url(&url))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let then: Value = r.json().await.unwrap();
    assert_eq!(then["events"].as_array().unwrap().len(), 2);
    assert_eq!(then["version"], 2);
    assert!(then["state"]["bio"].is_null(), "{}", then["state"]);

    // alice's own history shows the role change
    let r = app
        .get(
            &format!("/v1/admin/audit/User/{}", alice.id),
            Some(&alice.access_token),
            None,
        )
        .await;
    let mine: Value = r.json().await.unwrap();
    assert_eq!(mine["events"][1]["event_type"], "RoleChanged");
    assert_eq!(mine["state"]["role"], "admin");

    // an aggregate with no events → 404; bad input → 422 naming every field
    let r = app
        .get(
            &format!("/v1/admin/audit/Video/{}", Uuid::new_v4()),
            Some(&alice.access_token),
            None,
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .get(
            &format!(
                "/v1/admin/audit/Spaceship/{}?as_of=yesterday",
                "x".repeat(201)
            ),
            Some(&alice.access_token),
            None,
        )
        .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let fields: Vec<&str> = err["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["aggregate_type", "aggregate_id", "as_of"], "{err}");

    // revoke: alice is a member again
    let revoked = change_role(&app.pool, "alice", Role::Member).await.unwrap();
    let r = app
        .get(&path, Some(&alice.access_token), revoked.position)
        .await;
    expect_error(r, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    app.stop().await;
}

/// A `Registered` written at version 1.0 (before roles existed) is read as
/// version 2.0 by the projection, the aggregate and the audit fold, and stays
/// 1.0 in the store. Its snapshot is from an older state layout that no longer
/// deserializes, so the aggregate is rebuilt from the events — through the
/// upcaster — and stays writable.
#[tokio::test]
async fn a_version_1_registered_is_read_as_version_2() {
    let app = spawn_app().await;
    let id = Uuid::new_v4();
    let v1 = json!({"Registered": {
        "user_id": id,
        "username": "oldtimer",
        "email": "oldtimer@example.com",
        "display_name": "Old Timer",
        "registered_at": "2025-01-01T00:00:00Z"
    }});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('User', $1, 1, 'Registered', '1.0', $2, '{}')",
    )
    .bind(id.to_string())
    .bind(&v1)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
         VALUES ('User', $1, 1, 1, '{\"state\": \"registered\"}')",
    )
    .bind(id.to_string())
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO identities (user_id, username_key, email_key, password_hash)
         VALUES ($1, 'oldtimer', 'oldtimer@example.com', 'not-a-hash')",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .unwrap();

    // the projection decodes it (through the relay and JetStream)
    app.eventually(20, "the v1 user in the users read model", || async {
        sqlx::query_scalar::<_, String>("SELECT role FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&app.pool)
            .await
            .unwrap()
            .is_some_and(|r| r == "member")
    })
    .await;
    let r = app.get(&format!("/v1/users/{id}"), None, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["username"], "oldtimer");

    // the audit fold reads it
    let h = history(&app.pool, "User", &id.to_string(), None)
        .await
        .unwrap();
    assert_eq!(h.state["role"], "member");
    assert_eq!(h.state["display_name"], "Old Timer");

    // the aggregate loads it (no snapshot: replayed through the upcaster) and
    // decides on it: a registered member can be made admin
    let written = change_role(&app.pool, "oldtimer", Role::Admin)
        .await
        .unwrap();
    assert!(written.appended);
    let versions: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT sequence, event_type, event_version FROM events
          WHERE aggregate_type = 'User' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        versions,
        [
            (1, "Registered".to_owned(), "1.0".to_owned()),
            (2, "RoleChanged".to_owned(), "1.0".to_owned())
        ],
        "the v1 event is never rewritten"
    );
    let snapshot: Value = sqlx::query_scalar(
        "SELECT payload::jsonb FROM snapshots WHERE aggregate_type = 'User' AND aggregate_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(snapshot["registered"], true, "{snapshot}");
    assert_eq!(snapshot["role"], "admin", "{snapshot}");
    app.eventually(20, "the role change projected", || async {
        sqlx::query_scalar::<_, String>("SELECT role FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .is_ok_and(|r| r == "admin")
    })
    .await;
    app.stop().await;
}
