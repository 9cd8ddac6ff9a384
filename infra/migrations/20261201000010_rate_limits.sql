-- Rate-limit counters shared by every API process (infra/src/rate_limit.rs).
-- One row per key and fixed window; `used` counts the requests handed out
-- to processes (in leases). UNLOGGED: a crash may forget the current
-- windows, which only lets a caller start a window afresh; it is never
-- a correctness issue for the event store. Rows of past windows are swept.
CREATE UNLOGGED TABLE IF NOT EXISTS rate_limits (
    key          text   NOT NULL,
    window_start bigint NOT NULL,
    used         bigint NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX IF NOT EXISTS rate_limits_window ON rate_limits (window_start);
