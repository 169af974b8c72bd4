//! Typed events, one small file per entity: the Rust mirror of its `.avsc` and the mapping of an
//! athena record to its payload ([`FeedEvent::build`]). The table at the bottom names, per
//! changed-data feed, its event type and default topic; a new event type is one file plus one
//! line there.
//!
//! Typed FHIR clinical events (Observation, Condition, ...) follow the same rule with their own
//! table, the `fhir_table!` invocation below: one file (the payload mirror and its
//! [`fhir::FhirPayload`] mapper; the event is `FhirChanged<Payload>`, sharing [`fhir`]'s accessor
//! and error) plus one line `module => EventType;` there, which also
//! declares the module, lists the resource type in [`FHIR_RESOURCE_TYPES`] and routes it in
//! [`fhir_visit`] (so bulk backfill and the tests pick it up without further edits).
//!
//! athena's changed-data items are whole-record snapshots (the entity's normal GET shape) with
//! no event name, so every event is "the state of entity X after a change"; push inflation and
//! the backfill read the same shape by id. [`FeedEvent::build`] maps the fields the reference
//! documents into the typed payload; everything else stays in `original` (the record as JSON
//! text) unless PHI minimisation is on. Mapping is lenient: a field athena sent in an unexpected
//! shape becomes `null`, never an error, so one odd record cannot stall a feed. The envelope and
//! event id come from [`crate::mapping`], the same for every path.

use athena_client::api::changed::Feed;
use athena_client::model::de;
use connector_core::avro::AvroRecord;
use serde_json::Value;

use crate::{Date, EventEnvelope, TimestampMillis};

pub mod allergies;
pub mod appointments;
pub mod ccm_enrollment_status;
pub mod charge_codes;
pub mod claims;
pub mod family_history;
pub mod fhir;
pub mod fhir_resources;
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

/// An event type mapped from one kind of athena record.
pub trait FeedEvent: AvroRecord {
    /// Lower-case entity name written to `envelope.entity_type`.
    const ENTITY_TYPE: &'static str;
    /// Record keys holding the entity id, in order of preference.
    const ID_FIELDS: &'static [&'static str];
    /// The event for `rec` with a ready envelope.
    fn build(envelope: EventEnvelope, rec: &Rec<'_>, original: Option<String>) -> Self;
    /// The event's envelope.
    fn envelope(&self) -> &EventEnvelope;
    /// The event's envelope, to set what belongs to the path (e.g. `replayed`).
    fn envelope_mut(&mut self) -> &mut EventEnvelope;
}

/// Something done with the event type of a feed, chosen at run time by [`visit`] (e.g. the
/// changed-data source building its encoder for the feed's type).
pub trait EventTypeVisitor {
    /// What the visit returns.
    type Output;
    /// Called with the feed's event type.
    fn visit<T: FeedEvent>(self) -> Self::Output;
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

/// The name of a feed in keys, labels and messages: the feed's own segment of athena's
/// changed-data URL (`/v1/{practiceid}/{path}/changed`), e.g. `labresults`, `patients`,
/// `problems` (of `chart/healthhistory/problems`), `orcase`. Every connector uses this one
/// spelling; the config keeps its snake_case names (`lab_results`), which serde maps to [`Feed`].
pub fn feed_name(feed: Feed) -> &'static str {
    let path = feed.path();
    path.rsplit('/').next().unwrap_or(path)
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

        /// Runs `v` with the event type of `feed`.
        pub fn visit<V: EventTypeVisitor>(feed: Feed, v: V) -> V::Output {
            match feed {
                $(Feed::$feed => v.visit::<$ty>(),)*
            }
        }
    };
}

/// Something done with a typed FHIR event type, chosen at run time by [`fhir_visit`].
pub trait FhirEventVisitor {
    /// What the visit returns.
    type Output;
    /// Called with the resource type's event type.
    fn visit<T: fhir::FhirEvent>(self) -> Self::Output;
}

/// Static facts about a typed FHIR event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FhirSpec {
    /// FHIR resource type, e.g. `Observation`.
    pub resource_type: &'static str,
    /// Full name of the event schema.
    pub schema_name: &'static str,
    /// Default topic (the schema's `athena.default.topic`).
    pub default_topic: &'static str,
}

/// The spec of the typed event of `resource_type`, if it has one.
pub fn fhir_spec(resource_type: &str) -> Option<FhirSpec> {
    struct Spec;
    impl FhirEventVisitor for Spec {
        type Output = FhirSpec;
        fn visit<T: fhir::FhirEvent>(self) -> FhirSpec {
            FhirSpec {
                resource_type: T::RESOURCE_TYPE,
                schema_name: T::SCHEMA_NAME,
                default_topic: T::bundled()
                    .default_topic
                    .as_deref()
                    .expect("a typed FHIR event schema names its default topic"),
            }
        }
    }
    fhir_visit(resource_type, Spec)
}

