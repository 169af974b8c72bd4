//! Every schema's example in `schemas/examples/` through its Rust mirror and its `.avsc`: the
//! example JSON deserialises into the mirror, the mirror encodes with the bundled schema (parsed
//! from the `.avsc`, Confluent framing), decodes back equal, and serialises back to exactly the
//! example JSON (a `bytes` field read as Avro's JSON encoding of bytes, see [`same_json`]).
//! The table below is the pairing of schema and mirror; a top-level schema without a row (or
//! without an example), or an example without a schema, fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use athena_contracts::commands::{
    AddAppointmentNote, AddEncounterDiagnosis, AddHistoricalMedication, AddProblem,
    CheckOutAppointment, CreateReferralOrder, FreezeAppointment, RecordFamilyHistory,
    RecordSurgicalHistory, RecordVaccine, RecordVitals, RemoveInsurance, UnfreezeAppointment,
    UpdateAllergies, UpdateAppointment, UpdateInsurance, UploadLabResult,
};
use athena_contracts::commands::{
    AddInsurance, CancelAppointment, CheckInAppointment, CreateClaim, CreatePatient, RecordPayment,
    RescheduleAppointment, UpdatePatient, UploadClinicalDocument,
};
use athena_contracts::events::fhir::FhirEvent;
use athena_contracts::events::{
    FHIR_RESOURCE_TYPES, FhirEventVisitor, allergies, ccm_enrollment_status, charge_codes, claims,
    family_history, imaging_results, lab_results, medications, or_cases, orders, patient_cases,
    prescriptions, problems, provider_numbers, providers, referring_provider_numbers,
    referring_providers, stays, surgery_cases, vaccines, visits,
};
use athena_contracts::{
    AppointmentChanged, BookAppointment, CommandResult, FhirResourceChanged, PatientChanged,
};
use connector_core::avro::{AvroRecord, Catalog, Encoder, decode_body, unframe};
use serde_json::Value;

type RoundTrip = fn(&str, &Value) -> Result<(), String>;

fn round_trip<T: AvroRecord + PartialEq + Debug>(
    file: &str,
    example: &Value,
) -> Result<(), String> {
    let ev: T = serde_json::from_value(example.clone())
        .map_err(|e| format!("{file}: the example does not fit the mirror: {e}"))?;
    let schema = &T::bundled().schema;
    let value = apache_avro::to_value(&ev).map_err(|e| format!("{file}: {e}"))?;
    if !value.validate(schema) {
        return Err(format!(
            "{file}: the mirror's value does not validate against the .avsc"
        ));
    }
    let bytes = Encoder::<T>::with_id(7)
        .and_then(|enc| enc.encode(&ev))
        .map_err(|e| format!("{file}: encode: {e}"))?;
    let (id, body) = unframe(&bytes).map_err(|e| format!("{file}: framing: {e}"))?;
    if id != 7 {
        return Err(format!("{file}: framed schema id {id}"));
    }
    let back: T = decode_body(body).map_err(|e| format!("{file}: decode: {e}"))?;
    if back != ev {
        return Err(format!("{file}: decoded {back:?} != {ev:?}"));
    }
    let json = serde_json::to_value(&back).map_err(|e| format!("{file}: {e}"))?;
    if !same_json(&json, example) {
        return Err(format!("{file}: back to JSON {json} != example {example}"));
    }
    Ok(())
}

