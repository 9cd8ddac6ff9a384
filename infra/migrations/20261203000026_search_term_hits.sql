-- Each posting carries how often its lexeme occurs in the caption (`hits`,
-- the length of its positions), held in the primary key's leaf pages
-- (`INCLUDE`): a one-word search ranks its newest postings with the
-- relevance `ts_rank_cd(tsv, word, 32)` would give, hits / (hits + 10),
-- from an index-only range, without reading 200 captions' `tsvector`s
-- (api/src/routes/search.rs).
ALTER TABLE search_terms ADD COLUMN IF NOT EXISTS hits smallint;

UPDATE search_terms t
   SET hits = greatest(coalesce(cardinality(l.positions), 0), 1)
  FROM search_videos s, unnest(s.tsv) AS l
 WHERE t.hits IS NULL AND s.video_id = t.video_id AND l.lexeme = t.term;
UPDATE search_terms SET hits = 1 WHERE hits IS NULL;

ALTER TABLE search_terms ALTER COLUMN hits SET NOT NULL;
ALTER TABLE search_terms
    DROP CONSTRAINT search_terms_pkey,
    ADD CONSTRAINT search_terms_pkey PRIMARY KEY (term, published_at, video_id) INCLUDE (hits);
