//! Appointments (§5.2): open slots, slot creation, booking (409 when taken), cancel,
//! reschedule, check-in, read back, booked search and cancel reasons.
//! Status codes: `o` open, `f` booked, `2` checked in, `3` checked out, `4` charge entered,
//! `x` cancelled. Every accepted write is in the ledger and on the `appointments` feed.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{Duration as ChronoDuration, Utc};
use serde_json::{Value, json};

use crate::model::{Appointment, Practice};
use crate::state::SimState;
use crate::util::{ApiError, ApiResult, Params, eastern_stamp, ok, parse_us_date, today_eastern};

/// Reasons served by `GET /appointmentcancelreasons`.
pub const CANCEL_REASONS: &[(&str, &str, &str)] = &[
    ("1", "Patient Cancelled", "PATIENT"),
    ("2", "Provider Unavailable", "PROVIDER"),
    ("3", "Scheduling Error", "PROVIDER"),
    ("4", "Patient No Show", "PATIENT"),
];

fn appt(p: &mut Practice, id: u64) -> ApiResult<&mut Appointment> {
    // Guess: athena's wording for an unknown appointment id.
    p.appointments
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("The appointment ID is invalid."))
}

fn patient_id(p: &Practice, params: &Params) -> ApiResult<u64> {
    let raw = params
        .get("patientid")
        .ok_or_else(|| ApiError::missing(vec!["patientid".into()]))?;
    let id: u64 = raw
        .parse()
        .map_err(|_| ApiError::invalid("patientid", "Invalid patientid."))?;
    if !p.patients.contains_key(&id) {
        return Err(ApiError::invalid(
            "patientid",
            "The patient does not exist.",
        ));
    }
    Ok(id)
}

fn date_range(params: &Params) -> ApiResult<(chrono::NaiveDate, chrono::NaiveDate)> {
    let parse = |k: &str| -> ApiResult<Option<chrono::NaiveDate>> {
        params
            .get(k)
            .map(|v| {
                parse_us_date(v)
                    .ok_or_else(|| ApiError::invalid(k, "Invalid date; use MM/DD/YYYY."))
            })
            .transpose()
    };
    let start = parse("startdate")?.unwrap_or_else(today_eastern);
    let end = parse("enddate")?.unwrap_or(start + ChronoDuration::days(7));
    Ok((start, end))
}

/// `GET /v1/{practiceid}/appointments/open` (default window today..+7 days; limit 1000 / 10000).
pub async fn open(State(s): State<SimState>, Path(pid): Path<u64>, params: Params) -> Response {
    let r = (|| {
        let dept = params.list("departmentid");
        if dept.is_empty() {
            return Err(ApiError::missing(vec!["departmentid".into()]));
        }
        let (start, end) = date_range(&params)?;
        let provs = params.list("providerid");
        let types = params.list("appointmenttypeid");
        s.read(pid, |p| {
            let items = p
                .appointments
                .values()
                .filter(|a| {
                    a.status == "o"
                        && dept.contains(&a.department_id)
                        && a.date >= start
                        && a.date <= end
                })
                .filter(|a| provs.is_empty() || provs.contains(&a.provider_id))
                .filter(|a| types.is_empty() || types.contains(&a.appointment_type_id))
                .map(Appointment::to_json)
                .collect();
            Ok(crate::util::paged(
                "appointments",
                items,
                &params,
                &format!("/v1/{pid}/appointments/open"),
                1000,
                10_000,
            ))
        })
    })();
    r.map(ok).into_response()
}

/// Domain op of `POST /appointments/open`: `{"appointmentids":{"<id>":"HH:MM"}}`.
pub fn create_slots(p: &mut Practice, params: &Params) -> ApiResult<(Value, String)> {
    let miss: Vec<String> = [
        "appointmentdate",
        "appointmenttime",
        "departmentid",
        "providerid",
    ]
    .iter()
    .filter(|k| params.get(k).is_none())
    .map(|k| k.to_string())
    .collect();
    if !miss.is_empty() {
        return Err(ApiError::missing(miss));
    }
    let date = parse_us_date(params.get("appointmentdate").unwrap_or(""))
        .ok_or_else(|| ApiError::invalid("appointmentdate", "Invalid date; use MM/DD/YYYY."))?;
    let dept = params.get("departmentid").unwrap_or("");
    let prov = params.get("providerid").unwrap_or("");
    if !p.has_department(dept) {
        return Err(ApiError::invalid("departmentid", "Invalid department."));
    }
    if !p.providers.contains_key(prov) {
        return Err(ApiError::invalid("providerid", "Invalid provider."));
    }
    let times = params.list("appointmenttime");
    if times
        .iter()
        .any(|t| chrono::NaiveTime::parse_from_str(t, "%H:%M").is_err())
    {
        return Err(ApiError::invalid(
            "appointmenttime",
            "Invalid time; use HH24:MI.",
        ));
    }
    let ty = params.get("appointmenttypeid").unwrap_or("82").to_string();
    let refs: Vec<&str> = times.iter().map(String::as_str).collect();
    let ids = p.create_slots(dept, prov, &ty, date, &refs, Utc::now());
    let mut map = serde_json::Map::new();
    for (id, t) in ids.iter().zip(&times) {
        map.insert(id.to_string(), json!(t));
        p.appointment_changed(*id, "AddAppointmentSlot");
    }
    let entity = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    Ok((json!({"appointmentids": map}), entity))
}

