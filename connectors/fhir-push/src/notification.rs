//! The one internal notification type every adapter normalises to, and the parsers for the two
//! shapes of a topic-based notification `Bundle` (FHIR Subscriptions R5 Backport IG):
//! R4B `SubscriptionStatus` (what athena sends) and R4 `Parameters` (the plain R4 backport).
//!
//! Payloads are id-only: a notification names *which* resource changed (its `focus`), never its
//! content, so nothing here is PHI beyond ids. Parsing is lenient about what it does not need
//! (athena's AuditEvent entries, `additionalContext`) and strict about the bundle shape.

use athena_client::model::{FhirRef, FhirRefError};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::Error;

/// What a notification is for (`SubscriptionStatus.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    /// Sent when a subscription is activated.
    Handshake,
    /// Sent when nothing happened for `heartbeatPeriod`.
    Heartbeat,
    /// One or more changes.
    EventNotification,
    /// Answer to a `$status` query.
    QueryStatus,
    /// Answer to a `$events` query.
    QueryEvent,
}

impl NotificationKind {
    fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "handshake" => NotificationKind::Handshake,
            "heartbeat" => NotificationKind::Heartbeat,
            "event-notification" => NotificationKind::EventNotification,
            "query-status" => NotificationKind::QueryStatus,
            "query-event" => NotificationKind::QueryEvent,
            _ => return None,
        })
    }
}

/// The resource a notification event is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Focus {
    /// FHIR reference, e.g. `Patient/a-432.E-528595`.
    pub reference: Option<String>,
    /// Identifier system, e.g. `urn:athenahealth:athenanet:patient:432`.
    pub identifier_system: Option<String>,
    /// Identifier value (athenaOne's proprietary id).
    pub identifier_value: Option<String>,
}

impl Focus {
    /// The parsed reference: `Ok(None)` for an identifier-only focus, an error for a reference
    /// that is not a readable literal one (garbage, contained, `urn:uuid:`). Accepts `Type/id`,
    /// `Type/id/_history/v` and absolute URLs ending in either.
    pub fn fhir_ref(&self) -> Result<Option<FhirRef>, FhirRefError> {
        self.reference.as_deref().map(FhirRef::parse).transpose()
    }

    /// `(entity, practice id, value)` of an athena identifier
    /// (`urn:athenahealth:athenanet:{entity}:{practiceid}`).
    pub fn athena_identifier(&self) -> Option<(&str, &str, &str)> {
        let sys = self
            .identifier_system
            .as_deref()?
            .strip_prefix("urn:athenahealth:athenanet:")?;
        let (entity, practice) = sys.split_once(':')?;
        Some((entity, practice, self.identifier_value.as_deref()?))
    }
}

/// One change inside a notification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotificationEvent {
    /// `notificationEvent.id`: athena's unique event id (absent in the plain IG).
    pub id: Option<String>,
    /// `eventNumber` (per bundle at athena, per subscription in the IG).
    pub event_number: Option<String>,
    /// When the change was committed.
    pub timestamp: Option<DateTime<Utc>>,
    /// The changed resource.
    pub focus: Focus,
    /// FHIR reference of the record's patient (`Patient/a-432.E-528595`) from the v0.11
    /// AuditEvent `extension-AuditEvent.patient` or the v0.8 `additionalContext`, when given:
    /// the "fetch with" reads of lab results, orders, ... need the patient id.
    pub patient: Option<String>,
}

/// A parsed notification bundle, whatever adapter received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Handshake, heartbeat, event notification, ...
    pub kind: NotificationKind,
    /// `Subscription/<id>` reference.
    pub subscription: Option<String>,
    /// Topic canonical URL or code.
    pub topic: Option<String>,
    /// The events (empty for handshakes and heartbeats).
    pub events: Vec<NotificationEvent>,
    /// The subscription's event counter (`eventsSinceSubscriptionStart`, R4 parameter
    /// `events-since-subscription-start`) when the sender gives one. A heartbeat proves liveness
    /// only when this moved (see [`crate::gap`]).
    pub events_since_start: Option<u64>,
}

