//! Claims (§5.3) and payments (§5.4). Business failures are answered as HTTP 200
//! `{"success":"false","errormessage":…}` like athena. `POST /claims` has no duplicate guard;
//! `POST /appointments/{id}/claim` refuses a second claim.

use axum::{
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use chrono::{Duration as ChronoDuration, NaiveDate, Utc};
use serde_json::{Value, json};

use crate::model::{Claim, PROCEDURE_CODES, Payment, Practice};
use crate::state::SimState;
use crate::util::{ApiError, ApiResult, Params, ok, parse_us_date, today_eastern};

/// Card numbers the simulated processor accepts (well-known public test PANs); anything else
/// is declined, so a real card number can never "work" here.
pub const TEST_PANS: &[&str] = &[
    "4111111111111111",
    "4242424242424242",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
];

/// Window in which an identical payment counts as a duplicate.
// Guess: athena does not publish the window; 10 minutes covers a client retry storm.
const DUPLICATE_WINDOW_MINUTES: i64 = 10;

fn parse_charges(params: &Params) -> ApiResult<Vec<Value>> {
    let raw = params
        .get("claimcharges")
        .ok_or_else(|| ApiError::missing(vec!["claimcharges".into()]))?;
    let v: Value = serde_json::from_str(raw)
        .map_err(|_| ApiError::Business("The claimcharges field is not valid JSON.".into()))?;
    let arr = v
        .as_array()
        .cloned()
        .ok_or_else(|| ApiError::Business("claimcharges must be a JSON array.".into()))?;
    if arr.is_empty() {
        return Err(ApiError::Business(
            "At least one claim charge is required.".into(),
        ));
    }
    for c in &arr {
        let code = c
            .get("procedurecode")
            .and_then(|x| x.as_str())
            .unwrap_or("");
        if !PROCEDURE_CODES.contains(&code) {
            return Err(ApiError::Business(format!(
                "Invalid procedure code '{code}'."
            )));
        }
        if c.get("icd10code1")
            .and_then(|x| x.as_str())
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::Business(
                "icd10code1 is required for each claim charge.".into(),
            ));
        }
    }
    Ok(arr)
}

/// Domain op of `POST /appointments/{id}/claim`.
pub fn appointment_claim(
    p: &mut Practice,
    params: &Params,
    appt_id: u64,
) -> ApiResult<(Value, String)> {
    let charges = parse_charges(params)?;
    let a = p
        .appointments
        .get(&appt_id)
        .ok_or_else(|| ApiError::not_found("The appointment ID is invalid."))?;
    // Guess: these refusals are business failures (HTTP 200, success "false") like the others.
    if a.claim_id.is_some() || a.status == "4" {
        return Err(ApiError::Business(
            "A claim already exists for this appointment.".into(),
        ));
    }
    if !matches!(a.status.as_str(), "2" | "3") {
        return Err(ApiError::Business(
            "The appointment must be checked in before a claim can be created.".into(),
        ));
    }
    let (patient, dept, prov, date) = (
        a.patient_id.unwrap_or_default(),
        a.department_id.clone(),
        a.provider_id.clone(),
        a.date,
    );
    let supervising = params
        .get("supervisingproviderid")
        .unwrap_or(&prov)
        .to_string();
    let id = insert_claim(
        p,
        patient,
        dept,
        supervising,
        prov,
        date,
        Some(appt_id),
        charges,
    );
    let now = Utc::now();
    if let Some(a) = p.appointments.get_mut(&appt_id) {
        a.status = "4".into();
        a.claim_id = Some(id);
        a.modified = now;
    }
    p.appointment_changed(appt_id, "UpdateAppointment");
    Ok((
        json!({"success": true, "claimids": [id.to_string()], "errormessage": ""}),
        id.to_string(),
    ))
}

#[allow(clippy::too_many_arguments)]
fn insert_claim(
    p: &mut Practice,
    patient: u64,
    dept: String,
    supervising: String,
    rendering: String,
    date: NaiveDate,
    appt: Option<u64>,
    charges: Vec<Value>,
) -> u64 {
    let id = p.next_claim_id();
    p.claims.insert(
        id,
        Claim {
            id,
            patient_id: patient,
            department_id: dept,
            supervising_provider_id: supervising,
            rendering_provider_id: rendering,
            service_date: date,
            appointment_id: appt,
            charges,
            paid_cents: 0,
            modified: Utc::now(),
        },
    );
    p.claim_changed(id);
    id
}

