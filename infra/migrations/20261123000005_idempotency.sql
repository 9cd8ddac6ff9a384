-- Idempotency-Key (ARCHITECTURE.md, "Idempotent commands"): the first
-- response to a command POST, kept for 24 hours so a retry with the same key
-- gets it back instead of running the command again. Write-side bookkeeping of
-- the API, not a read model; rows are written and read only by
-- api/src/idempotency.rs.
CREATE TABLE idempotency_keys
(
    scope            text        NOT NULL, -- the caller's user id, or 'anonymous'
    key              text        NOT NULL, -- the header, 1–255 visible ASCII chars
    method           text        NOT NULL,
    path             text        NOT NULL, -- path and query, as sent
    request_hash     bytea       NOT NULL, -- SHA-256 of the request body
    state            text        NOT NULL DEFAULT 'in_flight'
        CHECK (state IN ('in_flight', 'done')),
    response_status  smallint,             -- set when done
    response_headers jsonb,                -- [[name, value], ...]: content-type, x-lokiz-position, location
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key),
    CHECK (state = 'in_flight' OR response_status IS NOT NULL)
);

-- The sweep: DELETE ... WHERE created_at < now() - interval '24 hours'.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
