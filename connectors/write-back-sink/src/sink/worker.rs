//! One command's work (ledger check, execution, result records) and one undecodable message's
//! dead letter, each run as its own task that reports a [`Done`] to the loop.

use std::sync::Arc;
use std::time::Duration;

use athena_contracts::{CommandResult, CommandStatus, TimestampMillis};
use connector_core::ErrorClass;
use connector_core::avro::Encoder;
use connector_core::dlq::{DeadLetterQueue, Reason};
use connector_core::emit::InternalEvent;
use connector_core::headers;
use connector_core::retry::{Backoff, retry};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::commit::OutRecord;
use super::ownership::Ownership;
use super::{KeyId, Tp};
use crate::apply::{Executor, Outcome};
use crate::commands::Command;
use crate::error::Error;
use crate::ledger::{Ledger, LedgerEntry, Position};
use crate::telemetry::CommandFinished;

/// Attempts at writing one dead letter before the sink stops (its offset uncommitted); the
/// configured `dlq_retry_timeout` bounds them in time as well.
pub(super) const DLQ_ATTEMPTS: u32 = 8;
/// Ceiling of the first pause between dead-letter attempts; doubled each time up to
/// [`DLQ_BACKOFF_CAP`].
const DLQ_BACKOFF: Duration = Duration::from_millis(500);
const DLQ_BACKOFF_CAP: Duration = Duration::from_secs(8);

/// A decoded command waiting for (or under) execution. It holds the decoded command only: the
/// raw message is dropped once decoded (only an undecodable one is kept, for its dead letter).
pub(super) struct Job {
    pub(super) tp: Tp,
    pub(super) epoch: u64,
    pub(super) key: KeyId,
    pub(super) offset: i64,
    /// The message's headers (W3C trace context).
    pub(super) headers: Option<OwnedHeaders>,
    pub(super) command: Command,
    pub(super) received_at: TimestampMillis,
}

/// What a task reports to the loop.
pub(super) enum Done {
    Finished {
        tp: Tp,
        epoch: u64,
        offset: i64,
        key: Option<KeyId>,
        records: Vec<OutRecord>,
    },
    /// Not started because the sink is stopping or the partition was revoked.
    Abandoned { key: KeyId },
    /// The sink must stop (this message's offset stays uncommitted).
    Fatal(Error),
}

/// Everything a worker needs, shared.
pub(super) struct Shared {
    pub(super) name: String,
    pub(super) executor: Executor,
    pub(super) ledger: Arc<Ledger>,
    pub(super) encoder: Encoder<CommandResult>,
    pub(super) results_topic: String,
    pub(super) permits: Semaphore,
    pub(super) done_tx: mpsc::UnboundedSender<Done>,
    pub(super) ownership: Arc<Ownership>,
    /// How long one dead letter may be retried in all (`dlq_retry_timeout`).
    pub(super) dlq_retry_timeout: Duration,
}

impl Shared {
    fn ledger_record(&self, command_id: &str, entry: &LedgerEntry) -> OutRecord {
        OutRecord {
            topic: self.ledger.topic().to_string(),
            key: command_id.as_bytes().to_vec(),
            payload: Ledger::encode(entry),
            headers: None,
        }
    }

    fn result_record(&self, cmd: &Command, result: &CommandResult) -> Result<OutRecord, Error> {
        let payload = self.encoder.encode(result)?;
        // The result's own PRODUCER span (`create <results topic>`, a child of the command's
        // `process` span): its context is the result's `traceparent`, so command, athena call
        // and result are one trace. The record is sent later, in the command's transaction.
        let trace = connector_core::telemetry::create_span(&self.results_topic)
            .in_scope(|| headers::inject_current_trace(OwnedHeaders::new()));
        let h = headers::with_str(trace, "athena.command.type", cmd.type_name());
        let source = format!("athena://{}/write-back", cmd.practice_id());
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let h = headers::with_cloud_event(
            h,
            &headers::CloudEvent {
                // One result per command: the command id identifies it within the source.
                id: cmd.command_id(),
                ty: <CommandResult as connector_core::avro::AvroRecord>::SCHEMA_NAME,
                source: &source,
                time: Some(&time),
                subject: Some(cmd.command_id()),
            },
        );
        Ok(OutRecord {
            topic: self.results_topic.clone(),
            key: cmd.command_id().as_bytes().to_vec(),
            headers: Some(headers::with_avro_data(h, &payload)),
            payload,
        })
    }
}

