-- Notifications read model (projections/src/notifications.rs). Every table
-- here is the notifications projector's own: it keeps its own copy of what it
-- needs to know about videos, comments, jobs, blocks and settings, so that a
-- rebuild replays the same decisions in the same order.
CREATE TABLE IF NOT EXISTS notifications (
    id              uuid PRIMARY KEY,
    user_id         uuid        NOT NULL, -- the recipient
    kind            text        NOT NULL, -- like | comment | reply | follow | glitch | ai_job
    actor_id        uuid,                 -- the latest actor (none for ai_job)
    actor_count     integer     NOT NULL, -- distinct actors (likes coalesce)
    video_id        uuid,                 -- the recipient's video it is about
    comment_id      uuid,
    glitch_video_id uuid,
    job_id          uuid,
    job_status      text,                 -- completed | failed
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    read_at         timestamptz,
    -- the stream position of the last event that changed it: monotonic in
    -- the order the projector applies events (the relay's order), so it is
    -- the list's order and the resume point of live sockets
    seq_xid         bigint      NOT NULL,
    seq_pos         bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user_id, seq_xid DESC, seq_pos DESC);
CREATE INDEX IF NOT EXISTS notifications_unread ON notifications (user_id) WHERE read_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS notifications_like_group
    ON notifications (user_id, video_id) WHERE kind = 'like' AND read_at IS NULL;
CREATE INDEX IF NOT EXISTS notifications_by_comment ON notifications (comment_id) WHERE comment_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS notification_actors (
    notification_id uuid NOT NULL,
    actor_id        uuid NOT NULL,
    PRIMARY KEY (notification_id, actor_id)
);
CREATE TABLE IF NOT EXISTS notification_videos (
    video_id uuid PRIMARY KEY,
    owner_id uuid NOT NULL
);
CREATE TABLE IF NOT EXISTS notification_comments (
    comment_id uuid PRIMARY KEY,
    author_id  uuid NOT NULL
);
CREATE TABLE IF NOT EXISTS notification_jobs (
    job_id          uuid PRIMARY KEY,
    owner_id        uuid NOT NULL,
    kind            text NOT NULL,
    source_video_id uuid NOT NULL
);
CREATE TABLE IF NOT EXISTS notification_blocks (
    blocker_id uuid NOT NULL,
    blocked_id uuid NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE TABLE IF NOT EXISTS notification_settings (
    user_id uuid    NOT NULL,
    kind    text    NOT NULL,
    enabled boolean NOT NULL,
    PRIMARY KEY (user_id, kind)
);
