-- People search from name words (projections/src/people.rs): a search
-- finds the words close to what was typed among the distinct name words
-- (`people_lexicon`, trigram-indexed), then the people holding them through
-- their postings (`people_words`), instead of a trigram nearest-neighbour
-- search over every user's whole name (`users_name_trgm`, dropped below:
-- its cost grew with the number of people, 1.6 ms at 3,000 and 5.8 ms at
-- 10,000 for one search).
--
-- An existing database: the `people` projection has no checkpoint yet, so
-- it reads the stream from its start once (only User events change these
-- tables); `lokiz projections rebuild people` does the same from the store.
CREATE TABLE IF NOT EXISTS people_names
(
    user_id      uuid PRIMARY KEY,
    username     text NOT NULL,
    display_name text NOT NULL
);
CREATE TABLE IF NOT EXISTS people_words
(
    word    text NOT NULL,
    user_id uuid NOT NULL,
    PRIMARY KEY (word, user_id)
);
CREATE TABLE IF NOT EXISTS people_lexicon
(
    word   text PRIMARY KEY,
    people bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS people_lexicon_trgm ON people_lexicon USING gist (word gist_trgm_ops);
DROP INDEX IF EXISTS users_name_trgm;
