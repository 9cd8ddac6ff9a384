//! The authorization matrix (`tests/data/authorization.tsv`): every
//! mutating or private endpoint × {anonymous, another user, the owner, an
//! admin}, each cell the status that caller must get. Every row gets fresh
//! fixtures, so one row's DELETE cannot change another's answer.

use std::collections::HashMap;

use lokiz_api::tools::change_role;
use lokiz_api::Components;
use lokiz_domain::user::Role;
use lokiz_tests::{position_of, sample_video, spawn_app_with, Registered, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Row {
    line: usize,
    method: Method,
    path: String,
    body: Option<String>,
    /// anonymous, other, owner, admin
    expected: [u16; 4],
}

fn rows() -> Vec<Row> {
    let text = include_str!("../../data/authorization.tsv");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(
                cols.len(),
                7,
                "line {}: 7 tab-separated columns: {l}",
                i + 1
            );
            let status = |s: &str| {
                s.parse::<u16>()
                    .unwrap_or_else(|_| panic!("line {}: {s}", i + 1))
            };
            Row {
                line: i + 1,
                method: cols[0].parse().expect("method"),
                path: cols[1].to_owned(),
                body: (cols[2] != "-").then(|| cols[2].to_owned()),
                expected: [
                    status(cols[3]),
                    status(cols[4]),
                    status(cols[5]),
                    status(cols[6]),
                ],
            }
        })
        .collect()
}

