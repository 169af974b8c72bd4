//! Record shapes shared by several API areas. Field names are athena's (lower-case, no separators).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde::Deserialize;

use super::de;

/// An appointment or open slot as returned by `GET /appointments/{id}`, `/appointments/open`,
/// `/appointments/booked`, booking and the `appointments` changed feed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Appointment {
    /// Appointment (slot) id.
    #[serde(deserialize_with = "de::string_or_number")]
    pub appointmentid: String,
    /// Patient id, once booked.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub patientid: Option<String>,
    /// Department id.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub departmentid: Option<String>,
    /// Provider id.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub providerid: Option<String>,
    /// Appointment type id.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub appointmenttypeid: Option<String>,
    /// Date (department local).
    #[serde(default, deserialize_with = "de::opt_date")]
    pub date: Option<NaiveDate>,
    /// Start time `HH:MM` (department local).
    #[serde(default, deserialize_with = "de::opt_time")]
    pub starttime: Option<NaiveTime>,
    /// Duration in minutes.
    #[serde(default, deserialize_with = "de::opt_u64_lenient")]
    pub duration: Option<u64>,
    /// `o` open, `f` future/booked, `2` checked in, `3` checked out, `4` charge entered, `x` cancelled.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub appointmentstatus: Option<String>,
    /// Last modification time (practice local).
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub lastmodified: Option<NaiveDateTime>,
    /// New appointment id after a reschedule.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub rescheduledappointmentid: Option<String>,
}

/// A patient as returned by `GET /patients/{id}` and the `patients` changed feed (only ids and status typed;
/// demographics stay in the raw JSON so they are never copied into typed fields that might be logged).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Patient {
    /// Patient id.
    #[serde(deserialize_with = "de::string_or_number")]
    pub patientid: String,
    /// Primary department id.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub departmentid: Option<String>,
    /// `active`, `inactive`, `prospective` or `deleted`.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub status: Option<String>,
    /// Enterprise id, if athena returned one.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub enterpriseid: Option<String>,
    /// Ids merged into this patient (with `showpreviouspatientids`).
    #[serde(default, deserialize_with = "de::string_list_lenient")]
    pub previouspatientids: Vec<String>,
}

/// A claim as returned by `GET /claims` and `GET /claims/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Claim {
    /// Claim id.
    #[serde(deserialize_with = "de::string_or_number")]
    pub claimid: String,
    /// Patient id.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub patientid: Option<String>,
    /// Department id.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub departmentid: Option<String>,
    /// Appointment id for appointment-based claims.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub appointmentid: Option<String>,
    /// Date of service.
    #[serde(default, deserialize_with = "de::opt_date")]
    pub servicedate: Option<NaiveDate>,
}

/// An insurance package attached to a patient.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Insurance {
    /// Patient insurance id.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub insuranceid: Option<String>,
    /// Insurance package id (0 = self-pay).
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub insurancepackageid: Option<String>,
    /// 1 primary, 2 secondary.
    #[serde(default, deserialize_with = "de::opt_string_or_number")]
    pub sequencenumber: Option<String>,
}
