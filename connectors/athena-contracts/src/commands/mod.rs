//! The command-side contracts: every command payload's Avro mirror, one file per command (data
//! only: what a command does lives in `write-back-sink/src/commands/`, one file per command
//! too), and here the result every command gets.
//!
//! A new command's mirror is one file here plus its `mod`/`pub use` line below; its schema is
//! `schemas/commands/<Name>.avsc` and its example `schemas/examples/<Name>.json`, which
//! `tests/examples.rs` round-trips through the mirror (one line in its table).

mod add_insurance;
mod book_appointment;
mod cancel_appointment;
mod check_in_appointment;
mod create_claim;
mod create_patient;
mod record_payment;
mod reschedule_appointment;
mod update_patient;
mod upload_clinical_document;
// The appointment lifecycle and insurance changes (issue 14).
mod add_appointment_note;
mod check_out_appointment;
mod freeze_appointment;
mod remove_insurance;
mod unfreeze_appointment;
mod update_appointment;
mod update_insurance;

// Chart writes (issue 14, decision record 0020).
mod add_encounter_diagnosis;
mod add_historical_medication;
mod add_problem;
mod create_referral_order;
mod record_family_history;
mod record_surgical_history;
mod record_vaccine;
mod record_vitals;
mod update_allergies;
mod upload_lab_result;

pub use add_appointment_note::AddAppointmentNote;
pub use add_insurance::AddInsurance;
pub use book_appointment::BookAppointment;
pub use cancel_appointment::CancelAppointment;
pub use check_in_appointment::CheckInAppointment;
pub use check_out_appointment::CheckOutAppointment;
pub use create_claim::{ClaimCharge, CreateClaim};
pub use create_patient::CreatePatient;
pub use freeze_appointment::FreezeAppointment;
pub use record_payment::{CardDetails, RecordPayment};
pub use remove_insurance::RemoveInsurance;
pub use reschedule_appointment::RescheduleAppointment;
pub use unfreeze_appointment::UnfreezeAppointment;
pub use update_appointment::UpdateAppointment;
pub use update_insurance::UpdateInsurance;
pub use update_patient::UpdatePatient;
pub use upload_clinical_document::UploadClinicalDocument;

pub use add_encounter_diagnosis::AddEncounterDiagnosis;
pub use add_historical_medication::AddHistoricalMedication;
pub use add_problem::AddProblem;
pub use create_referral_order::CreateReferralOrder;
pub use record_family_history::RecordFamilyHistory;
pub use record_surgical_history::RecordSurgicalHistory;
pub use record_vaccine::RecordVaccine;
pub use record_vitals::{RecordVitals, VitalReading};
pub use update_allergies::{AllergyEntry, UpdateAllergies};
pub use upload_lab_result::{LabAnalyte, UploadLabResult};

use std::collections::BTreeMap;

use connector_core::avro::AvroRecord;
use serde::{Deserialize, Serialize};

use crate::TimestampMillis;

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

impl AvroRecord for CommandResult {
    const SCHEMA_NAME: &'static str = "com.athenaconnect.commands.CommandResult";
}
