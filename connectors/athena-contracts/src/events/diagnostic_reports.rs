//! `DiagnosticReport`: `com.athenaconnect.events.DiagnosticReportChanged` (`schemas/events/DiagnosticReportChanged.avsc`), lab and imaging reports and report-style notes, read by id or patient-scoped search after a signal, or from a bulk export; one mapper for every path.

use serde::{Deserialize, Serialize};

use super::fhir::{Attachment, Coding, Fhir, FhirChanged, FhirMapError, FhirPayload, INLINE_ATTACHMENT_MAX_BYTES};
use crate::TimestampMillis;

/// `com.athenaconnect.events.DiagnosticReport`: A US Core DiagnosticReport (lab or note).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct DiagnosticReport {
    pub fhir_id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    pub status: String,
    #[serde(default)]
    pub categories: Vec<Coding>,
    #[serde(default)]
    pub codes: Vec<Coding>,
    pub code_text: Option<String>,
    pub effective_at: Option<TimestampMillis>,
    pub issued_at: Option<TimestampMillis>,
    #[serde(default)]
    pub result_ids: Vec<String>,
    #[serde(default)]
    pub performer_ids: Vec<String>,
    pub conclusion: Option<String>,
    #[serde(default)]
    pub conclusion_codes: Vec<Coding>,
    #[serde(default)]
    pub presented_form: Vec<Attachment>,
    pub last_updated: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.DiagnosticReportChanged`.
pub type DiagnosticReportChanged = FhirChanged<DiagnosticReport>;

impl FhirPayload for DiagnosticReport {
    const RESOURCE_TYPE: &'static str = "DiagnosticReport";
    const EVENT_SCHEMA: &'static str = "com.athenaconnect.events.DiagnosticReportChanged";

    fn patient_id(&self) -> &str {
        &self.patient_id
    }

    fn map(f: &Fhir<'_>) -> Result<Self, FhirMapError> {
        let presented_form = (0..f
            .r
            .get("presentedForm")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len))
            .filter_map(|i| {
                f.attachment(&format!("/presentedForm/{i}"), INLINE_ATTACHMENT_MAX_BYTES)
            })
            .collect();
        let payload = DiagnosticReport {
            fhir_id: f.id.to_owned(),
            patient_id: f.patient("/subject", "subject")?,
            encounter_id: f.reference("/encounter"),
            status: f.req_str("/status", "status")?,
            categories: f.codings_all("/category"),
            codes: f.req_codings("/code", "code.coding")?,
            code_text: f.str("/code/text"),
            effective_at: f
                .time("/effectiveDateTime")
                .or_else(|| f.time("/effectivePeriod/start")),
            issued_at: f.time("/issued"),
            result_ids: f.references("/result", ""),
            performer_ids: f.references("/performer", ""),
            conclusion: f.str("/conclusion"),
            conclusion_codes: f.codings_all("/conclusionCode"),
            presented_form,
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
    fn us_core_lab_report_maps_and_bad_ones_fail() {
        let r = json!({"resourceType": "DiagnosticReport", "id": "a-195900.labresult-1083590",
            "meta": {"lastUpdated": "2025-11-24T16:00:00Z"}, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
            "subject": {"reference": "Patient/a-195900.E-7965"},
            "effectiveDateTime": "2025-11-24T15:00:00Z", "issued": "2025-11-24T16:00:00Z",
            "result": [{"reference": "Observation/a-195900.labresult-1083590-2345-7"}],
            "presentedForm": [{"contentType": "application/pdf", "url": "https://x/Binary/1", "size": 48213, "data": "JVBERi0="}]});
        let e: DiagnosticReportChanged = typed_from_fhir("195900", &r, &seen(false)).unwrap();
        assert_eq!(e.payload.codes[0].code, "24323-8");
        assert_eq!(e.payload.categories[0].code, "LAB");
        assert_eq!(e.payload.result_ids, vec!["1083590-2345-7"]);
        let pdf = &e.payload.presented_form[0];
        assert_eq!(
            (pdf.size, pdf.data.as_deref()),
            (Some(48213), None),
            "never inlined by default"
        );
        assert_eq!(e.original, None);
        let mut bad = r.clone();
        bad["code"] = json!({});
        assert!(matches!(
            typed_from_fhir::<DiagnosticReportChanged>("195900", &bad, &seen(true)),
            Err(FhirMapError::Missing {
                field: "code.coding",
                ..
            })
        ));
    }
}
