-- Reports read model (projections/src/reports.rs): users' reports of
-- videos, for moderation.
CREATE TABLE IF NOT EXISTS reports (
    id          uuid PRIMARY KEY,
    reporter_id uuid        NOT NULL,
    video_id    uuid        NOT NULL,
    reason      text        NOT NULL,
    note        text,
    status      text        NOT NULL, -- open | resolved
    created_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_by_video ON reports (video_id, status);
