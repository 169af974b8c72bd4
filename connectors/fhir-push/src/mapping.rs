//! athena records and FHIR resources to typed events, and the version marker each path uses for
//! [`connector_core::ids::event_id`].
//!
//! Event ids (decision record 0001, as the changed-data source implements it): a proprietary
//! record's version is the content hash of the record (`Version::of_record`), so a push
//! notification inflated by `GET /patients/{id}` gets exactly the id the changed-data source gives
//! the same record state; the gap catch-up (feed rows) and the bulk backfill with
//! `patient_source = "athena"` (one `GET /patients/{id}` per exported Patient) use the same
//! function and so the same ids (decisions 0009, 0010). FHIR resources (FHIR-only push topics,
//! export of other types, and export Patients with `patient_source = "fhir"`) use
//! `meta.lastUpdated` truncated to whole seconds when present (athena's `lastmodified` has whole
//! seconds), else their content hash: a FHIR resource is a different representation, so its id
//! matches other FHIR-based paths (push and export agree on encounters) but not the changed-data
//! id of the same entity.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::America::New_York;
use connector_core::contracts::{
    Appointment, AppointmentChanged, Date, EventEnvelope, Patient, PatientChanged, SourceKind,
    TimestampMillis,
};
use connector_core::ids::{Version, event_id};
use serde_json::Value;

use crate::contracts::FhirResourceChanged;

/// How one event was observed.
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

/// athena's `MM/DD/YYYY HH:MM:SS` practice-local stamp as UTC.
pub fn parse_athena_stamp(s: &str) -> Option<DateTime<Utc>> {
    let ndt = NaiveDateTime::parse_from_str(s.trim(), "%m/%d/%Y %H:%M:%S").ok()?;
    New_York
        .from_local_datetime(&ndt)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

fn parse_us_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%m/%d/%Y").ok()
}

