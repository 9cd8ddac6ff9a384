//! The Replicate client against the in-process fake Replicate (no LOKIZ app),
//! and webhook verification of the fake's signed deliveries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use lokiz_infra::ai::replicate::{
    sign_webhook, verify_webhook, CreatePrediction, Prediction, PredictionStatus, ReplicateClient,
    ReplicateError, WebhookError, WEBHOOK_TOLERANCE,
};
use lokiz_tests::fake_replicate::{FakeReplicate, OUTPUT_BYTES};
use reqwest::Url;
use serde_json::{json, Value};

const VERSION: &str = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa";

fn client(fake: &FakeReplicate, token: &str) -> ReplicateClient {
    ReplicateClient::new(
        Url::parse(&fake.base_url).unwrap(),
        token.into(),
        Duration::from_secs(10),
    )
    .unwrap()
}

fn request(webhook: Option<String>, filter: &[&str]) -> CreatePrediction {
    CreatePrediction {
        version: VERSION.into(),
        input: json!({"video": "https://example.com/in.mp4", "prompt": "make it pop"}),
        webhook,
        webhook_events_filter: filter.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn replicate_create_then_get_shows_starting() {
    let fake = FakeReplicate::start().await;
    let c = client(&fake, &fake.token);
    let created = c.create_prediction(&request(None, &[])).await.unwrap();
    assert_eq!(created.status, PredictionStatus::Starting);
    assert_eq!(created.version.as_deref(), Some(VERSION));
    assert_eq!(created.output, None);
    assert_eq!(created.progress_percent(), None);

    let got = c.get_prediction(&created.id).await.unwrap();
    assert_eq!(got.id, created.id);
    assert_eq!(got.status, PredictionStatus::Starting);
    assert!(!got.status.is_terminal());
    assert!(got.created_at.is_some());
    assert_eq!(
        got.urls.and_then(|u| u.get),
        Some(format!("{}/v1/predictions/{}", fake.base_url, created.id))
    );

    let recorded = fake.predictions();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].id, created.id);
    assert_eq!(recorded[0].version, VERSION);
    assert_eq!(recorded[0].input, request(None, &[]).input);
    assert_eq!(recorded[0].webhook, None);
}

#[tokio::test]
async fn replicate_advance_to_succeeded_with_output_and_progress() {
    let fake = FakeReplicate::start().await;
    let c = client(&fake, &fake.token);
    let id = c.create_prediction(&request(None, &[])).await.unwrap().id;

    fake.advance(&id).await;
    let p = c.get_prediction(&id).await.unwrap();
    assert_eq!(p.status, PredictionStatus::Processing);
    assert_eq!(p.progress_percent(), Some(40));
    assert!(p.started_at.is_some());
    assert_eq!(p.output, None);

    fake.advance(&id).await;
    let p = c.get_prediction(&id).await.unwrap();
    assert_eq!(p.status, PredictionStatus::Succeeded);
    assert!(p.status.is_terminal());
    assert_eq!(p.progress_percent(), Some(100));
    assert!(p.completed_at.is_some());
    let url = fake.output_url(&id);
    assert_eq!(p.output, Some(Value::from(url.clone())));

    // The output is downloadable.
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), OUTPUT_BYTES);
    let missing = reqwest::get(format!("{}/files/nope.mp4", fake.base_url))
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // A finished prediction stays finished.
    fake.advance(&id).await;
    fake.fail(&id, "too late").await;
    let again = c.get_prediction(&id).await.unwrap();
    assert_eq!(again.status, PredictionStatus::Succeeded);
    assert_eq!(again.error, None);
}

#[tokio::test]
async fn replicate_fail_reports_the_error() {
    let fake = FakeReplicate::start().await;
    let c = client(&fake, &fake.token);
    let id = c.create_prediction(&request(None, &[])).await.unwrap().id;
    fake.advance(&id).await;
    fake.fail(&id, "CUDA out of memory").await;
    let p = c.get_prediction(&id).await.unwrap();
    assert_eq!(p.status, PredictionStatus::Failed);
    assert!(p.status.is_terminal());
    assert_eq!(p.error_message().as_deref(), Some("CUDA out of memory"));
    assert_eq!(p.output, None);
}

