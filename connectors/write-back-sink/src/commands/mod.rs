//! The commands the sink understands: one Rust mirror per Avro schema under `schemas/commands/`
//! (one small file each; `BookAppointment` and `CommandResult` live in
//! `connector_core::contracts`), the [`Command`] enum over all of them, and [`CommandDecoder`],
//! which turns a Confluent-framed message into a `Command` by the *writer* schema's record name,
//! so one topic can carry several command types (TopicRecordNameStrategy, decision record
//! `docs/decisions/0007-write-back-topics-and-subjects.md`).

mod add_insurance;
mod cancel_appointment;
mod check_in_appointment;
mod create_claim;
mod create_patient;
mod record_payment;
mod reschedule_appointment;
mod update_patient;
mod upload_clinical_document;

pub use athena_contracts::BookAppointment;
use connector_core::CoreError;
use connector_core::avro::{AvroCodec, AvroRecord, RegistryConfig};

pub use add_insurance::AddInsurance;
pub use cancel_appointment::CancelAppointment;
pub use check_in_appointment::CheckInAppointment;
pub use create_claim::{ClaimCharge, CreateClaim};
pub use create_patient::CreatePatient;
pub use record_payment::{CardDetails, RecordPayment};
pub use reschedule_appointment::RescheduleAppointment;
pub use update_patient::UpdatePatient;
pub use upload_clinical_document::UploadClinicalDocument;

/// Any command the sink performs.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Register a patient.
    CreatePatient(CreatePatient),
    /// Change patient demographics.
    UpdatePatient(UpdatePatient),
    /// Book an open slot.
    BookAppointment(BookAppointment),
    /// Cancel a booked appointment.
    CancelAppointment(CancelAppointment),
    /// Move a booked appointment to another slot.
    RescheduleAppointment(RescheduleAppointment),
    /// Check a patient in.
    CheckInAppointment(CheckInAppointment),
    /// Charge entry (appointment-based or stand-alone).
    CreateClaim(CreateClaim),
    /// Post a payment (card capture only with the PCI opt-in).
    RecordPayment(RecordPayment),
    /// File a clinical document.
    UploadClinicalDocument(UploadClinicalDocument),
    /// Add an insurance package.
    AddInsurance(AddInsurance),
}

/// Full names of every command record, in [`Command`] order.
pub const COMMAND_SCHEMAS: &[&str] = &[
    CreatePatient::SCHEMA_NAME,
    UpdatePatient::SCHEMA_NAME,
    BookAppointment::SCHEMA_NAME,
    CancelAppointment::SCHEMA_NAME,
    RescheduleAppointment::SCHEMA_NAME,
    CheckInAppointment::SCHEMA_NAME,
    CreateClaim::SCHEMA_NAME,
    RecordPayment::SCHEMA_NAME,
    UploadClinicalDocument::SCHEMA_NAME,
    AddInsurance::SCHEMA_NAME,
];

macro_rules! each {
    ($self:expr, $c:ident => $e:expr) => {
        match $self {
            Command::CreatePatient($c) => $e,
            Command::UpdatePatient($c) => $e,
            Command::BookAppointment($c) => $e,
            Command::CancelAppointment($c) => $e,
            Command::RescheduleAppointment($c) => $e,
            Command::CheckInAppointment($c) => $e,
            Command::CreateClaim($c) => $e,
            Command::RecordPayment($c) => $e,
            Command::UploadClinicalDocument($c) => $e,
            Command::AddInsurance($c) => $e,
        }
    };
}

