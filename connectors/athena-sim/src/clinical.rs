//! US Core-shaped clinical FHIR resources (vital-sign and laboratory Observations,
//! DiagnosticReport, DocumentReference, Immunization, Condition, MedicationRequest,
//! AllergyIntolerance, Coverage, Encounter, ServiceRequest), linked to the practice's patients
//! and to an Encounter of each patient, served by the patient-scoped searches and reads of
//! `api/fhir.rs`.
//!
//! Every seeded patient gets one set (`Practice::seeded`), with values derived from the patient
//! id rather than the seed's random stream, so adding them changed no other seeded value.
//! Tests add or update resources with [`crate::SimState::put_clinical`].
//!
// Guess: athena's logical ids for these resources are undocumented; we use
// `a-{pid}.{kind}-{n}` with kinds `encounter`, `vitals`, `lab`, `labreport`, `clinicaldocument`,
// `vaccine`, `diagnosis`, `medicationrequest`, `allergyintolerance`, `coverage`, `referral`,
// and `n` from one per-practice counter starting at 7000001 (clear of appointment ids).

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::model::Practice;

/// Resource types this module holds (besides the appointment-derived Encounters and the
/// chart-derived Conditions and AllergyIntolerances of `api/fhir.rs`).
pub const CLINICAL_TYPES: &[&str] = &[
    "Observation",
    "DiagnosticReport",
    "DocumentReference",
    "Immunization",
    "Condition",
    "MedicationRequest",
    "AllergyIntolerance",
    "Coverage",
    "Encounter",
    "ServiceRequest",
];

/// One stored clinical resource.
#[derive(Debug, Clone)]
pub struct ClinicalResource {
    /// athena patient id of its subject.
    pub patient_id: u64,
    /// Last change (`meta.lastUpdated`).
    pub modified: DateTime<Utc>,
    /// The resource.
    pub json: Value,
}

impl ClinicalResource {
    /// The resource type.
    pub fn resource_type(&self) -> &str {
        self.json["resourceType"].as_str().unwrap_or("")
    }
}

pub(crate) const LOINC: &str = "http://loinc.org";
pub(crate) const SNOMED: &str = "http://snomed.info/sct";
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";
pub(crate) const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub(crate) const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";
pub(crate) const CVX: &str = "http://hl7.org/fhir/sid/cvx";

pub(crate) fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}], "text": display})
}

fn category(system: &str, code: &str, display: &str) -> Value {
    json!([coding(system, code, display)])
}

pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Practice {
    /// Inserts or replaces a clinical resource (by `id`), stamping `meta.lastUpdated` with `now`
    /// and the `ah-practice` extension. Returns the logical id; `None` when the resource has no
    /// id or no `Patient/a-{pid}.E-{id}` subject of this practice.
    pub fn put_clinical(&mut self, mut json: Value, now: DateTime<Utc>) -> Option<String> {
        let id = json["id"].as_str()?.to_string();
        let subject = [
            "/subject/reference",
            "/patient/reference",
            "/beneficiary/reference",
        ]
        .iter()
        .find_map(|p| json.pointer(p).and_then(Value::as_str))?;
        let (pid, patient_id) = crate::api::fhir::parse_patient_id(subject)?;
        if pid != self.id {
            return None;
        }
        json["meta"] = json!({"lastUpdated": now.to_rfc3339()});
        json["extension"] = crate::api::fhir::practice_ext(self.id);
        self.clinical.insert(
            id.clone(),
            ClinicalResource {
                patient_id,
                modified: now,
                json,
            },
        );
        Some(id)
    }

    fn next_clinical(&mut self, kind: &str) -> String {
        let n = self.ids.clinical;
        self.ids.clinical += 1;
        format!("a-{}.{kind}-{n}", self.id)
    }

    /// Seeds one set of clinical resources for `patient`: an ambulatory Encounter yesterday and,
    /// linked to it, three vital signs (LOINC 8867-4 heart rate, 8480-6 systolic, 29463-7 body
    /// weight), a glucose lab (2345-7) with its DiagnosticReport, a progress note
    /// DocumentReference, a CVX Immunization, an ICD-10/SNOMED encounter diagnosis, an RxNorm
    /// MedicationRequest, an AllergyIntolerance, a Coverage and a referral ServiceRequest.
    pub fn seed_clinical(&mut self, patient: u64, now: DateTime<Utc>) {
        let pid = self.id;
        let subject = json!({"reference": format!("Patient/a-{pid}.E-{patient}")});
        let provider = format!("Practitioner/a-{pid}.Provider-{}", 71 + patient % 4);
        let at = now - Duration::days(1);
        let enc_id = self.next_clinical("encounter");
        let enc = json!({"reference": format!("Encounter/{enc_id}")});
        let k = patient as usize;
        let mut out = vec![json!({
            "resourceType": "Encounter", "id": enc_id, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
            "type": [coding(SNOMED, "185349003", "Encounter for check up")],
            "subject": subject,
            "participant": [{"individual": {"reference": provider}}],
            "period": {"start": iso(at), "end": iso(at + Duration::minutes(30))},
            "serviceProvider": {"reference": format!("Organization/a-{pid}.Department-1")},
        })];
        let vital_cat = category(
            "http://terminology.hl7.org/CodeSystem/observation-category",
            "vital-signs",
            "Vital Signs",
        );
        let vitals = [
            ("8867-4", "Heart rate", 60.0 + (k % 30) as f64, "/min"),
            (
                "8480-6",
                "Systolic blood pressure",
                110.0 + (k % 40) as f64,
                "mm[Hg]",
            ),
            ("29463-7", "Body weight", 55.0 + (k % 50) as f64, "kg"),
        ];
        for (code, name, value, unit) in vitals {
            let id = self.next_clinical("vitals");
            out.push(json!({
                "resourceType": "Observation", "id": id, "status": "final",
                "category": vital_cat, "code": coding(LOINC, code, name),
                "subject": subject, "encounter": enc, "effectiveDateTime": iso(at),
                "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
            }));
        }
        let glucose = 80 + (k % 60) as i64;
        let lab_id = self.next_clinical("lab");
        out.push(json!({
            "resourceType": "Observation", "id": lab_id, "status": "final",
            "category": category("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory"),
            "code": coding(LOINC, "2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
            "subject": subject, "encounter": enc, "effectiveDateTime": iso(at), "issued": iso(at + Duration::hours(4)),
            "valueQuantity": {"value": glucose, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
            "interpretation": [coding("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                if glucose > 99 { "H" } else { "N" }, if glucose > 99 { "High" } else { "Normal" })],
            "referenceRange": [{"low": {"value": 70, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
                                "high": {"value": 99, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}}],
        }));
        let report_id = self.next_clinical("labreport");
        out.push(json!({
            "resourceType": "DiagnosticReport", "id": report_id, "status": "final",
            "category": category("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory"),
            "code": coding(LOINC, "2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
            "subject": subject, "encounter": enc, "effectiveDateTime": iso(at),
            "issued": iso(at + Duration::hours(4)), "result": [{"reference": format!("Observation/{lab_id}")}],
            "performer": [{"reference": provider}],
        }));
        // Guess: attachment URLs point at `Binary/{id}` relative to the FHIR base (the
        // simulator does not serve Binary).
        let doc_id = self.next_clinical("clinicaldocument");
        out.push(json!({
            "resourceType": "DocumentReference", "id": doc_id, "status": "current", "docStatus": "final",
            "type": coding(LOINC, "11506-3", "Progress note"),
            "category": category("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note", "Clinical Note"),
            "subject": subject, "date": iso(at + Duration::hours(1)),
            "author": [{"reference": provider}],
            "content": [{"attachment": {"contentType": "text/plain", "url": format!("Binary/{doc_id}"),
                "size": 1024 + k % 512, "title": "Progress note", "creation": iso(at + Duration::hours(1))}}],
            "context": {"encounter": [enc]},
        }));
        let (cvx, vaccine) = [
            ("140", "Influenza, seasonal, injectable, preservative free"),
            ("208", "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose"),
        ][k % 2];
        let vac_id = self.next_clinical("vaccine");
        out.push(json!({
            "resourceType": "Immunization", "id": vac_id, "status": "completed",
            "vaccineCode": coding(CVX, cvx, vaccine), "patient": subject, "encounter": enc,
            "occurrenceDateTime": iso(at), "primarySource": true, "lotNumber": format!("SIM{}", 1000 + k % 9000),
            "doseQuantity": {"value": 0.5, "unit": "mL", "system": UCUM, "code": "mL"},
            "performer": [{"actor": {"reference": provider}}],
        }));
        let (icd, sct, dx) = [
            ("I10", "38341003", "Essential hypertension"),
            ("E11.9", "44054006", "Type 2 diabetes mellitus"),
            ("J06.9", "54150009", "Upper respiratory infection"),
        ][k % 3];
        let dx_id = self.next_clinical("diagnosis");
        out.push(json!({
            "resourceType": "Condition", "id": dx_id,
            "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
            "verificationStatus": coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
            "category": category("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis"),
            "code": {"coding": [{"system": ICD10, "code": icd, "display": dx}, {"system": SNOMED, "code": sct, "display": dx}], "text": dx},
            "subject": subject, "encounter": enc, "onsetDateTime": iso(at), "recordedDate": iso(at),
        }));
        let (rx, med) = [
            ("860975", "metformin hydrochloride 500 MG Oral Tablet"),
            ("197361", "amlodipine 5 MG Oral Tablet"),
            ("314076", "lisinopril 10 MG Oral Tablet"),
        ][k % 3];
        let med_id = self.next_clinical("medicationrequest");
        out.push(json!({
            "resourceType": "MedicationRequest", "id": med_id, "status": "active", "intent": "order",
            "medicationCodeableConcept": coding(RXNORM, rx, med), "subject": subject, "encounter": enc,
            "authoredOn": iso(at), "requester": {"reference": provider},
            "dosageInstruction": [{"text": "1 tablet by mouth daily"}],
            "dispenseRequest": {"numberOfRepeatsAllowed": 3, "quantity": {"value": 30, "unit": "tablet"}},
        }));
        let (sys, code, allergen, cat) = [
            (RXNORM, "7980", "Penicillin G", "medication"),
            (SNOMED, "256349002", "Peanut protein", "food"),
        ][k % 2];
        let allergy_id = self.next_clinical("allergyintolerance");
        out.push(json!({
            "resourceType": "AllergyIntolerance", "id": allergy_id,
            "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
            "verificationStatus": coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"),
            "type": "allergy", "category": [cat], "criticality": "high",
            "code": coding(sys, code, allergen), "patient": subject, "recordedDate": iso(at),
            "reaction": [{"manifestation": [coding(SNOMED, "271807003", "Eruption of skin")], "severity": "moderate"}],
        }));
        let cov_id = self.next_clinical("coverage");
        out.push(json!({
            "resourceType": "Coverage", "id": cov_id, "status": "active",
            "type": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "HIP", "health insurance plan policy"),
            "subscriberId": format!("SIM{patient:08}"), "beneficiary": subject,
            "relationship": coding("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"),
            "payor": [{"reference": format!("Organization/a-{pid}.Organization-881"), "display": "Synthetic Health Plan"}],
            "class": [{"type": coding("http://terminology.hl7.org/CodeSystem/coverage-class", "group", "Group"), "value": "G-100", "name": "Synthetic Employer Group"}],
            "period": {"start": "2025-01-01"}, "order": 1,
        }));
        let ref_id = self.next_clinical("referral");
        out.push(json!({
            "resourceType": "ServiceRequest", "id": ref_id, "status": "active", "intent": "order",
            "category": category(SNOMED, "3457005", "Patient referral"),
            "code": coding(SNOMED, "306206005", "Referral to service"), "priority": "routine",
            "subject": subject, "encounter": enc, "authoredOn": iso(at),
            "requester": {"reference": provider},
            "performer": [{"reference": format!("Practitioner/a-{pid}.Provider-74")}],
            "reasonCode": [coding(ICD10, icd, dx)],
        }));
        for r in out {
            self.put_clinical(r, now);
        }
    }

    /// Puts the US Core resource of a chart write made through the proprietary API
    /// (`api/chart.rs`), so the write shows in the patient's FHIR reads. `id_key` names the
    /// write's kind (its id field in athena's answer); `v` is the record as athena lists it.
    /// Problems and allergies need nothing here (`api/fhir.rs` derives them from the chart);
    /// family history has no US Core resource.
    pub fn chart_write_fhir(&mut self, id_key: &str, patient: u64, v: &Value, now: DateTime<Utc>) {
        let pid = self.id;
        let s = |k: &str| match v.get(k) {
            Some(Value::String(x)) => x.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let id = s(id_key);
        let subject = json!({"reference": format!("Patient/a-{pid}.E-{patient}")});
        let day = |k: &str| {
            crate::util::parse_us_date(&s(k))
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| iso(now)[..10].to_string())
        };
        let mut r = match id_key {
            "vitalid" => {
                let (code, name, unit) = match s("clinicalelementid").as_str() {
                    "VITALS.WEIGHT" => ("29463-7", "Body weight", "g"),
                    "VITALS.HEIGHT" => ("8302-2", "Body height", "cm"),
                    "VITALS.TEMPERATURE" => ("8310-5", "Body temperature", "[degF]"),
                    "VITALS.BLOODPRESSURE.SYSTOLIC" => {
                        ("8480-6", "Systolic blood pressure", "mm[Hg]")
                    }
                    "VITALS.BLOODPRESSURE.DIASTOLIC" => {
                        ("8462-4", "Diastolic blood pressure", "mm[Hg]")
                    }
                    "VITALS.HEARTRATE" => ("8867-4", "Heart rate", "/min"),
                    "VITALS.RESPIRATIONRATE" => ("9279-1", "Respiratory rate", "/min"),
                    "VITALS.BMI" => ("39156-5", "Body mass index", "kg/m2"),
                    _ => ("3150-0", "Inhaled oxygen concentration", "%"),
                };
                let value: f64 = s("value").parse().unwrap_or_default();
                json!({"resourceType": "Observation", "id": format!("a-{pid}.vitals-{id}"), "status": "final",
                    "category": category("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "Vital Signs"),
                    "code": coding(LOINC, code, name), "subject": subject, "effectiveDateTime": day("readingtaken"),
                    "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}})
            }
            "vaccineid" => {
                json!({"resourceType": "Immunization", "id": format!("a-{pid}.vaccine-{id}"),
                "status": "completed", "vaccineCode": coding(CVX, &s("cvx"), "Vaccine"), "patient": subject,
                "occurrenceDateTime": day("administerdate"), "primarySource": false})
            }
            "medicationentryid" => json!({"resourceType": "MedicationRequest",
                "id": format!("a-{pid}.medicationrequest-{id}"), "status": "active", "intent": "plan",
                "reportedBoolean": true, "subject": subject, "authoredOn": iso(now),
                "medicationCodeableConcept": coding("https://fhir.athena.io/sid/ah-medication", &s("medicationid"), &s("medication"))}),
            "procedureid" => {
                json!({"resourceType": "Procedure", "id": format!("a-{pid}.procedure-{id}"),
                "status": "completed", "code": coding(SNOMED, &s("procedurecode"), "Past surgical procedure"),
                "subject": subject, "performedDateTime": day("proceduredate")})
            }
            "diagnosisid" => {
                json!({"resourceType": "Condition", "id": format!("a-{pid}.diagnosis-{id}"),
                "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
                "category": category("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis"),
                "code": coding(SNOMED, &s("snomedcode"), "Encounter diagnosis"), "subject": subject, "recordedDate": iso(now)})
            }
            "documentid" => {
                json!({"resourceType": "ServiceRequest", "id": format!("a-{pid}.referral-{id}"),
                "status": "active", "intent": "order", "category": category(SNOMED, "3457005", "Patient referral"),
                "code": coding(SNOMED, "306206005", "Referral to service"), "subject": subject, "authoredOn": iso(now),
                "reasonCode": [coding(SNOMED, &s("diagnosissnomedcode"), "Referral diagnosis")]})
            }
            "labresultid" => {
                let a = v.pointer("/analytes/0").cloned().unwrap_or_default();
                let text = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                json!({"resourceType": "Observation", "id": format!("a-{pid}.lab-{id}"), "status": "final",
                    "category": category("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory"),
                    "code": coding(LOINC, &text("loinc"), &text("analytename")), "subject": subject,
                    "effectiveDateTime": day("observationdate"), "valueString": text("value")})
            }
            _ => return,
        };
        if let Some(enc) = v.get("encounterid").and_then(Value::as_u64) {
            r["encounter"] = json!({"reference": format!("Encounter/a-{pid}.encounter-{enc}")});
        }
        self.put_clinical(r, now);
    }
}
