//! Read-but-uncommitted commands per partition, the contiguous prefix that may be committed,
//! and the read-ahead bound (messages and bytes).
//!
//! A result is committed only with the offset after it, and an offset only once every earlier
//! offset of its partition is finished: so a committed offset always means "every command
//! before it has its result on Kafka".

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::Tp;
use super::commit::OutRecord;

/// One read message: its size while it waits (payload until it is finished, then its
/// records), and its records once finished.
#[derive(Debug)]
enum Slot {
    Pending {
        bytes: usize,
    },
    Finished {
        bytes: usize,
        records: Vec<OutRecord>,
    },
}

impl Slot {
    fn bytes(&self) -> usize {
        match self {
            Slot::Pending { bytes } | Slot::Finished { bytes, .. } => *bytes,
        }
    }
}

/// One partition's uncommitted messages, by offset, under the epoch of its assignment.
#[derive(Debug, Default)]
struct PartState {
    epoch: u64,
    slots: BTreeMap<i64, Slot>,
}

/// What one commit takes: per partition (partition, epoch, last offset), and the records.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) taken: Vec<(Tp, u64, i64)>,
    pub(super) records: Vec<OutRecord>,
}

/// Every owned partition's uncommitted messages, and how much they hold.
#[derive(Debug, Default)]
pub(super) struct Partitions {
    parts: HashMap<Tp, PartState>,
    epoch: u64,
    buffered: usize,
    buffered_bytes: usize,
}

impl Partitions {
    /// Messages read and not yet committed.
    pub(super) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Bytes those messages hold (payloads until finished, then their result records).
    pub(super) fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Starts `tp` afresh under a new epoch (an assignment); returns the epoch.
    pub(super) fn assign(&mut self, tp: &Tp) -> u64 {
        self.drop_partition(tp);
        self.epoch += 1;
        self.parts.insert(
            tp.clone(),
            PartState {
                epoch: self.epoch,
                slots: BTreeMap::new(),
            },
        );
        self.epoch
    }

    /// The epoch of `tp` when it is assigned.
    pub(super) fn epoch_of(&self, tp: &Tp) -> Option<u64> {
        self.parts.get(tp).map(|p| p.epoch)
    }

    /// Forgets `tp` and what was read from it.
    pub(super) fn drop_partition(&mut self, tp: &Tp) {
        if let Some(p) = self.parts.remove(tp) {
            self.buffered -= p.slots.len();
            self.buffered_bytes -= p.slots.values().map(Slot::bytes).sum::<usize>();
        }
    }

    /// Records message `offset` (of `bytes`) as read; `None` when it is already being handled
    /// (re-fetched after a pause) or `tp` is not assigned.
    pub(super) fn admit(&mut self, tp: &Tp, offset: i64, bytes: usize) -> Option<u64> {
        let p = self.parts.get_mut(tp)?;
        if p.slots.contains_key(&offset) {
            return None;
        }
        p.slots.insert(offset, Slot::Pending { bytes });
        self.buffered += 1;
        self.buffered_bytes += bytes;
        Some(p.epoch)
    }

    /// Marks `offset` finished with its `records`, if `tp` is still under `epoch`.
    pub(super) fn finish(&mut self, tp: &Tp, epoch: u64, offset: i64, records: Vec<OutRecord>) {
        if let Some(p) = self.parts.get_mut(tp)
            && p.epoch == epoch
            && let Some(slot) = p.slots.get_mut(&offset)
        {
            let bytes = records.iter().map(OutRecord::size).sum();
            self.buffered_bytes = self.buffered_bytes - slot.bytes() + bytes;
            *slot = Slot::Finished { bytes, records };
        }
    }

    /// The finished contiguous prefix of every partition `owned` says is still ours under its
    /// epoch. The slots stay in place until [`Partitions::committed`].
    pub(super) fn committable(&self, owned: &dyn Fn(&Tp, u64) -> bool) -> Batch {
        let mut batch = Batch::default();
        for (tp, p) in &self.parts {
            if !owned(tp, p.epoch) {
                continue;
            }
            let mut last = None;
            for (off, slot) in &p.slots {
                match slot {
                    Slot::Finished { records, .. } => {
                        batch.records.extend(records.iter().cloned());
                        last = Some(*off);
                    }
                    Slot::Pending { .. } => break,
                }
            }
            if let Some(off) = last {
                batch.taken.push((tp.clone(), p.epoch, off));
            }
        }
        batch
    }

    /// Forgets what a successful commit took (of partitions still under the same epoch).
    pub(super) fn committed(&mut self, taken: &[(Tp, u64, i64)]) {
        for (tp, epoch, off) in taken {
            if let Some(p) = self.parts.get_mut(tp)
                && p.epoch == *epoch
            {
                let rest = p.slots.split_off(&(off + 1));
                self.buffered -= p.slots.len();
                self.buffered_bytes -= p.slots.values().map(Slot::bytes).sum::<usize>();
                p.slots = rest;
            }
        }
    }
}

