//! URLs of stored files in answers. Public content (a completed public
//! video, and what the studio renders from it) gets the plain object URL
//! of the local store, which anybody may fetch; everything else — private
//! or unfinished videos, job results, frames — gets a signed URL that works
//! for [`SIGNED_URL_TTL`]. With S3 every URL is signed: the bucket stays
//! private and needs no per-object rules.

use std::time::Duration;

use crate::ApiContext;

/// How long a signed file URL works.
pub const SIGNED_URL_TTL: Duration = Duration::from_secs(3600);

/// The URL to put in an answer for the file `key`; `public`: anybody may
/// see it.
pub fn file_url(ctx: &ApiContext, key: &str, public: bool) -> String {
    if public && ctx.local_blobs.is_some() {
        return ctx.blobs.object_url(key);
    }
    match ctx.blobs.signed_url(key, SIGNED_URL_TTL) {
        Ok(url) => url,
        Err(e) => {
            // keys are valid by construction; the plain URL is still safe to
            // hand out: serving checks who may see the file
            tracing::warn!(%key, error = %e, "cannot sign a file URL");
            ctx.blobs.object_url(key)
        }
    }
}
