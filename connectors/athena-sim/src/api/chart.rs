//! Chart writes (§5.7) and lab result documents (§5.5) with their read-backs: vitals (chart or
//! encounter), problems, the allergy list (replaced whole by `PUT`), vaccines, historical
//! medications, surgical and family history, encounter diagnoses, referral orders and lab
//! results. Each accepted write is in the ledger, queues the changed-data row of its feed (when
//! athena has one: problems, allergies, medication, vaccine, familyhistory, orders, labresults)
//! with its push notification, and shows in the patient's FHIR reads
//! ([`Practice::chart_write_fhir`]).
//!
//! Problems, allergies, medications and lab results live in `Practice::chart` (with the
//! generator's); the kinds athena's feeds here do not know live in `Practice::chart_writes`.
//!
// Guess: request and answer shapes beyond §5.7's essentials (the answer id names `vaccineid`,
// `medicationentryid`, `procedureid`, `familyhistoryid`, `diagnosisid`, `documentid`, the
// list keys, family history's `relation` names, the flat surgical-history fields) follow
// athena's naming habits; athena's validation texts are modelled on its other 400 answers.
// Encounter ids are checked-in appointments' ids and the numbers of the seeded clinical
// Encounters (`a-{pid}.encounter-{n}`).

use axum::{
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::model::{ChartItem, ChartKind, Practice};
use crate::state::SimState;
use crate::util::{ApiError, ApiResult, Params, eastern_stamp, ok, parse_us_date, today_eastern};

/// A chart write of a kind without a place in `Practice::chart`.
#[derive(Debug, Clone)]
pub struct ChartWrite {
    /// Its id (the practice's chart counter).
    pub id: u64,
    /// The list it belongs to: `vitals`, `vaccines`, `surgicalhistory`, `familyhistory`,
    /// `diagnoses`, `orders`.
    pub list: &'static str,
    /// The patient.
    pub patient_id: u64,
    /// The encounter, for encounter-level writes.
    pub encounter_id: Option<u64>,
    /// The record as athena lists it.
    pub json: Value,
    /// When it was written.
    pub modified: DateTime<Utc>,
}

/// FHIR resource types only chart writes create (none is seeded), served by the same
/// patient-scoped searches and reads as `clinical::CLINICAL_TYPES`.
pub const FHIR_TYPES: &[&str] = &["Procedure"];

/// Clinical element ids the simulator accepts for vitals (athena's, as clients use them).
pub const VITAL_ELEMENTS: &[&str] = &[
    "VITALS.WEIGHT",
    "VITALS.HEIGHT",
    "VITALS.TEMPERATURE",
    "VITALS.BLOODPRESSURE.SYSTOLIC",
    "VITALS.BLOODPRESSURE.DIASTOLIC",
    "VITALS.HEARTRATE",
    "VITALS.RESPIRATIONRATE",
    "VITALS.BMI",
    "VITALS.INHALEDO2CONCENTRATION",
];

/// Relations family history accepts.
const RELATIONS: &[&str] = &[
    "MOTHER",
    "FATHER",
    "SISTER",
    "BROTHER",
    "SON",
    "DAUGHTER",
    "GRANDMOTHER",
    "GRANDFATHER",
    "AUNT",
    "UNCLE",
];

fn patient(p: &Practice, id: u64) -> ApiResult<String> {
    p.patients
        .get(&id)
        .map(|x| x.department().unwrap_or_else(|| "1".into()))
        .ok_or_else(|| ApiError::not_found("The patient does not exist."))
}

/// The patient of encounter `id`: a checked-in (or later) appointment, or a seeded clinical
/// Encounter.
pub fn encounter_patient(p: &Practice, id: u64) -> Option<u64> {
    if let Some(a) = p.appointments.get(&id)
        && matches!(a.status.as_str(), "2" | "3" | "4")
    {
        return a.patient_id;
    }
    p.clinical
        .get(&format!("a-{}.encounter-{id}", p.id))
        .filter(|c| c.resource_type() == "Encounter")
        .map(|c| c.patient_id)
}

fn encounter(p: &Practice, id: u64) -> ApiResult<u64> {
    encounter_patient(p, id).ok_or_else(|| ApiError::not_found("The encounter does not exist."))
}

fn required(q: &Params, keys: &[&str]) -> ApiResult<()> {
    let miss: Vec<String> = keys
        .iter()
        .filter(|k| q.get(k).is_none())
        .map(|k| k.to_string())
        .collect();
    if miss.is_empty() {
        Ok(())
    } else {
        Err(ApiError::missing(miss))
    }
}

fn department(p: &Practice, q: &Params) -> ApiResult<String> {
    required(q, &["departmentid"])?;
    let d = q.get("departmentid").unwrap_or_default();
    if p.has_department(d) {
        Ok(d.to_string())
    } else {
        Err(ApiError::invalid("departmentid", "Invalid departmentid."))
    }
}

fn numeric(q: &Params, key: &str, msg: &str) -> ApiResult<String> {
    let v = q.get(key).unwrap_or_default();
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) {
        Ok(v.to_string())
    } else {
        Err(ApiError::invalid(key, msg))
    }
}

