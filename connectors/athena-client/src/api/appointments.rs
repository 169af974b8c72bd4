//! Appointments: open slots, slot creation, booking, cancel, reschedule, check-in, reads.
//!
//! Retry safety per method (a lost answer to a write is `Error::Ambiguous`, never retried by the client):
//! * `PUT /appointments/{id}` (book) is NOT blindly retried: if the first attempt landed, a retry gets 409
//!   (`Error::SlotTaken`) although the booking is ours. On Ambiguous or SlotTaken, read back with
//!   [`PracticeClient::get_appointment`] and treat "booked for the same patientid" as success.
//! * cancel / reschedule / checkin / slot creation: not retried on ambiguity; read back first.
//! * every GET: retried.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveTime};
use http::Method;

use crate::api::list_all;
use crate::client::{Form, PracticeClient, from_value};
use crate::error::Error;
use crate::model::{Appointment, Raw, de};

/// Query of `GET /appointments/open`.
#[derive(Debug, Clone, Default)]
pub struct OpenSlotQuery {
    /// Department (required).
    pub department_id: String,
    /// Provider (required when `reason_ids` is not `-1`).
    pub provider_id: Option<String>,
    /// Reason ids (`-1` = any web-schedulable).
    pub reason_ids: Vec<String>,
    /// Appointment type (alternative to reasons).
    pub appointment_type_id: Option<String>,
    /// First date (default today).
    pub start_date: Option<NaiveDate>,
    /// Last date (default +7 days).
    pub end_date: Option<NaiveDate>,
    /// `bypassscheduletimechecks=true`.
    pub bypass_schedule_time_checks: bool,
    /// Page size.
    pub limit: Option<u32>,
}

/// `POST /appointments/open`: create open slots.
#[derive(Debug, Clone)]
pub struct CreateSlots {
    /// Department.
    pub department_id: String,
    /// Provider.
    pub provider_id: String,
    /// Appointment type (or use `reason_id`).
    pub appointment_type_id: Option<String>,
    /// Reason.
    pub reason_id: Option<String>,
    /// Date.
    pub date: NaiveDate,
    /// Start times (department local).
    pub times: Vec<NaiveTime>,
}

/// `PUT /appointments/{id}`: book an open slot. `Debug` omits the free-text note and extras.
#[derive(Clone, Default)]
pub struct BookAppointment {
    /// Patient (required).
    pub patient_id: String,
    /// Appointment type (staff/kiosk booking).
    pub appointment_type_id: Option<String>,
    /// Reason (web scheduling).
    pub reason_id: Option<String>,
    /// Department.
    pub department_id: Option<String>,
    /// Booking note (free text; may be clinical, never logged).
    pub booking_note: Option<String>,
    /// `ignoreschedulablepermission=true`.
    pub ignore_schedulable_permission: bool,
    /// `nopatientcase=true`.
    pub no_patient_case: bool,
    /// Other fields, verbatim.
    pub extra: Vec<(String, String)>,
}

impl std::fmt::Debug for BookAppointment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BookAppointment")
            .field("patient_id", &self.patient_id)
            .field("appointment_type_id", &self.appointment_type_id)
            .field("reason_id", &self.reason_id)
            .field("department_id", &self.department_id)
            .finish_non_exhaustive()
    }
}

/// `PUT /appointments/{id}/cancel`.
#[derive(Debug, Clone, Default)]
pub struct CancelAppointment {
    /// Patient (required).
    pub patient_id: String,
    /// From `GET /appointmentcancelreasons`.
    pub cancel_reason_id: Option<String>,
    /// Free-text reason.
    pub cancellation_reason: Option<String>,
}

/// `PUT /appointments/{id}/reschedule`.
#[derive(Debug, Clone, Default)]
pub struct RescheduleAppointment {
    /// Target open slot.
    pub new_appointment_id: String,
    /// Patient (required).
    pub patient_id: String,
    /// Cancel reason for the old slot.
    pub cancel_reason_id: Option<String>,
    /// Reason for the new slot.
    pub reason_id: Option<String>,
    /// Free-text reschedule reason.
    pub reschedule_reason: Option<String>,
}

/// `GET /appointments/booked` filters.
#[derive(Debug, Clone, Default)]
pub struct BookedQuery {
    /// Department (comma list allowed by athena).
    pub department_id: Option<String>,
    /// Provider.
    pub provider_id: Option<String>,
    /// Patient.
    pub patient_id: Option<String>,
    /// First date.
    pub start_date: Option<NaiveDate>,
    /// Last date.
    pub end_date: Option<NaiveDate>,
    /// Status filter (`f`, `x`, ...).
    pub appointment_status: Option<String>,
}

