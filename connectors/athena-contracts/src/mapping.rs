//! The step every path shares between an athena record (or FHIR resource) and its event: the
//! version marker, the deterministic event id, the envelope and `original`; the typed payload
//! comes from the entity's own file ([`crate::events`]).
//!
//! Event ids (decision records 0001, 0005, 0009, 0010): a proprietary record's version is its
//! content hash ([`Version::of_record`], computed here by [`canonical`] with the same bytes that
//! serve as `original`), so the changed-data source (feed rows, replays), push inflation
//! (`GET /patients|appointments/{id}`), the push gap catch-up (non-destructive feed reads) and the
//! bulk backfill with `patient_source = "athena"` give one record state one id, and, since they
//! all call the same mapper, one payload. A replayed row is byte-identical to the row first
//! delivered, so it gets the same id, while two changes of one entity within the same second
//! (athena's `lastmodified` has second resolution) still get different ids. FHIR resources use
//! `meta.lastUpdated` truncated to whole seconds when present, else their content hash: a FHIR
//! resource is a different representation, so its id matches other FHIR-based paths (push and
//! export agree on encounters) but not the changed-data id of the same entity.
//!
//! What legitimately differs per path is set from the caller's context only: `source`,
//! `event_name` (the push topic code), `observed_at`, `snapshot` and `replayed`.

use chrono::{DateTime, Utc};
use connector_core::ids::{Version, event_id};
use serde_json::Value;

use crate::events::fhir::{Fhir, FhirEvent, FhirMapError};
use crate::events::{FeedEvent, Rec};
use crate::time::parse_athena_time;
use crate::{AppointmentChanged, EventEnvelope, PatientChanged, SourceKind, TimestampMillis};

pub use crate::events::fhir_resources::resource_from_fhir;
pub use crate::events::patients::patient_from_fhir;

/// Keys athena uses for a record's last-modified time, in order of preference.
const LAST_MODIFIED_KEYS: &[&str] = &["lastmodified", "lastmodifieddatetime", "lastupdated"];

/// Keys naming the department an event belongs to (envelope), in order of preference.
const DEPARTMENT_KEYS: &[&str] = &["departmentid", "homedepartment"];

/// How the changed-data source read a page (the records come from a feed poll or replay).
#[derive(Debug, Clone)]
pub struct MapContext<'a> {
    /// athena practice id.
    pub practice_id: &'a str,
    /// When the connector read the page.
    pub observed_at: TimestampMillis,
    /// Whether the page came from a replay window.
    pub replayed: bool,
    /// Whether to keep the original record (`false` under PHI minimisation).
    pub keep_original: bool,
}

/// How one event was observed by push inflation, the push catch-up or the bulk backfill.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Which mechanism.
    pub source: SourceKind,
    /// athena's event/topic name, when known.
    pub event_name: Option<String>,
    /// A bulk-export snapshot.
    pub snapshot: bool,
    /// Keep the original record as JSON text (false = PHI minimisation).
    pub include_original: bool,
}

/// Whether serde_json's maps iterate in key order (its default `BTreeMap`; the
/// `preserve_order` feature, if some crate in the build enables it, keeps insertion order).
fn maps_are_sorted() -> bool {
    static SORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SORTED.get_or_init(|| {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).expect("valid JSON");
        serde_json::to_string(&v).is_ok_and(|s| s == r#"{"a":2,"b":1}"#)
    })
}

/// The record's canonical JSON (keys sorted, compact) and its content version, equal to
/// [`Version::of_record`] but computed with one serialisation that also serves as `original`
/// (the hot path: this was the largest per-record cost).
pub fn canonical(rec: &Value) -> (Vec<u8>, Version) {
    use sha2::{Digest, Sha256};
    if !maps_are_sorted() {
        return (rec.to_string().into_bytes(), Version::of_record(rec));
    }
    let bytes = serde_json::to_vec(rec).expect("a JSON value serialises");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(&bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 15)] as char);
    }
    (bytes, Version::ContentHash(hex))
}

/// The entity id of `rec` for an entity with `id_fields`, and the record's version.
pub fn identify(id_fields: &[&str], rec: &Value) -> (Option<String>, Version) {
    (Rec(rec).s(id_fields), canonical(rec).1)
}

