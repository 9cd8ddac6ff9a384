-- Postings for video search (projections/src/search.rs, api/src/routes/search.rs).
--
-- A text index (GIN) answers "which videos hold these words" but not "the
-- newest 200 of them": with a common word that is a sort of every match.
-- `search_terms` holds one row per (lexeme, counted video), in publication
-- order per lexeme, so the newest matches of a word are an index range of
-- exactly that many rows; `search_lexicon` counts each lexeme's videos, so a
-- query starts from its rarest word, knows at once that a word nobody used
-- matches nothing, and expands a prefix (Korean words) to the words that
-- start with it.
CREATE TABLE IF NOT EXISTS search_terms
(
    term         text        NOT NULL,
    published_at timestamptz NOT NULL,
    video_id     uuid        NOT NULL,
    PRIMARY KEY (term, published_at, video_id)
);

CREATE TABLE IF NOT EXISTS search_lexicon
(
    term   text PRIMARY KEY,
    videos bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS search_lexicon_prefix ON search_lexicon (term text_pattern_ops);

-- what the search projection has already recorded
INSERT INTO search_terms (term, published_at, video_id)
SELECT l.lexeme, s.published_at, s.video_id
  FROM search_videos s, unnest(s.tsv) AS l
 WHERE s.live AND s.public AND s.published_at IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO search_lexicon (term, videos)
SELECT term, count(*) FROM search_terms GROUP BY term
ON CONFLICT (term) DO UPDATE SET videos = EXCLUDED.videos;
