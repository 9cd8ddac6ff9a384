//! `lokiz seed` into a running system: its events are relayed and projected
//! like any others, seeded users can sign in, and the API goes on commanding
//! seeded aggregates (which proves their snapshots are what the event store
//! itself would have written).

use std::time::Duration;

use lokiz_tests::seed::{seed, SeedArgs, SEED_PASSWORD};
use lokiz_tests::{position_of, spawn_app, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

async fn login(app: &TestApp, email: &str) -> (Uuid, String) {
    let resp = app
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": SEED_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "login {email}");
    let body: Value = resp.json().await.unwrap();
    (
        body["user"]["id"].as_str().unwrap().parse().unwrap(),
        body["access_token"].as_str().unwrap().to_owned(),
    )
}

async fn like_state(app: &TestApp, token: &str, video: Uuid, like: bool) -> Value {
    let url = app.url(&format!("/v1/likes/videos/{video}"));
    let req = if like {
        app.client.post(url)
    } else {
        app.client.delete(url)
    };
    let resp = req.bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn seeded_data_is_projected_and_commandable() {
    let app = spawn_app().await;
    let args = SeedArgs {
        users: 40,
        videos: 150,
        likes: 500,
        follows: 80,
        comments: 200,
        views: 400,
        batch: 60,
        connections: 2,
        seed_rng: 7,
        quiet: true,
        ..Default::default()
    };
    let report = seed(&app.pool, &args).await.expect("seed");
    assert_eq!(
        (report.users, report.videos, report.likes, report.follows),
        (40, 150, 500, 80)
    );
    assert_eq!((report.comments, report.views), (200, 400));
    let expected_events = 40 * 2 + 150 * 3 + 500 + 80 + 200 + 400;
    assert_eq!(report.events, expected_events);
    assert_eq!(app.event_count().await, expected_events as i64);

    // seeding the same data twice is refused up front, nothing written
    assert!(seed(&app.pool, &args).await.is_err());
    assert_eq!(app.event_count().await, expected_events as i64);

    // relay and projections catch up with everything
    let projectors = lokiz_projections::all();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let status = lokiz_projections::status::status(&app.pool, &projectors)
            .await
            .unwrap();
        assert!(status.iter().all(|s| s.parked == 0), "parked: {status:?}");
        if status.iter().all(|s| s.lag_events == 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "read models did not catch up: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // the read models hold what the events say
    let counts: (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM videos WHERE listed),
                (SELECT count(*) FROM likes), (SELECT count(*) FROM follows),
                (SELECT count(*) FROM comments), (SELECT coalesce(sum(view_count), 0)::bigint FROM videos),
                (SELECT coalesce(sum(balance), 0)::bigint FROM wallets)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(counts, (40, 150, 500, 80, 200, 400, 40 * 100));
    let wrong: i64 = sqlx::query_scalar(
        "WITH l AS (SELECT (payload->'VideoLiked'->>'video_id')::uuid AS id, count(*) AS n
                      FROM events WHERE event_type = 'VideoLiked' GROUP BY 1),
              w AS (SELECT (payload->'ViewCounted'->>'video_id')::uuid AS id, count(*) AS n
                      FROM events WHERE event_type = 'ViewCounted' GROUP BY 1),
              c AS (SELECT (payload->'CommentPosted'->>'video_id')::uuid AS id, count(*) AS n
                      FROM events WHERE event_type = 'CommentPosted' GROUP BY 1)
         SELECT count(*) FROM videos v
           LEFT JOIN l ON l.id = v.id LEFT JOIN w ON w.id = v.id LEFT JOIN c ON c.id = v.id
          WHERE v.like_count <> coalesce(l.n, 0) OR v.view_count <> coalesce(w.n, 0)
             OR v.comment_count <> coalesce(c.n, 0)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(wrong, 0, "videos whose counters differ from the events");
    let replies: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM comments WHERE parent_id IS NOT NULL),
                (SELECT coalesce(sum(reply_count), 0)::bigint FROM comments)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(replies.0, report.replies as i64);
    assert_eq!(replies.1, replies.0);

    // the latest feed lists seeded videos with their creators
    let page: Value = app
        .get("/v1/videos/", None, None)
        .await
        .json()
        .await
        .unwrap();
    let videos = page["videos"].as_array().unwrap();
    assert_eq!(videos.len(), 20);
    assert_eq!(page["has_more"], true);
    for v in videos {
        assert_eq!(v["status"], "completed");
        assert!(v["user"]["username"].as_str().unwrap().contains('_'), "{v}");
        assert!(!v["user"]["display_name"].as_str().unwrap().is_empty());
        assert!(v["width"].as_i64().unwrap() > 0);
    }
    let times: Vec<&str> = videos
        .iter()
        .map(|v| v["published_at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // a seeded owner signs in with the documented password and sees the signup credits
    let (video, seeded_likes, owner_email): (Uuid, i64, String) = sqlx::query_as(
        "SELECT v.id, v.like_count, i.email_key FROM videos v JOIN identities i ON i.user_id = v.owner_id
          WHERE v.listed ORDER BY v.like_count DESC, v.id LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let (owner_id, owner_token) = login(&app, &owner_email).await;
    let me: Value = app
        .get("/v1/auth/me", Some(&owner_token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["credits"], 100);
    assert_eq!(me["id"], owner_id.to_string());

    // a seeded like is loaded from its snapshot: liking again changes nothing,
    // unliking records an event
    let (fan_email,): (String,) = sqlx::query_as(
        "SELECT i.email_key FROM likes l JOIN identities i ON i.user_id = l.user_id
          WHERE l.video_id = $1 LIMIT 1",
    )
    .bind(video)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let (_, fan_token) = login(&app, &fan_email).await;
    assert_eq!(
        like_state(&app, &fan_token, video, true).await["changed"],
        false
    );
    let unliked = like_state(&app, &fan_token, video, false).await;
    assert_eq!(unliked["changed"], true);
    // someone who had not liked it likes it
    let (stranger_email,): (String,) = sqlx::query_as(
        "SELECT i.email_key FROM identities i
          WHERE i.user_id <> $2
            AND NOT EXISTS (SELECT 1 FROM likes l WHERE l.user_id = i.user_id AND l.video_id = $1)
          LIMIT 1",
    )
    .bind(video)
    .bind(owner_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let (_, stranger_token) = login(&app, &stranger_email).await;
    let liked = like_state(&app, &stranger_token, video, true).await;
    assert_eq!(liked["changed"], true);
    let pos = liked["position"].as_i64().unwrap();
    let v: Value = app
        .get(&format!("/v1/videos/{video}"), None, Some(pos))
        .await
        .json()
        .await
        .unwrap();
    // one unlike, one like
    assert_eq!(v["like_count"].as_i64().unwrap(), seeded_likes);

    // the video's owner (from its snapshot) may delete it; to anybody else it is not there
    let r = app
        .client
        .delete(app.url(&format!("/v1/videos/{video}")))
        .bearer_auth(&stranger_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .client
        .delete(app.url(&format!("/v1/videos/{video}")))
        .bearer_auth(&owner_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let pos = position_of(&r);
    let r = app
        .get(&format!("/v1/videos/{video}"), None, Some(pos))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (sequence, commits): (i64, i64) = sqlx::query_as(
        "SELECT last_sequence, current_snapshot FROM snapshots
          WHERE aggregate_type = 'Video' AND aggregate_id = $1",
    )
    .bind(video.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((sequence, commits), (4, 3));

    app.stop().await;
}