/// A past-or-today `MM/DD/YYYY` date, if given.
fn past_date(q: &Params, key: &str) -> ApiResult<Option<String>> {
    match q.get(key) {
        None => Ok(None),
        Some(s) => match parse_us_date(s) {
            Some(d) if d <= today_eastern() + chrono::Duration::days(1) => Ok(Some(s.to_string())),
            Some(_) => Err(ApiError::invalid(
                key,
                &format!("{key} cannot be in the future."),
            )),
            None => Err(ApiError::invalid(
                key,
                &format!("{key} must be MM/DD/YYYY."),
            )),
        },
    }
}

fn one_of(q: &Params, key: &str, allowed: &[&str]) -> ApiResult<Option<String>> {
    match q.get(key) {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
        Some(_) => Err(ApiError::invalid(key, &format!("Invalid {key}."))),
    }
}

fn json_param(q: &Params, key: &str) -> ApiResult<Vec<Value>> {
    required(q, &[key])?;
    match serde_json::from_str::<Value>(q.get(key).unwrap_or_default()) {
        Ok(Value::Array(a)) => Ok(a),
        _ => Err(ApiError::invalid(
            key,
            &format!("{key} must be a JSON array."),
        )),
    }
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Writes one chart record: stores it, queues its feed row (when `feed` is set) and puts its
/// FHIR resource. `id_key` names the record's id in athena's answer, which is returned
/// (`{"success":"true","<id_key>":N}`) with the id.
fn record(
    p: &mut Practice,
    pat: u64,
    dept: &str,
    feed: Option<(&str, &str)>,
    store: Store,
    id_key: &str,
    mut v: Value,
) -> (Value, String) {
    let id = p.next_chart_id();
    let now = Utc::now();
    v[id_key] = json!(id);
    v["patientid"] = json!(pat);
    v["departmentid"] = json!(dept);
    v["lastmodified"] = json!(eastern_stamp(now));
    match store {
        Store::Chart(kind) => p.chart.push(ChartItem {
            id,
            kind,
            patient_id: pat,
            department_id: dept.into(),
            json: v.clone(),
            modified: now,
        }),
        Store::Writes(list, encounter_id) => p.chart_writes.push(ChartWrite {
            id,
            list,
            patient_id: pat,
            encounter_id,
            json: v.clone(),
            modified: now,
        }),
    }
    if let Some((feed, event)) = feed {
        p.change(
            feed,
            event,
            Some(dept.into()),
            Some(pat.to_string()),
            v.clone(),
        );
    }
    p.chart_write_fhir(id_key, pat, &v, now);
    (json!({"success": "true", id_key: id}), id.to_string())
}

/// Copies the optional params `keys` into `v` as given.
fn copy(v: &mut Value, q: &Params, keys: &[&str]) {
    for k in keys {
        if let Some(x) = q.get(k) {
            v[*k] = json!(x);
        }
    }
}

enum Store {
    Chart(ChartKind),
    Writes(&'static str, Option<u64>),
}

/// Domain op of `POST /chart/{patientid}/vitals` and `POST /chart/encounter/{id}/vitals`.
pub fn record_vitals(
    p: &mut Practice,
    q: &Params,
    pat: u64,
    encounter_id: Option<u64>,
) -> ApiResult<(Value, String)> {
    let dept = department(p, q)?;
    let groups = json_param(q, "vitals")?;
    let mut readings = Vec::new();
    for g in &groups {
        let Some(items) = g.as_array() else {
            return Err(ApiError::invalid(
                "vitals",
                "vitals must be an array of arrays.",
            ));
        };
        for r in items {
            let element = str_of(r, "clinicalelementid").unwrap_or_default();
            if !VITAL_ELEMENTS.contains(&element.as_str()) {
                return Err(ApiError::invalid("vitals", "Invalid clinicalelementid."));
            }
            let value = str_of(r, "value").unwrap_or_default();
            if value
                .parse::<f64>()
                .map_or(true, |v| !v.is_finite() || v < 0.0)
            {
                return Err(ApiError::invalid(
                    "vitals",
                    "A vital value must be a number.",
                ));
            }
            let taken = str_of(r, "readingtaken")
                .filter(|t| parse_us_date(t).is_some())
                .ok_or_else(|| ApiError::invalid("vitals", "readingtaken must be MM/DD/YYYY."))?;
            readings.push((element, value, taken));
        }
    }
    if readings.is_empty() {
        return Err(ApiError::invalid("vitals", "No vitals were given."));
    }
    let source = q.get("source").unwrap_or("ENCOUNTER").to_string();
    let mut ids = Vec::new();
    for (element, value, taken) in readings {
        let (_, id) = record(
            p,
            pat,
            &dept,
            None,
            Store::Writes("vitals", encounter_id),
            "vitalid",
            json!({"clinicalelementid": element, "value": value, "readingtaken": taken,
                "source": source, "encounterid": encounter_id}),
        );
        ids.push(id);
    }
    let first = ids.first().cloned().unwrap_or_default();
    Ok((json!({"success": true, "vitalids": ids}), first))
}

/// Domain op of `POST /chart/{patientid}/problems`.
pub fn add_problem(p: &mut Practice, q: &Params, pat: u64) -> ApiResult<(Value, String)> {
    let dept = department(p, q)?;
    required(q, &["snomedcode"])?;
    let code = numeric(q, "snomedcode", "Invalid snomedcode.")?;
    let status = one_of(q, "status", &["CHRONIC", "ACUTE"])?;
    let laterality = one_of(q, "laterality", &["LEFT", "RIGHT", "BILATERAL"])?;
    let start = past_date(q, "startdate")?;
    let mut v = json!({"codeset": "SNOMED", "code": code, "name": format!("SNOMED {code}")});
    if let Some(s) = status {
        v["status"] = json!(s);
    }
    if let Some(l) = laterality {
        v["laterality"] = json!(l);
    }
    if let Some(s) = start {
        v["events"] = json!([{"eventtype": "START", "startdate": s}]);
    }
    Ok(record(
        p,
        pat,
        &dept,
        Some(("chart/healthhistory/problems", "ProblemAdd")),
        Store::Chart(ChartKind::Problem),
        "problemid",
        v,
    ))
}

/// Domain op of `PUT /chart/{patientid}/allergies`: the list sent replaces the patient's
/// allergies (entries not sent are removed; an entry is matched by `allergenid`).
pub fn put_allergies(p: &mut Practice, q: &Params, pat: u64) -> ApiResult<(Value, String)> {
    let dept = department(p, q)?;
    let list = json_param(q, "allergies")?;
    let mut sent = Vec::new();
    for a in &list {
        let (Some(id), Some(name)) = (str_of(a, "allergenid"), str_of(a, "allergenname")) else {
            return Err(ApiError::invalid(
                "allergies",
                "Each allergy needs allergenid and allergenname.",
            ));
        };
        if let Some(c) = a.get("criticality").and_then(Value::as_str)
            && !["low", "high", "unable-to-assess"].contains(&c)
        {
            return Err(ApiError::invalid("allergies", "Invalid criticality."));
        }
        sent.push((id, name, a.clone()));
    }
    let now = Utc::now();
    let key = |c: &ChartItem| str_of(&c.json, "allergenid").unwrap_or_default();
    // Removed: on the list now, not sent.
    let removed: Vec<Value> = p
        .chart
        .iter()
        .filter(|c| c.kind == ChartKind::Allergy && c.patient_id == pat)
        .filter(|c| !sent.iter().any(|(id, _, _)| *id == key(c)))
        .map(|c| c.json.clone())
        .collect();
    p.chart.retain(|c| {
        !(c.kind == ChartKind::Allergy
            && c.patient_id == pat
            && !sent.iter().any(|(id, _, _)| *id == key(c)))
    });
    for mut r in removed {
        r["deleteddate"] = json!(eastern_stamp(now));
        p.change(
            "chart/healthhistory/allergies",
            "AllergyUpdate",
            Some(dept.clone()),
            Some(pat.to_string()),
            r,
        );
    }
    for (id, name, a) in sent {
        let mut v = a;
        v["allergenid"] = json!(id);
        v["allergenname"] = json!(name);
        v["patientid"] = json!(pat);
        v["departmentid"] = json!(dept);
        v["lastmodified"] = json!(eastern_stamp(now));
        let existing = p
            .chart
            .iter_mut()
            .find(|c| c.kind == ChartKind::Allergy && c.patient_id == pat && key(c) == id);
        let event = match existing {
            Some(c) if c.json == v || strip_time(&c.json) == strip_time(&v) => continue,
            Some(c) => {
                c.json = v.clone();
                c.modified = now;
                "AllergyUpdate"
            }
            None => {
                let cid = p.next_chart_id();
                p.chart.push(ChartItem {
                    id: cid,
                    kind: ChartKind::Allergy,
                    patient_id: pat,
                    department_id: dept.clone(),
                    json: v.clone(),
                    modified: now,
                });
                "AllergyAdd"
            }
        };
        p.change(
            "chart/healthhistory/allergies",
            event,
            Some(dept.clone()),
            Some(pat.to_string()),
            v,
        );
    }
    Ok((json!({"success": "true"}), pat.to_string()))
}

fn strip_time(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("lastmodified");
    }
    v
}

/// Domain op of `POST /chart/{patientid}/vaccines`.
pub fn add_vaccine(p: &mut Practice, q: &Params, pat: u64) -> ApiResult<(Value, String)> {
    let dept = department(p, q)?;
    required(q, &["cvx", "administerdate"])?;
    let cvx = numeric(q, "cvx", "Invalid cvx.")?;
    if cvx.len() > 3 {
        return Err(ApiError::invalid("cvx", "Invalid cvx."));
    }
    let given = past_date(q, "administerdate")?.unwrap_or_default();
    let mut v = json!({"cvx": cvx, "administerdate": given, "status": "ADMINISTERED"});
    copy(&mut v, q, &["lotnumber", "amount", "units", "note"]);
    Ok(record(
        p,
        pat,
        &dept,
        Some(("chart/healthhistory/vaccine", "VaccineAdd")),
        Store::Writes("vaccines", None),
        "vaccineid",
        v,
    ))
}

/// Domain op of `POST /chart/{patientid}/medications` (a historical medication).
pub fn add_medication(p: &mut Practice, q: &Params, pat: u64) -> ApiResult<(Value, String)> {
    let dept = department(p, q)?;
    required(q, &["medicationid"])?;
    let med = numeric(q, "medicationid", "Invalid medicationid.")?;
    let start = past_date(q, "startdate")?;
    let mut v = json!({"medicationid": med, "medication": format!("Medication {med}"),
        "source": "HISTORICAL", "startdate": start});
    copy(&mut v, q, &["stopdate", "unstructuredsig", "patientnote"]);
    Ok(record(
        p,
        pat,
        &dept,
        Some(("chart/healthhistory/medication", "MedicationHxAdd")),
        Store::Chart(ChartKind::Medication),
        "medicationentryid",
        v,
    ))
}

/// Domain op of `POST /chart/{patientid}/surgicalhistory`.
pub fn add_surgical_history(p: &mut Practice, q: &Params, pat: u64) -> ApiResult<(Value, String)> {
    let dept = department(p, q)?;
    required(q, &["procedurecode"])?;
    let code = q.get("procedurecode").unwrap_or_default();
    if !code.chars().all(|c| c.is_ascii_alphanumeric()) || code.len() > 18 {
        return Err(ApiError::invalid("procedurecode", "Invalid procedurecode."));
    }
    let when = past_date(q, "proceduredate")?;
    let mut v = json!({"procedurecode": code});
    if let Some(w) = when {
        v["proceduredate"] = json!(w);
    }
    if let Some(n) = q.get("note") {
        v["note"] = json!(n);
    }
    Ok(record(
        p,
        pat,
        &dept,
        None,
        Store::Writes("surgicalhistory", None),
        "procedureid",
        v,
    ))
}

/// Domain op of `POST /chart/{patientid}/familyhistory`.
pub fn add_family_history(p: &mut Practice, q: &Params, pat: u64) -> ApiResult<(Value, String)> {
    let dept = department(p, q)?;
    required(q, &["relation", "snomedcode"])?;
    let relation = one_of(q, "relation", RELATIONS)?.unwrap_or_default();
    let code = numeric(q, "snomedcode", "Invalid snomedcode.")?;
    let mut v = json!({"relation": relation, "snomedcode": code});
    copy(&mut v, q, &["onsetage", "note"]);
    Ok(record(
        p,
        pat,
        &dept,
        Some(("chart/healthhistory/familyhistory", "FamilyHistoryAdd")),
        Store::Writes("familyhistory", None),
        "familyhistoryid",
        v,
    ))
}

/// Domain op of `POST /chart/encounter/{encounterid}/diagnoses`.
pub fn add_diagnosis(p: &mut Practice, q: &Params, enc: u64) -> ApiResult<(Value, String)> {
    let pat = encounter(p, enc)?;
    let dept = patient(p, pat)?;
    required(q, &["snomedcode"])?;
    let code = numeric(q, "snomedcode", "Invalid snomedcode.")?;
    let icd10 = q.list("icd10codes");
    let icd_ok = |c: &String| {
        let mut ch = c.chars();
        ch.next().is_some_and(|x| x.is_ascii_uppercase())
            && c.len() >= 3
            && c.len() <= 8
            && c[1..]
                .chars()
                .all(|x| x.is_ascii_alphanumeric() || x == '.')
    };
    if !icd10.iter().all(icd_ok) {
        return Err(ApiError::invalid("icd10codes", "Invalid icd10codes."));
    }
    let laterality = one_of(q, "laterality", &["LEFT", "RIGHT", "BILATERAL"])?;
    let mut v = json!({"snomedcode": code, "icd10codes": icd10, "encounterid": enc});
    if let Some(l) = laterality {
        v["laterality"] = json!(l);
    }
    if let Some(n) = q.get("note") {
        v["note"] = json!(n);
    }
    Ok(record(
        p,
        pat,
        &dept,
        None,
        Store::Writes("diagnoses", Some(enc)),
        "diagnosisid",
        v,
    ))
}

/// Domain op of `POST /chart/encounter/{encounterid}/orders/referral`.
pub fn add_referral(p: &mut Practice, q: &Params, enc: u64) -> ApiResult<(Value, String)> {
    let pat = encounter(p, enc)?;
    let dept = patient(p, pat)?;
    required(q, &["ordertypeid", "diagnosissnomedcode"])?;
    let ty = numeric(q, "ordertypeid", "Invalid ordertypeid.")?;
    let dx = numeric(q, "diagnosissnomedcode", "Invalid diagnosissnomedcode.")?;
    let mut v = json!({"ordertype": "REFERRAL", "ordertypeid": ty, "diagnosissnomedcode": dx,
        "encounterid": enc, "status": "OPEN"});
    copy(
        &mut v,
        q,
        &["reasonforreferral", "providernote", "facilityid"],
    );
    Ok(record(
        p,
        pat,
        &dept,
        Some(("orders", "OrderAdd")),
        Store::Writes("orders", Some(enc)),
        "documentid",
        v,
    ))
}

/// Domain op of `POST /patients/{patientid}/documents/labresult`.
pub fn add_lab_result(p: &mut Practice, q: &Params, pat: u64) -> ApiResult<(Value, String)> {
    let dept = department(p, q)?;
    let analytes = json_param(q, "analytes")?;
    if analytes.is_empty() {
        return Err(ApiError::invalid(
            "analytes",
            "At least one analyte is required.",
        ));
    }
    for a in &analytes {
        let loinc = str_of(a, "loinc").unwrap_or_default();
        let ok_loinc = loinc.split_once('-').is_some_and(|(n, c)| {
            !n.is_empty() && n.chars().all(|x| x.is_ascii_digit()) && c.len() == 1
        });
        if !ok_loinc || str_of(a, "value").is_none() {
            return Err(ApiError::invalid(
                "analytes",
                "Each analyte needs a LOINC code and a value.",
            ));
        }
    }
    let obs = past_date(q, "observationdate")?;
    let status = if q.flag("autoclose") {
        "CLOSED"
    } else {
        "REVIEW"
    };
    let mut v = json!({"analytes": analytes, "status": status, "documentsubclass": "LABRESULT"});
    if let Some(o) = obs {
        v["observationdate"] = json!(o);
    }
    if let Some(t) = q.get("documenttypeid") {
        v["documenttypeid"] = json!(t);
    }
    Ok(record(
        p,
        pat,
        &dept,
        Some(("labresults", "LabResultAdd")),
        Store::Chart(ChartKind::LabResult),
        "labresultid",
        v,
    ))
}

/// Whose list a read names.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Patient(u64),
    Encounter(u64),
}

