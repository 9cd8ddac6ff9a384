-- The studio's render cache (infra/src/render_cache.rs): what is stored
-- under studio/<video>/… in the blob store, how big, and when last used,
-- so the cache stays under LOKIZ_STUDIO_CACHE_MB and LOKIZ_STUDIO_CACHE_HOURS.
-- Not a read model: bookkeeping of derived files, which can be rendered
-- again at any time.
CREATE TABLE IF NOT EXISTS render_cache (
    key        text PRIMARY KEY,
    bytes      bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS render_cache_used ON render_cache (used_at);

-- GET /v1/blobs/{key} asks whether a key is a public video's file.
CREATE INDEX IF NOT EXISTS videos_file_key ON videos (file_key);
