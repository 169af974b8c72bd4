//! Performing one command against athena and deciding its outcome, without ever writing twice.
//!
//! For each command:
//! 1. If the ledger holds an `in_flight` intent (a previous run or owner reached athena, or may
//!    have, without publishing a result) the command is **reconciled first**: athena is read
//!    back and, when the write is there, the result is APPLIED without another call.
//! 2. Before every call of a non-idempotent command an intent is written to the ledger and
//!    acknowledged by Kafka.
//! 3. The call's error class decides: `Retriable` (nothing was applied: 5xx on reads, refused
//!    connections) backs off and retries up to `max_attempts`; `RateLimited` waits (honouring
//!    `Retry-After`, through the client's shared limiter) up to `max_throttled_wait`;
//!    `Ambiguous` (timeout or reset after sending) reconciles before anything else;
//!    `Permanent` is REJECTED, except that a refusal which read-back shows to be our own earlier
//!    write (booking 409 on a slot booked for this patient, cancel of a cancelled appointment,
//!    a second appointment claim) is DUPLICATE, or APPLIED when it was this command's own
//!    earlier attempt; `Fatal` stops the sink.
//!
//! Reconciliation per command: bookings, cancels, reschedules and check-ins read the
//! appointment(s); appointment claims read the appointment's `claimid`; stand-alone claims,
//! documents and insurances compare athena's matching records with a baseline count taken
//! before the first attempt (stored in the intent); patients use best match; payments rely on
//! athena's duplicate-payment guard (a retry inside its window is refused as a duplicate);
//! card payments are never re-sent after an ambiguous answer (FAILED, `AMBIGUOUS_UNRESOLVED`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use athena_client::api::appointments as appt;
use athena_client::api::claims::{AppointmentClaim, ClaimCharge, ClaimQuery, NewClaim};
use athena_client::api::documents::ClinicalDocument;
use athena_client::api::insurances::InsuranceFields;
use athena_client::api::patients::PatientFields;
use athena_client::api::payments::{CardPayment, CardPayments, RecordPayment as AthenaPayment};
use athena_client::{AthenaClient, ErrorClass, PracticeClient};
use athena_contracts::{CommandError, CommandStatus, Date};
use rand::Rng;
use secrecy::SecretString;

use crate::commands::{self as cmd, Command};
use crate::config::Config;
use crate::error::Error;
use crate::ledger::{Ledger, LedgerEntry, Position};

/// Ids athena created or touched, by name.
pub type Ids = BTreeMap<String, String>;

/// A decided outcome (the sink adds ids, times and the command's own fields).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The status.
    pub status: CommandStatus,
    /// Ids athena created or touched.
    pub athena_ids: Ids,
    /// Why not applied (PHI-free).
    pub error: Option<CommandError>,
    /// athena write calls made for this command by this run.
    pub attempts: i32,
}

impl Outcome {
    fn ok(status: CommandStatus, athena_ids: Ids, attempts: i32) -> Self {
        Outcome {
            status,
            athena_ids,
            error: None,
            attempts,
        }
    }
    fn err(status: CommandStatus, code: &str, message: impl Into<String>, attempts: i32) -> Self {
        Outcome {
            status,
            athena_ids: Ids::new(),
            error: Some(CommandError {
                code: code.into(),
                message: message.into(),
            }),
            attempts,
        }
    }
}

/// What read-back found.
#[derive(Debug)]
enum Recon {
    /// The write is in athena.
    Applied(Ids),
    /// It is not; sending is safe.
    NotApplied,
    /// Something else holds the target (e.g. the slot is booked for another patient).
    Conflict(&'static str, String),
    /// This command cannot be read back (card capture): never re-send.
    Unknowable,
}

/// Executes commands; shared by the sink's workers.
pub struct Executor {
    /// Connector name, only for the `errors_total` label.
    connector: String,
    athena: AthenaClient,
    ledger: Arc<Ledger>,
    config: Arc<Config>,
    card: Option<CardPayments>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

fn ids(pairs: &[(&str, &str)]) -> Ids {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn date(d: Option<Date>) -> Option<chrono::NaiveDate> {
    d.and_then(Date::to_naive)
}

fn error_code(e: &athena_client::Error) -> &'static str {
    use athena_client::Error as E;
    match e {
        E::SlotTaken { .. } => "SLOT_TAKEN",
        E::Validation { .. } => "VALIDATION",
        E::NotFound { .. } => "NOT_FOUND",
        E::Business { .. } => "BUSINESS_RULE",
        E::RateLimited { .. } | E::QuotaExhausted { .. } => "RATE_LIMITED",
        E::Ambiguous { .. } => "AMBIGUOUS_UNRESOLVED",
        _ => "ATHENA_UNAVAILABLE",
    }
}

/// Statuses of a booked (not open, not cancelled) appointment.
fn is_booked(status: Option<&str>) -> bool {
    matches!(status, Some("f" | "2" | "3" | "4"))
}

impl Executor {
    /// An executor over `athena` (whose rate limiter is shared with every client of the same
    /// API key in this process).
    pub fn new(athena: AthenaClient, ledger: Arc<Ledger>, config: Arc<Config>) -> Self {
        // The opt-in value exists only when the operator enabled card payments (PCI scope).
        let card = config.card_payments.enabled.then(CardPayments::enabled);
        Executor {
            connector: String::new(),
            athena,
            ledger,
            config,
            card,
        }
    }

