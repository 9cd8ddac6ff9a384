-- The postgres-es event store, plus the columns LOKIZ adds. postgres-es inserts
-- only its own columns; the defaults fill ours.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    -- global position: unique, increasing in insert order (not commit order)
    position       bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    -- the writing transaction: the relay orders by (xid, position) and reads
    -- only below pg_snapshot_xmin, so no later commit can land behind it
    xid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE INDEX events_commit_order ON events (xid, position);
CREATE INDEX events_recorded_at ON events (recorded_at);

CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    -- one row per aggregate (postgres-es keys it by last_sequence too): the
    -- one-statement append upserts it (infra/src/repository.rs)
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Where the relay has published up to, per stream, in (xid, position) order.
CREATE TABLE relay_checkpoints
(
    stream        text PRIMARY KEY,
    last_xid      bigint      NOT NULL DEFAULT 0,
    last_position bigint      NOT NULL DEFAULT 0,
    published     bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Where each projection has applied up to; advanced in the same transaction
-- as the read-model writes.
CREATE TABLE projection_checkpoints
(
    projection    text PRIMARY KEY,
    last_xid      bigint      NOT NULL DEFAULT 0,
    last_position bigint      NOT NULL DEFAULT 0,
    applied       bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Events a projection could not apply after its retries: kept, never dropped.
CREATE TABLE parked_events
(
    projection     text        NOT NULL,
    position       bigint      NOT NULL,
    xid            bigint      NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL,
    event_type     text        NOT NULL,
    error          text        NOT NULL,
    attempts       int         NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, position)
);
