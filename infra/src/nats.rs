//! NATS JetStream connection and the one stream every event goes to.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::Config;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot reach NATS at NATS_URL: {0}")]
    Connect(String),
    #[error("JetStream: {0}")]
    JetStream(String),
}

pub async fn connect(config: &Config) -> Result<async_nats::Client, NatsError> {
    async_nats::ConnectOptions::new()
        .name("lokiz")
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .connect(&config.nats_url)
        .await
        .map_err(|e| NatsError::Connect(e.to_string()))
}

/// How long JetStream remembers a `Nats-Msg-Id` to drop duplicates.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Creates (or reuses) the events stream `<stream>` over `<stream>.events.>`.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &Config,
) -> Result<stream::Stream, NatsError> {
    js.get_or_create_stream(stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix())],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await
    .map_err(|e| NatsError::JetStream(e.to_string()))
}
