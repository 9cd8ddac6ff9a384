//! The local blob store over HTTP: signed uploads to `PUT /v1/blobs/{key}`,
//! downloads with range requests from `GET /v1/blobs/{key}`.

use std::time::Duration;

use lokiz_api::Components;
use lokiz_infra::blob::BlobError;
use lokiz_tests::{expect_error, spawn_app, spawn_app_with, TestApp};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const CT: &str = "video/mp4";
const BODY: &[u8] = b"0123456789abcdef";
const TTL: Duration = Duration::from_secs(600);

fn new_key() -> String {
    format!("videos/{}.mp4", Uuid::new_v4())
}

fn unix_now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

async fn put(
    app: &TestApp,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> reqwest::Response {
    let mut req = app.client.put(url).body(body.to_vec());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.expect("request")
}

/// A chunked `PUT` (no Content-Length) over a raw connection, so the server
/// learns the size only by reading. Returns the status and the body text.
async fn put_chunked(app: &TestApp, url: &str, chunks: &[&[u8]]) -> (u16, String) {
    let host = app.address.trim_start_matches("http://");
    let path = url.strip_prefix(&app.address).expect("local URL");
    let mut sock = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut req = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {CT}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for c in chunks {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything.
    let _ = sock.write_all(&req).await;
    let mut resp = Vec::new();
    let _ = sock.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn upload_then_download_with_ranges() {
    let app = spawn_app().await;
    let key = new_key();
    assert_eq!(app.ctx.blobs.stored_size(&key).await.unwrap(), None);

    let url = app
        .ctx
        .blobs
        .presign_put(&key, CT, BODY.len() as u64, TTL)
        .unwrap();
    assert!(
        url.starts_with(&app.url(&format!("/v1/blobs/{key}?"))),
        "{url}"
    );
    let resp = put(&app, &url, Some(CT), BODY).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    assert_eq!(
        app.ctx.blobs.stored_size(&key).await.unwrap(),
        Some(BODY.len() as u64)
    );

    // not a public video's file: the plain URL serves nothing…
    let plain = app.ctx.blobs.object_url(&key);
    assert_eq!(plain, app.url(&format!("/v1/blobs/{key}")));
    let resp = app.client.get(&plain).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // …a signed URL does, until it expires; a changed one never
    let object_url = app.ctx.blobs.signed_url(&key, TTL).unwrap();
    let local = app.ctx.local_blobs.clone().unwrap();
    let long_ago = local.signed_url_at(&key, TTL, 1_000_000).unwrap();
    let resp = app.client.get(&long_ago).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let forged = object_url.replace("expires=", "expires=9");
    let resp = app.client.get(&forged).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = app.client.get(&object_url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), BODY);

    let resp = app
        .client
        .get(&object_url)
        .header("range", "bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.headers()["content-range"], "bytes 2-5/16");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"2345");

    let resp = app.client.head(&object_url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], "16");

    // an upload URL works once: nothing is written over the stored object
    let resp = put(&app, &url, Some(CT), b"fedcba9876543210").await;
    expect_error(resp, StatusCode::CONFLICT, "ALREADY_UPLOADED").await;
    assert_eq!(
        app.client
            .get(&object_url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        BODY
    );

    // a chunked upload of the right size is fine too
    let key2 = new_key();
    let url2 = app.ctx.blobs.presign_put(&key2, CT, 16, TTL).unwrap();
    let (status, _) = put_chunked(&app, &url2, &[b"01234567", b"89abcdef"]).await;
    assert_eq!(status, 200);
    assert_eq!(app.ctx.blobs.stored_size(&key2).await.unwrap(), Some(16));

    for missing in [
        format!("/v1/blobs/{}", new_key()),
        "/v1/blobs/videos".into(),
    ] {
        expect_error(
            app.get(&missing, None, None).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn refused_uploads_store_nothing() {
    let app = spawn_app().await;
    let local = app.ctx.local_blobs.clone().expect("local store by default");
    let key = new_key();
    let size = BODY.len() as u64;
    let url = app.ctx.blobs.presign_put(&key, CT, size, TTL).unwrap();
    let stored = || async { app.ctx.blobs.stored_size(&key).await.unwrap() };

    // tampered signature, size, content type, expiry; no signature at all
    let sig_at = url.find("&sig=").unwrap() + 5;
    let mut tampered = url.clone();
    let flip = if url[sig_at..].starts_with('0') {
        "1"
    } else {
        "0"
    };
    tampered.replace_range(sig_at..sig_at + 1, flip);
    let bigger = url.replace("&size=16&", "&size=17&");
    let other_ct = url.replace("&ct=video%2Fmp4&", "&ct=video%2Fwebm&");
    let later = url.replace("expires=", "expires=9");
    let unsigned = url.split('?').next().unwrap().to_owned();
    for bad in [&tampered, &bigger, &other_ct, &later, &unsigned] {
        assert_ne!(bad, &url);
        let ct = if bad == &other_ct { "video/webm" } else { CT };
        let body: &[u8] = if bad == &bigger {
            b"0123456789abcdefg"
        } else {
            BODY
        };
        expect_error(
            put(&app, bad, Some(ct), body).await,
            StatusCode::FORBIDDEN,
            "INVALID_SIGNATURE",
        )
        .await;
    }
    assert_eq!(stored().await, None);

    // expired: issued an hour ago for a minute, or with no lifetime at all
    let expired = local
        .presign_put_at(&key, CT, size, Duration::from_secs(60), unix_now() - 3600)
        .unwrap();
    let no_ttl = app
        .ctx
        .blobs
        .presign_put(&key, CT, size, Duration::ZERO)
        .unwrap();
    for url in [expired, no_ttl] {
        expect_error(
            put(&app, &url, Some(CT), BODY).await,
            StatusCode::FORBIDDEN,
            "URL_EXPIRED",
        )
        .await;
    }
    assert_eq!(stored().await, None);

    // wrong or missing content type
    for ct in [Some("video/webm"), Some("text/plain"), None] {
        let err = expect_error(
            put(&app, &url, ct, BODY).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "CONTENT_TYPE_MISMATCH",
        )
        .await;
        assert_eq!(err["details"]["expected"], CT);
    }
    assert_eq!(stored().await, None);

    // larger than declared: by Content-Length, and chunked (read up to the limit)
    let err = expect_error(
        put(&app, &url, Some(CT), b"0123456789abcdefXYZ").await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "TOO_LARGE",
    )
    .await;
    assert_eq!(err["details"]["limit"], 16);
    let (status, text) = put_chunked(&app, &url, &[b"0123456789", b"abcdefXYZ"]).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("TOO_LARGE"), "{text}");
    assert_eq!(stored().await, None);

    // shorter than declared
    let err = expect_error(
        put(&app, &url, Some(CT), b"0123").await,
        StatusCode::BAD_REQUEST,
        "SIZE_MISMATCH",
    )
    .await;
    assert_eq!(err["details"]["received"], 4);
    let (status, text) = put_chunked(&app, &url, &[b"0123", b"4567"]).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("SIZE_MISMATCH"), "{text}");
    assert_eq!(stored().await, None);

    // keys that leave the store's directory are refused
    assert!(matches!(
        app.ctx
            .blobs
            .presign_put("videos/../../etc/passwd", CT, 1, TTL),
        Err(BlobError::InvalidKey { .. })
    ));
    assert!(app.ctx.blobs.stored_size("../x").await.is_err());
    let query = url.split_once('?').unwrap().1;
    for path in [
        "/v1/blobs/videos/%2E%2E%2F%2E%2E%2Fjwt_secret",
        "/v1/blobs/%2Fetc%2Fpasswd",
        "/v1/blobs/.tmp/x",
    ] {
        expect_error(
            put(&app, &app.url(&format!("{path}?{query}")), Some(CT), BODY).await,
            StatusCode::BAD_REQUEST,
            "INVALID_KEY",
        )
        .await;
        expect_error(
            app.get(path, None, None).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
    }

    // and the untouched URL still works afterwards
    let resp = put(&app, &url, Some(CT), BODY).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(stored().await, Some(size));
    app.stop().await;
}

#[tokio::test]
async fn with_s3_configured_the_local_routes_are_gone() {
    let app = spawn_app_with(
        Components::ALL,
        &[
            ("LOKIZ_BLOB_STORE", "s3"),
            ("LOKIZ_S3_ENDPOINT", "http://127.0.0.1:9"),
            ("LOKIZ_S3_BUCKET", "lokiz-test"),
            ("LOKIZ_S3_ACCESS_KEY", "AK"),
            ("LOKIZ_S3_SECRET_KEY", "SK"),
        ],
    )
    .await;
    assert!(app.ctx.local_blobs.is_none());
    let key = new_key();
    let url = app.ctx.blobs.presign_put(&key, CT, 16, TTL).unwrap();
    assert!(
        url.starts_with(&format!(
            "http://127.0.0.1:9/lokiz-test/{key}?X-Amz-Algorithm="
        )),
        "{url}"
    );
    assert_eq!(
        app.ctx.blobs.object_url(&key),
        format!("http://127.0.0.1:9/lokiz-test/{key}")
    );
    let local_url = app.url(&format!("/v1/blobs/{key}"));
    expect_error(
        put(&app, &local_url, Some(CT), BODY).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    expect_error(
        app.get(&format!("/v1/blobs/{key}"), None, None).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    app.stop().await;
}
