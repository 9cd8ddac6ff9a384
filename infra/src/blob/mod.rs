//! Object storage for uploads. A client never streams a video through a
//! command: it asks for a signed upload URL, PUTs the bytes there, and the
//! object is then served at `object_url`.
//!
//! Two stores: [`LocalBlobStore`] (the default: files under
//! `$LOKIZ_DATA_DIR/blobs`, uploaded to and served by this server's
//! `/v1/blobs/{key}`) and [`S3BlobStore`] (any S3-compatible service, with
//! SigV4-presigned URLs signed by `rusty-s3`), chosen by `LOKIZ_BLOB_STORE`.

mod local;
mod s3;

use std::sync::Arc;
use std::time::Duration;

pub use local::{LocalBlobStore, Written};
pub use s3::S3BlobStore;

use crate::config::{BlobConfig, Config};

/// Longest lifetime of an upload URL (S3's own limit for presigned URLs).
pub const MAX_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest object key accepted.
pub const MAX_KEY_LEN: usize = 512;
/// Longest segment (between slashes) of a key.
pub const MAX_SEGMENT_LEN: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The key is empty, too long, has a `.`/`..`/empty segment or a segment
    /// starting with `.`, starts with `/`, or has a character outside
    /// `[A-Za-z0-9._/-]`.
    #[error("invalid object key {key:?}")]
    InvalidKey { key: String },
    /// The content type is empty, too long, or not printable ASCII.
    #[error("invalid content type")]
    InvalidContentType,
    /// The URL lifetime is longer than [`MAX_URL_TTL`].
    #[error("URL lifetime of {secs} s exceeds the maximum of {max} s")]
    InvalidTtl { secs: u64, max: u64 },
    /// A signed URL's signature does not match its parameters.
    #[error("bad signature")]
    BadSignature,
    /// A signed URL is past its expiry.
    #[error("URL expired at {expires}")]
    Expired { expires: u64 },
    /// An upload sent more bytes than declared (reading stopped at the limit).
    #[error("object larger than the declared {limit} bytes")]
    TooLarge { limit: u64 },
    /// An upload ended before the declared size.
    #[error("object has {received} bytes, {expected} were declared")]
    SizeMismatch { expected: u64, received: u64 },
    /// The upload's body stream failed (e.g. the client went away).
    #[error("reading the upload failed: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("object storage request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The object storage answered with a status that is neither success
    /// nor "not found" (e.g. 403 for bad credentials).
    #[error("object storage answered {status}")]
    UnexpectedStatus { status: u16 },
    /// Something is already stored under this key (an upload URL works once).
    #[error("an object is already stored under this key")]
    AlreadyExists,
    /// The store's configuration is unusable (e.g. an S3 endpoint).
    #[error("blob store configuration: {0}")]
    Config(String),
    /// The object storage answered without a usable `Content-Length`.
    #[error("object storage answered without a valid Content-Length")]
    MissingLength,
}

/// Where uploads go and where objects are served from.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync {
    /// A URL the client `PUT`s the object to, with `Content-Type:
    /// content_type` and exactly `size` bytes, valid for `ttl`.
    fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<String, BlobError>;

    /// The URL that serves the object (`GET`, with range requests) to
    /// anybody: only for public content. `key` must be valid (see
    /// [`validate_key`]); the URL is not checked.
    fn object_url(&self, key: &str) -> String;

    /// A `GET` URL for the object that works for whoever holds it, until
    /// `ttl` has passed: how private files reach their owner (and a remote
    /// AI provider its input).
    fn signed_url(&self, key: &str, ttl: Duration) -> Result<String, BlobError>;

    /// Size of the stored object; `None` when there is none (an upload in
    /// progress is not stored yet).
    async fn stored_size(&self, key: &str) -> Result<Option<u64>, BlobError>;

    /// Copies the object to the local file `dest` (the AI worker's input);
    /// returns its size. A missing object is `Ok(None)`.
    async fn download(&self, key: &str, dest: &std::path::Path) -> Result<Option<u64>, BlobError>;

    /// Removes the object; removing one that is not there is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;

    /// Stores the local file `src` under `key` (the AI worker's output);
    /// returns its size.
    async fn upload(
        &self,
        key: &str,
        src: &std::path::Path,
        content_type: &str,
    ) -> Result<u64, BlobError>;
}

