//! An event as it leaves the event store: the postgres-es columns plus the
//! global position, the writing transaction and the time it was recorded.
//! This is also the JSON body of every message on the JetStream stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A point in commit order: (writing transaction id, global position).
/// Events are relayed and projected in ascending order of this pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamPosition {
    pub xid: i64,
    pub position: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub position: i64,
    pub xid: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    pub fn stream_position(&self) -> StreamPosition {
        StreamPosition {
            xid: self.xid,
            position: self.position,
        }
    }

    /// The payload as today's event type: older versions are upcast first
    /// (see `lokiz_domain::upcast`). Every reader decodes through here.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        let e = lokiz_domain::upcast::EventRef {
            aggregate_type: &self.aggregate_type,
            event_type: &self.event_type,
            event_version: &self.event_version,
        };
        if lokiz_domain::upcast::needs_upcast(e) {
            let (_, payload) = lokiz_domain::upcast::upcast(e, self.payload.clone());
            serde_json::from_value(payload)
        } else {
            T::deserialize(&self.payload)
        }
    }

    /// JetStream de-duplication id: `<type>:<id>:<sequence>`.
    pub fn message_id(&self) -> String {
        format!(
            "{}:{}:{}",
            self.aggregate_type, self.aggregate_id, self.sequence
        )
    }

    /// `<prefix>.<AggregateType>.<EventType>`; characters NATS reserves in
    /// tokens are replaced so any name makes a valid subject.
    ///
    /// Not the aggregate's id: NATS 2.9 keeps state per subject in every
    /// message block, and a consumer filtered by type (`<prefix>.Video.>`)
    /// matches its filter against every subject of a block each time it
    /// looks for its next message. With one subject per aggregate (a million
    /// videos) the four sagas' consumers, which match almost nothing during
    /// a catch-up, cost the server 23 CPU-seconds to pass 3.3M events, and
    /// the server held 1.8 GB; per event type they are a few dozen per block.
    /// Order per aggregate needs no subject: the stream is in commit order.
    pub fn subject(&self, prefix: &str) -> String {
        let token = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    '.' | '*' | '>' | ' ' | '\t' | '\r' | '\n' => '_',
                    c => c,
                })
                .collect()
        };
        format!(
            "{prefix}.{}.{}",
            token(&self.aggregate_type),
            token(&self.event_type)
        )
    }
}

/// Columns selected wherever events are read in commit order.
pub const STORED_EVENT_COLUMNS: &str = "position, xid::text::bigint AS xid, aggregate_type, \
     aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for StoredEvent {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(Self {
            position: row.try_get("position")?,
            xid: row.try_get("xid")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_transaction_first() {
        let a = StreamPosition {
            xid: 10,
            position: 99,
        };
        let b = StreamPosition {
            xid: 11,
            position: 5,
        };
        assert!(a < b);
    }

    #[test]
    fn subjects_are_valid_tokens() {
        let e = StoredEvent {
            position: 1,
            xid: 1,
            aggregate_type: "Like".into(),
            aggregate_id: "a.b c>*".into(),
            sequence: 3,
            event_type: "Video.Liked >".into(),
            event_version: "1.0".into(),
            payload: serde_json::json!({}),
            metadata: serde_json::json!({}),
            recorded_at: Utc::now(),
        };
        assert_eq!(e.subject("LOKIZ.events"), "LOKIZ.events.Like.Video_Liked__");
        assert_eq!(e.message_id(), "Like:a.b c>*:3");
    }
}
