//! FHIR R4 reads (§6): Patient read and search (with the `ah-practice` rule), and the
//! patient-scoped searches (`patient`, `_lastUpdated`, `_count`, `cursor`, `next` links) and reads
//! by id of Encounter, Condition, AllergyIntolerance and the clinical types of
//! [`crate::clinical`]. Minimal hand-written shapes.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::model::{Appointment, ChartItem, ChartKind, Patient, Practice};
use crate::state::SimState;
use crate::util::{Params, parse_us_date};

/// The `ah-practice` extension URL.
const AH_PRACTICE: &str = "https://fhir.athena.io/StructureDefinition/ah-practice";

/// A FHIR JSON answer (`application/fhir+json`).
pub fn fhir(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        v.to_string(),
    )
        .into_response()
}

/// An `OperationOutcome` error answer.
pub fn outcome(status: StatusCode, code: &str, text: &str) -> Response {
    fhir(
        status,
        json!({"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": code, "details": {"text": text}, "diagnostics": text}]}),
    )
}

/// Splits `a-{pid}.E-{patientid}` (optionally prefixed `Patient/`).
pub fn parse_patient_id(s: &str) -> Option<(u64, u64)> {
    let s = s.strip_prefix("Patient/").unwrap_or(s);
    let rest = s.strip_prefix("a-")?;
    let (pid, pat) = rest.split_once(".E-")?;
    Some((pid.parse().ok()?, pat.parse().ok()?))
}

/// Reads `ah-practice` in either documented spelling.
fn practice_param(params: &Params) -> Option<u64> {
    let raw = params
        .get("ah-practice")
        .or_else(|| params.get("ah-practice:Organization"))?;
    let id = raw.strip_prefix("Organization/").unwrap_or(raw);
    id.strip_prefix("a-1.Practice-")?.parse().ok()
}

/// The `ah-practice` extension of a resource of practice `pid`.
pub(crate) fn practice_ext(pid: u64) -> Value {
    json!([{"url": AH_PRACTICE, "valueReference": {"reference": format!("Organization/a-1.Practice-{pid}")}}])
}

/// The Patient resource of a patient.
pub fn patient_resource(pid: u64, p: &Patient) -> Value {
    let gender = match p.field("sex") {
        "M" | "m" => "male",
        "F" | "f" => "female",
        _ => "unknown",
    };
    let mut v = json!({
        "resourceType": "Patient",
        "id": format!("a-{pid}.E-{}", p.id),
        "meta": {"lastUpdated": p.modified.to_rfc3339()},
        "extension": practice_ext(pid),
        "identifier": [{"system": format!("urn:athenahealth:athenanet:patient:{pid}"), "value": p.id.to_string()}],
        "active": p.field("status") != "i",
        "name": [{"use": "official", "family": p.field("lastname"), "given": [p.field("firstname")]}],
        "gender": gender,
    });
    if let Some(d) = parse_us_date(p.field("dob")) {
        v["birthDate"] = json!(d.format("%Y-%m-%d").to_string());
    }
    let mut telecom = Vec::new();
    if !p.field("email").is_empty() {
        telecom.push(json!({"system": "email", "value": p.field("email")}));
    }
    if !p.field("mobilephone").is_empty() {
        telecom.push(json!({"system": "phone", "use": "mobile", "value": p.field("mobilephone")}));
    }
    if !telecom.is_empty() {
        v["telecom"] = json!(telecom);
    }
    if !p.field("zip").is_empty() {
        v["address"] = json!([{"postalCode": p.field("zip")}]);
    }
    v
}

