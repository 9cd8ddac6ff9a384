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
