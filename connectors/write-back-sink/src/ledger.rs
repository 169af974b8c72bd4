//! The command ledger: a compacted topic keyed by `command_id` whose last value says what the
//! sink knows about that command. It survives restarts and rebalances and is what makes the
//! sink refuse to write twice.
//!
//! Two kinds of record (JSON, internal to the sink, PHI-free: ids and result codes only):
//! - `in_flight`: written and acknowledged **before** every athena call of a non-idempotent
//!   command. Finding one at start means a previous run may have reached athena without
//!   publishing a result: the command is reconciled (read back) before anything is re-sent.
//! - `done`: the command's `CommandResult`, written **in the same Kafka transaction** as the
//!   result itself and the consumer offset (so result, ledger and offset never disagree; the
//!   loader reads `read_committed`, so an aborted transaction leaves the `in_flight` record
//!   visible and the command is reconciled again).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use athena_contracts::CommandResult;
use connector_core::CoreError;
use connector_core::checkpoint::{CheckpointStore, KafkaCheckpointStore};
use connector_core::kafka::KafkaConfig;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

/// Where a command was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Source topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// What the ledger knows about one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LedgerEntry {
    /// An athena call is (or was) under way.
    InFlight {
        /// The message being handled.
        position: Position,
        /// Command type.
        command_type: String,
        /// 1-based attempt about to be made.
        attempt: u32,
        /// For writes athena cannot deduplicate: how many matching records athena held before
        /// the first attempt (reconciliation looks for one more).
        #[serde(default)]
        baseline: Option<u32>,
    },
    /// The result was published.
    Done {
        /// The message that got the result.
        position: Position,
        /// The published result.
        result: CommandResult,
    },
}

/// Where the ledger's records live: a compacted-topic-style key-value store, like
/// [`connector_core::checkpoint::CheckpointStore`] but object safe and with the ledger's own
/// load (see [`Ledger::load`]). [`KafkaLedgerStore`] is the real one; [`MemoryLedgerStore`] lets
/// the executor be tested without a broker.
pub trait LedgerStore: Send + Sync + 'static {
    /// The topic `done` records are written to (inside the sink's result transaction).
    fn topic(&self) -> &str;
    /// Every live record, by key.
    fn load_all(&self) -> BoxFuture<'_, Result<HashMap<String, Vec<u8>>, CoreError>>;
    /// Durably stores `value` under `key`; returns once acknowledged.
    fn save<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), CoreError>>;
}

/// The ledger on a compacted Kafka topic.
pub struct KafkaLedgerStore {
    kafka: KafkaConfig,
    store: KafkaCheckpointStore,
}

impl KafkaLedgerStore {
    /// Opens (creating when missing, with `retention` unless zero) the ledger topic;
    /// `producer` writes intent records.
    pub async fn open(
        kafka: &KafkaConfig,
        topic: &str,
        producer: FutureProducer,
        retention: Duration,
    ) -> Result<Self, CoreError> {
        let retention = (!retention.is_zero()).then_some(retention);
        Ok(KafkaLedgerStore {
            kafka: kafka.clone(),
            store: KafkaCheckpointStore::open_with_retention(kafka, topic, producer, retention)
                .await?,
        })
    }
}

impl LedgerStore for KafkaLedgerStore {
    fn topic(&self) -> &str {
        self.store.topic()
    }

    fn load_all(&self) -> BoxFuture<'_, Result<HashMap<String, Vec<u8>>, CoreError>> {
        let kafka = self.kafka.clone();
        let topic = self.topic().to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                connector_core::checkpoint::load_to_high_watermark(
                    &kafka,
                    &topic,
                    "athena-connect-ledger-loader",
                )
            })
            .await
            .map_err(|e| CoreError::task("ledger loader", &e))?
        })
    }

    fn save<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), CoreError>> {
        Box::pin(self.store.save(key, value))
    }
}

/// A shared store (e.g. one [`MemoryLedgerStore`] behind two ledgers: a restart in tests).
impl<T: LedgerStore> LedgerStore for std::sync::Arc<T> {
    fn topic(&self) -> &str {
        (**self).topic()
    }
    fn load_all(&self) -> BoxFuture<'_, Result<HashMap<String, Vec<u8>>, CoreError>> {
        (**self).load_all()
    }
    fn save<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), CoreError>> {
        (**self).save(key, value)
    }
}

/// An in-memory ledger store (tests): records survive as long as the value does.
#[derive(Debug, Default)]
pub struct MemoryLedgerStore {
    records: Mutex<HashMap<String, Vec<u8>>>,
    /// Saves still to refuse (with a retriable error) before accepting again.
    failing_saves: Mutex<u32>,
}

