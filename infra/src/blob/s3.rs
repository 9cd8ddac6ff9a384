//! S3-compatible object storage (AWS S3, MinIO, R2, moto, …). Every request
//! is signed with AWS Signature Version 4 by the `rusty-s3` crate (no
//! hand-written signing): presigned `PUT` URLs for uploads (content type
//! and length signed), presigned `GET` URLs for reading, and the server's
//! own `HEAD`, `GET`, `PUT` and `DELETE` through short-lived presigned URLs.
//! Path-style URLs (`{endpoint}/{bucket}/{key}`), so MinIO and other
//! services without virtual-host buckets work.

use std::time::Duration;

use reqwest::StatusCode;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::{validate_content_type, validate_key, validate_ttl};
use super::{BlobError, BlobStore};
use crate::config::S3Config;

/// How long the server's own presigned requests are valid.
const OWN_REQUEST_TTL: Duration = Duration::from_secs(300);

pub struct S3BlobStore {
    bucket: Bucket,
    credentials: Credentials,
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
        let bucket = Bucket::new(
            config.endpoint.clone(),
            UrlStyle::Path,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| BlobError::Config(e.to_string()))?;
        Ok(Self {
            bucket,
            credentials: Credentials::new(config.access_key, config.secret_key.expose().to_owned()),
            public_base: public_base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    /// Creates the bucket (tests and first setups; production buckets are
    /// made by their operators). An existing bucket is not an error.
    pub async fn create_bucket(&self) -> Result<(), BlobError> {
        let url = self
            .bucket
            .create_bucket(&self.credentials)
            .sign(OWN_REQUEST_TTL);
        let resp = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .send()
            .await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::CONFLICT => Ok(()),
            other => Err(BlobError::UnexpectedStatus {
                status: other.as_u16(),
            }),
        }
    }
}

fn unexpected(status: StatusCode) -> BlobError {
    BlobError::UnexpectedStatus {
        status: status.as_u16(),
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
        let mut put = self.bucket.put_object(Some(&self.credentials), key);
        put.headers_mut().insert("content-type", content_type);
        put.headers_mut().insert("content-length", size);
        Ok(put.sign(ttl).to_string())
    }

    fn object_url(&self, key: &str) -> String {
        format!("{}/{key}", self.public_base)
    }

    fn signed_url(&self, key: &str, ttl: Duration) -> Result<String, BlobError> {
        validate_key(key)?;
        validate_ttl(ttl)?;
        Ok(self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(ttl)
            .to_string())
    }

    async fn stored_size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        validate_key(key)?;
        let url = self
            .bucket
            .head_object(Some(&self.credentials), key)
            .sign(OWN_REQUEST_TTL);
        let resp = self.http.head(url).send().await?;
        match resp.status() {
            StatusCode::OK => resp
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Some)
                .ok_or(BlobError::MissingLength),
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(OWN_REQUEST_TTL);
        let resp = self.http.delete(url).send().await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn download(&self, key: &str, dest: &std::path::Path) -> Result<Option<u64>, BlobError> {
        use tokio::io::AsyncWriteExt;
        validate_key(key)?;
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(OWN_REQUEST_TTL);
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(300))
            .send()
            .await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            other => return Err(unexpected(other)),
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
        let mut put = self.bucket.put_object(Some(&self.credentials), key);
        put.headers_mut().insert("content-type", content_type);
        let url = put.sign(OWN_REQUEST_TTL);
        let resp = self
            .http
            .put(url)
            .timeout(Duration::from_secs(300))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(unexpected(resp.status()));
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use url::Url;

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
    }

    #[test]
    fn signed_get_urls_expire_and_bad_keys_are_refused() {
        let s = store("http://127.0.0.1:9000");
        let url = s.signed_url("u/1.mp4", Duration::from_secs(60)).unwrap();
        let u = Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["X-Amz-Expires"], "60");
        assert_eq!(q["X-Amz-SignedHeaders"], "host");
        assert!(s
            .signed_url("../etc/passwd", Duration::from_secs(60))
            .is_err());
        assert!(s
            .signed_url("u/1.mp4", Duration::from_secs(8 * 24 * 3600))
            .is_err());
    }
}
