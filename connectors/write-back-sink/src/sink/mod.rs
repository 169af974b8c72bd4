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
//! - **No blocking past `max.poll.interval.ms`, bounded memory.** When `max_buffered` commands
//!   or `max_buffered_bytes` bytes are read but not committed, the partitions are paused (and
//!   resumed once both are at half); the loop keeps polling. A decoded command keeps no copy of
//!   its raw message.
//! - **Poison messages** go to the DLQ byte for byte (acknowledged before their offset is
//!   committed) and the partition moves on; a dead letter that cannot be written after bounded
//!   retries stops the sink with its offset uncommitted.
//! - **A partition is handed over quiet.** Replicas share one group; when a partition is
//!   revoked, its commands start no further athena call, and the revocation callback holds the
//!   rebalance until the calls under way and a running commit have ended (bounded by
//!   `shutdown_grace`). So the next owner's ledger load sees every intent and `done` record of
//!   the previous owner, and no write of the previous owner lands after the new owner's
//!   read-back. A commit refused for a stale group generation is aborted and recomputed.

//!
//! # Modules
//! - `ownership`: the consumer context (rebalance callbacks), which partitions are ours under
//!   which epoch, the work under way, the quiet hand-over.
//! - `partitions`: read-but-uncommitted messages, the contiguous committable prefix, the
//!   read-ahead bound.
//! - `worker`: one command's work and one message's dead letter.
//! - `commit`: the result transaction (the seam for connector-core's commit helper).
//! - `run`: the loop tying them together.

mod commit;
mod ownership;
mod partitions;
mod run;
mod worker;

use std::sync::Arc;

pub use run::run;

/// A topic partition.
type Tp = (Arc<str>, i32);
/// A Kafka key within its partition: commands of one key run one at a time, in order.
type KeyId = (Tp, Vec<u8>);