/// The list `list` of a patient (or an encounter) as athena answers it.
fn list_writes(s: &SimState, pid: u64, owner: Owner, list: &'static str, key: &str) -> Response {
    s.read(pid, |p| {
        let (pat, enc) = match owner {
            Owner::Patient(pat) => {
                patient(p, pat)?;
                (Some(pat), None)
            }
            Owner::Encounter(enc) => {
                encounter(p, enc)?;
                (None, Some(enc))
            }
        };
        let items: Vec<Value> = p
            .chart_writes
            .iter()
            .filter(|w| w.list == list)
            .filter(|w| pat.is_none_or(|x| x == w.patient_id))
            .filter(|w| enc.is_none_or(|x| Some(x) == w.encounter_id))
            .map(|w| w.json.clone())
            .collect();
        Ok(json!({"totalcount": items.len(), key: items}))
    })
    .map(ok)
    .into_response()
}

/// A patient-level write checks the patient first (404); an encounter-level one resolves its
/// encounter itself.
fn patient_check(p: &Practice, id: u64) -> ApiResult<()> {
    patient(p, id).map(|_| ())
}

fn no_check(_: &Practice, _: u64) -> ApiResult<()> {
    Ok(())
}

macro_rules! writes {
    ($( $name:ident, $op:literal, $check:ident, $f:expr; )*) => {$(
        #[doc = concat!("The route of the `", $op, "` write (see its domain op).")]
        pub async fn $name(
            State(s): State<SimState>,
            Path((pid, id)): Path<(u64, u64)>,
            params: Params,
        ) -> Response {
            s.write(pid, $op, &params, |p, q| {
                $check(p, id)?;
                $f(p, q, id)
            })
            .map(ok)
            .into_response()
        }
    )*};
}

