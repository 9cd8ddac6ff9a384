-- Wallet snapshots written before this version hold every event applied twice
-- (a cqrs-es 0.5 aggregate-store quirk, see infra/src/event_store.rs): the
-- balance in them is wrong. Snapshots are a cache of the events; without one
-- the command bus replays the wallet's events and writes a correct snapshot
-- on its next command.
DELETE FROM snapshots WHERE aggregate_type = 'Wallet';