    /// The same executor, counting its athena errors under connector `name`.
    pub fn for_connector(mut self, name: &str) -> Self {
        self.connector = name.to_string();
        self
    }

    /// Counts one athena error in `errors_total{connector, class}` (retries included: the
    /// counter measures how often athena failed us, not how many commands failed).
    fn count_error(&self, e: &athena_client::Error) {
        connector_core::metrics::global()
            .errors
            .get_or_create(&connector_core::metrics::ErrorLabels {
                connector: self.connector.clone(),
                class: e.class().label().to_string(),
            })
            .inc();
    }

    fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1u32 << n.min(16))
            .min(self.config.backoff_cap);
        let ms = rand::rng().random_range(0..=exp.as_millis().max(1) as u64);
        Duration::from_millis(ms)
    }

    /// Performs `command` (read from `position`) and decides its outcome. `Err` only for fatal
    /// conditions (bad credentials, the ledger unwritable).
    pub async fn execute(&self, command: &Command, position: &Position) -> Result<Outcome, Error> {
        let outcome = self.execute_while(command, position, &|| true).await?;
        Ok(outcome.unwrap_or_else(|| {
            Outcome::err(
                CommandStatus::Failed,
                "INTERNAL",
                "stopped without a cause",
                0,
            )
        }))
    }

