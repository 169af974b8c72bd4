//! What the typed FHIR clinical events share: the one event shape [`FhirChanged`] (envelope,
//! typed payload, `original`), the [`FhirPayload`] trait each resource type's file implements
//! (its fields and its mapper, nothing else), the [`FhirEvent`] trait connectors use, the typed
//! [`FhirMapError`], the shared Avro records ([`Coding`], [`Quantity`], [`Attachment`] in
//! `schemas/common/`), and the [`Fhir`] accessor every mapper reads its resource through.
//!
//! Unlike the changed-data mapping (lenient: a row without an id still lands), a FHIR resource
//! missing a field US Core requires (id, subject, status, code, ...) is a [`FhirMapError`]: the
//! paths read it by id or window, so such a resource is a bad answer to route to the dead-letter
//! topic, not a row to guess about. Optional fields in an unexpected shape are `null`/empty.
//!
//! References become ids: the patient reference `Patient/a-{pid}.E-{id}` becomes athena's
//! patient id (as in every other event), other `a-{pid}.{kind}-{id}` references their athena id,
//! and anything else its FHIR logical id.

use chrono::{DateTime, NaiveDate, Utc};
use connector_core::ErrorClass;
use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{EventEnvelope, TimestampMillis};

/// The largest attachment (decoded bytes) whose inline `data` an event keeps; larger ones keep
/// only the reference (url, content type, size, hash). 0: never inline, the default, so note
/// and report content is fetched on demand and never flows through Kafka.
pub const INLINE_ATTACHMENT_MAX_BYTES: u64 = 0;

/// The typed fields of one FHIR R4 (US Core) resource type and their mapping: what a resource
/// type's file provides.
pub trait FhirPayload:
    Serialize
    + serde::de::DeserializeOwned
    + Clone
    + PartialEq
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The FHIR resource type it maps, e.g. `Observation`.
    const RESOURCE_TYPE: &'static str;
    /// Full name of the event schema, e.g. `com.athenaconnect.events.ObservationChanged`.
    const EVENT_SCHEMA: &'static str;
    /// athena patient id of the resource's subject.
    fn patient_id(&self) -> &str;
    /// The payload of resource `f` (id and type already checked).
    fn map(f: &Fhir<'_>) -> Result<Self, FhirMapError>;
}

/// A typed FHIR event (`com.athenaconnect.events.{Type}Changed`): every typed FHIR event has
/// this shape, so each resource type's file holds only its payload and mapper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirChanged<P> {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed US Core fields.
    pub payload: P,
    /// The FHIR resource as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

impl<P: FhirPayload> AvroRecord for FhirChanged<P> {
    const SCHEMA_NAME: &'static str = P::EVENT_SCHEMA;
}

impl<P: FhirPayload> FhirEvent for FhirChanged<P> {
    const RESOURCE_TYPE: &'static str = P::RESOURCE_TYPE;
    fn build(
        envelope: EventEnvelope,
        f: &Fhir<'_>,
        original: Option<String>,
    ) -> Result<Self, FhirMapError> {
        Ok(FhirChanged {
            envelope,
            payload: P::map(f)?,
            original,
        })
    }
    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn envelope_mut(&mut self) -> &mut EventEnvelope {
        &mut self.envelope
    }
    fn patient_id(&self) -> &str {
        self.payload.patient_id()
    }
}

/// The bulk-export observation the mapper unit tests use.
#[cfg(test)]
pub(crate) fn test_seen(include_original: bool) -> crate::mapping::Observation {
    crate::mapping::Observation {
        source: crate::SourceKind::BulkExport,
        event_name: None,
        snapshot: true,
        include_original,
    }
}

