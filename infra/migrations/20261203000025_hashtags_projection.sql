-- Hashtags become a projection of their own (projections/src/hashtags.rs),
-- split from `search`: one Postgres backend writing postings, tag rows and
-- tag uses in turn set the end of every catch-up. Each keeps its own copy of
-- the videos' caption state, so the two apply on their own connections.
CREATE TABLE IF NOT EXISTS hashtag_videos
(
    video_id     uuid PRIMARY KEY,
    owner_id     uuid        NOT NULL,
    caption      text        NOT NULL DEFAULT '',
    public       boolean     NOT NULL DEFAULT true,
    published_at timestamptz,
    live         boolean     NOT NULL DEFAULT true
);

-- An existing database: the hashtag tables are already as `search` left
-- them, so `hashtags` starts from search's state and checkpoint (in this
-- migration's transaction, while no projector can move either).
INSERT INTO hashtag_videos (video_id, owner_id, caption, public, published_at, live)
SELECT video_id, owner_id, caption, public, published_at, live FROM search_videos
ON CONFLICT (video_id) DO NOTHING;

INSERT INTO projection_checkpoints (projection, last_xid, last_position, applied, stream_seq)
SELECT 'hashtags', last_xid, last_position, 0, stream_seq
  FROM projection_checkpoints WHERE projection = 'search'
ON CONFLICT (projection) DO NOTHING;
