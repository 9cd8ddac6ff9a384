-- The JetStream stream sequence of the last message a projection applied,
-- written in the same transaction as its checkpoint: a (re)started runner
-- consumes from the message after it. NULL when unknown (after a rebuild's
-- swap, or for checkpoints written before this version): the runner then
-- finds the first message after the checkpoint by binary search over the
-- stream, which the relay keeps in (xid, position) order.
ALTER TABLE projection_checkpoints ADD COLUMN stream_seq bigint;

-- The read-model entities a parked event touches (e.g. `Video:<id>` for a
-- like in `videos`). A later event touching any of them is parked behind it,
-- in order, rather than applied to a state that lacks the parked one.
ALTER TABLE parked_events ADD COLUMN entity_keys text[] NOT NULL DEFAULT '{}';
UPDATE parked_events SET entity_keys = ARRAY[aggregate_type || ':' || aggregate_id]
 WHERE aggregate_type <> '';
CREATE INDEX parked_events_entity_keys ON parked_events USING gin (entity_keys);