    /// Like [`Executor::execute`], but makes no further athena write once `still_owned` says
    /// false (checked before every attempt): `Ok(None)` then, and the intent already in the
    /// ledger lets the partition's next owner reconcile. The sink passes "this replica still
    /// owns the command's partition", so a revoked partition's commands stop at the next
    /// attempt instead of racing the new owner.
    pub async fn execute_while(
        &self,
        command: &Command,
        position: &Position,
        still_owned: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Option<Outcome>, Error> {
        let Ok(practice_id) = command.practice_id().parse::<u64>() else {
            return Ok(Some(Outcome::err(
                CommandStatus::Rejected,
                "INVALID_COMMAND",
                "practice_id is not a number",
                0,
            )));
        };
        if let Some(problem) = self.precheck(command) {
            return Ok(Some(problem));
        }
        let p = self.athena.practice(practice_id);
        let prior = match self.ledger.get(command.command_id()) {
            Some(LedgerEntry::InFlight { baseline, .. }) => Some(baseline),
            _ => None,
        };
        let mut attempts: i32 = 0;
        let mut baseline = prior.flatten();
        let mut prior_attempt = prior.is_some();
        if prior_attempt {
            tracing::info!(command_id = %command.command_id(), command = command.type_name(),
                "Reconciling a command a previous run may have sent.");
            match self.reconcile_loop(&p, command, baseline, attempts).await? {
                Ok(Recon::Applied(found)) => {
                    return Ok(Some(Outcome::ok(CommandStatus::Applied, found, attempts)));
                }
                Ok(Recon::Conflict(code, msg)) => {
                    return Ok(Some(Outcome::err(
                        CommandStatus::Rejected,
                        code,
                        msg,
                        attempts,
                    )));
                }
                Ok(Recon::NotApplied) => {}
                Ok(Recon::Unknowable) => {
                    return Ok(Some(Outcome::err(
                        CommandStatus::Failed,
                        "AMBIGUOUS_UNRESOLVED",
                        "a previous attempt may have been applied and cannot be read back; not re-sent",
                        attempts,
                    )));
                }
                Err(outcome) => return Ok(Some(outcome)),
            }
        } else if needs_baseline(command) {
            match self.with_read_retries(|| count_matching(&p, command)).await {
                Ok(n) => baseline = Some(n),
                Err(e) if e.class() == ErrorClass::Fatal => return Err(Error::Athena(e)),
                Err(e) => {
                    return Ok(Some(Outcome::err(
                        CommandStatus::Failed,
                        error_code(&e),
                        e.to_string(),
                        attempts,
                    )));
                }
            }
        }

        let started = Instant::now();
        let mut transient = 0u32;
        let mut throttled = 0u32;
        loop {
            if !still_owned() {
                return Ok(None);
            }
            if command.is_non_idempotent() {
                let entry = LedgerEntry::InFlight {
                    position: position.clone(),
                    command_type: command.type_name().into(),
                    attempt: attempts as u32 + 1,
                    baseline,
                };
                self.write_intent(command.command_id(), entry).await?;
            }
            attempts += 1;
            let err = match self.perform(&p, command).await {
                Ok(found) => return Ok(Some(Outcome::ok(CommandStatus::Applied, found, attempts))),
                Err(e) => e,
            };
            self.count_error(&err);
            match err.class() {
                ErrorClass::Fatal => return Err(Error::Athena(err)),
                ErrorClass::Permanent => {
                    return Ok(Some(
                        self.on_refusal(&p, command, &err, baseline, prior_attempt, attempts)
                            .await,
                    ));
                }
                ErrorClass::RateLimited { retry_after } => {
                    if started.elapsed() >= self.config.max_throttled_wait {
                        return Ok(Some(Outcome::err(
                            CommandStatus::Failed,
                            "RATE_LIMITED",
                            "athena kept throttling for longer than max_throttled_wait",
                            attempts,
                        )));
                    }
                    throttled += 1;
                    let wait = retry_after
                        .unwrap_or_else(|| self.backoff(throttled))
                        .min(self.config.backoff_cap);
                    tokio::time::sleep(wait).await;
                }
                ErrorClass::Retriable => {
                    transient += 1;
                    if transient >= self.config.max_attempts {
                        return Ok(Some(Outcome::err(
                            CommandStatus::Failed,
                            "ATHENA_UNAVAILABLE",
                            format!("{} after {attempts} attempts", err),
                            attempts,
                        )));
                    }
                    tokio::time::sleep(self.backoff(transient)).await;
                }
                ErrorClass::Ambiguous => {
                    prior_attempt = true;
                    tracing::warn!(command_id = %command.command_id(), command = command.type_name(),
                        "Outcome of an athena write unknown; reading back before anything else.");
                    match self.reconcile_loop(&p, command, baseline, attempts).await? {
                        Ok(Recon::Applied(found)) => {
                            return Ok(Some(Outcome::ok(CommandStatus::Applied, found, attempts)));
                        }
                        Ok(Recon::Conflict(code, msg)) => {
                            return Ok(Some(Outcome::err(
                                CommandStatus::Rejected,
                                code,
                                msg,
                                attempts,
                            )));
                        }
                        Ok(Recon::Unknowable) => {
                            return Ok(Some(Outcome::err(
                                CommandStatus::Failed,
                                "AMBIGUOUS_UNRESOLVED",
                                "the write may have been applied and cannot be read back; not re-sent",
                                attempts,
                            )));
                        }
                        Ok(Recon::NotApplied) => {
                            transient += 1;
                            if transient >= self.config.max_attempts {
                                return Ok(Some(Outcome::err(
                                    CommandStatus::Failed,
                                    "ATHENA_UNAVAILABLE",
                                    format!("not applied after {attempts} attempts"),
                                    attempts,
                                )));
                            }
                            tokio::time::sleep(self.backoff(transient)).await;
                        }
                        Err(outcome) => return Ok(Some(outcome)),
                    }
                }
            }
        }
    }

    /// Writes an intent, riding out a short Kafka outage; no athena call happens without it.
    async fn write_intent(&self, command_id: &str, entry: LedgerEntry) -> Result<(), Error> {
        let mut n = 0u32;
        loop {
            match self.ledger.write_intent(command_id, entry.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.class() != connector_core::ErrorClass::Fatal && n < 10 => {
                    n += 1;
                    tracing::warn!(error = %e, attempt = n, "Could not write the ledger intent; retrying.");
                    tokio::time::sleep(self.backoff(n).max(Duration::from_millis(200))).await;
                }
                Err(e) => return Err(Error::Core(e)),
            }
        }
    }

    /// Checks that need no athena call; `Some` is the final outcome.
    fn precheck(&self, command: &Command) -> Option<Outcome> {
        let reject = |m: &str| {
            Some(Outcome::err(
                CommandStatus::Rejected,
                "INVALID_COMMAND",
                m,
                0,
            ))
        };
        match command {
            Command::RecordPayment(c) if c.card.is_some() && self.card.is_none() => {
                Some(Outcome::err(
                    CommandStatus::Rejected,
                    "CARD_PAYMENTS_DISABLED",
                    "card payments are off (sinks.write_back.<name>.card_payments.enabled; PCI DSS scope)",
                    0,
                ))
            }
            Command::CreateClaim(c) if c.charges.is_empty() => {
                reject("charges: at least one is required")
            }
            Command::CreateClaim(c)
                if c.appointment_id.is_none()
                    && (c.patient_id.is_none()
                        || c.department_id.is_none()
                        || c.supervising_provider_id.is_none()
                        || c.service_date.is_none()) =>
            {
                reject(
                    "a stand-alone claim needs patient_id, department_id, supervising_provider_id and service_date",
                )
            }
            _ => None,
        }
    }

    async fn with_read_retries<T, F, Fut>(&self, f: F) -> Result<T, athena_client::Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, athena_client::Error>>,
    {
        let mut n = 0;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    n += 1;
                    self.count_error(&e);
                    let again = match e.class() {
                        ErrorClass::Retriable | ErrorClass::Ambiguous => {
                            n < self.config.max_attempts * 2
                        }
                        ErrorClass::RateLimited { .. } => n < 100,
                        _ => false,
                    };
                    if !again {
                        return Err(e);
                    }
                    tokio::time::sleep(self.backoff(n)).await;
                }
            }
        }
    }

    /// Reads back with retries; the inner `Err` is a final FAILED outcome (could not establish).
    async fn reconcile_loop(
        &self,
        p: &PracticeClient,
        command: &Command,
        baseline: Option<u32>,
        attempts: i32,
    ) -> Result<Result<Recon, Outcome>, Error> {
        match self
            .with_read_retries(|| reconcile(p, command, baseline))
            .await
        {
            Ok(r) => Ok(Ok(r)),
            Err(e) if e.class() == ErrorClass::Fatal => Err(Error::Athena(e)),
            Err(e) => Ok(Err(Outcome::err(
                CommandStatus::Failed,
                "AMBIGUOUS_UNRESOLVED",
                format!("could not read back: {e}"),
                attempts,
            ))),
        }
    }

    /// A permanent refusal: read back whether athena already holds our write.
    async fn on_refusal(
        &self,
        p: &PracticeClient,
        command: &Command,
        err: &athena_client::Error,
        baseline: Option<u32>,
        prior_attempt: bool,
        attempts: i32,
    ) -> Outcome {
        let code = error_code(err);
        let may_be_ours = matches!(
            err,
            athena_client::Error::SlotTaken { .. } | athena_client::Error::Business { .. }
        ) || (prior_attempt
            && matches!(err, athena_client::Error::Validation { .. }));
        if may_be_ours {
            if let (Command::RecordPayment(_), athena_client::Error::Business { message, .. }) =
                (command, err)
                && message.to_ascii_lowercase().contains("duplicate")
            {
                // athena's duplicate-payment guard: ours when an earlier attempt may have landed.
                return if prior_attempt {
                    Outcome::ok(CommandStatus::Applied, Ids::new(), attempts)
                } else {
                    Outcome::err(
                        CommandStatus::Rejected,
                        "DUPLICATE_PAYMENT",
                        err.to_string(),
                        attempts,
                    )
                };
            }
            if let Ok(Recon::Applied(found)) = self
                .with_read_retries(|| reconcile(p, command, baseline))
                .await
            {
                let status = if prior_attempt {
                    CommandStatus::Applied
                } else {
                    CommandStatus::Duplicate
                };
                return Outcome::ok(status, found, attempts);
            }
        }
        Outcome::err(CommandStatus::Rejected, code, err.to_string(), attempts)
    }

    /// One athena write (or the write sequence of a check-in).
    async fn perform(
        &self,
        p: &PracticeClient,
        command: &Command,
    ) -> Result<Ids, athena_client::Error> {
        match command {
            Command::CreatePatient(c) => {
                let id = p.create_patient(&create_fields(c)).await?;
                Ok(ids(&[("patient_id", &id)]))
            }
            Command::UpdatePatient(c) => {
                let id = p.update_patient(&c.patient_id, &update_fields(c)).await?;
                Ok(ids(&[("patient_id", &id)]))
            }
            Command::BookAppointment(c) => {
                let req = appt::BookAppointment {
                    patient_id: c.patient_id.clone(),
                    appointment_type_id: c.appointment_type_id.clone(),
                    reason_id: c.reason_id.clone(),
                    department_id: c.department_id.clone(),
                    booking_note: c.booking_note.clone(),
                    ignore_schedulable_permission: c.ignore_schedulable_permission,
                    no_patient_case: c.no_patient_case,
                    extra: Vec::new(),
                };
                let a = p.book_appointment(&c.appointment_id, &req).await?;
                Ok(ids(&[
                    ("appointment_id", &a.appointmentid),
                    (
                        "patient_id",
                        a.patientid.as_deref().unwrap_or(&c.patient_id),
                    ),
                ]))
            }
            Command::CancelAppointment(c) => {
                let req = appt::CancelAppointment {
                    patient_id: c.patient_id.clone(),
                    cancel_reason_id: c.cancel_reason_id.clone(),
                    cancellation_reason: c.cancellation_reason.clone(),
                };
                p.cancel_appointment(&c.appointment_id, &req).await?;
                Ok(ids(&[
                    ("appointment_id", &c.appointment_id),
                    ("patient_id", &c.patient_id),
                ]))
            }
            Command::RescheduleAppointment(c) => {
                let req = appt::RescheduleAppointment {
                    new_appointment_id: c.new_appointment_id.clone(),
                    patient_id: c.patient_id.clone(),
                    cancel_reason_id: c.cancel_reason_id.clone(),
                    reason_id: c.reason_id.clone(),
                    reschedule_reason: c.reschedule_reason.clone(),
                };
                let a = p.reschedule_appointment(&c.appointment_id, &req).await?;
                let new_id = if a.appointmentid.is_empty() {
                    c.new_appointment_id.clone()
                } else {
                    a.appointmentid.clone()
                };
                Ok(ids(&[
                    ("appointment_id", &new_id),
                    ("previous_appointment_id", &c.appointment_id),
                    ("patient_id", &c.patient_id),
                ]))
            }
            Command::CheckInAppointment(c) => {
                // startcheckin is harmless to repeat; checkin is the state change.
                p.start_checkin(&c.appointment_id).await?;
                p.checkin(&c.appointment_id).await?;
                Ok(ids(&[
                    ("appointment_id", &c.appointment_id),
                    ("patient_id", c.patient_id.as_deref().unwrap_or("")),
                ]))
            }
            Command::CreateClaim(c) => {
                let charges = claim_charges(&c.charges);
                let created = match &c.appointment_id {
                    Some(a) => {
                        p.create_appointment_claim(
                            a,
                            &AppointmentClaim {
                                charges,
                                supervising_provider_id: c.supervising_provider_id.clone(),
                            },
                        )
                        .await?
                    }
                    None => {
                        p.create_claim(&NewClaim {
                            patient_id: c.patient_id.clone().unwrap_or_default(),
                            department_id: c.department_id.clone().unwrap_or_default(),
                            supervising_provider_id: c
                                .supervising_provider_id
                                .clone()
                                .unwrap_or_default(),
                            rendering_provider_id: c.rendering_provider_id.clone(),
                            service_date: date(c.service_date),
                            primary_patient_insurance_id: c.primary_patient_insurance_id.clone(),
                            charges,
                        })
                        .await?
                    }
                };
                let claim = created.claimids.first().cloned().unwrap_or_default();
                Ok(ids(&[
                    ("claim_id", &claim),
                    ("appointment_id", c.appointment_id.as_deref().unwrap_or("")),
                    ("patient_id", c.patient_id.as_deref().unwrap_or("")),
                ]))
            }
            Command::RecordPayment(c) => match (&c.card, &self.card) {
                (Some(card), Some(opt_in)) => {
                    let req = CardPayment {
                        department_id: c.department_id.clone(),
                        account_number: SecretString::from(card.account_number.clone()),
                        expiration_month: card.expiration_month.clone(),
                        expiration_year: card.expiration_year.clone(),
                        name_on_card: card.name_on_card.clone(),
                        billing_address: card.billing_address.clone(),
                        billing_zip: card.billing_zip.clone(),
                        security_code: card.security_code.clone().map(SecretString::from),
                        other_amount: c.other_amount.clone(),
                        copay_amount: c.copay_amount.clone(),
                        appointment_id: c.appointment_id.clone(),
                    };
                    let v = p.collect_payment(opt_in, &c.patient_id, &req).await?;
                    let receipt = v
                        .get("paymentreceiptid")
                        .and_then(|x| {
                            x.as_str()
                                .map(str::to_owned)
                                .or_else(|| x.as_u64().map(|n| n.to_string()))
                        })
                        .unwrap_or_default();
                    Ok(ids(&[
                        ("payment_receipt_id", &receipt),
                        ("patient_id", &c.patient_id),
                    ]))
                }
                _ => {
                    let req = AthenaPayment {
                        department_id: c.department_id.clone(),
                        payment_method: c.payment_method.clone(),
                        check_number: c.check_number.clone(),
                        card_number_last4: c.card_number_last4.clone(),
                        copay_amount: c.copay_amount.clone(),
                        appointment_id: c.appointment_id.clone(),
                        other_amount: c.other_amount.clone(),
                        post_date: date(c.post_date),
                    };
                    let r = p.record_payment(&c.patient_id, &req).await?;
                    Ok(ids(&[
                        (
                            "payment_batch_id",
                            r.paymentbatchid.as_deref().unwrap_or(""),
                        ),
                        ("epayment_id", r.epaymentid.as_deref().unwrap_or("")),
                        ("patient_id", &c.patient_id),
                    ]))
                }
            },
            Command::UploadClinicalDocument(c) => {
                let doc = ClinicalDocument {
                    department_id: c.department_id.clone(),
                    document_subclass: c.document_subclass.clone(),
                    attachment: Some(c.attachment.clone()),
                    attachment_type: Some(c.attachment_type.clone()),
                    original_filename: Some(doc_filename(c)),
                    document_data: None,
                    document_type_id: c.document_type_id.clone(),
                    autoclose: c.autoclose,
                    observation_date: date(c.observation_date),
                    provider_id: c.provider_id.clone(),
                    internal_note: c.internal_note.clone(),
                };
                let r = p.upload_clinical_document(&c.patient_id, &doc).await?;
                Ok(ids(&[
                    ("clinical_document_id", &r.clinicaldocumentid),
                    ("patient_id", &c.patient_id),
                ]))
            }
            Command::AddInsurance(c) => {
                let v = p
                    .create_insurance(&c.patient_id, &insurance_fields(c))
                    .await?;
                let first = match &v {
                    serde_json::Value::Array(a) => a.first().cloned().unwrap_or_default(),
                    other => other.clone(),
                };
                let id = first
                    .get("insuranceid")
                    .and_then(|x| {
                        x.as_str()
                            .map(str::to_owned)
                            .or_else(|| x.as_u64().map(|n| n.to_string()))
                    })
                    .unwrap_or_default();
                Ok(ids(&[("insurance_id", &id), ("patient_id", &c.patient_id)]))
            }
        }
    }
}