fn text(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The version of a proprietary record (its content hash, as the changed-data source computes
/// it) and its `lastmodified` time.
pub fn athena_version(raw: &Value) -> (Version, Option<DateTime<Utc>>) {
    (
        Version::of_record(raw),
        text(raw, "lastmodified")
            .as_deref()
            .and_then(parse_athena_stamp),
    )
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

fn envelope(
    obs: &Observation,
    practice: &str,
    entity_type: &str,
    entity_id: &str,
    department: Option<String>,
    version: &Version,
    changed_at: Option<DateTime<Utc>>,
) -> EventEnvelope {
    EventEnvelope {
        event_id: event_id(entity_type, practice, entity_id, version),
        source: obs.source,
        practice_id: practice.to_string(),
        department_id: department,
        entity_type: entity_type.to_string(),
        entity_id: entity_id.to_string(),
        event_name: obs.event_name.clone(),
        changed_at: changed_at.map(Into::into),
        observed_at: TimestampMillis::now(),
        snapshot: obs.snapshot,
        replayed: false,
    }
}

/// A `PatientChanged` from a proprietary `GET /patients/{id}` record.
pub fn patient_from_athena(
    practice: &str,
    raw: &Value,
    obs: &Observation,
) -> Option<PatientChanged> {
    let id = text(raw, "patientid")?;
    let (version, at) = athena_version(raw);
    let payload = Patient {
        patient_id: id.clone(),
        department_id: text(raw, "departmentid"),
        status: text(raw, "status"),
        first_name: text(raw, "firstname"),
        middle_name: text(raw, "middlename"),
        last_name: text(raw, "lastname"),
        dob: text(raw, "dob")
            .as_deref()
            .and_then(parse_us_date)
            .map(Date::from),
        sex: text(raw, "sex"),
        email: text(raw, "email"),
        home_phone: text(raw, "homephone"),
        mobile_phone: text(raw, "mobilephone"),
        address1: text(raw, "address1"),
        address2: text(raw, "address2"),
        city: text(raw, "city"),
        state: text(raw, "state"),
        zip: text(raw, "zip"),
        primary_provider_id: text(raw, "primaryproviderid"),
        enterprise_id: text(raw, "enterpriseid"),
        previous_patient_ids: Vec::new(),
        last_modified: at.map(Into::into),
    };
    Some(PatientChanged {
        envelope: envelope(
            obs,
            practice,
            "patient",
            &id,
            payload.department_id.clone(),
            &version,
            at,
        ),
        payload,
        original: obs.include_original.then(|| raw.to_string()),
    })
}

/// An `AppointmentChanged` from a proprietary `GET /appointments/{id}` record.
pub fn appointment_from_athena(
    practice: &str,
    raw: &Value,
    obs: &Observation,
) -> Option<AppointmentChanged> {
    let id = text(raw, "appointmentid")?;
    let (version, at) = athena_version(raw);
    let stamp = |k: &str| {
        text(raw, k)
            .as_deref()
            .and_then(parse_athena_stamp)
            .map(TimestampMillis::from)
    };
    let payload = Appointment {
        appointment_id: id.clone(),
        patient_id: text(raw, "patientid"),
        department_id: text(raw, "departmentid"),
        provider_id: text(raw, "providerid"),
        appointment_type_id: text(raw, "appointmenttypeid"),
        status: text(raw, "appointmentstatus"),
        date: text(raw, "date")
            .as_deref()
            .and_then(parse_us_date)
            .map(Date::from),
        start_time: text(raw, "starttime"),
        duration_minutes: text(raw, "duration").and_then(|d| d.parse().ok()),
        cancel_reason_id: text(raw, "cancelreasonid"),
        cancelled_at: stamp("cancelleddatetime"),
        scheduled_at: stamp("scheduleddatetime"),
        rescheduled_appointment_id: text(raw, "rescheduledappointmentid"),
        last_modified: at.map(Into::into),
    };
    Some(AppointmentChanged {
        envelope: envelope(
            obs,
            practice,
            "appointment",
            &id,
            payload.department_id.clone(),
            &version,
            at,
        ),
        payload,
        original: obs.include_original.then(|| raw.to_string()),
    })
}

/// The athena patient id in a FHIR reference `Patient/a-{pid}.E-{id}`.
fn patient_of(reference: Option<&str>) -> Option<String> {
    let r = reference?.rsplit('/').next()?;
    athena_client::api::fhir::ids::patient_id(r).map(str::to_owned)
}

/// A `PatientChanged` from a FHIR `Patient` (bulk export snapshots). The entity id is athena's
/// patient id (the part after `E-`), as on the other paths.
pub fn patient_from_fhir(practice: &str, r: &Value, obs: &Observation) -> Option<PatientChanged> {
    let fhir_id = r.get("id")?.as_str()?;
    let id = athena_client::api::fhir::ids::patient_id(fhir_id)?.to_string();
    let (version, at) = fhir_version(r);
    let name = r.pointer("/name/0");
    let telecom = |system: &str, use_: Option<&str>| {
        r.get("telecom")?.as_array()?.iter().find_map(|t| {
            (t.get("system")?.as_str()? == system
                && use_.is_none_or(|u| t.get("use").and_then(Value::as_str) == Some(u)))
            .then(|| t.get("value")?.as_str().map(str::to_owned))?
        })
    };
    let addr = r.pointer("/address/0");
    let payload = Patient {
        patient_id: id.clone(),
        department_id: None,
        status: r
            .get("active")
            .and_then(Value::as_bool)
            .map(|a| if a { "active" } else { "inactive" }.to_string()),
        first_name: name
            .and_then(|n| n.pointer("/given/0"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        middle_name: name
            .and_then(|n| n.pointer("/given/1"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        last_name: name.and_then(|n| text(n, "family")),
        dob: r
            .get("birthDate")
            .and_then(Value::as_str)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .map(Date::from),
        sex: r.get("gender").and_then(Value::as_str).map(|g| {
            match g {
                "male" => "M",
                "female" => "F",
                other => other,
            }
            .to_string()
        }),
        email: telecom("email", None),
        home_phone: telecom("phone", Some("home")),
        mobile_phone: telecom("phone", Some("mobile")),
        address1: addr
            .and_then(|a| a.pointer("/line/0"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        address2: addr
            .and_then(|a| a.pointer("/line/1"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        city: addr.and_then(|a| text(a, "city")),
        state: addr.and_then(|a| text(a, "state")),
        zip: addr.and_then(|a| text(a, "postalCode")),
        primary_provider_id: None,
        enterprise_id: None,
        previous_patient_ids: Vec::new(),
        last_modified: at.map(Into::into),
    };
    Some(PatientChanged {
        envelope: envelope(obs, practice, "patient", &id, None, &version, at),
        payload,
        original: obs.include_original.then(|| r.to_string()),
    })
}

/// A `FhirResourceChanged` from any FHIR resource with an `id`.
pub fn resource_from_fhir(
    practice: &str,
    r: &Value,
    obs: &Observation,
) -> Option<FhirResourceChanged> {
    let ty = r.get("resourceType")?.as_str()?.to_string();
    let fhir_id = r.get("id")?.as_str()?.to_string();
    let (version, at) = fhir_version(r);
    let patient_id = patient_of(
        r.pointer("/subject/reference")
            .or_else(|| r.pointer("/patient/reference"))
            .and_then(Value::as_str),
    );
    let entity_type = ty.to_ascii_lowercase();
    Some(FhirResourceChanged {
        envelope: envelope(obs, practice, &entity_type, &fhir_id, None, &version, at),
        resource_type: ty,
        fhir_id,
        patient_id,
        last_updated: at.map(Into::into),
        resource: obs.include_original.then(|| r.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
