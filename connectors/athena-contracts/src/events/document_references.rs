//! `DocumentReference`: `com.athenaconnect.events.DocumentReferenceChanged` (`schemas/events/DocumentReferenceChanged.avsc`), clinical notes and documents as metadata plus attachment references (content fetched on demand; inline data only within [`INLINE_ATTACHMENT_MAX_BYTES`], default never), read by id or patient-scoped search after a signal, or from a bulk export; one mapper for every path.

use serde::{Deserialize, Serialize};

use super::fhir::{Attachment, Coding, Fhir, FhirChanged, FhirMapError, FhirPayload, INLINE_ATTACHMENT_MAX_BYTES};
use crate::TimestampMillis;

/// `com.athenaconnect.events.DocumentReference`: A US Core DocumentReference: metadata plus attachment references.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct DocumentReference {
    pub fhir_id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    pub status: String,
    pub doc_status: Option<String>,
    #[serde(default)]
    pub types: Vec<Coding>,
    #[serde(default)]
    pub categories: Vec<Coding>,
    pub date: Option<TimestampMillis>,
    #[serde(default)]
    pub author_ids: Vec<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    pub last_updated: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.DocumentReferenceChanged`.
pub type DocumentReferenceChanged = FhirChanged<DocumentReference>;

impl FhirPayload for DocumentReference {
    const RESOURCE_TYPE: &'static str = "DocumentReference";
    const EVENT_SCHEMA: &'static str = "com.athenaconnect.events.DocumentReferenceChanged";

    fn patient_id(&self) -> &str {
        &self.patient_id
    }

    fn map(f: &Fhir<'_>) -> Result<Self, FhirMapError> {
        let n =
            f.r.get("content")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len);
        let attachments: Vec<Attachment> = (0..n)
            .filter_map(|i| {
                f.attachment(
                    &format!("/content/{i}/attachment"),
                    INLINE_ATTACHMENT_MAX_BYTES,
                )
            })
            .collect();
        if attachments.is_empty() {
            return Err(f.missing("content.attachment"));
        }
        let payload = DocumentReference {
            fhir_id: f.id.to_owned(),
            patient_id: f.patient("/subject", "subject")?,
            encounter_id: f.references("/context/encounter", "").into_iter().next(),
            status: f.req_str("/status", "status")?,
            doc_status: f.str("/docStatus"),
            types: f.codings("/type"),
            categories: f.codings_all("/category"),
            date: f.time("/date"),
            author_ids: f.references("/author", ""),
            description: f.str("/description"),
            attachments,
            last_updated: f.time("/meta/lastUpdated"),
        };
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::fhir::test_seen as seen;
    use crate::mapping::typed_from_fhir;
    use serde_json::json;

    #[test]
    fn clinical_note_maps_as_a_reference_and_bad_ones_fail() {
        let r = json!({"resourceType": "DocumentReference", "id": "a-195900.clinicaldocument-5521",
            "status": "current", "docStatus": "final",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
            "category": [{"coding": [{"code": "clinical-note"}]}],
            "subject": {"reference": "Patient/a-195900.E-7965"},
            "context": {"encounter": [{"reference": "Encounter/a-195900.encounter-1042"}]},
            "date": "2025-11-24T15:43:20Z", "author": [{"reference": "Practitioner/a-195900.Provider-71"}],
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8=", "hash": "qvTGHdzF6KLavt4PO0gs2a6pQ00="}},
                        {"attachment": {"contentType": "application/pdf", "url": "https://x/Binary/9", "size": 99000}}]});
        let e: DocumentReferenceChanged = typed_from_fhir("195900", &r, &seen(true)).unwrap();
        let p = &e.payload;
        assert_eq!(p.types[0].code, "11506-3");
        assert_eq!(
            (p.encounter_id.as_deref(), p.author_ids.as_slice()),
            (Some("1042"), &["71".to_string()][..])
        );
        assert_eq!(p.attachments.len(), 2);
        assert_eq!(p.attachments[0].size, Some(5));
        assert_eq!(p.attachments[0].data, None, "inline limit 0: never inlined");
        assert_eq!(p.attachments[1].url.as_deref(), Some("https://x/Binary/9"));
        let mut empty = r.clone();
        empty["content"] = json!([]);
        assert!(matches!(
            typed_from_fhir::<DocumentReferenceChanged>("195900", &empty, &seen(true)),
            Err(FhirMapError::Missing {
                field: "content.attachment",
                ..
            })
        ));
    }
}