fn doc_filename(c: &cmd::UploadClinicalDocument) -> String {
    c.original_filename
        .clone()
        .unwrap_or_else(|| c.command_id.clone())
}

fn claim_charges(charges: &[cmd::ClaimCharge]) -> Vec<ClaimCharge> {
    charges
        .iter()
        .map(|c| {
            let code = |i: usize| c.icd10_codes.get(i).cloned();
            ClaimCharge {
                procedurecode: c.procedure_code.clone(),
                units: c.units.clone(),
                icd10code1: code(0).unwrap_or_default(),
                icd10code2: code(1),
                icd10code3: code(2),
                icd10code4: code(3),
                unitamount: c.unit_amount.clone(),
                linenote: c.line_note.clone(),
            }
        })
        .collect()
}

fn create_fields(c: &cmd::CreatePatient) -> PatientFields {
    PatientFields {
        firstname: Some(c.first_name.clone()),
        lastname: Some(c.last_name.clone()),
        dob: date(Some(c.dob)),
        departmentid: Some(c.department_id.clone()),
        sex: c.sex.clone(),
        email: c.email.clone(),
        homephone: c.home_phone.clone(),
        mobilephone: c.mobile_phone.clone(),
        zip: c.zip.clone(),
        address1: c.address1.clone(),
        city: c.city.clone(),
        state: c.state.clone(),
        status: None,
        extra: Vec::new(),
    }
}

