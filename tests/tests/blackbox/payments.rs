//! Credit purchases through a Stripe-compatible provider (the in-process
//! fake of `lokiz_tests::fake_stripe`): a retried purchase is one charge and
//! one grant, a declined card grants nothing, a pending payment is granted by
//! its signed webhook once, and forged or stale webhooks change nothing.

use lokiz_api::Components;
use lokiz_tests::fake_stripe::FakeStripe;
use lokiz_tests::{expect_error, position_of, spawn_app_with, Registered, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn stripe_app() -> (TestApp, FakeStripe) {
    let stripe = FakeStripe::start().await;
    let env = stripe.env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(Components::ALL, &pairs).await;
    (app, stripe)
}

async fn buy(
    app: &TestApp,
    user: &Registered,
    key: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(app.url("/v1/credits/purchase"))
        .bearer_auth(&user.access_token)
        .json(&body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.expect("purchase request")
}

/// Balance and purchase grants once the wallet reached `position`.
async fn wallet(app: &TestApp, user: &Registered, position: i64) -> (i64, usize) {
    let balance: Value = app
        .get(
            "/v1/credits/balance",
            Some(&user.access_token),
            Some(position),
        )
        .await
        .json()
        .await
        .expect("balance");
    let history: Value = app
        .get(
            "/v1/credits/history?limit=50",
            Some(&user.access_token),
            Some(position),
        )
        .await
        .json()
        .await
        .expect("history");
    let purchases = history["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .filter(|t| t["reason"] == "purchase")
        .count();
    (balance["balance"].as_i64().expect("balance"), purchases)
}

async fn webhook(app: &TestApp, body: &[u8], signature: Option<String>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(app.url("/v1/payments/webhook"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        req = req.header("Stripe-Signature", s);
    }
    req.send().await.expect("webhook request")
}

#[tokio::test]
async fn a_purchase_whose_answer_was_lost_is_charged_and_granted_once() {
    let (app, stripe) = stripe_app().await;
    let user = app.register("payer").await;
    // the provider charges, but its answer never reaches LOKIZ
    stripe.lose_next_answer();
    let body = json!({"package_id": "credits_100", "payment_method": "pm_card_visa"});
    let r = buy(&app, &user, Some("buy-lost"), body.clone()).await;
    expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE").await;
    assert_eq!(stripe.charges(), 1, "the card was charged once");
    // the client retries with the same key: the same payment, granted now
    let r = buy(&app, &user, Some("buy-lost"), body.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let position = position_of(&r);
    let first: Value = r.json().await.expect("purchase");
    assert_eq!(first["status"], "succeeded");
    assert!(first["payment_id"].as_str().expect("id").starts_with("pi_"));
    // and again (a replay): nothing new anywhere
    let r = buy(&app, &user, Some("buy-lost"), body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let again: Value = r.json().await.expect("purchase");
    assert_eq!(again["payment_id"], first["payment_id"]);
    assert_eq!(stripe.charges(), 1, "never a second charge");
    assert_eq!(wallet(&app, &user, position).await, (200, 1));
    // a succeeded webhook for the same payment afterwards grants nothing more
    let intent = stripe
        .intent(first["payment_id"].as_str().expect("id"))
        .expect("intent");
    let event =
        serde_json::to_vec(&stripe.event("payment_intent.succeeded", &intent)).expect("json");
    let r = webhook(
        &app,
        &event,
        Some(FakeStripe::sign(&event, chrono::Utc::now().timestamp())),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let position = position_of(&r);
    assert_eq!(wallet(&app, &user, position).await, (200, 1));
    app.stop().await;
}

#[tokio::test]
async fn a_declined_card_is_402_and_grants_nothing() {
    let (app, stripe) = stripe_app().await;
    let user = app.register("declined").await;
    let body = json!({"package_id": "credits_500", "payment_method": "pm_card_chargeDeclined"});
    let r = buy(&app, &user, Some("buy-declined"), body.clone()).await;
    expect_error(r, StatusCode::PAYMENT_REQUIRED, "PAYMENT_DECLINED").await;
    // retried: the same verdict, still no charge
    let r = buy(&app, &user, Some("buy-declined"), body).await;
    expect_error(r, StatusCode::PAYMENT_REQUIRED, "PAYMENT_DECLINED").await;
    assert_eq!(stripe.charges(), 0);
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Payment' AND event_type = 'PaymentFailed'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(failed, 1, "the decline is recorded once");
    let head = app.head().await;
    assert_eq!(wallet(&app, &user, head).await, (100, 0));
    app.stop().await;
}

#[tokio::test]
async fn a_pending_purchase_is_granted_by_its_signed_webhook_once() {
    let (app, stripe) = stripe_app().await;
    let user = app.register("pending").await;
    let r = buy(
        &app,
        &user,
        Some("buy-pending"),
        json!({"package_id": "credits_100"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let purchase: Value = r.json().await.expect("purchase");
    assert_eq!(purchase["status"], "pending");
    assert!(purchase["client_secret"]
        .as_str()
        .is_some_and(|s| s.contains("_secret_")));
    let head = app.head().await;
    assert_eq!(
        wallet(&app, &user, head).await,
        (100, 0),
        "nothing before payment"
    );

    // the client confirms with the provider; the provider calls back
    let intent = stripe.confirm(purchase["payment_id"].as_str().expect("id"));
    let event =
        serde_json::to_vec(&stripe.event("payment_intent.succeeded", &intent)).expect("json");
    let signature = FakeStripe::sign(&event, chrono::Utc::now().timestamp());
    let r = webhook(&app, &event, Some(signature.clone())).await;
    assert_eq!(r.status(), StatusCode::OK);
    let position = position_of(&r);
    let answer: Value = r.json().await.expect("answer");
    assert_eq!(answer["outcome"], "granted");
    assert_eq!(wallet(&app, &user, position).await, (200, 1));
    // the provider delivers it again (a replay within the tolerance)
    for _ in 0..3 {
        let r = webhook(&app, &event, Some(signature.clone())).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let head = app.head().await;
    assert_eq!(wallet(&app, &user, head).await, (200, 1), "granted once");
    assert_eq!(stripe.charges(), 1);
    app.stop().await;
}

#[tokio::test]
async fn forged_stale_and_mismatched_webhooks_grant_nothing() {
    let (app, stripe) = stripe_app().await;
    let user = app.register("target").await;
    let r = buy(
        &app,
        &user,
        Some("buy-forged"),
        json!({"package_id": "credits_1200"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let purchase: Value = r.json().await.expect("purchase");
    let intent = stripe
        .intent(purchase["payment_id"].as_str().expect("id"))
        .expect("intent");
    let mut paid = intent.clone();
    paid["status"] = json!("succeeded");
    let event = serde_json::to_vec(&stripe.event("payment_intent.succeeded", &paid)).expect("json");
    let now = chrono::Utc::now().timestamp();

    // no signature, another secret, a stale timestamp, a changed body
    let r = webhook(&app, &event, None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE").await;
    let forged = lokiz_infra::payments::sign_webhook("whsec_attacker", now, &event);
    let r = webhook(&app, &event, Some(forged)).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE").await;
    let stale = FakeStripe::sign(&event, now - 301);
    let r = webhook(&app, &event, Some(stale)).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE").await;
    let signed = FakeStripe::sign(&event, now);
    let mut cheaper = paid.clone();
    cheaper["amount"] = json!(1);
    let tampered =
        serde_json::to_vec(&stripe.event("payment_intent.succeeded", &cheaper)).expect("json");
    let r = webhook(&app, &tampered, Some(signed)).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE").await;
    // validly signed, but for another amount than the purchase: refused
    let signed_cheaper = FakeStripe::sign(&tampered, now);
    let r = webhook(&app, &tampered, Some(signed_cheaper)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let answer: Value = r.json().await.expect("answer");
    assert_eq!(answer["outcome"], "refused");

    let head = app.head().await;
    assert_eq!(wallet(&app, &user, head).await, (100, 0));
    let succeeded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'PaymentSucceeded'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(succeeded, 0);
    app.stop().await;
}

#[tokio::test]
async fn the_test_provider_takes_no_webhooks() {
    let app = lokiz_tests::spawn_app().await;
    let body = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{}}}"#;
    let signature = FakeStripe::sign(body, chrono::Utc::now().timestamp());
    let r = webhook(&app, body, Some(signature)).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE").await;
    app.stop().await;
}