/// Domain op of `POST /claims` — deliberately no duplicate guard.
pub fn create_claim(p: &mut Practice, params: &Params) -> ApiResult<(Value, String)> {
    let miss: Vec<String> = [
        "patientid",
        "departmentid",
        "supervisingproviderid",
        "claimcharges",
    ]
    .iter()
    .filter(|k| params.get(k).is_none())
    .map(|k| k.to_string())
    .collect();
    if !miss.is_empty() {
        return Err(ApiError::missing(miss));
    }
    let charges = parse_charges(params)?;
    let patient: u64 = params
        .get("patientid")
        .unwrap_or("")
        .parse()
        .map_err(|_| ApiError::invalid("patientid", "Invalid patientid."))?;
    if !p.patients.contains_key(&patient) {
        return Err(ApiError::Business("The patient does not exist.".into()));
    }
    let dept = params.get("departmentid").unwrap_or("").to_string();
    if !p.has_department(&dept) {
        return Err(ApiError::Business("Invalid department.".into()));
    }
    let sup = params
        .get("supervisingproviderid")
        .unwrap_or("")
        .to_string();
    if !p.providers.contains_key(&sup) {
        return Err(ApiError::Business("Invalid supervising provider.".into()));
    }
    let date = match params.get("servicedate") {
        Some(d) => parse_us_date(d)
            .ok_or_else(|| ApiError::invalid("servicedate", "Invalid date; use MM/DD/YYYY."))?,
        None => today_eastern(),
    };
    if date > today_eastern() {
        return Err(ApiError::Business(
            "The service date cannot be in the future.".into(),
        ));
    }
    let rendering = params
        .get("renderingproviderid")
        .unwrap_or(&sup)
        .to_string();
    let id = insert_claim(p, patient, dept, sup, rendering, date, None, charges);
    Ok((
        json!({"success": true, "claimids": [id.to_string()], "errormessage": ""}),
        id.to_string(),
    ))
}

/// `POST /v1/{practiceid}/appointments/{appointmentid}/claim`.
pub async fn post_appointment_claim(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "CreateAppointmentClaim", &params, |p, q| {
        appointment_claim(p, q, id)
    })
    .map(ok)
    .into_response()
}

/// `POST /v1/{practiceid}/claims`.
pub async fn post_claim(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    params: Params,
) -> Response {
    s.write(pid, "CreateClaim", &params, create_claim)
        .map(ok)
        .into_response()
}

/// `GET /v1/{practiceid}/claims` (patientid, departmentid, providerid, servicestartdate,
/// serviceenddate, limit/offset).
pub async fn list(State(s): State<SimState>, Path(pid): Path<u64>, params: Params) -> Response {
    let r = (|| {
        let date = |k: &str| -> ApiResult<Option<NaiveDate>> {
            params
                .get(k)
                .map(|v| {
                    parse_us_date(v)
                        .ok_or_else(|| ApiError::invalid(k, "Invalid date; use MM/DD/YYYY."))
                })
                .transpose()
        };
        let (from, to) = (date("servicestartdate")?, date("serviceenddate")?);
        let pats = params.list("patientid");
        let depts = params.list("departmentid");
        let provs = params.list("providerid");
        s.read(pid, |p| {
            let items: Vec<Value> = p
                .claims
                .values()
                .filter(|c| pats.is_empty() || pats.contains(&c.patient_id.to_string()))
                .filter(|c| depts.is_empty() || depts.contains(&c.department_id))
                .filter(|c| provs.is_empty() || provs.contains(&c.rendering_provider_id) || provs.contains(&c.supervising_provider_id))
                .filter(|c| from.is_none_or(|f| c.service_date >= f) && to.is_none_or(|t| c.service_date <= t))
                .map(Claim::to_json)
                .collect();
            let total = items.len();
            let limit = params.usize("limit").unwrap_or(1500).clamp(1, 5000);
            let offset = params.usize("offset").unwrap_or(0);
            Ok(json!({"claims": items.into_iter().skip(offset).take(limit).collect::<Vec<_>>(), "totalcount": total}))
        })
    })();
    r.map(ok).into_response()
}

/// `GET /v1/{practiceid}/claims/{claimid}`.
// Guess: a one-element array like the other single-entity reads.
pub async fn get_one(State(s): State<SimState>, Path((pid, id)): Path<(u64, u64)>) -> Response {
    s.read(pid, |p| {
        p.claims
            .get(&id)
            .map(|c| json!([c.to_json()]))
            .ok_or_else(|| ApiError::not_found("The claim does not exist."))
    })
    .map(ok)
    .into_response()
}

fn cents(params: &Params, key: &str) -> ApiResult<i64> {
    let Some(v) = params.get(key) else {
        return Ok(0);
    };
    let f: f64 = v
        .parse()
        .map_err(|_| ApiError::invalid(key, "Invalid amount."))?;
    if f < 0.0 {
        return Err(ApiError::invalid(key, "Amounts cannot be negative."));
    }
    Ok((f * 100.0).round() as i64)
}