fn update_fields(c: &cmd::UpdatePatient) -> PatientFields {
    PatientFields {
        firstname: c.first_name.clone(),
        lastname: c.last_name.clone(),
        dob: date(c.dob),
        departmentid: c.department_id.clone(),
        sex: c.sex.clone(),
        email: c.email.clone(),
        homephone: c.home_phone.clone(),
        mobilephone: c.mobile_phone.clone(),
        zip: c.zip.clone(),
        address1: c.address1.clone(),
        city: c.city.clone(),
        state: c.state.clone(),
        status: c.status.clone(),
        extra: Vec::new(),
    }
}

fn insurance_fields(c: &cmd::AddInsurance) -> InsuranceFields {
    InsuranceFields {
        insurance_package_id: Some(c.insurance_package_id.clone()),
        sequence_number: u8::try_from(c.sequence_number).ok(),
        insurance_id_number: c.insurance_id_number.clone(),
        policyholder_firstname: c.policyholder_first_name.clone(),
        policyholder_lastname: c.policyholder_last_name.clone(),
        policyholder_dob: date(c.policyholder_dob),
        policyholder_sex: c.policyholder_sex.clone(),
        relationship_to_insured_id: c.relationship_to_insured_id.clone(),
        extra: Vec::new(),
    }
}