/// Handles one decoded command; returns the records of its transaction (ledger, result), or
/// `None` when it was left for a restart or the partition's next owner.
pub(super) async fn work(shared: &Shared, job: &Job) -> Result<Option<Vec<OutRecord>>, Error> {
    // The pool is closed on shutdown: a command that has not started is left for the restart.
    let Ok(_permit) = shared.permits.acquire().await else {
        return Ok(None);
    };
    // A revoked partition's commands start nothing: the new owner handles them. Held until
    // the records are built, so a revocation waits for this command's athena calls.
    let Some(_busy) = shared.ownership.enter(&job.tp, job.epoch) else {
        return Ok(None);
    };
    let still_owned = || shared.ownership.owns(&job.tp, job.epoch);
    let cmd = &job.command;
    let position = Position {
        topic: job.tp.0.to_string(),
        partition: job.tp.1,
        offset: job.offset,
    };
    let outcome = match shared.ledger.get(cmd.command_id()) {
        Some(LedgerEntry::Done {
            position: p,
            result,
        }) if p == position => {
            if !shared.ledger.is_unpublished(cmd.command_id()) {
                // Its `done` record was loaded from the ledger, so it is committed, and so is
                // its result (one transaction): the offset was committed too, yet the message
                // was read again. Publishing the result again would make a second result for
                // one message; commit the offset only.
                tracing::warn!(
                    command_id = cmd.command_id(),
                    partition = job.tp.1,
                    offset = job.offset,
                    "A command whose result is already committed was read again; not publishing it twice."
                );
                return Ok(Some(Vec::new()));
            }
            // This very message was finished before, but its transaction did not commit (the
            // in-memory entry of an attempt whose commit was aborted or whose partition moved).
            // Publish that result now, with its ledger record, instead of re-running the command.
            let entry = LedgerEntry::Done {
                position,
                result: result.clone(),
            };
            return Ok(Some(vec![
                shared.ledger_record(cmd.command_id(), &entry),
                shared.result_record(cmd, &result)?,
            ]));
        }
        Some(LedgerEntry::Done { result, .. }) => Outcome {
            status: CommandStatus::Duplicate,
            athena_ids: result.athena_ids.clone(),
            error: None,
            attempts: 0,
        },
        _ => match shared
            .executor
            .execute_while(cmd, &position, &still_owned)
            .await?
        {
            Some(outcome) => outcome,
            // The partition was revoked between two attempts: its intent is in the ledger
            // and the new owner reconciles.
            None => return Ok(None),
        },
    };
    if !still_owned() {
        // Revoked during the last call: the new owner reconciles from the intent. Nothing is
        // remembered, so a later owner of this partition in this process reloads the truth.
        return Ok(None);
    }
    let result = CommandResult {
        command_id: cmd.command_id().to_string(),
        command_type: cmd.type_name().to_string(),
        practice_id: cmd.practice_id().to_string(),
        correlation_id: cmd.correlation_id().map(str::to_owned),
        status: outcome.status,
        athena_ids: outcome.athena_ids,
        error: outcome.error,
        attempts: outcome.attempts,
        received_at: job.received_at,
        completed_at: TimestampMillis::now(),
    };
    count_finished(&shared.name, cmd, &result);

    let mut out = Vec::with_capacity(2);
    let is_new = result.status != CommandStatus::Duplicate
        || !matches!(
            shared.ledger.get(cmd.command_id()),
            Some(LedgerEntry::Done { .. })
        );
    let result_record = shared.result_record(cmd, &result)?;
    if is_new {
        let entry = LedgerEntry::Done { position, result };
        out.push(shared.ledger_record(cmd.command_id(), &entry));
        shared.ledger.remember(cmd.command_id(), entry);
    }
    out.push(result_record);
    Ok(Some(out))
}

fn count_finished(connector: &str, cmd: &Command, result: &CommandResult) {
    CommandFinished {
        connector,
        command: cmd.type_name(),
        outcome: match result.status {
            CommandStatus::Applied => "applied",
            CommandStatus::Duplicate => "duplicate",
            CommandStatus::Rejected => "rejected",
            CommandStatus::Failed => "failed",
        },
        attempts: result.attempts,
        error_code: result.error.as_ref().map(|e| e.code.as_str()),
        duration: Duration::from_millis(
            (result.completed_at.0 - result.received_at.0).max(0) as u64
        ),
    }
    .emit();
}

