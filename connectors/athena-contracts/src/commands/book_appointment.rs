//! Rust mirror of `schemas/commands/BookAppointment.avsc` (the schema is the contract; field docs
//! there). Data only: the sink's `commands/book_appointment.rs` holds what the command does.

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

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

impl AvroRecord for BookAppointment {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.BookAppointment";
}
