use async_trait::async_trait;
use lokiz_infra::StoredEvent;
use sqlx::PgConnection;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event's payload is not what this projector understands.
    #[error("cannot decode {event_type} payload: {source}")]
    Decode {
        event_type: String,
        source: serde_json::Error,
    },
    /// The aggregate id is not of the expected form.
    #[error("malformed aggregate id {0:?}")]
    AggregateId(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl ProjectionError {
    /// Errors that retrying later can cure (the database went away), as
    /// opposed to errors in the event itself or in the projector.
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::Db(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Tls(_)
                ) || e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| is_transient_sqlstate(c.as_ref()))
            }
            _ => false,
        }
    }
}

/// SQLSTATEs that say "try again later", not "this event is wrong":
/// connection exceptions (08xxx), insufficient resources (53xxx: disk full,
/// out of memory, too many connections), serialization failure and deadlock
/// (40001, 40P01), shutdowns and "cannot connect now" (57P01–57P03), a
/// cancelled statement (57014: statement timeout, `pg_cancel_backend`), a
/// lock not available (55P03: lock timeout) and system I/O errors (58xxx).
pub fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("58")
        || matches!(
            code,
            "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "57014" | "55P03"
        )
}

/// Entity keys `<type>:<uuid>` from the fields of an event's payload named in
/// `fields` (payloads are `{"<EventType>": {..fields..}}`), plus the event's
/// own aggregate.
pub fn keys_from_fields(event: &StoredEvent, fields: &[(&str, &str)]) -> Vec<String> {
    let mut keys = vec![format!("{}:{}", event.aggregate_type, event.aggregate_id)];
    let payload = event.payload_value().unwrap_or_default();
    let body = payload
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|v| v.as_object());
    if let Some(body) = body {
        for (field, kind) in fields {
            if let Some(id) = body.get(*field).and_then(|v| v.as_str()) {
                let key = format!("{kind}:{id}");
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

/// Decodes an event payload into the aggregate's event enum (upcasting older
/// versions).
pub fn decode<T: serde::de::DeserializeOwned>(event: &StoredEvent) -> Result<T, ProjectionError> {
    event.decode().map_err(|source| ProjectionError::Decode {
        event_type: event.event_type.clone(),
        source,
    })
}

pub fn uuid_id(event: &StoredEvent) -> Result<uuid::Uuid, ProjectionError> {
    uuid::Uuid::parse_str(&event.aggregate_id)
        .map_err(|_| ProjectionError::AggregateId(event.aggregate_id.clone()))
}

/// A read model: event in, SQL out. Implementations touch only their own
/// tables, through the connection they are given (a transaction the runtime
/// commits together with the checkpoint).
#[async_trait]
pub trait Projector: Send + Sync + 'static {
    /// Stable name: the durable consumer, the checkpoint row, the CLI name.
    fn name(&self) -> &'static str;
    /// Aggregate types whose events this projector reads.
    fn aggregate_types(&self) -> &'static [&'static str];
    /// Read-model tables this projector owns.
    fn tables(&self) -> &'static [&'static str];
    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError>;

    /// The read-model entities `event` changes, as `<Type>:<id>` keys. Once an
    /// event is parked, every later event sharing a key with it is parked
    /// behind it, in order, instead of being applied to a state that lacks
    /// it; `reset-parked` applies them again in that order. The default is
    /// the event's own aggregate; a projector whose rows gather events of
    /// other aggregates (a video's like counter) names those rows too.
    fn entity_keys(&self, event: &StoredEvent) -> Vec<String> {
        vec![format!("{}:{}", event.aggregate_type, event.aggregate_id)]
    }

    /// Wake-up subjects (under `<stream>.wake.`) for what the events applied
    /// since the last call changed, taken once they are committed: the
    /// runtime publishes each (core NATS, no payload) right after the
    /// commit, so live readers (the notification sockets) look again. A
    /// lost wake-up delays a reader until its own next look; the rows are
    /// the truth. The default wakes nobody.
    fn take_wakeups(&self) -> Vec<String> {
        Vec::new()
    }

    /// Applies `events` (in commit order, all of types this projector reads)
    /// with the same outcome as [`Projector::apply`] on each in turn. The
    /// default does exactly that; a projector on a hot path overrides it with
    /// set-based statements (one statement per kind of change instead of one
    /// per event), which is what makes catch-up and rebuilds fast. The
    /// runtime falls back to `apply`, one event at a time, when a batch fails.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            self.apply(conn, event).await?;
        }
        Ok(())
    }
}