/// A typed event mapped from one FHIR R4 (US Core) resource type.
pub trait FhirEvent: AvroRecord + Clone + PartialEq + std::fmt::Debug {
    /// The FHIR resource type it maps, e.g. `Observation`.
    const RESOURCE_TYPE: &'static str;
    /// The event for resource `f` with a ready envelope; `original` is the resource JSON text
    /// unless PHI minimisation is on.
    fn build(
        envelope: EventEnvelope,
        f: &Fhir<'_>,
        original: Option<String>,
    ) -> Result<Self, FhirMapError>;
    /// The event's envelope.
    fn envelope(&self) -> &EventEnvelope;
    /// The event's envelope, to set what belongs to the path (e.g. `replayed`).
    fn envelope_mut(&mut self) -> &mut EventEnvelope;
    /// athena patient id of the resource's subject (the second part of the Kafka key).
    fn patient_id(&self) -> &str;
    /// Kafka key `{practice_id}/{patient_id}`, the patient events' key: one patient's clinical
    /// events land on one partition and stay in order.
    fn key(&self) -> String {
        format!("{}/{}", self.envelope().practice_id, self.patient_id())
    }
}

/// Why a FHIR resource could not be mapped to its typed event. Always
/// [`ErrorClass::Permanent`]: the same resource will never map; route it to the dead-letter
/// topic. Messages name ids and field paths only, never field values (PHI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirMapError {
    /// Not a JSON object with a `resourceType`.
    #[error("not a FHIR resource (no resourceType)")]
    NotAResource,
    /// A resource of another type than the mapper's.
    #[error("expected a FHIR {expected}, got {found}")]
    WrongType {
        /// The mapper's resource type.
        expected: &'static str,
        /// The resource's type.
        found: String,
    },
    /// A field US Core requires is absent or empty.
    #[error("FHIR {resource_type}/{id}: required field {field} is missing or empty")]
    Missing {
        /// Resource type.
        resource_type: &'static str,
        /// FHIR logical id (empty when the id itself is missing).
        id: String,
        /// Path of the field, e.g. `subject`, `code.coding`.
        field: &'static str,
    },
    /// The patient reference is not athena's `Patient/a-{pid}.E-{id}`.
    #[error("FHIR {resource_type}/{id}: {field} is not an athena patient reference")]
    BadPatientReference {
        /// Resource type.
        resource_type: &'static str,
        /// FHIR logical id.
        id: String,
        /// Path of the reference field.
        field: &'static str,
    },
}

impl FhirMapError {
    /// Always permanent: a resource that does not map never will.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// `com.athenaconnect.events.Coding` (`schemas/common/Coding.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in the .avsc, the contract.
pub struct Coding {
    pub system: Option<String>,
    pub code: String,
    pub display: Option<String>,
}

/// `com.athenaconnect.events.Quantity` (`schemas/common/Quantity.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in the .avsc, the contract.
pub struct Quantity {
    pub value: f64,
    pub unit: Option<String>,
    pub system: Option<String>,
    pub code: Option<String>,
    pub comparator: Option<String>,
}

/// `com.athenaconnect.events.Attachment` (`schemas/common/Attachment.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in the .avsc, the contract.
pub struct Attachment {
    pub content_type: Option<String>,
    pub url: Option<String>,
    pub size: Option<i64>,
    pub hash: Option<String>,
    pub title: Option<String>,
    pub creation: Option<TimestampMillis>,
    pub data: Option<String>,
}

/// Read access to one FHIR resource for its mapper: JSON pointers in, typed values out.
#[derive(Debug, Clone, Copy)]
pub struct Fhir<'a> {
    /// The resource.
    pub r: &'a Value,
    /// Its (checked) resource type.
    pub resource_type: &'static str,
    /// Its logical id.
    pub id: &'a str,
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn array(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The codings of one CodeableConcept (those with a code).
fn concept_codings(cc: &Value) -> impl Iterator<Item = Coding> + '_ {
    array(cc.get("coding")).iter().filter_map(|c| {
        Some(Coding {
            system: text(c.get("system")),
            code: text(c.get("code"))?,
            display: text(c.get("display")),
        })
    })
}

/// A FHIR `dateTime`/`instant`/`date` as UTC millis. Partial dates (`2024`, `2024-05`,
/// `2024-05-03`) are their first instant in UTC: FHIR gives them no zone, and UTC keeps every
/// path's value identical.
pub fn fhir_time(s: &str) -> Option<TimestampMillis> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc).into());
    }
    let d = match s.len() {
        4 => NaiveDate::parse_from_str(&format!("{s}-01-01"), "%Y-%m-%d"),
        7 => NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d"),
        _ => NaiveDate::parse_from_str(s, "%Y-%m-%d"),
    }
    .ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().into())
}