/// A cancel reason.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct CancelReason {
    /// Id to send as `appointmentcancelreasonid`.
    #[serde(deserialize_with = "de::string_or_number")]
    pub appointmentcancelreasonid: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
}

impl PracticeClient {
    /// `GET /v1/{practiceid}/appointments/open` — open slots (first page up to `limit`). Safe to retry.
    pub async fn open_slots(&self, q: &OpenSlotQuery) -> Result<Vec<Raw<Appointment>>, Error> {
        let route = "/v1/{practiceid}/appointments/open";
        let mut f = Form::new()
            .put("departmentid", &q.department_id)
            .opt("providerid", q.provider_id.as_ref())
            .list("reasonid", &q.reason_ids)
            .opt("appointmenttypeid", q.appointment_type_id.as_ref())
            .opt("startdate", q.start_date.map(de::format_date))
            .opt("enddate", q.end_date.map(de::format_date))
            .opt("limit", q.limit);
        if q.bypass_schedule_time_checks {
            f = f.put("bypassscheduletimechecks", "true");
        }
        let v: serde_json::Value = self
            .client
            .json(
                &self
                    .get(route, &["appointments", "open"])
                    .query(f.into_vec()),
            )
            .await?;
        let list = v
            .get("appointments")
            .cloned()
            .unwrap_or(serde_json::Value::Array(vec![]));
        from_value(route, list, false)
    }

    /// `POST /v1/{practiceid}/appointments/open` — create open slots; returns slot id -> `HH:MM`.
    /// Not retried on ambiguity (a retry would create duplicate slots).
    pub async fn create_open_slots(
        &self,
        req: &CreateSlots,
    ) -> Result<BTreeMap<String, String>, Error> {
        let route = "/v1/{practiceid}/appointments/open";
        let times: Vec<String> = req
            .times
            .iter()
            .map(|t| t.format("%H:%M").to_string())
            .collect();
        let f = Form::new()
            .put("departmentid", &req.department_id)
            .put("providerid", &req.provider_id)
            .opt("appointmenttypeid", req.appointment_type_id.as_ref())
            .opt("reasonid", req.reason_id.as_ref())
            .put("appointmentdate", de::format_date(req.date))
            .put("appointmenttime", times.join(","));
        let call = self.write(
            Method::POST,
            route,
            &["appointments", "open"],
            f.into_vec(),
            false,
        );
        let v: serde_json::Value = self.client.json(&call).await?;
        let ids = v.get("appointmentids").cloned().unwrap_or_default();
        Ok(match ids {
            serde_json::Value::Object(o) => o
                .into_iter()
                .map(|(k, v)| (k, de::value_to_id(&v).unwrap_or_default()))
                .collect(),
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(de::value_to_id)
                .map(|k| (k, String::new()))
                .collect(),
            _ => BTreeMap::new(),
        })
    }

    /// `PUT /v1/{practiceid}/appointments/{appointmentid}` — book an open slot for a patient.
    /// NOT safe to retry blindly: see the module docs (409 after a lost success). Ambiguous outcomes are
    /// reported as `Error::Ambiguous`; a taken slot as `Error::SlotTaken`.
    pub async fn book_appointment(
        &self,
        appointment_id: &str,
        req: &BookAppointment,
    ) -> Result<Raw<Appointment>, Error> {
        let route = "/v1/{practiceid}/appointments/{appointmentid}";
        let mut f = Form::new()
            .put("patientid", &req.patient_id)
            .opt("appointmenttypeid", req.appointment_type_id.as_ref())
            .opt("reasonid", req.reason_id.as_ref())
            .opt("departmentid", req.department_id.as_ref())
            .opt("bookingnote", req.booking_note.as_ref());
        if req.ignore_schedulable_permission {
            f = f.put("ignoreschedulablepermission", "true");
        }
        if req.no_patient_case {
            f = f.put("nopatientcase", "true");
        }
        let f = f.extend(&req.extra);
        let call = self.write(
            Method::PUT,
            route,
            &["appointments", appointment_id],
            f.into_vec(),
            false,
        );
        let v: serde_json::Value = self.client.json(&call).await?;
        de::one_or_first(v).map_err(|e| Error::decode(route, &e, true))
    }