#[tokio::test]
async fn replicate_cancel_is_canceled_and_recorded() {
    let fake = FakeReplicate::start().await;
    let c = client(&fake, &fake.token);
    let id = c.create_prediction(&request(None, &[])).await.unwrap().id;
    fake.advance(&id).await;

    let p = c.cancel_prediction(&id).await.unwrap();
    assert_eq!(p.status, PredictionStatus::Canceled);
    assert!(p.status.is_terminal());
    assert_eq!(
        c.get_prediction(&id).await.unwrap().status,
        PredictionStatus::Canceled
    );
    assert_eq!(fake.canceled(), vec![id.clone()]);

    // Cancelling again is harmless and returns it unchanged; advancing no longer moves it.
    let again = c.cancel_prediction(&id).await.unwrap();
    assert_eq!(again.status, PredictionStatus::Canceled);
    fake.advance(&id).await;
    assert_eq!(
        c.get_prediction(&id).await.unwrap().status,
        PredictionStatus::Canceled
    );
}

#[tokio::test]
async fn replicate_wrong_token_is_unauthorized() {
    let fake = FakeReplicate::start().await;
    let id = client(&fake, &fake.token)
        .create_prediction(&request(None, &[]))
        .await
        .unwrap()
        .id;
    for token in ["r8_wrong", ""] {
        let c = client(&fake, token);
        let err = c.create_prediction(&request(None, &[])).await.unwrap_err();
        assert!(matches!(err, ReplicateError::Unauthorized), "{err:?}");
        let err = c.get_prediction(&id).await.unwrap_err();
        assert!(matches!(err, ReplicateError::Unauthorized), "{err:?}");
        let err = c.cancel_prediction(&id).await.unwrap_err();
        assert!(matches!(err, ReplicateError::Unauthorized), "{err:?}");
    }
    assert_eq!(fake.predictions().len(), 1);
    assert!(fake.canceled().is_empty());
}

#[tokio::test]
async fn replicate_unknown_id_is_not_found() {
    let fake = FakeReplicate::start().await;
    let c = client(&fake, &fake.token);
    for id in ["doesnotexist", "a/b", ""] {
        let err = c.get_prediction(id).await.unwrap_err();
        assert!(matches!(err, ReplicateError::NotFound), "{id:?}: {err:?}");
        let err = c.cancel_prediction(id).await.unwrap_err();
        assert!(matches!(err, ReplicateError::NotFound), "{id:?}: {err:?}");
    }
    assert!(fake.canceled().is_empty());
}