writes! {
    post_vitals, "RecordVitals", patient_check, |p, q, pat| record_vitals(p, q, pat, None);
    post_encounter_vitals, "RecordVitals", no_check, |p: &mut Practice, q, enc| {
        let pat = encounter(p, enc)?;
        record_vitals(p, q, pat, Some(enc))
    };
    post_problem, "AddProblem", patient_check, add_problem;
    put_allergy_list, "UpdateAllergies", patient_check, put_allergies;
    post_vaccine, "RecordVaccine", patient_check, add_vaccine;
    post_medication, "AddHistoricalMedication", patient_check, add_medication;
    post_surgical_history, "RecordSurgicalHistory", patient_check, add_surgical_history;
    post_family_history, "RecordFamilyHistory", patient_check, add_family_history;
    post_diagnosis, "AddEncounterDiagnosis", no_check, add_diagnosis;
    post_referral, "CreateReferralOrder", no_check, add_referral;
    post_lab_result, "UploadLabResult", patient_check, add_lab_result;
}

macro_rules! lists {
    ($( $name:ident, $path:literal, $owner:ident, $list:literal, $key:literal; )*) => {$(
        #[doc = concat!("`GET ", $path, "`.")]
        pub async fn $name(
            State(s): State<SimState>,
            Path((pid, id)): Path<(u64, u64)>,
        ) -> Response {
            list_writes(&s, pid, Owner::$owner(id), $list, $key)
        }
    )*};
}