/// Commands athena cannot deduplicate and whose read-back compares counts.
fn needs_baseline(c: &Command) -> bool {
    match c {
        Command::CreateClaim(c) => c.appointment_id.is_none(),
        Command::UploadClinicalDocument(_) | Command::AddInsurance(_) => true,
        _ => false,
    }
}

fn json_str(v: &serde_json::Value, k: &str) -> Option<String> {
    match v.get(k)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Matching records athena holds now, newest id last: (count, last id).
async fn matching(
    p: &PracticeClient,
    c: &Command,
) -> Result<(u32, Option<String>), athena_client::Error> {
    match c {
        Command::CreateClaim(c) => {
            let d = date(c.service_date);
            let claims = p
                .list_claims(
                    &ClaimQuery {
                        patient_id: c.patient_id.clone(),
                        department_id: c.department_id.clone(),
                        service_start_date: d,
                        service_end_date: d,
                    },
                    10_000,
                )
                .await?;
            let mut want: Vec<&str> = c
                .charges
                .iter()
                .map(|x| x.procedure_code.as_str())
                .collect();
            want.sort_unstable();
            let hits: Vec<String> = claims
                .iter()
                .filter(|cl| cl.appointmentid.is_none())
                .filter(|cl| {
                    let mut got: Vec<String> = cl
                        .raw
                        .get("billedservices")
                        .and_then(|b| b.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| json_str(s, "procedurecode"))
                                .collect()
                        })
                        .unwrap_or_default();
                    got.sort_unstable();
                    got == want
                })
                .map(|cl| cl.claimid.clone())
                .collect();
            Ok((hits.len() as u32, max_id(hits)))
        }
        Command::UploadClinicalDocument(c) => {
            let name = doc_filename(c);
            let docs = p.clinical_documents(&c.patient_id).await?;
            let hits: Vec<String> = docs
                .iter()
                .filter(|d| json_str(d, "originalfilename").as_deref() == Some(name.as_str()))
                .filter(|d| {
                    json_str(d, "documentsubclass").as_deref() == Some(c.document_subclass.as_str())
                })
                .filter_map(|d| json_str(d, "clinicaldocumentid"))
                .collect();
            Ok((hits.len() as u32, max_id(hits)))
        }
        Command::AddInsurance(c) => {
            let list = p.insurances(&c.patient_id).await?;
            let seq = c.sequence_number.to_string();
            let hits: Vec<String> = list
                .iter()
                .filter(|i| {
                    i.insurancepackageid.as_deref() == Some(c.insurance_package_id.as_str())
                })
                .filter(|i| i.sequencenumber.as_deref().is_none_or(|s| s == seq))
                .filter_map(|i| i.insuranceid.clone())
                .collect();
            Ok((hits.len() as u32, max_id(hits)))
        }
        _ => Ok((0, None)),
    }
}

