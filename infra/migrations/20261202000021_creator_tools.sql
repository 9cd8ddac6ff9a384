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
