//! `Immunization`: `com.athenaconnect.events.ImmunizationChanged` (`schemas/events/ImmunizationChanged.avsc`), CVX-coded vaccinations, read by id or patient-scoped search after a signal, or from a bulk export; one mapper for every path.

use serde::{Deserialize, Serialize};

use super::fhir::{Coding, Fhir, FhirChanged, FhirMapError, FhirPayload, Quantity};
use crate::TimestampMillis;

/// `com.athenaconnect.events.Immunization`: A US Core Immunization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/, the contract.
pub struct Immunization {
    pub fhir_id: String,
    pub patient_id: String,
    pub encounter_id: Option<String>,
    pub status: String,
    #[serde(default)]
    pub status_reason: Vec<Coding>,
    #[serde(default)]
    pub vaccine_codes: Vec<Coding>,
    pub occurrence_at: Option<TimestampMillis>,
    pub occurrence_text: Option<String>,
    pub primary_source: Option<bool>,
    pub lot_number: Option<String>,
    #[serde(default)]
    pub site: Vec<Coding>,
    #[serde(default)]
    pub route: Vec<Coding>,
    pub dose_quantity: Option<Quantity>,
    #[serde(default)]
    pub performer_ids: Vec<String>,
    pub last_updated: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.ImmunizationChanged`.
pub type ImmunizationChanged = FhirChanged<Immunization>;

impl FhirPayload for Immunization {
    const RESOURCE_TYPE: &'static str = "Immunization";
    const EVENT_SCHEMA: &'static str = "com.athenaconnect.events.ImmunizationChanged";

    fn patient_id(&self) -> &str {
        &self.patient_id
    }

    fn map(f: &Fhir<'_>) -> Result<Self, FhirMapError> {
        let occurrence_at = f.time("/occurrenceDateTime");
        let occurrence_text = f.str("/occurrenceString");
        if occurrence_at.is_none() && occurrence_text.is_none() {
            return Err(f.missing("occurrence[x]"));
        }
        let payload = Immunization {
            fhir_id: f.id.to_owned(),
            patient_id: f.patient("/patient", "patient")?,
            encounter_id: f.reference("/encounter"),
            status: f.req_str("/status", "status")?,
            status_reason: f.codings("/statusReason"),
            vaccine_codes: f.req_codings("/vaccineCode", "vaccineCode.coding")?,
            occurrence_at,
            occurrence_text,
            primary_source: f.bool("/primarySource"),
            lot_number: f.str("/lotNumber"),
            site: f.codings("/site"),
            route: f.codings("/route"),
            dose_quantity: f.quantity("/doseQuantity"),
            performer_ids: f.references("/performer", "/actor"),
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
    fn cvx_immunization_maps_and_bad_ones_fail() {
        let r = json!({"resourceType": "Immunization", "id": "a-195900.vaccine-3311", "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
            "patient": {"reference": "Patient/a-195900.E-7965"},
            "occurrenceDateTime": "2025-10-01", "primarySource": true, "lotNumber": "FL2025-88",
            "doseQuantity": {"value": 0.5, "unit": "mL", "system": "http://unitsofmeasure.org", "code": "mL"},
            "performer": [{"actor": {"reference": "Practitioner/a-195900.Provider-71"}}]});
        let e: ImmunizationChanged = typed_from_fhir("195900", &r, &seen(true)).unwrap();
        assert_eq!(e.payload.vaccine_codes[0].code, "140");
        assert_eq!(e.payload.patient_id, "7965");
        assert_eq!(e.payload.performer_ids, vec!["71"]);
        assert_eq!(e.payload.dose_quantity.as_ref().map(|q| q.value), Some(0.5));
        assert_eq!(
            e.payload.occurrence_at,
            Some(TimestampMillis(1_759_276_800_000))
        );
        let mut bad = r.clone();
        bad.as_object_mut().unwrap().remove("occurrenceDateTime");
        assert!(matches!(
            typed_from_fhir::<ImmunizationChanged>("195900", &bad, &seen(true)),
            Err(FhirMapError::Missing {
                field: "occurrence[x]",
                ..
            })
        ));
    }
}