macro_rules! fhir_table {
    ($($module:ident => $ty:ident;)*) => {
        $(pub mod $module;)*

        /// FHIR resource types that map to a typed event, in table order.
        pub const FHIR_RESOURCE_TYPES: &[&str] =
            &[$(<$module::$ty as fhir::FhirEvent>::RESOURCE_TYPE,)*];

        /// Runs `v` with the typed event of `resource_type`; `None` for a type without one
        /// (those stay `FhirResourceChanged`).
        pub fn fhir_visit<V: FhirEventVisitor>(resource_type: &str, v: V) -> Option<V::Output> {
            $(if resource_type == <$module::$ty as fhir::FhirEvent>::RESOURCE_TYPE {
                return Some(v.visit::<$module::$ty>());
            })*
            None
        }
    };
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
            .and_then(|s| crate::time::us_date(&s).or_else(|| de::parse_date(&s)))
            .map(Date::from)
    }
    /// An athena timestamp (US Eastern `MM/DD/YYYY HH:MM:SS`, or ISO 8601 with offset) in UTC.
    pub fn ts(&self, keys: &[&str]) -> Option<TimestampMillis> {
        self.s(keys)
            .and_then(|s| crate::time::parse_athena_time(&s))
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

feed_table! {
    Appointments => appointments::AppointmentChanged, "athena.appointments.v1";
    Patients => patients::PatientChanged, "athena.patients.v1";
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

fhir_table! {
    observations => ObservationChanged;
    diagnostic_reports => DiagnosticReportChanged;
    document_references => DocumentReferenceChanged;
    immunizations => ImmunizationChanged;
    conditions => ConditionChanged;
    medication_requests => MedicationRequestChanged;
    allergy_intolerances => AllergyIntoleranceChanged;
    coverages => CoverageChanged;
    encounters => EncounterChanged;
    service_requests => ServiceRequestChanged;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{MapContext, changed_data_event, record_event_id};
    use serde_json::json;

    #[test]
    fn mapping_is_lenient_and_ids_are_stable() {
        let rec = json!({"problemid": 3833, "patientid": 980, "codeset": "SNOMED", "code": "84229001",
            "name": "Fatigue", "events": [{"eventtype": "START", "startdate": "01/11/2021"}],
            "lastmodified": "not a date"});
        let ctx = MapContext {
            practice_id: "195900",
            observed_at: TimestampMillis(1),
            replayed: true,
            keep_original: false,
        };
        let (e, changed_at) = changed_data_event::<problems::ProblemChanged>(&ctx, &rec);
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
        assert_eq!(
            e.envelope.event_id,
            record_event_id::<problems::ProblemChanged>("195900", &rec)
        );
        // A changed field is a new event id; the same record again is the same id.
        let mut rec2 = rec.clone();
        rec2["name"] = json!("Fatigue, chronic");
        assert_ne!(
            record_event_id::<problems::ProblemChanged>("195900", &rec2),
            e.envelope.event_id
        );
        // No id field: still mapped, under a stable stand-in id.
        let anon = json!({"name": "x"});
        let (a, _) = changed_data_event::<problems::ProblemChanged>(&ctx, &anon);
        assert!(
            a.envelope.entity_id.starts_with("unknown-"),
            "{}",
            a.envelope.entity_id
        );
        let (b, _) = changed_data_event::<problems::ProblemChanged>(&ctx, &anon);
        assert_eq!(a.envelope.entity_id, b.envelope.entity_id);
        // Every feed has a topic and a bundled schema.
        for f in Feed::ALL {
            let spec = spec(f);
            assert!(spec.default_topic.starts_with("athena."), "{f:?}");
            assert!(
                connector_core::avro::Catalog::global()
                    .get(spec.schema_name)
                    .is_some(),
                "{f:?}"
            );
        }
    }

    #[test]
    fn every_typed_fhir_event_has_a_spec_and_topic() {
        let mut unique = FHIR_RESOURCE_TYPES.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), FHIR_RESOURCE_TYPES.len(), "one line per type");
        for rt in FHIR_RESOURCE_TYPES {
            let spec = fhir_spec(rt).unwrap();
            assert_eq!(spec.resource_type, *rt);
            assert!(spec.default_topic.starts_with("athena."), "{rt}");
        }
        assert_eq!(fhir_spec("Patient"), None, "patients keep PatientChanged");
        assert_eq!(
            fhir_spec("Observation").map(|s| s.schema_name),
            Some("com.athenaconnect.events.ObservationChanged")
        );
    }

    #[test]
    fn feed_names_are_the_url_segments() {
        assert_eq!(feed_name(Feed::LabResults), "labresults");
        assert_eq!(feed_name(Feed::Patients), "patients");
        assert_eq!(feed_name(Feed::Appointments), "appointments");
        assert_eq!(feed_name(Feed::OrCase), "orcase");
        assert_eq!(feed_name(Feed::Problems), "problems");
        let mut names: Vec<&str> = Feed::ALL.iter().map(|f| feed_name(*f)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Feed::ALL.len(), "names are unique");
    }
}
