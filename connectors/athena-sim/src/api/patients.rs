//! Patients (§5.1): match-then-create, update, read, bestmatch / enhancedbestmatch.
//! Every accepted write lands in the ledger and, if subscribed, on the `patients` feed.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde_json::{Value, json};

use crate::model::Practice;
use crate::state::SimState;
use crate::util::{ApiError, ApiResult, Params, ok, parse_us_date};

/// Fields of which a create needs at least one (athena's "at least one of" rule).
const ONE_OF: &[&str] = &[
    "email",
    "guarantoremail",
    "ssn",
    "homephone",
    "mobilephone",
    "workphone",
    "zip",
];
/// Fields stored from a create/update form; the rest (flags like `bypasspatientmatching`) are not.
const STORED: &[&str] = &[
    "firstname",
    "lastname",
    "middlename",
    "suffix",
    "dob",
    "sex",
    "departmentid",
    "email",
    "guarantoremail",
    "ssn",
    "homephone",
    "mobilephone",
    "workphone",
    "zip",
    "address1",
    "address2",
    "city",
    "state",
    "status",
    "language6392code",
    "race",
    "ethnicitycode",
    "consenttocall",
    "consenttotext",
    "contactname",
    "contactmobilephone",
];

fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Domain op of `POST /patients`: returns (`[{"patientid"}]`, id).
pub fn create(p: &mut Practice, params: &Params) -> ApiResult<(Value, String)> {
    let mut missing: Vec<String> = ["firstname", "lastname", "dob", "departmentid"]
        .iter()
        .filter(|f| params.get(f).is_none())
        .map(|f| f.to_string())
        .collect();
    if ONE_OF.iter().all(|f| params.get(f).is_none()) {
        // Guess: athena names the whole "at least one of" group in missingfields.
        missing.extend(ONE_OF.iter().map(|f| f.to_string()));
    }
    if !missing.is_empty() {
        return Err(ApiError::missing(missing));
    }
    validate(p, params)?;
    let (first, last, dob) = (
        params.get("firstname").unwrap_or(""),
        params.get("lastname").unwrap_or(""),
        params.get("dob").unwrap_or(""),
    );
    if !params.flag("bypasspatientmatching")
        && let Some(existing) = p.patients.values().find(|x| {
            same(x.field("firstname"), first)
                && same(x.field("lastname"), last)
                && x.field("dob") == dob
        })
    {
        // Match-then-create: the existing id comes back and nothing is written.
        let id = existing.id.to_string();
        return Ok((json!([{ "patientid": id }]), id));
    }
    let fields: BTreeMap<String, String> = STORED
        .iter()
        .filter_map(|k| params.get(k).map(|v| (k.to_string(), v.to_string())))
        .collect();
    let id = p.insert_patient(fields, Utc::now());
    p.patient_changed(id, "AddPatient");
    Ok((json!([{ "patientid": id.to_string() }]), id.to_string()))
}

fn validate(p: &Practice, params: &Params) -> ApiResult<()> {
    if let Some(dob) = params.get("dob")
        && parse_us_date(dob).is_none()
    {
        return Err(ApiError::invalid(
            "dob",
            "Invalid date of birth; use MM/DD/YYYY.",
        ));
    }
    if let Some(d) = params.get("departmentid")
        && !p.has_department(d)
    {
        return Err(ApiError::invalid("departmentid", "Invalid department."));
    }
    if let Some(s) = params.get("status")
        && !matches!(s, "a" | "i" | "p" | "active" | "inactive" | "prospective")
    {
        return Err(ApiError::invalid("status", "Invalid status."));
    }
    for (k, max) in [
        ("firstname", 20),
        ("lastname", 30),
        ("email", 50),
        ("zip", 10),
        ("city", 30),
    ] {
        if params.get(k).is_some_and(|v| v.chars().count() > max) {
            return Err(ApiError::invalid(k, &format!("{k} is too long.")));
        }
    }
    Ok(())
}

/// Domain op of `PUT /patients/{patientid}`.
pub fn update(p: &mut Practice, params: &Params, id: u64) -> ApiResult<(Value, String)> {
    validate(p, params)?;
    let pat = p
        .patients
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("The patient does not exist."))?;
    for k in STORED {
        if let Some(v) = params.get(k) {
            pat.fields.insert(k.to_string(), v.to_string());
        }
    }
    pat.modified = Utc::now();
    p.patient_changed(id, "UpdatePatient");
    Ok((json!([{ "patientid": id.to_string() }]), id.to_string()))
}

