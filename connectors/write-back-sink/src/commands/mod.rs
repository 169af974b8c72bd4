//! The commands the sink understands. Each command is one file here holding its [`WriteBack`]
//! implementation for its Avro mirror in `athena_contracts::commands` (the data, one file per
//! command there): the checks that need no athena call, the athena write, the read-back that
//! tells whether an ambiguous write was applied, and its [`Idempotency`] class.
//!
//! [`REGISTRY`] is the one table of commands: writer-schema record name → decoder → trait
//! object. [`CommandDecoder`] dispatches on the *writer* schema's record name, so one topic can
//! carry several command types (TopicRecordNameStrategy, decision record
//! `docs/decisions/0007-write-back-topics-and-subjects.md`).
//!
//! Adding a command: its mirror file in `athena-contracts/src/commands/` (data only), one file
//! here with `envelope!(Type)` and `impl WriteBack for Type`, and one line in the `commands!`
//! table below (it declares the file's module and adds the [`REGISTRY`] entry).

use std::collections::BTreeMap;

use athena_client::PracticeClient;
use athena_client::api::payments::CardPayments;
use athena_contracts::Date;
use connector_core::CoreError;
use connector_core::avro::{AvroCodec, AvroRecord, Decoded, RegistryConfig};
use futures::future::BoxFuture;

/// Declares each command's file and builds [`REGISTRY`] from one table (see [`commands!`]'s
/// invocation below).
macro_rules! commands {
    ($($module:ident => $t:ident,)*) => {
        $(mod $module;)*

        /// The one table of commands, one line each: record name and decoder (see [`entry`]).
        pub static REGISTRY: &[Entry] = &[$(entry::<athena_contracts::commands::$t>(),)*];
    };
}

// The one table of commands: `module => Type,` declares `commands/<module>.rs` (the command's
// `impl WriteBack` for its mirror `athena_contracts::commands::<Type>`) and registers its
// decoder in `REGISTRY`.
commands! {
    create_patient => CreatePatient,
    update_patient => UpdatePatient,
    book_appointment => BookAppointment,
    cancel_appointment => CancelAppointment,
    reschedule_appointment => RescheduleAppointment,
    check_in_appointment => CheckInAppointment,
    create_claim => CreateClaim,
    record_payment => RecordPayment,
    upload_clinical_document => UploadClinicalDocument,
    add_insurance => AddInsurance,
    // Chart writes (issue 14; shared helpers in `chart.rs`).
    record_vitals => RecordVitals,
    add_problem => AddProblem,
    update_allergies => UpdateAllergies,
    record_vaccine => RecordVaccine,
    add_historical_medication => AddHistoricalMedication,
    record_surgical_history => RecordSurgicalHistory,
    record_family_history => RecordFamilyHistory,
    add_encounter_diagnosis => AddEncounterDiagnosis,
    create_referral_order => CreateReferralOrder,
    upload_lab_result => UploadLabResult,
    update_appointment => UpdateAppointment,
    check_out_appointment => CheckOutAppointment,
    freeze_appointment => FreezeAppointment,
    unfreeze_appointment => UnfreezeAppointment,
    add_appointment_note => AddAppointmentNote,
    update_insurance => UpdateInsurance,
    remove_insurance => RemoveInsurance,
}

/// What the chart commands share (FHIR input, vital-sign table, read-back counts).
mod chart;

/// Ids athena created or touched, by name (`patient_id`, `appointment_id`, ...).
pub type Ids = BTreeMap<String, String>;

/// What [`WriteBack::perform`] returns: the ids athena created or touched.
pub type Performed<'a> = BoxFuture<'a, Result<Ids, athena_client::Error>>;
/// What [`WriteBack::reconcile`] returns.
pub type Reading<'a> = BoxFuture<'a, Result<ReadBack, athena_client::Error>>;
/// What [`WriteBack::matching`] returns: (count, newest id).
pub type Matching<'a> = BoxFuture<'a, Result<(u32, Option<String>), athena_client::Error>>;

/// A decoded command of any type.
pub type Command = Box<dyn WriteBack>;

