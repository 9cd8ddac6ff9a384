//! Search, autocomplete, search history, hashtags and trending, through HTTP.

use std::collections::HashMap;

use chrono::Duration;
use lokiz_domain::values::{Caption, VideoDimensions};
use lokiz_domain::video::VideoCommand;
use lokiz_tests::{expect_error, position_of, spawn_app, Registered, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

async fn get(app: &TestApp, path: &str, who: Option<&Registered>, head: i64) -> Value {
    let r = app
        .get(path, who.map(|w| w.access_token.as_str()), Some(head))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

fn video_ids(page: &Value) -> Vec<String> {
    page["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn search_finds_captions_misspelt_names_and_korean_tags_but_never_hidden_videos() {
    let app = spawn_app().await;
    let alice = app.register("trickster_kim").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let (dance, _) = app
        .upload_video(&alice, Some("Dancing in the rain #댄스챌린지 #Rain"))
        .await;
    let (cat, _) = app
        .upload_video(&bob, Some("고양이가 춤춘다 #고양이 #댄스"))
        .await;
    let (private, _) = app
        .upload_video(&bob, Some("secret dancing rehearsal"))
        .await;
    let (deleted, _) = app.upload_video(&bob, Some("dancing outtakes #댄스")).await;
    let (blocked, _) = app.upload_video(&carol, Some("dancing with carol")).await;
    let r = app
        .patch(
            &format!("/v1/videos/{private}"),
            json!({"visibility": "private"}),
            &bob.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .client
        .delete(app.url(&format!("/v1/videos/{deleted}")))
        .bearer_auth(&bob.access_token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // alice blocks carol: neither sees the other in search
    let r = app
        .post(
            &format!("/v1/blocks/users/{}", carol.id),
            json!({}),
            Some(&alice.access_token),
        )
        .await;
    assert!(r.status().is_success());
    let head = app.head().await;

    // a word of the caption, by its stem ("dance" finds "Dancing")
    let page = get(&app, "/v1/search/videos?q=dance", Some(&alice), head).await;
    assert_eq!(video_ids(&page), vec![dance.to_string()], "{page}");
    // anonymous: carol's public video too, never the private or deleted one
    let page = get(&app, "/v1/search/videos?q=DANCING", None, head).await;
    let mut ids = video_ids(&page);
    ids.sort();
    let mut want = vec![dance.to_string(), blocked.to_string()];
    want.sort();
    assert_eq!(ids, want, "{page}");
    // the owner does not find their private video in search either (search
    // is public listings), and carol does not find alice's (blocked)
    let page = get(&app, "/v1/search/videos?q=rehearsal", Some(&bob), head).await;
    assert!(video_ids(&page).is_empty());
    let page = get(&app, "/v1/search/videos?q=dancing", Some(&carol), head).await;
    assert_eq!(video_ids(&page), vec![blocked.to_string()]);
    // Korean by prefix: 고양이 finds 고양이가
    let page = get(
        &app,
        &format!("/v1/search/videos?q={}", enc("고양이")),
        None,
        head,
    )
    .await;
    assert_eq!(video_ids(&page), vec![cat.to_string()]);
    // several words: a video needs every one (English stop words aside)
    let page = get(&app, "/v1/search/videos?q=the%20rain%20dancing", None, head).await;
    assert_eq!(video_ids(&page), vec![dance.to_string()], "{page}");
    let page = get(
        &app,
        &format!("/v1/search/videos?q={}", enc("고양이 춤")),
        None,
        head,
    )
    .await;
    assert_eq!(video_ids(&page), vec![cat.to_string()], "{page}");
    let page = get(&app, "/v1/search/videos?q=dancing%20nowhere", None, head).await;
    assert!(video_ids(&page).is_empty(), "{page}");

    // people, misspelt
    let page = get(&app, "/v1/search/users?q=trikster", None, head).await;
    assert_eq!(page["users"][0]["username"], "trickster_kim", "{page}");
    assert_eq!(page["users"][0]["id"], alice.id.to_string());
    let page = get(&app, "/v1/search/users?q=carol", Some(&alice), head).await;
    assert!(
        !page["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "carol"),
        "a blocked user is not found: {page}"
    );

    // a Korean hashtag by its prefix (autocomplete), counted over public videos
    let auto = get(
        &app,
        &format!("/v1/search/autocomplete?q={}", enc("#댄")),
        None,
        head,
    )
    .await;
    assert_eq!(
        auto,
        json!({"suggestions": [
            {"type": "hashtag", "text": "#댄스", "count": 1},
            {"type": "hashtag", "text": "#댄스챌린지", "count": 1},
        ]})
    );
    let auto = get(&app, "/v1/search/autocomplete?q=%40trick", None, head).await;
    assert_eq!(
        auto,
        json!({"suggestions": [{"type": "user", "text": "@trickster_kim", "id": alice.id}]})
    );
    let auto = get(&app, "/v1/search/autocomplete?q=danc", None, head).await;
    let first = &auto["suggestions"][0];
    assert_eq!(first["type"], "keyword", "{auto}");
    assert_eq!(first["text"], "dancing");
    assert_eq!(
        first["count"], 2,
        "private and deleted captions do not count"
    );
    // and a tag's videos, newest first, by any case and with or without '#'
    let page = get(
        &app,
        &format!("/v1/hashtags/{}/videos", enc("#RAIN")),
        None,
        head,
    )
    .await;
    assert_eq!(video_ids(&page), vec![dance.to_string()]);
    let page = get(
        &app,
        &format!("/v1/hashtags/{}/videos", enc("댄스")),
        None,
        head,
    )
    .await;
    assert_eq!(video_ids(&page), vec![cat.to_string()]);

    // everything at once
    let all = get(&app, "/v1/search?q=dancing", Some(&alice), head).await;
    assert_eq!(all["query"], "dancing");
    assert_eq!(video_ids(&all["videos"]), vec![dance.to_string()]);
    assert!(all["users"]["users"].is_array());

    // bad input: every bad parameter named
    let r = app
        .get("/v1/search/videos?limit=0&cursor=nope", None, None)
        .await;
    let body = expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let fields: Vec<&str> = body["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields.len(), 3, "{body}");
    for f in ["q", "limit", "cursor"] {
        assert!(fields.contains(&f), "{body}");
    }
    let long = "x".repeat(101);
    let r = app
        .get(&format!("/v1/search/users?q={long}"), None, None)
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = app
        .get(
            &format!("/v1/hashtags/{}/videos", "a".repeat(52)),
            None,
            None,
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    // what cannot be a tag finds nothing
    let page = get(&app, "/v1/hashtags/%23/videos", None, head).await;
    assert!(video_ids(&page).is_empty());
    // a query of only punctuation finds nothing (no error, no scan)
    let page = get(&app, "/v1/search/videos?q=%21%21%21", None, head).await;
    assert!(video_ids(&page).is_empty());

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

async fn set_display_name(app: &TestApp, who: &Registered, name: &str) -> i64 {
    let r = app
        .patch(
            "/v1/users/me",
            json!({ "display_name": name }),
            &who.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    position_of(&r)
}

fn usernames(page: &Value) -> Vec<String> {
    page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn people_are_found_by_the_words_of_their_current_name() {
    let app = spawn_app().await;
    let fox = app.register("neon_fox12").await;
    let mina = app.register("dj_mina").await;
    let rider = app.register("zed_k").await;
    let _other = app.register("quiet_otter").await;
    set_display_name(&app, &mina, "김민아 Mina").await;
    set_display_name(&app, &rider, "Ghost Rider").await;
    let head = set_display_name(&app, &rider, "Phoenix Rider").await;

    // a word of the username (digits only separate words)
    let page = get(&app, "/v1/search/users?q=fox", None, head).await;
    assert_eq!(usernames(&page), vec!["neon_fox12"], "{page}");
    assert_eq!(page["users"][0]["id"], fox.id.to_string());
    // a Korean display name, whole
    let page = get(
        &app,
        &format!("/v1/search/users?q={}", enc("김민아")),
        None,
        head,
    )
    .await;
    assert_eq!(usernames(&page), vec!["dj_mina"], "{page}");
    // the current display name, misspelt; the old one no more
    let page = get(&app, "/v1/search/users?q=phenix", None, head).await;
    assert_eq!(usernames(&page), vec!["zed_k"], "{page}");
    let page = get(&app, "/v1/search/users?q=ghost", None, head).await;
    assert!(usernames(&page).is_empty(), "{page}");
    // both words of a name rank above one of them
    let page = get(&app, "/v1/search/users?q=rider%20phoenix", None, head).await;
    assert_eq!(usernames(&page)[0], "zed_k", "{page}");
    // a username prefix, with the people whose words match
    let page = get(&app, "/v1/search/users?q=quiet_ot", None, head).await;
    assert_eq!(usernames(&page)[0], "quiet_otter", "{page}");
    // autocomplete's people after '@' fall back to name words for a typo
    let auto = get(&app, "/v1/search/autocomplete?q=%40phoenx", None, head).await;
    assert_eq!(
        auto,
        json!({"suggestions": [{"type": "user", "text": "@zed_k", "id": rider.id}]})
    );

    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn search_pages_follow_the_cursor_without_repeats() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let mut made = Vec::new();
    for i in 0..7 {
        let (v, _) = app
            .upload_video(&alice, Some(&format!("loop number {i} #loop")))
            .await;
        made.push(v.to_string());
    }
    let head = app.head().await;
    let mut seen: Vec<String> = Vec::new();
    let mut path = "/v1/search/videos?q=loop&limit=3".to_owned();
    loop {
        let page = get(&app, &path, None, head).await;
        seen.extend(video_ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/search/videos?q=loop&limit=3&cursor={c}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "no repeats");
    made.sort();
    assert_eq!(sorted, made);
    app.stop().await;
}

/// A one-word search is ranked from the word's postings alone, with the
/// relevance of how often each caption holds the word: a caption that
/// repeats it outranks a newer one that says it once, and a Korean prefix
/// counts every word it starts (고양이 and 고양이가).
#[tokio::test]
async fn one_word_ranks_the_captions_that_repeat_it_first() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let (twice, _) = app
        .upload_video(&alice, Some("glitch art, then glitch again"))
        .await;
    let (once, _) = app.upload_video(&alice, Some("glitch art")).await;
    let (korean_twice, _) = app
        .upload_video(&alice, Some("고양이 보고 고양이가 웃는다"))
        .await;
    let (korean_once, _) = app.upload_video(&alice, Some("고양이가 잔다")).await;
    let head = app.head().await;
    let page = get(&app, "/v1/search/videos?q=glitch", None, head).await;
    assert_eq!(
        video_ids(&page),
        vec![twice.to_string(), once.to_string()],
        "{page}"
    );
    let path = format!("/v1/search/videos?q={}", enc("고양이"));
    let page = get(&app, &path, None, head).await;
    assert_eq!(
        video_ids(&page),
        vec![korean_twice.to_string(), korean_once.to_string()],
        "{page}"
    );
    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

/// A search without a position to wait for may reuse a query's ranking
/// for a few seconds, but every page reads its rows anew: what has since
/// become private, or is blocked for this viewer, never shows.
#[tokio::test]
async fn a_reused_ranking_never_shows_what_has_since_been_hidden() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let (hers, _) = app.upload_video(&alice, Some("sunset timelapse")).await;
    let (his, _) = app.upload_video(&bob, Some("sunset drive")).await;
    let head = app.head().await;
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    let both = sorted(vec![hers.to_string(), his.to_string()]);
    let page = get(&app, "/v1/search/videos?q=sunset", None, head).await;
    assert_eq!(sorted(video_ids(&page)), both, "{page}");
    let anew = |who: Option<&Registered>| {
        let token = who.map(|w| w.access_token.clone());
        let app = &app;
        async move {
            let r = app
                .get("/v1/search/videos?q=sunset", token.as_deref(), None)
                .await;
            assert_eq!(r.status(), StatusCode::OK);
            video_ids(&r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(sorted(anew(None).await), both);

    // alice makes hers private, carol blocks bob
    let r = app
        .patch(
            &format!("/v1/videos/{hers}"),
            json!({"visibility": "private"}),
            &alice.access_token,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .post(
            &format!("/v1/blocks/users/{}", bob.id),
            json!({}),
            Some(&carol.access_token),
        )
        .await;
    assert!(r.status().is_success());
    let head = app.head().await;
    let r = app
        .get(&format!("/v1/videos/{his}"), None, Some(head))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the read models have both changes"
    );

    assert_eq!(anew(None).await, vec![his.to_string()]);
    assert!(anew(Some(&carol)).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn search_history_is_private_deduplicated_and_keeps_the_newest_fifty() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut ids = HashMap::new();
    for q in ["cats", "dogs", "  cats  "] {
        let r = app
            .post(
                "/v1/search/history",
                json!({"query": q}),
                Some(&alice.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        let q = body["query"].as_str().unwrap().to_owned();
        let id = body["id"].as_str().unwrap().to_owned();
        if let Some(old) = ids.insert(q.clone(), id.clone()) {
            assert_eq!(old, id, "a repeated search keeps its entry");
        }
    }
    let head = app.head().await;
    let h = get(&app, "/v1/search/history", Some(&alice), head).await;
    let queries: Vec<&str> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["query"].as_str().unwrap())
        .collect();
    assert_eq!(queries, vec!["cats", "dogs"]);
    // private: bob sees his own (none) and cannot delete alice's
    let h = get(&app, "/v1/search/history", Some(&bob), head).await;
    assert_eq!(h, json!({"history": []}));
    let path = format!("/v1/search/history/{}", ids["dogs"]);
    let r = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&bob.access_token)
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let r = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let head = position_of(&r);
    let h = get(&app, "/v1/search/history", Some(&alice), head).await;
    assert_eq!(h["history"].as_array().unwrap().len(), 1);
    // the past search comes first in autocomplete
    let auto = get(&app, "/v1/search/autocomplete?q=ca", Some(&alice), head).await;
    assert_eq!(
        auto["suggestions"][0],
        json!({"type": "keyword", "text": "cats"})
    );
    // the newest 50 are kept
    for i in 0..55 {
        let r = app
            .post(
                "/v1/search/history",
                json!({"query": format!("query {i}")}),
                Some(&alice.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let head = app.head().await;
    let h = get(&app, "/v1/search/history", Some(&alice), head).await;
    let list = h["history"].as_array().unwrap();
    assert_eq!(list.len(), 50);
    assert_eq!(list[0]["query"], "query 54");
    assert_eq!(list[49]["query"], "query 5");
    // bad input, anonymous, clear
    let r = app
        .post(
            "/v1/search/history",
            json!({"query": "   "}),
            Some(&alice.access_token),
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    let r = app
        .post("/v1/search/history", json!({"query": "x"}), None)
        .await;
    expect_error(r, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
    let r = app
        .client
        .delete(app.url("/v1/search/history/clear"))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let head = position_of(&r);
    let h = get(&app, "/v1/search/history", Some(&alice), head).await;
    assert_eq!(h, json!({"history": []}));
    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}

/// A video of `owner` published `days_ago` days ago with `caption`, recorded
/// through the event store as if it had been uploaded then.
async fn backdated_video(app: &TestApp, owner: Uuid, caption: &str, days_ago: i64) {
    let at = lokiz_api::now() - Duration::days(days_ago);
    let id = Uuid::new_v4();
    let store = &app.ctx.store.videos;
    store
        .execute(
            &id.to_string(),
            VideoCommand::RequestUpload {
                video_id: id,
                owner_id: owner,
                file_key: format!("videos/{id}.mp4"),
                content_type: "video/mp4".into(),
                file_size: 1000,
                caption: Some(Caption::parse("caption", caption).unwrap()),
                draft_id: None,
                at,
            },
            HashMap::new(),
        )
        .await
        .unwrap();
    store
        .execute(
            &id.to_string(),
            VideoCommand::CompleteUpload {
                actor: owner,
                dimensions: VideoDimensions::parse(320, 240, 2.0).unwrap(),
                stored_size: Some(1000),
                at,
            },
            HashMap::new(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn trending_favours_many_people_today_over_one_loud_account_and_old_favourites() {
    let app = spawn_app().await;
    let mut people = Vec::new();
    for i in 0..5 {
        people.push(app.register(&format!("person{i}")).await);
    }
    // #oldhit: five people every day of the week before, and today as usual
    for days_ago in 2..=8 {
        for p in &people {
            backdated_video(&app, p.id, "the classic #oldhit", days_ago).await;
        }
    }
    for p in &people {
        backdated_video(&app, p.id, "still here #oldhit", 0).await;
    }
    // #newwave: four people today, never before
    for p in &people[..4] {
        app.upload_video(p, Some("catching the #NewWave")).await;
    }
    // #loudmouth: one account, many posts today
    for _ in 0..6 {
        app.upload_video(&people[4], Some("me again #loudmouth"))
            .await;
    }
    let head = app.head().await;
    let trending = get(&app, "/v1/hashtags/trending", None, head).await;
    let tags: Vec<&str> = trending["hashtags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, vec!["newwave"], "{trending}");
    let top = &trending["hashtags"][0];
    assert_eq!(top["accounts"], 4);
    assert_eq!(top["expected"], 1.0);
    assert_eq!(top["video_count"], 4);
    // (4 - 1)² / 1, barely decayed
    let score = top["score"].as_f64().unwrap();
    assert!((8.9..=9.0).contains(&score), "{score}");
    // #oldhit is the most used tag overall, but not a trend
    let auto = get(&app, "/v1/search/autocomplete?q=%23", None, head).await;
    assert_eq!(auto, json!({"suggestions": []}));
    let auto = get(&app, "/v1/search/autocomplete?q=%23o", None, head).await;
    assert_eq!(auto["suggestions"][0]["count"], 40);
    let r = app.get("/v1/hashtags/trending?limit=0", None, None).await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    crate::rebuild::assert_rebuild_is_identical(&app).await;
    app.stop().await;
}