impl Notification {
    /// The short topic code (`Patient.update`) of a canonical topic URL.
    pub fn topic_code(&self) -> Option<&str> {
        self.topic.as_deref().and_then(|t| t.rsplit('/').next())
    }

    /// The key deduplication uses for event `i`: athena's unique `notificationEvent.id`, else the
    /// IG's `(subscription, eventNumber)` pair, which is unique per subscription.
    pub fn dedup_key(&self, i: usize) -> Option<String> {
        let e = self.events.get(i)?;
        if let Some(id) = &e.id {
            return Some(id.clone());
        }
        Some(format!(
            "{}#{}",
            self.subscription.as_deref()?,
            e.event_number.as_deref()?
        ))
    }
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn instant(v: Option<&Value>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v?.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn string_or_number(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer64 counter, as FHIR JSON carries it (a string) or as a number.
fn counter(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Parses a notification `Bundle` (`type: history`) whose first entry is a `SubscriptionStatus`
/// (R4B, athena) or a `Parameters` (R4 backport).
pub fn parse_bundle(body: &[u8]) -> Result<Notification, Error> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadNotification(format!("not JSON (line {})", e.line())))?;
    if v.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(Error::BadNotification("not a Bundle".into()));
    }
    let status = v
        .get("entry")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
        .and_then(|e| e.get("resource"))
        .ok_or_else(|| Error::BadNotification("Bundle has no status entry".into()))?;
    match status.get("resourceType").and_then(Value::as_str) {
        Some("SubscriptionStatus") => {
            let mut n = parse_status(status)?;
            let entries = v.get("entry").and_then(Value::as_array);
            for e in &mut n.events {
                if e.patient.is_none() {
                    e.patient = audit_patient(entries, e.id.as_deref());
                }
            }
            Ok(n)
        }
        Some("Parameters") => parse_parameters(status),
        _ => Err(Error::BadNotification(
            "first entry is neither SubscriptionStatus nor Parameters".into(),
        )),
    }
}

/// The patient reference of the v0.11 AuditEvent entry of event `id`
/// (`extension-AuditEvent.patient`).
fn audit_patient(entries: Option<&Vec<Value>>, id: Option<&str>) -> Option<String> {
    let id = id?;
    entries?
        .iter()
        .filter_map(|e| e.get("resource"))
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("AuditEvent"))
        .find(|r| r.get("id").and_then(Value::as_str) == Some(id))?
        .get("extension")?
        .as_array()?
        .iter()
        .find(|x| {
            x.get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.ends_with("AuditEvent.patient"))
        })
        .and_then(|x| x.get("valueReference"))
        .and_then(|r| s(r, "reference"))
}

fn parse_status(st: &Value) -> Result<Notification, Error> {
    let kind = st
        .get("type")
        .and_then(Value::as_str)
        .and_then(NotificationKind::parse)
        .ok_or_else(|| Error::BadNotification("unknown SubscriptionStatus.type".into()))?;
    let events = st
        .get("notificationEvent")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| {
                    let f = e.get("focus");
                    let ident = f.and_then(|f| f.get("identifier"));
                    NotificationEvent {
                        id: s(e, "id"),
                        event_number: string_or_number(e.get("eventNumber")),
                        timestamp: instant(e.get("timestamp")),
                        focus: Focus {
                            reference: f.and_then(|f| s(f, "reference")),
                            identifier_system: ident.and_then(|i| s(i, "system")),
                            identifier_value: ident.and_then(|i| string_or_number(i.get("value"))),
                        },
                        patient: e
                            .get("additionalContext")
                            .and_then(Value::as_array)
                            .and_then(|a| {
                                a.iter()
                                    .filter_map(|c| s(c, "reference"))
                                    .find(|r| r.starts_with("Patient/"))
                            }),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Notification {
        kind,
        subscription: st
            .get("subscription")
            .and_then(|r| s(r, "reference"))
            .or_else(|| s(st, "subscription")),
        topic: s(st, "topic"),
        events,
        events_since_start: counter(st.get("eventsSinceSubscriptionStart")),
    })
}

fn param_value(p: &Value) -> Option<&Value> {
    p.as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("value"))
        .map(|(_, v)| v)
}

