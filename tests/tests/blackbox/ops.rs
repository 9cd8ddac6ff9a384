use lokiz_tests::{expect_error, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_ready_metrics_docs_and_request_ids() {
    let app = spawn_app().await;
    let resp = app.get("/health", None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().contains_key("x-request-id"), "request id");
    let u = app.register("opsuser").await;

    // ready once the registration is relayed and projected
    app.get(&format!("/v1/users/{}", u.id), None, Some(u.position))
        .await;
    let resp = app.get("/ready", None, None).await;
    let status = resp.status();
    let ready: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["postgres"], true);
    assert_eq!(ready["checks"]["nats"], true);
    let projections = ready["checks"]["projections"].as_array().unwrap();
    assert!(projections.iter().any(|p| p["name"] == "users"));

    let metrics = app.get("/metrics", None, None).await.text().await.unwrap();
    assert!(metrics.contains("lokiz_http_requests_total"), "{metrics}");
    assert!(metrics.contains("lokiz_relay_lag_events"));
    assert!(metrics.contains("lokiz_projection_lag_events"));

    let spec: Value = app
        .get("/openapi.json", None, None)
        .await
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/me",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/users/{id}",
        "/v1/users/me",
        "/health",
        "/ready",
    ] {
        assert!(spec["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    let docs = app.get("/docs", None, None).await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().to_lowercase().contains("<html"));

    // a caller's request id is echoed back
    let resp = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");

    expect_error(
        app.get("/v1/nowhere", None, None).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn ops_endpoints_move_to_their_own_address() {
    let config = lokiz_tests::test_config(&[("LOKIZ_OPS_BIND", "127.0.0.1:0")]);
    let app = lokiz_api::Application::build(config.clone(), lokiz_api::Components::ALL)
        .await
        .expect("builds");
    let public = lokiz_tests::Api::new(format!("http://127.0.0.1:{}", app.port()));
    let ops = lokiz_tests::Api::new(format!(
        "http://127.0.0.1:{}",
        app.ops_port().expect("an ops listener")
    ));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    // the public address keeps liveness only
    assert_eq!(
        public.get("/health", None, None).await.status(),
        StatusCode::OK
    );
    for path in ["/metrics", "/ready"] {
        let r = public.get(path, None, None).await;
        expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    // the ops address has them, and nothing of the API
    let metrics = ops.get("/metrics", None, None).await;
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics.text().await.unwrap().contains("lokiz_"));
    let ready = ops.get("/ready", None, None).await.status();
    assert!(ready == StatusCode::OK || ready == StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ops.get("/health", None, None).await.status(),
        StatusCode::OK
    );
    let r = ops.get("/v1/credits/packages", None, None).await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    shutdown.cancel();
    let _ = handle.await;
    lokiz_tests::drop_stream(&config).await;
    lokiz_tests::drop_database(&config).await;
}

#[tokio::test]
async fn seed_and_bench_refuse_to_run_in_production() {
    for command in ["seed", "run"] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lokiz-bench"))
            .arg(command)
            .env("LOKIZ_ENV", "production")
            .env("LOKIZ_JWT_SECRET", "p".repeat(40))
            .env("LOKIZ_PAYMENTS", "stripe")
            .env("LOKIZ_STRIPE_SECRET_KEY", "sk_live_x")
            .env("LOKIZ_STRIPE_WEBHOOK_SECRET", "whsec_x")
            .env(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:1/never_touched",
            )
            .output()
            .await
            .expect("lokiz-bench runs");
        assert!(!out.status.success(), "{command} ran in production");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("refused when LOKIZ_ENV=production"),
            "{stderr}"
        );
    }
    // the product binary has no made-up data or load to offer at all
    for command in ["seed", "bench"] {
        let out = tokio::process::Command::new(lokiz_tests::cluster::lokiz_bin())
            .arg(command)
            .output()
            .await
            .expect("lokiz runs");
        assert_eq!(out.status.code(), Some(2), "lokiz {command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
    }
    // and the test payment provider keeps a production server from starting
    let out = tokio::process::Command::new(lokiz_tests::cluster::lokiz_bin())
        .arg("serve")
        .env("LOKIZ_ENV", "production")
        .env("LOKIZ_JWT_SECRET", "p".repeat(40))
        .env("LOKIZ_PAYMENTS", "test")
        .output()
        .await
        .expect("lokiz runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("LOKIZ_PAYMENTS"));
}
