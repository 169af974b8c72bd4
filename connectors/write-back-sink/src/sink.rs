//! The sink's consume loop: ordering, bounded concurrency, transactions, dead letters.
//!
//! Invariants (see `docs/connectors/write-back-sink.md`):
//! - **Per key in order.** Commands with the same Kafka key (on one partition) run one at a
//!   time in offset order; different keys run concurrently, at most `max_in_flight` athena
//!   commands at once. A stuck key blocks only itself.
//! - **Results, ledger and offsets in one transaction.** A finished command's `CommandResult`,
//!   its ledger `done` record and the consumer offset after it are committed in one Kafka
//!   transaction, and only for a *contiguous* prefix of each partition: a result waits until
//!   every earlier offset of its partition is finished too. So a committed offset always means
//!   "every command before it has its result on Kafka", and a result is never published for a
//!   message whose offset is not committed with it: after a crash no result is repeated.
//! - **No blocking past `max.poll.interval.ms`.** When `max_buffered` commands are read but not
//!   committed, the partitions are paused (and resumed at half); the loop keeps polling.
//! - **Poison messages** go to the DLQ byte for byte (acknowledged before their offset is
//!   committed) and the partition moves on.
//! - **A partition is handed over quiet.** Replicas share one group; when a partition is
//!   revoked, its commands start no further athena call, and the revocation callback holds the
//!   rebalance until the calls under way and a running commit have ended (bounded by
//!   `shutdown_grace`). So the next owner's ledger load sees every intent and `done` record of
//!   the previous owner, and no write of the previous owner lands after the new owner's
//!   read-back. A commit refused for a stale group generation is aborted and recomputed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_core::avro::{AvroCodec, Encoder};
use connector_core::contracts::{CommandResult, CommandStatus, TimestampMillis};
use connector_core::dlq::{DeadLetterQueue, Stage};
use connector_core::kafka::{TopicSpec, ensure_topics};
use connector_core::metrics::{CommandLabels, ConnectorLabels};
use connector_core::runtime::{RunEnv, TaskControl, TaskState};
use connector_core::{CoreError, ErrorClass, headers};
use parking_lot::{Condvar, Mutex};
use rdkafka::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

use crate::apply::{Executor, Outcome};
use crate::commands::{Command, CommandDecoder};
use crate::config::Config;
use crate::error::Error;
use crate::ledger::{Ledger, LedgerEntry, Position};

type Tp = (Arc<str>, i32);
type KeyId = (Tp, Vec<u8>);
/// (assigned?, partitions) as reported by a rebalance callback.
type RebalanceEvent = (bool, Vec<(String, i32)>);

/// A record to produce inside the next transaction.
#[derive(Debug, Clone)]
struct OutRecord {
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: Option<OwnedHeaders>,
}

/// Read-but-uncommitted commands of one partition, by offset; `Some` once finished.
#[derive(Debug, Default)]
struct PartState {
    epoch: u64,
    slots: BTreeMap<i64, Option<Vec<OutRecord>>>,
}

struct Job {
    tp: Tp,
    epoch: u64,
    key: KeyId,
    msg: OwnedMessage,
    command: Command,
    received_at: TimestampMillis,
}

enum Done {
    Finished {
        tp: Tp,
        epoch: u64,
        offset: i64,
        key: Option<KeyId>,
        records: Vec<OutRecord>,
    },
    /// Not started because the sink is stopping.
    Abandoned {
        key: KeyId,
    },
    Fatal(Error),
}

