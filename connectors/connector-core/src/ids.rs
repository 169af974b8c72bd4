//! Deterministic event ids.
//!
//! Every path that can observe a change (changed-data poll, replay after a crash, FHIR push
//! inflation, bulk export) must give the same change the same id so consumers can deduplicate.
//! The id is a UUIDv5 over the entity type, the practice, the entity id and a version marker:
//! the change time in UTC milliseconds when athena reports one, otherwise a SHA-256 of the
//! record's canonical JSON (object keys sorted), so an unchanged record re-read gets the same id
//! and any changed field gets a new one.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Namespace for athena-connect event ids (a fixed random UUID; never change it, ids depend on it).
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2d9e_8b44_4c1a_9f3e_52a7_d0c4_1b88);

/// What distinguishes one version of an entity from the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// athena's last-modified time, normalised to UTC epoch milliseconds.
    ChangedAt(i64),
    /// Hex SHA-256 of the canonical record, when athena gives no change time.
    ContentHash(String),
}

impl Version {
    /// The content-hash version of a JSON record.
    pub fn of_record(record: &serde_json::Value) -> Version {
        let mut canonical = String::new();
        write_canonical(record, &mut canonical);
        let digest = Sha256::digest(canonical.as_bytes());
        Version::ContentHash(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// The deterministic event id of one version of one entity.
pub fn event_id(
    entity_type: &str,
    practice_id: &str,
    entity_id: &str,
    version: &Version,
) -> String {
    let v = match version {
        Version::ChangedAt(ms) => format!("t{ms}"),
        Version::ContentHash(h) => format!("h{h}"),
    };
    // Unit separators keep ("a","bc") and ("ab","c") apart.
    let name = format!("{entity_type}\u{1f}{practice_id}\u{1f}{entity_id}\u{1f}{v}");
    Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes()).to_string()
}

/// JSON with object keys sorted, independent of serde_json's map ordering features.
fn write_canonical(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deterministic_and_distinct() {
        let a = event_id("patient", "195900", "1", &Version::ChangedAt(5));
        assert_eq!(
            a,
            event_id("patient", "195900", "1", &Version::ChangedAt(5))
        );
        assert_ne!(
            a,
            event_id("patient", "195900", "1", &Version::ChangedAt(6))
        );
        assert_ne!(
            a,
            event_id("appointment", "195900", "1", &Version::ChangedAt(5))
        );
        assert_ne!(
            event_id("p", "1", "23", &Version::ChangedAt(5)),
            event_id("p", "12", "3", &Version::ChangedAt(5))
        );
    }

    #[test]
    fn content_hash_ignores_key_order() {
        let a = Version::of_record(&json!({"a": 1, "b": {"x": [1, 2], "y": "z"}}));
        let b = Version::of_record(&json!({"b": {"y": "z", "x": [1, 2]}, "a": 1}));
        assert_eq!(a, b);
        assert_ne!(a, Version::of_record(&json!({"a": 2})));
    }
}