#[tokio::test]
async fn replicate_invalid_request_is_a_status_error() {
    let fake = FakeReplicate::start().await;
    let c = client(&fake, &fake.token);
    let mut req = request(None, &[]);
    req.version = String::new();
    match c.create_prediction(&req).await.unwrap_err() {
        ReplicateError::Status { status, detail } => {
            assert_eq!(status, 422);
            assert!(detail.contains("version"), "{detail}");
        }
        other => panic!("expected Status, got {other:?}"),
    }
    // A raw body without `version`.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/predictions", fake.base_url))
        .bearer_auth(&fake.token)
        .json(&json!({"input": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(fake.predictions().is_empty());
}

#[tokio::test]
async fn replicate_unreachable_server_is_an_http_error() {
    let fake = FakeReplicate::start().await;
    let base = fake.base_url.clone();
    let token = fake.token.clone();
    drop(fake);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c =
        ReplicateClient::new(Url::parse(&base).unwrap(), token, Duration::from_secs(2)).unwrap();
    let err = c.get_prediction("x").await.unwrap_err();
    assert!(matches!(err, ReplicateError::Http(_)), "{err:?}");
}

/// What the webhook receiver saw: the prediction and its verification.
#[derive(Clone, Debug)]
struct Received {
    prediction: Option<Prediction>,
    verified: Result<(), WebhookError>,
}

#[derive(Clone)]
struct Receiver {
    secret: String,
    seen: Arc<Mutex<Vec<Received>>>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Verifies like a production handler would: 204 if the signature holds,
/// 401 otherwise.
async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let verified = verify_webhook(
        &r.secret,
        header(&headers, "webhook-id"),
        header(&headers, "webhook-timestamp"),
        header(&headers, "webhook-signature"),
        &body,
        Utc::now(),
        WEBHOOK_TOLERANCE,
    );
    let prediction = serde_json::from_slice(&body).ok();
    let ok = verified.is_ok();
    r.seen.lock().unwrap().push(Received {
        prediction,
        verified,
    });
    if ok {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// Starts a webhook receiver; returns its URL and what it has seen.
async fn start_receiver(secret: &str) -> (String, Arc<Mutex<Vec<Received>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Receiver {
        secret: secret.into(),
        seen: seen.clone(),
    };
    let app = Router::new()
        .route("/hooks/replicate", post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://127.0.0.1:{port}/hooks/replicate"), seen)
}

fn statuses(seen: &[Received]) -> Vec<Option<PredictionStatus>> {
    seen.iter()
        .map(|r| r.prediction.as_ref().map(|p| p.status))
        .collect()
}

#[tokio::test]
async fn replicate_webhooks_are_signed_and_forgeries_rejected() {
    let fake = FakeReplicate::start().await;
    let (url, seen) = start_receiver(&fake.webhook_secret).await;
    let c = client(&fake, &fake.token);
    let id = c
        .create_prediction(&request(
            Some(url.clone()),
            &["start", "output", "logs", "completed"],
        ))
        .await
        .unwrap()
        .id;
    assert_eq!(fake.predictions()[0].webhook.as_deref(), Some(url.as_str()));

    fake.advance(&id).await;
    fake.advance(&id).await;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            statuses(&seen),
            vec![
                Some(PredictionStatus::Processing),
                Some(PredictionStatus::Succeeded)
            ]
        );
        for r in seen.iter() {
            assert_eq!(r.verified, Ok(()));
            assert_eq!(
                r.prediction.as_ref().map(|p| p.id.as_str()),
                Some(id.as_str())
            );
        }
        let last = seen[1].prediction.as_ref().unwrap();
        assert_eq!(last.output, Some(Value::from(fake.output_url(&id))));
        assert_eq!(last.progress_percent(), Some(100));
    }
    let deliveries = fake.deliveries();
    assert_eq!(deliveries.len(), 2);
    for d in &deliveries {
        assert_eq!(d.response_status, Some(204), "{d:?}");
        assert_eq!(d.prediction_id, id);
        assert_eq!(d.url, url);
        assert!(d.webhook_id.starts_with("msg_"));
    }
    assert_ne!(deliveries[0].webhook_id, deliveries[1].webhook_id);

    // Forgeries against the same receiver.
    let http = reqwest::Client::new();
    let body = serde_json::to_vec(&json!({"id": id, "status": "succeeded",
                                          "output": "https://evil.example/x.mp4"}))
    .unwrap();
    let now = Utc::now().timestamp();
    let send = |wid: &str, ts: i64, sig: String, body: Vec<u8>| {
        http.post(&url)
            .header("content-type", "application/json")
            .header("webhook-id", wid)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
    };
    let other_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let forged = sign_webhook(other_secret, "msg_forged", now, &body).unwrap();
    let resp = send("msg_forged", now, forged, body.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Signed with the right secret, then the body altered.
    let genuine = sign_webhook(&fake.webhook_secret, "msg_altered", now, &body).unwrap();
    let mut altered = body.clone();
    altered.extend_from_slice(b" ");
    let resp = send("msg_altered", now, genuine.clone(), altered)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A genuine signature replayed long after.
    let old = now - 3600;
    let stale = sign_webhook(&fake.webhook_secret, "msg_stale", old, &body).unwrap();
    let resp = send("msg_stale", old, stale, body.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // No signature header value at all.
    let resp = send("msg_bare", now, String::new(), body.clone())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // The unaltered genuine one passes (the receiver is not rejecting everything).
    let resp = send("msg_altered", now, genuine, body).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let seen = seen.lock().unwrap();
    let results: Vec<_> = seen[2..].iter().map(|r| r.verified).collect();
    assert_eq!(
        results,
        vec![
            Err(WebhookError::BadSignature),
            Err(WebhookError::BadSignature),
            Err(WebhookError::Expired),
            Err(WebhookError::MissingHeader("webhook-signature")),
            Ok(()),
        ]
    );
}

#[tokio::test]
async fn replicate_webhook_filter_and_cancel_delivery() {
    let fake = FakeReplicate::start().await;
    let (url, seen) = start_receiver(&fake.webhook_secret).await;
    let c = client(&fake, &fake.token);

    // Only `completed`: the processing step is not delivered.
    let a = c
        .create_prediction(&request(Some(url.clone()), &["completed"]))
        .await
        .unwrap()
        .id;
    fake.advance(&a).await;
    assert!(fake.deliveries().is_empty());
    fake.advance(&a).await;
    assert_eq!(
        statuses(&seen.lock().unwrap()),
        vec![Some(PredictionStatus::Succeeded)]
    );

    // A failure is `completed` too.
    let b = c
        .create_prediction(&request(Some(url.clone()), &["completed"]))
        .await
        .unwrap()
        .id;
    fake.fail(&b, "boom").await;

    // A cancel is delivered in the background.
    let d = c
        .create_prediction(&request(Some(url.clone()), &["start", "completed"]))
        .await
        .unwrap()
        .id;
    c.cancel_prediction(&d).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fake.deliveries().len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cancel webhook not delivered: {:?}",
            fake.deliveries()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deliveries = fake.deliveries();
    let got: Vec<_> = deliveries
        .iter()
        .map(|d| {
            (
                d.prediction_id.as_str(),
                d.prediction_status.as_str(),
                d.response_status,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (a.as_str(), "succeeded", Some(204)),
            (b.as_str(), "failed", Some(204)),
            (d.as_str(), "canceled", Some(204)),
        ]
    );
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|r| r.verified.is_ok()), "{seen:?}");
    assert_eq!(
        seen[1].prediction.as_ref().and_then(|p| p.error_message()),
        Some("boom".into())
    );
}

/// A provider (or whoever controls its answers) names an internal address as
/// the output: the worker does not fetch it; the job fails, is refunded and
/// publishes nothing.
#[tokio::test]
async fn an_output_on_an_internal_address_is_never_fetched() {
    let fake = FakeReplicate::start().await;
    fake.set_output(lokiz_tests::sample_video(180, 320, 2.0).await);
    // even a host on the list is refused on a loopback address
    let env = fake.env(false);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = lokiz_tests::spawn_app_with(lokiz_api::Components::ALL, &pairs).await;
    let user = app.register("ssrf").await;
    let (video, settled) = app.upload_media(&user, (180, 320), 3.0).await;
    let r = app
        .client
        .post(app.url("/v1/ai/glitch/animate"))
        .bearer_auth(&user.access_token)
        .header("X-Lokiz-Min-Position", settled.to_string())
        .json(&json!({"video_id": video, "start_time": 0, "end_time": 2, "preset": "rgb-split"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let job_id = r.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.eventually(30, "a prediction", || async {
        fake.predictions().len() == 1
    })
    .await;
    let p = fake.predictions()[0].clone();
    fake.advance(&p.id).await;
    fake.advance(&p.id).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let job = loop {
        assert!(std::time::Instant::now() < deadline, "the job never ended");
        let j: Value = app
            .get(
                &format!("/v1/ai/jobs/{job_id}"),
                Some(&user.access_token),
                None,
            )
            .await
            .json()
            .await
            .unwrap();
        if j["status"] == "failed" || j["status"] == "completed" {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["status"], "failed", "{job}");
    assert!(job["result_url"].is_null());
    assert!(job["output_video_id"].is_null());
    app.eventually(20, "the 30 credits refunded", || async {
        let refunded: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'CreditsRefunded'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        refunded == 1
    })
    .await;
    let published: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'GlitchedFrom'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(published, 0, "nothing published");
    app.stop().await;
}
