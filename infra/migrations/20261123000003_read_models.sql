-- Read models, owned by projections (projections/src/*.rs). Counters and
-- derived values are written by projectors only: no triggers.
CREATE TABLE users
(
    id                uuid PRIMARY KEY,
    username          text        NOT NULL,
    email             text        NOT NULL,
    display_name      text        NOT NULL,
    bio               text,
    profile_image_url text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

CREATE TABLE wallets
(
    user_id    uuid PRIMARY KEY,
    balance    bigint      NOT NULL DEFAULT 0,
    granted    bigint      NOT NULL DEFAULT 0, -- all credits ever granted
    updated_at timestamptz NOT NULL
);
