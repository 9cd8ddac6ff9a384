//! Black-box tests: the real HTTP server, real Postgres, real NATS JetStream.
//! One test binary (one link step) for the whole suite.

mod admin;
mod ai;
mod auth;
mod authz;
mod blobs;
mod blocks;
mod bookmarks;
mod bounds;
mod contract;
mod creator;
mod delivery;
mod faults;
mod files;
mod idempotency;
mod limits;
mod moderation;
mod notifications;
mod ops;
mod payments;
mod quotas;
mod rebuild;
mod replicate;
mod reports;
mod s3;
mod search;
mod seed;
mod shares;
mod social;
mod spine;
mod subscriptions;
