//! Rust mirrors of the Avro contracts in `schemas/`.
//!
//! The `.avsc` files are the source of truth (consumers in other languages read them); each
//! struct here has exactly the same field names, `["null", T]` unions are `Option<T>`, and
//! logical types sit behind [`TimestampMillis`] and [`Date`]. The contract tests encode every
//! struct with its schema, through the Confluent framing, against a real registry, and decode it
//! back, so a drift between the two fails CI.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::avro::AvroRecord;

/// Avro `timestamp-millis`: milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimestampMillis(pub i64);

impl TimestampMillis {
    /// The current time.
    pub fn now() -> Self {
        Utc::now().into()
    }
    /// As a chrono UTC time (None when out of chrono's range).
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.0)
    }
}

impl From<DateTime<Utc>> for TimestampMillis {
    fn from(t: DateTime<Utc>) -> Self {
        TimestampMillis(t.timestamp_millis())
    }
}

/// Avro `date`: days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Date(pub i32);

impl From<NaiveDate> for Date {
    fn from(d: NaiveDate) -> Self {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid epoch");
        // Dates a real EHR holds fit comfortably in i32 days.
        Date(d.signed_duration_since(epoch).num_days() as i32)
    }
}

impl Date {
    /// As a chrono date.
    pub fn to_naive(self) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(1970, 1, 1)?
            .checked_add_signed(chrono::Duration::days(i64::from(self.0)))
    }
}

/// Which athena mechanism produced an event (`com.athenaconnect.events.SourceKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SourceKind {
    /// A polled Changed Data Subscription.
    ChangedData,
    /// A FHIR event-subscription notification, inflated by reading the resource.
    FhirPush,
    /// A FHIR Bulk `$export` snapshot.
    BulkExport,
}

/// `com.athenaconnect.events.EventEnvelope`: metadata every event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEnvelope {
    /// Deterministic id of this change (see [`crate::ids::event_id`]).
    pub event_id: String,
    /// The athena mechanism that observed the change.
    pub source: SourceKind,
    /// athenaOne practice id.
    pub practice_id: String,
    /// athenaOne department id, when the record names one.
    pub department_id: Option<String>,
    /// Lower-case entity name (`patient`, `appointment`, ...).
    pub entity_type: String,
    /// athenaOne id of the changed entity.
    pub entity_id: String,
    /// athena event name when known.
    pub event_name: Option<String>,
    /// When the change happened in athena.
    pub changed_at: Option<TimestampMillis>,
    /// When athena-connect read it.
    pub observed_at: TimestampMillis,
    /// True for bulk-export snapshots.
    #[serde(default)]
    pub snapshot: bool,
    /// True when re-read through the replay window after a crash.
    #[serde(default)]
    pub replayed: bool,
}

/// `com.athenaconnect.events.Patient`: typed patient fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/PatientChanged.avsc, the contract.
pub struct Patient {
    pub patient_id: String,
    pub department_id: Option<String>,
    pub status: Option<String>,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub dob: Option<Date>,
    pub sex: Option<String>,
    pub email: Option<String>,
    pub home_phone: Option<String>,
    pub mobile_phone: Option<String>,
    pub address1: Option<String>,
    pub address2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub primary_provider_id: Option<String>,
    pub enterprise_id: Option<String>,
    #[serde(default)]
    pub previous_patient_ids: Vec<String>,
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.PatientChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed patient fields.
    pub payload: Patient,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

/// `com.athenaconnect.events.Appointment`: typed appointment fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/events/AppointmentChanged.avsc, the contract.
pub struct Appointment {
    pub appointment_id: String,
    pub patient_id: Option<String>,
    pub department_id: Option<String>,
    pub provider_id: Option<String>,
    pub appointment_type_id: Option<String>,
    pub status: Option<String>,
    pub date: Option<Date>,
    pub start_time: Option<String>,
    pub duration_minutes: Option<i32>,
    pub cancel_reason_id: Option<String>,
    pub cancelled_at: Option<TimestampMillis>,
    pub scheduled_at: Option<TimestampMillis>,
    pub rescheduled_appointment_id: Option<String>,
    pub last_modified: Option<TimestampMillis>,
}

/// `com.athenaconnect.events.AppointmentChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppointmentChanged {
    /// Event metadata.
    pub envelope: EventEnvelope,
    /// Typed appointment fields.
    pub payload: Appointment,
    /// The original athena record as JSON text, unless PHI minimisation is on.
    pub original: Option<String>,
}

/// `com.athenaconnect.commands.BookAppointment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Field docs live in schemas/commands/BookAppointment.avsc, the contract.
pub struct BookAppointment {
    pub command_id: String,
    pub practice_id: String,
    pub correlation_id: Option<String>,
    pub issued_at: Option<TimestampMillis>,
    pub appointment_id: String,
    pub patient_id: String,
    pub department_id: Option<String>,
    pub appointment_type_id: Option<String>,
    pub reason_id: Option<String>,
    pub booking_note: Option<String>,
    #[serde(default)]
    pub ignore_schedulable_permission: bool,
    #[serde(default)]
    pub no_patient_case: bool,
}

/// `com.athenaconnect.commands.CommandStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandStatus {
    /// athena accepted the command now.
    Applied,
    /// It had already been applied earlier.
    Duplicate,
    /// athena said no; retrying the same command will not help.
    Rejected,
    /// Retries exhausted or outcome not established.
    Failed,
}

/// `com.athenaconnect.commands.CommandError`: a PHI-free reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandError {
    /// Stable machine-readable code (e.g. `SLOT_TAKEN`).
    pub code: String,
    /// PHI-free explanation.
    pub message: String,
}

/// `com.athenaconnect.commands.CommandResult`: exactly one per command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    /// The command's idempotency key.
    pub command_id: String,
    /// Command schema name.
    pub command_type: String,
    /// Practice the command targeted.
    pub practice_id: String,
    /// Copied from the command.
    pub correlation_id: Option<String>,
    /// Outcome.
    pub status: CommandStatus,
    /// Ids athena created or touched, by name.
    #[serde(default)]
    pub athena_ids: BTreeMap<String, String>,
    /// Why it was not applied.
    pub error: Option<CommandError>,
    /// athena calls made for this command.
    #[serde(default)]
    pub attempts: i32,
    /// When the sink read the command.
    pub received_at: TimestampMillis,
    /// When the outcome was decided.
    pub completed_at: TimestampMillis,
}

impl AvroRecord for PatientChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.PatientChanged";
}
impl AvroRecord for AppointmentChanged {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.events.AppointmentChanged";
}
impl AvroRecord for BookAppointment {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.BookAppointment";
}
impl AvroRecord for CommandResult {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.CommandResult";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_and_timestamp_conversions() {
        let d = NaiveDate::from_ymd_opt(1990, 1, 1).unwrap();
        let days = Date::from(d);
        assert_eq!(days.0, 7305);
        assert_eq!(days.to_naive(), Some(d));
        let t = DateTime::from_timestamp_millis(1_764_000_000_000).unwrap();
        assert_eq!(TimestampMillis::from(t).to_datetime(), Some(t));
    }
}