/// The version of a proprietary record (its content hash) and its last-modified time.
pub fn athena_version(raw: &Value) -> (Version, Option<DateTime<Utc>>) {
    (canonical(raw).1, changed_at(&Rec(raw)))
}

/// The version of a FHIR resource: `meta.lastUpdated` truncated to whole seconds, else a hash.
pub fn fhir_version(resource: &Value) -> (Version, Option<DateTime<Utc>>) {
    let t = resource
        .pointer("/meta/lastUpdated")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .and_then(|t| DateTime::from_timestamp(t.timestamp(), 0));
    match t {
        Some(t) => (Version::ChangedAt(t.timestamp_millis()), Some(t)),
        None => (Version::of_record(resource), None),
    }
}

/// The entity id used when a record carries none of its entity's id fields: a prefix of the
/// content hash, so the record still lands (and replays identically) instead of being dropped.
fn stand_in_id(version: &Version) -> String {
    match version {
        Version::ContentHash(h) => format!("unknown-{}", &h[..16.min(h.len())]),
        Version::ChangedAt(ms) => format!("unknown-{ms}"),
    }
}

/// The event id the changed-data source gives `rec` (for dedupe checks without mapping).
pub fn record_event_id<T: FeedEvent>(practice_id: &str, rec: &Value) -> String {
    let (id, version) = identify(T::ID_FIELDS, rec);
    let entity_id = id.unwrap_or_else(|| stand_in_id(&version));
    event_id(T::ENTITY_TYPE, practice_id, &entity_id, &version)
}

fn changed_at(rec: &Rec<'_>) -> Option<DateTime<Utc>> {
    rec.s(LAST_MODIFIED_KEYS)
        .and_then(|s| parse_athena_time(&s))
}

/// Everything about one observation that is not in the record.
struct Seen<'a> {
    practice_id: &'a str,
    source: SourceKind,
    event_name: Option<String>,
    observed_at: TimestampMillis,
    snapshot: bool,
    replayed: bool,
    keep_original: bool,
}

/// The one athena-record mapper: envelope from the record and `seen`, payload from `T::build`.
fn map_athena<T: FeedEvent>(
    seen: Seen<'_>,
    rec: &Value,
    id: Option<String>,
) -> (T, Option<DateTime<Utc>>) {
    let (json, version) = canonical(rec);
    let entity_id = id.unwrap_or_else(|| stand_in_id(&version));
    let r = Rec(rec);
    let changed_at = changed_at(&r);
    let envelope = EventEnvelope {
        event_id: event_id(T::ENTITY_TYPE, seen.practice_id, &entity_id, &version),
        source: seen.source,
        practice_id: seen.practice_id.to_string(),
        department_id: r.s(DEPARTMENT_KEYS),
        entity_type: T::ENTITY_TYPE.to_string(),
        entity_id,
        event_name: seen.event_name,
        changed_at: changed_at.map(TimestampMillis::from),
        observed_at: seen.observed_at,
        snapshot: seen.snapshot,
        replayed: seen.replayed,
    };
    let original = seen
        .keep_original
        .then(|| String::from_utf8(json).expect("serde_json writes UTF-8"));
    (T::build(envelope, &r, original), changed_at)
}

/// The changed-data event of a feed row, and its change time. A row without an id field still
/// becomes an event, under a stable stand-in id (one odd record must not stall a feed).
pub fn changed_data_event<T: FeedEvent>(
    ctx: &MapContext<'_>,
    rec: &Value,
) -> (T, Option<DateTime<Utc>>) {
    let seen = Seen {
        practice_id: ctx.practice_id,
        source: SourceKind::ChangedData,
        event_name: None,
        observed_at: ctx.observed_at,
        snapshot: false,
        replayed: ctx.replayed,
        keep_original: ctx.keep_original,
    };
    map_athena(seen, rec, Rec(rec).s(T::ID_FIELDS))
}

/// The event of a proprietary athena record read by push inflation, the push catch-up or the
/// backfill (`None` when the record has no id: those paths read by id, so that is a bad answer,
/// not a row to keep). `observed_at` is now and `replayed` false; the catch-up sets it.
pub fn from_athena<T: FeedEvent>(practice: &str, rec: &Value, obs: &Observation) -> Option<T> {
    let id = Rec(rec).s(T::ID_FIELDS)?;
    let seen = Seen {
        practice_id: practice,
        source: obs.source,
        event_name: obs.event_name.clone(),
        observed_at: TimestampMillis::now(),
        snapshot: obs.snapshot,
        replayed: false,
        keep_original: obs.include_original,
    };
    Some(map_athena(seen, rec, Some(id)).0)
}