/// Domain op of `PUT /appointments/{id}` (book). 409 when the slot is not open.
pub fn book(p: &mut Practice, params: &Params, id: u64) -> ApiResult<(Value, String)> {
    let pat = patient_id(p, params)?;
    let now = Utc::now();
    let a = appt(p, id)?;
    if a.status != "o" {
        return Err(ApiError::Http(
            StatusCode::CONFLICT,
            json!({"error": "That appointment time was already booked or not available for booking.",
                   "detailedmessage": "The appointment slot is no longer open."}),
        ));
    }
    // athena's booking rules: a reason (web scheduling) or an appointment type (staff booking)
    // is required, and it must be one the practice schedules.
    // Guess: checked after the slot's availability (a taken slot answers 409 whatever the
    // form), with the usual missing/invalid-fields 400.
    use crate::api::reference::{APPOINTMENT_TYPES, reason_of};
    match (params.get("appointmenttypeid"), params.get("reasonid")) {
        (None, None) => {
            return Err(ApiError::missing(vec![
                "appointmenttypeid".into(),
                "reasonid".into(),
            ]));
        }
        (Some(t), _) if !APPOINTMENT_TYPES.iter().any(|(id, _, _)| *id == t) => {
            return Err(ApiError::invalid(
                "appointmenttypeid",
                "The appointment type is not schedulable.",
            ));
        }
        (_, Some(r))
            if !APPOINTMENT_TYPES
                .iter()
                .any(|(id, _, _)| reason_of(id) == r) =>
        {
            return Err(ApiError::invalid(
                "reasonid",
                "The reason is not schedulable.",
            ));
        }
        _ => {}
    }
    a.status = "f".into();
    a.patient_id = Some(pat);
    a.scheduled = Some(eastern_stamp(now));
    a.booking_note = params.get("bookingnote").map(str::to_string);
    if let Some(t) = params.get("appointmenttypeid") {
        a.appointment_type_id = t.to_string();
    }
    a.modified = now;
    let v = json!([a.to_json()]);
    p.appointment_changed(id, "ScheduleAppointment");
    Ok((v, id.to_string()))
}

/// Domain op of `PUT /appointments/{id}/cancel` → `{"status":"x"}`.
pub fn cancel(p: &mut Practice, params: &Params, id: u64) -> ApiResult<(Value, String)> {
    let pat = patient_id(p, params)?;
    let now = Utc::now();
    let a = appt(p, id)?;
    if a.status == "x" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The appointment is already cancelled.",
        ));
    }
    if a.patient_id != Some(pat) || a.status != "f" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The appointment is not booked for this patient or cannot be cancelled.",
        ));
    }
    a.status = "x".into();
    a.cancel_reason_id = Some(
        params
            .get("appointmentcancelreasonid")
            .unwrap_or("1")
            .to_string(),
    );
    a.cancelled = Some(eastern_stamp(now));
    a.modified = now;
    p.appointment_changed(id, "CancelAppointment");
    Ok((json!({"status": "x"}), id.to_string()))
}

/// Domain op of `PUT /appointments/{id}/reschedule`: cancels `id`, books `newappointmentid`.
pub fn reschedule(p: &mut Practice, params: &Params, id: u64) -> ApiResult<(Value, String)> {
    let pat = patient_id(p, params)?;
    let new_id: u64 = params
        .get("newappointmentid")
        .ok_or_else(|| ApiError::missing(vec!["newappointmentid".into()]))?
        .parse()
        .map_err(|_| ApiError::invalid("newappointmentid", "Invalid newappointmentid."))?;
    let old = appt(p, id)?;
    if old.patient_id != Some(pat) || old.status != "f" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The appointment is not booked for this patient or cannot be rescheduled.",
        ));
    }
    let (note, ty) = (old.booking_note.clone(), old.appointment_type_id.clone());
    if appt(p, new_id)?.status != "o" {
        return Err(ApiError::Http(
            StatusCode::CONFLICT,
            json!({"error": "That appointment time was already booked or not available for booking."}),
        ));
    }
    let now = Utc::now();
    let old = appt(p, id)?;
    old.status = "x".into();
    old.cancel_reason_id = Some(
        params
            .get("appointmentcancelreasonid")
            .unwrap_or("3")
            .to_string(),
    );
    old.cancelled = Some(eastern_stamp(now));
    old.rescheduled_appointment_id = Some(new_id);
    old.modified = now;
    let new = appt(p, new_id)?;
    new.status = "f".into();
    new.patient_id = Some(pat);
    new.scheduled = Some(eastern_stamp(now));
    new.booking_note = note;
    new.appointment_type_id = ty;
    new.rescheduled_appointment_id = Some(id);
    new.modified = now;
    let v = json!([new.to_json()]);
    // Guess: the old appointment is reported as cancelled and the new one as scheduled.
    p.appointment_changed(id, "CancelAppointment");
    p.appointment_changed(new_id, "ScheduleAppointment");
    Ok((v, new_id.to_string()))
}