impl MemoryLedgerStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` saves fail with a retriable Kafka error.
    pub fn fail_next_saves(&self, n: u32) {
        *self.failing_saves.lock() = n;
    }

    /// The raw record under `key`.
    pub fn record(&self, key: &str) -> Option<Vec<u8>> {
        self.records.lock().get(key).cloned()
    }
}

impl LedgerStore for MemoryLedgerStore {
    fn topic(&self) -> &str {
        "memory-ledger"
    }

    fn load_all(&self) -> BoxFuture<'_, Result<HashMap<String, Vec<u8>>, CoreError>> {
        let all = self.records.lock().clone();
        Box::pin(async move { Ok(all) })
    }

    fn save<'a>(&'a self, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), CoreError>> {
        let r = {
            let mut failing = self.failing_saves.lock();
            if *failing > 0 {
                *failing -= 1;
                Err(CoreError::Kafka {
                    operation: "save checkpoint",
                    source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
                })
            } else {
                self.records.lock().insert(key.to_string(), value.to_vec());
                Ok(())
            }
        };
        Box::pin(async move { r })
    }
}

/// The ledger: an in-memory view over its store.
pub struct Ledger {
    store: Box<dyn LedgerStore>,
    entries: Mutex<HashMap<String, LedgerEntry>>,
    /// Commands whose `done` entry was remembered in memory ([`Ledger::remember`]) and is not
    /// known to be committed: its transaction was not committed yet, or was aborted. Every
    /// other `done` entry was loaded from the topic, so it is committed, and with it (one
    /// transaction) its result.
    unpublished: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("topic", &self.store.topic())
            .field("entries", &self.entries.lock().len())
            .finish()
    }
}

impl Ledger {
    /// A ledger over `store` ([`KafkaLedgerStore`], or [`MemoryLedgerStore`] in tests); call
    /// [`Ledger::load`].
    pub fn with_store(store: impl LedgerStore) -> Self {
        Ledger {
            store: Box::new(store),
            entries: Mutex::new(HashMap::new()),
            unpublished: Mutex::new(HashSet::new()),
        }
    }

    /// The ledger topic.
    pub fn topic(&self) -> &str {
        self.store.topic()
    }

    /// (Re)loads every committed entry. Unparseable values are ignored with a warning (they
    /// can only come from a foreign writer).
    ///
    /// The Kafka store reads up to the topic's *high watermark* as of the call, waiting for
    /// open transactions below it to end, not just to the last stable offset. Replicas share
    /// the ledger: any replica's open result transaction holds the last stable offset back,
    /// and every intent written after that transaction began (by the replica that just lost a
    /// partition, say) would be invisible to a loader that stops there, so the new owner would
    /// re-send instead of reconciling. Waiting is bounded by the open transactions' lifetime
    /// (`transaction.timeout.ms` for one whose producer died).
    pub async fn load(&self) -> Result<usize, CoreError> {
        let raw = self.store.load_all().await?;
        let mut map = HashMap::with_capacity(raw.len());
        for (k, v) in raw {
            match serde_json::from_slice::<LedgerEntry>(&v) {
                Ok(e) => {
                    map.insert(k, e);
                }
                Err(_) => {
                    tracing::warn!(topic = %self.topic(), "Ignored an unreadable ledger record.")
                }
            }
        }
        let n = map.len();
        let mut entries = self.entries.lock();
        *entries = map;
        // Only committed records were read: nothing remembered before survives the reload.
        self.unpublished.lock().clear();
        drop(entries);
        Ok(n)
    }

    /// The entry of `command_id`.
    pub fn get(&self, command_id: &str) -> Option<LedgerEntry> {
        self.entries.lock().get(command_id).cloned()
    }

    /// Durably records an intent; returns once the store acknowledged it.
    pub async fn write_intent(
        &self,
        command_id: &str,
        entry: LedgerEntry,
    ) -> Result<(), CoreError> {
        let bytes = Self::encode(&entry);
        self.store.save(command_id, &bytes).await?;
        self.entries.lock().insert(command_id.to_string(), entry);
        self.unpublished.lock().remove(command_id);
        Ok(())
    }

    /// Remembers a `done` entry in memory (its record goes into the result transaction).
    pub fn remember(&self, command_id: &str, entry: LedgerEntry) {
        self.entries.lock().insert(command_id.to_string(), entry);
        self.unpublished.lock().insert(command_id.to_string());
    }

    /// Whether `command_id`'s `done` entry is one [`Ledger::remember`]ed in memory whose
    /// transaction is not known to be committed (false for an entry loaded from the topic:
    /// that one is committed, and so is its result).
    pub fn is_unpublished(&self, command_id: &str) -> bool {
        self.unpublished.lock().contains(command_id)
    }

    /// The transaction holding the `done` records of `command_ids` committed.
    pub fn published<'a>(&self, command_ids: impl IntoIterator<Item = &'a str>) {
        let mut u = self.unpublished.lock();
        for id in command_ids {
            u.remove(id);
        }
    }

    /// The serialised value of `entry`.
    pub fn encode(entry: &LedgerEntry) -> Vec<u8> {
        serde_json::to_vec(entry).expect("ledger entries serialise")
    }
}

/// No progress for this long while loading fails the load (longer than the default
/// `transaction.timeout.ms` of 120 s, after which the broker aborts a dead producer's
/// transaction and the last stable offset moves on).
#[cfg(test)]
mod tests {
    use super::*;

    fn intent(attempt: u32) -> LedgerEntry {
        LedgerEntry::InFlight {
            position: Position {
                topic: "t".into(),
                partition: 0,
                offset: 7,
            },
            command_type: "CreatePatient".into(),
            attempt,
            baseline: Some(2),
        }
    }

    #[tokio::test]
    async fn memory_store_keeps_intents_across_a_reload() {
        let store = std::sync::Arc::new(MemoryLedgerStore::new());
        let ledger = Ledger::with_store(store.clone());
        ledger.write_intent("c1", intent(1)).await.unwrap();
        assert_eq!(ledger.get("c1"), Some(intent(1)));
        // A new ledger over the same store (a restart) sees the intent.
        let again = Ledger::with_store(store.clone());
        assert_eq!(again.load().await.unwrap(), 1);
        assert_eq!(again.get("c1"), Some(intent(1)));
        // A refused save leaves memory as it was.
        store.fail_next_saves(1);
        assert!(again.write_intent("c1", intent(2)).await.is_err());
        assert_eq!(again.get("c1"), Some(intent(1)));
        again.write_intent("c1", intent(2)).await.unwrap();
        assert_eq!(
            serde_json::from_slice::<LedgerEntry>(&store.record("c1").unwrap()).unwrap(),
            intent(2)
        );
    }
}