/// Total of copay, other and claim payments, and the claim allocations.
fn amounts(params: &Params) -> ApiResult<(i64, Vec<(u64, i64)>)> {
    let mut total = cents(params, "copayamount")? + cents(params, "otheramount")?;
    let mut alloc = Vec::new();
    if let Some(raw) = params.get("claimpayment") {
        let v: Value = serde_json::from_str(raw)
            .map_err(|_| ApiError::Business("The claimpayment field is not valid JSON.".into()))?;
        for obj in v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
        {
            for (claim, amount) in obj {
                let a = amount
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| amount.to_string());
                let c = (a
                    .parse::<f64>()
                    .map_err(|_| ApiError::Business("Invalid claim payment amount.".into()))?
                    * 100.0)
                    .round() as i64;
                let id = claim
                    .parse::<u64>()
                    .map_err(|_| ApiError::Business("Invalid claim id in claimpayment.".into()))?;
                alloc.push((id, c));
                total += c;
            }
        }
    }
    if total <= 0 {
        return Err(ApiError::Business("A payment amount is required.".into()));
    }
    Ok((total, alloc))
}

fn take_payment(p: &mut Practice, params: &Params, patient: u64, method: &str) -> ApiResult<u64> {
    if !p.patients.contains_key(&patient) {
        return Err(ApiError::not_found("The patient does not exist."));
    }
    if params.get("departmentid").is_none() {
        return Err(ApiError::missing(vec!["departmentid".into()]));
    }
    let (total, alloc) = amounts(params)?;
    for (claim, _) in &alloc {
        if !p.claims.contains_key(claim) {
            return Err(ApiError::Business(format!("Claim {claim} does not exist.")));
        }
    }
    let now = Utc::now();
    let dup = p.payments.iter().any(|x| {
        x.patient_id == patient
            && x.method == method
            && x.amount_cents == total
            && now - x.at < ChronoDuration::minutes(DUPLICATE_WINDOW_MINUTES)
    });
    if dup && !params.flag("allowduplicatepayments") {
        return Err(ApiError::Business(
            "This appears to be a duplicate payment. Set allowduplicatepayments to true to post it anyway.".into(),
        ));
    }
    let id = p.next_payment_id();
    p.payments.push(Payment {
        id,
        patient_id: patient,
        method: method.into(),
        amount_cents: total,
        at: now,
    });
    for (claim, c) in alloc {
        if let Some(cl) = p.claims.get_mut(&claim) {
            cl.paid_cents += c;
            cl.modified = now;
        }
        p.claim_changed(claim);
    }
    Ok(id)
}

/// Domain op of `POST /patients/{pid}/recordpayment` → `[{"success":"true","paymentbatchid"}]`.
pub fn record_payment(
    p: &mut Practice,
    params: &Params,
    patient: u64,
) -> ApiResult<(Value, String)> {
    let method = params
        .get("paymentmethod")
        .ok_or_else(|| ApiError::missing(vec!["paymentmethod".into()]))?
        .to_ascii_uppercase();
    if !matches!(
        method.as_str(),
        "CASH" | "CHECK" | "VISA" | "MASTERCARD" | "AMEX" | "DISCOVER"
    ) {
        return Err(ApiError::invalid(
            "paymentmethod",
            "Invalid payment method.",
        ));
    }
    if method == "CHECK" && params.get("checknumber").is_none() {
        return Err(ApiError::missing(vec!["checknumber".into()]));
    }
    let id = take_payment(p, params, patient, &method)?;
    Ok((
        json!([{"success": "true", "paymentbatchid": id.to_string()}]),
        id.to_string(),
    ))
}

/// Domain op of `POST /patients/{pid}/collectpayment` (card; only test PANs are accepted).
pub fn collect_payment(
    p: &mut Practice,
    params: &Params,
    patient: u64,
) -> ApiResult<(Value, String)> {
    if params.get("trackdata").is_none() {
        let miss: Vec<String> = [
            "accountnumber",
            "expirationmonthmm",
            "expirationyearyyyy",
            "nameoncard",
            "billingzip",
        ]
        .iter()
        .filter(|k| params.get(k).is_none())
        .map(|k| k.to_string())
        .collect();
        if !miss.is_empty() {
            return Err(ApiError::missing(miss));
        }
        let pan: String = params
            .get("accountnumber")
            .unwrap_or("")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if !TEST_PANS.contains(&pan.as_str()) {
            return Err(ApiError::Business("The card was declined.".into()));
        }
    }
    let id = take_payment(p, params, patient, "CARD")?;
    let (total, _) = amounts(params)?;
    Ok((
        json!({"success": "true", "paymentreceiptid": id.to_string(), "amount": format!("{}.{:02}", total / 100, total % 100)}),
        id.to_string(),
    ))
}

/// `POST /v1/{practiceid}/patients/{patientid}/recordpayment`.
pub async fn post_recordpayment(
    State(s): State<SimState>,
    Path((pid, pat)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "RecordPayment", &params, |p, q| {
        record_payment(p, q, pat)
    })
    .map(ok)
    .into_response()
}

/// `POST /v1/{practiceid}/patients/{patientid}/collectpayment`.
pub async fn post_collectpayment(
    State(s): State<SimState>,
    Path((pid, pat)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "CollectPayment", &params, |p, q| {
        collect_payment(p, q, pat)
    })
    .map(ok)
    .into_response()
}
