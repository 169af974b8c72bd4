//! Rust mirror of `schemas/commands/UpdateAppointment.avsc` (the schema is the contract; field docs
//! there). Data only: `write-back-sink/src/commands/update_appointment.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

/// `com.athenaconnect.commands.UpdateAppointment`: Change a booked or checked-in appointment's type, department, provider or supervising provider (PUT /v1/{practiceid}/appointments/booked/{appointmentid}).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAppointment {
    /// Idempotency key chosen by the producer (e.g. a UUID). A command id already applied is answered DUPLICATE without calling athena.
    pub command_id: String,
    /// athenaOne practice id.
    pub practice_id: String,
    /// Opaque id of the producer's choosing, copied to the result.
    pub correlation_id: Option<String>,
    /// When the producer issued the command, UTC.
    pub issued_at: Option<TimestampMillis>,
    /// athena appointmentid of the booked appointment.
    pub appointment_id: String,
    /// athena patientid, when the producer knows it (copied to the result).
    pub patient_id: Option<String>,
    /// New athena appointmenttypeid.
    pub appointment_type_id: Option<String>,
    /// New athena departmentid.
    pub department_id: Option<String>,
    /// New athena providerid.
    pub provider_id: Option<String>,
    /// New athena supervisingproviderid.
    pub supervising_provider_id: Option<String>,
}

impl AvroRecord for UpdateAppointment {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.UpdateAppointment";
}
