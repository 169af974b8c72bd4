//! The consume loop: rebalance events, reading and decoding, per-key queues, the read-ahead
//! bound, the commit ticks and the stop.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use athena_contracts::{CommandResult, TimestampMillis};
use connector_core::avro::AvroCodec;
use connector_core::dlq::{DeadLetterQueue, Reason, Stage};
use connector_core::kafka::{TopicSpec, ensure_topics};
use connector_core::produce::TxnFailure;
use connector_core::runtime::{RunEnv, TaskControl, TaskState};
use connector_core::{CoreError, ErrorClass, headers};
use parking_lot::Mutex;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

use super::commit::{classify, commit_batch};
use super::ownership::{Ctx, Handover, InstanceLease, Ownership};
use super::partitions::{Partitions, ReadAhead, tp_of};
use super::worker::{Done, Job, Shared, dead_letter, work};
use super::{KeyId, Tp};
use crate::apply::Executor;
use crate::commands::CommandDecoder;
use crate::config::Config;
use crate::error::Error;
use crate::ledger::{KafkaLedgerStore, Ledger};
use crate::telemetry::{
    CommitFailed, DeadLettered, OffsetsCommitted, ReadAheadPaused, ReadAheadResumed,
};
use connector_core::emit::InternalEvent;

/// Runs the sink until shutdown; see the module docs.
pub async fn run(
    name: &str,
    config: &Config,
    env: &RunEnv,
    athena: &athena_client::AthenaClient,
    control: TaskControl,
) -> Result<(), Error> {
    config.validate_named(name)?;
    let config = Arc::new(config.clone());
    let kafka = &env.kafka;
    let group = config.group_id(name);

    if config.create_topics {
        let admin = kafka.build_admin()?;
        let mut specs: Vec<TopicSpec> = config
            .topics
            .iter()
            .map(|t| TopicSpec::new(t, config.topic_partitions))
            .collect();
        specs.push(TopicSpec::new(
            &config.results_topic,
            config.topic_partitions,
        ));
        let dlq_probe =
            DeadLetterQueue::new(kafka.build_producer()?, config.dlq.clone(), name, "0");
        let mut dlq_topics: Vec<String> = config
            .topics
            .iter()
            .map(|t| dlq_probe.topic_for(t))
            .collect();
        dlq_topics.dedup();
        specs.extend(dlq_topics.into_iter().map(|t| TopicSpec::new(t, 1)));
        ensure_topics(&admin, kafka.replication_factor, &specs).await?;
    }

    // Intents and dead letters: acknowledged one by one, so no linger.
    let mut pc = kafka.producer_config();
    pc.set("linger.ms", "0");
    let plain: FutureProducer = pc.create().map_err(|source| CoreError::Kafka {
        operation: "create producer",
        source,
    })?;
    // Initialising the transactional producer first fences a killed predecessor and aborts its
    // open transaction; otherwise that transaction would hold the ledger's last stable offset
    // and the read_committed load below would stop short of the newest intents.
    let txp =
        result_producer(kafka).build_transactional_producer(&config.transactional_id(name))?;
    {
        let txp = txp.clone();
        tokio::task::spawn_blocking(move || txp.init_transactions(Duration::from_secs(60)))
            .await
            .map_err(|e| Error::Transaction(format!("init task: {e}")))?
            // Classified like every Kafka error: fenced or fatal stops, a timeout (Kafka not
            // reachable yet) is retriable, so the supervisor restarts the sink.
            .map_err(|source| {
                Error::Core(CoreError::Kafka {
                    operation: "init transactions",
                    source,
                })
            })?;
    }

    let ledger = Arc::new(Ledger::with_store(
        KafkaLedgerStore::open(
            kafka,
            &config.ledger_topic,
            plain.clone(),
            config.ledger_retention,
        )
        .await?,
    ));
    let loaded = ledger.load().await?;
    tracing::info!(
        connector = name,
        entries = loaded,
        "Loaded the command ledger."
    );
    let dlq = DeadLetterQueue::new(plain.clone(), config.dlq.clone(), name, "0");

    let codec = AvroCodec::new(env.registry.clone())?;
    let encoder = codec
        .encoder::<CommandResult>(&config.results_topic)
        .await?;
    let decoder = CommandDecoder::new(&env.registry)?;

    let ownership = Arc::new(Ownership::default());
    // Declared before the consumer, so it is released after it (see `InstanceLease`).
    let lease = InstanceLease::acquire(config.group_instance_id(name), config.shutdown_grace).await;
    let consumer: Arc<StreamConsumer<Ctx>> = Arc::new(
        connector_core::kafka::KafkaConfig::with_statistics(consumer_config(kafka, &config, name))
            .create_with_context(Ctx {
                events: Mutex::default(),
                ownership: ownership.clone(),
                grace: config.shutdown_grace,
                stats: connector_core::kafka::StatsContext::new(name, "consumer"),
            })
            .map_err(|source| CoreError::Kafka {
                operation: "create consumer",
                source,
            })?,
    );
    // Declared after the consumer, so it is dropped first (see `Handover`).
    let _handover = Handover {
        ownership: ownership.clone(),
        consumer: Some(consumer.clone()),
        grace: config.shutdown_grace,
        lease: Some(lease.clone()),
    };
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| CoreError::Kafka {
            operation: "subscribe",
            source,
        })?;

    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        name: name.to_string(),
        executor: Executor::new(athena.clone(), ledger.clone(), config.clone()).for_connector(name),
        ledger: ledger.clone(),
        encoder,
        results_topic: config.results_topic.clone(),
        permits: Semaphore::new(config.max_in_flight),
        done_tx,
        ownership: ownership.clone(),
        dlq_retry_timeout: config.dlq_retry_timeout,
    });

    let mut st = LoopState {
        ownership: ownership.clone(),
        parts: Partitions::default(),
        keys: HashMap::new(),
        awaiting: HashMap::new(),
        running: 0,
        paused: false,
        newly_assigned: false,
    };
    let read_ahead = ReadAhead {
        max_buffered: config.max_buffered,
        max_buffered_bytes: usize::try_from(config.max_buffered_bytes).unwrap_or(usize::MAX),
    };
    control.set_state(TaskState::Running);
    tracing::info!(connector = name, group = %group, "Write-back sink running.");
    // Commits are started by finished commands (see `CommitSchedule`); this tick only retries
    // what a failed or refused commit left behind.
    let mut tick = tokio::time::interval(RETRY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut schedule = CommitSchedule::new(config.commit_interval);

    let mut flushing: Option<Flush> = None;
    // Its own handle: `pause_changed` needs `&mut` and wakes the loop the moment an operator
    // pauses or resumes, instead of at the next commit tick or message.
    let mut pause_watch = control.clone();
    let result: Result<(), Error> = loop {
        if control.is_shutdown() {
            break Ok(());
        }
        if let Err(e) = st.rebalance(&consumer, &ledger).await {
            break Err(e);
        }
        // Pause rather than stop polling (max.poll.interval.ms); resume at half (hysteresis).
        let want_pause = read_ahead.full(&st.parts) || control.is_paused();
        let release = read_ahead.drained(&st.parts) && !control.is_paused();
        if want_pause && (!st.paused || st.newly_assigned) {
            if !st.paused {
                ReadAheadPaused {
                    connector: name,
                    buffered: st.parts.buffered(),
                    buffered_bytes: st.parts.buffered_bytes(),
                }
                .emit();
            }
            st.set_paused(&consumer, true);
        } else if st.paused && release {
            st.set_paused(&consumer, false);
        }
        st.newly_assigned = false;
        tokio::select! {
            biased;
            _ = control.shutdown_requested() => break Ok(()),
            // Re-evaluated at the top of the loop.
            _ = pause_watch.pause_changed() => {}
            d = done_rx.recv() => match d {
                Some(Done::Fatal(e)) => break Err(e),
                Some(Done::Abandoned { key }) => st.next_for_key(&key, &shared),
                Some(Done::Finished { tp, epoch, offset, key, records }) => {
                    st.parts.finish(&tp, epoch, offset, records);
                    schedule.finished();
                    if let Some(key) = key {
                        st.await_commit(key, epoch, offset, &shared);
                    }
                }
                None => break Err(Error::Transaction("completion channel closed".into())),
            },
            _ = schedule.wait(), if flushing.is_none() && schedule.is_due_set() => {
                schedule.started();
                match st.start_flush(&txp, &consumer, &ledger) {
                    Ok(f) => flushing = f,
                    Err(e) => break Err(e),
                }
            }
            _ = tick.tick(), if flushing.is_none() => {
                match st.start_flush(&txp, &consumer, &ledger) {
                    Ok(f) => flushing = f,
                    Err(e) => break Err(e),
                }
            }
            r = async { (&mut flushing.as_mut().expect("guarded").task).await }, if flushing.is_some() => {
                let f = flushing.take().expect("guarded");
                let r = st.finish_flush(&f, r, name);
                if r.is_ok() {
                    st.release_committed(&f.taken, &shared);
                }
                if let Err(e) = r {
                    CommitFailed { connector: name, error: &e }.emit();
                    control.report_error(e.to_string());
                    if e.class() == ErrorClass::Fatal || matches!(e, Error::TransactionStuck(_)) {
                        break Err(e);
                    }
                }
            }
            m = consumer.recv() => match m {
                Ok(m) => {
                    let msg = m.detach();
                    // The assignment callback that made this message ours ran inside the
                    // poll that returned it: apply it first, or the new partition state would
                    // be reset under this message and its offset skipped.
                    if let Err(e) = st.rebalance(&consumer, &ledger).await {
                        break Err(e);
                    }
                    if let Err(e) = st.accept(msg, &decoder, &dlq, &shared, &control).await {
                        break Err(e);
                    }
                }
                Err(e) => {
                    tracing::warn!(connector = name, error = %e, "Kafka consume error; continuing.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    };

    // Let commands already at athena finish (bounded), commit what is contiguous, stop.
    shared.permits.close();
    let deadline = Instant::now() + config.shutdown_grace;
    while result.is_ok() && st.running > 0 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), done_rx.recv()).await {
            Ok(Some(Done::Finished {
                tp,
                epoch,
                offset,
                key,
                records,
            })) => {
                st.parts.finish(&tp, epoch, offset, records);
                if let Some(key) = key {
                    // Finish the key's current command only; queued ones wait for the restart.
                    st.running = st.running.saturating_sub(1);
                    st.keys.remove(&key);
                }
            }
            Ok(Some(Done::Abandoned { key })) => {
                st.running = st.running.saturating_sub(1);
                st.keys.remove(&key);
            }
            Ok(Some(Done::Fatal(e))) => {
                tracing::error!(connector = name, error = %e, "Fatal error while stopping.");
                break;
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    if let Some(f) = flushing.take() {
        let mut f = f;
        let r = (&mut f.task).await;
        if let Err(e) = st.finish_flush(&f, r, name) {
            tracing::warn!(connector = name, error = %e, "Commit failed while stopping.");
        }
    }
    if result.is_ok()
        && let Err(e) = st.flush_now(&txp, &consumer, &ledger, name).await
    {
        tracing::warn!(connector = name, error = %e, "Final commit failed; the commands will be reconciled on restart.");
    }
    match &result {
        Ok(()) => control.set_state(TaskState::Stopped),
        Err(e) => {
            control.report_error(e.to_string());
            control.set_state(TaskState::Failed);
        }
    }
    consumer.unsubscribe();
    result
}

/// How often a commit is retried when nothing new finished: after a failed or aborted
/// transaction, or while the group has no generation yet.
const RETRY_TICK: Duration = Duration::from_millis(100);

/// When the next result transaction starts: as soon as a command finished and no transaction
/// runs, but not sooner than `interval` after the previous start (group commit: results that
/// finish while a transaction runs share the next one). A finished result therefore waits for
/// at most `interval` plus one transaction, instead of a fixed tick plus one transaction.
struct CommitSchedule {
    interval: Duration,
    last_start: Option<tokio::time::Instant>,
    due: Option<tokio::time::Instant>,
}

impl CommitSchedule {
    fn new(interval: Duration) -> Self {
        CommitSchedule {
            interval,
            last_start: None,
            due: None,
        }
    }

    /// A command finished: its result is to be committed.
    fn finished(&mut self) {
        if self.due.is_none() {
            let now = tokio::time::Instant::now();
            let earliest = self.last_start.map_or(now, |s| s + self.interval);
            self.due = Some(earliest.max(now));
        }
    }

    fn is_due_set(&self) -> bool {
        self.due.is_some()
    }

    /// Resolves when a commit is due (never while none is).
    async fn wait(&self) {
        match self.due {
            Some(due) => tokio::time::sleep_until(due).await,
            None => std::future::pending().await,
        }
    }

    /// A commit starts now and takes every finished result.
    fn started(&mut self) {
        self.due = None;
        self.last_start = Some(tokio::time::Instant::now());
    }
}

/// The result producer's settings: `linger.ms=0` unless the config sets it, because a
/// transaction's records are awaited before its offsets are sent, so linger would only delay
/// every commit (the batching is the transaction's own).
fn result_producer(
    kafka: &connector_core::kafka::KafkaConfig,
) -> connector_core::kafka::KafkaConfig {
    let mut k = kafka.clone();
    if !k.producer.contains_key("linger.ms") && !k.properties.contains_key("linger.ms") {
        k.producer.insert("linger.ms".into(), "0".into());
    }
    k
}

/// The consumer's settings: the group, static membership and the session timeout, unless the
/// config's `kafka.consumer` / `kafka.properties` pass-through sets them itself.
fn consumer_config(
    kafka: &connector_core::kafka::KafkaConfig,
    config: &Config,
    name: &str,
) -> rdkafka::ClientConfig {
    let mut c = kafka.consumer_config(&config.group_id(name));
    if c.get("group.instance.id").is_none()
        && let Some(id) = config.group_instance_id(name)
    {
        c.set("group.instance.id", id);
    }
    if c.get("session.timeout.ms").is_none() {
        c.set(
            "session.timeout.ms",
            config.session_timeout.as_millis().to_string(),
        );
    }
    c
}

struct LoopState {
    ownership: Arc<Ownership>,
    parts: Partitions,
    /// A key is present while a worker runs for it, or while its last finished command's
    /// result is not yet committed; the deque holds its queued jobs.
    keys: HashMap<KeyId, VecDeque<Job>>,
    /// Keys whose last command finished but whose result is not committed yet: (epoch, offset).
    /// The key's next command waits for that commit (per-key commit barrier): after a crash at
    /// most one command per key is done-but-unpublished, and no later command on the same
    /// entity has run yet, so reconciling it by reading athena's state back is sound (an update
    /// replayed after the entity's later removal, or a freeze replayed after its unfreeze,
    /// would otherwise be judged against a state it no longer owns).
    awaiting: HashMap<KeyId, (u64, i64)>,
    running: usize,
    paused: bool,
    /// Partitions were assigned since the last pause check (they start unpaused).
    newly_assigned: bool,
}

impl LoopState {
    fn set_paused(&mut self, consumer: &StreamConsumer<Ctx>, pause: bool) {
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        let r = if pause {
            consumer.pause(&assignment)
        } else {
            consumer.resume(&assignment)
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "Could not pause/resume partitions.");
        } else {
            if self.paused && !pause {
                ReadAheadResumed {
                    buffered: self.parts.buffered(),
                    buffered_bytes: self.parts.buffered_bytes(),
                }
                .emit();
            }
            self.paused = pause;
        }
    }

    async fn rebalance(
        &mut self,
        consumer: &StreamConsumer<Ctx>,
        ledger: &Ledger,
    ) -> Result<(), Error> {
        let events: Vec<_> = std::mem::take(&mut *consumer.context().events.lock());
        let mut assigned = false;
        for (assign, list) in events {
            for (topic, partition) in list {
                let tp = tp_of(&topic, partition);
                self.clear_queues(&tp);
                if assign {
                    assigned = true;
                    // No message of the new assignment was accepted yet (events are applied
                    // before the message that follows them), so starting afresh is safe.
                    let epoch = self.parts.assign(&tp);
                    self.ownership.own(&tp, epoch);
                } else {
                    self.ownership.revoke(std::slice::from_ref(&tp));
                    // Work in flight for it is dropped when it completes (epoch mismatch); its
                    // intent records let the next owner reconcile instead of re-sending.
                    self.parts.drop_partition(&tp);
                }
            }
        }
        if assigned {
            self.newly_assigned = true;
            // Another owner may have finished or started commands of these partitions.
            let started = Instant::now();
            let n = ledger.load().await?;
            tracing::info!(
                entries = n,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Reloaded the command ledger after an assignment."
            );
        }
        Ok(())
    }

    /// Drops the queued (not started) jobs of `tp`, and its keys waiting for a commit that
    /// will not come in this epoch.
    fn clear_queues(&mut self, tp: &Tp) {
        for (k, q) in self.keys.iter_mut() {
            if &k.0 == tp {
                q.clear();
            }
        }
        let stale: Vec<KeyId> = self
            .awaiting
            .keys()
            .filter(|k| &k.0 == tp)
            .cloned()
            .collect();
        for k in stale {
            self.awaiting.remove(&k);
            self.keys.remove(&k);
        }
    }

    async fn accept(
        &mut self,
        msg: OwnedMessage,
        decoder: &CommandDecoder,
        dlq: &DeadLetterQueue,
        shared: &Arc<Shared>,
        control: &TaskControl,
    ) -> Result<(), Error> {
        let tp = tp_of(msg.topic(), msg.partition());
        let offset = msg.offset();
        if self.parts.epoch_of(&tp).is_none() {
            // Assignment callback not seen yet (first messages): start an epoch now.
            let epoch = self.parts.assign(&tp);
            self.ownership.own(&tp, epoch);
        }
        let size = msg.payload().map_or(0, <[u8]>::len) + msg.key().map_or(0, <[u8]>::len);
        let Some(epoch) = self.parts.admit(&tp, offset, size) else {
            return Ok(()); // Re-fetched after a pause: already being handled.
        };
        let received_at = TimestampMillis::now();

        let decoded = loop {
            let r = match msg.payload() {
                Some(p) if !p.is_empty() => decoder.decode(p).await,
                _ => Err(CoreError::NotWireFormat("empty message".into())),
            };
            match r {
                Err(e) if e.class() == ErrorClass::Retriable => {
                    tracing::warn!(error = %e, "Schema registry unavailable; retrying the decode.");
                    control.report_error("schema registry unavailable");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if control.is_shutdown() {
                        return Ok(());
                    }
                }
                other => break other,
            }
        };
        match decoded {
            Err(e) => {
                DeadLettered {
                    connector: &shared.name,
                    topic: &tp.0,
                    partition: tp.1,
                    offset,
                    error: &e.to_string(),
                }
                .emit();
                let reason = Reason::from_core(&e, Stage::ValueConverter);
                dead_letter(shared, dlq, msg, reason, epoch);
            }
            Ok(command) => {
                let key_bytes = msg
                    .key()
                    .map(<[u8]>::to_vec)
                    .unwrap_or_else(|| command.command_id().as_bytes().to_vec());
                let key: KeyId = (tp.clone(), key_bytes);
                // Only the headers are kept: the payload is decoded, and the raw bytes (the
                // larger copy of a document) are dropped with `msg` here.
                let headers = msg.headers().cloned();
                drop(msg);
                let job = Job {
                    tp,
                    epoch,
                    key: key.clone(),
                    offset,
                    headers,
                    command,
                    received_at,
                };
                match self.keys.get_mut(&key) {
                    Some(q) => q.push_back(job),
                    None => {
                        self.keys.insert(key, VecDeque::new());
                        self.spawn(job, shared);
                    }
                }
            }
        }
        Ok(())
    }

    fn spawn(&mut self, job: Job, shared: &Arc<Shared>) {
        self.running += 1;
        let shared = shared.clone();
        // An OpenTelemetry CONSUMER span `process <topic>` (messaging semantic conventions),
        // continuing the trace of the command's `traceparent`.
        let span = tracing::info_span!("write_back.command",
            otel.name = %format_args!("process {}", job.tp.0), otel.kind = "consumer",
            messaging.system = "kafka", messaging.operation.type = "process",
            messaging.operation.name = "process", messaging.destination.name = %job.tp.0,
            messaging.destination.partition.id = %job.tp.1, messaging.kafka.offset = job.offset,
            command_id = %job.command.command_id(), command = job.command.type_name(),
            partition = job.tp.1, offset = job.offset);
        if let Some(h) = &job.headers {
            headers::continue_trace(&span, h);
        }
        tokio::spawn(
            async move {
                let done = match work(&shared, &job).await {
                    Ok(None) => Done::Abandoned {
                        key: job.key.clone(),
                    },
                    Ok(Some(records)) => Done::Finished {
                        tp: job.tp.clone(),
                        epoch: job.epoch,
                        offset: job.offset,
                        key: Some(job.key.clone()),
                        records,
                    },
                    Err(e) => Done::Fatal(e),
                };
                let _ = shared.done_tx.send(done);
            }
            .instrument(span),
        );
    }

    /// A worker finished `key`'s command at (`epoch`, `offset`): its next command starts once
    /// that result is committed ([`LoopState::release_committed`]); a command of a partition
    /// epoch that is gone holds nothing back.
    fn await_commit(&mut self, key: KeyId, epoch: u64, offset: i64, shared: &Arc<Shared>) {
        if self.parts.epoch_of(&key.0) == Some(epoch) {
            self.running = self.running.saturating_sub(1);
            self.awaiting.insert(key, (epoch, offset));
        } else {
            self.next_for_key(&key, shared);
        }
    }

    /// A commit of `taken` ((partition, epoch, last offset) each) succeeded: the keys whose
    /// awaited result it covered start their next command.
    fn release_committed(&mut self, taken: &[(Tp, u64, i64)], shared: &Arc<Shared>) {
        let released: Vec<KeyId> = self
            .awaiting
            .iter()
            .filter(|(k, (epoch, offset))| {
                taken
                    .iter()
                    .any(|(tp, e, last)| tp == &k.0 && e == epoch && offset <= last)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in released {
            self.awaiting.remove(&k);
            self.start_next(&k, shared);
        }
    }

    fn next_for_key(&mut self, key: &KeyId, shared: &Arc<Shared>) {
        self.running = self.running.saturating_sub(1);
        self.start_next(key, shared);
    }

    /// Starts `key`'s next queued command, or forgets the key when none is queued.
    fn start_next(&mut self, key: &KeyId, shared: &Arc<Shared>) {
        let next = self.keys.get_mut(key).and_then(VecDeque::pop_front);
        match next {
            Some(job) => self.spawn(job, shared),
            None => {
                self.keys.remove(key);
            }
        }
    }

    /// Starts committing the finished contiguous prefix of every partition in one transaction,
    /// on its own task, so the loop keeps consuming meanwhile. One at a time: the slots of
    /// a running commit stay in place (finished) until [`LoopState::finish_flush`].
    fn start_flush(
        &mut self,
        txp: &FutureProducer,
        consumer: &Arc<StreamConsumer<Ctx>>,
        ledger: &Arc<Ledger>,
    ) -> Result<Option<Flush>, Error> {
        let mut batch = None;
        // Picked under the ownership lock; see `Ownership::begin_commit`.
        let started = self.ownership.begin_commit(|owned| {
            let b = self.parts.committable(owned);
            let any = !b.taken.is_empty();
            batch = Some(b);
            any
        });
        let Some(batch) = batch.filter(|_| started) else {
            return Ok(None);
        };
        let mut offsets = TopicPartitionList::new();
        for (tp, _, off) in &batch.taken {
            if let Err(e) = offsets.add_partition_offset(&tp.0, tp.1, Offset::Offset(off + 1)) {
                self.ownership.end_commit();
                return Err(Error::Transaction(e.to_string()));
            }
        }
        let txp = txp.clone();
        let consumer = consumer.clone();
        let ownership = self.ownership.clone();
        let records = batch.records;
        let records_n = records.len();
        // The commands whose `done` records this transaction carries.
        let done_ids: Vec<String> = records
            .iter()
            .filter(|r| r.topic == ledger.topic())
            .filter_map(|r| String::from_utf8(r.key.clone()).ok())
            .collect();
        let task = tokio::spawn(async move {
            let r = commit_batch(&txp, &consumer, &records, offsets).await;
            ownership.end_commit();
            r
        });
        Ok(Some(Flush {
            task,
            taken: batch.taken,
            records: records_n,
            started: Instant::now(),
            ledger: ledger.clone(),
            done_ids,
        }))
    }

    /// Applies the outcome of a commit started by [`LoopState::start_flush`].
    fn finish_flush(
        &mut self,
        flush: &Flush,
        result: Result<Result<usize, TxnFailure>, tokio::task::JoinError>,
        name: &str,
    ) -> Result<(), Error> {
        let r = result.map_err(|e| Error::Transaction(format!("commit task: {e}")))?;
        match r {
            Ok(_) => {
                self.parts.committed(&flush.taken);
                flush
                    .ledger
                    .published(flush.done_ids.iter().map(String::as_str));
                OffsetsCommitted {
                    connector: name,
                    records: flush.records,
                    elapsed: flush.started.elapsed(),
                }
                .emit();
                Ok(())
            }
            // Logged and counted by the caller (`CommitFailed`).
            Err(e) => Err(classify(&e)),
        }
    }

    /// Commits what is finished and waits for it (shutdown path).
    async fn flush_now(
        &mut self,
        txp: &FutureProducer,
        consumer: &Arc<StreamConsumer<Ctx>>,
        ledger: &Arc<Ledger>,
        name: &str,
    ) -> Result<(), Error> {
        match self.start_flush(txp, consumer, ledger)? {
            Some(mut f) => {
                let r = (&mut f.task).await;
                self.finish_flush(&f, r, name)
            }
            None => Ok(()),
        }
    }
}

/// A commit running on its own task.
struct Flush {
    task: tokio::task::JoinHandle<Result<usize, TxnFailure>>,
    /// (partition, epoch, last offset) committed by it.
    taken: Vec<(Tp, u64, i64)>,
    records: usize,
    /// When it was started.
    started: Instant,
    /// The ledger, told which `done` records are committed once the transaction is.
    ledger: Arc<Ledger>,
    /// The commands whose `done` records it carries.
    done_ids: Vec<String>,
}
