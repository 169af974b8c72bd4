//! Typed events, one small file per changed-data feed, and the mapping from an athena record to
//! an event.
//!
//! athena's changed-data items are whole-record snapshots (the entity's normal GET shape) with
//! no event name, so every event is "the state of entity X after a change". [`FeedEvent::build`]
//! maps the fields the reference documents into the typed payload; everything else stays in
//! `original` (the record as JSON text) unless PHI minimisation is on. Mapping is lenient: a field
//! athena sent in an unexpected shape becomes `null`, never an error, so one odd record cannot
//! stall a feed.
//!
//! The event id is [`connector_core::ids::event_id`] over the record's content hash (see
//! `docs/decisions/0005-changed-data-source-cursor-replay-and-event-ids.md`): a replayed row is
//! byte-identical to the row first delivered, so it gets the same id, while two changes of one
//! entity within the same second (athena's `lastmodified` has second resolution) still get
//! different ids.

use std::marker::PhantomData;

use athena_client::api::changed::Feed;
use athena_client::model::de;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::America::New_York;
use connector_core::avro::{AvroCodec, AvroRecord, Encoder};
use connector_core::contracts::{Date, EventEnvelope, SourceKind, TimestampMillis};
use connector_core::ids::{Version, event_id};
use serde_json::Value;

use crate::error::Error;

pub mod allergies;
pub mod appointments;
pub mod ccm_enrollment_status;
pub mod charge_codes;
pub mod claims;
pub mod family_history;
pub mod imaging_results;
pub mod lab_results;
pub mod medications;
pub mod or_cases;
pub mod orders;
pub mod patient_cases;
pub mod patients;
pub mod prescriptions;
pub mod problems;
pub mod provider_numbers;
pub mod providers;
pub mod referring_provider_numbers;
pub mod referring_providers;
pub mod stays;
pub mod surgery_cases;
pub mod vaccines;
pub mod visits;

/// Keys athena uses for a record's last-modified time, in order of preference.
const LAST_MODIFIED_KEYS: &[&str] = &["lastmodified", "lastmodifieddatetime", "lastupdated"];

/// An event type produced from one changed-data feed.
pub trait FeedEvent: AvroRecord {
    /// Lower-case entity name written to `envelope.entity_type`.
    const ENTITY_TYPE: &'static str;
    /// Record keys holding the entity id, in order of preference.
    const ID_FIELDS: &'static [&'static str];
    /// The event for `rec` with a ready envelope.
    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self;
    /// The event's envelope.
    fn envelope(&self) -> &EventEnvelope;
}

/// Lenient, read-only access to one athena record.
#[derive(Debug, Clone, Copy)]
pub struct Rec<'a>(pub &'a Value);

impl<'a> Rec<'a> {
    /// The first present, non-null value among `keys`; a key starting with `/` is a JSON pointer.
    pub fn get(&self, keys: &[&str]) -> Option<&'a Value> {
        keys.iter()
            .filter_map(|k| {
                if k.starts_with('/') {
                    self.0.pointer(k)
                } else {
                    self.0.get(*k)
                }
            })
            .find(|v| !v.is_null())
    }
    /// A string or number as text; empty strings are absent.
    pub fn s(&self, keys: &[&str]) -> Option<String> {
        self.get(keys)
            .and_then(de::value_to_id)
            .filter(|s| !s.is_empty())
    }
    /// An athena `MM/DD/YYYY` (or ISO) date.
    pub fn date(&self, keys: &[&str]) -> Option<Date> {
        self.s(keys)
            .and_then(|s| de::parse_date(&s))
            .map(Date::from)
    }
    /// An athena timestamp (US Eastern `MM/DD/YYYY HH:MM:SS`, or ISO 8601 with offset) in UTC.
    pub fn ts(&self, keys: &[&str]) -> Option<TimestampMillis> {
        self.s(keys)
            .and_then(|s| parse_athena_time(&s))
            .map(TimestampMillis::from)
    }
    /// A number, or a number in a string.
    pub fn int(&self, keys: &[&str]) -> Option<i32> {
        match self.get(keys)? {
            Value::Number(n) => n.as_i64().and_then(|x| i32::try_from(x).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    /// `true`, `"true"`, `"Y"`, 1 and similar.
    pub fn bool(&self, keys: &[&str]) -> Option<bool> {
        self.get(keys).map(de::truthy)
    }
    /// A list of strings (a single value counts as a one-element list).
    pub fn strs(&self, keys: &[&str]) -> Vec<String> {
        match self.get(keys) {
            Some(Value::Array(a)) => a.iter().filter_map(de::value_to_id).collect(),
            Some(v) => de::value_to_id(v).into_iter().collect(),
            None => Vec::new(),
        }
    }
}

/// Parses athena's timestamps to UTC: `MM/DD/YYYY HH:MM[:SS]` is US Eastern wall time (the
/// earlier instant when a fall-back hour makes it ambiguous); ISO 8601 carries its own offset.
pub fn parse_athena_time(s: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = de::parse_iso_datetime(s) {
        return Some(t.with_timezone(&Utc));
    }
    let local: NaiveDateTime = de::parse_datetime(s)?;
    New_York
        .from_local_datetime(&local)
        .earliest()
        // A spring-forward gap time does not exist in Eastern; read it as EST (-5h).
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| Some(Utc.from_utc_datetime(&(local + chrono::Duration::hours(5)))))
}

/// What the mapping needs besides the record.
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

/// One record ready for Kafka.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// The deterministic event id.
    pub event_id: String,
    /// athena id of the entity (a content-derived stand-in when the record has none).
    pub entity_id: String,
    /// Kafka key: `<practice>/<entity id>`.
    pub key: String,
    /// Confluent-framed Avro value.
    pub value: Vec<u8>,
    /// When the change happened, if athena said.
    pub changed_at: Option<DateTime<Utc>>,
}

