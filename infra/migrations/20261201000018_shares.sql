-- Shares: each video's share count (videos projection) and who shared what
-- where (projections/src/shares.rs), for the per-channel counts.
ALTER TABLE videos ADD COLUMN IF NOT EXISTS share_count bigint NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS shares (
    video_id   uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    channel    text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (video_id, channel, user_id)
);