/// Records assignment changes for the loop (callbacks run inside librdkafka's poll).
struct Ctx {
    events: Mutex<Vec<RebalanceEvent>>,
    ownership: Arc<Ownership>,
    /// How long a revocation waits for the revoked partitions' work to end.
    grace: Duration,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        // Partitions are handed over only once this returns (eager: before this member
        // rejoins; cooperative: before the second round gives them away). Stop their work and
        // wait for the athena calls and the commit under way, so the next owner neither misses
        // an intent nor races a write of ours.
        if let Rebalance::Revoke(tpl) = rebalance {
            let tps: Vec<Tp> = tpl
                .elements()
                .iter()
                .map(|e| (Arc::from(e.topic()), e.partition()))
                .collect();
            self.ownership.revoke(&tps);
            let started = Instant::now();
            let quiet = blocking_wait(|| self.ownership.drain(&tps, self.grace));
            if quiet {
                tracing::info!(
                    partitions = tps.len(),
                    waited_ms = started.elapsed().as_millis() as u64,
                    "Partitions revoked; their work has ended."
                );
            } else {
                tracing::warn!(
                    partitions = tps.len(),
                    "Partitions revoked while athena calls were still under way after the grace period; the next owner reconciles them."
                );
            }
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        let list = |tpl: &TopicPartitionList| {
            tpl.elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect::<Vec<_>>()
        };
        match rebalance {
            Rebalance::Assign(tpl) => self.events.lock().push((true, list(tpl))),
            Rebalance::Revoke(tpl) => self.events.lock().push((false, list(tpl))),
            Rebalance::Error(e) => tracing::warn!(error = %e, "Rebalance error."),
        }
    }
}

/// Runs `f`, which blocks, from a rebalance callback (inside the loop's poll, on a runtime
/// worker): `block_in_place` lets the other tasks (the workers being waited for) run
/// meanwhile. On a current-thread runtime nothing else could run, so it does not wait.
fn blocking_wait(f: impl FnOnce() -> bool) -> bool {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) => false,
        Err(_) => f(),
    }
}

/// Which partitions this instance owns (and under which epoch), and the work under way for
/// them. Shared by the rebalance callback, the loop and the workers.
#[derive(Default)]
struct Ownership {
    state: Mutex<OwnState>,
    changed: Condvar,
}

#[derive(Default)]
struct OwnState {
    live: HashMap<Tp, u64>,
    /// Workers between [`Ownership::enter`] and the drop of their [`Busy`].
    busy: HashMap<Tp, usize>,
    committing: bool,
}

/// A worker's claim on its partition; ends the work when dropped.
struct Busy<'a> {
    ownership: &'a Ownership,
    tp: Tp,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut st = self.ownership.state.lock();
        if let Some(n) = st.busy.get_mut(&self.tp) {
            *n -= 1;
            if *n == 0 {
                st.busy.remove(&self.tp);
            }
        }
        self.ownership.changed.notify_all();
    }
}

impl Ownership {
    fn own(&self, tp: &Tp, epoch: u64) {
        self.state.lock().live.insert(tp.clone(), epoch);
    }

    fn revoke(&self, tps: &[Tp]) {
        let mut st = self.state.lock();
        for tp in tps {
            st.live.remove(tp);
        }
    }

    fn revoke_all(&self) -> Vec<Tp> {
        let mut st = self.state.lock();
        st.live.clear();
        st.busy.keys().cloned().collect()
    }

    fn owns(&self, tp: &Tp, epoch: u64) -> bool {
        self.state.lock().live.get(tp) == Some(&epoch)
    }

    /// Starts work on `tp` if it is still owned under `epoch` (atomically with the check, so a
    /// revocation either sees this work or this work sees the revocation).
    fn enter(&self, tp: &Tp, epoch: u64) -> Option<Busy<'_>> {
        let mut st = self.state.lock();
        if st.live.get(tp) != Some(&epoch) {
            return None;
        }
        *st.busy.entry(tp.clone()).or_default() += 1;
        Some(Busy {
            ownership: self,
            tp: tp.clone(),
        })
    }

    fn end_commit(&self) {
        self.state.lock().committing = false;
        self.changed.notify_all();
    }

    /// Waits until no work on `tps` and no commit is under way; false on timeout.
    fn drain(&self, tps: &[Tp], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        loop {
            if !st.committing && tps.iter().all(|tp| !st.busy.contains_key(tp)) {
                return true;
            }
            if self.changed.wait_until(&mut st, deadline).timed_out() {
                return false;
            }
        }
    }
}

/// Dropped when [`run`] ends in any way, including when its task is aborted: the consumer
/// (which leaves the group when it is dropped) is kept until the work still under way has
/// stopped, so an abrupt stop hands partitions over as quietly as a rebalance does.
struct Handover {
    ownership: Arc<Ownership>,
    consumer: Option<Arc<StreamConsumer<Ctx>>>,
    grace: Duration,
}

