//! Blocks: a block hides two users from each other everywhere and refuses
//! their interactions; their follows end; unblocking restores the rest.

use lokiz_tests::{expect_error, position_of, spawn_app, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

async fn get(app: &TestApp, path: &str, token: Option<&str>, min: i64) -> Value {
    let r = app.get(path, token, Some(min)).await;
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    r.json().await.unwrap()
}

fn video_ids(page: &Value) -> Vec<Uuid> {
    page["videos"]
        .as_array()
        .expect("videos")
        .iter()
        .map(|v| v["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn user_ids(page: &Value) -> Vec<Uuid> {
    page["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|v| v["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn comment_authors(page: &Value) -> Vec<Uuid> {
    page["comments"]
        .as_array()
        .expect("comments")
        .iter()
        .map(|c| c["user"]["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_block_hides_both_ways_refuses_interactions_and_ends_follows() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let (va, _) = app.upload_video(&alice, Some("alice's")).await;
    let (vb, _) = app.upload_video(&bob, Some("bob's")).await;
    let (vc, mut head) = app.upload_video(&carol, Some("carol's")).await;
    for (who, whom) in [(&alice, &bob), (&bob, &alice), (&carol, &bob)] {
        let r = app
            .post(
                &format!("/v1/follows/users/{}", whom.id),
                json!({}),
                Some(&who.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        head = head.max(position_of(&r));
    }
    for (who, video) in [(&bob, vc), (&alice, vc), (&carol, vc)] {
        let r = app
            .post(
                &format!("/v1/comments/videos/{video}"),
                json!({"content": "nice"}),
                Some(&who.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        head = head.max(position_of(&r));
    }

    // blocking yourself, or nobody
    let r = app
        .post(
            &format!("/v1/blocks/users/{}", alice.id),
            json!({}),
            Some(&alice.access_token),
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = app
        .post(
            &format!("/v1/blocks/users/{}", Uuid::new_v4()),
            json!({}),
            Some(&alice.access_token),
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // alice blocks bob (twice: the second changes nothing)
    let path = format!("/v1/blocks/users/{}", bob.id);
    let r = app.post(&path, json!({}), Some(&alice.access_token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    head = head.max(position_of(&r));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["blocked"].clone(), body["changed"].clone()),
        (json!(true), json!(true))
    );
    let again: Value = app
        .post(&path, json!({}), Some(&alice.access_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["changed"], false);
    let blocks = get(&app, "/v1/blocks/", Some(&alice.access_token), head).await;
    assert_eq!(user_ids(&blocks), vec![bob.id]);
    let theirs = get(&app, "/v1/blocks/", Some(&bob.access_token), head).await;
    assert!(
        user_ids(&theirs).is_empty(),
        "the list is the blocker's own"
    );

    // hidden both ways: feeds, comments, profiles, videos
    for (who, hidden, seen) in [(&alice, vb, vc), (&bob, va, vc)] {
        for feed in ["/v1/videos/", "/v1/videos/feed?algorithm=trending"] {
            let ids = video_ids(&get(&app, feed, Some(&who.access_token), head).await);
            assert!(!ids.contains(&hidden), "{feed} hides the other's video");
            assert!(ids.contains(&seen), "{feed} shows the rest");
        }
    }
    let everyone = video_ids(&get(&app, "/v1/videos/", None, head).await);
    assert!(everyone.contains(&va) && everyone.contains(&vb));
    let comments_path = format!("/v1/comments/videos/{vc}");
    let for_alice =
        comment_authors(&get(&app, &comments_path, Some(&alice.access_token), head).await);
    assert!(!for_alice.contains(&bob.id) && for_alice.contains(&carol.id));
    let for_bob = comment_authors(&get(&app, &comments_path, Some(&bob.access_token), head).await);
    assert!(!for_bob.contains(&alice.id) && for_bob.contains(&carol.id));
    let for_carol =
        comment_authors(&get(&app, &comments_path, Some(&carol.access_token), head).await);
    assert_eq!(for_carol.len(), 3);
    let r = app
        .get(
            &format!("/v1/videos/{va}"),
            Some(&bob.access_token),
            Some(head),
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .get(
            &format!("/v1/users/{}", alice.id),
            Some(&bob.access_token),
            Some(head),
        )
        .await;
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    // carol's follower list of bob: alice does not see carol's… but bob's
    // followers, as seen by alice, leave nobody out but bob himself
    let followers = get(
        &app,
        &format!("/v1/follows/users/{}/followers", bob.id),
        Some(&carol.access_token),
        head,
    )
    .await;
    assert_eq!(
        user_ids(&followers),
        vec![carol.id],
        "the block ended alice's follow"
    );

    // interactions are refused, either way
    for (who, video) in [(&bob, va), (&alice, vb)] {
        let r = app
            .post(
                &format!("/v1/likes/videos/{video}"),
                json!({}),
                Some(&who.access_token),
            )
            .await;
        expect_error(r, StatusCode::FORBIDDEN, "BLOCKED").await;
        let r = app
            .post(
                &format!("/v1/comments/videos/{video}"),
                json!({"content": "hi"}),
                Some(&who.access_token),
            )
            .await;
        expect_error(r, StatusCode::FORBIDDEN, "BLOCKED").await;
    }
    for (who, whom) in [(&bob, &alice), (&alice, &bob)] {
        let r = app
            .post(
                &format!("/v1/follows/users/{}", whom.id),
                json!({}),
                Some(&who.access_token),
            )
            .await;
        expect_error(r, StatusCode::FORBIDDEN, "BLOCKED").await;
    }

    // the saga ended the follows both ways
    app.eventually(10, "follows ended both ways", || async {
        let pairs: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM follows
              WHERE (follower_id = $1 AND followee_id = $2) OR (follower_id = $2 AND followee_id = $1)",
        )
        .bind(alice.id)
        .bind(bob.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        pairs == 0
    })
    .await;
    let carol_follows_bob: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM follows WHERE follower_id = $1 AND followee_id = $2",
    )
    .bind(carol.id)
    .bind(bob.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(carol_follows_bob, 1, "others' follows stay");

    // unblocking restores visibility and interactions (not the follows)
    let r = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    head = head.max(position_of(&r));
    let ids = video_ids(&get(&app, "/v1/videos/", Some(&alice.access_token), head).await);
    assert!(ids.contains(&vb));
    let r = app
        .post(
            &format!("/v1/likes/videos/{va}"),
            json!({}),
            Some(&bob.access_token),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let blocks = get(&app, "/v1/blocks/", Some(&alice.access_token), head).await;
    assert!(user_ids(&blocks).is_empty());

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}