/// Domain op of `POST /appointments/{id}/startcheckin` and `…/checkin`.
pub fn checkin(p: &mut Practice, id: u64, start_only: bool) -> ApiResult<(Value, String)> {
    let now = Utc::now();
    let a = appt(p, id)?;
    if a.status != "f" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The appointment is not in a state that allows check-in.",
        ));
    }
    if start_only {
        a.checkin_started = true;
        return Ok((json!({"success": "true"}), id.to_string()));
    }
    if !a.checkin_started {
        // Guess: athena requires startcheckin first; answered as a 400 validation error.
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Check-in has not been started for this appointment.",
        ));
    }
    a.status = "2".into();
    a.checkin = Some(eastern_stamp(now));
    a.modified = now;
    p.appointment_changed(id, "CheckIn");
    Ok((json!({"success": "true"}), id.to_string()))
}

/// `POST /v1/{practiceid}/appointments/open`.
pub async fn post_open(
    State(s): State<SimState>,
    Path(pid): Path<u64>,
    params: Params,
) -> Response {
    s.write(pid, "CreateAppointmentSlots", &params, create_slots)
        .map(ok)
        .into_response()
}

/// `PUT /v1/{practiceid}/appointments/{appointmentid}`.
pub async fn put_book(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "BookAppointment", &params, |p, q| book(p, q, id))
        .map(ok)
        .into_response()
}

/// `PUT /v1/{practiceid}/appointments/{appointmentid}/cancel`.
pub async fn put_cancel(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "CancelAppointment", &params, |p, q| cancel(p, q, id))
        .map(ok)
        .into_response()
}

/// `PUT /v1/{practiceid}/appointments/{appointmentid}/reschedule`.
pub async fn put_reschedule(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "RescheduleAppointment", &params, |p, q| {
        reschedule(p, q, id)
    })
    .map(ok)
    .into_response()
}

/// `POST /v1/{practiceid}/appointments/{appointmentid}/startcheckin`.
pub async fn post_startcheckin(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "StartCheckIn", &params, |p, _| checkin(p, id, true))
        .map(ok)
        .into_response()
}

/// `POST /v1/{practiceid}/appointments/{appointmentid}/checkin`.
pub async fn post_checkin(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "CheckIn", &params, |p, _| checkin(p, id, false))
        .map(ok)
        .into_response()
}

/// `GET /v1/{practiceid}/appointments/{appointmentid}` — a one-element array.
pub async fn get_one(State(s): State<SimState>, Path((pid, id)): Path<(u64, u64)>) -> Response {
    s.read(pid, |p| Ok(json!([appt(p, id)?.to_json()])))
        .map(ok)
        .into_response()
}

/// `GET /v1/{practiceid}/appointments/booked` (open slots never; cancelled ones only with
/// `showcancelled=true`).
pub async fn booked(State(s): State<SimState>, Path(pid): Path<u64>, params: Params) -> Response {
    let r = (|| {
        let (start, end) = match (params.get("startdate"), params.get("enddate")) {
            (None, None) => (chrono::NaiveDate::MIN, chrono::NaiveDate::MAX),
            _ => date_range(&params)?,
        };
        let depts = params.list("departmentid");
        let provs = params.list("providerid");
        let pats = params.list("patientid");
        let statuses = params.list("appointmentstatus");
        let show_cancelled = params.flag("showcancelled");
        s.read(pid, |p| {
            let items = p
                .appointments
                .values()
                .filter(|a| {
                    a.status != "o"
                        && (show_cancelled
                            || a.status != "x"
                            || statuses.contains(&"x".to_string()))
                })
                .filter(|a| a.date >= start && a.date <= end)
                .filter(|a| depts.is_empty() || depts.contains(&a.department_id))
                .filter(|a| provs.is_empty() || provs.contains(&a.provider_id))
                .filter(|a| {
                    pats.is_empty() || a.patient_id.is_some_and(|x| pats.contains(&x.to_string()))
                })
                .filter(|a| statuses.is_empty() || statuses.contains(&a.status))
                .map(Appointment::to_json)
                .collect();
            Ok(crate::util::paged(
                "appointments",
                items,
                &params,
                &format!("/v1/{pid}/appointments/booked"),
                1500,
                5000,
            ))
        })
    })();
    r.map(ok).into_response()
}

/// `GET /v1/{practiceid}/appointmentcancelreasons`.
pub async fn cancel_reasons() -> Response {
    let items: Vec<Value> = CANCEL_REASONS
        .iter()
        .map(|(id, name, ty)| json!({"appointmentcancelreasonid": id, "name": name, "type": ty}))
        .collect();
    ok(json!({"totalcount": items.len(), "appointmentcancelreasons": items}))
}