/// A `PatientChanged` from a proprietary `GET /patients/{id}` record or `patients` feed row.
pub fn patient_from_athena(
    practice: &str,
    raw: &Value,
    obs: &Observation,
) -> Option<PatientChanged> {
    from_athena(practice, raw, obs)
}

/// An `AppointmentChanged` from a proprietary `GET /appointments/{id}` record or feed row.
pub fn appointment_from_athena(
    practice: &str,
    raw: &Value,
    obs: &Observation,
) -> Option<AppointmentChanged> {
    from_athena(practice, raw, obs)
}

/// The typed event `T` of a FHIR resource (the one mapper every path calls for that type): the
/// envelope and id exactly as [`resource_from_fhir`] derives them (`entity_type` the lower-case
/// resource type, `entity_id` the FHIR id, version [`fhir_version`]), so the same resource version
/// gives the same event id on every path; `original` behind the same PHI-minimisation switch.
/// A resource of another type, without an id, or missing a field US Core requires is a typed
/// [`FhirMapError`] (permanent), never a panic.
pub fn typed_from_fhir<T: FhirEvent>(
    practice: &str,
    r: &Value,
    obs: &Observation,
) -> Result<T, FhirMapError> {
    let found = r
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or(FhirMapError::NotAResource)?;
    if found != T::RESOURCE_TYPE {
        return Err(FhirMapError::WrongType {
            expected: T::RESOURCE_TYPE,
            found: found.to_owned(),
        });
    }
    let id = r
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(FhirMapError::Missing {
            resource_type: T::RESOURCE_TYPE,
            id: String::new(),
            field: "id",
        })?;
    let (version, at) = fhir_version(r);
    let entity_type = T::RESOURCE_TYPE.to_ascii_lowercase();
    let envelope = fhir_envelope(obs, practice, &entity_type, id, &version, at);
    let f = Fhir {
        r,
        resource_type: T::RESOURCE_TYPE,
        id,
    };
    T::build(envelope, &f, obs.include_original.then(|| r.to_string()))
}

/// One typed FHIR event, encoded and ready to produce.
#[derive(Debug)]
pub struct EncodedFhirEvent {
    /// Kafka key `{practice}/{patient}` ([`FhirEvent::key`]).
    pub key: String,
    /// Confluent-framed Avro value.
    pub value: Vec<u8>,
    /// The event headers ([`crate::envelope::event_headers`]).
    pub headers: rdkafka::message::OwnedHeaders,
    /// The event id.
    pub event_id: String,
}

/// Why a resource did not become an encoded typed event.
#[derive(Debug, thiserror::Error)]
pub enum TypedEventError {
    /// The resource does not map (permanent: dead-letter or skip it).
    #[error(transparent)]
    Map(#[from] FhirMapError),
    /// Encoding failed (a schema mismatch; see [`connector_core::CoreError::class`]).
    #[error(transparent)]
    Encode(#[from] connector_core::CoreError),
}

/// The typed event of FHIR resource `r` through [`typed_from_fhir`], encoded with the schema id
/// the caller registered for its topic: the one step every path (push inflation, backfill,
/// enrichment) takes, so one resource version gives byte-identical payloads (bar the path's
/// envelope fields). `None` when `r`'s type has no typed event (use [`resource_from_fhir`]).
pub fn encode_typed_fhir(
    practice: &str,
    r: &Value,
    obs: &Observation,
    schema_id: u32,
) -> Option<Result<EncodedFhirEvent, TypedEventError>> {
    struct Encode<'a> {
        practice: &'a str,
        r: &'a Value,
        obs: &'a Observation,
        schema_id: u32,
    }
    impl crate::events::FhirEventVisitor for Encode<'_> {
        type Output = Result<EncodedFhirEvent, TypedEventError>;
        fn visit<T: FhirEvent>(self) -> Self::Output {
            let ev = typed_from_fhir::<T>(self.practice, self.r, self.obs)?;
            let value = connector_core::avro::Encoder::<T>::with_id(self.schema_id)?.encode(&ev)?;
            Ok(EncodedFhirEvent {
                key: ev.key(),
                value,
                headers: crate::envelope::event_headers(
                    ev.envelope(),
                    T::SCHEMA_NAME,
                    &format!("athena://{}/fhir/{}", self.practice, T::RESOURCE_TYPE),
                ),
                event_id: ev.envelope().event_id.clone(),
            })
        }
    }
    let ty = r.get("resourceType").and_then(Value::as_str)?;
    crate::events::fhir_visit(
        ty,
        Encode {
            practice,
            r,
            obs,
            schema_id,
        },
    )
}

