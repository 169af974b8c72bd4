//! Clinical changes of the change generator (and of tests, through
//! [`crate::SimState::clinical_change`]): each creates or updates US Core resources in the
//! practice's clinical store and, through `Practice::change`, queues the matching changed-data
//! row and push notification, the way athena would signal the same change.
//!
//! | Kind | FHIR resources | Changed-data feed (event) | Push topic |
//! |---|---|---|---|
//! | `Vaccine` | Immunization | `chart/healthhistory/vaccine` (VaccineAdd/Update) | HistoricalVaccine.* |
//! | `Prescription` | MedicationRequest | `prescriptions` (PrescriptionAdd/Update) | Prescription.* |
//! | `Medication` | MedicationRequest | `chart/healthhistory/medication` | HistoricalMedication.* |
//! | `LabResult` | DiagnosticReport + laboratory Observation | `labresults` | LabResult.* |
//! | `ImagingResult` | DiagnosticReport (imaging) | `imagingresults` | ImagingResult.* |
//! | `Referral` | ServiceRequest | `orders` (OrderAdd/Update) | Order.submit / Order.update |
//! | `Visit` | Encounter, vital-sign Observations, progress-note DocumentReference, encounter-diagnosis Condition | `visits` (VisitAdd/Update) | Encounter.signoff, ClinicalEncounterDiagnosis.* |
//! | `Coverage` | Coverage | `patients` (UpdatePatient) | Patient.update |
//! | (`problem_change`) | Condition (problem-list item, from the chart) | `chart/healthhistory/problems` (ProblemAdd/Update) | PatientProblem.* |
//!
// Guess: athena does not document how its FHIR logical ids relate to the proprietary ids of a
// changed-data row. The simulator uses `a-{pid}.{token}-{proprietary id}` (tokens `vaccine`,
// `prescription`, `historicalmedication`, `labresult` / `labanalyte`, `imagingresult`, `order`,
// `visit` / `vitals` / `visitnote` / `encounterdiagnosis`, `coverage`), the pattern athena uses for
// `a-{pid}.E-{patientid}` and `a-{pid}.encounter-{id}`; so a row names its resource, and
// `crate::push` can give the FHIR focus of a notification.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::clinical::{CVX, ICD10, LOINC, RXNORM, SNOMED, UCUM, coding, iso};
use crate::model::{ChartItem, ChartKind, Practice};
use crate::util::{eastern_stamp, today_eastern, us_date};

const OBS_CAT: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// A clinical change the generator (or a test) can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClinicalKind {
    /// A historical vaccine (Immunization).
    Vaccine,
    /// A prescription (MedicationRequest, intent `order`).
    Prescription,
    /// A historical medication (MedicationRequest, intent `plan`).
    Medication,
    /// A lab result (DiagnosticReport + Observation).
    LabResult,
    /// An imaging result (DiagnosticReport, imaging category).
    ImagingResult,
    /// A referral order (ServiceRequest).
    Referral,
    /// A signed-off visit (Encounter, vitals, note, encounter diagnosis).
    Visit,
    /// The patient's insurance (Coverage).
    Coverage,
}

impl ClinicalKind {
    /// Every kind.
    pub const ALL: [ClinicalKind; 8] = [
        ClinicalKind::Vaccine,
        ClinicalKind::Prescription,
        ClinicalKind::Medication,
        ClinicalKind::LabResult,
        ClinicalKind::ImagingResult,
        ClinicalKind::Referral,
        ClinicalKind::Visit,
        ClinicalKind::Coverage,
    ];