/// `POST /v1/{practiceid}/patients`.
pub async fn post(State(s): State<SimState>, Path(pid): Path<u64>, params: Params) -> Response {
    s.write(pid, "CreatePatient", &params, create)
        .map(ok)
        .into_response()
}

/// `PUT /v1/{practiceid}/patients/{patientid}`.
pub async fn put(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "UpdatePatient", &params, |p, params| {
        update(p, params, id)
    })
    .map(ok)
    .into_response()
}

/// `GET /v1/{practiceid}/patients/{patientid}` — a one-element array.
pub async fn get_one(State(s): State<SimState>, Path((pid, id)): Path<(u64, u64)>) -> Response {
    s.read(pid, |p| {
        p.patients
            .get(&id)
            .map(|x| json!([x.to_json()]))
            .ok_or_else(|| ApiError::not_found("The patient does not exist."))
    })
    .map(ok)
    .into_response()
}

/// Lower case without whitespace, hyphens or apostrophes (`"Mc Donald"` = `"mcdonald"`).
fn norm_name(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '\'' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The digits of a value (phones, SSNs, zips).
fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Common nickname pairs (formal, short). Guess: athena's list is not documented.
const NICKNAMES: &[(&str, &str)] = &[
    ("robert", "bob"),
    ("robert", "rob"),
    ("william", "bill"),
    ("william", "will"),
    ("elizabeth", "liz"),
    ("elizabeth", "beth"),
    ("james", "jim"),
    ("katherine", "kate"),
    ("catherine", "cathy"),
    ("margaret", "peggy"),
    ("michael", "mike"),
    ("thomas", "tom"),
    ("richard", "dick"),
    ("joseph", "joe"),
    ("jennifer", "jen"),
    ("alexander", "alex"),
];

/// Whether two normalised first names are the same person's: one a prefix of the other (at
/// least 3 letters, `chris`/`christopher`) or a nickname pair.
fn first_name_tolerant(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    (short.len() >= 3 && long.starts_with(short))
        || NICKNAMES
            .iter()
            .any(|(f, n)| (a == *f && b == *n) || (a == *n && b == *f))
}

/// Lowest score a best-match candidate needs (of 100).
const MATCH_THRESHOLD: u32 = 60;

/// athena-like best-match score of a patient against the query (0..=100), or `None` when the
/// last name or birth date differ (both are required query fields).
// Guess: athena's weights and threshold are not documented. Ours: last name 25, birth date 25,
// first name 20 (12 for a prefix or nickname), phone 10 (any of mobile/home/work, digits only),
// email 10, SSN last 4 digits 5, zip (first 5 digits) 3, sex 2; candidates need 60.
fn score(p: &crate::model::Patient, params: &Params) -> Option<u32> {
    let q = |k: &str| params.get(k).map(str::trim).filter(|v| !v.is_empty());
    if norm_name(q("lastname")?) != norm_name(p.field("lastname"))
        || parse_us_date(q("dob")?).is_none_or(|d| Some(d) != parse_us_date(p.field("dob")))
    {
        return None;
    }
    let mut s = 50;
    if let Some(f) = q("firstname") {
        let (a, b) = (norm_name(f), norm_name(p.field("firstname")));
        if a == b {
            s += 20;
        } else if first_name_tolerant(&a, &b) {
            s += 12;
        }
    }
    let phone = |v: &str| {
        let d = digits(v);
        d[d.len().saturating_sub(10)..].to_string()
    };
    let stored: Vec<String> = ["mobilephone", "homephone", "workphone"]
        .iter()
        .map(|k| phone(p.field(k)))
        .filter(|d| d.len() == 10)
        .collect();
    if ["mobilephone", "homephone", "workphone"]
        .iter()
        .filter_map(|k| q(k))
        .any(|v| stored.contains(&phone(v)))
    {
        s += 10;
    }
    if q("email").is_some_and(|v| same(v, p.field("email"))) {
        s += 10;
    }
    let last4 = |v: &str| {
        let d = digits(v);
        (d.len() >= 4).then(|| d[d.len() - 4..].to_string())
    };
    if q("ssn")
        .and_then(last4)
        .is_some_and(|a| Some(a) == last4(p.field("ssn")))
    {
        s += 5;
    }
    let zip5 = |v: &str| digits(v).chars().take(5).collect::<String>();
    if q("zip").is_some_and(|v| zip5(v).len() == 5 && zip5(v) == zip5(p.field("zip"))) {
        s += 3;
    }
    if q("sex").is_some_and(|v| same(v, p.field("sex"))) {
        s += 2;
    }
    Some(s)
}

fn matches(s: &SimState, pid: u64, params: &Params, enhanced: bool) -> ApiResult {
    if params.get("lastname").is_none() || params.get("dob").is_none() {
        let miss: Vec<String> = ["firstname", "lastname", "dob"]
            .iter()
            .filter(|f| params.get(f).is_none())
            .map(|f| f.to_string())
            .collect();
        return Err(ApiError::missing(miss));
    }
    s.read(pid, |p| {
        let mut hits: Vec<(u32, u64, Value)> = p
            .patients
            .values()
            .filter_map(|x| {
                let sc = score(x, params).filter(|sc| *sc >= MATCH_THRESHOLD)?;
                let mut v = x.to_json();
                if enhanced {
                    v["score"] = json!(sc.to_string());
                }
                Some((sc, x.id, v))
            })
            .collect();
        // Best first; equal scores oldest patient first, so the answer is stable.
        hits.sort_by_key(|h| (std::cmp::Reverse(h.0), h.1));
        // Guess: bestmatch returns only the best candidate, enhancedbestmatch all candidates
        // above the threshold with a score (both as plain arrays).
        let n = if enhanced {
            hits.len()
        } else {
            hits.len().min(1)
        };
        Ok(Value::Array(
            hits.into_iter().take(n).map(|(_, _, v)| v).collect(),
        ))
    })
}

/// `GET /v1/{practiceid}/patients/bestmatch`.
pub async fn bestmatch(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    params: Params,
) -> Response {
    matches(&s, pid, &params, false).map(ok).into_response()
}

/// `GET /v1/{practiceid}/patients/enhancedbestmatch`.
pub async fn enhancedbestmatch(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    params: Params,
) -> Response {
    matches(&s, pid, &params, true).map(ok).into_response()
}

/// `GET /v1/{practiceid}/patients` — search by name / dob / department (`{"patients":[…]}`).
pub async fn list(State(s): State<SimState>, Path(pid): Path<u64>, params: Params) -> Response {
    s.read(pid, |p| {
        let items: Vec<Value> = p
            .patients
            .values()
            .filter(|x| {
                ["firstname", "lastname", "dob", "departmentid"]
                    .iter()
                    .all(|k| params.get(k).is_none_or(|v| same(v, x.field(k))))
            })
            .map(|x| x.to_json())
            .collect();
        Ok(json!({"totalcount": items.len(), "patients": items}))
    })
    .map(ok)
    .into_response()
    .into_response()
}

/// A 400 helper for handlers that need a numeric id from a string.
pub fn bad_id(field: &str) -> ApiError {
    ApiError::Http(
        StatusCode::BAD_REQUEST,
        json!({"error": format!("Invalid {field}.")}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Patient;

    fn patient(fields: &[(&str, &str)]) -> Patient {
        Patient {
            id: 1,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            modified: Utc::now(),
        }
    }

    fn query(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn best_match_scores_tolerantly_and_gates_on_name_and_dob() {
        let p = patient(&[
            ("firstname", "Christopher"),
            ("lastname", "Mc Testperson"),
            ("dob", "02/03/1981"),
            ("mobilephone", "(617) 555-0100"),
            ("email", "c@example.invalid"),
            ("ssn", "999-00-1234"),
            ("zip", "02472-1234"),
            ("sex", "M"),
        ]);
        let base = [("lastname", " mctestperson "), ("dob", "02/03/1981")];
        let with = |extra: &[(&str, &str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            score(&p, &query(&v))
        };
        assert_eq!(
            with(&[]),
            Some(50),
            "name and dob only: below the threshold"
        );
        assert_eq!(with(&[("firstname", "CHRISTOPHER")]), Some(70));
        assert_eq!(with(&[("firstname", "Chris")]), Some(62), "prefix");
        assert_eq!(
            with(&[("firstname", "Bob")]),
            Some(50),
            "not a nickname of it"
        );
        assert_eq!(
            with(&[
                ("firstname", "christopher"),
                ("homephone", "617-555-0100"),
                ("email", "C@example.invalid"),
                ("ssn", "1234"),
                ("zip", "02472"),
                ("sex", "m"),
            ]),
            Some(100)
        );
        assert_eq!(
            score(
                &p,
                &query(&[("lastname", "Mctestperson"), ("dob", "02/04/1981")])
            ),
            None,
            "another birth date is another patient"
        );
        assert!(first_name_tolerant("bob", "robert"));
        assert!(!first_name_tolerant("al", "alan"), "prefix needs 3 letters");
    }
}
