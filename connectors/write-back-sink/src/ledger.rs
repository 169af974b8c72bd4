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

use std::collections::HashMap;

use connector_core::CoreError;
use connector_core::checkpoint::{CheckpointStore, KafkaCheckpointStore};
use connector_core::contracts::CommandResult;
use connector_core::kafka::KafkaConfig;
use parking_lot::Mutex;
use rdkafka::producer::FutureProducer;
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

/// The ledger: an in-memory view over the compacted topic.
pub struct Ledger {
    store: KafkaCheckpointStore,
    entries: Mutex<HashMap<String, LedgerEntry>>,
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
    /// Opens (creating when missing, with `retention` unless zero) the ledger topic;
    /// `producer` writes intent records.
    pub async fn open(
        kafka: &KafkaConfig,
        topic: &str,
        producer: FutureProducer,
        retention: std::time::Duration,
    ) -> Result<Self, CoreError> {
        let retention = (!retention.is_zero()).then_some(retention);
        Ok(Ledger {
            store: KafkaCheckpointStore::open_with_retention(kafka, topic, producer, retention)
                .await?,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// The ledger topic.
    pub fn topic(&self) -> &str {
        self.store.topic()
    }

    /// (Re)loads every committed entry. Unparseable values are ignored with a warning (they
    /// can only come from a foreign writer).
    pub async fn load(&self) -> Result<usize, CoreError> {
        let raw = self.store.load().await?;
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
        *self.entries.lock() = map;
        Ok(n)
    }

    /// The entry of `command_id`.
    pub fn get(&self, command_id: &str) -> Option<LedgerEntry> {
        self.entries.lock().get(command_id).cloned()
    }

    /// Durably records an intent; returns once Kafka acknowledged it.
    pub async fn write_intent(
        &self,
        command_id: &str,
        entry: LedgerEntry,
    ) -> Result<(), CoreError> {
        let bytes = serde_json::to_vec(&entry).expect("ledger entries serialise");
        self.store.save(command_id, &bytes).await?;
        self.entries.lock().insert(command_id.to_string(), entry);
        Ok(())
    }

    /// Remembers a `done` entry in memory (its record goes into the result transaction).
    pub fn remember(&self, command_id: &str, entry: LedgerEntry) {
        self.entries.lock().insert(command_id.to_string(), entry);
    }

    /// The serialised value of `entry`.
    pub fn encode(entry: &LedgerEntry) -> Vec<u8> {
        serde_json::to_vec(entry).expect("ledger entries serialise")
    }
}
