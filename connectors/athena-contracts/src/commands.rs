//! Command-side contracts that are not one command's payload: the result every command gets,
//! and `BookAppointment`, which the sink's bench and the end-to-end tests build directly. The
//! other command payloads live beside their handlers in `write-back-sink/src/commands/`.

use std::collections::BTreeMap;

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

impl AvroRecord for BookAppointment {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.BookAppointment";
}
impl AvroRecord for CommandResult {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.CommandResult";
}