/// The entity id of `rec` for a feed with `id_fields`, and the record's version.
pub fn identify(id_fields: &[&str], rec: &Value) -> (Option<String>, Version) {
    (Rec(rec).s(id_fields), canonical(rec).1)
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

/// Maps records of one feed to encoded events; the schema id is pinned at construction.
pub trait FeedCodec: Send + Sync + std::fmt::Debug {
    /// Full name of the event schema.
    fn schema_name(&self) -> &'static str;
    /// Lower-case entity name.
    fn entity_type(&self) -> &'static str;
    /// Maps and encodes one record.
    fn map(&self, ctx: &MapContext<'_>, rec: &Value) -> Result<Mapped, Error>;
    /// The event id `rec` will get (for dedupe checks without encoding).
    fn event_id(&self, practice_id: &str, rec: &Value) -> String;
}

/// The [`FeedCodec`] of one [`FeedEvent`] type.
pub struct Typed<T: FeedEvent> {
    encoder: Encoder<T>,
    _t: PhantomData<fn(&T)>,
}

impl<T: FeedEvent> std::fmt::Debug for Typed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("schema", &T::SCHEMA_NAME)
            .finish()
    }
}

impl<T: FeedEvent> Typed<T> {
    /// A codec with a pinned encoder.
    pub fn new(encoder: Encoder<T>) -> Self {
        Typed {
            encoder,
            _t: PhantomData,
        }
    }

    /// The typed event of `rec` (no encoding), e.g. for tests and tools.
    pub fn event(ctx: &MapContext<'_>, rec: &Value) -> (T, Option<DateTime<Utc>>) {
        let (json, version) = canonical(rec);
        let entity_id = Rec(rec)
            .s(T::ID_FIELDS)
            .unwrap_or_else(|| stand_in_id(&version));
        let r = Rec(rec);
        let changed_at = r.s(LAST_MODIFIED_KEYS).and_then(|s| parse_athena_time(&s));
        let envelope = EventEnvelope {
            event_id: event_id(T::ENTITY_TYPE, ctx.practice_id, &entity_id, &version),
            source: SourceKind::ChangedData,
            practice_id: ctx.practice_id.to_string(),
            department_id: r.s(&["departmentid", "homedepartment"]),
            entity_type: T::ENTITY_TYPE.to_string(),
            entity_id,
            event_name: None,
            changed_at: changed_at.map(TimestampMillis::from),
            observed_at: ctx.observed_at,
            snapshot: false,
            replayed: ctx.replayed,
        };
        let original = ctx
            .keep_original
            .then(|| String::from_utf8(json).expect("serde_json writes UTF-8"));
        (T::build(envelope, &r, original), changed_at)
    }
}

