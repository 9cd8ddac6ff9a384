//! An event as it leaves the event store: the postgres-es columns plus the
//! global position, the writing transaction and the time it was recorded.
//! This is also the JSON body of every message on the JetStream stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A point in commit order: (writing transaction id, global position).
/// Events are relayed and projected in ascending order of this pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamPosition {
    pub xid: i64,
    pub position: i64,
}

/// `payload` and `metadata` are kept as the JSON text they were stored as
/// (`RawValue`): the relay copies them into the message without parsing, and
/// a reader parses the payload once, straight into its event type. As
/// `serde_json::Value` trees they were built, walked and dropped for every
/// message, about a third of the projection process's CPU in a catch-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub position: i64,
    pub xid: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Box<RawValue>,
    pub metadata: Box<RawValue>,
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
            let (_, payload) = lokiz_domain::upcast::upcast(e, self.payload_value()?);
            serde_json::from_value(payload)
        } else {
            serde_json::from_str(self.payload.get())
        }
    }

    /// The payload as stored, parsed into a `Value` (for tools and
    /// the audit view; projectors decode with [`StoredEvent::decode`]).
    pub fn payload_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.payload.get())
    }

    /// The metadata as stored, parsed into a `Value`.
    pub fn metadata_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.metadata.get())
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
            payload: row
                .try_get::<sqlx::types::Json<Box<RawValue>>, _>("payload")?
                .0,
            metadata: row
                .try_get::<sqlx::types::Json<Box<RawValue>>, _>("metadata")?
                .0,
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
            payload: RawValue::from_string("{}".into()).unwrap(),
            metadata: RawValue::from_string("{}".into()).unwrap(),
            recorded_at: Utc::now(),
        };
        assert_eq!(e.subject("LOKIZ.events"), "LOKIZ.events.Like.Video_Liked__");
        assert_eq!(e.message_id(), "Like:a.b c>*:3");
    }

    fn registered(version: &str, payload: &str) -> StoredEvent {
        StoredEvent {
            position: 7,
            xid: 3,
            aggregate_type: "User".into(),
            aggregate_id: "00000000-0000-0000-0000-000000000001".into(),
            sequence: 1,
            event_type: "Registered".into(),
            event_version: version.into(),
            payload: RawValue::from_string(payload.into()).unwrap(),
            metadata: RawValue::from_string(r#"{"actor":null,"ip":"x"}"#.into()).unwrap(),
            recorded_at: Utc::now(),
        }
    }

    const V1_PAYLOAD: &str = r#"{"Registered":{"user_id":"00000000-0000-0000-0000-000000000001","username":"trickster","email":"t@lokiz.dev","display_name":"Trickster","registered_at":"2026-01-01T00:00:00Z"}}"#;

    #[test]
    fn a_message_carries_payload_and_metadata_byte_for_byte() {
        let e = registered("1.0", V1_PAYLOAD);
        let body = serde_json::to_vec(&e).unwrap();
        let back: StoredEvent = serde_json::from_slice(&body).unwrap();
        assert_eq!(back.payload.get(), V1_PAYLOAD);
        assert_eq!(back.metadata.get(), r#"{"actor":null,"ip":"x"}"#);
        assert_eq!(
            (back.stream_position(), back.message_id(), back.recorded_at),
            (e.stream_position(), e.message_id(), e.recorded_at)
        );
    }

    #[test]
    fn decode_reads_current_payloads_directly_and_upcasts_old_ones() {
        use lokiz_domain::user::{Role, UserEvent};
        // 1.0 has no role: decoded through the upcast, as a member
        match registered("1.0", V1_PAYLOAD).decode::<UserEvent>().unwrap() {
            UserEvent::Registered { role, username, .. } => {
                assert_eq!(role, Role::Member);
                assert_eq!(username.as_str(), "trickster");
            }
            other => panic!("unexpected {other:?}"),
        }
        // 2.0 is read as written; the same text without a role does not decode
        let v2 = V1_PAYLOAD.replace(r#""registered_at""#, r#""role":"admin","registered_at""#);
        match registered("2.0", &v2).decode::<UserEvent>().unwrap() {
            UserEvent::Registered { role, .. } => assert_eq!(role, Role::Admin),
            other => panic!("unexpected {other:?}"),
        }
        assert!(registered("2.0", V1_PAYLOAD).decode::<UserEvent>().is_err());
    }
}
