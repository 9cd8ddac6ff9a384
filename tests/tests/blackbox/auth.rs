use lokiz_tests::{expect_error, spawn_app, TEST_SECRET};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn register_me_update_and_read_your_write() {
    let app = spawn_app().await;
    let u = app.register("Trickster").await;

    // the seed's response shape, plus refresh_token and expires_in
    assert_eq!(u.body["token_type"], "bearer");
    assert_eq!(u.body["expires_in"], 900);
    let user = &u.body["user"];
    for field in [
        "id",
        "username",
        "email",
        "display_name",
        "credits",
        "created_at",
    ] {
        assert!(user.get(field).is_some(), "user.{field} missing in {user}");
    }
    assert_eq!(user["username"], "Trickster");
    assert_eq!(user["email"], "trickster@example.com");
    assert_eq!(user["display_name"], "Trickster");
    assert_eq!(user["credits"], 100);

    // me, read at the registration's position: projected, with the signup credits
    let me: Value = app
        .get("/v1/auth/me", Some(&u.access_token), Some(u.position))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], user["id"]);
    assert_eq!(me["credits"], 100);
    assert_eq!(me["created_at"], user["created_at"]);

    // update, then read the public profile at the update's position: visible at once
    let resp = app
        .patch(
            "/v1/users/me",
            json!({"display_name": "Loki", "bio": "glitch all the things"}),
            &u.access_token,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let position: i64 = resp.headers()["x-lokiz-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(position > u.position);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["position"], position);
    assert_eq!(body["user"]["display_name"], "Loki");

    let public: Value = app
        .get(&format!("/v1/users/{}", u.id), None, Some(position))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(public["display_name"], "Loki");
    assert_eq!(public["bio"], "glitch all the things");
    // (a profile image is uploaded first: tests/tests/blackbox/creator.rs)
    assert_eq!(public["profile_image_url"], Value::Null);
    assert!(public.get("email").is_none(), "public profile leaks email");

    // clearing with null
    let resp = app
        .patch("/v1/users/me", json!({"bio": null}), &u.access_token)
        .await;
    let position: i64 = resp.headers()["x-lokiz-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let public: Value = app
        .get(&format!("/v1/users/{}", u.id), None, Some(position))
        .await
        .json()
        .await
        .unwrap();
    assert!(public["bio"].is_null());
    assert_eq!(public["display_name"], "Loki");

    // username and email cannot be changed; nothing is recorded
    let before = app.event_count().await;
    let err = expect_error(
        app.patch(
            "/v1/users/me",
            json!({"username": "other", "email": "o@x.io"}),
            &u.access_token,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let fields: Vec<&str> = err["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"username") && fields.contains(&"email"));
    assert_eq!(app.event_count().await, before);

    // unknown user → 404 envelope; a future position → 503 CONSISTENCY_TIMEOUT
    expect_error(
        app.get(&format!("/v1/users/{}", uuid::Uuid::new_v4()), None, None)
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn consistency_timeout_is_503() {
    // no projections run: the registration is stored but never projected
    let app = lokiz_tests::spawn_app_with(
        lokiz_api::Components {
            projections: false,
            ..lokiz_api::Components::ALL
        },
        &[("LOKIZ_CONSISTENCY_TIMEOUT_MS", "300")],
    )
    .await;
    let u = app.register("waiter").await;
    let resp = app
        .get(&format!("/v1/users/{}", u.id), None, Some(u.position))
        .await;
    assert!(resp.headers().contains_key("retry-after"));
    let err = expect_error(resp, StatusCode::SERVICE_UNAVAILABLE, "CONSISTENCY_TIMEOUT").await;
    assert_eq!(err["details"]["min_position"], u.position);

    // a position never handed out is refused at once, not waited for
    let started = std::time::Instant::now();
    let resp = app
        .get(
            &format!("/v1/users/{}", u.id),
            None,
            Some(u.position + 1_000_000),
        )
        .await;
    let err = expect_error(resp, StatusCode::CONFLICT, "POSITION_NOT_ISSUED").await;
    assert_eq!(err["details"]["min_position"], u.position + 1_000_000);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(300),
        "answered without waiting for the consistency timeout"
    );
    expect_error(
        app.client
            .get(app.url(&format!("/v1/users/{}", u.id)))
            .header("X-Lokiz-Min-Position", "soon")
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "INVALID_MIN_POSITION",
    )
    .await;
    app.stop().await;
}

fn field_codes(err: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = err["details"]["fields"]
        .as_array()
        .expect("fields listed")
        .iter()
        .map(|f| {
            (
                f["field"].as_str().unwrap().to_owned(),
                f["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn bad_registrations_store_nothing() {
    let app = spawn_app().await;
    let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (
            json!({"username": "okname", "email": "not-an-email", "password": "password123"}),
            vec![("email", "format")],
        ),
        (
            json!({"username": "okname", "email": "a@b.co", "password": "short"}),
            vec![("password", "length")],
        ),
        (
            json!({"username": "a".repeat(31), "email": "a@b.co", "password": "password123"}),
            vec![("username", "length")],
        ),
        (
            json!({"username": "bad name!", "email": "a@b.co", "password": "password123"}),
            vec![("username", "format")],
        ),
        (
            json!({}),
            vec![
                ("email", "required"),
                ("password", "required"),
                ("username", "required"),
            ],
        ),
        (
            json!({"username": 42, "email": ["a@b.co"], "password": true}),
            vec![
                ("email", "type"),
                ("password", "type"),
                ("username", "type"),
            ],
        ),
        (
            json!({"username": "x", "email": "nope", "password": "1"}),
            vec![
                ("email", "format"),
                ("password", "length"),
                ("username", "length"),
            ],
        ),
    ];
    for (body, expected) in cases {
        let err = expect_error(
            app.post("/v1/auth/register", body.clone(), None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        assert_eq!(field_codes(&err), expected, "for {body}");
    }

    // not JSON at all, broken JSON, JSON that is not an object
    let resp = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("content-type", "text/plain")
        .body("username=x")
        .send()
        .await
        .unwrap();
    expect_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    let resp = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "INVALID_JSON").await;
    expect_error(
        app.post("/v1/auth/register", json!(["a"]), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;

    assert_eq!(
        app.event_count().await,
        0,
        "a refused registration stored events"
    );
    let identities: i64 = sqlx::query_scalar("SELECT count(*) FROM identities")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(identities, 0);

    // duplicates, case-insensitively, name the taken fields
    app.register("Dup_User").await;
    let events = app.event_count().await;
    let err = expect_error(
        app.post(
            "/v1/auth/register",
            json!({"username": "dup_user", "email": "fresh@example.com", "password": "password123"}),
            None,
        )
        .await,
        StatusCode::CONFLICT,
        "ALREADY_EXISTS",
    )
    .await;
    assert_eq!(err["details"]["fields"], json!(["username"]));
    let err = expect_error(
        app.post(
            "/v1/auth/register",
            json!({"username": "fresh", "email": "DUP_USER@example.com", "password": "password123"}),
            None,
        )
        .await,
        StatusCode::CONFLICT,
        "ALREADY_EXISTS",
    )
    .await;
    assert_eq!(err["details"]["fields"], json!(["email"]));
    assert_eq!(app.event_count().await, events, "a duplicate stored events");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_admit_exactly_one() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = app.client.clone();
        let url = app.url("/v1/auth/register");
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(
                    &json!({"username": if i % 2 == 0 { "Racer" } else { "racer" },
                              "email": format!("racer{i}@example.com"), "password": "password123"}),
                )
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((created, conflicts), (1, 11));
    let registered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'Registered'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(registered, 1);
    app.stop().await;
}

#[tokio::test]
async fn login_tokens_and_refresh_rotation() {
    let app = spawn_app().await;
    let u = app.register("keyholder").await;

    // login by email, case-insensitive; wrong password and unknown email look the same
    let resp = app
        .post(
            "/v1/auth/login",
            json!({"email": "KEYHOLDER@example.com", "password": "password123"}),
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let login: Value = resp.json().await.unwrap();
    assert_eq!(login["token_type"], "bearer");
    assert_eq!(login["user"]["id"], u.id.to_string());
    assert_eq!(login["user"]["credits"], 100);

    let wrong = expect_error(
        app.post(
            "/v1/auth/login",
            json!({"email": u.email, "password": "wrong-password"}),
            None,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    )
    .await;
    let unknown = expect_error(
        app.post(
            "/v1/auth/login",
            json!({"email": "nobody@example.com", "password": "password123"}),
            None,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_eq!(wrong["message"], unknown["message"]);
    expect_error(
        app.post("/v1/auth/login", json!({"email": 1}), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;

    // bad access tokens
    expect_error(
        app.get("/v1/auth/me", None, None).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;
    let mut tampered = u.access_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    expect_error(
        app.get("/v1/auth/me", Some(&tampered), None).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    )
    .await;

    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": u.id, "iat": now - 3600, "exp": now - 1800, "typ": "access"});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .unwrap();
    expect_error(
        app.get("/v1/auth/me", Some(&expired), None).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    )
    .await;

    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none_token = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(json!({"sub": u.id, "iat": now, "exp": now + 600, "typ": "access"}).to_string())
    );
    expect_error(
        app.get("/v1/auth/me", Some(&none_token), None).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_TOKEN",
    )
    .await;

    // rotation: each refresh token works once and yields the next
    let r1 = u.refresh_token.clone();
    let resp = app
        .post("/v1/auth/refresh", json!({"refresh_token": r1}), None)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let rotated: Value = resp.json().await.unwrap();
    let r2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    let fresh_access = rotated["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/v1/auth/me", Some(&fresh_access), None)
            .await
            .status(),
        StatusCode::OK
    );

    // reuse of the spent r1 → 401, and the whole family (r2 too) is revoked
    expect_error(
        app.post("/v1/auth/refresh", json!({"refresh_token": r1}), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "REFRESH_TOKEN_REUSED",
    )
    .await;
    expect_error(
        app.post("/v1/auth/refresh", json!({"refresh_token": r2}), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "INVALID_REFRESH_TOKEN",
    )
    .await;

    // logout revokes the login's family; other families stay valid
    let login_refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let other = app
        .post(
            "/v1/auth/login",
            json!({"email": u.email, "password": "password123"}),
            None,
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .post(
            "/v1/auth/logout",
            json!({"refresh_token": login_refresh}),
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    expect_error(
        app.post(
            "/v1/auth/refresh",
            json!({"refresh_token": login_refresh}),
            None,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "INVALID_REFRESH_TOKEN",
    )
    .await;
    assert_eq!(
        app.post("/v1/auth/refresh", json!({"refresh_token": other}), None)
            .await
            .status(),
        StatusCode::OK
    );
    expect_error(
        app.post(
            "/v1/auth/refresh",
            json!({"refresh_token": "made-up"}),
            None,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "INVALID_REFRESH_TOKEN",
    )
    .await;
    app.stop().await;
}