/// The entity id used when a record carries none of its feed's id fields: a prefix of the
/// content hash, so the record still lands (and replays identically) instead of being dropped.
fn stand_in_id(version: &Version) -> String {
    match version {
        Version::ContentHash(h) => format!("unknown-{}", &h[..16.min(h.len())]),
        Version::ChangedAt(ms) => format!("unknown-{ms}"),
    }
}

impl<T: FeedEvent> FeedCodec for Typed<T> {
    fn schema_name(&self) -> &'static str {
        T::SCHEMA_NAME
    }
    fn entity_type(&self) -> &'static str {
        T::ENTITY_TYPE
    }
    fn map(&self, ctx: &MapContext<'_>, rec: &Value) -> Result<Mapped, Error> {
        let (event, changed_at) = Self::event(ctx, rec);
        let value = self.encoder.encode(&event).map_err(Error::Encode)?;
        let env = event.envelope();
        Ok(Mapped {
            key: format!("{}/{}", ctx.practice_id, env.entity_id),
            event_id: env.event_id.clone(),
            entity_id: env.entity_id.clone(),
            value,
            changed_at,
        })
    }
    fn event_id(&self, practice_id: &str, rec: &Value) -> String {
        let (id, version) = identify(T::ID_FIELDS, rec);
        let entity_id = id.unwrap_or_else(|| stand_in_id(&version));
        event_id(T::ENTITY_TYPE, practice_id, &entity_id, &version)
    }
}

/// Static facts about a feed's event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedSpec {
    /// The feed.
    pub feed: Feed,
    /// Full name of the event schema.
    pub schema_name: &'static str,
    /// Lower-case entity name.
    pub entity_type: &'static str,
    /// Record keys holding the entity id.
    pub id_fields: &'static [&'static str],
    /// Default topic (the schema's `athena.default.topic`).
    pub default_topic: &'static str,
}

macro_rules! feed_table {
    ($($feed:ident => $ty:ty, $topic:literal;)*) => {
        /// The event spec of `feed`.
        pub fn spec(feed: Feed) -> FeedSpec {
            match feed {
                $(Feed::$feed => FeedSpec {
                    feed,
                    schema_name: <$ty as AvroRecord>::SCHEMA_NAME,
                    entity_type: <$ty as FeedEvent>::ENTITY_TYPE,
                    id_fields: <$ty as FeedEvent>::ID_FIELDS,
                    default_topic: $topic,
                },)*
            }
        }

        /// A codec for `feed` writing to `topic`: looks the schema id up in the registry once.
        pub async fn codec(
            avro: &AvroCodec,
            feed: Feed,
            topic: &str,
        ) -> Result<Box<dyn FeedCodec>, connector_core::CoreError> {
            Ok(match feed {
                $(Feed::$feed => Box::new(Typed::<$ty>::new(avro.encoder::<$ty>(topic).await?)),)*
            })
        }

        /// A codec for `feed` with a known schema id (benchmarks, tests).
        pub fn codec_with_id(feed: Feed, schema_id: u32) -> Result<Box<dyn FeedCodec>, connector_core::CoreError> {
            Ok(match feed {
                $(Feed::$feed => Box::new(Typed::<$ty>::new(Encoder::<$ty>::with_id(schema_id)?)),)*
            })
        }
    };
}