/// `back == example`, except that an Avro `bytes` value, which serde writes as an array of
/// numbers, equals the example's string in Avro's JSON encoding of bytes (one character per
/// byte, code points 0-255).
fn same_json(back: &Value, example: &Value) -> bool {
    match (back, example) {
        (Value::Array(bytes), Value::String(text)) => {
            let chars: Vec<u32> = text.chars().map(u32::from).collect();
            bytes.len() == chars.len()
                && bytes
                    .iter()
                    .zip(&chars)
                    .all(|(b, c)| *c <= 255 && b.as_u64() == Some(u64::from(*c)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => back == example,
    }
}

/// The round trip of a typed FHIR event, keyed by its schema's short name.
struct FhirRow;
impl FhirEventVisitor for FhirRow {
    type Output = (&'static str, RoundTrip);
    fn visit<T: FhirEvent>(self) -> Self::Output {
        let short = T::SCHEMA_NAME.rsplit('.').next().unwrap();
        (short, round_trip::<T> as RoundTrip)
    }
}

fn table() -> BTreeMap<&'static str, RoundTrip> {
    let mut t = feed_and_command_table();
    for rt in FHIR_RESOURCE_TYPES {
        let (name, f) = athena_contracts::events::fhir_visit(rt, FhirRow).unwrap();
        assert!(t.insert(name, f).is_none(), "{name} twice");
    }
    t
}

fn feed_and_command_table() -> BTreeMap<&'static str, RoundTrip> {
    BTreeMap::from([
        ("PatientChanged", round_trip::<PatientChanged> as RoundTrip),
        ("AppointmentChanged", round_trip::<AppointmentChanged>),
        ("FhirResourceChanged", round_trip::<FhirResourceChanged>),
        ("ProblemChanged", round_trip::<problems::ProblemChanged>),
        ("AllergyChanged", round_trip::<allergies::AllergyChanged>),
        (
            "MedicationChanged",
            round_trip::<medications::MedicationChanged>,
        ),
        ("VaccineChanged", round_trip::<vaccines::VaccineChanged>),
        (
            "FamilyHistoryChanged",
            round_trip::<family_history::FamilyHistoryChanged>,
        ),
        (
            "PrescriptionChanged",
            round_trip::<prescriptions::PrescriptionChanged>,
        ),
        (
            "LabResultChanged",
            round_trip::<lab_results::LabResultChanged>,
        ),
        (
            "ImagingResultChanged",
            round_trip::<imaging_results::ImagingResultChanged>,
        ),
        ("OrderChanged", round_trip::<orders::OrderChanged>),
        (
            "PatientCaseChanged",
            round_trip::<patient_cases::PatientCaseChanged>,
        ),
        ("ClaimChanged", round_trip::<claims::ClaimChanged>),
        ("ProviderChanged", round_trip::<providers::ProviderChanged>),
        (
            "ReferringProviderChanged",
            round_trip::<referring_providers::ReferringProviderChanged>,
        ),
        (
            "ProviderNumberChanged",
            round_trip::<provider_numbers::ProviderNumberChanged>,
        ),
        (
            "ReferringProviderNumberChanged",
            round_trip::<referring_provider_numbers::ReferringProviderNumberChanged>,
        ),
        (
            "CcmEnrollmentStatusChanged",
            round_trip::<ccm_enrollment_status::CcmEnrollmentStatusChanged>,
        ),
        (
            "ChargeCodeChanged",
            round_trip::<charge_codes::ChargeCodeChanged>,
        ),
        ("StayChanged", round_trip::<stays::StayChanged>),
        ("VisitChanged", round_trip::<visits::VisitChanged>),
        ("OrCaseChanged", round_trip::<or_cases::OrCaseChanged>),
        (
            "SurgeryCaseChanged",
            round_trip::<surgery_cases::SurgeryCaseChanged>,
        ),
        ("BookAppointment", round_trip::<BookAppointment>),
        ("CancelAppointment", round_trip::<CancelAppointment>),
        ("RescheduleAppointment", round_trip::<RescheduleAppointment>),
        ("CheckInAppointment", round_trip::<CheckInAppointment>),
        ("CreatePatient", round_trip::<CreatePatient>),
        ("UpdatePatient", round_trip::<UpdatePatient>),
        ("AddInsurance", round_trip::<AddInsurance>),
        (
            "UploadClinicalDocument",
            round_trip::<UploadClinicalDocument>,
        ),
        ("CreateClaim", round_trip::<CreateClaim>),
        ("RecordPayment", round_trip::<RecordPayment>),
        ("CommandResult", round_trip::<CommandResult>),
        // Chart writes (issue 14).
        ("RecordVitals", round_trip::<RecordVitals>),
        ("AddProblem", round_trip::<AddProblem>),
        ("UpdateAllergies", round_trip::<UpdateAllergies>),
        ("RecordVaccine", round_trip::<RecordVaccine>),
        (
            "AddHistoricalMedication",
            round_trip::<AddHistoricalMedication>,
        ),
        ("RecordSurgicalHistory", round_trip::<RecordSurgicalHistory>),
        ("RecordFamilyHistory", round_trip::<RecordFamilyHistory>),
        ("AddEncounterDiagnosis", round_trip::<AddEncounterDiagnosis>),
        ("CreateReferralOrder", round_trip::<CreateReferralOrder>),
        ("UploadLabResult", round_trip::<UploadLabResult>),
        // The appointment lifecycle and insurance changes (issue 14).
        ("UpdateAppointment", round_trip::<UpdateAppointment>),
        ("CheckOutAppointment", round_trip::<CheckOutAppointment>),
        ("FreezeAppointment", round_trip::<FreezeAppointment>),
        ("UnfreezeAppointment", round_trip::<UnfreezeAppointment>),
        ("AddAppointmentNote", round_trip::<AddAppointmentNote>),
        ("UpdateInsurance", round_trip::<UpdateInsurance>),
        ("RemoveInsurance", round_trip::<RemoveInsurance>),
    ])
}

/// Example files by schema short name (`CreateClaim.appointment.json` belongs to `CreateClaim`).
fn examples() -> BTreeMap<String, Vec<(String, Value)>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/examples");
    let mut out: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for f in std::fs::read_dir(dir).expect("schemas/examples exists") {
        let path = f.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            file.ends_with(".json"),
            "unexpected file {file} in schemas/examples"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
        let short = file.split('.').next().unwrap().to_string();
        out.entry(short).or_default().push((file, value));
    }
    out
}

#[test]
fn every_schema_example_round_trips_through_its_mirror_and_avsc() {
    let table = table();
    let mut examples = examples();
    // Every top-level schema (one with a default topic) is paired with a mirror here.
    let top_level: BTreeSet<String> = Catalog::global()
        .iter()
        .filter(|s| s.default_topic.is_some())
        .map(|s| s.name.rsplit('.').next().unwrap().to_string())
        .collect();
    for name in &top_level {
        assert!(
            table.contains_key(name.as_str()),
            "schema {name} has no Rust mirror in this table"
        );
    }
    for name in table.keys() {
        assert!(
            top_level.contains(*name),
            "{name}: no bundled top-level schema of that name"
        );
        assert!(
            examples.contains_key(*name),
            "{name}: no example in schemas/examples"
        );
    }
    let mut checked = 0;
    let mut failures = Vec::new();
    for (name, rt) in &table {
        for (file, value) in examples.remove(*name).unwrap_or_default() {
            checked += 1;
            if let Err(e) = rt(&file, &value) {
                failures.push(e);
            }
        }
    }
    assert!(
        examples.is_empty(),
        "examples without a schema: {:?}",
        examples.keys().collect::<Vec<_>>()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= table.len(),
        "every row checked at least one example"
    );
}