/// Builds the configured store. `public_base` is the server's own public
/// URL (no trailing slash): the local store's URLs start with it.
/// `url_secret` signs the local store's URLs (see [`derive_url_key`]).
/// Returns the store, and the same store as a [`LocalBlobStore`] when it is
/// one (the HTTP routes that accept uploads and serve files need it).
#[allow(clippy::type_complexity)]
pub fn from_config(
    config: &Config,
    public_base: &str,
    url_secret: &[u8],
) -> Result<(Arc<dyn BlobStore>, Option<Arc<LocalBlobStore>>), BlobError> {
    match &config.blob {
        BlobConfig::Local => {
            let local = Arc::new(LocalBlobStore::new(
                config.data_dir.join("blobs"),
                public_base,
                derive_url_key(url_secret),
            ));
            Ok((local.clone(), Some(local)))
        }
        BlobConfig::S3(s3) => Ok((Arc::new(S3BlobStore::new((**s3).clone())?), None)),
    }
}

/// The local store's URL-signing key, derived from a server secret so that
/// it differs from every other use of that secret:
/// HMAC-SHA256(secret, "lokiz blob-url v1").
pub fn derive_url_key(secret: &[u8]) -> Vec<u8> {
    local::hmac_sha256(secret, b"lokiz blob-url v1").to_vec()
}

/// Checks an object key: 1 to [`MAX_KEY_LEN`] characters of
/// `[A-Za-z0-9._/-]`, segments separated by single `/`, none empty or
/// starting with `.` (so no `.`, `..`, leading or trailing `/`, and no
/// hidden files). Keys are therefore safe as relative paths and need no
/// escaping in URLs.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    let invalid = || BlobError::InvalidKey {
        key: key.chars().take(MAX_KEY_LEN).collect(),
    };
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(invalid());
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
    {
        return Err(invalid());
    }
    if key.split('/').any(|segment| {
        // a segment is a file name in the local store: 255 bytes is the
        // usual file-system limit
        segment.is_empty() || segment.starts_with('.') || segment.len() > MAX_SEGMENT_LEN
    }) {
        return Err(invalid());
    }
    Ok(())
}

/// Checks a content type: 1 to 255 characters of printable ASCII (spaces
/// allowed inside), so it is a valid header value and needs no escaping
/// beyond URL encoding.
pub fn validate_content_type(content_type: &str) -> Result<(), BlobError> {
    let ok = !content_type.is_empty()
        && content_type.len() <= 255
        && content_type.trim() == content_type
        && content_type.bytes().all(|b| (0x20..0x7f).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidContentType)
    }
}

fn validate_ttl(ttl: Duration) -> Result<(), BlobError> {
    if ttl > MAX_URL_TTL {
        return Err(BlobError::InvalidTtl {
            secs: ttl.as_secs(),
            max: MAX_URL_TTL.as_secs(),
        });
    }
    Ok(())
}

/// Percent-encodes everything but RFC 3986's unreserved characters
/// (`A-Za-z0-9-._~`), and `/` when `keep_slash` (SigV4's `UriEncode`).
pub(crate) fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["a", "videos/0190-abc.mp4", "A_b-c.d/e", "x/y/z"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/abs",
            "a/../b",
            "..",
            "../x",
            "a/./b",
            "a//b",
            "a/",
            ".hidden",
            "a/.tmp/x",
            "sp ace",
            "q?x",
            "pct%2e",
            "back\\slash",
            "ü",
            &"k".repeat(MAX_KEY_LEN + 1),
            &format!("videos/{}", "0".repeat(MAX_SEGMENT_LEN + 1)),
        ] {
            assert!(
                matches!(validate_key(bad), Err(BlobError::InvalidKey { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn content_types() {
        assert!(validate_content_type("video/mp4").is_ok());
        assert!(validate_content_type("text/plain; charset=utf-8").is_ok());
        for bad in ["", " video/mp4", "a\nb", "vidéo/mp4"] {
            assert!(validate_content_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a b/c~d+é", true), "a%20b/c~d%2B%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }
}
