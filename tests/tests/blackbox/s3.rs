//! The S3 blob store against a real S3-compatible server: moto's
//! (`moto_server`, from PyPI; scripts/contract-tools.sh installs it and
//! exports `LOKIZ_MOTO_SERVER`), started by the test on a free port. The
//! whole upload flow runs through it: presigned PUT, complete (the server
//! downloads and probes the object), presigned GET; and an upload that is
//! not a video is removed from the bucket.

use std::time::Duration;

use lokiz_api::Components;
use lokiz_infra::blob::S3BlobStore;
use lokiz_tests::{expect_error, sample_video, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Moto {
    url: String,
    child: tokio::process::Child,
}

impl Moto {
    async fn start() -> Moto {
        let bin = std::env::var("LOKIZ_MOTO_SERVER").unwrap_or_else(|_| {
            panic!(
                "LOKIZ_MOTO_SERVER is not set: run the suite through scripts/test.sh, \
                 which installs moto (scripts/contract-tools.sh)"
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = tokio::process::Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server starts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto_server did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Moto {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

#[tokio::test]
async fn upload_complete_probe_and_read_through_an_s3_server() {
    let mut moto = Moto::start().await;
    let env = [
        ("LOKIZ_BLOB_STORE", "s3"),
        ("LOKIZ_S3_ENDPOINT", moto.url.as_str()),
        ("LOKIZ_S3_BUCKET", "lokiz-videos"),
        ("LOKIZ_S3_REGION", "us-east-1"),
        ("LOKIZ_S3_ACCESS_KEY", "testing"),
        ("LOKIZ_S3_SECRET_KEY", "testing-secret"),
    ];
    let config = lokiz_tests::test_config(&env);
    let lokiz_infra::config::BlobConfig::S3(s3) = &config.blob else {
        panic!("s3 configured")
    };
    S3BlobStore::new((**s3).clone())
        .expect("store")
        .create_bucket()
        .await
        .expect("bucket created");
    let app = spawn_app_with(Components::ALL, &env).await;
    assert!(app.ctx.local_blobs.is_none());
    let owner = app.register("bucketeer").await;

    // the real flow: presigned PUT to the bucket, then complete
    let (video, position) = app.upload_media(&owner, (180, 320), 2.0).await;
    let v: Value = app
        .get(
            &format!("/v1/videos/{video}"),
            Some(&owner.access_token),
            Some(position),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "completed");
    assert_eq!(
        (v["width"].clone(), v["height"].clone()),
        (json!(180), json!(320)),
        "probed"
    );
    let file_url = v["file_url"].as_str().unwrap();
    assert!(
        file_url.starts_with(&moto.url) && file_url.contains("X-Amz-Signature="),
        "{file_url}"
    );
    let served = app.client.get(file_url).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(
        served.bytes().await.unwrap().to_vec(),
        sample_video(180, 320, 2.0).await
    );

    // an object that is not a video: refused at complete, removed from the bucket
    let junk = b"not a video at all".repeat(10);
    let r = app
        .post(
            "/v1/videos/upload-url",
            json!({"filename": "x.mp4", "content_type": "video/mp4", "file_size": junk.len()}),
            Some(&owner.access_token),
        )
        .await;
    let up: Value = r.json().await.unwrap();
    let put = app
        .client
        .put(up["upload_url"].as_str().unwrap())
        .header("content-type", "video/mp4")
        .body(junk)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);
    let key = up["file_key"].as_str().unwrap().to_owned();
    assert!(app.ctx.blobs.stored_size(&key).await.unwrap().is_some());
    let r = app
        .post(
            &format!("/v1/videos/{}/complete", up["video_id"].as_str().unwrap()),
            json!({"width": 720, "height": 1280, "actual_duration": 2.0}),
            Some(&owner.access_token),
        )
        .await;
    expect_error(r, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(
        app.ctx.blobs.stored_size(&key).await.unwrap(),
        None,
        "removed from the bucket"
    );
    app.stop().await;
    let _ = moto.child.start_kill();
}
