//! S3-compatible object storage (AWS S3, MinIO, R2, …) with AWS Signature
//! Version 4: presigned `PUT` URLs for uploads and a header-signed `HEAD`
//! for sizes. Path-style URLs (`{endpoint}/{bucket}/{key}`), so MinIO and
//! other services without virtual-host buckets work.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use url::Url;

use super::local::hmac_sha256;
use super::{uri_encode, validate_content_type, validate_key, validate_ttl};
use super::{BlobError, BlobStore};
use crate::config::{S3Config, Secret};

/// SHA-256 of the empty payload.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An AWS Signature Version 4 signer for one set of credentials, region and
/// service. Time comes in as an argument, so signatures are reproducible.
#[derive(Debug, Clone)]
pub struct SigV4 {
    access_key: String,
    secret_key: Secret,
    region: String,
    service: String,
}

impl SigV4 {
    pub fn new(
        access_key: impl Into<String>,
        secret_key: Secret,
        region: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key,
            region: region.into(),
            service: service.into(),
        }
    }

    fn scope(&self, date: &str) -> String {
        format!("{date}/{}/{}/aws4_request", self.region, self.service)
    }

    fn signature(&self, date: &str, string_to_sign: &str) -> String {
        let k_secret = format!("AWS4{}", self.secret_key.expose());
        let k_date = hmac_sha256(k_secret.as_bytes(), date.as_bytes());
        let k_region = hmac_sha256(&k_date, self.region.as_bytes());
        let k_service = hmac_sha256(&k_region, self.service.as_bytes());
        let k_signing = hmac_sha256(&k_service, b"aws4_request");
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&k_signing).expect("HMAC accepts keys of any length");
        mac.update(string_to_sign.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Builds the canonical request and returns (string to sign, signed
    /// header names). `query` must already be canonical (encoded, sorted).
    #[allow(clippy::too_many_arguments)]
    fn string_to_sign(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        payload_hash: &str,
        amz_date: &str,
        date: &str,
    ) -> (String, String) {
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), collapse_spaces(v)))
            .filter(|(k, _)| k != "host")
            .collect();
        all.push(("host".into(), host.to_owned()));
        all.sort();
        let canonical_headers: String = all.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let signed_headers = all
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_request = format!(
            "{method}\n{}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
            uri_encode(path, true)
        );
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{}\n{}",
            self.scope(date),
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        (string_to_sign, signed_headers)
    }

    /// A presigned URL (query-string authentication) for `method` on
    /// `origin` (scheme, host and port) + `path` (not yet encoded), valid for
    /// `expires` from `at`. `headers` are signed too (`host` always is): the
    /// request must then carry them with exactly these values. The payload
    /// is `UNSIGNED-PAYLOAD`.
    pub fn presign(
        &self,
        method: &str,
        origin: &Url,
        path: &str,
        headers: &[(&str, &str)],
        expires: Duration,
        at: DateTime<Utc>,
    ) -> String {
        let amz_date = at.format("%Y%m%dT%H%M%SZ").to_string();
        let date = at.format("%Y%m%d").to_string();
        let host = host_header(origin);
        let mut signed: Vec<String> = headers
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect();
        signed.push("host".into());
        signed.sort();
        signed.dedup();
        let mut query = [
            ("X-Amz-Algorithm", ALGORITHM.to_owned()),
            (
                "X-Amz-Credential",
                format!("{}/{}", self.access_key, self.scope(&date)),
            ),
            ("X-Amz-Date", amz_date.clone()),
            ("X-Amz-Expires", expires.as_secs().to_string()),
            ("X-Amz-SignedHeaders", signed.join(";")),
        ]
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect::<Vec<_>>();
        query.sort();
        let query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let (sts, _) = self.string_to_sign(
            method,
            &host,
            path,
            &query,
            headers,
            "UNSIGNED-PAYLOAD",
            &amz_date,
            &date,
        );
        let signature = self.signature(&date, &sts);
        format!(
            "{}{}?{query}&X-Amz-Signature={signature}",
            origin.origin().ascii_serialization(),
            uri_encode(path, true)
        )
    }

    /// Header authentication for a request without query parameters:
    /// returns the headers to add (`x-amz-date`, `x-amz-content-sha256`,
    /// `authorization`). `headers` are the request's other headers to sign.
    pub fn sign_headers(
        &self,
        method: &str,
        origin: &Url,
        path: &str,
        headers: &[(&str, &str)],
        payload_sha256: &str,
        at: DateTime<Utc>,
    ) -> Vec<(&'static str, String)> {
        let amz_date = at.format("%Y%m%dT%H%M%SZ").to_string();
        let date = at.format("%Y%m%d").to_string();
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.push(("x-amz-content-sha256", payload_sha256));
        all.push(("x-amz-date", &amz_date));
        let (sts, signed_headers) = self.string_to_sign(
            method,
            &host_header(origin),
            path,
            "",
            &all,
            payload_sha256,
            &amz_date,
            &date,
        );
        let signature = self.signature(&date, &sts);
        let authorization = format!(
            "{ALGORITHM} Credential={}/{},SignedHeaders={signed_headers},Signature={signature}",
            self.access_key,
            self.scope(&date)
        );
        vec![
            ("x-amz-date", amz_date.clone()),
            ("x-amz-content-sha256", payload_sha256.to_owned()),
            ("authorization", authorization),
        ]
    }
}

