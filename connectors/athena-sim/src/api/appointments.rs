//! Appointments (§5.2): open slots, slot creation, booking (409 when taken), cancel,
//! reschedule, check-in, check-out, changes to a booked appointment, freeze/unfreeze of a slot,
//! appointment notes, read back, booked search and cancel reasons.
//! Status codes: `o` open, `f` booked, `2` checked in, `3` checked out, `4` charge entered,
//! `x` cancelled. Every accepted write is in the ledger and on the `appointments` feed.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{Duration as ChronoDuration, Utc};
use serde_json::{Value, json};

use crate::model::{Appointment, AppointmentNote, Practice};
use crate::state::SimState;
use crate::util::{
    ApiError, ApiResult, Params, eastern_stamp, ok, parse_eastern, parse_us_date, today_eastern,
    us_date,
};

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
                        && (!a.frozen || params.flag("showfrozenslots"))
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
    if a.status != "o" || a.frozen {
        return Err(ApiError::Http(
            StatusCode::CONFLICT,
            json!({"error": "That appointment time was already booked or not available for booking.",
                   "detailedmessage": "The appointment slot is no longer open."}),
        ));
    }
    refuse_past(a, now)?;
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

/// 400 when slot `a` started before `now` (practice-local wall clock, US Eastern): athena books
/// schedulable slots only.
// Guess: athena's status and text for a past slot are not documented; we answer 400 with the
// usual `error` body, checked after availability (a taken past slot is still 409). Past open
// slots stay listed by `/appointments/open` (its date filters decide).
fn refuse_past(a: &Appointment, now: chrono::DateTime<Utc>) -> ApiResult<()> {
    let starts = parse_eastern(&format!("{} {}:00", us_date(a.date), a.start_time));
    if starts.is_some_and(|t| t < now) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The appointment slot is in the past and cannot be scheduled.",
        ));
    }
    Ok(())
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
    let target = appt(p, new_id)?;
    if target.status != "o" || target.frozen {
        return Err(ApiError::Http(
            StatusCode::CONFLICT,
            json!({"error": "That appointment time was already booked or not available for booking."}),
        ));
    }
    let now = Utc::now();
    refuse_past(target, now)?;
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

// The appointment lifecycle after booking (issue 14): check-out, changes to a booked
// appointment, freeze/unfreeze of a slot and appointment notes. Each accepted write is in the
// ledger and on the `appointments` feed (and so on the push outbox).

/// Statuses whose appointment can still be changed (booked or checked in); cancelled,
/// checked-out and charge-entered appointments are closed.
fn changeable(status: &str) -> bool {
    matches!(status, "f" | "2")
}

/// Domain op of `POST /appointments/{id}/checkout`: only a checked-in appointment (`2` → `3`).
pub fn checkout(p: &mut Practice, id: u64) -> ApiResult<(Value, String)> {
    let now = Utc::now();
    let a = appt(p, id)?;
    if a.status != "2" {
        // Guess: athena's wording; check-out only after check-in.
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The appointment must be checked in before it can be checked out.",
        ));
    }
    a.status = "3".into();
    a.modified = now;
    p.appointment_changed(id, "CheckOut");
    Ok((json!({"success": "true"}), id.to_string()))
}

/// Domain op of `PUT /appointments/booked/{id}`: changes type, department, provider or
/// supervising provider of a booked or checked-in appointment; answers `"1"` (athena's shape).
pub fn update_booked(p: &mut Practice, params: &Params, id: u64) -> ApiResult<(Value, String)> {
    const FIELDS: [&str; 4] = [
        "appointmenttypeid",
        "departmentid",
        "providerid",
        "supervisingproviderid",
    ];
    if FIELDS.iter().all(|k| params.get(k).is_none()) {
        return Err(ApiError::missing(
            FIELDS.iter().map(|k| k.to_string()).collect(),
        ));
    }
    if let Some(d) = params.get("departmentid")
        && !p.has_department(d)
    {
        return Err(ApiError::invalid("departmentid", "Invalid department."));
    }
    for k in ["providerid", "supervisingproviderid"] {
        if let Some(v) = params.get(k)
            && !p.providers.contains_key(v)
        {
            return Err(ApiError::invalid(k, "Invalid provider."));
        }
    }
    let now = Utc::now();
    let a = appt(p, id)?;
    if !changeable(&a.status) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Only a booked or checked-in appointment can be changed.",
        ));
    }
    if let Some(v) = params.get("appointmenttypeid") {
        a.appointment_type_id = v.into();
    }
    if let Some(v) = params.get("departmentid") {
        a.department_id = v.into();
    }
    if let Some(v) = params.get("providerid") {
        a.provider_id = v.into();
    }
    if let Some(v) = params.get("supervisingproviderid") {
        a.supervising_provider_id = Some(v.into());
    }
    a.modified = now;
    p.appointment_changed(id, "UpdateAppointment");
    Ok((json!("1"), id.to_string()))
}

