//! Subscriptions through a Stripe-compatible provider (the in-process fake of
//! `lokiz_tests::fake_stripe`): subscribing grants the first month's credits,
//! each renewal's signed webhook grants the month's credits once however
//! often it is delivered, a failed renewal ends the subscription with its
//! paid period and grants nothing, a canceled subscription runs to its
//! period's end and is not renewed; bad input is refused in the envelope.

use std::time::Duration;

use lokiz_api::Components;
use lokiz_tests::fake_stripe::FakeStripe;
use lokiz_tests::{expect_error, position_of, spawn_app_with, Registered, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const DAY: i64 = 86_400;

async fn stripe_app() -> (TestApp, FakeStripe) {
    let stripe = FakeStripe::start().await;
    let env = stripe.env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(Components::ALL, &pairs).await;
    (app, stripe)
}

async fn subscribe(app: &TestApp, user: Option<&Registered>, body: Value) -> reqwest::Response {
    app.post(
        "/v1/subscriptions/subscribe",
        body,
        user.map(|u| u.access_token.as_str()),
    )
    .await
}

async fn cancel(app: &TestApp, user: Option<&Registered>) -> reqwest::Response {
    let mut req = app.client.delete(app.url("/v1/subscriptions/cancel"));
    if let Some(u) = user {
        req = req.bearer_auth(&u.access_token);
    }
    req.send().await.expect("cancel request")
}

async fn me(app: &TestApp, user: &Registered, position: i64) -> Value {
    let r = app
        .get(
            "/v1/subscriptions/me",
            Some(&user.access_token),
            Some(position),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("subscription")
}

/// Signs and delivers `event`; the answer's outcome and position.
async fn deliver(app: &TestApp, event: &Value) -> (String, Option<i64>) {
    let body = serde_json::to_vec(event).expect("json");
    let r = app
        .client
        .post(app.url("/v1/payments/webhook"))
        .header("content-type", "application/json")
        .header(
            "Stripe-Signature",
            FakeStripe::sign(&body, chrono::Utc::now().timestamp()),
        )
        .body(body)
        .send()
        .await
        .expect("webhook request");
    assert_eq!(r.status(), StatusCode::OK);
    let position = r
        .headers()
        .get("x-lokiz-position")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let answer: Value = r.json().await.expect("answer");
    (
        answer["outcome"].as_str().expect("outcome").to_owned(),
        position,
    )
}

async fn balance(app: &TestApp, user: &Registered) -> i64 {
    let b: Value = app
        .get("/v1/credits/balance", Some(&user.access_token), None)
        .await
        .json()
        .await
        .expect("balance");
    b["balance"].as_i64().expect("balance")
}

/// Waits until the wallet shows `expected` (the saga grants after the
/// subscription event), then returns the subscription grants in the history.
async fn settled_balance(app: &TestApp, user: &Registered, expected: i64) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = balance(app, user).await;
        if now == expected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "balance {now}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // anything granted twice would be on its way by now
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(balance(app, user).await, expected, "nothing more granted");
    let history: Value = app
        .get(
            "/v1/credits/history?limit=50",
            Some(&user.access_token),
            None,
        )
        .await
        .json()
        .await
        .expect("history");
    history["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .filter(|t| t["reason"] == "subscription")
        .cloned()
        .collect()
}

fn period(sub: &Value) -> (i64, i64) {
    (
        sub["current_period_start"].as_i64().expect("start"),
        sub["current_period_end"].as_i64().expect("end"),
    )
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[tokio::test]
async fn a_renewal_grants_the_months_credits_once_however_often_it_is_delivered() {
    let (app, stripe) = stripe_app().await;
    let user = app.register("subscriber").await;
    let r = subscribe(
        &app,
        Some(&user),
        json!({"plan": "pro", "payment_method": "pm_card_visa"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let started: Value = r.json().await.expect("subscription");
    assert_eq!(started["tier"], "pro");
    assert_eq!(started["status"], "active");
    assert_eq!(started["monthly_credits"], 1000);
    assert_eq!(started["cancel_at_period_end"], false);
    assert_eq!(started["ends_at"], Value::Null);
    // signup's 100 and the first month's 1000
    assert_eq!(settled_balance(&app, &user, 1100).await.len(), 1);

    let sub = stripe.subscription_of(&user.id.to_string()).expect("sub");
    let (start, end) = period(&sub);
    assert_eq!(started["current_period_end"], rfc3339(end));
    // the first invoice's own webhook: that period is already granted
    let first = stripe.invoice_event("invoice.paid", &sub, "subscription_create", start, end);
    assert_eq!(deliver(&app, &first).await.0, "renewed");

    // a month later the provider renews, and delivers the webhook twice,
    // and its `invoice.payment_succeeded` twin too
    let renewal = stripe.invoice_event(
        "invoice.paid",
        &sub,
        "subscription_cycle",
        end,
        end + 30 * DAY,
    );
    let (outcome, position) = deliver(&app, &renewal).await;
    assert_eq!(outcome, "renewed");
    assert_eq!(deliver(&app, &renewal).await.0, "renewed");
    let mut twin = renewal.clone();
    twin["type"] = json!("invoice.payment_succeeded");
    assert_eq!(deliver(&app, &twin).await.0, "renewed");

    let grants = settled_balance(&app, &user, 2100).await;
    assert_eq!(grants.len(), 2, "the start and one renewal: {grants:?}");
    assert!(grants.iter().all(|g| g["credits"] == 1000));
    let now = me(&app, &user, position.expect("position")).await;
    assert_eq!(now["current_period_start"], rfc3339(end));
    assert_eq!(now["current_period_end"], rfc3339(end + 30 * DAY));
    assert_eq!(now["status"], "active");
    let renewed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'SubscriptionRenewed'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(renewed, 1, "one renewal recorded");
    assert_eq!(stripe.subscriptions_created(), 1);

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_failed_renewal_ends_the_subscription_with_its_paid_period() {
    let (app, stripe) = stripe_app().await;
    let user = app.register("lapsing").await;
    let r = subscribe(
        &app,
        Some(&user),
        json!({"plan": "basic", "payment_method": "pm_card_visa"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(settled_balance(&app, &user, 400).await.len(), 1);
    let sub = stripe.subscription_of(&user.id.to_string()).expect("sub");
    let (_, end) = period(&sub);

    // the next month's payment fails (and the provider says so twice)
    let failure = stripe.invoice_event(
        "invoice.payment_failed",
        &sub,
        "subscription_cycle",
        end,
        end + 30 * DAY,
    );
    let (outcome, position) = deliver(&app, &failure).await;
    assert_eq!(outcome, "payment_failed");
    assert_eq!(deliver(&app, &failure).await.0, "payment_failed");
    let now = me(&app, &user, position.expect("position")).await;
    assert_eq!(now["status"], "active", "paid until the period ends: {now}");
    assert_eq!(now["tier"], "basic");
    assert_eq!(now["cancel_at_period_end"], true);
    assert_eq!(now["payment_failed"], true);
    assert_eq!(now["ends_at"], rfc3339(end));
    assert_eq!(now["current_period_end"], rfc3339(end));
    // no credits for the unpaid month
    assert_eq!(settled_balance(&app, &user, 400).await.len(), 1);

    // the provider gives up: the subscription is over
    let mut ended = sub.clone();
    ended["status"] = json!("canceled");
    let (outcome, position) =
        deliver(&app, &stripe.event("customer.subscription.deleted", &ended)).await;
    assert_eq!(outcome, "ended");
    let now = me(&app, &user, position.expect("position")).await;
    assert_eq!(now["status"], "ended");
    assert_eq!(now["tier"], "free");
    assert_eq!(now["monthly_credits"], 0);
    assert_eq!(now["cancel_at_period_end"], false);
    assert_eq!(settled_balance(&app, &user, 400).await.len(), 1);

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_canceled_subscription_runs_to_its_period_end_and_is_not_renewed() {
    let (app, stripe) = stripe_app().await;
    let user = app.register("leaving").await;

    // signed out: 401 everywhere
    let r = subscribe(&app, None, json!({"plan": "pro"})).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    let r = app.get("/v1/subscriptions/me", None, None).await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    expect_error(
        cancel(&app, None).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    .await;

    // never subscribed: the free tier; nothing to cancel
    let free = me(&app, &user, user.position).await;
    assert_eq!(free["tier"], "free");
    assert_eq!(free["status"], "none");
    assert_eq!(free["monthly_credits"], 0);
    expect_error(
        cancel(&app, Some(&user)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;

    // bad input: every bad field listed, nothing asked of the provider
    let r = subscribe(
        &app,
        Some(&user),
        json!({"plan": "platinum", "payment_method": "pm card"}),
    )
    .await;
    let err = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let fields: Vec<&str> = err["details"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["plan", "payment_method"]);
    for body in [json!({"plan": "free"}), json!({}), json!({"plan": 3})] {
        let r = subscribe(&app, Some(&user), body).await;
        expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    }
    // a declined first payment: 402, nothing recorded
    let r = subscribe(
        &app,
        Some(&user),
        json!({"plan": "pro", "payment_method": "pm_card_chargeDeclined"}),
    )
    .await;
    expect_error(r, StatusCode::PAYMENT_REQUIRED, "PAYMENT_DECLINED").await;
    assert_eq!(stripe.subscriptions_created(), 0);

    let r = subscribe(
        &app,
        Some(&user),
        json!({"plan": "enterprise", "payment_method": "pm_card_visa"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // subscribing again while it runs: 409, and no second provider subscription
    let r = subscribe(
        &app,
        Some(&user),
        json!({"plan": "pro", "payment_method": "pm_card_visa"}),
    )
    .await;
    expect_error(r, StatusCode::CONFLICT, "SUBSCRIPTION_EXISTS").await;
    assert_eq!(stripe.subscriptions_created(), 1);
    assert_eq!(settled_balance(&app, &user, 5100).await.len(), 1);

    let sub = stripe.subscription_of(&user.id.to_string()).expect("sub");
    let (_, end) = period(&sub);
    let r = cancel(&app, Some(&user)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let position = position_of(&r);
    let canceled: Value = r.json().await.expect("subscription");
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["tier"], "enterprise", "still paid for");
    assert_eq!(canceled["cancel_at_period_end"], true);
    assert_eq!(canceled["ends_at"], rfc3339(end));
    assert_eq!(canceled["payment_failed"], false);
    let at_provider = stripe.subscription_of(&user.id.to_string()).expect("sub");
    assert_eq!(at_provider["cancel_at_period_end"], true);
    assert_eq!(me(&app, &user, position).await, canceled);
    // canceling again changes nothing; subscribing is still refused
    let r = cancel(&app, Some(&user)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let again: Value = r.json().await.expect("subscription");
    assert_eq!(again, canceled);
    let r = subscribe(&app, Some(&user), json!({"plan": "basic"})).await;
    expect_error(r, StatusCode::CONFLICT, "SUBSCRIPTION_EXISTS").await;

    // a renewal for the month after the end grants nothing
    let renewal = stripe.invoice_event(
        "invoice.paid",
        &sub,
        "subscription_cycle",
        end,
        end + 30 * DAY,
    );
    assert_eq!(deliver(&app, &renewal).await.0, "refused");
    let grants = settled_balance(&app, &user, 5100).await;
    assert_eq!(grants.len(), 1, "only the first month: {grants:?}");
    let head = app.head().await;
    assert_eq!(
        me(&app, &user, head).await["current_period_end"],
        rfc3339(end)
    );

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_subscription_whose_answer_was_lost_is_one_subscription_granted_once() {
    let (app, stripe) = stripe_app().await;
    let body = json!({"plan": "basic", "payment_method": "pm_card_visa"});

    // retried: the same provider subscription, recorded and granted once
    let retrier = app.register("retrier").await;
    stripe.lose_next_answer();
    let r = subscribe(&app, Some(&retrier), body.clone()).await;
    expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE").await;
    assert_eq!(stripe.subscriptions_created(), 1, "the provider started it");
    let r = subscribe(&app, Some(&retrier), body.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(stripe.subscriptions_created(), 1, "never a second one");
    let sub = stripe
        .subscription_of(&retrier.id.to_string())
        .expect("sub");
    let (start, end) = period(&sub);
    let first = stripe.invoice_event("invoice.paid", &sub, "subscription_create", start, end);
    assert_eq!(deliver(&app, &first).await.0, "renewed");
    assert_eq!(settled_balance(&app, &retrier, 400).await.len(), 1);

    // never retried: the first invoice's webhook starts it
    let quiet = app.register("quiet").await;
    stripe.lose_next_answer();
    let r = subscribe(&app, Some(&quiet), body).await;
    expect_error(r, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE").await;
    let sub = stripe.subscription_of(&quiet.id.to_string()).expect("sub");
    let (start, end) = period(&sub);
    let first = stripe.invoice_event("invoice.paid", &sub, "subscription_create", start, end);
    let (outcome, position) = deliver(&app, &first).await;
    assert_eq!(outcome, "started");
    assert_eq!(deliver(&app, &first).await.0, "renewed");
    let now = me(&app, &quiet, position.expect("position")).await;
    assert_eq!(now["tier"], "basic");
    assert_eq!(now["status"], "active");
    assert_eq!(now["current_period_end"], rfc3339(end));
    assert_eq!(settled_balance(&app, &quiet, 400).await.len(), 1);
    assert_eq!(stripe.subscriptions_created(), 2);

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}
