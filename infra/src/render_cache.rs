//! The studio's render cache: thumbnails and previews rendered on request
//! are kept in the blob store (`studio/<video>/…`) and listed in
//! `render_cache` with their size and last use, so the cache is bounded:
//! entries unused for `max_age` and, beyond `max_bytes` in all, the least
//! recently used ones are removed (file first, then row). Counted in
//! `/metrics`: `lokiz_render_cache_{hits,misses,evictions}_total` and the
//! gauges `lokiz_render_cache_bytes`, `lokiz_render_cache_entries`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::blob::BlobStore;

#[derive(Clone)]
pub struct RenderCache {
    pool: PgPool,
    blobs: Arc<dyn BlobStore>,
    pub max_bytes: u64,
    pub max_age: Duration,
}

impl RenderCache {
    pub fn new(pool: PgPool, blobs: Arc<dyn BlobStore>, max_bytes: u64, max_age: Duration) -> Self {
        Self {
            pool,
            blobs,
            max_bytes,
            max_age,
        }
    }

    /// Whether every one of `keys` is cached (and marks them used).
    pub async fn hit(&self, keys: &[String]) -> Result<bool, sqlx::Error> {
        // entries past max_age are not hits: they are rendered again. The
        // last use is written at most once a minute per entry, so a popular
        // timeline's reads do not each cost a write.
        let fresh: i64 = sqlx::query_scalar(
            "WITH fresh AS (
                 SELECT key, used_at FROM render_cache
                  WHERE key = ANY($1) AND created_at > now() - make_interval(secs => $2)),
             touched AS (
                 UPDATE render_cache r SET used_at = now() FROM fresh f
                  WHERE r.key = f.key AND f.used_at < now() - interval '1 minute')
             SELECT count(*) FROM fresh",
        )
        .bind(keys)
        .bind(self.max_age.as_secs_f64())
        .fetch_one(&self.pool)
        .await?;
        let hit = fresh as usize == keys.len() && !keys.is_empty();
        if hit {
            metrics::counter!("lokiz_render_cache_hits_total").increment(1);
        } else {
            metrics::counter!("lokiz_render_cache_misses_total").increment(1);
        }
        Ok(hit)
    }

    /// Records a stored render, then evicts what the bounds require.
    pub async fn stored(&self, key: &str, bytes: u64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO render_cache (key, bytes) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET bytes = EXCLUDED.bytes, created_at = now(), used_at = now()",
        )
        .bind(key)
        .bind(bytes as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes entries older than `max_age`, then the least recently used
    /// ones until the total is under `max_bytes`; updates the gauges.
    pub async fn evict(&self) -> Result<u64, sqlx::Error> {
        let victims: Vec<String> = sqlx::query_scalar(
            "WITH ranked AS (
                 SELECT key, created_at,
                        sum(bytes) OVER (ORDER BY used_at DESC, key) AS running
                   FROM render_cache)
             SELECT key FROM ranked
              WHERE running > $1 OR created_at < now() - make_interval(secs => $2)",
        )
        .bind(self.max_bytes as i64)
        .bind(self.max_age.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let mut evicted = 0;
        for key in victims {
            // the file first: a row without a file would be a false hit
            if let Err(e) = self.blobs.delete(&key).await {
                tracing::warn!(%key, error = %e, "render cache: cannot delete; kept");
                continue;
            }
            sqlx::query("DELETE FROM render_cache WHERE key = $1")
                .bind(&key)
                .execute(&self.pool)
                .await?;
            evicted += 1;
        }
        metrics::counter!("lokiz_render_cache_evictions_total").increment(evicted);
        let (entries, bytes): (i64, i64) =
            sqlx::query_as("SELECT count(*), coalesce(sum(bytes), 0)::bigint FROM render_cache")
                .fetch_one(&self.pool)
                .await?;
        metrics::gauge!("lokiz_render_cache_entries").set(entries as f64);
        metrics::gauge!("lokiz_render_cache_bytes").set(bytes as f64);
        Ok(evicted)
    }
}
