-- Bookmarks read model (projections/src/bookmarks.rs): which user saved
-- which video, private to that user.
CREATE TABLE IF NOT EXISTS bookmarks (
    user_id    uuid        NOT NULL,
    video_id   uuid        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, video_id)
);
CREATE INDEX IF NOT EXISTS bookmarks_by_user ON bookmarks (user_id, created_at DESC, video_id DESC);
