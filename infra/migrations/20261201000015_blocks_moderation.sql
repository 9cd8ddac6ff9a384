-- Blocks read model (projections/src/blocks.rs): who blocks whom. The API
-- hides each pair from each other and refuses likes, comments and follows
-- between them.
CREATE TABLE IF NOT EXISTS blocks (
    blocker_id uuid        NOT NULL,
    blocked_id uuid        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX IF NOT EXISTS blocks_by_blocked ON blocks (blocked_id, blocker_id);
CREATE INDEX IF NOT EXISTS blocks_by_blocker_time ON blocks (blocker_id, created_at DESC, blocked_id DESC);

-- Moderation (users, videos and reports projections).
ALTER TABLE users ADD COLUMN IF NOT EXISTS banned boolean NOT NULL DEFAULT false;
ALTER TABLE videos ADD COLUMN IF NOT EXISTS removed_at timestamptz;
ALTER TABLE reports ADD COLUMN IF NOT EXISTS resolved_at timestamptz;
ALTER TABLE reports ADD COLUMN IF NOT EXISTS resolved_by uuid;