lists! {
    vitals, "/chart/{patientid}/vitals", Patient, "vitals", "vitals";
    encounter_vitals_list, "/chart/encounter/{encounterid}/vitals", Encounter, "vitals", "vitals";
    vaccines, "/chart/{patientid}/vaccines", Patient, "vaccines", "vaccines";
    surgical_history, "/chart/{patientid}/surgicalhistory", Patient, "surgicalhistory", "procedures";
    family_history, "/chart/{patientid}/familyhistory", Patient, "familyhistory", "familyhistory";
    diagnoses, "/chart/encounter/{encounterid}/diagnoses", Encounter, "diagnoses", "diagnoses";
    orders, "/chart/encounter/{encounterid}/orders", Encounter, "orders", "orders";
}

/// `GET /patients/{patientid}/documents/labresult`.
pub async fn lab_results(
    State(s): State<SimState>,
    Path((pid, pat)): Path<(u64, u64)>,
) -> Response {
    s.read(pid, |p| {
        patient(p, pat)?;
        let items: Vec<Value> = p
            .chart
            .iter()
            .filter(|c| c.kind == ChartKind::LabResult && c.patient_id == pat)
            .map(|c| c.json.clone())
            .collect();
        Ok(json!({"totalcount": items.len(), "labresults": items}))
    })
    .map(ok)
    .into_response()
}

