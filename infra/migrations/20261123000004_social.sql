-- Social read models (projections/src/{videos,likes,follows,comments}.rs).

-- Hot rank, Reddit style: log10 of weighted engagement plus a bonus that
-- grows with publication time (12.5 h newer weighs like 10x the engagement).
-- Age is in the score itself, so ranks stay right without rewriting rows
-- as time passes; only engagement changes update it.
CREATE FUNCTION lokiz_hot_score(engagement bigint, published_at timestamptz)
    RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$
SELECT log(greatest(engagement, 1)::double precision)
     + extract(epoch FROM published_at - timestamptz '2026-01-01 00:00:00+00') / 45000.0
$$;

CREATE TABLE videos
(
    id            uuid PRIMARY KEY,
    owner_id      uuid             NOT NULL,
    file_key      text             NOT NULL,
    content_type  text             NOT NULL,
    file_size     bigint           NOT NULL,
    caption       text,
    visibility    text             NOT NULL,
    status        text             NOT NULL, -- processing | completed | deleted
    width         int,
    height        int,
    duration      double precision,
    created_at    timestamptz      NOT NULL,
    published_at  timestamptz,
    updated_at    timestamptz      NOT NULL,
    deleted_at    timestamptz,
    -- the video this one glitches (AI jobs fill it)
    source_video_id uuid,
    -- in feeds: completed, public, not deleted
    listed        boolean          NOT NULL DEFAULT false,
    view_count    bigint           NOT NULL DEFAULT 0,
    like_count    bigint           NOT NULL DEFAULT 0,
    comment_count bigint           NOT NULL DEFAULT 0,
    remix_count   bigint           NOT NULL DEFAULT 0,
    glitch_count  bigint           NOT NULL DEFAULT 0,
    hot_score     double precision NOT NULL DEFAULT 0
);
CREATE INDEX videos_latest ON videos (published_at DESC, id DESC) WHERE listed;
CREATE INDEX videos_trending ON videos (hot_score DESC, id DESC) WHERE listed;
CREATE INDEX videos_by_owner ON videos (owner_id, published_at DESC, id DESC) WHERE listed;
CREATE INDEX videos_owner_all ON videos (owner_id);

CREATE TABLE likes
(
    user_id    uuid        NOT NULL,
    video_id   uuid        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, video_id)
);
CREATE INDEX likes_by_user ON likes (user_id, created_at DESC);

CREATE TABLE follows
(
    follower_id uuid        NOT NULL,
    followee_id uuid        NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);
CREATE INDEX follows_followers ON follows (followee_id, created_at DESC, follower_id DESC);
CREATE INDEX follows_following ON follows (follower_id, created_at DESC, followee_id DESC);

CREATE TABLE follow_counts
(
    user_id   uuid PRIMARY KEY,
    followers bigint NOT NULL DEFAULT 0,
    following bigint NOT NULL DEFAULT 0
);

CREATE TABLE comments
(
    id          uuid PRIMARY KEY,
    video_id    uuid        NOT NULL,
    author_id   uuid        NOT NULL,
    parent_id   uuid,
    body        text        NOT NULL,
    reply_count bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    edited_at   timestamptz,
    deleted_at  timestamptz
);
CREATE INDEX comments_top ON comments (video_id, created_at DESC, id DESC) WHERE parent_id IS NULL AND deleted_at IS NULL;
CREATE INDEX comments_replies ON comments (parent_id, created_at, id) WHERE deleted_at IS NULL;
