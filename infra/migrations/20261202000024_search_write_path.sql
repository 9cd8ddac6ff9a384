-- Catch-up is paced by `search`, and its cost is index entries written per
-- video (projections/src/search.rs). Three of them served no query, or a
-- query another index serves as well:
--
-- - `search_videos_recent` is read by no query (the text-index fallback
--   orders by an expression precisely to stay off it).
-- - `video_hashtags` kept (tag, video_id) unique and (tag, published_at,
--   video_id) for the tag's page: one key (tag, published_at, video_id)
--   serves both. A video's `published_at` is set once, so the projector
--   names the row by it when the tag leaves.
-- - `hashtag_uses` kept (tag, day, user_id) unique and (day) for the
--   trending scan of the last two days: (day, tag, user_id) serves both.
DROP INDEX IF EXISTS search_videos_recent;

DROP INDEX IF EXISTS video_hashtags_latest;
ALTER TABLE video_hashtags DROP CONSTRAINT IF EXISTS video_hashtags_pkey;
ALTER TABLE video_hashtags ADD PRIMARY KEY (tag, published_at, video_id);

DROP INDEX IF EXISTS hashtag_uses_by_day;
ALTER TABLE hashtag_uses DROP CONSTRAINT IF EXISTS hashtag_uses_pkey;
ALTER TABLE hashtag_uses ADD PRIMARY KEY (day, tag, user_id);