/// Registers the routes of this file on `r` (one line in `api/mod.rs`).
pub fn routes(r: axum::Router<SimState>) -> axum::Router<SimState> {
    use axum::routing::{get, post, put};
    let v1 = "/v1/{practiceid}";
    r.route(
        &format!("{v1}/chart/{{patientid}}/vitals"),
        post(post_vitals).get(vitals),
    )
    .route(
        &format!("{v1}/chart/encounter/{{encounterid}}/vitals"),
        post(post_encounter_vitals).get(encounter_vitals_list),
    )
    .route(
        &format!("{v1}/chart/{{patientid}}/problems"),
        post(post_problem),
    )
    .route(
        &format!("{v1}/chart/{{patientid}}/allergies"),
        put(put_allergy_list),
    )
    .route(
        &format!("{v1}/chart/{{patientid}}/vaccines"),
        post(post_vaccine).get(vaccines),
    )
    .route(
        &format!("{v1}/chart/{{patientid}}/medications"),
        post(post_medication),
    )
    .route(
        &format!("{v1}/chart/{{patientid}}/surgicalhistory"),
        post(post_surgical_history).get(surgical_history),
    )
    .route(
        &format!("{v1}/chart/{{patientid}}/familyhistory"),
        post(post_family_history).get(family_history),
    )
    .route(
        &format!("{v1}/chart/encounter/{{encounterid}}/diagnoses"),
        post(post_diagnosis).get(diagnoses),
    )
    .route(
        &format!("{v1}/chart/encounter/{{encounterid}}/orders/referral"),
        post(post_referral),
    )
    .route(
        &format!("{v1}/chart/encounter/{{encounterid}}/orders"),
        get(orders),
    )
    .route(
        &format!("{v1}/patients/{{patientid}}/documents/labresult"),
        post(post_lab_result).get(lab_results),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn allergen_ids(p: &Practice, pat: u64) -> Vec<String> {
        p.chart
            .iter()
            .filter(|c| c.kind == ChartKind::Allergy && c.patient_id == pat)
            .filter_map(|c| str_of(&c.json, "allergenid"))
            .collect()
    }

    #[test]
    fn the_allergy_list_is_replaced_whole() {
        let mut p = Practice::seeded(195_900, 1);
        let pat = 60_178;
        let put = |p: &mut Practice, list: &str| {
            put_allergies(p, &q(&[("departmentid", "1"), ("allergies", list)]), pat)
        };
        put(
            &mut p,
            r#"[{"allergenid":"1","allergenname":"a"},{"allergenid":"2","allergenname":"b"}]"#,
        )
        .unwrap();
        assert_eq!(allergen_ids(&p, pat), ["1", "2"]);
        // Sending only "2" and "3" removes "1": what a writer that did not read first loses.
        put(
            &mut p,
            r#"[{"allergenid":"2","allergenname":"b"},{"allergenid":"3","allergenname":"c"}]"#,
        )
        .unwrap();
        assert_eq!(allergen_ids(&p, pat), ["2", "3"]);
        for bad in [
            "not json",
            r#"[{"allergenid":"4"}]"#,
            r#"[{"allergenid":"4","allergenname":"d","criticality":"extreme"}]"#,
        ] {
            assert!(put(&mut p, bad).is_err(), "{bad}");
        }
        assert_eq!(
            allergen_ids(&p, pat),
            ["2", "3"],
            "a refused write changes nothing"
        );
    }

    #[test]
    fn writes_are_validated_and_encounters_resolved() {
        let mut p = Practice::seeded(195_900, 1);
        let pat = 60_178;
        let enc = p
            .clinical
            .values()
            .find(|c| c.patient_id == pat && c.resource_type() == "Encounter")
            .and_then(|c| c.json["id"].as_str()?.rsplit('-').next()?.parse().ok())
            .expect("seeded encounter");
        assert_eq!(encounter_patient(&p, enc), Some(pat));
        assert_eq!(encounter_patient(&p, 1), None);
        let vitals = |v: &str| q(&[("departmentid", "1"), ("vitals", v)]);
        let ok = r#"[[{"clinicalelementid":"VITALS.WEIGHT","readingtaken":"11/07/2025","value":"70300"}]]"#;
        assert!(record_vitals(&mut p, &vitals(ok), pat, Some(enc)).is_ok());
        let bad = ok.replace("VITALS.WEIGHT", "VITALS.NOPE");
        assert!(record_vitals(&mut p, &vitals(&bad), pat, None).is_err());
        assert!(add_problem(&mut p, &q(&[("departmentid", "1")]), pat).is_err());
        assert!(
            add_problem(
                &mut p,
                &q(&[("departmentid", "9"), ("snomedcode", "1")]),
                pat
            )
            .is_err()
        );
        assert!(add_diagnosis(&mut p, &q(&[("snomedcode", "38341003")]), 1).is_err());
        assert!(add_diagnosis(&mut p, &q(&[("snomedcode", "38341003")]), enc).is_ok());
        assert_eq!(p.chart_writes.len(), 2);
        // Both show in the FHIR store: the vital as an Observation on the encounter.
        let obs = p
            .clinical
            .values()
            .find(|c| {
                c.json["id"]
                    .as_str()
                    .is_some_and(|i| i.contains(".vitals-"))
                    && c.json["valueQuantity"]["value"] == 70300.0
            })
            .expect("vital in FHIR");
        assert_eq!(
            obs.json["encounter"]["reference"],
            format!("Encounter/a-195900.encounter-{enc}")
        );
    }
}