/// Makes the fixtures a row names; returns the substitutions and the
/// position every request must read at.
async fn fixtures(
    app: &TestApp,
    owner: &Registered,
    text: &str,
) -> (HashMap<&'static str, String>, i64) {
    let mut subs = HashMap::from([("{owner}", owner.id.to_string())]);
    let mut position = owner.position;
    let needs = |p: &str| text.contains(p);
    if needs("{video}") || needs("{comment}") || needs("{job}") {
        let (video, pos) = app.upload_video(owner, None).await;
        position = position.max(pos);
        subs.insert("{video}", video.to_string());
    }
    if needs("{private}") || needs("{private_file}") {
        let (video, _) = app.upload_video(owner, None).await;
        let r = app
            .patch(
                &format!("/v1/videos/{video}"),
                json!({"visibility": "private"}),
                &owner.access_token,
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        position = position.max(position_of(&r));
        let v: Value = app
            .get(
                &format!("/v1/videos/{video}"),
                Some(&owner.access_token),
                Some(position),
            )
            .await
            .json()
            .await
            .expect("video");
        subs.insert(
            "{private_file}",
            v["file_key"].as_str().expect("file_key").to_owned(),
        );
        subs.insert("{private}", video.to_string());
    }
    if needs("{upload}") {
        let media = sample_video(72, 128, 2.0).await;
        let r = app
            .post(
                "/v1/videos/upload-url",
                json!({"filename": "a.mp4", "content_type": "video/mp4", "file_size": media.len()}),
                Some(&owner.access_token),
            )
            .await;
        position = position.max(position_of(&r));
        let up: Value = r.json().await.expect("upload");
        let put = app
            .client
            .put(up["upload_url"].as_str().expect("url"))
            .header("content-type", "video/mp4")
            .body(media)
            .send()
            .await
            .expect("put");
        assert!(put.status().is_success());
        subs.insert("{upload}", up["video_id"].as_str().expect("id").to_owned());
    }
    if needs("{search}") {
        let r = app
            .post(
                "/v1/search/history",
                json!({"query": "my search"}),
                Some(&owner.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        position = position.max(position_of(&r));
        let entry: Value = r.json().await.expect("entry");
        subs.insert("{search}", entry["id"].as_str().expect("id").to_owned());
    }
    if needs("{comment}") {
        let r = app
            .post(
                &format!("/v1/comments/videos/{}", subs["{video}"]),
                json!({"content": "first"}),
                Some(&owner.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        position = position.max(position_of(&r));
        let posted: Value = r.json().await.expect("comment");
        let id = posted["comment_id"]
            .as_str()
            .or_else(|| posted["comment"]["id"].as_str())
            .or_else(|| posted["id"].as_str())
            .expect("comment id")
            .to_owned();
        subs.insert("{comment}", id);
    }
    if needs("{draft}") {
        let r = app
            .post(
                "/v1/videos/draft",
                json!({"caption": "an idea"}),
                Some(&owner.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        position = position.max(position_of(&r));
        let saved: Value = r.json().await.expect("draft");
        subs.insert(
            "{draft}",
            saved["draft_id"].as_str().expect("draft id").to_owned(),
        );
    }
    if needs("{image}") {
        // a real PNG (1×1), so the owner's completion probes an image
        let png = lokiz_tests::tiny_png();
        let r = app
            .post(
                "/v1/images/upload-url",
                json!({"purpose": "profile", "content_type": "image/png", "size_bytes": png.len()}),
                Some(&owner.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        position = position.max(position_of(&r));
        let up: Value = r.json().await.expect("image upload");
        let put = app
            .client
            .put(up["upload_url"].as_str().expect("url"))
            .header("content-type", "image/png")
            .body(png)
            .send()
            .await
            .expect("put");
        assert!(put.status().is_success());
        subs.insert("{image}", up["image_id"].as_str().expect("id").to_owned());
    }
    if needs("{job}") {
        let r = app
            .post(
                "/v1/ai/capture-frame",
                json!({"video_id": subs["{video}"], "timestamp": 1.0}),
                Some(&owner.access_token),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        position = position.max(position_of(&r));
        let job: Value = r.json().await.expect("job");
        subs.insert("{job}", job["job_id"].as_str().expect("job id").to_owned());
    }
    (subs, position)
}

fn substitute(text: &str, subs: &HashMap<&'static str, String>) -> String {
    subs.iter()
        .fold(text.to_owned(), |t, (k, v)| t.replace(k, v))
}

#[tokio::test]
async fn every_cell_of_the_authorization_matrix_holds() {
    // no worker: jobs stay queued, so the owner's cancel has a job to cancel
    // a generous wait for the read models: the suite runs beside heavy tests
    let app = spawn_app_with(
        Components {
            workers: false,
            ..Components::ALL
        },
        &[("LOKIZ_CONSISTENCY_TIMEOUT_MS", "30000")],
    )
    .await;
    let owner = app.register("owner").await;
    let other = app.register("other").await;
    let admin = app.register("admin").await;
    let granted = change_role(&app.pool, "admin", Role::Admin)
        .await
        .expect("admin granted")
        .position
        .expect("a position");
    let mut failures = Vec::new();
    let rows = rows();
    assert!(rows.len() >= 30, "the matrix lists every endpoint");
    for row in rows {
        let (subs, position) = fixtures(
            &app,
            &owner,
            &format!("{} {}", row.path, row.body.as_deref().unwrap_or("")),
        )
        .await;
        // the admin's role, as the read models know it, too
        let position = position.max(granted);
        let path = substitute(&row.path, &subs);
        let body = row.body.as_deref().map(|b| substitute(b, &subs));
        // anonymous, other, admin, owner — the owner last
        for (column, token) in [
            (0, None),
            (1, Some(&other.access_token)),
            (3, Some(&admin.access_token)),
            (2, Some(&owner.access_token)),
        ] {
            let mut req = app
                .client
                .request(row.method.clone(), app.url(&path))
                .header(
                    "X-Lokiz-Min-Position",
                    position.max(app.head().await).to_string(),
                );
            if let Some(b) = &body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.clone());
            }
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.expect("request");
            let got = r.status().as_u16();
            let want = row.expected[column];
            if got != want {
                let who = ["anonymous", "other", "owner", "admin"][column];
                let text = r.text().await.unwrap_or_default();
                failures.push(format!(
                    "line {}: {} {} as {who}: {got}, expected {want} ({text})",
                    row.line, row.method, row.path
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    app.stop().await;
}