    /// `PUT /v1/{practiceid}/appointments/{appointmentid}/cancel` — cancel a booked appointment.
    /// Not retried on ambiguity; read back (`appointmentstatus` `x`) before repeating.
    pub async fn cancel_appointment(
        &self,
        appointment_id: &str,
        req: &CancelAppointment,
    ) -> Result<(), Error> {
        let route = "/v1/{practiceid}/appointments/{appointmentid}/cancel";
        let f = Form::new()
            .put("patientid", &req.patient_id)
            .opt("appointmentcancelreasonid", req.cancel_reason_id.as_ref())
            .opt("cancellationreason", req.cancellation_reason.as_ref());
        let call = self.write(
            Method::PUT,
            route,
            &["appointments", appointment_id, "cancel"],
            f.into_vec(),
            false,
        );
        self.client.send(&call).await.map(|_| ())
    }

    /// `PUT /v1/{practiceid}/appointments/{appointmentid}/reschedule` — move to `new_appointment_id`.
    /// Not retried on ambiguity; read back both slots before repeating.
    pub async fn reschedule_appointment(
        &self,
        appointment_id: &str,
        req: &RescheduleAppointment,
    ) -> Result<Raw<Appointment>, Error> {
        let route = "/v1/{practiceid}/appointments/{appointmentid}/reschedule";
        let f = Form::new()
            .put("newappointmentid", &req.new_appointment_id)
            .put("patientid", &req.patient_id)
            .opt("appointmentcancelreasonid", req.cancel_reason_id.as_ref())
            .opt("reasonid", req.reason_id.as_ref())
            .opt("reschedulereason", req.reschedule_reason.as_ref());
        let call = self.write(
            Method::PUT,
            route,
            &["appointments", appointment_id, "reschedule"],
            f.into_vec(),
            false,
        );
        let v: serde_json::Value = self.client.json(&call).await?;
        de::one_or_first(v).map_err(|e| Error::decode(route, &e, true))
    }

    /// `POST /v1/{practiceid}/appointments/{appointmentid}/startcheckin`. Not retried on ambiguity.
    pub async fn start_checkin(&self, appointment_id: &str) -> Result<(), Error> {
        let route = "/v1/{practiceid}/appointments/{appointmentid}/startcheckin";
        let call = self.write(
            Method::POST,
            route,
            &["appointments", appointment_id, "startcheckin"],
            Vec::new(),
            false,
        );
        self.client.send(&call).await.map(|_| ())
    }

    /// `POST /v1/{practiceid}/appointments/{appointmentid}/checkin` (after `start_checkin`).
    /// Not retried on ambiguity; read back `appointmentstatus` (`2`).
    pub async fn checkin(&self, appointment_id: &str) -> Result<(), Error> {
        let route = "/v1/{practiceid}/appointments/{appointmentid}/checkin";
        let call = self.write(
            Method::POST,
            route,
            &["appointments", appointment_id, "checkin"],
            Vec::new(),
            false,
        );
        self.client.send(&call).await.map(|_| ())
    }

    /// `GET /v1/{practiceid}/appointments/{appointmentid}`. Safe to retry.
    pub async fn get_appointment(&self, appointment_id: &str) -> Result<Raw<Appointment>, Error> {
        let route = "/v1/{practiceid}/appointments/{appointmentid}";
        let v: serde_json::Value = self
            .client
            .json(&self.get(route, &["appointments", appointment_id]))
            .await?;
        de::one_or_first(v).map_err(|e| Error::decode(route, &e, false))
    }

    /// `GET /v1/{practiceid}/appointments/booked` — all pages (offset paging: not a destructive list).
    /// Safe to retry.
    pub async fn booked_appointments(
        &self,
        q: &BookedQuery,
        max_items: usize,
    ) -> Result<Vec<Raw<Appointment>>, Error> {
        let f = Form::new()
            .opt("departmentid", q.department_id.as_ref())
            .opt("providerid", q.provider_id.as_ref())
            .opt("patientid", q.patient_id.as_ref())
            .opt("startdate", q.start_date.map(de::format_date))
            .opt("enddate", q.end_date.map(de::format_date))
            .opt("appointmentstatus", q.appointment_status.as_ref());
        list_all(
            self,
            "/v1/{practiceid}/appointments/booked",
            &["appointments", "booked"],
            f.into_vec(),
            "appointments",
            1000,
            max_items,
        )
        .await
    }