/// The id a reference (`Type/id`, `Type/id/_history/v`) names: athena's id for
/// `a-{pid}.{kind}-{id}` logical ids, else the logical id.
pub fn reference_id(reference: &str) -> Option<String> {
    let mut parts = reference.split('/');
    let logical = match (parts.next(), parts.next()) {
        (Some(_), Some(id)) if !id.is_empty() => id,
        (Some(id), None) if !id.is_empty() => id,
        _ => return None,
    };
    Some(match athena_client::api::fhir::ids::parse(logical) {
        Some((_, _, id)) if !id.is_empty() => id.to_owned(),
        _ => logical.to_owned(),
    })
}

impl<'a> Fhir<'a> {
    fn at(&self, ptr: &str) -> Option<&'a Value> {
        self.r.pointer(ptr).filter(|v| !v.is_null())
    }
    /// A required-field error for `field`.
    pub fn missing(&self, field: &'static str) -> FhirMapError {
        FhirMapError::Missing {
            resource_type: self.resource_type,
            id: self.id.to_owned(),
            field,
        }
    }
    /// A non-empty string.
    pub fn str(&self, ptr: &str) -> Option<String> {
        text(self.at(ptr))
    }
    /// A required non-empty string.
    pub fn req_str(&self, ptr: &str, field: &'static str) -> Result<String, FhirMapError> {
        self.str(ptr).ok_or_else(|| self.missing(field))
    }
    /// A boolean.
    pub fn bool(&self, ptr: &str) -> Option<bool> {
        self.at(ptr).and_then(Value::as_bool)
    }
    /// A whole number that fits an `int`.
    pub fn int(&self, ptr: &str) -> Option<i32> {
        self.at(ptr)
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
    }
    /// A time (see [`fhir_time`]).
    pub fn time(&self, ptr: &str) -> Option<TimestampMillis> {
        self.str(ptr).and_then(|s| fhir_time(&s))
    }
    /// The codings of the CodeableConcept at `ptr`.
    pub fn codings(&self, ptr: &str) -> Vec<Coding> {
        self.at(ptr)
            .map(|cc| concept_codings(cc).collect())
            .unwrap_or_default()
    }
    /// The codings of the CodeableConcept at `ptr`, at least one.
    pub fn req_codings(&self, ptr: &str, field: &'static str) -> Result<Vec<Coding>, FhirMapError> {
        let c = self.codings(ptr);
        if c.is_empty() {
            return Err(self.missing(field));
        }
        Ok(c)
    }
    /// The codings of every CodeableConcept in the array at `ptr`.
    pub fn codings_all(&self, ptr: &str) -> Vec<Coding> {
        array(self.at(ptr))
            .iter()
            .flat_map(concept_codings)
            .collect()
    }
    /// The first code of the CodeableConcept at `ptr` (a status such as `clinicalStatus`).
    pub fn first_code(&self, ptr: &str) -> Option<String> {
        self.codings(ptr).into_iter().next().map(|c| c.code)
    }
    /// The non-empty strings of the array at `ptr` (e.g. a `code[]` such as `category`).
    pub fn strs(&self, ptr: &str) -> Vec<String> {
        array(self.at(ptr))
            .iter()
            .filter_map(|v| text(Some(v)))
            .collect()
    }
    /// The Quantity at `ptr`, when it has a numeric value.
    pub fn quantity(&self, ptr: &str) -> Option<Quantity> {
        let q = self.at(ptr)?;
        Some(Quantity {
            value: q.get("value")?.as_f64()?,
            unit: text(q.get("unit")),
            system: text(q.get("system")),
            code: text(q.get("code")),
            comparator: text(q.get("comparator")),
        })
    }
    /// The id the Reference at `ptr` names (see [`reference_id`]).
    pub fn reference(&self, ptr: &str) -> Option<String> {
        self.str(&format!("{ptr}/reference"))
            .and_then(|r| reference_id(&r))
    }
    /// The ids of the References at `sub` (a pointer inside each element, e.g. `/actor`; empty
    /// for an array of References) of every element of the array at `ptr`.
    pub fn references(&self, ptr: &str, sub: &str) -> Vec<String> {
        let inner = format!("{sub}/reference");
        array(self.at(ptr))
            .iter()
            .filter_map(|e| e.pointer(&inner).and_then(Value::as_str))
            .filter_map(reference_id)
            .collect()
    }
    /// The athena patient id of the required patient Reference at `ptr`.
    pub fn patient(&self, ptr: &str, field: &'static str) -> Result<String, FhirMapError> {
        let r = self
            .str(&format!("{ptr}/reference"))
            .ok_or_else(|| self.missing(field))?;
        r.strip_prefix("Patient/")
            .and_then(|id| athena_client::api::fhir::ids::patient_id(id.split('/').next()?))
            .map(str::to_owned)
            .ok_or_else(|| FhirMapError::BadPatientReference {
                resource_type: self.resource_type,
                id: self.id.to_owned(),
                field,
            })
    }
    /// The Attachment at `ptr`: the reference always, `data` only within `inline_max` decoded
    /// bytes (0 = never).
    pub fn attachment(&self, ptr: &str, inline_max: u64) -> Option<Attachment> {
        let a = self.at(ptr)?;
        let data = text(a.get("data"));
        // Base64: 3 bytes per 4 characters, less the padding; the size without decoding.
        let inline_size = data.as_ref().map(|d| {
            let pad = d.bytes().rev().take_while(|b| *b == b'=').count() as u64;
            (d.len() as u64 / 4 * 3).saturating_sub(pad)
        });
        let size = a
            .get("size")
            .and_then(Value::as_i64)
            .or(inline_size.and_then(|s| i64::try_from(s).ok()));
        let keep = inline_size.is_some_and(|s| inline_max > 0 && s <= inline_max);
        Some(Attachment {
            content_type: text(a.get("contentType")),
            url: text(a.get("url")),
            size,
            hash: text(a.get("hash")),
            title: text(a.get("title")),
            creation: text(a.get("creation")).and_then(|s| fhir_time(&s)),
            data: data.filter(|_| keep),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_references_and_attachments() {
        assert_eq!(
            fhir_time("2025-01-15T10:00:05-05:00"),
            Some(TimestampMillis(1_736_953_205_000))
        );
        assert_eq!(fhir_time("1970-01-02"), Some(TimestampMillis(86_400_000)));
        assert_eq!(fhir_time("1970-02"), Some(TimestampMillis(31 * 86_400_000)));
        assert_eq!(fhir_time("1970"), Some(TimestampMillis(0)));
        assert_eq!(fhir_time("yesterday"), None);
        assert_eq!(
            reference_id("Encounter/a-195900.encounter-1042").as_deref(),
            Some("1042")
        );
        assert_eq!(reference_id("Practitioner/xyz").as_deref(), Some("xyz"));
        assert_eq!(
            reference_id("Observation/a-1.obs-9/_history/2").as_deref(),
            Some("9")
        );
        assert_eq!(reference_id("Patient/"), None);
        let r = json!({"resourceType": "DocumentReference", "id": "d",
            "subject": {"reference": "Organization/a-1.Practice-1"},
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8=",
                "hash": "qvTGHdzF6KLavt4PO0gs2a6pQ00="}}]});
        let f = Fhir {
            r: &r,
            resource_type: "DocumentReference",
            id: "d",
        };
        let never = f.attachment("/content/0/attachment", 0).unwrap();
        assert_eq!((never.size, never.data.as_deref()), (Some(5), None));
        let small = f.attachment("/content/0/attachment", 5).unwrap();
        assert_eq!(small.data.as_deref(), Some("aGVsbG8="));
        assert_eq!(f.attachment("/content/0/attachment", 4).unwrap().data, None);
        assert!(matches!(
            f.patient("/subject", "subject"),
            Err(FhirMapError::BadPatientReference {
                field: "subject",
                ..
            })
        ));
        assert!(matches!(
            f.patient("/nope", "nope"),
            Err(FhirMapError::Missing { field: "nope", .. })
        ));
    }
}
