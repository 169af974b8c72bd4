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

use std::sync::Arc;

use apache_avro::Schema;
use connector_core::CoreError;
use connector_core::avro::{AvroRecord, RegistryConfig, unframe};
pub use connector_core::contracts::BookAppointment;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;

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
#[derive(Clone)]
pub struct CommandDecoder {
    decoder: Arc<AvroDecoder>,
}

impl std::fmt::Debug for CommandDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandDecoder").finish_non_exhaustive()
    }
}

impl CommandDecoder {
    /// A decoder over the registry in `config` (schemas are fetched by id once and cached).
    pub fn new(config: &RegistryConfig) -> Result<Self, CoreError> {
        let mut builder = SrSettings::new_builder(config.url.trim_end_matches('/').to_string());
        builder.set_timeout(config.timeout);
        if let (Some(u), Some(p)) = (&config.username, &config.password) {
            builder.set_basic_authorization(u, Some(p.expose()));
        }
        let settings = builder
            .build()
            .map_err(|e| CoreError::RegistryUnavailable(e.error))?;
        Ok(CommandDecoder {
            decoder: Arc::new(AvroDecoder::new(settings)),
        })
    }

    /// Decodes one message. Not Avro, an unknown schema id, a record that is no command, or one
    /// that does not resolve against our schema is a `Permanent` error (dead-letter it); a
    /// registry outage is `Retriable`.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Command, CoreError> {
        let (id, _) = unframe(bytes)?;
        let result = self
            .decoder
            .decode_with_schema(Some(bytes))
            .await
            .map_err(|e| classify(id, e))?
            .ok_or_else(|| CoreError::Decode("empty message".into()))?;
        let name = match &result.schema.parsed {
            Schema::Record(r) => r.name.fullname(None),
            _ => {
                return Err(CoreError::Decode(format!("schema id {id} is not a record")));
            }
        };
        let value = result.value;
        fn de<T: AvroRecord>(id: u32, v: apache_avro::types::Value) -> Result<T, CoreError> {
            let resolved = v
                .resolve(&T::bundled().schema)
                .map_err(|e| CoreError::Decode(format!("schema id {id} does not resolve: {e}")))?;
            apache_avro::from_value::<T>(&resolved)
                .map_err(|e| CoreError::Decode(format!("schema id {id}: {e}")))
        }
        Ok(match name.as_str() {
            CreatePatient::SCHEMA_NAME => Command::CreatePatient(de(id, value)?),
            UpdatePatient::SCHEMA_NAME => Command::UpdatePatient(de(id, value)?),
            BookAppointment::SCHEMA_NAME => Command::BookAppointment(de(id, value)?),
            CancelAppointment::SCHEMA_NAME => Command::CancelAppointment(de(id, value)?),
            RescheduleAppointment::SCHEMA_NAME => Command::RescheduleAppointment(de(id, value)?),
            CheckInAppointment::SCHEMA_NAME => Command::CheckInAppointment(de(id, value)?),
            CreateClaim::SCHEMA_NAME => Command::CreateClaim(de(id, value)?),
            RecordPayment::SCHEMA_NAME => Command::RecordPayment(de(id, value)?),
            UploadClinicalDocument::SCHEMA_NAME => Command::UploadClinicalDocument(de(id, value)?),
            AddInsurance::SCHEMA_NAME => Command::AddInsurance(de(id, value)?),
            other => {
                return Err(CoreError::Decode(format!(
                    "schema id {id} is {other}, which is not a write-back command"
                )));
            }
        })
    }
}

fn classify(id: u32, e: schema_registry_converter::error::SRCError) -> CoreError {
    if e.retriable {
        return CoreError::RegistryUnavailable(e.error);
    }
    let cause = e.cause.clone().unwrap_or_default();
    if e.error.contains("Could not get raw schema")
        || cause.contains("404")
        || cause.contains("40403")
        || e.error.contains("not found")
    {
        CoreError::UnknownSchemaId(id)
    } else {
        CoreError::Decode(e.error)
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