fn parse_parameters(ps: &Value) -> Result<Notification, Error> {
    let params = ps
        .get("parameter")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::BadNotification("Parameters without parameter".into()))?;
    let named = |n: &str| {
        params
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(n))
    };
    let kind = named("type")
        .and_then(param_value)
        .and_then(Value::as_str)
        .and_then(NotificationKind::parse)
        .ok_or_else(|| Error::BadNotification("unknown notification type".into()))?;
    let subscription = named("subscription")
        .and_then(param_value)
        .and_then(|v| s(v, "reference").or_else(|| v.as_str().map(str::to_owned)));
    let topic = named("topic")
        .and_then(param_value)
        .and_then(Value::as_str)
        .map(str::to_owned);
    let events = params
        .iter()
        .filter(|p| p.get("name").and_then(Value::as_str) == Some("notification-event"))
        .map(|p| {
            let parts = p.get("part").and_then(Value::as_array);
            let part = |n: &str| {
                parts.and_then(|a| {
                    a.iter()
                        .find(|x| x.get("name").and_then(Value::as_str) == Some(n))
                        .and_then(param_value)
                })
            };
            let focus = part("focus");
            NotificationEvent {
                id: None,
                event_number: string_or_number(part("event-number")),
                timestamp: instant(part("timestamp")),
                focus: Focus {
                    reference: focus.and_then(|f| s(f, "reference")),
                    identifier_system: focus
                        .and_then(|f| f.get("identifier"))
                        .and_then(|i| s(i, "system")),
                    identifier_value: focus
                        .and_then(|f| f.get("identifier"))
                        .and_then(|i| string_or_number(i.get("value"))),
                },
                patient: None,
            }
        })
        .collect();
    Ok(Notification {
        kind,
        subscription,
        topic,
        events,
        events_since_start: counter(named("events-since-subscription-start").and_then(param_value)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shape of athena's v0.11 example (synthetic ids).
    pub(crate) fn athena_bundle() -> Value {
        json!({
          "resourceType": "Bundle", "type": "history", "timestamp": "2024-11-19T10:00:00Z",
          "meta": {"profile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification"]},
          "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {
              "resourceType": "SubscriptionStatus", "status": "active", "type": "event-notification",
              "subscription": {"reference": "Subscription/6b1f1c2a-0000-4000-8000-000000000001"},
              "topic": "https://api.platform.athenahealth.com/fhir/r4/SubscriptionTopic/Patient.update",
              "eventsInNotification": 1,
              "notificationEvent": [{
                "id": "0f7e2c4e-1111-4222-8333-444455556666", "eventNumber": "1",
                "timestamp": "2024-11-19T09:59:58Z",
                "focus": {"reference": "Patient/a-432.E-528595",
                          "identifier": {"system": "urn:athenahealth:athenanet:patient:432", "value": "528595"}}
              }]}},
            {"resource": {"resourceType": "AuditEvent", "id": "0f7e2c4e-1111-4222-8333-444455556666",
              "type": {"code": "Patient.update"}}}
          ]
        })
    }

    #[test]
    fn parses_athena_subscription_status() {
        let n = parse_bundle(athena_bundle().to_string().as_bytes()).unwrap();
        assert_eq!(n.kind, NotificationKind::EventNotification);
        assert_eq!(n.topic_code(), Some("Patient.update"));
        assert_eq!(n.events.len(), 1);
        let e = &n.events[0];
        let r = e.focus.fhir_ref().unwrap().unwrap();
        assert_eq!(
            (r.resource_type.as_str(), r.id.as_str()),
            ("Patient", "a-432.E-528595")
        );
        assert_eq!(
            e.focus.athena_identifier(),
            Some(("patient", "432", "528595"))
        );
        assert_eq!(
            n.dedup_key(0).as_deref(),
            Some("0f7e2c4e-1111-4222-8333-444455556666")
        );
    }

    #[test]
    fn parses_r4_parameters_and_heartbeat() {
        let b = json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
            "resourceType": "Parameters", "parameter": [
              {"name": "subscription", "valueReference": {"reference": "Subscription/s1"}},
              {"name": "topic", "valueCanonical": "http://example.org/SubscriptionTopic/encounter-start"},
              {"name": "type", "valueCode": "event-notification"},
              {"name": "notification-event", "part": [
                 {"name": "event-number", "valueString": "7"},
                 {"name": "timestamp", "valueInstant": "2024-01-01T00:00:00Z"},
                 {"name": "focus", "valueReference": {"reference": "http://x/fhir/Encounter/e1"}}]}]}}]});
        let n = parse_bundle(b.to_string().as_bytes()).unwrap();
        let r = n.events[0].focus.fhir_ref().unwrap().unwrap();
        assert_eq!(
            (r.resource_type.as_str(), r.id.as_str()),
            ("Encounter", "e1")
        );
        assert_eq!(n.dedup_key(0).as_deref(), Some("Subscription/s1#7"));
        let hb = json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
            "resourceType": "SubscriptionStatus", "type": "heartbeat",
            "subscription": {"reference": "Subscription/s1"}}}]});
        let n = parse_bundle(hb.to_string().as_bytes()).unwrap();
        assert_eq!(n.kind, NotificationKind::Heartbeat);
        assert!(n.events.is_empty());
    }

    #[test]
    fn focus_forms() {
        let f = |r: Option<&str>, ident: bool| Focus {
            reference: r.map(str::to_owned),
            identifier_system: ident
                .then(|| "urn:athenahealth:athenanet:appointment:195900".into()),
            identifier_value: ident.then(|| "77".into()),
        };
        // The notification that stopped the connector: a versioned reference.
        let r = f(Some("Encounter/a-195900.encounter-1/_history/2"), false)
            .fhir_ref()
            .unwrap()
            .unwrap();
        assert_eq!(r.resource_type, "Encounter");
        assert_eq!(r.id, "a-195900.encounter-1");
        assert_eq!(r.version.as_deref(), Some("2"));
        let r = f(Some("https://h/fhir/r4/Encounter/e1/_history/3"), false)
            .fhir_ref()
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.resource_type.as_str(), r.id.as_str()),
            ("Encounter", "e1")
        );
        // Identifier only: no reference, the athena identifier names the record.
        let id_only = f(None, true);
        assert_eq!(id_only.fhir_ref(), Ok(None));
        assert_eq!(
            id_only.athena_identifier(),
            Some(("appointment", "195900", "77"))
        );
        assert_eq!(
            f(Some("urn:uuid:0f7e2c4e-1111-4222-8333-444455556666"), false).fhir_ref(),
            Err(FhirRefError::Urn)
        );
        assert!(f(Some("_history/2"), false).fhir_ref().is_err());
    }

    #[test]
    fn event_counter_is_read_from_both_shapes() {
        let hb = json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
            "resourceType": "SubscriptionStatus", "type": "heartbeat",
            "eventsSinceSubscriptionStart": "41",
            "subscription": {"reference": "Subscription/s1"}}}]});
        let n = parse_bundle(hb.to_string().as_bytes()).unwrap();
        assert_eq!(n.events_since_start, Some(41));
        let p = json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
            "resourceType": "Parameters", "parameter": [
              {"name": "type", "valueCode": "heartbeat"},
              {"name": "events-since-subscription-start", "valueString": "9"}]}}]});
        assert_eq!(
            parse_bundle(p.to_string().as_bytes())
                .unwrap()
                .events_since_start,
            Some(9)
        );
    }

    #[test]
    fn rejects_non_notifications() {
        for b in [
            &b"nope"[..],
            br#"{"resourceType":"Patient"}"#,
            br#"{"resourceType":"Bundle","entry":[]}"#,
            br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"SubscriptionStatus","type":"x"}}]}"#,
        ] {
            assert!(parse_bundle(b).is_err());
        }
    }
}
