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
//! What makes a repeat safe is each command's own business ([`crate::commands::WriteBack`]:
//! its [`Idempotency`] class decides whether an intent is written, whether a baseline is counted
//! before the first attempt, and whether a read-back is possible at all; its `reconcile` is the
//! read-back). Intents go through the [`Ledger`], whose store is Kafka in the sink and memory in
//! this module's tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use athena_client::api::payments::CardPayments;
use athena_client::{AthenaClient, ErrorClass, PracticeClient};
use athena_contracts::{CommandError, CommandStatus};
use connector_core::retry::{Backoff, retry};

use crate::commands::{AthenaCtx, Command, Idempotency, ReadBack};
use crate::config::Config;
use crate::error::Error;
use crate::ledger::{Ledger, LedgerEntry, Position};
use crate::telemetry::AthenaCallFailed;
use connector_core::emit::InternalEvent;

pub use crate::commands::Ids;

/// The shortest wait of a throttled retry.
const MIN_WAIT: Duration = connector_core::retry::MIN_DELAY;
/// The shortest ceiling of a pause between two attempts at writing an intent.
const INTENT_MIN_WAIT: Duration = Duration::from_millis(200);

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

/// Executes commands; shared by the sink's workers.
pub struct Executor {
    /// Connector name, only for the `errors_total` label.
    connector: String,
    athena: AthenaClient,
    ledger: Arc<Ledger>,
    config: Arc<Config>,
    card: Option<CardPayments>,
    /// The retry policy (`backoff_base`, `backoff_cap`).
    backoff: Backoff,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
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
            backoff: Backoff::new(config.backoff_base, config.backoff_cap),
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
        AthenaCallFailed {
            connector: &self.connector,
            class: e.class().label(),
        }
        .emit();
    }

    /// The wait after the `n`-th failure (full jitter, doubling from `backoff_base` up to
    /// `backoff_cap`).
    fn backoff(&self, n: u32) -> Duration {
        self.backoff.delay(n)
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
                Ok(ReadBack::Applied(found)) => {
                    return Ok(Some(Outcome::ok(CommandStatus::Applied, found, attempts)));
                }
                Ok(ReadBack::Conflict(code, msg)) => {
                    return Ok(Some(Outcome::err(
                        CommandStatus::Rejected,
                        code,
                        msg,
                        attempts,
                    )));
                }
                Ok(ReadBack::NotApplied) => {}
                Ok(ReadBack::Unknowable) => {
                    return Ok(Some(Outcome::err(
                        CommandStatus::Failed,
                        "AMBIGUOUS_UNRESOLVED",
                        "a previous attempt may have been applied and cannot be read back; not re-sent",
                        attempts,
                    )));
                }
                Err(outcome) => return Ok(Some(outcome)),
            }
        } else if command.idempotency() == (Idempotency::ReconcileBeforeRetry { baseline: true }) {
            match self.with_read_retries(|| command.matching(&p)).await {
                Ok((n, _)) => baseline = Some(n),
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
            if command.idempotency() != Idempotency::Natural {
                let entry = LedgerEntry::InFlight {
                    position: position.clone(),
                    command_type: command.type_name().into(),
                    attempt: attempts as u32 + 1,
                    baseline,
                };
                self.write_intent(command.command_id(), entry).await?;
            }
            attempts += 1;
            let cx = AthenaCtx {
                practice: &p,
                card: self.card.as_ref(),
            };
            let err = match command.perform(cx).await {
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
                    // `Retry-After` honoured up to `backoff_cap`; without one, the backoff.
                    let class = connector_core::ErrorClass::RateLimited { retry_after };
                    let wait = self.backoff.wait_for(class, throttled).unwrap_or(MIN_WAIT);
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
                        Ok(ReadBack::Applied(found)) => {
                            return Ok(Some(Outcome::ok(CommandStatus::Applied, found, attempts)));
                        }
                        Ok(ReadBack::Conflict(code, msg)) => {
                            return Ok(Some(Outcome::err(
                                CommandStatus::Rejected,
                                code,
                                msg,
                                attempts,
                            )));
                        }
                        Ok(ReadBack::Unknowable) => {
                            return Ok(Some(Outcome::err(
                                CommandStatus::Failed,
                                "AMBIGUOUS_UNRESOLVED",
                                "the write may have been applied and cannot be read back; not re-sent",
                                attempts,
                            )));
                        }
                        Ok(ReadBack::NotApplied) => {
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
        // Eleven attempts, pauses from 200 ms: a broker election or a coordinator move heals
        // within them. Every non-fatal ledger error is worth another attempt here (the intent
        // is tiny; a "permanent" refusal of it is a transient broker state).
        let policy = Backoff::new(
            self.backoff.base.max(INTENT_MIN_WAIT),
            self.backoff.cap.max(INTENT_MIN_WAIT),
        )
        .with_max_attempts(11);
        retry(
            &policy,
            &tokio_util::sync::CancellationToken::new(),
            |e: &connector_core::CoreError| match e.class() {
                connector_core::ErrorClass::Fatal => connector_core::ErrorClass::Fatal,
                _ => connector_core::ErrorClass::Retriable,
            },
            |e, attempt| {
                tracing::warn!(error = %e, attempt = attempt.number, "Could not write the ledger intent; retrying.");
            },
            || self.ledger.write_intent(command_id, entry.clone()),
        )
        .await
        .map_err(Error::Core)
    }

    /// Checks that need no athena call; `Some` is the final outcome.
    fn precheck(&self, command: &Command) -> Option<Outcome> {
        command
            .precheck(self.card.is_some())
            .err()
            .map(|invalid| Outcome::err(CommandStatus::Rejected, invalid.code, invalid.message, 0))
    }

    /// The command's read-back; never calls athena for an `Unknowable` command.
    async fn reconcile(
        &self,
        p: &PracticeClient,
        command: &Command,
        baseline: Option<u32>,
    ) -> Result<ReadBack, athena_client::Error> {
        match command.idempotency() {
            Idempotency::Unknowable => Ok(ReadBack::Unknowable),
            _ => command.reconcile(p, baseline).await,
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
    ) -> Result<Result<ReadBack, Outcome>, Error> {
        match self
            .with_read_retries(|| self.reconcile(p, command, baseline))
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
            if command.is_duplicate_refusal(err) {
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
            if let Ok(ReadBack::Applied(found)) = self
                .with_read_retries(|| self.reconcile(p, command, baseline))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    use athena_client::{ClientConfig, Environment};
    use parking_lot::Mutex;

    use crate::commands::{Envelope, Performed, Reading, WriteBack, ids};
    use crate::ledger::MemoryLedgerStore;
    use athena_contracts::commands::RecordPayment;

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

    /// athena calls a scripted command made.
    #[derive(Debug, Default)]
    struct Calls {
        performs: Mutex<u32>,
        reconciles: Mutex<u32>,
    }

    impl Calls {
        fn get(&self) -> (u32, u32) {
            (*self.performs.lock(), *self.reconciles.lock())
        }
    }

    /// A command whose athena answers are scripted; no HTTP is made.
    #[derive(Debug)]
    struct Scripted {
        class: Idempotency,
        performs: Mutex<VecDeque<Result<Ids, athena_client::Error>>>,
        readbacks: Mutex<VecDeque<ReadBack>>,
        calls: Arc<Calls>,
    }

    fn scripted(
        class: Idempotency,
        performs: Vec<Result<Ids, athena_client::Error>>,
        readbacks: Vec<ReadBack>,
    ) -> (Command, Arc<Calls>) {
        let calls = Arc::new(Calls::default());
        let cmd = Scripted {
            class,
            performs: Mutex::new(performs.into()),
            readbacks: Mutex::new(readbacks.into()),
            calls: calls.clone(),
        };
        (Box::new(cmd), calls)
    }

    impl Envelope for Scripted {
        fn command_id(&self) -> &str {
            "cmd-1"
        }
        fn practice_id(&self) -> &str {
            "195900"
        }
        fn correlation_id(&self) -> Option<&str> {
            None
        }
        fn type_name(&self) -> &'static str {
            "Scripted"
        }
    }

    impl WriteBack for Scripted {
        fn idempotency(&self) -> Idempotency {
            self.class
        }
        fn perform<'a>(&'a self, _cx: AthenaCtx<'a>) -> Performed<'a> {
            *self.calls.performs.lock() += 1;
            let r = self
                .performs
                .lock()
                .pop_front()
                .unwrap_or_else(|| Ok(ids(&[("patient_id", "from-perform")])));
            Box::pin(async move { r })
        }
        fn reconcile<'a>(&'a self, _p: &'a PracticeClient, _baseline: Option<u32>) -> Reading<'a> {
            *self.calls.reconciles.lock() += 1;
            let r = self
                .readbacks
                .lock()
                .pop_front()
                .unwrap_or(ReadBack::NotApplied);
            Box::pin(async move { Ok(r) })
        }
    }

    fn ambiguous() -> athena_client::Error {
        athena_client::Error::Ambiguous {
            method: "POST".into(),
            route: "/v1/{practiceid}/patients".into(),
            cause: Box::new(athena_client::Error::Timeout),
        }
    }

    fn unavailable() -> athena_client::Error {
        athena_client::Error::Server {
            status: 503,
            message: None,
        }
    }

    fn position() -> Position {
        Position {
            topic: "commands".into(),
            partition: 0,
            offset: 42,
        }
    }

    /// An executor over `ledger`; its athena client is never called (the scripted commands
    /// answer for it), so no network is involved.
    fn executor(ledger: Arc<Ledger>) -> Executor {
        let athena = AthenaClient::new(ClientConfig::new(
            Environment::Preview,
            "unit-test",
            "not-a-secret".to_string().into(),
        ))
        .unwrap();
        let config = Config {
            backoff_base: Duration::from_millis(1),
            backoff_cap: Duration::from_millis(2),
            ..Config::default()
        };
        Executor::new(athena, ledger, Arc::new(config))
    }

    /// Executes `cmd` (read at [`position`]) over `ledger`.
    async fn run(ledger: &Arc<Ledger>, cmd: &Command) -> Outcome {
        executor(ledger.clone())
            .execute(cmd, &position())
            .await
            .unwrap()
    }

    fn memory_ledger() -> Arc<Ledger> {
        Arc::new(Ledger::with_store(MemoryLedgerStore::new()))
    }

    fn intent_attempt(ledger: &Ledger) -> Option<u32> {
        match ledger.get("cmd-1") {
            Some(LedgerEntry::InFlight { attempt, .. }) => Some(attempt),
            _ => None,
        }
    }

    const RECONCILE: Idempotency = Idempotency::ReconcileBeforeRetry { baseline: false };

    #[tokio::test]
    async fn an_ambiguous_write_that_read_back_finds_applied_is_not_sent_again() {
        let ledger = memory_ledger();
        let (cmd, calls) = scripted(
            RECONCILE,
            vec![Err(ambiguous())],
            vec![ReadBack::Applied(ids(&[("patient_id", "from-read-back")]))],
        );
        let out = run(&ledger, &cmd).await;
        assert_eq!(out.status, CommandStatus::Applied);
        assert_eq!(out.athena_ids["patient_id"], "from-read-back");
        assert_eq!(
            calls.get(),
            (1, 1),
            "one write, one read-back, no second write"
        );
        assert_eq!(
            intent_attempt(&ledger),
            Some(1),
            "intent written before the call"
        );
    }

    #[tokio::test]
    async fn an_ambiguous_write_read_back_shows_missing_is_sent_again_under_a_new_intent() {
        let ledger = memory_ledger();
        let (cmd, calls) = scripted(
            RECONCILE,
            vec![Err(ambiguous())],
            vec![ReadBack::NotApplied],
        );
        let out = run(&ledger, &cmd).await;
        assert_eq!(out.status, CommandStatus::Applied);
        assert_eq!(out.athena_ids["patient_id"], "from-perform");
        assert_eq!(out.attempts, 2);
        assert_eq!(calls.get(), (2, 1));
        assert_eq!(intent_attempt(&ledger), Some(2));
    }

    #[tokio::test]
    async fn an_unknowable_ambiguous_write_is_failed_not_retried_blindly() {
        let ledger = memory_ledger();
        let (cmd, calls) = scripted(Idempotency::Unknowable, vec![Err(ambiguous())], vec![]);
        let out = run(&ledger, &cmd).await;
        assert_eq!(out.status, CommandStatus::Failed);
        assert_eq!(out.error.unwrap().code, "AMBIGUOUS_UNRESOLVED");
        assert_eq!(
            calls.get(),
            (1, 0),
            "no second write and no read-back attempted"
        );
        assert_eq!(intent_attempt(&ledger), Some(1));
    }

    #[tokio::test]
    async fn an_intent_found_at_start_is_reconciled_before_any_write() {
        let ledger = memory_ledger();
        let intent = LedgerEntry::InFlight {
            position: position(),
            command_type: "Scripted".into(),
            attempt: 1,
            baseline: None,
        };
        ledger.write_intent("cmd-1", intent).await.unwrap();
        let (cmd, calls) = scripted(
            RECONCILE,
            vec![],
            vec![ReadBack::Applied(ids(&[("patient_id", "p1")]))],
        );
        let out = run(&ledger, &cmd).await;
        assert_eq!((out.status, out.attempts), (CommandStatus::Applied, 0));
        assert_eq!(calls.get(), (0, 1));

        // The same for a command that cannot be read back: FAILED, never re-sent.
        let (cmd, calls) = scripted(Idempotency::Unknowable, vec![], vec![]);
        let out = run(&ledger, &cmd).await;
        assert_eq!(out.status, CommandStatus::Failed);
        assert_eq!(out.error.unwrap().code, "AMBIGUOUS_UNRESOLVED");
        assert_eq!(calls.get(), (0, 0));
    }

    #[tokio::test]
    async fn athena_unavailable_forever_ends_in_failed_after_max_attempts() {
        let ledger = memory_ledger();
        let ex = executor(ledger.clone());
        let max = ex.config.max_attempts;
        let (cmd, calls) = scripted(
            RECONCILE,
            (0..max + 5).map(|_| Err(unavailable())).collect(),
            vec![],
        );
        let out = ex.execute(&cmd, &position()).await.unwrap();
        assert_eq!(out.status, CommandStatus::Failed);
        assert_eq!(out.error.unwrap().code, "ATHENA_UNAVAILABLE");
        assert_eq!(calls.get(), (max, 0));
    }

    #[tokio::test]
    async fn a_naturally_idempotent_command_writes_no_intent_and_retries_an_ambiguous_answer() {
        let ledger = memory_ledger();
        let (cmd, calls) = scripted(Idempotency::Natural, vec![Err(ambiguous())], vec![]);
        let out = run(&ledger, &cmd).await;
        assert_eq!(out.status, CommandStatus::Applied);
        assert_eq!(calls.get().0, 2);
        assert_eq!(ledger.get("cmd-1"), None);
    }

    #[tokio::test]
    async fn an_intent_that_cannot_be_written_for_a_while_delays_the_write() {
        let store = Arc::new(MemoryLedgerStore::new());
        store.fail_next_saves(2);
        let ledger = Arc::new(Ledger::with_store(store.clone()));
        let (cmd, calls) = scripted(RECONCILE, vec![], vec![]);
        let out = run(&ledger, &cmd).await;
        assert_eq!(out.status, CommandStatus::Applied);
        assert_eq!(calls.get(), (1, 0));
        assert!(
            store.record("cmd-1").is_some(),
            "the intent reached the store"
        );
    }

    #[tokio::test]
    async fn a_card_payment_is_refused_before_any_call_when_card_payments_are_off() {
        let payment: RecordPayment = serde_json::from_value(serde_json::json!({
            "command_id": "pay-1", "practice_id": "195900", "correlation_id": null,
            "issued_at": null, "patient_id": "1", "department_id": "1",
            "payment_method": "VISA", "check_number": null, "card_number_last4": null,
            "copay_amount": null, "appointment_id": null, "other_amount": "10.00",
            "post_date": null,
            "card": {"account_number": "4111111111111111", "expiration_month": "01",
                     "expiration_year": "2030", "name_on_card": "Synthetic",
                     "billing_address": "1 Test St", "billing_zip": "00000",
                     "security_code": null}
        }))
        .unwrap();
        assert_eq!(payment.idempotency(), Idempotency::Unknowable);
        let cmd: Command = Box::new(payment);
        let ledger = memory_ledger();
        let out = run(&ledger, &cmd).await;
        assert_eq!(out.status, CommandStatus::Rejected);
        assert_eq!(out.error.unwrap().code, "CARD_PAYMENTS_DISABLED");
        assert_eq!(ledger.get("pay-1"), None, "nothing was attempted");
    }
}
