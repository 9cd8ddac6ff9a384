//! The default store: files under `$LOKIZ_DATA_DIR/blobs`, uploaded through
//! signed `PUT /v1/blobs/{key}` URLs and served by `GET /v1/blobs/{key}`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{unix_now, uri_encode, validate_content_type, validate_key, validate_ttl};
use super::{BlobError, BlobStore};

type HmacSha256 = Hmac<Sha256>;

/// Uploads land here first; a finished upload is renamed into place, so a
/// half-written object never looks stored.
const TMP_DIR: &str = ".tmp";

pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Files on local disk. URLs are
/// `{public_base}/v1/blobs/{key}?expires=<unix>&ct=<content type>&size=<n>&sig=<hex>`,
/// with `sig` = HMAC-SHA256(key, "PUT\n{key}\n{ct}\n{size}\n{expires}").
pub struct LocalBlobStore {
    root: PathBuf,
    public_base: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for LocalBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBlobStore")
            .field("root", &self.root)
            .field("public_base", &self.public_base)
            .field("key", &"***")
            .finish()
    }
}

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

impl Written {
    /// A strong HTTP entity tag: the quoted content hash.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.sha256)
    }
}

/// Removes the temporary file unless the upload was committed, also when
/// the request is dropped half-way (client gone).
struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl LocalBlobStore {
    /// `root` is created on first write; `public_base` is the server's
    /// public URL (a trailing `/` is dropped); `key` signs upload URLs.
    pub fn new(root: impl Into<PathBuf>, public_base: &str, key: Vec<u8>) -> Self {
        Self {
            root: root.into(),
            public_base: public_base.trim_end_matches('/').to_owned(),
            key,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key` (which need not exist). Refuses invalid keys, so
    /// the path is always inside the root.
    pub fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn mac(&self, key: &str, content_type: &str, size: u64, expires: u64) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(format!("PUT\n{key}\n{content_type}\n{size}\n{expires}").as_bytes());
        mac
    }

    fn get_mac(&self, key: &str, expires: u64) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(format!("GET\n{key}\n{expires}").as_bytes());
        mac
    }

    /// [`BlobStore::signed_url`] as of `now` (Unix seconds):
    /// `{object_url}?expires=<unix>&sig=<hex HMAC of "GET\n{key}\n{expires}">`.
    pub fn signed_url_at(&self, key: &str, ttl: Duration, now: u64) -> Result<String, BlobError> {
        validate_key(key)?;
        validate_ttl(ttl)?;
        let expires = now.saturating_add(ttl.as_secs());
        let sig = hex::encode(self.get_mac(key, expires).finalize().into_bytes());
        Ok(format!(
            "{}?expires={expires}&sig={sig}",
            self.object_url(key)
        ))
    }

    /// Checks a signed `GET` URL's parameters (signature in constant time,
    /// then expiry).
    pub fn verify_get(
        &self,
        key: &str,
        expires: u64,
        sig: &str,
        now: u64,
    ) -> Result<(), BlobError> {
        let sig = hex::decode(sig).map_err(|_| BlobError::BadSignature)?;
        self.get_mac(key, expires)
            .verify_slice(&sig)
            .map_err(|_| BlobError::BadSignature)?;
        if now >= expires {
            return Err(BlobError::Expired { expires });
        }
        Ok(())
    }

    /// [`BlobStore::presign_put`] as of `now` (Unix seconds): the URL
    /// expires at `now + ttl`.
    pub fn presign_put_at(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
        now: u64,
    ) -> Result<String, BlobError> {
        validate_key(key)?;
        validate_content_type(content_type)?;
        validate_ttl(ttl)?;
        let expires = now.saturating_add(ttl.as_secs());
        let sig = hex::encode(
            self.mac(key, content_type, size, expires)
                .finalize()
                .into_bytes(),
        );
        Ok(format!(
            "{}?expires={expires}&ct={}&size={size}&sig={sig}",
            self.object_url(key),
            uri_encode(content_type, false),
        ))
    }

    /// Checks an upload URL's parameters: the signature first (constant
    /// time), then the expiry (`now` in Unix seconds; a URL is valid before
    /// `expires`, not at it).
    pub fn verify_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        expires: u64,
        sig: &str,
        now: u64,
    ) -> Result<(), BlobError> {
        validate_key(key)?;
        let sig = hex::decode(sig).map_err(|_| BlobError::BadSignature)?;
        self.mac(key, content_type, size, expires)
            .verify_slice(&sig)
            .map_err(|_| BlobError::BadSignature)?;
        if now >= expires {
            return Err(BlobError::Expired { expires });
        }
        Ok(())
    }

    /// Streams `body` into the object `key`, which must be exactly `size`
    /// bytes: reading stops as soon as the body goes past `size`
    /// ([`BlobError::TooLarge`]); a shorter body is
    /// [`BlobError::SizeMismatch`]. The bytes go to a temporary file that is
    /// synced and renamed into place only when complete, so a failed or
    /// half-finished upload leaves nothing stored (and an earlier object of
    /// the same key untouched).
    pub async fn write<S, B, E>(&self, key: &str, size: u64, body: S) -> Result<Written, BlobError>
    where
        S: Stream<Item = Result<B, E>>,
        B: AsRef<[u8]>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.write_inner(key, size, body, true).await
    }

    /// [`write`](Self::write), but only if nothing is stored under `key`
    /// yet ([`BlobError::AlreadyExists`] otherwise, also when two uploads
    /// race: the object appears atomically, by a hard link). An upload URL
    /// works once.
    pub async fn write_once<S, B, E>(
        &self,
        key: &str,
        size: u64,
        body: S,
    ) -> Result<Written, BlobError>
    where
        S: Stream<Item = Result<B, E>>,
        B: AsRef<[u8]>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.write_inner(key, size, body, false).await
    }

    async fn write_inner<S, B, E>(
        &self,
        key: &str,
        size: u64,
        body: S,
        replace: bool,
    ) -> Result<Written, BlobError>
    where
        S: Stream<Item = Result<B, E>>,
        B: AsRef<[u8]>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let dest = self.path(key)?;
        let tmp_dir = self.root.join(TMP_DIR);
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let mut tmp = TempFile {
            path: tmp_dir.join(format!("{}.part", uuid::Uuid::new_v4().simple())),
            committed: false,
        };
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp.path)
            .await?;
        let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, file);
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.into()))?;
            let chunk = chunk.as_ref();
            received = received.saturating_add(chunk.len() as u64);
            if received > size {
                return Err(BlobError::TooLarge { limit: size });
            }
            hasher.update(chunk);
            out.write_all(chunk).await?;
        }
        if received != size {
            return Err(BlobError::SizeMismatch {
                expected: size,
                received,
            });
        }
        out.flush().await?;
        let file = out.into_inner();
        file.sync_all().await?;
        drop(file);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        if replace {
            tokio::fs::rename(&tmp.path, &dest).await?;
            tmp.committed = true;
        } else {
            match tokio::fs::hard_link(&tmp.path, &dest).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(BlobError::AlreadyExists)
                }
                Err(e) => return Err(e.into()),
            }
            // the temporary name goes when `tmp` drops
        }
        Ok(Written {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// [`write`](Self::write) of bytes already in memory.
    pub async fn write_bytes(&self, key: &str, bytes: &[u8]) -> Result<Written, BlobError> {
        let chunk: Result<&[u8], std::io::Error> = Ok(bytes);
        self.write(key, bytes.len() as u64, futures::stream::iter([chunk]))
            .await
    }
}

#[async_trait::async_trait]
impl BlobStore for LocalBlobStore {
    fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<String, BlobError> {
        self.presign_put_at(key, content_type, size, ttl, unix_now())
    }

    fn object_url(&self, key: &str) -> String {
        format!("{}/v1/blobs/{key}", self.public_base)
    }

    fn signed_url(&self, key: &str, ttl: Duration) -> Result<String, BlobError> {
        self.signed_url_at(key, ttl, unix_now())
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn stored_size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn download(&self, key: &str, dest: &Path) -> Result<Option<u64>, BlobError> {
        let src = self.path(key)?;
        match tokio::fs::copy(&src, dest).await {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload(&self, key: &str, src: &Path, content_type: &str) -> Result<u64, BlobError> {
        validate_content_type(content_type)?;
        // outputs are short clips and stills: read whole, written atomically
        let bytes = tokio::fs::read(src).await?;
        Ok(self.write_bytes(key, &bytes).await?.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (LocalBlobStore, PathBuf) {
        let root = std::env::temp_dir().join(format!("lokiz-blob-{}", uuid::Uuid::new_v4()));
        (
            LocalBlobStore::new(&root, "http://127.0.0.1:8080/", b"k".repeat(32)),
            root,
        )
    }

    fn params(url: &str) -> std::collections::HashMap<String, String> {
        let u = url::Url::parse(url).unwrap();
        u.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn signed_urls_verify_and_refuse_tampering() {
        let (s, _) = store();
        let now = 1_700_000_000;
        let url = s
            .presign_put_at(
                "videos/a.mp4",
                "video/mp4; codecs=\"avc1\"",
                1234,
                Duration::from_secs(600),
                now,
            )
            .unwrap();
        assert!(url.starts_with("http://127.0.0.1:8080/v1/blobs/videos/a.mp4?expires="));
        let p = params(&url);
        assert_eq!(p["ct"], "video/mp4; codecs=\"avc1\"");
        assert_eq!(p["size"], "1234");
        let expires: u64 = p["expires"].parse().unwrap();
        assert_eq!(expires, now + 600);
        let sig = p["sig"].as_str();
        let ct = p["ct"].as_str();
        let key = "videos/a.mp4";

        s.verify_put(key, ct, 1234, expires, sig, now).unwrap();
        s.verify_put(key, ct, 1234, expires, sig, expires - 1)
            .unwrap();
        assert!(matches!(
            s.verify_put(key, ct, 1234, expires, sig, expires),
            Err(BlobError::Expired { .. })
        ));
        let bad = |r: Result<(), BlobError>| matches!(r, Err(BlobError::BadSignature));
        assert!(bad(s.verify_put(
            "videos/b.mp4",
            ct,
            1234,
            expires,
            sig,
            now
        )));
        assert!(bad(s.verify_put(
            key,
            "video/webm",
            1234,
            expires,
            sig,
            now
        )));
        assert!(bad(s.verify_put(key, ct, 1235, expires, sig, now)));
        assert!(bad(s.verify_put(key, ct, 1234, expires + 1, sig, now)));
        assert!(bad(s.verify_put(key, ct, 1234, expires, "zz", now)));
        assert!(bad(s.verify_put(key, ct, 1234, expires, &sig[..10], now)));
        let mut flipped = sig.to_owned();
        flipped.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
        assert!(bad(s.verify_put(key, ct, 1234, expires, &flipped, now)));
        // a bad signature is reported as such even when also expired
        assert!(bad(s.verify_put(
            key,
            ct,
            1234,
            expires,
            &flipped,
            expires + 5
        )));

        // another secret signs differently
        let other = LocalBlobStore::new("/x", "http://h", b"j".repeat(32));
        assert!(bad(other.verify_put(key, ct, 1234, expires, sig, now)));
    }

    #[test]
    fn presign_refuses_bad_input() {
        let (s, _) = store();
        let ttl = Duration::from_secs(60);
        assert!(matches!(
            s.presign_put("../etc/passwd", "video/mp4", 1, ttl),
            Err(BlobError::InvalidKey { .. })
        ));
        assert!(matches!(
            s.presign_put("a", "video/mp4\nx", 1, ttl),
            Err(BlobError::InvalidContentType)
        ));
        assert!(matches!(
            s.presign_put("a", "video/mp4", 1, Duration::from_secs(8 * 24 * 3600)),
            Err(BlobError::InvalidTtl { .. })
        ));
        assert!(s.path("a/../../b").is_err());
        assert_eq!(
            s.object_url("v/x.mp4"),
            "http://127.0.0.1:8080/v1/blobs/v/x.mp4"
        );
    }

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = Result<&'static [u8], std::io::Error>> {
        futures::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    fn tmp_is_empty(root: &Path) -> bool {
        std::fs::read_dir(root.join(TMP_DIR))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    }

    #[tokio::test]
    async fn writes_exact_sizes_atomically() {
        let (s, root) = store();
        assert_eq!(s.stored_size("v/a.bin").await.unwrap(), None);
        let w = s
            .write("v/a.bin", 11, chunks(&[b"hello", b" ", b"world"]))
            .await
            .unwrap();
        assert_eq!(w.size, 11);
        assert_eq!(w.sha256, hex::encode(Sha256::digest(b"hello world")));
        assert_eq!(w.etag(), format!("\"{}\"", w.sha256));
        assert_eq!(s.stored_size("v/a.bin").await.unwrap(), Some(11));
        assert_eq!(
            std::fs::read(s.path("v/a.bin").unwrap()).unwrap(),
            b"hello world"
        );

        // too large: stops at the limit, stores nothing, keeps the old object
        let err = s
            .write("v/a.bin", 4, chunks(&[b"abc", b"de", b"never read"]))
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 4 }), "{err}");
        assert_eq!(s.stored_size("v/a.bin").await.unwrap(), Some(11));
        let err = s
            .write("v/b.bin", 4, chunks(&[b"abcde"]))
            .await
            .unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { .. }));
        assert_eq!(s.stored_size("v/b.bin").await.unwrap(), None);

        // too short
        let err = s.write("v/b.bin", 4, chunks(&[b"abc"])).await.unwrap_err();
        assert!(matches!(
            err,
            BlobError::SizeMismatch {
                expected: 4,
                received: 3
            }
        ));
        assert_eq!(s.stored_size("v/b.bin").await.unwrap(), None);

        // a failing body
        let failing = futures::stream::iter(vec![
            Ok(&b"ab"[..]),
            Err(std::io::Error::other("client gone")),
        ]);
        let err = s.write("v/b.bin", 4, failing).await.unwrap_err();
        assert!(matches!(err, BlobError::Body(_)));
        assert_eq!(s.stored_size("v/b.bin").await.unwrap(), None);
        assert!(tmp_is_empty(&root), "temporary files are removed");

        // empty objects and directories
        s.write_bytes("v/empty", b"").await.unwrap();
        assert_eq!(s.stored_size("v/empty").await.unwrap(), Some(0));
        assert_eq!(s.stored_size("v").await.unwrap(), None);
        assert_eq!(s.stored_size("v/a.bin/x").await.unwrap(), None);
        assert!(s.write_bytes("../x", b"a").await.is_err());
        let _ = std::fs::remove_dir_all(root);
    }
}