/// `Host` as an HTTP client sends it: the port only when not the scheme's
/// default.
fn host_header(origin: &Url) -> String {
    let host = origin.host_str().unwrap_or_default();
    match origin.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// SigV4 canonical header values: trimmed, inner runs of spaces collapsed.
fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An S3-compatible bucket.
#[derive(Debug)]
pub struct S3BlobStore {
    endpoint: Url,
    bucket: String,
    signer: SigV4,
    public_base: String,
    http: reqwest::Client,
}

impl S3BlobStore {
    pub fn new(config: S3Config) -> Result<Self, BlobError> {
        let origin = config.endpoint.origin().ascii_serialization();
        let public_base = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{origin}/{}", config.bucket));
        Ok(Self {
            signer: SigV4::new(config.access_key, config.secret_key, config.region, "s3"),
            endpoint: config.endpoint,
            bucket: config.bucket,
            public_base: public_base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    fn object_path(&self, key: &str) -> String {
        format!("/{}/{key}", self.bucket)
    }

    /// The URL a signed request for `path` (from `object_path`) goes to.
    fn request_url(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.endpoint.origin().ascii_serialization(),
            uri_encode(path, true)
        )
    }
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<String, BlobError> {
        validate_key(key)?;
        validate_content_type(content_type)?;
        validate_ttl(ttl)?;
        let size = size.to_string();
        Ok(self.signer.presign(
            "PUT",
            &self.endpoint,
            &self.object_path(key),
            &[("content-length", &size), ("content-type", content_type)],
            ttl,
            Utc::now(),
        ))
    }

    fn object_url(&self, key: &str) -> String {
        format!("{}/{key}", self.public_base)
    }

    fn signed_url(&self, key: &str, ttl: Duration) -> Result<String, BlobError> {
        validate_key(key)?;
        validate_ttl(ttl)?;
        Ok(self.signer.presign(
            "GET",
            &self.endpoint,
            &self.object_path(key),
            &[],
            ttl,
            Utc::now(),
        ))
    }

    async fn stored_size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        validate_key(key)?;
        let path = self.object_path(key);
        let url = self.request_url(&path);
        let mut req = self.http.head(url);
        for (name, value) in
            self.signer
                .sign_headers("HEAD", &self.endpoint, &path, &[], EMPTY_SHA256, Utc::now())
        {
            req = req.header(name, value);
        }
        let resp = req.send().await?;
        match resp.status() {
            StatusCode::OK => resp
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Some)
                .ok_or(BlobError::MissingLength),
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(BlobError::UnexpectedStatus {
                status: other.as_u16(),
            }),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        let path = self.object_path(key);
        let url = self.request_url(&path);
        let mut req = self.http.delete(url);
        for (name, value) in self.signer.sign_headers(
            "DELETE",
            &self.endpoint,
            &path,
            &[],
            EMPTY_SHA256,
            Utc::now(),
        ) {
            req = req.header(name, value);
        }
        let resp = req.send().await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            other => Err(BlobError::UnexpectedStatus {
                status: other.as_u16(),
            }),
        }
    }

    async fn download(&self, key: &str, dest: &std::path::Path) -> Result<Option<u64>, BlobError> {
        use tokio::io::AsyncWriteExt;
        validate_key(key)?;
        let path = self.object_path(key);
        let url = self.request_url(&path);
        let mut req = self.http.get(url).timeout(Duration::from_secs(300));
        for (name, value) in
            self.signer
                .sign_headers("GET", &self.endpoint, &path, &[], EMPTY_SHA256, Utc::now())
        {
            req = req.header(name, value);
        }
        let resp = req.send().await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            other => {
                return Err(BlobError::UnexpectedStatus {
                    status: other.as_u16(),
                })
            }
        }
        let mut resp = resp;
        let mut file = tokio::fs::File::create(dest).await?;
        let mut size = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            size += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(Some(size))
    }

    async fn upload(
        &self,
        key: &str,
        src: &std::path::Path,
        content_type: &str,
    ) -> Result<u64, BlobError> {
        validate_key(key)?;
        validate_content_type(content_type)?;
        let bytes = tokio::fs::read(src).await?;
        let size = bytes.len() as u64;
        let path = self.object_path(key);
        let url = self.request_url(&path);
        let payload = hex::encode(Sha256::digest(&bytes));
        let mut req = self
            .http
            .put(url)
            .timeout(Duration::from_secs(300))
            .header(reqwest::header::CONTENT_TYPE, content_type);
        for (name, value) in self.signer.sign_headers(
            "PUT",
            &self.endpoint,
            &path,
            &[("content-type", content_type)],
            &payload,
            Utc::now(),
        ) {
            req = req.header(name, value);
        }
        let resp = req.body(bytes).send().await?;
        if !resp.status().is_success() {
            return Err(BlobError::UnexpectedStatus {
                status: resp.status().as_u16(),
            });
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn example_signer() -> SigV4 {
        SigV4::new(
            "AKIAIOSFODNN7EXAMPLE",
            Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            "us-east-1",
            "s3",
        )
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap()
    }

    /// AWS's documented example of query-string authentication.
    #[test]
    fn presigned_get_matches_the_aws_example() {
        let url = example_signer().presign(
            "GET",
            &Url::parse("https://examplebucket.s3.amazonaws.com").unwrap(),
            "/test.txt",
            &[],
            Duration::from_secs(86400),
            at(),
        );
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt\
             ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    /// AWS's documented example of header authentication (GET Object).
    #[test]
    fn header_auth_matches_the_aws_example() {
        let headers = example_signer().sign_headers(
            "GET",
            &Url::parse("https://examplebucket.s3.amazonaws.com").unwrap(),
            "/test.txt",
            &[("Range", "bytes=0-9")],
            EMPTY_SHA256,
            at(),
        );
        let auth = &headers
            .iter()
            .find(|(k, _)| *k == "authorization")
            .unwrap()
            .1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert!(headers.contains(&("x-amz-date", "20130524T000000Z".into())));
    }

    fn store(endpoint: &str) -> S3BlobStore {
        S3BlobStore::new(S3Config {
            endpoint: Url::parse(endpoint).unwrap(),
            bucket: "videos".into(),
            region: "eu-west-1".into(),
            access_key: "AK".into(),
            secret_key: Secret::new("SK"),
            public_url: None,
        })
        .unwrap()
    }

    #[test]
    fn presigned_put_is_path_style_and_signs_type_and_length() {
        let s = store("http://127.0.0.1:9000");
        let url = s
            .presign_put("u/1.mp4", "video/mp4", 42, Duration::from_secs(900))
            .unwrap();
        let u = Url::parse(&url).unwrap();
        assert_eq!(u.path(), "/videos/u/1.mp4");
        assert_eq!(u.port(), Some(9000));
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["X-Amz-Expires"], "900");
        assert_eq!(q["X-Amz-SignedHeaders"], "content-length;content-type;host");
        assert!(q["X-Amz-Credential"].starts_with("AK/"));
        assert!(q["X-Amz-Credential"].ends_with("/eu-west-1/s3/aws4_request"));
        assert_eq!(q["X-Amz-Signature"].len(), 64);
        assert_eq!(
            s.object_url("u/1.mp4"),
            "http://127.0.0.1:9000/videos/u/1.mp4"
        );
        assert!(s
            .presign_put("../x", "video/mp4", 1, Duration::from_secs(1))
            .is_err());
    }

    /// A one-request HTTP server answering with `response`; returns its
    /// address and the request head it received.
    async fn fake_s3(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            sock.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf).to_lowercase()
        });
        (addr, handle)
    }

    #[tokio::test]
    async fn stored_size_sends_a_signed_head() {
        let (addr, req) =
            fake_s3("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nConnection: close\r\n\r\n").await;
        assert_eq!(
            store(&addr).stored_size("u/1.mp4").await.unwrap(),
            Some(1234)
        );
        let head = req.await.unwrap();
        assert!(head.starts_with("head /videos/u/1.mp4 http/1.1"), "{head}");
        assert!(
            head.contains("authorization: aws4-hmac-sha256 credential=ak/"),
            "{head}"
        );
        assert!(head.contains("signedheaders=host;x-amz-content-sha256;x-amz-date"));
        assert!(head.contains(&format!("x-amz-content-sha256: {EMPTY_SHA256}")));

        let (addr, _) =
            fake_s3("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        assert_eq!(store(&addr).stored_size("u/1.mp4").await.unwrap(), None);

        let (addr, _) =
            fake_s3("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        assert!(matches!(
            store(&addr).stored_size("u/1.mp4").await,
            Err(BlobError::UnexpectedStatus { status: 403 })
        ));
    }
}