/// Whether repeating a command's athena call could write twice, and how the sink finds out
/// whether an attempt with an unknown outcome was applied. The one place this is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Repeating the call is harmless (it sets the same fields again): no intent record, no
    /// read-back; an ambiguous answer is simply retried.
    Natural,
    /// Repeating could write twice: an intent goes to the ledger before every call, and an
    /// ambiguous answer (or an intent found at start) is resolved by
    /// [`WriteBack::reconcile`] before anything is re-sent. With `baseline`, the read-back
    /// compares a count of matching records with one taken before the first attempt
    /// ([`WriteBack::matching`]), because athena holds no key that identifies our write.
    ReconcileBeforeRetry {
        /// Count matching records before the first attempt.
        baseline: bool,
    },
    /// Repeating could write twice and nothing can be read back (card capture): after an
    /// ambiguous answer the command is FAILED with `AMBIGUOUS_UNRESOLVED`, never re-sent.
    Unknowable,
}

/// What a read-back found.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadBack {
    /// The write is in athena.
    Applied(Ids),
    /// It is not; sending is safe.
    NotApplied,
    /// Something else holds the target (e.g. the slot is booked for another patient): the
    /// result code and a PHI-free message.
    Conflict(&'static str, String),
    /// This command cannot be read back: never re-send.
    Unknowable,
}

/// A command refused before any athena call: result code and PHI-free message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Result error code (`INVALID_COMMAND`, `CARD_PAYMENTS_DISABLED`).
    pub code: &'static str,
    /// Why (PHI-free).
    pub message: &'static str,
}

impl Invalid {
    /// An `INVALID_COMMAND` refusal.
    pub fn command(message: &'static str) -> Self {
        Invalid {
            code: "INVALID_COMMAND",
            message,
        }
    }
}

/// What a command's athena calls may use besides the practice.
#[derive(Debug, Clone, Copy)]
pub struct AthenaCtx<'a> {
    /// The command's practice.
    pub practice: &'a PracticeClient,
    /// The card-payment opt-in, present only when the operator enabled it (PCI scope).
    pub card: Option<&'a CardPayments>,
}

/// The envelope fields every command schema shares; implemented by [`envelope!`].
pub trait Envelope {
    /// The producer's idempotency key.
    fn command_id(&self) -> &str;
    /// athenaOne practice id as sent.
    fn practice_id(&self) -> &str;
    /// Correlation id, copied to the result.
    fn correlation_id(&self) -> Option<&str>;
    /// The schema's short name (`BookAppointment`), used as `command_type` and metric label.
    fn type_name(&self) -> &'static str;
}

/// Implements [`Envelope`] for a command struct with the standard envelope fields.
macro_rules! envelope {
    ($t:ident) => {
        impl $crate::commands::Envelope for $t {
            fn command_id(&self) -> &str {
                &self.command_id
            }
            fn practice_id(&self) -> &str {
                &self.practice_id
            }
            fn correlation_id(&self) -> Option<&str> {
                self.correlation_id.as_deref()
            }
            fn type_name(&self) -> &'static str {
                stringify!($t)
            }
        }
    };
}
pub(crate) use envelope;

/// One write-back command: everything the executor needs to know about it.
pub trait WriteBack: Envelope + std::fmt::Debug + Send + Sync + 'static {
    /// How a repeat is made safe; see [`Idempotency`].
    fn idempotency(&self) -> Idempotency;

    /// Checks that need no athena call; `Err` is the final REJECTED outcome.
    /// `card_payments_enabled` is the operator's PCI opt-in.
    fn precheck(&self, card_payments_enabled: bool) -> Result<(), Invalid> {
        let _ = card_payments_enabled;
        Ok(())
    }

    /// The athena write (or write sequence); the ids it created or touched.
    fn perform<'a>(&'a self, cx: AthenaCtx<'a>) -> Performed<'a>;

    /// Reads athena back to find out whether this command is already applied. `baseline` is
    /// the [`WriteBack::matching`] count taken before the first attempt, when the idempotency
    /// class asks for one (`None`: no earlier attempt to compare with).
    fn reconcile<'a>(&'a self, p: &'a PracticeClient, baseline: Option<u32>) -> Reading<'a>;

    /// For `ReconcileBeforeRetry { baseline: true }`: the matching records athena holds now
    /// (count, newest id).
    fn matching<'a>(&'a self, p: &'a PracticeClient) -> Matching<'a> {
        let _ = p;
        Box::pin(async { Ok((0, None)) })
    }

    /// Whether a permanent refusal is athena's duplicate guard recognising this very write
    /// (then: APPLIED after an earlier attempt, else REJECTED `DUPLICATE_PAYMENT`).
    fn is_duplicate_refusal(&self, err: &athena_client::Error) -> bool {
        let _ = err;
        false
    }
}

