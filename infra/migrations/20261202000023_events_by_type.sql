-- Read-your-writes (projections/src/consistency.rs) asks, per projection,
-- whether any event of its types lies between its checkpoint and the
-- position a client must see. By commit order alone that is a walk over
-- every event of other types in between (a projection of a quiet type
-- stands far behind the head: 100 ms per request at 3M events); per type it
-- is one index probe.
CREATE INDEX IF NOT EXISTS events_type_commit_order ON events (aggregate_type, xid, position);