/// The Coverage event of a proprietary insurance record of `patient`
/// ([`crate::events::coverages::coverage_from_insurance`]), encoded with the schema id of the
/// Coverage topic: the same schema and topic as the FHIR Coverage (decision 0028).
pub fn encode_insurance(
    practice: &str,
    patient: &str,
    rec: &Value,
    obs: &Observation,
    schema_id: u32,
) -> Result<EncodedFhirEvent, TypedEventError> {
    use crate::events::coverages::{CoverageChanged, coverage_from_insurance};
    let ev = coverage_from_insurance(practice, patient, rec, obs)?;
    let value =
        connector_core::avro::Encoder::<CoverageChanged>::with_id(schema_id)?.encode(&ev)?;
    Ok(EncodedFhirEvent {
        key: ev.key(),
        value,
        headers: crate::envelope::event_headers(
            ev.envelope(),
            <CoverageChanged as connector_core::avro::AvroRecord>::SCHEMA_NAME,
            &format!("athena://{practice}/insurances"),
        ),
        event_id: ev.envelope().event_id.clone(),
    })
}

type SchemaIdFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<u32, connector_core::CoreError>> + Send + 'a>,
>;

/// The schema id the registry gives the typed event of FHIR `resource_type` on `topic`
/// (registered first when the codec auto-registers), for [`encode_typed_fhir`]; `None` when the
/// type has no typed event.
pub async fn typed_schema_id(
    codec: &connector_core::avro::AvroCodec,
    resource_type: &str,
    topic: &str,
) -> Option<Result<u32, connector_core::CoreError>> {
    struct Resolve<'a> {
        codec: &'a connector_core::avro::AvroCodec,
        topic: &'a str,
    }
    impl<'a> crate::events::FhirEventVisitor for Resolve<'a> {
        type Output = SchemaIdFuture<'a>;
        fn visit<T: FhirEvent>(self) -> Self::Output {
            Box::pin(async move { Ok(self.codec.encoder::<T>(self.topic).await?.schema_id()) })
        }
    }
    Some(crate::events::fhir_visit(resource_type, Resolve { codec, topic })?.await)
}

/// The schema id the registry gives the event of changed-data `feed` on `topic` (registered
/// first when the codec auto-registers).
pub async fn feed_schema_id(
    codec: &connector_core::avro::AvroCodec,
    feed: athena_client::api::changed::Feed,
    topic: &str,
) -> Result<u32, connector_core::CoreError> {
    struct Resolve<'a> {
        codec: &'a connector_core::avro::AvroCodec,
        topic: &'a str,
    }
    impl<'a> crate::events::EventTypeVisitor for Resolve<'a> {
        type Output = SchemaIdFuture<'a>;
        fn visit<T: FeedEvent>(self) -> Self::Output {
            Box::pin(async move { Ok(self.codec.encoder::<T>(self.topic).await?.schema_id()) })
        }
    }
    crate::events::visit(feed, Resolve { codec, topic }).await
}

/// The topic of the typed event of `resource_type`: `overrides[resource_type]`, else its
/// schema's default topic; `None` when the type has no typed event.
pub fn typed_topic(
    overrides: &std::collections::BTreeMap<String, String>,
    resource_type: &str,
) -> Option<String> {
    let spec = crate::events::fhir_spec(resource_type)?;
    Some(
        overrides
            .get(resource_type)
            .cloned()
            .unwrap_or_else(|| spec.default_topic.to_string()),
    )
}