/// One [`REGISTRY`] line: a command's record name and how to turn a decoded value into it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Full record name (`com.athenaconnect.commands.CreatePatient`).
    pub schema_name: &'static str,
    decode: fn(Decoded) -> Result<Command, CoreError>,
}

/// The registry line of command type `T`.
pub const fn entry<T: AvroRecord + WriteBack>() -> Entry {
    Entry {
        schema_name: T::SCHEMA_NAME,
        decode: decode_as::<T>,
    }
}

fn decode_as<T: AvroRecord + WriteBack>(d: Decoded) -> Result<Command, CoreError> {
    Ok(Box::new(d.into_record::<T>()?))
}

/// The registry line for a record name.
pub fn lookup(schema_name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.schema_name == schema_name)
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
        match lookup(&decoded.record_name) {
            Some(e) => (e.decode)(decoded),
            None => Err(CoreError::Decode(format!(
                "schema id {} is {}, which is not a write-back command",
                decoded.schema_id, decoded.record_name
            ))),
        }
    }
}

// Helpers shared by the command files.

/// Ids from (name, value) pairs, leaving out empty values.
pub(crate) fn ids(pairs: &[(&str, &str)]) -> Ids {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn date(d: Option<Date>) -> Option<chrono::NaiveDate> {
    d.and_then(Date::to_naive)
}

/// A string or number field of an athena JSON object, as a string.
pub(crate) fn json_str(v: &serde_json::Value, k: &str) -> Option<String> {
    match v.get(k)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The highest id (numeric when ids are numbers): the newest record.
pub(crate) fn max_id(ids: Vec<String>) -> Option<String> {
    ids.into_iter()
        .max_by_key(|s| (s.parse::<u64>().unwrap_or(0), s.clone()))
}

/// Statuses of a booked (not open, not cancelled) appointment.
pub(crate) fn is_booked(status: Option<&str>) -> bool {
    matches!(status, Some("f" | "2" | "3" | "4"))
}

/// The read-back of a baseline command: applied when athena now holds more matching records
/// than before the first attempt; `id_name` names the newest one in the result.
pub(crate) async fn reconcile_by_count<T: WriteBack + ?Sized>(
    command: &T,
    p: &PracticeClient,
    baseline: Option<u32>,
    id_name: &str,
) -> Result<ReadBack, athena_client::Error> {
    let Some(before) = baseline else {
        // No baseline (refusal without an earlier attempt): nothing to compare with.
        return Ok(ReadBack::NotApplied);
    };
    let (now, newest) = command.matching(p).await?;
    Ok(if now > before {
        ReadBack::Applied(ids(&[(id_name, newest.as_deref().unwrap_or(""))]))
    } else {
        ReadBack::NotApplied
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use athena_contracts::commands::UploadClinicalDocument;
    use connector_core::avro::{Encoder, decode_body};

    #[test]
    fn every_command_schema_is_bundled_and_registered_once() {
        // Every command schema under schemas/commands/ (all but the result) has a registry line.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/commands");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("schemas/commands")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
            .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
            .filter(|stem| stem != "CommandResult")
            .map(|stem| format!("com.athenaconnect.commands.{stem}"))
            .collect();
        files.sort_unstable();
        let mut names: Vec<&str> = REGISTRY.iter().map(|e| e.schema_name).collect();
        names.sort_unstable();
        assert_eq!(names, files, "REGISTRY vs schemas/commands/");
        for name in &names {
            assert!(
                connector_core::avro::Catalog::global().get(name).is_some(),
                "{name} bundled"
            );
            assert!(std::ptr::eq(lookup(name).unwrap().schema_name, *name));
        }
        names.dedup();
        assert_eq!(
            names.len(),
            REGISTRY.len(),
            "a record name registered twice"
        );
        assert!(lookup("com.athenaconnect.commands.Nope").is_none());
    }

    #[test]
    fn upload_round_trips() {
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
        assert_eq!(back.type_name(), "UploadClinicalDocument");
        assert_eq!(back.command_id(), "c1");
    }

    #[test]
    fn helpers() {
        assert!(is_booked(Some("f")));
        assert!(is_booked(Some("4")));
        assert!(!is_booked(Some("o")));
        assert!(!is_booked(Some("x")));
        assert!(!is_booked(None));
        assert_eq!(
            max_id(vec!["9".into(), "10".into(), "2".into()]).as_deref(),
            Some("10")
        );
        assert_eq!(max_id(vec![]), None);
        assert_eq!(ids(&[("a", "1"), ("b", "")]).len(), 1);
    }
}
