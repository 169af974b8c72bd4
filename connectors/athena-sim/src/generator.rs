//! The change generator: deterministic (ChaCha8 seeded from `SimConfig::seed`) synthetic
//! activity across the configured practices — new/updated patients, bookings, cancellations,
//! check-ins, chart items, claims, provider updates and clinical changes of every US Core type
//! (`crate::clinical_changes`: vaccines, prescriptions, medications, lab and imaging results,
//! referral orders, signed-off visits with vitals, notes and diagnoses, coverage), plus rows on
//! every remaining changed-data feed, so every feed the simulator offers is filled. Every step
//! goes through the same domain operations as the API, so it produces the same ledger entries,
//! feed rows and push notifications a client's write would (ledger params carry
//! `source=generator`).

use chrono::{Duration as ChronoDuration, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::api::{appointments, claims, patients};
use crate::clinical_changes::ClinicalKind;
use crate::config::{ChangeKind, SimConfig};
use crate::model::{ChartItem, ChartKind, FIRST_NAMES, LAST_NAMES, Practice};
use crate::state::{World, apply_write};
use crate::util::eastern_stamp as stamp;
use crate::util::{Params, eastern_stamp, today_eastern, us_date};

const PROBLEMS: &[(&str, &str)] = &[
    ("84229001", "Fatigue"),
    ("38341003", "Hypertension"),
    ("44054006", "Type 2 diabetes"),
    ("195967001", "Asthma"),
];
const ALLERGENS: &[&str] = &["Peanut", "Penicillin", "Latex", "Shellfish"];

/// The feeds no other kind fills, with their id field, event and whether rows name a patient.
// Guess: the reference gives no row shapes for these feeds; rows carry the id field, the
// department, the patient where the entity belongs to one, and `lastmodified`.
const OTHER_FEEDS: &[(&str, &str, &str, bool)] = &[
    (
        "chart/healthhistory/familyhistory",
        "familyhistoryid",
        "FamilyHistoryAdd",
        true,
    ),
    (
        "documents/patientcase",
        "patientcaseid",
        "PatientCaseAdd",
        true,
    ),
    (
        "referringproviders",
        "referringproviderid",
        "ReferringProviderAdd",
        false,
    ),
    (
        "providernumbers",
        "providernumberid",
        "ProviderNumberAdd",
        false,
    ),
    (
        "referringprovidernumbers",
        "referringprovidernumberid",
        "ReferringProviderNumberAdd",
        false,
    ),
    (
        "ccmenrollmentstatus",
        "patientid",
        "CCMEnrollmentStatusUpdate",
        true,
    ),
    ("chargecodes", "chargecodeid", "ChargeCodeAdd", false),
    ("stays", "stayid", "StayAdd", true),
    ("orcase", "orcaseid", "ORCaseAdd", true),
    ("surgerycases", "surgerycaseid", "SurgeryCaseAdd", true),
];

fn params(pairs: &[(&str, String)]) -> Params {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    v.push(("source".into(), "generator".into()));
    Params::from_pairs(v)
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> Option<&'a T> {
    if xs.is_empty() {
        None
    } else {
        Some(&xs[rng.random_range(0..xs.len())])
    }
}

/// A random patient id of `p`: the same draw as [`pick`] over its ids, without collecting them
/// (collected on every step, they made generating n changes quadratic: 11 s for 50,000).
fn pick_patient(rng: &mut ChaCha8Rng, p: &Practice) -> Option<u64> {
    if p.patients.is_empty() {
        return None;
    }
    let i = rng.random_range(0..p.patients.len());
    p.patients.keys().nth(i).copied()
}

fn ids_where(p: &Practice, f: impl Fn(&crate::model::Appointment) -> bool) -> Vec<u64> {
    p.appointments
        .values()
        .filter(|a| f(a))
        .map(|a| a.id)
        .collect()
}

/// Runs one generator step.
pub fn step(w: &mut World, cfg: &SimConfig) {
    let gen_cfg = cfg.generator.clone().unwrap_or_default();
    let practices: Vec<u64> = if gen_cfg.practices.is_empty() {
        cfg.practices.clone()
    } else {
        gen_cfg.practices.clone()
    };
    let mix: Vec<ChangeKind> = if gen_cfg.mix.is_empty() {
        ChangeKind::ALL.to_vec()
    } else {
        gen_cfg.mix.clone()
    };
    let Some(&pid) = pick(&mut w.rng, &practices) else {
        return;
    };
    if !w.practices.contains_key(&pid) {
        return;
    }
    let mut kind = *pick(&mut w.rng, &mix).expect("non-empty mix");
    // Fall back along a chain when a precondition is missing (nothing booked to cancel, …);
    // every chain ends in an action that always succeeds.
    for _ in 0..4 {
        match try_step(w, pid, kind) {
            Ok(()) => return,
            Err(next) => kind = next,
        }
    }
}

fn try_step(w: &mut World, pid: u64, kind: ChangeKind) -> Result<(), ChangeKind> {
    let p = w.practices.get(&pid).expect("practice");
    let rng = &mut w.rng;
    match kind {
        ChangeKind::NewPatient => {
            let first = pick(rng, FIRST_NAMES).expect("names");
            let last = pick(rng, LAST_NAMES).expect("names");
            let dob = format!(
                "{:02}/{:02}/{}",
                rng.random_range(1..=12),
                rng.random_range(1..=28),
                rng.random_range(1940..2020)
            );
            let dept = pick(rng, &p.departments).expect("departments").id.clone();
            let zip = format!("0{:04}", rng.random_range(1000..9999));
            let q = params(&[
                ("firstname", first.to_string()),
                ("lastname", last.to_string()),
                ("dob", dob),
                ("departmentid", dept),
                ("zip", zip),
                ("bypasspatientmatching", "true".into()),
            ]);
            let _ = apply_write(w, pid, "CreatePatient", &q, patients::create);
            Ok(())
        }
        ChangeKind::UpdatePatient => {
            let Some(pat) = pick_patient(rng, p) else {
                return Err(ChangeKind::NewPatient);
            };
            let phone = format!("617555{:04}", rng.random_range(100..9999));
            let q = params(&[("mobilephone", phone)]);
            apply_write(w, pid, "UpdatePatient", &q, |p, q| {
                patients::update(p, q, pat)
            })
            .map(|_| ())
            .map_err(|_| ChangeKind::NewPatient)
        }
        ChangeKind::Booking => {
            // Slots of later days only: a long-running demo's first slots fall into the past,
            // and athena books schedulable slots only (guess 31).
            let open = ids_where(p, |a| a.status == "o" && a.date > today_eastern());
            let (Some(&slot), Some(pat)) = (pick(rng, &open), pick_patient(rng, p)) else {
                // No open slot left: add a day of slots for a provider.
                let prov = pick(rng, &p.providers.values().cloned().collect::<Vec<_>>())
                    .expect("providers")
                    .clone();
                let day = today_eastern() + ChronoDuration::days(rng.random_range(1..30));
                let q = params(&[
                    ("appointmentdate", us_date(day)),
                    ("appointmenttime", "13:00,13:30,14:00".into()),
                    ("departmentid", prov.department_id),
                    ("providerid", prov.id),
                ]);
                let _ = apply_write(
                    w,
                    pid,
                    "CreateAppointmentSlots",
                    &q,
                    appointments::create_slots,
                );
                return Ok(());
            };
            let q = params(&[
                ("patientid", pat.to_string()),
                ("appointmenttypeid", "82".into()),
            ]);
            apply_write(w, pid, "BookAppointment", &q, |p, q| {
                appointments::book(p, q, slot)
            })
            .map(|_| ())
            .map_err(|_| ChangeKind::NewPatient)
        }
        ChangeKind::Cancellation => {
            let booked = ids_where(p, |a| a.status == "f");
            let Some(&id) = pick(rng, &booked) else {
                return Err(ChangeKind::Booking);
            };
            let pat = p.appointments[&id].patient_id.unwrap_or_default();
            let q = params(&[
                ("patientid", pat.to_string()),
                ("appointmentcancelreasonid", "1".into()),
            ]);
            apply_write(w, pid, "CancelAppointment", &q, |p, q| {
                appointments::cancel(p, q, id)
            })
            .map(|_| ())
            .map_err(|_| ChangeKind::Booking)
        }
        ChangeKind::CheckIn => {
            let booked = ids_where(p, |a| a.status == "f");
            let Some(&id) = pick(rng, &booked) else {
                return Err(ChangeKind::Booking);
            };
            let q = params(&[]);
            apply_write(w, pid, "CheckIn", &q, |p, _| {
                appointments::checkin(p, id, true)?;
                appointments::checkin(p, id, false)
            })
            .map(|_| ())
            .map_err(|_| ChangeKind::Booking)
        }
        ChangeKind::Claim => {
            let arrived = ids_where(p, |a| a.status == "2" && a.claim_id.is_none());
            let Some(&id) = pick(rng, &arrived) else {
                return Err(ChangeKind::CheckIn);
            };
            let code = pick(rng, &["99212", "99213", "99214"])
                .expect("codes")
                .to_string();
            let q = params(&[(
                "claimcharges",
                json!([{"procedurecode": code, "units": "1", "icd10code1": "Z0000"}]).to_string(),
            )]);
            apply_write(w, pid, "CreateAppointmentClaim", &q, |p, q| {
                let (v, claim) = claims::appointment_claim(p, q, id)?;
                // Claim.create has no changed-data event (the feed only knows UpdateClaim).
                if let Some(c) = claim.parse().ok().and_then(|c: u64| p.claims.get(&c)) {
                    let (d, pat) = (c.department_id.clone(), c.patient_id.to_string());
                    crate::push::record(
                        &mut p.push_outbox,
                        "claims",
                        "CreateClaim",
                        Some(d),
                        Some(pat),
                        &json!({"claimid": claim}),
                    );
                }
                Ok((v, claim))
            })
            .map(|_| ())
            .map_err(|_| ChangeKind::CheckIn)
        }
        ChangeKind::Provider => {
            let provs: Vec<String> = p.providers.keys().cloned().collect();
            let id = pick(rng, &provs).expect("providers").clone();
            let specialty = pick(
                rng,
                &[
                    "Family Medicine",
                    "Internal Medicine",
                    "Pediatrics",
                    "Cardiology",
                ],
            )
            .expect("x")
            .to_string();
            let q = params(&[("specialty", specialty.clone())]);
            let _ = apply_write(w, pid, "UpdateProvider", &q, |p, _| {
                let pr = p.providers.get_mut(&id).expect("provider");
                pr.specialty = specialty;
                pr.modified = Utc::now();
                let (snap, dept) = (pr.to_json(), pr.department_id.clone());
                p.change("providers", "ProviderUpdate", Some(dept), None, snap);
                Ok((json!({}), id.clone()))
            });
            Ok(())
        }
        ChangeKind::Problem | ChangeKind::Allergy => {
            let Some(pat) = pick_patient(rng, p) else {
                return Err(ChangeKind::NewPatient);
            };
            let (ck, op, detail) = match kind {
                ChangeKind::Problem => {
                    let (c, n) = *pick(rng, PROBLEMS).expect("x");
                    (
                        ChartKind::Problem,
                        "AddProblem",
                        json!({"codeset": "SNOMED", "code": c, "name": n}),
                    )
                }
                _ => (
                    ChartKind::Allergy,
                    "AddAllergy",
                    json!({"allergenname": pick(rng, ALLERGENS).expect("x")}),
                ),
            };
            let q = params(&[("patientid", pat.to_string())]);
            let _ = apply_write(w, pid, op, &q, |p, _| Ok(add_chart(p, pat, ck, detail)));
            Ok(())
        }
        ChangeKind::Medication
        | ChangeKind::LabResult
        | ChangeKind::Vaccine
        | ChangeKind::Prescription
        | ChangeKind::ImagingResult
        | ChangeKind::Referral
        | ChangeKind::Visit
        | ChangeKind::Coverage
        | ChangeKind::ClinicalUpdate => {
            let Some(pat) = pick_patient(rng, p) else {
                return Err(ChangeKind::NewPatient);
            };
            let (ck, update) = match kind {
                ChangeKind::Medication => (ClinicalKind::Medication, false),
                ChangeKind::LabResult => (ClinicalKind::LabResult, false),
                ChangeKind::Vaccine => (ClinicalKind::Vaccine, false),
                ChangeKind::Prescription => (ClinicalKind::Prescription, false),
                ChangeKind::ImagingResult => (ClinicalKind::ImagingResult, false),
                ChangeKind::Referral => (ClinicalKind::Referral, false),
                ChangeKind::Visit => (ClinicalKind::Visit, false),
                ChangeKind::Coverage => (ClinicalKind::Coverage, false),
                _ => (*pick(rng, &ClinicalKind::ALL).expect("kinds"), true),
            };
            let variant: u64 = rng.random_range(0..1000);
            let q = params(&[("patientid", pat.to_string())]);
            apply_write(w, pid, ck.operation(), &q, |p, _| {
                let c = p
                    .clinical_change(ck, pat, variant, update, Utc::now())
                    .ok_or_else(|| {
                        crate::util::ApiError::new(
                            axum::http::StatusCode::NOT_FOUND,
                            "Patient not found.",
                        )
                    })?;
                Ok((json!({"resources": c.resources}), c.record_id))
            })
            .map(|_| ())
            .map_err(|_| ChangeKind::NewPatient)
        }
        ChangeKind::OtherFeed => {
            let &(feed, key, event, with_patient) = pick(rng, OTHER_FEEDS).expect("feeds");
            let pat = pick_patient(rng, p);
            let q = params(&[("feed", feed.to_string())]);
            apply_write(w, pid, "RecordChange", &q, |p, _| {
                let id = if key == "patientid" {
                    pat.unwrap_or_default()
                } else {
                    p.next_chart_id()
                };
                let dept = pat
                    .and_then(|x| p.patients.get(&x))
                    .and_then(|x| x.department())
                    .unwrap_or_else(|| "1".into());
                let mut row =
                    json!({key: id, "departmentid": dept, "lastmodified": stamp(Utc::now())});
                let patient = pat.filter(|_| with_patient);
                if let Some(x) = patient {
                    row["patientid"] = json!(x);
                }
                p.change(feed, event, Some(dept), patient.map(|x| x.to_string()), row);
                Ok((json!({}), id.to_string()))
            })
            .map(|_| ())
            .map_err(|_| ChangeKind::NewPatient)
        }
    }
}

fn add_chart(
    p: &mut Practice,
    pat: u64,
    kind: ChartKind,
    detail: serde_json::Value,
) -> (serde_json::Value, String) {
    let id = p.next_chart_id();
    let now = Utc::now();
    let dept = p
        .patients
        .get(&pat)
        .and_then(|x| x.department())
        .unwrap_or_else(|| "1".into());
    let (id_key, feed, event, ts_key) = match kind {
        ChartKind::Problem => (
            "problemid",
            "chart/healthhistory/problems",
            "ProblemAdd",
            "lastmodified",
        ),
        ChartKind::Allergy => (
            "allergenid",
            "chart/healthhistory/allergies",
            "AllergyAdd",
            "lastmodified",
        ),
        ChartKind::Medication => (
            "medicationentryid",
            "chart/healthhistory/medication",
            "MedicationHxAdd",
            "lastmodified",
        ),
        ChartKind::LabResult => (
            "labresultid",
            "labresults",
            "LabResultAdd",
            "lastmodifieddatetime",
        ),
    };
    let mut v = detail;
    // athena is inconsistent here: chart feeds carry numeric ids (see §4.4 fixtures).
    v[id_key] = json!(id);
    v["patientid"] = json!(pat);
    v["departmentid"] = json!(dept);
    v[ts_key] = if kind == ChartKind::LabResult {
        json!(
            now.with_timezone(&chrono_tz::America::New_York)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
        )
    } else {
        json!(eastern_stamp(now))
    };
    if kind == ChartKind::Problem {
        v["events"] = json!([{"eventtype": "START", "startdate": us_date(today_eastern())}]);
    }
    p.chart.push(ChartItem {
        id,
        kind,
        patient_id: pat,
        department_id: dept.clone(),
        json: v.clone(),
        modified: now,
    });
    p.change(feed, event, Some(dept), Some(pat.to_string()), v.clone());
    (v, id.to_string())
}