/// Sends an undecodable message to the dead-letter queue (byte for byte, with the error
/// headers) on its own task, then reports its offset finished. A dead letter that cannot be
/// written after [`DLQ_ATTEMPTS`] reports [`Done::Fatal`] instead: the offset stays
/// uncommitted (nothing is lost) and the sink stops with a clear error for its supervisor.
pub(super) fn dead_letter(
    shared: &Arc<Shared>,
    dlq: &DeadLetterQueue,
    msg: OwnedMessage,
    reason: Reason,
    epoch: u64,
) {
    let dlq = dlq.clone();
    let shared = shared.clone();
    tokio::spawn(async move {
        let tp: Tp = (Arc::from(msg.topic()), msg.partition());
        let offset = msg.offset();
        let limits = Bounds {
            attempts: DLQ_ATTEMPTS,
            first: DLQ_BACKOFF,
            cap: DLQ_BACKOFF_CAP,
            total: shared.dlq_retry_timeout,
        };
        // `send_reason` counts the dead letter in `dlq_produce_requests`.
        let sent = send_bounded(limits, || dlq.send_reason(&msg, &reason)).await;
        let done = match sent {
            Ok(()) => Done::Finished {
                tp,
                epoch,
                offset,
                key: None,
                records: Vec::new(),
            },
            Err((attempts, message)) => Done::Fatal(Error::DeadLetter {
                topic: tp.0.to_string(),
                partition: tp.1,
                offset,
                attempts,
                message,
            }),
        };
        let _ = shared.done_tx.send(done);
    });
}

/// How often and how long [`send_bounded`] tries.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    /// Attempts at most.
    attempts: u32,
    /// Ceiling of the first pause between attempts, doubled each time up to `cap` (full
    /// jitter, [`Backoff`]).
    first: Duration,
    cap: Duration,
    /// Time for all attempts together, pauses included: a produce the client keeps retrying
    /// internally (up to `message.timeout.ms`) is cut off here.
    total: Duration,
}

/// Tries `send` within `b` (connector-core's [`retry`] with a [`Backoff`] of `b.attempts`
/// attempts, each cut off at the overall deadline); on failure the attempts made and the last
/// error.
async fn send_bounded<F, Fut, E>(b: Bounds, mut send: F) -> Result<(), (u32, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    /// Why an attempt failed: the send's own error (retried), or the deadline (final).
    enum Failed {
        Send(String),
        Deadline(String),
    }
    let deadline = tokio::time::Instant::now() + b.total;
    let policy = Backoff::new(b.first, b.cap).with_max_attempts(b.attempts);
    let mut n = 0u32;
    let r = retry(
        &policy,
        &CancellationToken::new(),
        |f: &Failed| match f {
            Failed::Send(_) => ErrorClass::Retriable,
            Failed::Deadline(_) => ErrorClass::Permanent,
        },
        |f, attempt| {
            if let Failed::Send(error) = f {
                tracing::warn!(error = %error, attempt = attempt.number, "Dead-letter produce failed; retrying.");
            }
        },
        || {
            n += 1;
            let sent = tokio::time::timeout_at(deadline, send());
            async move {
                match sent.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) if tokio::time::Instant::now() < deadline => {
                        Err(Failed::Send(e.to_string()))
                    }
                    Ok(Err(e)) => Err(Failed::Deadline(e.to_string())),
                    Err(_) => Err(Failed::Deadline(format!(
                        "no acknowledgement within {:?}",
                        b.total
                    ))),
                }
            }
        },
    )
    .await;
    r.map_err(|(Failed::Send(e) | Failed::Deadline(e))| (n, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const QUICK: Bounds = Bounds {
        attempts: 4,
        first: Duration::ZERO,
        cap: Duration::ZERO,
        total: Duration::from_secs(60),
    };

    #[tokio::test]
    async fn dead_letter_retries_are_bounded_in_number() {
        let calls = AtomicU32::new(0);
        let r = send_bounded(QUICK, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("broker down") }
        })
        .await;
        assert_eq!(r.unwrap_err(), (4, "broker down".to_string()));
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let calls = AtomicU32::new(0);
        let r = send_bounded(QUICK, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err("blip") } else { Ok(()) } }
        })
        .await;
        assert!(r.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn dead_letter_retries_are_bounded_in_time() {
        // A produce that never answers (the client retrying internally) is cut off.
        let b = Bounds {
            total: Duration::from_millis(50),
            ..QUICK
        };
        let r = send_bounded(b, std::future::pending::<Result<(), String>>).await;
        let (attempts, error) = r.unwrap_err();
        assert_eq!(attempts, 1);
        assert!(error.contains("no acknowledgement"), "{error}");
    }
}