    /// The changed-data feed path that signals this kind.
    pub fn feed(self) -> &'static str {
        match self {
            ClinicalKind::Vaccine => "chart/healthhistory/vaccine",
            ClinicalKind::Prescription => "prescriptions",
            ClinicalKind::Medication => "chart/healthhistory/medication",
            ClinicalKind::LabResult => "labresults",
            ClinicalKind::ImagingResult => "imagingresults",
            ClinicalKind::Referral => "orders",
            ClinicalKind::Visit => "visits",
            ClinicalKind::Coverage => "patients",
        }
    }

    /// Ledger operation name.
    pub fn operation(self) -> &'static str {
        match self {
            ClinicalKind::Vaccine => "AddVaccine",
            ClinicalKind::Prescription => "AddPrescription",
            ClinicalKind::Medication => "AddMedication",
            ClinicalKind::LabResult => "AddLabResult",
            ClinicalKind::ImagingResult => "AddImagingResult",
            ClinicalKind::Referral => "AddOrder",
            ClinicalKind::Visit => "SignOffVisit",
            ClinicalKind::Coverage => "UpdateCoverage",
        }
    }

    /// The id token of this kind's primary resource (`a-{pid}.{token}-{record id}`).
    fn token(self) -> &'static str {
        match self {
            ClinicalKind::Vaccine => "vaccine",
            ClinicalKind::Prescription => "prescription",
            ClinicalKind::Medication => "historicalmedication",
            ClinicalKind::LabResult => "labresult",
            ClinicalKind::ImagingResult => "imagingresult",
            ClinicalKind::Referral => "order",
            ClinicalKind::Visit => "visit",
            ClinicalKind::Coverage => "coverage",
        }
    }

    /// The proprietary id field of this kind's feed rows.
    fn id_key(self) -> &'static str {
        match self {
            ClinicalKind::Vaccine => "vaccineid",
            ClinicalKind::Prescription => "prescriptionid",
            ClinicalKind::Medication => "medicationentryid",
            ClinicalKind::LabResult => "labresultid",
            ClinicalKind::ImagingResult => "imagingresultid",
            ClinicalKind::Referral => "orderid",
            ClinicalKind::Visit => "visitid",
            ClinicalKind::Coverage => "insuranceid",
        }
    }

    fn events(self) -> (&'static str, &'static str) {
        match self {
            ClinicalKind::Vaccine => ("VaccineAdd", "VaccineUpdate"),
            ClinicalKind::Prescription => ("PrescriptionAdd", "PrescriptionUpdate"),
            ClinicalKind::Medication => ("MedicationHxAdd", "MedicationHxUpdate"),
            ClinicalKind::LabResult => ("LabResultAdd", "LabResultUpdate"),
            ClinicalKind::ImagingResult => ("ImagingResultAdd", "ImagingResultUpdate"),
            ClinicalKind::Referral => ("OrderAdd", "OrderUpdate"),
            ClinicalKind::Visit => ("VisitAdd", "VisitUpdate"),
            ClinicalKind::Coverage => ("UpdatePatient", "UpdatePatient"),
        }
    }
}

/// What one clinical change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClinicalChange {
    /// The proprietary id of the changed record (the feed row's id).
    pub record_id: String,
    /// FHIR `Type/id` references of every resource created or updated, in change order.
    pub resources: Vec<String>,
    /// Whether an existing record was updated (rather than created).
    pub updated: bool,
}

/// The logical id the simulator gives the resource of proprietary record `id` (see the guess
/// at the top of this file).
pub fn fhir_id(practice: u64, token: &str, id: &str) -> String {
    format!("a-{practice}.{token}-{id}")
}

impl Practice {
    /// The department of `patient` (`1` when it has none); `None` for an unknown patient.
    fn patient_department(&self, patient: u64) -> Option<String> {
        Some(
            self.patients
                .get(&patient)?
                .department()
                .unwrap_or_else(|| "1".into()),
        )
    }

    /// Adds a problem to `patient`'s chart (a SNOMED CT code picked by `variant`, started
    /// today), or with `resolve` ends the patient's latest problem (an `END` event: served as
    /// `clinicalStatus` resolved with an abatement date): either way a problems feed row
    /// (ProblemAdd / ProblemUpdate) and its `PatientProblem.*` push notification. The problem
    /// is served as FHIR Condition `a-{pid}.problem-{problemid}`. `None` for an unknown patient
    /// (or nothing to resolve).
    pub fn problem_change(
        &mut self,
        patient: u64,
        variant: u64,
        resolve: bool,
        now: DateTime<Utc>,
    ) -> Option<ClinicalChange> {
        let dept = self.patient_department(patient)?;
        let today = us_date(today_eastern());
        let (item, event) = if resolve {
            let c = self
                .chart
                .iter_mut()
                .rev()
                .find(|c| c.kind == ChartKind::Problem && c.patient_id == patient)?;
            if let Some(es) = c.json.get_mut("events").and_then(Value::as_array_mut) {
                es.push(json!({"eventtype": "END", "enddate": today}));
            }
            c.json["lastmodified"] = json!(eastern_stamp(now));
            c.modified = now;
            (c.clone(), "ProblemUpdate")
        } else {
            let (code, name) = [
                ("38341003", "Hypertension"),
                ("44054006", "Type 2 diabetes"),
                ("195967001", "Asthma"),
            ][variant as usize % 3];
            let id = self.next_chart_id();
            let json = json!({"problemid": id, "patientid": patient, "departmentid": dept,
                "codeset": "SNOMED", "code": code, "name": name,
                "events": [{"eventtype": "START", "startdate": today}],
                "lastmodified": eastern_stamp(now)});
            let item = ChartItem {
                id,
                kind: ChartKind::Problem,
                patient_id: patient,
                department_id: dept.clone(),
                json,
                modified: now,
            };
            self.chart.push(item.clone());
            (item, "ProblemAdd")
        };
        self.change(
            "chart/healthhistory/problems",
            event,
            Some(dept),
            Some(patient.to_string()),
            item.json.clone(),
        );
        Some(ClinicalChange {
            record_id: item.id.to_string(),
            resources: vec![format!(
                "Condition/{}",
                fhir_id(self.id, "problem", &item.id.to_string())
            )],
            updated: resolve,
        })
    }

