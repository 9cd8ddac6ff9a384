//! LOKIZ infrastructure: everything that talks to the outside world on behalf
//! of the domain — configuration, Postgres, the event store, NATS JetStream and
//! the relay between them.

pub mod ai;
pub mod blob;
pub mod block_saga;
pub mod config;
pub mod db;
pub mod event_store;
pub mod janitor;
pub mod nats;
pub mod payments;
pub mod process_manager;
pub mod rate_limit;
pub mod relay;
pub mod render_cache;
pub mod repository;
pub mod stored_event;
pub mod subscription_saga;
pub mod wake;

pub use config::Config;
pub use stored_event::{StoredEvent, StreamPosition};