/// Domain op of `PUT /appointments/{id}/freeze`: `freeze=true` holds an open slot (nobody can
/// book it; `/appointments/open` hides it unless `showfrozenslots`), `freeze=false` releases
/// it. Refusals come as athena's `{"success":"false","errormessage"}`.
pub fn freeze(p: &mut Practice, params: &Params, id: u64) -> ApiResult<(Value, String)> {
    let want = match params.get("freeze").map(str::to_ascii_lowercase).as_deref() {
        Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(ApiError::invalid("freeze", "freeze must be true or false.")),
        None => return Err(ApiError::missing(vec!["freeze".into()])),
    };
    let now = Utc::now();
    let a = appt(p, id)?;
    if a.status != "o" {
        return Err(ApiError::Business(
            "Only an open appointment slot can be frozen or unfrozen.".into(),
        ));
    }
    // Guess: athena refuses a no-op (freezing a frozen slot); it keeps the ledger exact.
    if a.frozen == want {
        return Err(ApiError::Business(
            if want {
                "The appointment slot is already frozen."
            } else {
                "The appointment slot is not frozen."
            }
            .into(),
        ));
    }
    a.frozen = want;
    a.modified = now;
    let event = if want {
        "FreezeAppointment"
    } else {
        "UnfreezeAppointment"
    };
    p.appointment_changed(id, event);
    Ok((json!({"success": true}), id.to_string()))
}

/// Domain op of `POST /appointments/{id}/notes` (`notetext` required, `displayonschedule`):
/// any appointment but a cancelled one.
pub fn add_note(p: &mut Practice, params: &Params, id: u64) -> ApiResult<(Value, String)> {
    let text = params
        .get("notetext")
        .ok_or_else(|| ApiError::missing(vec!["notetext".into()]))?
        .to_string();
    if text.chars().count() > 500 {
        // Guess: athena's limit on a note's length.
        return Err(ApiError::invalid(
            "notetext",
            "notetext may be at most 500 characters.",
        ));
    }
    let note_id = p.next_note_id();
    let now = Utc::now();
    let a = appt(p, id)?;
    if a.status == "x" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "A note cannot be added to a cancelled appointment.",
        ));
    }
    a.notes.push(AppointmentNote {
        id: note_id,
        text,
        display_on_schedule: params.flag("displayonschedule"),
        created: eastern_stamp(now),
    });
    a.modified = now;
    // Guess: athena reports a new note as an appointment update.
    p.appointment_changed(id, "UpdateAppointment");
    Ok((
        json!({"success": "true", "appointmentnoteid": note_id.to_string()}),
        id.to_string(),
    ))
}

/// `POST /v1/{practiceid}/appointments/{appointmentid}/checkout`.
pub async fn post_checkout(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "CheckOutAppointment", &params, |p, _| checkout(p, id))
        .map(ok)
        .into_response()
}

/// `PUT /v1/{practiceid}/appointments/booked/{appointmentid}`.
pub async fn put_booked(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "UpdateAppointment", &params, |p, q| {
        update_booked(p, q, id)
    })
    .map(ok)
    .into_response()
}

/// `PUT /v1/{practiceid}/appointments/{appointmentid}/freeze`.
pub async fn put_freeze(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    let op = if params
        .get("freeze")
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
    {
        "UnfreezeAppointment"
    } else {
        "FreezeAppointment"
    };
    s.write(pid, op, &params, |p, q| freeze(p, q, id))
        .map(ok)
        .into_response()
}

/// `POST /v1/{practiceid}/appointments/{appointmentid}/notes`.
pub async fn post_note(
    State(s): State<SimState>,
    Path((pid, id)): Path<(u64, u64)>,
    params: Params,
) -> Response {
    s.write(pid, "AddAppointmentNote", &params, |p, q| {
        add_note(p, q, id)
    })
    .map(ok)
    .into_response()
}

/// `GET /v1/{practiceid}/appointments/{appointmentid}/notes`.
pub async fn get_notes(State(s): State<SimState>, Path((pid, id)): Path<(u64, u64)>) -> Response {
    s.read(pid, |p| {
        let items: Vec<Value> = appt(p, id)?
            .notes
            .iter()
            .map(|n| {
                json!({"noteid": n.id.to_string(), "notetext": n.text,
                       "displayonschedule": n.display_on_schedule, "created": n.created})
            })
            .collect();
        Ok(json!({"totalcount": items.len(), "notes": items}))
    })
    .map(ok)
    .into_response()
}
