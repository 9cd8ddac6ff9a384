-- Search, autocomplete, hashtags and search history (issue 14). Written by
-- the `search` projection (projections/src/search.rs) and the
-- `search_history` projection; the API reads them.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Text search configuration `lokiz`: English words (ASCII) are stemmed with
-- the English Snowball stemmer (and its stop words dropped), so "dancing"
-- finds "dance"; every other word (Korean, other scripts) is only
-- lowercased and kept whole. Postgres ships no Korean morphology, and
-- Korean attaches particles to the end of a word (고양이가 = 고양이 + 가), so
-- queries match words by prefix (`고양이:*` finds 고양이가); misspellings
-- are left to trigrams (pg_trgm) on names, tags and keywords.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = 'lokiz') THEN
        CREATE TEXT SEARCH CONFIGURATION lokiz (COPY = simple);
        ALTER TEXT SEARCH CONFIGURATION lokiz
            ALTER MAPPING FOR asciiword, asciihword, hword_asciipart WITH english_stem;
    END IF;
END
$$;

-- Each video's searchable text and whether it counts (public, published,
-- not deleted or removed): the search projection's own copy, so counters
-- on `videos` (likes, views) never rewrite a text index.
CREATE TABLE IF NOT EXISTS search_videos
(
    video_id     uuid PRIMARY KEY,
    owner_id     uuid        NOT NULL,
    caption      text        NOT NULL DEFAULT '',
    public       boolean     NOT NULL DEFAULT true,
    published_at timestamptz,
    live         boolean     NOT NULL DEFAULT true,
    tsv          tsvector GENERATED ALWAYS AS (to_tsvector('lokiz', caption)) STORED
);
CREATE INDEX IF NOT EXISTS search_videos_tsv ON search_videos USING gin (tsv);
-- The newest counted videos first (a search's first look walks them).
CREATE INDEX IF NOT EXISTS search_videos_recent ON search_videos (published_at DESC, video_id DESC)
    WHERE live AND public AND published_at IS NOT NULL;

-- Caption words of counted videos (autocomplete keywords), with how many
-- videos use each.
CREATE TABLE IF NOT EXISTS search_keywords
(
    word   text PRIMARY KEY,
    videos bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS search_keywords_prefix ON search_keywords (word text_pattern_ops);
CREATE INDEX IF NOT EXISTS search_keywords_trgm ON search_keywords USING gist (word gist_trgm_ops);

-- Hashtags (case-folded, without '#') of counted videos.
CREATE TABLE IF NOT EXISTS hashtags
(
    tag    text PRIMARY KEY,
    videos bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS hashtags_prefix ON hashtags (tag text_pattern_ops);
CREATE INDEX IF NOT EXISTS hashtags_trgm ON hashtags USING gist (tag gist_trgm_ops);
CREATE TABLE IF NOT EXISTS video_hashtags
(
    tag          text        NOT NULL,
    video_id     uuid        NOT NULL,
    published_at timestamptz NOT NULL,
    PRIMARY KEY (tag, video_id)
);
CREATE INDEX IF NOT EXISTS video_hashtags_latest ON video_hashtags (tag, published_at DESC, video_id DESC);
-- Who used a tag on which UTC day (trending counts people, not posts).
CREATE TABLE IF NOT EXISTS hashtag_uses
(
    tag     text        NOT NULL,
    day     date        NOT NULL,
    user_id uuid        NOT NULL,
    used_at timestamptz NOT NULL,
    PRIMARY KEY (tag, day, user_id)
);
CREATE TABLE IF NOT EXISTS hashtag_days
(
    tag          text        NOT NULL,
    day          date        NOT NULL,
    accounts     integer     NOT NULL,
    last_used_at timestamptz NOT NULL,
    PRIMARY KEY (tag, day)
);
CREATE INDEX IF NOT EXISTS hashtag_days_by_day ON hashtag_days (day);
CREATE INDEX IF NOT EXISTS hashtag_uses_by_day ON hashtag_uses (day);

-- People by name: trigram distance (typos) and username prefix (@mentions).
CREATE INDEX IF NOT EXISTS users_name_trgm
    ON users USING gist ((lower(username) || ' ' || lower(display_name)) gist_trgm_ops);
CREATE INDEX IF NOT EXISTS users_username_prefix ON users (lower(username) text_pattern_ops);

-- Search history (newest 50 per user; the SearchHistory aggregate).
CREATE TABLE IF NOT EXISTS search_history
(
    id          uuid PRIMARY KEY,
    user_id     uuid        NOT NULL,
    query       text        NOT NULL,
    searched_at timestamptz NOT NULL,
    seq         bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS search_history_by_user ON search_history (user_id, seq DESC);