impl Command {
    /// The producer's idempotency key.
    pub fn command_id(&self) -> &str {
        each!(self, c => &c.command_id)
    }
    /// athenaOne practice id as sent.
    pub fn practice_id(&self) -> &str {
        each!(self, c => &c.practice_id)
    }
    /// Correlation id, copied to the result.
    pub fn correlation_id(&self) -> Option<&str> {
        each!(self, c => c.correlation_id.as_deref())
    }
    /// The schema's short name (`BookAppointment`), used as `command_type` and metric label.
    pub fn type_name(&self) -> &'static str {
        match self {
            Command::CreatePatient(_) => "CreatePatient",
            Command::UpdatePatient(_) => "UpdatePatient",
            Command::BookAppointment(_) => "BookAppointment",
            Command::CancelAppointment(_) => "CancelAppointment",
            Command::RescheduleAppointment(_) => "RescheduleAppointment",
            Command::CheckInAppointment(_) => "CheckInAppointment",
            Command::CreateClaim(_) => "CreateClaim",
            Command::RecordPayment(_) => "RecordPayment",
            Command::UploadClinicalDocument(_) => "UploadClinicalDocument",
            Command::AddInsurance(_) => "AddInsurance",
        }
    }
    /// Whether repeating the athena call could write twice. Such commands get an intent record in
    /// the ledger before every call, and are reconciled (read back) before any repeat.
    pub fn is_non_idempotent(&self) -> bool {
        !matches!(self, Command::UpdatePatient(_))
    }
}

/// Decodes Confluent-framed messages into [`Command`]s by the writer schema's record name.
#[derive(Clone, Debug)]
pub struct CommandDecoder {
    codec: AvroCodec,
}

impl CommandDecoder {
    /// A decoder over the registry in `config` (schemas are fetched by id once and cached).
    pub fn new(config: &RegistryConfig) -> Result<Self, CoreError> {
        Ok(CommandDecoder {
            codec: AvroCodec::new(config.clone())?,
        })
    }

    /// Decodes one message. Not Avro, an unknown schema id, a record that is no command, or one
    /// that does not resolve against our schema is a `Permanent` error (dead-letter it); a
    /// registry outage is `Retriable`. Classification is `AvroCodec::decode_any`'s.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Command, CoreError> {
        let decoded = self.codec.decode_any(bytes).await?;
        let name = decoded.record_name.clone();
        Ok(match name.as_str() {
            CreatePatient::SCHEMA_NAME => Command::CreatePatient(decoded.into_record()?),
            UpdatePatient::SCHEMA_NAME => Command::UpdatePatient(decoded.into_record()?),
            BookAppointment::SCHEMA_NAME => Command::BookAppointment(decoded.into_record()?),
            CancelAppointment::SCHEMA_NAME => Command::CancelAppointment(decoded.into_record()?),
            RescheduleAppointment::SCHEMA_NAME => {
                Command::RescheduleAppointment(decoded.into_record()?)
            }
            CheckInAppointment::SCHEMA_NAME => Command::CheckInAppointment(decoded.into_record()?),
            CreateClaim::SCHEMA_NAME => Command::CreateClaim(decoded.into_record()?),
            RecordPayment::SCHEMA_NAME => Command::RecordPayment(decoded.into_record()?),
            UploadClinicalDocument::SCHEMA_NAME => {
                Command::UploadClinicalDocument(decoded.into_record()?)
            }
            AddInsurance::SCHEMA_NAME => Command::AddInsurance(decoded.into_record()?),
            other => {
                return Err(CoreError::Decode(format!(
                    "schema id {} is {other}, which is not a write-back command",
                    decoded.schema_id
                )));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_core::avro::{Encoder, decode_body};

    #[test]
    fn every_command_schema_is_bundled_and_round_trips() {
        for name in COMMAND_SCHEMAS {
            assert!(
                connector_core::avro::Catalog::global().get(name).is_some(),
                "{name} bundled"
            );
        }
        let doc = UploadClinicalDocument {
            command_id: "c1".into(),
            practice_id: "195900".into(),
            correlation_id: None,
            issued_at: None,
            patient_id: "1".into(),
            department_id: "1".into(),
            document_subclass: "CLINICALDOCUMENT".into(),
            attachment: b"%PDF-1.4 synthetic".to_vec(),
            attachment_type: "PDF".into(),
            original_filename: None,
            document_type_id: None,
            autoclose: false,
            observation_date: None,
            provider_id: None,
            internal_note: None,
        };
        let bytes = Encoder::<UploadClinicalDocument>::with_id(7)
            .unwrap()
            .encode(&doc)
            .unwrap();
        let back: UploadClinicalDocument = decode_body(&bytes[5..]).unwrap();
        assert_eq!(back, doc);
    }
}