    /// `GET /v1/{practiceid}/appointmentcancelreasons`. Safe to retry.
    pub async fn cancel_reasons(&self) -> Result<Vec<CancelReason>, Error> {
        list_all(
            self,
            "/v1/{practiceid}/appointmentcancelreasons",
            &["appointmentcancelreasons"],
            Vec::new(),
            "appointmentcancelreasons",
            1000,
            10_000,
        )
        .await
    }
}

/// Fields `PUT /appointments/booked/{id}` can change on a booked appointment (only the ones
/// set are sent).
#[derive(Debug, Clone, Default)]
pub struct UpdateBooked {
    /// New appointment type.
    pub appointment_type_id: Option<String>,
    /// New department.
    pub department_id: Option<String>,
    /// New provider.
    pub provider_id: Option<String>,
    /// New supervising provider.
    pub supervising_provider_id: Option<String>,
}

// The appointment lifecycle after booking. None of these is retried by the client on an
// ambiguous outcome: the sink reads back first (check-out status, the changed fields, the
// freeze flag, the notes).
impl PracticeClient {
    /// `PUT /v1/{practiceid}/appointments/booked/{appointmentid}`: changes a booked
    /// appointment's type, department or providers. athena answers `"1"`.
    pub async fn update_booked_appointment(
        &self,
        appointment_id: &str,
        req: &UpdateBooked,
    ) -> Result<(), Error> {
        let route = "/v1/{practiceid}/appointments/booked/{appointmentid}";
        let f = Form::new()
            .opt("appointmenttypeid", req.appointment_type_id.as_ref())
            .opt("departmentid", req.department_id.as_ref())
            .opt("providerid", req.provider_id.as_ref())
            .opt(
                "supervisingproviderid",
                req.supervising_provider_id.as_ref(),
            );
        let call = self.write(
            Method::PUT,
            route,
            &["appointments", "booked", appointment_id],
            f.into_vec(),
            false,
        );
        self.client.send(&call).await.map(|_| ())
    }

    /// `POST /v1/{practiceid}/appointments/{appointmentid}/checkout`.
    pub async fn checkout(&self, appointment_id: &str) -> Result<(), Error> {
        let route = "/v1/{practiceid}/appointments/{appointmentid}/checkout";
        let call = self.write(
            Method::POST,
            route,
            &["appointments", appointment_id, "checkout"],
            Vec::new(),
            false,
        );
        self.client.send(&call).await.map(|_| ())
    }

    /// `PUT /v1/{practiceid}/appointments/{appointmentid}/freeze` with `freeze=true|false`
    /// (holds or releases an open slot).
    pub async fn freeze_appointment(
        &self,
        appointment_id: &str,
        freeze: bool,
    ) -> Result<(), Error> {
        let route = "/v1/{practiceid}/appointments/{appointmentid}/freeze";
        let f = Form::new().put("freeze", freeze);
        let call = self.write(
            Method::PUT,
            route,
            &["appointments", appointment_id, "freeze"],
            f.into_vec(),
            false,
        );
        self.client.send(&call).await.map(|_| ())
    }

    /// `POST /v1/{practiceid}/appointments/{appointmentid}/notes`; the answer as sent
    /// (`appointmentnoteid` when athena gives one).
    pub async fn add_appointment_note(
        &self,
        appointment_id: &str,
        note_text: &str,
        display_on_schedule: bool,
    ) -> Result<serde_json::Value, Error> {
        let route = "/v1/{practiceid}/appointments/{appointmentid}/notes";
        let mut f = Form::new().put("notetext", note_text);
        if display_on_schedule {
            f = f.put("displayonschedule", "true");
        }
        let call = self.write(
            Method::POST,
            route,
            &["appointments", appointment_id, "notes"],
            f.into_vec(),
            false,
        );
        self.client.json(&call).await
    }

    /// `GET /v1/{practiceid}/appointments/{appointmentid}/notes`: the notes as sent.
    pub async fn appointment_notes(
        &self,
        appointment_id: &str,
    ) -> Result<Vec<serde_json::Value>, Error> {
        let route = "/v1/{practiceid}/appointments/{appointmentid}/notes";
        let v: serde_json::Value = self
            .client
            .json(&self.get(route, &["appointments", appointment_id, "notes"]))
            .await?;
        Ok(match v {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(mut o) => match o.remove("notes") {
                Some(serde_json::Value::Array(a)) => a,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        })
    }
}
