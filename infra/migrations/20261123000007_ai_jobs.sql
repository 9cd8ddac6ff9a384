-- AI jobs and credits (projections/src/{ai_jobs,wallets}.rs).
ALTER TABLE wallets
    ADD COLUMN reserved bigint NOT NULL DEFAULT 0, -- held for running jobs
    ADD COLUMN spent    bigint NOT NULL DEFAULT 0; -- captured by completed jobs

-- One row per wallet event: the credits history, newest first by position.
CREATE TABLE credit_transactions
(
    position      bigint PRIMARY KEY, -- the event's global position
    user_id       uuid        NOT NULL,
    kind          text        NOT NULL, -- grant | reserve | capture | refund
    amount        bigint      NOT NULL, -- change to the spendable balance (capture: 0)
    credits       bigint      NOT NULL, -- credits concerned (always positive)
    balance_after bigint      NOT NULL,
    reason        text,                 -- grants: signup | purchase | subscription
    reference     text,                 -- grants: their reference
    job_id        uuid,                 -- reserve/capture/refund
    created_at    timestamptz NOT NULL
);
CREATE INDEX credit_transactions_by_user ON credit_transactions (user_id, position DESC);

CREATE TABLE ai_jobs
(
    id              uuid PRIMARY KEY,
    owner_id        uuid        NOT NULL,
    kind            text        NOT NULL,
    status          text        NOT NULL, -- queued | processing | completed | failed | canceled
    progress        smallint    NOT NULL DEFAULT 0,
    cost            bigint      NOT NULL,
    source_video_id uuid        NOT NULL,
    params          jsonb       NOT NULL,
    attempt         int         NOT NULL DEFAULT 0,
    result_key      text,
    output_video_id uuid,
    error_code      text,
    error_message   text,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX ai_jobs_by_owner ON ai_jobs (owner_id, created_at DESC, id DESC);

-- glitch chains: the glitches of a video, newest first
CREATE INDEX videos_by_source ON videos (source_video_id, published_at DESC, id DESC)
    WHERE source_video_id IS NOT NULL;
