//! Event versioning: old event versions are upcast when read, never rewritten.
//!
//! Every reader of stored events goes through [`upcast`] before deserializing
//! a payload: the aggregate store (a cqrs-es `EventUpcaster` in infra), the
//! projections (`projector::decode`) and the audit/history fold (`tools`).
//! The event store keeps each event exactly as it was written, with its
//! original `event_version`.
//!
//! Upcasts so far:
//! - `User/Registered` 1.0 → 2.0: gained `role`; every user registered before
//!   roles existed was a member.

use serde_json::Value;

/// One stored event's identity, as the upcasters need it.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub aggregate_type: &'a str,
    pub event_type: &'a str,
    pub event_version: &'a str,
}

/// Whether [`upcast`] would change this event.
pub fn needs_upcast(e: EventRef<'_>) -> bool {
    matches!(
        (e.aggregate_type, e.event_type, e.event_version),
        ("User", "Registered", "1.0")
    )
}

/// Brings a stored payload (cqrs-es' externally tagged form,
/// `{"Registered": {...}}`) up to the version the code writes today. Returns
/// the new version with the payload; events already current come back as they
/// were.
pub fn upcast(e: EventRef<'_>, mut payload: Value) -> (String, Value) {
    if !needs_upcast(e) {
        return (e.event_version.to_owned(), payload);
    }
    // User/Registered 1.0 → 2.0: add the role it was registered with.
    if let Some(fields) = payload.get_mut("Registered").and_then(Value::as_object_mut) {
        fields
            .entry("role")
            .or_insert_with(|| Value::String(crate::user::Role::Member.as_str().to_owned()));
    }
    (crate::user::REGISTERED_VERSION.to_owned(), payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::{Role, UserEvent};
    use serde_json::json;

    fn v1_registered() -> Value {
        json!({"Registered": {
            "user_id": "00000000-0000-0000-0000-000000000001",
            "username": "trickster",
            "email": "t@lokiz.dev",
            "display_name": "Trickster",
            "registered_at": "2026-01-01T00:00:00Z"
        }})
    }

    const V1: EventRef<'static> = EventRef {
        aggregate_type: "User",
        event_type: "Registered",
        event_version: "1.0",
    };

    #[test]
    fn a_v1_registered_does_not_decode_without_the_upcast() {
        assert!(serde_json::from_value::<UserEvent>(v1_registered()).is_err());
    }

    #[test]
    fn a_v1_registered_is_read_as_v2_with_role_member() {
        let (version, payload) = upcast(V1, v1_registered());
        assert_eq!(version, "2.0");
        match serde_json::from_value::<UserEvent>(payload).unwrap() {
            UserEvent::Registered { role, username, .. } => {
                assert_eq!(role, Role::Member);
                assert_eq!(username.as_str(), "trickster");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn current_events_pass_through_unchanged() {
        let v2 = EventRef {
            event_version: "2.0",
            ..V1
        };
        let mut payload = v1_registered();
        payload["Registered"]["role"] = json!("admin");
        assert!(!needs_upcast(v2));
        let (version, out) = upcast(v2, payload.clone());
        assert_eq!((version.as_str(), out), ("2.0", payload));
    }
}