/// The read-ahead bound: pause at `max_buffered` messages or `max_buffered_bytes` bytes, resume
/// once both are at half (hysteresis, so a busy sink does not flap).
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadAhead {
    pub(super) max_buffered: usize,
    pub(super) max_buffered_bytes: usize,
}

impl ReadAhead {
    /// Whether reading must pause.
    pub(super) fn full(&self, p: &Partitions) -> bool {
        p.buffered >= self.max_buffered || p.buffered_bytes >= self.max_buffered_bytes
    }

    /// Whether paused partitions may resume.
    pub(super) fn drained(&self, p: &Partitions) -> bool {
        p.buffered <= self.max_buffered / 2 && p.buffered_bytes <= self.max_buffered_bytes / 2
    }
}

/// The partition of a message.
pub(super) fn tp_of(topic: &str, partition: i32) -> Tp {
    (Arc::from(topic), partition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        tp_of("commands", p)
    }

    fn rec(n: usize) -> Vec<OutRecord> {
        vec![OutRecord {
            topic: String::new(),
            key: Vec::new(),
            payload: vec![0; n],
            headers: None,
        }]
    }

    fn all(_: &Tp, _: u64) -> bool {
        true
    }

    #[test]
    fn only_the_finished_contiguous_prefix_is_committable() {
        let mut ps = Partitions::default();
        let e = ps.assign(&tp(0));
        for off in 10..14 {
            assert_eq!(ps.admit(&tp(0), off, 100), Some(e));
        }
        assert_eq!(ps.admit(&tp(0), 11, 100), None, "re-fetched after a pause");
        assert_eq!(ps.admit(&tp(1), 0, 100), None, "not assigned");
        ps.finish(&tp(0), e, 10, rec(1));
        ps.finish(&tp(0), e, 12, rec(1));
        ps.finish(&tp(0), e, 13, rec(1));
        let b = ps.committable(&all);
        assert_eq!(b.taken, vec![(tp(0), e, 10)], "11 is still running");
        assert_eq!(b.records.len(), 1);
        ps.committed(&b.taken);
        assert_eq!(ps.buffered(), 3);
        ps.finish(&tp(0), e, 11, rec(1));
        let b = ps.committable(&all);
        assert_eq!(b.taken, vec![(tp(0), e, 13)]);
        assert_eq!(b.records.len(), 3);
        ps.committed(&b.taken);
        assert_eq!((ps.buffered(), ps.buffered_bytes()), (0, 0));
        assert!(ps.committable(&all).taken.is_empty());
    }

    #[test]
    fn a_new_epoch_ignores_work_of_the_old_one() {
        let mut ps = Partitions::default();
        let old = ps.assign(&tp(0));
        ps.admit(&tp(0), 5, 10);
        let new = ps.assign(&tp(0));
        assert_ne!(old, new);
        assert_eq!(
            (ps.buffered(), ps.buffered_bytes()),
            (0, 0),
            "re-assignment starts afresh"
        );
        ps.admit(&tp(0), 5, 10);
        ps.finish(&tp(0), old, 5, rec(1));
        assert!(
            ps.committable(&all).taken.is_empty(),
            "late result of the old epoch"
        );
        ps.finish(&tp(0), new, 5, rec(1));
        let b = ps.committable(&all);
        assert_eq!(b.taken, vec![(tp(0), new, 5)]);
        // Not ours any more under that epoch: left out.
        assert!(ps.committable(&|_, e| e != new).taken.is_empty());
        // A commit of the old epoch does not remove the new epoch's slots.
        ps.committed(&[(tp(0), old, 5)]);
        assert_eq!(ps.buffered(), 1);
        ps.drop_partition(&tp(0));
        assert_eq!((ps.buffered(), ps.buffered_bytes()), (0, 0));
        assert_eq!(ps.epoch_of(&tp(0)), None);
    }

    #[test]
    fn the_read_ahead_is_bounded_in_bytes_as_well_as_messages() {
        let bound = ReadAhead {
            max_buffered: 100,
            max_buffered_bytes: 3_000_000,
        };
        let mut ps = Partitions::default();
        let e = ps.assign(&tp(0));
        // Three 1 MB documents fill the byte bound long before the message bound.
        for off in 0..3 {
            assert!(!bound.full(&ps));
            ps.admit(&tp(0), off, 1_000_000);
        }
        assert!(bound.full(&ps));
        assert!(!bound.drained(&ps));
        // Finished commands hold only their (small) result records, not the document.
        ps.finish(&tp(0), e, 0, rec(200));
        ps.finish(&tp(0), e, 1, rec(200));
        assert_eq!(ps.buffered_bytes(), 1_000_400);
        assert!(!bound.full(&ps));
        assert!(bound.drained(&ps));
        // And the message bound still holds on its own.
        let few = ReadAhead {
            max_buffered: 3,
            max_buffered_bytes: usize::MAX,
        };
        assert!(few.full(&ps));
        let b = ps.committable(&all);
        ps.committed(&b.taken);
        assert!(few.drained(&ps));
        assert_eq!(ps.buffered_bytes(), 1_000_000);
    }
}