// Guess: athena's Encounter/Condition/AllergyIntolerance logical ids are not documented; we use
// `a-{pid}.encounter-{appointmentid}`, `a-{pid}.problem-{id}`, `a-{pid}.allergy-{id}`.
/// The Encounter resource of a checked-in appointment.
pub fn encounter_resource(pid: u64, a: &Appointment) -> Value {
    json!({
        "resourceType": "Encounter",
        "id": format!("a-{pid}.encounter-{}", a.id),
        "meta": {"lastUpdated": a.modified.to_rfc3339()},
        "extension": practice_ext(pid),
        "status": if a.status == "2" { "arrived" } else { "finished" },
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/a-{pid}.E-{}", a.patient_id.unwrap_or_default())},
        "participant": [{"individual": {"reference": format!("Practitioner/a-{pid}.Provider-{}", a.provider_id)}}],
        "period": {"start": format!("{}T{}:00", a.date.format("%Y-%m-%d"), a.start_time)},
        "serviceProvider": {"reference": format!("Organization/a-{pid}.Department-{}", a.department_id)},
    })
}

/// The Condition or AllergyIntolerance resource of a chart item (other kinds: `None`).
pub fn chart_resource(pid: u64, c: &ChartItem) -> Option<Value> {
    let subject = json!({"reference": format!("Patient/a-{pid}.E-{}", c.patient_id)});
    let s = |k: &str| {
        c.json
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match c.kind {
        ChartKind::Problem => {
            // The problem's START / END events (athena's problem history) give the onset and
            // the abatement; an ended problem is resolved.
            let event = |ty: &str, key: &str| {
                c.json
                    .get("events")
                    .and_then(Value::as_array)
                    .and_then(|es| es.iter().rev().find(|e| e["eventtype"] == ty))
                    .and_then(|e| e.get(key)?.as_str().and_then(parse_us_date))
                    .map(|d| d.format("%Y-%m-%d").to_string())
            };
            let (onset, end) = (event("START", "startdate"), event("END", "enddate"));
            let status = if end.is_some() { "resolved" } else { "active" };
            let mut v = json!({
                "resourceType": "Condition",
                "id": format!("a-{pid}.problem-{}", c.id),
                "meta": {"lastUpdated": c.modified.to_rfc3339()},
                "extension": practice_ext(pid),
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": s("code"), "display": s("name")}]},
                "subject": subject,
            });
            if let Some(d) = onset {
                v["onsetDateTime"] = json!(d);
            }
            if let Some(d) = end {
                v["abatementDateTime"] = json!(d);
            }
            Some(v)
        }
        ChartKind::Allergy => Some(json!({
            "resourceType": "AllergyIntolerance",
            "id": format!("a-{pid}.allergy-{}", c.id),
            "meta": {"lastUpdated": c.modified.to_rfc3339()},
            "extension": practice_ext(pid),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "code": {"text": s("allergenname")},
            "patient": subject,
        })),
        _ => None,
    }
}

/// Resources of one type for a practice (optionally one patient), with last-update times.
pub fn resources(
    p: &Practice,
    ty: &str,
    patient: Option<u64>,
) -> Vec<(chrono::DateTime<chrono::Utc>, Value)> {
    let pid = p.id;
    let want = |x: u64| patient.is_none_or(|q| q == x);
    match ty {
        "Patient" => p
            .patients
            .values()
            .filter(|x| want(x.id))
            .map(|x| (x.modified, patient_resource(pid, x)))
            .collect(),
        "Encounter" => p
            .appointments
            .values()
            .filter(|a| {
                matches!(a.status.as_str(), "2" | "3" | "4") && a.patient_id.is_some_and(want)
            })
            .map(|a| (a.modified, encounter_resource(pid, a)))
            .collect(),
        "Condition" | "AllergyIntolerance" => p
            .chart
            .iter()
            .filter(|c| want(c.patient_id))
            .filter_map(|c| chart_resource(pid, c).map(|v| (c.modified, v)))
            .filter(|(_, v)| v["resourceType"] == ty)
            .collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .chain(
        p.clinical
            .values()
            .filter(|c| c.resource_type() == ty && want(c.patient_id))
            .map(|c| (c.modified, c.json.clone())),
    )
    .collect()
}

/// One `_lastUpdated` bound (`ge`, `gt`, `le`, `lt`, `eq` or no prefix = `eq`).
fn last_updated_ok(bound: &str, t: chrono::DateTime<chrono::Utc>) -> Option<bool> {
    let (op, v) = match bound.get(..2) {
        Some(op @ ("ge" | "gt" | "le" | "lt" | "eq")) => (op, &bound[2..]),
        _ => ("eq", bound),
    };
    let at = chrono::DateTime::parse_from_rfc3339(v)
        .ok()?
        .with_timezone(&chrono::Utc);
    Some(match op {
        "ge" => t >= at,
        "gt" => t > at,
        "le" => t <= at,
        "lt" => t < at,
        _ => t == at,
    })
}

/// Default and largest `_count` of a search.
// Guess: the reference observed a default of ~20; the cap of 100 is ours.
const DEFAULT_COUNT: usize = 20;
const MAX_COUNT: usize = 100;

fn bundle(base: &str, items: Vec<Value>) -> Value {
    let entry: Vec<Value> = items
        .into_iter()
        .map(|r| {
            let url = format!(
                "{base}/fhir/r4/{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            );
            json!({"fullUrl": url, "resource": r, "search": {"mode": "match"}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": entry.len(), "entry": entry})
}

/// `http://host` of the request, for absolute URLs in answers.
pub fn base_url(headers: &axum::http::HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// `GET /fhir/r4/Patient/{id}` (id `a-{pid}.E-{patientid}`).
pub async fn read_patient(State(s): State<SimState>, Path(id): Path<String>) -> Response {
    let Some((pid, pat)) = parse_patient_id(&id) else {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid FHIR request: the id is not a valid athenaOne patient id.",
        );
    };
    let found = s
        .with_practice(pid, |p| {
            p.patients.get(&pat).map(|x| patient_resource(pid, x))
        })
        .flatten();
    match found {
        Some(v) => fhir(StatusCode::OK, v),
        None => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("Resource Patient/{id} is not known."),
        ),
    }
}

/// `GET /fhir/r4/Patient?_id=…&ah-practice=…` (also `family`+`birthdate`/`given`/`gender`, `name`),
/// paged like the patient-scoped searches (`_count`, `cursor`, `next` link).
pub async fn search_patient(
    State(s): State<SimState>,
    headers: axum::http::HeaderMap,
    params: Params,
) -> Response {
    let Some(pid) = practice_param(&params) else {
        return outcome(
            StatusCode::BAD_REQUEST,
            "required",
            "Could not determine what practice the request was for. Add the `ah-practice` search parameter with a value of `Organization/a-1.Practice-{practiceid}`.",
        );
    };
    let ids = params.list("_id");
    let family = params.get("family").map(str::to_ascii_lowercase);
    let name = params.get("name").map(str::to_ascii_lowercase);
    let ok_combo = !ids.is_empty()
        || name.is_some()
        || params.get("identifier").is_some()
        || (family.is_some()
            && (params.get("birthdate").is_some()
                || params.get("gender").is_some()
                || params.get("given").is_some()));
    if !ok_combo {
        return outcome(
            StatusCode::BAD_REQUEST,
            "forbidden",
            "The search could not be completed: one of the required parameter combinations [[_id],[identifier],[name],[family,birthdate],[family,gender],[family,given]] was not provided.",
        );
    }
    let (count, offset) = match page_params(&params) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut wanted: BTreeMap<u64, ()> = BTreeMap::new();
    for i in &ids {
        // Guess: a qualified id for another practice matches nothing; an unqualified id is
        // accepted (some preview setups reject it, §8.3 — we are lenient).
        match parse_patient_id(i) {
            Some((p, x)) if p == pid => {
                wanted.insert(x, ());
            }
            Some(_) => {}
            None => {
                if let Ok(x) = i.parse() {
                    wanted.insert(x, ());
                }
            }
        }
    }
    let base = base_url(&headers);
    let items = s.with_practice(pid, |p| {
        p.patients
            .values()
            .filter(|x| ids.is_empty() || wanted.contains_key(&x.id))
            .filter(|x| {
                family
                    .as_ref()
                    .is_none_or(|f| x.field("lastname").to_ascii_lowercase() == *f)
            })
            .filter(|x| {
                name.as_ref().is_none_or(|n| {
                    x.field("lastname").to_ascii_lowercase().contains(n)
                        || x.field("firstname").to_ascii_lowercase().contains(n)
                })
            })
            .filter(|x| {
                params
                    .get("given")
                    .is_none_or(|g| x.field("firstname").eq_ignore_ascii_case(g))
            })
            .filter(|x| {
                params.get("birthdate").is_none_or(|b| {
                    parse_us_date(x.field("dob"))
                        .is_some_and(|d| d.format("%Y-%m-%d").to_string() == b)
                })
            })
            .filter(|x| {
                params
                    .get("identifier")
                    .is_none_or(|i| i.rsplit('|').next() == Some(&x.id.to_string()))
            })
            .map(|x| patient_resource(pid, x))
            .collect::<Vec<_>>()
    });
    // Patients are kept by id, so pages are in id order and stable while nothing is added.
    match items {
        Some(items) => fhir(
            StatusCode::OK,
            paged_bundle(&base, "Patient", &params, items, count, offset),
        ),
        None => outcome(StatusCode::NOT_FOUND, "not-found", "Unknown practice."),
    }
}

async fn by_patient(
    s: SimState,
    headers: axum::http::HeaderMap,
    params: Params,
    ty: &str,
) -> Response {
    let Some(pid) = practice_param(&params) else {
        return outcome(
            StatusCode::BAD_REQUEST,
            "required",
            "Could not determine what practice the request was for. Add the `ah-practice` search parameter with a value of `Organization/a-1.Practice-{practiceid}`.",
        );
    };
    let Some((ppid, pat)) = params.get("patient").and_then(parse_patient_id) else {
        return outcome(
            StatusCode::BAD_REQUEST,
            "forbidden",
            "The search could not be completed: one of the required parameter combinations [[patient],[_id]] was not provided.",
        );
    };
    let bounds = params.list("_lastUpdated");
    let now = chrono::Utc::now();
    if bounds.iter().any(|b| last_updated_ok(b, now).is_none()) {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "_lastUpdated must be a FHIR instant with an optional ge/gt/le/lt/eq prefix.",
        );
    }
    let (count, offset) = match page_params(&params) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let categories = params.list("category");
    let base = base_url(&headers);
    if ppid != pid {
        return fhir(StatusCode::OK, bundle(&base, Vec::new()));
    }
    let found = s.with_practice(pid, |p| {
        let mut items: Vec<(chrono::DateTime<chrono::Utc>, Value)> = resources(p, ty, Some(pat))
            .into_iter()
            .filter(|(t, _)| bounds.iter().all(|b| last_updated_ok(b, *t) == Some(true)))
            .filter(|(_, v)| categories.is_empty() || has_category(v, &categories))
            .collect();
        // Oldest change first, then id: pages are stable while nothing changes.
        items.sort_by(|a, b| (a.0, a.1["id"].as_str()).cmp(&(b.0, b.1["id"].as_str())));
        items
    });
    let Some(items) = found else {
        return outcome(StatusCode::NOT_FOUND, "not-found", "Unknown practice.");
    };
    let items = items.into_iter().map(|(_, v)| v).collect();
    fhir(
        StatusCode::OK,
        paged_bundle(&base, ty, &params, items, count, offset),
    )
}

/// `_count` (default [`DEFAULT_COUNT`], clamped to 1..=[`MAX_COUNT`]) and `cursor` of a search,
/// or the 400 answer for non-numbers.
#[allow(clippy::result_large_err)]
fn page_params(params: &Params) -> Result<(usize, usize), Response> {
    let count = params
        .get("_count")
        .map_or(Ok(DEFAULT_COUNT), str::parse::<usize>);
    let offset = params.get("cursor").map_or(Ok(0), str::parse::<usize>);
    match (count, offset) {
        (Ok(c), Ok(o)) => Ok((c.clamp(1, MAX_COUNT), o)),
        _ => Err(outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "_count and cursor must be non-negative numbers.",
        )),
    }
}

/// One page (`count` items from `offset`) of a sorted search result as a searchset Bundle with
/// `total` (the whole result), a `self` link and a `next` link unless this is the last page.
fn paged_bundle(
    base: &str,
    ty: &str,
    params: &Params,
    items: Vec<Value>,
    count: usize,
    offset: usize,
) -> Value {
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(offset).take(count).collect();
    let mut b = bundle(base, page);
    b["total"] = json!(total);
    let link = |cursor: Option<usize>| {
        let mut q: Vec<(&str, String)> = params
            .pairs()
            .iter()
            .filter(|(k, _)| k != "cursor" && k != "_count")
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        q.push(("_count", count.to_string()));
        if let Some(c) = cursor {
            q.push(("cursor", c.to_string()));
        }
        let qs = serde_urlencoded::to_string(&q).unwrap_or_default();
        format!("{base}/fhir/r4/{ty}?{qs}")
    };
    let mut links = vec![json!({"relation": "self", "url": link(Some(offset).filter(|o| *o > 0))})];
    // Guess: athena's cursor is opaque; ours is the offset into the sorted result.
    if offset + count < total {
        links.push(json!({"relation": "next", "url": link(Some(offset + count))}));
    }
    b["link"] = json!(links);
    b
}

/// Whether any `category` coding code (or a plain `code[]` category) is in `wanted`.
fn has_category(v: &Value, wanted: &[String]) -> bool {
    v["category"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| {
            c.as_str().is_some_and(|s| wanted.iter().any(|w| w == s))
                || c["coding"].as_array().is_some_and(|cd| {
                    cd.iter().any(|x| {
                        x["code"]
                            .as_str()
                            .is_some_and(|s| wanted.iter().any(|w| w == s))
                    })
                })
        })
    })
}

/// `GET /fhir/r4/{type}/{id}` of a patient-scoped type: routed by the id's `a-{pid}.` prefix.
pub async fn read_resource(s: SimState, ty: &'static str, id: String) -> Response {
    let pid = id
        .strip_prefix("a-")
        .and_then(|r| r.split_once('.'))
        .and_then(|(p, _)| p.parse::<u64>().ok());
    let found = pid
        .and_then(|pid| {
            s.with_practice(pid, |p| {
                resources(p, ty, None)
                    .into_iter()
                    .map(|(_, v)| v)
                    .find(|v| v["id"].as_str() == Some(id.as_str()))
            })
        })
        .flatten();
    match found {
        Some(v) => fhir(StatusCode::OK, v),
        None => outcome(
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("Resource {ty}/{id} is not known."),
        ),
    }
}

/// The patient-scoped search and the read by id of every clinical type (`GET /fhir/r4/{type}`,
/// `GET /fhir/r4/{type}/{id}`), for the guarded router.
pub fn routes(mut r: axum::Router<SimState>) -> axum::Router<SimState> {
    use axum::extract::Path;
    use axum::routing::get;
    for ty in crate::clinical::CLINICAL_TYPES
        .iter()
        .chain(crate::api::chart::FHIR_TYPES)
    {
        let ty: &'static str = ty;
        r = r
            .route(
                &format!("/fhir/r4/{ty}"),
                get(
                    move |State(s): State<SimState>,
                          headers: axum::http::HeaderMap,
                          params: Params| {
                        by_patient(s, headers, params, ty)
                    },
                ),
            )
            .route(
                &format!("/fhir/r4/{ty}/{{id}}"),
                get(move |State(s): State<SimState>, Path(id): Path<String>| {
                    read_resource(s, ty, id)
                }),
            );
    }
    r
}