impl Drop for Handover {
    fn drop(&mut self) {
        let busy = self.ownership.revoke_all();
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        if busy.is_empty() {
            return;
        }
        let ownership = self.ownership.clone();
        let grace = self.grace;
        // Not blocking in drop: the wait runs as a task that owns the consumer.
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline && !ownership.drain(&busy, Duration::ZERO) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                drop(consumer);
            });
        }
    }
}

/// Everything a worker needs, shared.
struct Shared {
    name: String,
    executor: Executor,
    ledger: Arc<Ledger>,
    encoder: Encoder<CommandResult>,
    results_topic: String,
    permits: Semaphore,
    done_tx: mpsc::UnboundedSender<Done>,
    ownership: Arc<Ownership>,
}

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
    let txp = kafka.build_transactional_producer(&config.transactional_id(name))?;
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

    let ledger = Arc::new(
        Ledger::open(
            kafka,
            &config.ledger_topic,
            plain.clone(),
            config.ledger_retention,
        )
        .await?,
    );
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
    let consumer: Arc<StreamConsumer<Ctx>> = Arc::new(
        kafka
            .consumer_config(&group)
            .create_with_context(Ctx {
                events: Mutex::default(),
                ownership: ownership.clone(),
                grace: config.shutdown_grace,
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
    });

    let mut st = LoopState {
        ownership: ownership.clone(),
        parts: HashMap::new(),
        keys: HashMap::new(),
        epoch: 0,
        buffered: 0,
        running: 0,
        paused: false,
        newly_assigned: false,
    };
    control.set_state(TaskState::Running);
    tracing::info!(connector = name, group = %group, "Write-back sink running.");
    let mut tick = tokio::time::interval(config.commit_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

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
        let want_pause = st.buffered >= config.max_buffered || control.is_paused();
        let release = st.buffered <= config.max_buffered / 2 && !control.is_paused();
        if want_pause && (!st.paused || st.newly_assigned) {
            if !st.paused {
                tracing::info!(
                    connector = name,
                    buffered = st.buffered,
                    "Pausing partitions."
                );
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
                    st.finish(&tp, epoch, offset, records);
                    if let Some(key) = key {
                        st.next_for_key(&key, &shared);
                    }
                }
                None => break Err(Error::Transaction("completion channel closed".into())),
            },
            _ = tick.tick(), if flushing.is_none() => {
                match st.start_flush(&txp, &consumer) {
                    Ok(f) => flushing = f,
                    Err(e) => break Err(e),
                }
            }
            r = async { (&mut flushing.as_mut().expect("guarded").task).await }, if flushing.is_some() => {
                let f = flushing.take().expect("guarded");
                if let Err(e) = st.finish_flush(f.taken, f.records, r, name) {
                    connector_core::metrics::global()
                        .errors
                        .get_or_create(&connector_core::metrics::ErrorLabels {
                            connector: name.to_string(),
                            class: e.class().label().to_string(),
                        })
                        .inc();
                    control.report_error(e.to_string());
                    if e.class() == ErrorClass::Fatal {
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
                st.finish(&tp, epoch, offset, records);
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
        let r = f.task.await;
        if let Err(e) = st.finish_flush(f.taken, f.records, r, name) {
            tracing::warn!(connector = name, error = %e, "Commit failed while stopping.");
        }
    }
    if result.is_ok()
        && let Err(e) = st.flush_now(&txp, &consumer, name).await
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

struct LoopState {
    ownership: Arc<Ownership>,
    parts: HashMap<Tp, PartState>,
    /// A key is present while a worker runs for it; the deque holds its queued jobs.
    keys: HashMap<KeyId, VecDeque<Job>>,
    epoch: u64,
    buffered: usize,
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
                tracing::info!(buffered = self.buffered, "Resuming partitions.");
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
                let tp: Tp = (Arc::from(topic.as_str()), partition);
                if assign {
                    assigned = true;
                    self.epoch += 1;
                    // No message of the new assignment was accepted yet (events are applied
                    // before the message that follows them), so starting afresh is safe.
                    self.drop_partition(&tp);
                    self.ownership.own(&tp, self.epoch);
                    self.parts.insert(
                        tp,
                        PartState {
                            epoch: self.epoch,
                            slots: BTreeMap::new(),
                        },
                    );
                } else {
                    self.ownership.revoke(std::slice::from_ref(&tp));
                    // Work in flight for it is dropped when it completes (epoch mismatch); its
                    // intent records let the next owner reconcile instead of re-sending.
                    self.drop_partition(&tp);
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

    fn drop_partition(&mut self, tp: &Tp) {
        if let Some(p) = self.parts.remove(tp) {
            self.buffered -= p.slots.len();
        }
        for (k, q) in self.keys.iter_mut() {
            if &k.0 == tp {
                q.clear();
            }
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
        let tp: Tp = (Arc::from(msg.topic()), msg.partition());
        let offset = msg.offset();
        if !self.parts.contains_key(&tp) {
            // Assignment callback not seen yet (first messages): start an epoch now.
            self.epoch += 1;
            self.ownership.own(&tp, self.epoch);
            self.parts.insert(
                tp.clone(),
                PartState {
                    epoch: self.epoch,
                    slots: BTreeMap::new(),
                },
            );
        }
        let part = self.parts.get_mut(&tp).expect("inserted above");
        if part.slots.contains_key(&offset) {
            return Ok(()); // Re-fetched after a pause: already being handled.
        }
        let epoch = part.epoch;
        part.slots.insert(offset, None);
        self.buffered += 1;
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
                tracing::warn!(connector = %shared.name, topic = %tp.0, partition = tp.1, offset,
                    error = %connector_core::dlq::redact(&e.to_string()), "Undecodable command; sending it to the dead-letter queue.");
                let dlq = dlq.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut n = 0u32;
                    loop {
                        match dlq.send(&msg, &e, Stage::ValueConverter).await {
                            Ok(()) => break,
                            Err(err) => {
                                n += 1;
                                tracing::warn!(error = %err, attempt = n, "Dead-letter produce failed; retrying.");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    }
                    connector_core::metrics::global()
                        .dlq_produce_requests
                        .get_or_create(&ConnectorLabels {
                            connector: shared.name.clone(),
                        })
                        .inc();
                    let _ = shared.done_tx.send(Done::Finished {
                        tp,
                        epoch,
                        offset,
                        key: None,
                        records: Vec::new(),
                    });
                });
            }
            Ok(command) => {
                let key_bytes = msg
                    .key()
                    .map(<[u8]>::to_vec)
                    .unwrap_or_else(|| command.command_id().as_bytes().to_vec());
                let key: KeyId = (tp.clone(), key_bytes);
                let job = Job {
                    tp,
                    epoch,
                    key: key.clone(),
                    msg,
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
        let span = tracing::info_span!("write_back.command",
            command_id = %job.command.command_id(), command = job.command.type_name(),
            partition = job.tp.1, offset = job.msg.offset());
        if let Some(h) = job.msg.headers() {
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
                        offset: job.msg.offset(),
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

    fn next_for_key(&mut self, key: &KeyId, shared: &Arc<Shared>) {
        self.running = self.running.saturating_sub(1);
        let next = self.keys.get_mut(key).and_then(VecDeque::pop_front);
        match next {
            Some(job) => self.spawn(job, shared),
            None => {
                self.keys.remove(key);
            }
        }
    }

    fn finish(&mut self, tp: &Tp, epoch: u64, offset: i64, records: Vec<OutRecord>) {
        if let Some(p) = self.parts.get_mut(tp)
            && p.epoch == epoch
            && let Some(slot) = p.slots.get_mut(&offset)
        {
            *slot = Some(records);
        }
    }

    /// Starts committing the finished contiguous prefix of every partition in one transaction,
    /// on a blocking thread, so the loop keeps consuming meanwhile. One at a time: the slots of
    /// a running commit stay in place (finished) until [`LoopState::finish_flush`].
    fn start_flush(
        &mut self,
        txp: &FutureProducer,
        consumer: &Arc<StreamConsumer<Ctx>>,
    ) -> Result<Option<Flush>, Error> {
        let mut records = Vec::new();
        let mut offsets = TopicPartitionList::new();
        let mut taken: Vec<(Tp, u64, i64)> = Vec::new();
        // Under the ownership lock until `committing` is set: a revocation either waits for
        // this commit or happened before it, and then its partitions are left out (their new
        // owner redoes them; committing their offsets here could overwrite the new owner's).
        let mut own = self.ownership.state.lock();
        for (tp, p) in &self.parts {
            if own.live.get(tp) != Some(&p.epoch) {
                continue;
            }
            let mut last = None;
            for (off, slot) in &p.slots {
                match slot {
                    Some(r) => {
                        records.extend(r.iter().cloned());
                        last = Some(*off);
                    }
                    None => break,
                }
            }
            if let Some(off) = last {
                offsets
                    .add_partition_offset(&tp.0, tp.1, Offset::Offset(off + 1))
                    .map_err(|e| Error::Transaction(e.to_string()))?;
                taken.push((tp.clone(), p.epoch, off));
            }
        }
        if taken.is_empty() {
            return Ok(None);
        }
        own.committing = true;
        drop(own);
        let txp = txp.clone();
        let consumer = consumer.clone();
        let ownership = self.ownership.clone();
        let records_n = records.len();
        let task = tokio::task::spawn_blocking(move || {
            let r = commit_batch(&txp, &consumer, &records, &offsets);
            ownership.end_commit();
            r
        });
        Ok(Some(Flush {
            task,
            taken,
            records: records_n,
        }))
    }

    /// Applies the outcome of a commit started by [`LoopState::start_flush`].
    fn finish_flush(
        &mut self,
        taken: Vec<(Tp, u64, i64)>,
        records: usize,
        result: Result<Result<(), KafkaError>, tokio::task::JoinError>,
        name: &str,
    ) -> Result<(), Error> {
        let r = result.map_err(|e| Error::Transaction(format!("commit task: {e}")))?;
        match r {
            Ok(()) => {
                for (tp, epoch, off) in taken {
                    if let Some(p) = self.parts.get_mut(&tp)
                        && p.epoch == epoch
                    {
                        let rest = p.slots.split_off(&(off + 1));
                        self.buffered -= p.slots.len();
                        p.slots = rest;
                    }
                }
                connector_core::metrics::global()
                    .sink_offset_commits
                    .get_or_create(&ConnectorLabels {
                        connector: name.to_string(),
                    })
                    .inc();
                tracing::debug!(records, "Committed results and offsets.");
                Ok(())
            }
            Err(e) => {
                let fatal = match &e {
                    KafkaError::Transaction(t) => {
                        t.is_fatal()
                            || matches!(
                                t.code(),
                                RDKafkaErrorCode::ProducerFenced
                                    | RDKafkaErrorCode::InvalidProducerEpoch
                                    | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                            )
                    }
                    _ => false,
                };
                if fatal {
                    Err(Error::Transaction(e.to_string()))
                } else {
                    // Aborted; the same (recomputed) batch is tried again at the next tick. Not a
                    // fatal class: a rebalance makes the broker refuse the offsets of a stale
                    // group generation (the zombie fencing replicas rely on), which must not
                    // stop the sink.
                    tracing::warn!(error = %e, "Result transaction aborted; retrying.");
                    Err(Error::TransactionAborted(e.to_string()))
                }
            }
        }
    }

    /// Commits what is finished and waits for it (shutdown path).
    async fn flush_now(
        &mut self,
        txp: &FutureProducer,
        consumer: &Arc<StreamConsumer<Ctx>>,
        name: &str,
    ) -> Result<(), Error> {
        match self.start_flush(txp, consumer)? {
            Some(f) => {
                let r = f.task.await;
                self.finish_flush(f.taken, f.records, r, name)
            }
            None => Ok(()),
        }
    }
}

/// A commit running on a blocking thread.
struct Flush {
    task: tokio::task::JoinHandle<Result<(), KafkaError>>,
    /// (partition, epoch, last offset) committed by it.
    taken: Vec<(Tp, u64, i64)>,
    records: usize,
}

/// One transaction: every record, then the offsets, then commit; abort on any failure.
fn commit_batch(
    txp: &FutureProducer,
    consumer: &StreamConsumer<Ctx>,
    records: &[OutRecord],
    offsets: &TopicPartitionList,
) -> Result<(), KafkaError> {
    let timeout = Duration::from_secs(30);
    txp.begin_transaction()?;
    let r = (|| {
        for r in records {
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&r.topic)
                .key(&r.key[..])
                .payload(&r.payload[..]);
            if let Some(h) = &r.headers {
                rec = rec.headers(h.clone());
            }
            loop {
                match txp.send_result(rec) {
                    Ok(_delivery) => break, // commit_transaction flushes and fails on any error
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        let gm = consumer
            .group_metadata()
            .ok_or(KafkaError::MessageProduction(RDKafkaErrorCode::State))?;
        txp.send_offsets_to_transaction(offsets, &gm, timeout)?;
        txp.commit_transaction(timeout)
    })();
    if r.is_err() {
        let _ = txp.abort_transaction(timeout);
    }
    r
}

/// Handles one decoded command; returns the records of its transaction (ledger, result).
async fn work(shared: &Shared, job: &Job) -> Result<Option<Vec<OutRecord>>, Error> {
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
        offset: job.msg.offset(),
    };
    let outcome = match shared.ledger.get(cmd.command_id()) {
        Some(LedgerEntry::Done {
            position: p,
            result,
        }) if p == position => {
            // This very message was finished before, but its offset is not committed, so its
            // result was not either (they go in one transaction): the in-memory entry of an
            // attempt whose commit was aborted or whose partition moved. Publish that result
            // now, with its ledger record, instead of re-running the command.
            return Ok(Some(vec![
                OutRecord {
                    topic: shared.ledger.topic().to_string(),
                    key: cmd.command_id().as_bytes().to_vec(),
                    payload: Ledger::encode(&LedgerEntry::Done {
                        position,
                        result: result.clone(),
                    }),
                    headers: None,
                },
                OutRecord {
                    topic: shared.results_topic.clone(),
                    key: cmd.command_id().as_bytes().to_vec(),
                    payload: shared.encoder.encode(&result)?,
                    headers: Some(headers::with_str(
                        headers::inject_current_trace(OwnedHeaders::new()),
                        "athena.command.type",
                        cmd.type_name(),
                    )),
                },
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
    let m = connector_core::metrics::global();
    let outcome_label = match result.status {
        CommandStatus::Applied => "applied",
        CommandStatus::Duplicate => "duplicate",
        CommandStatus::Rejected => "rejected",
        CommandStatus::Failed => "failed",
    };
    m.sink_commands
        .get_or_create(&CommandLabels {
            connector: shared.name.clone(),
            command: cmd.type_name().to_string(),
            outcome: outcome_label.to_string(),
        })
        .inc();
    m.sink_command_latency_seconds
        .get_or_create(&ConnectorLabels {
            connector: shared.name.clone(),
        })
        .observe((result.completed_at.0 - result.received_at.0).max(0) as f64 / 1000.0);
    tracing::info!(
        status = outcome_label,
        attempts = result.attempts,
        error_code = result.error.as_ref().map(|e| e.code.as_str()).unwrap_or(""),
        "Command finished."
    );

    let payload = shared.encoder.encode(&result)?;
    let mut out = Vec::with_capacity(2);
    let is_new = result.status != CommandStatus::Duplicate
        || !matches!(
            shared.ledger.get(cmd.command_id()),
            Some(LedgerEntry::Done { .. })
        );
    if is_new {
        let entry = LedgerEntry::Done {
            position,
            result: result.clone(),
        };
        out.push(OutRecord {
            topic: shared.ledger.topic().to_string(),
            key: cmd.command_id().as_bytes().to_vec(),
            payload: Ledger::encode(&entry),
            headers: None,
        });
        shared.ledger.remember(cmd.command_id(), entry);
    }
    let mut h = headers::inject_current_trace(OwnedHeaders::new());
    h = headers::with_str(h, "athena.command.type", cmd.type_name());
    out.push(OutRecord {
        topic: shared.results_topic.clone(),
        key: cmd.command_id().as_bytes().to_vec(),
        payload,
        headers: Some(h),
    });
    Ok(Some(out))
}