#[cfg(test)]
mod republish_tests {
    use super::*;
    use crate::config::Config;
    use crate::ledger::{LedgerStore, MemoryLedgerStore};
    use athena_client::{AthenaClient, ClientConfig, Environment};

    fn shared(ledger: Arc<Ledger>) -> (Arc<Shared>, mpsc::UnboundedReceiver<Done>) {
        let athena = AthenaClient::new(ClientConfig::new(
            Environment::Preview,
            "unit-test",
            "not-a-secret".to_string().into(),
        ))
        .unwrap();
        let (done_tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            name: "wb".into(),
            executor: Executor::new(athena, ledger.clone(), Arc::new(Config::default())),
            ledger,
            encoder: Encoder::with_id(1).unwrap(),
            results_topic: "results".into(),
            permits: Semaphore::new(4),
            done_tx,
            ownership: Arc::new(Ownership::default()),
            dlq_retry_timeout: Duration::from_secs(1),
        };
        (Arc::new(shared), rx)
    }

    fn tp() -> super::super::Tp {
        (Arc::from("commands"), 0)
    }

    fn job(id: &str, offset: i64) -> Job {
        let cmd: athena_contracts::commands::UpdatePatient = serde_json::from_value(
            serde_json::json!({"command_id": id, "practice_id": "195900", "patient_id": "1"}),
        )
        .unwrap();
        Job {
            tp: tp(),
            epoch: 1,
            key: (tp(), b"195900/1".to_vec()),
            offset,
            headers: None,
            command: Box::new(cmd),
            received_at: TimestampMillis::now(),
        }
    }

    fn done(id: &str, offset: i64) -> LedgerEntry {
        LedgerEntry::Done {
            position: Position {
                topic: "commands".into(),
                partition: 0,
                offset,
            },
            result: CommandResult {
                command_id: id.into(),
                command_type: "UpdatePatient".into(),
                practice_id: "195900".into(),
                correlation_id: None,
                status: CommandStatus::Applied,
                athena_ids: Default::default(),
                error: None,
                attempts: 1,
                received_at: TimestampMillis(1),
                completed_at: TimestampMillis(2),
            },
        }
    }

    /// The chaos test once saw two committed results for one command. A `done` record loaded
    /// from the ledger topic is committed, and its result with it (one transaction); a message
    /// read again at that position (its committed offset read again) must not publish the result
    /// a second time. Only a `done` entry remembered in memory whose transaction did not commit
    /// is published again.
    #[tokio::test]
    async fn a_committed_done_entry_is_not_published_again_when_its_message_is_read_again() {
        let store = Arc::new(MemoryLedgerStore::new());
        store
            .save("committed", &Ledger::encode(&done("committed", 7)))
            .await
            .unwrap();
        let ledger = Arc::new(Ledger::with_store(store));
        ledger.load().await.unwrap();
        let (shared, _rx) = shared(ledger.clone());
        shared.ownership.own(&tp(), 1);

        let out = work(&shared, &job("committed", 7)).await.unwrap().unwrap();
        assert!(
            out.is_empty(),
            "a committed result was published again: {} records",
            out.len()
        );

        // Remembered in memory, its transaction aborted: published now, with its ledger record.
        ledger.remember("aborted", done("aborted", 8));
        let out = work(&shared, &job("aborted", 8)).await.unwrap().unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].topic, "results");
        // Once its transaction committed, it is not published again either.
        ledger.published(["aborted"]);
        let out = work(&shared, &job("aborted", 8)).await.unwrap().unwrap();
        assert!(out.is_empty());
    }
}
