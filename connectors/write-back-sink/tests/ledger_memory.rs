//! The ledger's memory per retained command, measured: N realistic entries (a `done` entry for
//! most commands, an `in_flight` intent for some) are loaded through [`Ledger::load`] into the
//! in-memory view, and a counting global allocator reports what that view keeps per entry and
//! what a load needs at its peak (the raw records read from the topic plus the parsed view, as
//! the Kafka loader has both at once). docs/connectors/write-back-sink.md quotes the figures and
//! the bound asserted here ([`RETAINED_BOUND`], [`PEAK_BOUND`]). Own test binary: the
//! allocator counts the whole process, so nothing else may run in it.

use std::alloc::System;
use std::collections::BTreeMap;
use std::sync::Arc;

use athena_contracts::{CommandResult, CommandStatus, TimestampMillis};
use cap::Cap;
use write_back_sink::ledger::{Ledger, LedgerEntry, LedgerStore, MemoryLedgerStore, Position};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

/// Entries loaded: enough that per-entry figures do not depend on hash-table growth steps
/// (the table is sized for all of them at once).
const N: usize = 100_000;
/// Documented bound (docs/connectors/write-back-sink.md): bytes the in-memory ledger keeps per
/// retained command.
const RETAINED_BOUND: usize = 1536;
/// Documented bound: bytes per retained command while the ledger loads (raw records and the
/// parsed view at once).
const PEAK_BOUND: usize = 2048;

/// A command id as producers choose them (a UUID).
fn command_id(i: usize) -> String {
    format!("{:08x}-7c1e-4f0a-9b2d-{:012x}", i, i * 7919)
}

/// What the sink writes for command `i`: one in ten an intent (a non-idempotent command whose
/// athena call was under way), the rest a published result with typical athena ids.
fn entry(i: usize) -> LedgerEntry {
    let position = Position {
        topic: "athena.cmd.appointments.v1".into(),
        partition: (i % 6) as i32,
        offset: 1_000_000 + i as i64,
    };
    if i.is_multiple_of(10) {
        return LedgerEntry::InFlight {
            position,
            command_type: "BookAppointment".into(),
            attempt: 1,
            baseline: Some(0),
        };
    }
    let athena_ids: BTreeMap<String, String> = [
        ("appointment_id".to_string(), (1_200_000 + i).to_string()),
        ("patient_id".to_string(), (40_000 + i % 5_000).to_string()),
    ]
    .into();
    LedgerEntry::Done {
        position,
        result: CommandResult {
            command_id: command_id(i),
            command_type: "BookAppointment".into(),
            practice_id: "195900".into(),
            correlation_id: Some(format!("order-{i}")),
            status: CommandStatus::Applied,
            athena_ids,
            error: None,
            attempts: 1,
            received_at: TimestampMillis(1_765_000_000_000 + i as i64),
            completed_at: TimestampMillis(1_765_000_000_250 + i as i64),
        },
    }
}

#[tokio::test(flavor = "current_thread")]
async fn ledger_memory_per_retained_command() {
    let store = Arc::new(MemoryLedgerStore::new());
    let mut record_bytes = 0usize;
    for i in 0..N {
        let bytes = Ledger::encode(&entry(i));
        record_bytes += command_id(i).len() + bytes.len();
        store.save(&command_id(i), &bytes).await.expect("save");
    }
    let ledger = Ledger::with_store(store.clone());

    let before = ALLOC.allocated();
    let peak_before = ALLOC.max_allocated();
    let loaded = ledger.load().await.expect("load");
    let after = ALLOC.allocated();
    let peak_after = ALLOC.max_allocated();
    assert_eq!(loaded, N, "every entry loaded");
    assert_eq!(
        ledger.get(&command_id(7)),
        Some(entry(7)),
        "loaded as written"
    );

    let retained = (after - before) / N;
    // The peak of the load is known only if it is higher than anything before it.
    assert!(
        peak_after > peak_before,
        "the load's peak ({peak_after}) is not above the earlier peak ({peak_before}): measure it alone"
    );
    let peak = (peak_after - before) / N;
    println!(
        "ledger memory: {N} entries, {} bytes of records on the topic per entry, {retained} bytes \
         kept per entry, {peak} bytes per entry at the peak of a load",
        record_bytes / N
    );
    assert!(
        retained <= RETAINED_BOUND,
        "{retained} bytes per retained command, documented bound {RETAINED_BOUND}"
    );
    assert!(
        peak <= PEAK_BOUND,
        "{peak} bytes per command while loading, documented bound {PEAK_BOUND}"
    );
    drop(ledger);
}