/// The highest id (numeric when ids are numbers): the newest record.
fn max_id(ids: Vec<String>) -> Option<String> {
    ids.into_iter()
        .max_by_key(|s| (s.parse::<u64>().unwrap_or(0), s.clone()))
}

async fn count_matching(p: &PracticeClient, c: &Command) -> Result<u32, athena_client::Error> {
    Ok(matching(p, c).await?.0)
}

/// Reads athena back to find out whether `command` is already applied.
async fn reconcile(
    p: &PracticeClient,
    command: &Command,
    baseline: Option<u32>,
) -> Result<Recon, athena_client::Error> {
    match command {
        Command::CreatePatient(c) => {
            let found = p.best_match(&create_fields(c)).await?;
            Ok(match found.first() {
                Some(m) => Recon::Applied(ids(&[("patient_id", &m.patientid)])),
                None => Recon::NotApplied,
            })
        }
        // Setting the same fields again is harmless.
        Command::UpdatePatient(_) => Ok(Recon::NotApplied),
        Command::BookAppointment(c) => {
            let a = p.get_appointment(&c.appointment_id).await?;
            let status = a.appointmentstatus.as_deref();
            // Our patient on the slot, booked or since cancelled (by a later command of the
            // same key that ran before this one's result was committed): our booking landed.
            let ours = a.patientid.as_deref() == Some(c.patient_id.as_str());
            Ok(if ours && (is_booked(status) || status == Some("x")) {
                Recon::Applied(ids(&[
                    ("appointment_id", &c.appointment_id),
                    ("patient_id", &c.patient_id),
                ]))
            } else if status == Some("o") {
                Recon::NotApplied
            } else {
                Recon::Conflict("SLOT_TAKEN", "the slot is no longer open".into())
            })
        }
        Command::CancelAppointment(c) => {
            let a = p.get_appointment(&c.appointment_id).await?;
            Ok(if a.appointmentstatus.as_deref() == Some("x") {
                Recon::Applied(ids(&[
                    ("appointment_id", &c.appointment_id),
                    ("patient_id", &c.patient_id),
                ]))
            } else {
                Recon::NotApplied
            })
        }
        Command::RescheduleAppointment(c) => {
            let new = p.get_appointment(&c.new_appointment_id).await?;
            Ok(
                if (is_booked(new.appointmentstatus.as_deref())
                    || new.appointmentstatus.as_deref() == Some("x"))
                    && new.patientid.as_deref() == Some(c.patient_id.as_str())
                {
                    Recon::Applied(ids(&[
                        ("appointment_id", &c.new_appointment_id),
                        ("previous_appointment_id", &c.appointment_id),
                        ("patient_id", &c.patient_id),
                    ]))
                } else if new.appointmentstatus.as_deref() == Some("o") {
                    Recon::NotApplied
                } else {
                    Recon::Conflict("SLOT_TAKEN", "the new slot is no longer open".into())
                },
            )
        }
        Command::CheckInAppointment(c) => {
            let a = p.get_appointment(&c.appointment_id).await?;
            Ok(
                if matches!(a.appointmentstatus.as_deref(), Some("2" | "3" | "4")) {
                    Recon::Applied(ids(&[
                        ("appointment_id", &c.appointment_id),
                        ("patient_id", c.patient_id.as_deref().unwrap_or("")),
                    ]))
                } else {
                    Recon::NotApplied
                },
            )
        }
        Command::CreateClaim(c) if c.appointment_id.is_some() => {
            let id = c.appointment_id.as_deref().unwrap_or_default();
            let a = p.get_appointment(id).await?;
            Ok(match json_str(&a.raw, "claimid") {
                Some(claim) => Recon::Applied(ids(&[
                    ("claim_id", &claim),
                    ("appointment_id", id),
                    ("patient_id", a.patientid.as_deref().unwrap_or("")),
                ])),
                None => Recon::NotApplied,
            })
        }
        Command::CreateClaim(_) | Command::UploadClinicalDocument(_) | Command::AddInsurance(_) => {
            let Some(before) = baseline else {
                // No baseline (refusal without an earlier attempt): nothing to compare with.
                return Ok(Recon::NotApplied);
            };
            let (now, newest) = matching(p, command).await?;
            Ok(if now > before {
                let name = match command {
                    Command::CreateClaim(_) => "claim_id",
                    Command::UploadClinicalDocument(_) => "clinical_document_id",
                    _ => "insurance_id",
                };
                Recon::Applied(ids(&[(name, newest.as_deref().unwrap_or(""))]))
            } else {
                Recon::NotApplied
            })
        }
        // Non-card payments: re-sending inside athena's duplicate window is refused as a
        // duplicate (handled as ours by the caller). Card captures are never re-sent.
        Command::RecordPayment(c) if c.card.is_some() => Ok(Recon::Unknowable),
        Command::RecordPayment(_) => Ok(Recon::NotApplied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booked_statuses_and_newest_id() {
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
    }

    #[test]
    fn error_codes_are_stable() {
        let e = athena_client::Error::SlotTaken {
            message: "taken".into(),
        };
        assert_eq!(error_code(&e), "SLOT_TAKEN");
        let e = athena_client::Error::Server {
            status: 503,
            message: None,
        };
        assert_eq!(error_code(&e), "ATHENA_UNAVAILABLE");
    }
}