feed_table! {
    Appointments => connector_core::contracts::AppointmentChanged, "athena.appointments.v1";
    Patients => connector_core::contracts::PatientChanged, "athena.patients.v1";
    Problems => problems::ProblemChanged, "athena.problems.v1";
    Allergies => allergies::AllergyChanged, "athena.allergies.v1";
    Medications => medications::MedicationChanged, "athena.medications.v1";
    Vaccines => vaccines::VaccineChanged, "athena.vaccines.v1";
    FamilyHistory => family_history::FamilyHistoryChanged, "athena.familyhistory.v1";
    Prescriptions => prescriptions::PrescriptionChanged, "athena.prescriptions.v1";
    LabResults => lab_results::LabResultChanged, "athena.labresults.v1";
    ImagingResults => imaging_results::ImagingResultChanged, "athena.imagingresults.v1";
    Orders => orders::OrderChanged, "athena.orders.v1";
    PatientCases => patient_cases::PatientCaseChanged, "athena.patientcases.v1";
    Claims => claims::ClaimChanged, "athena.claims.v1";
    Providers => providers::ProviderChanged, "athena.providers.v1";
    ReferringProviders => referring_providers::ReferringProviderChanged, "athena.referringproviders.v1";
    ProviderNumbers => provider_numbers::ProviderNumberChanged, "athena.providernumbers.v1";
    ReferringProviderNumbers => referring_provider_numbers::ReferringProviderNumberChanged, "athena.referringprovidernumbers.v1";
    CcmEnrollmentStatus => ccm_enrollment_status::CcmEnrollmentStatusChanged, "athena.ccmenrollmentstatus.v1";
    ChargeCodes => charge_codes::ChargeCodeChanged, "athena.chargecodes.v1";
    Stays => stays::StayChanged, "athena.stays.v1";
    Visits => visits::VisitChanged, "athena.visits.v1";
    OrCase => or_cases::OrCaseChanged, "athena.orcases.v1";
    SurgeryCases => surgery_cases::SurgeryCaseChanged, "athena.surgerycases.v1";
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn eastern_times_parse_across_dst() {
        let t = |s| parse_athena_time(s).map(|t| t.to_rfc3339());
        assert_eq!(
            t("01/15/2024 12:30:00").as_deref(),
            Some("2024-01-15T17:30:00+00:00")
        );
        assert_eq!(
            t("07/04/2024 12:00:00").as_deref(),
            Some("2024-07-04T16:00:00+00:00")
        );
        // Fall back: 01:30 happens twice; the earlier (EDT) instant is taken.
        assert_eq!(
            t("11/03/2024 01:30:00").as_deref(),
            Some("2024-11-03T05:30:00+00:00")
        );
        // Spring forward: 02:30 does not exist in Eastern; read as EST.
        assert_eq!(
            t("03/10/2024 02:30:00").as_deref(),
            Some("2024-03-10T07:30:00+00:00")
        );
        assert_eq!(
            t("2023-08-10T14:53:55-04:00").as_deref(),
            Some("2023-08-10T18:53:55+00:00")
        );
        assert_eq!(t("garbage"), None);
    }

    #[test]
    fn mapping_is_lenient_and_ids_are_stable() {
        let codec = codec_with_id(Feed::Problems, 7).unwrap();
        let rec = json!({"problemid": 3833, "patientid": 980, "codeset": "SNOMED", "code": "84229001",
            "name": "Fatigue", "events": [{"eventtype": "START", "startdate": "01/11/2021"}],
            "lastmodified": "not a date"});
        let ctx = MapContext {
            practice_id: "195900",
            observed_at: TimestampMillis(1),
            replayed: true,
            keep_original: false,
        };
        let (e, changed_at) = Typed::<problems::ProblemChanged>::event(&ctx, &rec);
        assert_eq!(e.payload.problem_id, "3833");
        assert_eq!(e.payload.patient_id.as_deref(), Some("980"));
        assert_eq!(
            e.payload.start_date.and_then(|d| d.to_naive()),
            chrono::NaiveDate::from_ymd_opt(2021, 1, 11)
        );
        assert_eq!(e.payload.last_modified, None);
        assert_eq!(changed_at, None);
        assert!(e.envelope.replayed);
        assert_eq!(e.original, None, "PHI minimisation drops the original");
        let m = codec.map(&ctx, &rec).unwrap();
        assert_eq!(m.key, "195900/3833");
        assert_eq!(m.event_id, codec.event_id("195900", &rec));
        assert_eq!(m.event_id, e.envelope.event_id);
        // A changed field is a new event id; the same record again is the same id.
        let mut rec2 = rec.clone();
        rec2["name"] = json!("Fatigue, chronic");
        assert_ne!(codec.event_id("195900", &rec2), m.event_id);
        // No id field: still produced, under a stable stand-in id.
        let anon = json!({"name": "x"});
        let a = codec.map(&ctx, &anon).unwrap();
        assert!(a.entity_id.starts_with("unknown-"), "{}", a.entity_id);
        assert_eq!(a.entity_id, codec.map(&ctx, &anon).unwrap().entity_id);
        // Every feed has a codec, a topic and a bundled schema.
        for f in Feed::ALL {
            let spec = spec(f);
            assert!(spec.default_topic.starts_with("athena."), "{f:?}");
            assert!(
                connector_core::avro::Catalog::global()
                    .get(spec.schema_name)
                    .is_some(),
                "{f:?}"
            );
            codec_with_id(f, 1).unwrap();
        }
    }
}