    /// Makes one clinical change for `patient`: creates a new record, or (with `update` and an
    /// earlier record of this kind for the patient) updates the latest one. `variant` picks the
    /// codes (any number; the generator passes a random one). Returns `None` for an unknown
    /// patient.
    pub fn clinical_change(
        &mut self,
        kind: ClinicalKind,
        patient: u64,
        variant: u64,
        update: bool,
        now: DateTime<Utc>,
    ) -> Option<ClinicalChange> {
        let dept = self.patient_department(patient)?;
        let pid = self.id;
        // The patient's latest record of this kind, found by its primary resource's id.
        let prefix = format!("a-{pid}.{}-", kind.token());
        let earlier = update
            .then(|| {
                self.clinical
                    .iter()
                    .filter(|(_, r)| r.patient_id == patient)
                    .filter_map(|(id, _)| id.strip_prefix(&prefix)?.parse::<u64>().ok())
                    .max()
            })
            .flatten();
        let updated = earlier.is_some();
        let record_id = earlier.unwrap_or_else(|| self.next_chart_id()).to_string();
        let v = variant as usize;
        let subject = json!({"reference": format!("Patient/a-{pid}.E-{patient}")});
        let provider = format!("Practitioner/a-{pid}.Provider-{}", 71 + patient % 4);
        let rid = |token: &str| fhir_id(pid, token, &record_id);
        let mut row = json!({});
        let mut out: Vec<Value> = Vec::new();
        match kind {
            ClinicalKind::Vaccine => {
                let (cvx, name) = [
                    ("140", "Influenza, seasonal, injectable, preservative free"),
                    ("208", "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose"),
                    ("115", "Tdap"),
                ][v % 3];
                let status = if updated {
                    "entered-in-error"
                } else {
                    "completed"
                };
                out.push(json!({
                    "resourceType": "Immunization", "id": rid("vaccine"), "status": status,
                    "vaccineCode": coding(CVX, cvx, name), "patient": subject,
                    "occurrenceDateTime": iso(now), "primarySource": true,
                    "lotNumber": format!("SIM{}", 1000 + v % 9000),
                    "doseQuantity": {"value": 0.5, "unit": "mL", "system": UCUM, "code": "mL"},
                    "performer": [{"actor": {"reference": provider}}],
                }));
                row = json!({"cvx": cvx, "description": name, "status": status});
            }
            ClinicalKind::Prescription | ClinicalKind::Medication => {
                let (rx, name) = [
                    ("860975", "metformin hydrochloride 500 MG Oral Tablet"),
                    ("197361", "amlodipine 5 MG Oral Tablet"),
                    ("314076", "lisinopril 10 MG Oral Tablet"),
                ][v % 3];
                let (token, intent) = if kind == ClinicalKind::Prescription {
                    ("prescription", "order")
                } else {
                    ("historicalmedication", "plan")
                };
                let status = if updated { "stopped" } else { "active" };
                out.push(json!({
                    "resourceType": "MedicationRequest", "id": rid(token), "status": status,
                    "intent": intent, "medicationCodeableConcept": coding(RXNORM, rx, name),
                    "subject": subject, "authoredOn": iso(now), "requester": {"reference": provider},
                    "dosageInstruction": [{"text": "1 tablet by mouth daily"}],
                }));
                row = json!({"rxnormcode": rx, "medication": name, "status": status});
            }
            ClinicalKind::LabResult => {
                let (loinc, name, unit, lo, hi) = [
                    (
                        "2345-7",
                        "Glucose [Mass/volume] in Serum or Plasma",
                        "mg/dL",
                        70,
                        99,
                    ),
                    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12, 17),
                    (
                        "2093-3",
                        "Cholesterol [Mass/volume] in Serum or Plasma",
                        "mg/dL",
                        100,
                        199,
                    ),
                ][v % 3];
                let value = lo + (v as i64 / 3) % (hi - lo + 20);
                let status = if updated { "corrected" } else { "final" };
                let analyte = rid("labanalyte");
                out.push(json!({
                    "resourceType": "Observation", "id": analyte, "status": status,
                    "category": [coding(OBS_CAT, "laboratory", "Laboratory")],
                    "code": coding(LOINC, loinc, name), "subject": subject,
                    "effectiveDateTime": iso(now), "issued": iso(now),
                    "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
                    "referenceRange": [{"low": {"value": lo, "unit": unit, "system": UCUM, "code": unit},
                                        "high": {"value": hi, "unit": unit, "system": UCUM, "code": unit}}],
                }));
                out.push(json!({
                    "resourceType": "DiagnosticReport", "id": rid("labresult"), "status": status,
                    "category": [coding("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")],
                    "code": coding(LOINC, loinc, name), "subject": subject,
                    "effectiveDateTime": iso(now), "issued": iso(now),
                    "result": [{"reference": format!("Observation/{analyte}")}],
                    "performer": [{"reference": provider}],
                }));
                row = json!({"status": if updated { "CLOSED" } else { "NEW" },
                    "analytes": [{"loinc": loinc, "analytename": name, "value": value.to_string(), "units": unit}],
                    "lastmodifieddatetime": now.with_timezone(&chrono_tz::America::New_York)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)});
            }
            ClinicalKind::ImagingResult => {
                let (loinc, name) = [
                    ("36643-5", "XR Chest 2 Views"),
                    ("24558-9", "CT Head WO contrast"),
                ][v % 2];
                let status = if updated { "amended" } else { "final" };
                out.push(json!({
                    "resourceType": "DiagnosticReport", "id": rid("imagingresult"), "status": status,
                    "category": [coding("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD", "Radiology")],
                    "code": coding(LOINC, loinc, name), "subject": subject,
                    "effectiveDateTime": iso(now), "issued": iso(now),
                    "performer": [{"reference": provider}],
                    "conclusion": "No acute findings.",
                }));
                row = json!({"loinc": loinc, "description": name, "status": status});
            }
            ClinicalKind::Referral => {
                let (icd, dx) = [
                    ("I10", "Essential hypertension"),
                    ("M54.5", "Low back pain"),
                ][v % 2];
                let status = if updated { "completed" } else { "active" };
                out.push(json!({
                    "resourceType": "ServiceRequest", "id": rid("order"), "status": status,
                    "intent": "order",
                    "category": [coding(SNOMED, "3457005", "Patient referral")],
                    "code": coding(SNOMED, "306206005", "Referral to service"), "priority": "routine",
                    "subject": subject, "authoredOn": iso(now), "requester": {"reference": provider},
                    "performer": [{"reference": format!("Practitioner/a-{pid}.Provider-74")}],
                    "reasonCode": [coding(ICD10, icd, dx)],
                }));
                row = json!({"ordertype": "REFERRAL", "status": status, "icd10code": icd});
            }
            ClinicalKind::Visit => {
                let enc_id = rid("visit");
                let enc = json!({"reference": format!("Encounter/{enc_id}")});
                let status = if updated {
                    "entered-in-error"
                } else {
                    "finished"
                };
                out.push(json!({
                    "resourceType": "Encounter", "id": enc_id, "status": status,
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                    "type": [coding(SNOMED, "185349003", "Encounter for check up")],
                    "subject": subject, "participant": [{"individual": {"reference": provider}}],
                    "period": {"start": iso(now - Duration::minutes(30)), "end": iso(now)},
                    "serviceProvider": {"reference": format!("Organization/a-{pid}.Department-{dept}")},
                }));
                for (i, (code, name, value, unit)) in [
                    ("8867-4", "Heart rate", 60 + (v % 40) as i64, "/min"),
                    (
                        "8480-6",
                        "Systolic blood pressure",
                        105 + (v % 45) as i64,
                        "mm[Hg]",
                    ),
                ]
                .into_iter()
                .enumerate()
                {
                    out.push(json!({
                        "resourceType": "Observation", "id": fhir_id(pid, "vitals", &format!("{record_id}{i}")),
                        "status": if updated { "amended" } else { "final" },
                        "category": [coding(OBS_CAT, "vital-signs", "Vital Signs")],
                        "code": coding(LOINC, code, name), "subject": subject, "encounter": enc,
                        "effectiveDateTime": iso(now - Duration::minutes(20)),
                        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
                    }));
                }
                let note = rid("visitnote");
                out.push(json!({
                    "resourceType": "DocumentReference", "id": note, "status": "current",
                    "docStatus": if updated { "amended" } else { "final" },
                    "type": coding(LOINC, "11506-3", "Progress note"),
                    "category": [coding("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note", "Clinical Note")],
                    "subject": subject, "date": iso(now), "author": [{"reference": provider}],
                    "content": [{"attachment": {"contentType": "text/plain", "url": format!("Binary/{note}"),
                        "size": 900 + v % 400, "title": "Progress note", "creation": iso(now)}}],
                    "context": {"encounter": [enc]},
                }));
                let (icd, sct, dx) = [
                    ("I10", "38341003", "Essential hypertension"),
                    ("E11.9", "44054006", "Type 2 diabetes mellitus"),
                    ("J06.9", "54150009", "Upper respiratory infection"),
                ][v % 3];
                out.push(json!({
                    "resourceType": "Condition", "id": rid("encounterdiagnosis"),
                    "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
                    "verificationStatus": coding("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        if updated { "entered-in-error" } else { "confirmed" }, "Verification"),
                    "category": [coding("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis", "Encounter Diagnosis")],
                    "code": {"coding": [{"system": ICD10, "code": icd, "display": dx}, {"system": SNOMED, "code": sct, "display": dx}], "text": dx},
                    "subject": subject, "encounter": enc, "onsetDateTime": iso(now), "recordedDate": iso(now),
                }));
                row = json!({"status": if updated { "REOPENED" } else { "SIGNEDOFF" }, "encounterdate": iso(now)});
            }
            ClinicalKind::Coverage => {
                let (payer, plan) = [
                    ("881", "Synthetic Health Plan"),
                    ("882", "Synthetic Medicare Advantage"),
                ][v % 2];
                out.push(json!({
                    "resourceType": "Coverage", "id": rid("coverage"),
                    "status": if updated { "cancelled" } else { "active" },
                    "type": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "HIP", "health insurance plan policy"),
                    "subscriberId": format!("SIM{patient:08}"), "beneficiary": subject,
                    "relationship": coding("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"),
                    "payor": [{"reference": format!("Organization/a-{pid}.Organization-{payer}"), "display": plan}],
                    "period": {"start": iso(now).get(..10).unwrap_or("2026-01-01")}, "order": 1,
                }));
            }
        }
        let resources: Vec<String> = out
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap_or(""),
                    r["id"].as_str().unwrap_or("")
                )
            })
            .collect();
        for r in out {
            self.put_clinical(r, now);
        }
        let (add, upd) = kind.events();
        let event = if updated { upd } else { add };
        if kind == ClinicalKind::Coverage {
            // athena keeps insurance on the patient record: the change is a patient update.
            if let Some(p) = self.patients.get_mut(&patient) {
                p.modified = now;
            }
            self.patient_changed(patient, event);
        } else {
            row[kind.id_key()] = json!(record_id.parse::<u64>().unwrap_or_default());
            row["patientid"] = json!(patient);
            row["departmentid"] = json!(dept);
            if row.get("lastmodifieddatetime").is_none() {
                row["lastmodified"] = json!(eastern_stamp(now));
            }
            // Medication and lab result rows are chart items too (the proprietary chart reads).
            let chart_kind = match kind {
                ClinicalKind::Medication => Some(ChartKind::Medication),
                ClinicalKind::LabResult => Some(ChartKind::LabResult),
                _ => None,
            };
            if let Some(ck) = chart_kind {
                let id: u64 = record_id.parse().unwrap_or_default();
                match self.chart.iter_mut().find(|c| c.id == id && c.kind == ck) {
                    Some(c) => {
                        c.json = row.clone();
                        c.modified = now;
                    }
                    None => self.chart.push(ChartItem {
                        id,
                        kind: ck,
                        patient_id: patient,
                        department_id: dept.clone(),
                        json: row.clone(),
                        modified: now,
                    }),
                }
            }
            self.change(
                kind.feed(),
                event,
                Some(dept),
                Some(patient.to_string()),
                row,
            );
        }
        Some(ClinicalChange {
            record_id,
            resources,
            updated,
        })
    }
}