/// The first key of a `typed_topics` config map that is not a typed resource type or names an
/// empty topic (for the config error), if any.
pub fn invalid_typed_topic(overrides: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    overrides
        .iter()
        .find(|(t, topic)| crate::events::fhir_spec(t).is_none() || topic.trim().is_empty())
        .map(|(t, _)| t.as_str())
}

/// The envelope of a FHIR resource's event (FHIR version marker, no department).
pub(crate) fn fhir_envelope(
    obs: &Observation,
    practice: &str,
    entity_type: &str,
    entity_id: &str,
    version: &Version,
    changed_at: Option<DateTime<Utc>>,
) -> EventEnvelope {
    EventEnvelope {
        event_id: event_id(entity_type, practice, entity_id, version),
        source: obs.source,
        practice_id: practice.to_string(),
        department_id: None,
        entity_type: entity_type.to_string(),
        entity_id: entity_id.to_string(),
        event_name: obs.event_name.clone(),
        changed_at: changed_at.map(Into::into),
        observed_at: TimestampMillis::now(),
        snapshot: obs.snapshot,
        replayed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::patients::patient_from_fhir;
    use serde_json::json;

    fn obs(source: SourceKind) -> Observation {
        Observation {
            source,
            event_name: None,
            snapshot: false,
            include_original: false,
        }
    }

    #[test]
    fn proprietary_ids_follow_the_changed_data_rule() {
        let raw = json!({"patientid": "42", "lastname": "Sandboxtest", "lastmodified": "01/15/2025 10:00:05"});
        let a = patient_from_athena("195900", &raw, &obs(SourceKind::FhirPush)).unwrap();
        assert_eq!(
            a.envelope.event_id,
            event_id("patient", "195900", "42", &Version::of_record(&raw))
        );
        // Eastern 10:00:05 is 15:00:05 UTC.
        assert_eq!(
            a.envelope.changed_at,
            Some(TimestampMillis(1_736_953_205_000))
        );
        // No id: nothing (push and backfill read by id), unlike a feed row.
        assert!(
            patient_from_athena(
                "195900",
                &json!({"lastname": "x"}),
                &obs(SourceKind::FhirPush)
            )
            .is_none()
        );
    }

    /// The same record through every path's entry point: the same event, except the fields that
    /// belong to the path. The record uses what the push copy of the mapper used to get wrong:
    /// an ISO birth date and timestamps, previous patient ids, a `homedepartment`-only department
    /// and a numeric field.
    #[test]
    fn every_path_maps_one_record_to_one_event() {
        let raw = json!({"patientid": 42, "homedepartment": "7", "firstname": "Synth",
            "lastname": "Sandboxtest", "dob": "1990-01-02", "previouspatientids": [40, "41"],
            "lastmodified": "2025-01-15T10:00:05-05:00", "zip": "02110"});
        let ctx = MapContext {
            practice_id: "195900",
            observed_at: TimestampMillis(5),
            replayed: false,
            keep_original: true,
        };
        let (changed, at) = changed_data_event::<PatientChanged>(&ctx, &raw);
        assert_eq!(
            at.map(TimestampMillis::from),
            Some(TimestampMillis(1_736_953_205_000))
        );
        assert_eq!(changed.payload.previous_patient_ids, vec!["40", "41"]);
        assert_eq!(
            changed.payload.dob.and_then(|d| d.to_naive()),
            chrono::NaiveDate::from_ymd_opt(1990, 1, 2)
        );
        assert_eq!(changed.envelope.department_id.as_deref(), Some("7"));
        assert_eq!(changed.payload.last_modified, changed.envelope.changed_at);
        let paths = [
            // push inflation, push catch-up, bulk backfill (patient_source = "athena")
            (SourceKind::FhirPush, Some("Patient.update"), false, false),
            (SourceKind::FhirPush, None, false, true),
            (SourceKind::BulkExport, None, true, false),
        ];
        for (source, event_name, snapshot, replayed) in paths {
            let o = Observation {
                source,
                event_name: event_name.map(str::to_owned),
                snapshot,
                include_original: true,
            };
            let mut ev = patient_from_athena("195900", &raw, &o).unwrap();
            ev.envelope.replayed = replayed; // what the catch-up sets
            assert_eq!(
                (
                    ev.envelope.source,
                    ev.envelope.event_name.as_deref(),
                    ev.envelope.snapshot
                ),
                (source, event_name, snapshot)
            );
            let mut want = changed.clone();
            let w = &mut want.envelope;
            (w.source, w.event_name, w.snapshot, w.replayed) =
                (source, event_name.map(str::to_owned), snapshot, replayed);
            w.observed_at = ev.envelope.observed_at;
            assert_eq!(ev, want, "{source:?}");
        }
    }

    #[test]
    fn fhir_patient_maps_like_the_proprietary_record() {
        // Eastern 10:00:05 on 2025-01-15 is 15:00:05 UTC.
        let athena = json!({"patientid": "42", "departmentid": "1", "firstname": "Synth",
            "lastname": "Sandboxtest", "dob": "01/02/1990", "lastmodified": "01/15/2025 10:00:05"});
        let fhir = json!({"resourceType": "Patient", "id": "a-195900.E-42",
            "meta": {"lastUpdated": "2025-01-15T15:00:05.123456+00:00"},
            "name": [{"family": "Sandboxtest", "given": ["Synth"]}], "birthDate": "1990-01-02"});
        let a = patient_from_athena("195900", &athena, &obs(SourceKind::FhirPush)).unwrap();
        let f = patient_from_fhir("195900", &fhir, &obs(SourceKind::BulkExport)).unwrap();
        assert_eq!(a.payload.patient_id, f.payload.patient_id);
        assert_eq!(
            a.envelope.changed_at, f.envelope.changed_at,
            "same instant, whole seconds"
        );
        assert_eq!(a.payload.dob, f.payload.dob);
        assert_eq!(a.payload.last_name, f.payload.last_name);
        assert!(a.original.is_none());
    }

    #[test]
    fn appointment_and_resource_mapping() {
        let raw = json!({"appointmentid": "7", "patientid": "42", "duration": 30,
            "date": "02/03/2025", "starttime": "09:30", "appointmentstatus": "f",
            "lastmodified": "02/01/2025 08:00:00"});
        let a = appointment_from_athena("1", &raw, &obs(SourceKind::FhirPush)).unwrap();
        assert_eq!(a.payload.duration_minutes, Some(30));
        assert_eq!(a.envelope.entity_type, "appointment");
        let enc = json!({"resourceType": "Encounter", "id": "a-1.encounter-7",
            "subject": {"reference": "Patient/a-1.E-42"}});
        let e = resource_from_fhir("1", &enc, &obs(SourceKind::BulkExport)).unwrap();
        assert_eq!(e.patient_id.as_deref(), Some("42"));
        assert_eq!(e.envelope.entity_type, "encounter");
        // No lastUpdated: a content hash, stable across reads.
        let e2 = resource_from_fhir("1", &enc, &obs(SourceKind::FhirPush)).unwrap();
        assert_eq!(e.envelope.event_id, e2.envelope.event_id);
    }

    /// Regressions found by `tests/fuzz_fhir.rs`: an empty patient id (`a-0.E-`), resource id
    /// or type gave an event keyed by the empty string.
    #[test]
    fn empty_fhir_ids_map_to_nothing() {
        let o = obs(SourceKind::BulkExport);
        let p = json!({"resourceType": "Patient", "id": "a-0.E-"});
        assert!(patient_from_fhir("1", &p, &o).is_none());
        for r in [
            json!({"resourceType": "Encounter", "id": ""}),
            json!({"resourceType": "", "id": "x"}),
        ] {
            assert!(resource_from_fhir("1", &r, &o).is_none(), "{r}");
        }
        let e = json!({"resourceType": "Encounter", "id": "x",
            "subject": {"reference": "Patient/a-1.E-"}});
        let ev = resource_from_fhir("1", &e, &o).unwrap();
        assert_eq!(ev.patient_id, None);
    }

    #[test]
    fn canonical_matches_the_core_content_hash() {
        for rec in [
            json!({"patientid": "1", "b": [1, 2.5, {"z": null, "a": "é\n\"q\""}], "a": true}),
            json!({"labresultid": 1083590, "lastmodifieddatetime": "2023-08-10T14:53:55-04:00"}),
            json!([]),
        ] {
            let (bytes, v) = canonical(&rec);
            assert_eq!(v, Version::of_record(&rec), "{rec}");
            let back: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back, rec);
        }
    }
}
