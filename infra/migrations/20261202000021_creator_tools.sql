-- Creator tools (issue 14).

-- Per-day counters of each video (projections/src/video_stats.rs), UTC days:
-- views counted, net likes (an unlike subtracts on its own day), net
-- comments (a deletion subtracts on its own day), glitches published from it.
CREATE TABLE IF NOT EXISTS video_daily_stats (
    video_id uuid   NOT NULL,
    day      date   NOT NULL,
    views    bigint NOT NULL DEFAULT 0,
    likes    bigint NOT NULL DEFAULT 0,
    comments bigint NOT NULL DEFAULT 0,
    glitches bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (video_id, day)
);

-- The draft a video was uploaded from (videos projection), so completing
-- the upload can publish the draft.
ALTER TABLE videos ADD COLUMN IF NOT EXISTS draft_id uuid;

-- Drafts (projections/src/drafts.rs): a user's unpublished captions and
-- parameters. Published and deleted drafts keep their row, out of the list.
CREATE TABLE IF NOT EXISTS drafts (
    id         uuid        PRIMARY KEY,
    owner_id   uuid        NOT NULL,
    caption    text,
    params     jsonb,
    status     text        NOT NULL, -- draft | published | deleted
    video_id   uuid,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS drafts_by_owner ON drafts (owner_id, created_at DESC, id DESC)
    WHERE status = 'draft';

-- Images (projections/src/images.rs): profile pictures and thumbnails,
-- uploaded like videos; only a completed one's URL may be used.
CREATE TABLE IF NOT EXISTS images (
    id           uuid        PRIMARY KEY,
    owner_id     uuid        NOT NULL,
    purpose      text        NOT NULL, -- profile | thumbnail
    file_key     text        NOT NULL UNIQUE,
    content_type text        NOT NULL,
    file_size    bigint      NOT NULL,
    status       text        NOT NULL, -- processing | completed
    width        int,
    height       int,
    created_at   timestamptz NOT NULL,
    completed_at timestamptz
);
-- (the file janitor records swept image uploads in file_sweeps by image id,
-- beside video ids: both are v7 UUIDs, never the same)
