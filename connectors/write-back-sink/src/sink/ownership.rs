//! Who owns which partition, under which epoch, and the work under way for it; the consumer
//! context whose rebalance callbacks keep that up to date; and the hand-over on stop.
//!
//! A partition is handed over quiet: when it is revoked, its commands start no further athena
//! call, and the revocation callback holds the rebalance until the calls under way and a
//! running commit have ended (bounded by `shutdown_grace`). So the next owner's ledger load
//! sees every intent and `done` record of the previous owner, and no write of the previous
//! owner lands after the new owner's read-back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rdkafka::ClientContext;
use rdkafka::consumer::{ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::topic_partition_list::TopicPartitionList;

use super::Tp;

/// (assigned?, partitions) as reported by a rebalance callback.
pub(super) type RebalanceEvent = (bool, Vec<(String, i32)>);

/// Records assignment changes for the loop (callbacks run inside librdkafka's poll) and
/// quiets revoked partitions before they are handed over.
pub(super) struct Ctx {
    pub(super) events: Mutex<Vec<RebalanceEvent>>,
    pub(super) ownership: Arc<Ownership>,
    /// How long a revocation waits for the revoked partitions' work to end.
    pub(super) grace: Duration,
    /// Records this consumer's librdkafka statistics as the connector's.
    pub(super) stats: connector_core::kafka::StatsContext,
}

impl ClientContext for Ctx {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.stats.stats(statistics);
    }
}

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
pub(super) struct Ownership {
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
pub(super) struct Busy<'a> {
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
    /// `tp` is ours from now on, under `epoch`.
    pub(super) fn own(&self, tp: &Tp, epoch: u64) {
        self.state.lock().live.insert(tp.clone(), epoch);
    }

    /// `tps` are no longer ours.
    pub(super) fn revoke(&self, tps: &[Tp]) {
        let mut st = self.state.lock();
        for tp in tps {
            st.live.remove(tp);
        }
    }

    /// Nothing is ours any more; the partitions with work still under way.
    pub(super) fn revoke_all(&self) -> Vec<Tp> {
        let mut st = self.state.lock();
        st.live.clear();
        st.busy.keys().cloned().collect()
    }

    /// Whether `tp` is still ours under `epoch` (not revoked, not re-assigned since).
    pub(super) fn owns(&self, tp: &Tp, epoch: u64) -> bool {
        self.state.lock().live.get(tp) == Some(&epoch)
    }

    /// Starts work on `tp` if it is still owned under `epoch` (atomically with the check, so a
    /// revocation either sees this work or this work sees the revocation).
    pub(super) fn enter(&self, tp: &Tp, epoch: u64) -> Option<Busy<'_>> {
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

    /// Picks what to commit under the ownership lock: `pick` gets an "owned under this
    /// epoch?" check and returns whether it took anything; if so the commit counts as under
    /// way until [`Ownership::end_commit`]. A revocation either waits for this commit or
    /// happened before it, and then `pick` leaves its partitions out (their new owner redoes
    /// them; committing their offsets here could overwrite the new owner's).
    pub(super) fn begin_commit(
        &self,
        pick: impl FnOnce(&dyn Fn(&Tp, u64) -> bool) -> bool,
    ) -> bool {
        let mut st = self.state.lock();
        let taken = pick(&|tp, epoch| st.live.get(tp) == Some(&epoch));
        if taken {
            st.committing = true;
        }
        taken
    }

    /// The commit started by [`Ownership::begin_commit`] has ended.
    pub(super) fn end_commit(&self) {
        self.state.lock().committing = false;
        self.changed.notify_all();
    }

    /// Waits until no work on `tps` and no commit is under way; false on timeout.
    pub(super) fn drain(&self, tps: &[Tp], timeout: Duration) -> bool {
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

/// Dropped when the run loop ends in any way, including when its task is aborted: the
/// consumer (which leaves the group when it is dropped) is kept until the work still under way
/// has stopped, so an abrupt stop hands partitions over as quietly as a rebalance does.
pub(super) struct Handover {
    pub(super) ownership: Arc<Ownership>,
    pub(super) consumer: Option<Arc<StreamConsumer<Ctx>>>,
    pub(super) grace: Duration,
    /// Kept until the consumer is gone (see [`InstanceLease`]).
    pub(super) lease: Option<Arc<InstanceLease>>,
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
        let lease = self.lease.take();
        // Not blocking in drop: the wait runs as a task that owns the consumer.
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline && !ownership.drain(&busy, Duration::ZERO) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                drop(consumer);
                drop(lease);
            });
        }
    }
}

/// The `group.instance.id`s whose consumer is still alive in this process.
static LIVE_INSTANCES: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());

/// A `group.instance.id` in use by a consumer of this process. With static membership a new
/// consumer with the same id replaces the old member at once, without the rebalance whose
/// revocation callback waits for the old owner's work: a sink restarted in this process (by the
/// supervisor) while its predecessor's [`Handover`] still lets athena calls end would start
/// reconciling under them. So `run` acquires the id first and waits, bounded, for the previous
/// holder to let go; the lease is released when its last holder (the run, the hand-over task)
/// drops it, after the consumer.
pub(super) struct InstanceLease {
    id: Option<String>,
}

impl InstanceLease {
    /// Waits (at most `timeout`, then goes ahead with a warning) until no consumer of this
    /// process uses `id`, and takes it. `None`: dynamic membership, nothing to wait for.
    pub(super) async fn acquire(id: Option<String>, timeout: Duration) -> Arc<InstanceLease> {
        let Some(id) = id else {
            return Arc::new(InstanceLease { id: None });
        };
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut live = LIVE_INSTANCES.lock();
                if !live.contains(&id) || Instant::now() >= deadline {
                    if live.contains(&id) {
                        tracing::warn!(
                            "The previous consumer with this group.instance.id is still stopping; joining anyway."
                        );
                    } else {
                        live.push(id.clone());
                    }
                    return Arc::new(InstanceLease { id: Some(id) });
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for InstanceLease {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            let mut live = LIVE_INSTANCES.lock();
            if let Some(i) = live.iter().position(|l| l == id) {
                live.swap_remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        (Arc::from("commands"), p)
    }

    #[tokio::test]
    async fn a_group_instance_id_is_taken_only_after_its_previous_holder_let_go() {
        let id = || Some("lease-test-instance".to_string());
        let first = InstanceLease::acquire(id(), Duration::from_secs(5)).await;
        let held = first.clone();
        let waiter = tokio::spawn(InstanceLease::acquire(id(), Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "the id is still held");
        drop(first);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !waiter.is_finished(),
            "one holder (the hand-over task) still has it"
        );
        drop(held);
        let second = waiter.await.expect("join");
        assert_eq!(second.id.as_deref(), Some("lease-test-instance"));
        // Dynamic membership: nothing to wait for.
        assert!(
            InstanceLease::acquire(None, Duration::ZERO)
                .await
                .id
                .is_none()
        );
    }

    #[test]
    fn work_starts_only_on_a_partition_owned_under_the_same_epoch() {
        let o = Ownership::default();
        assert!(o.enter(&tp(0), 1).is_none(), "never assigned");
        o.own(&tp(0), 1);
        assert!(o.owns(&tp(0), 1));
        assert!(!o.owns(&tp(0), 2), "another epoch is another assignment");
        assert!(o.enter(&tp(0), 2).is_none());
        let busy = o.enter(&tp(0), 1).expect("owned");
        // Re-assigned under a newer epoch: the old epoch's work may not start.
        o.own(&tp(0), 3);
        assert!(!o.owns(&tp(0), 1));
        assert!(o.enter(&tp(0), 1).is_none());
        drop(busy);
        o.revoke(&[tp(0)]);
        assert!(!o.owns(&tp(0), 3));
    }

    #[test]
    fn drain_waits_for_work_on_the_revoked_partitions_only() {
        let o = Arc::new(Ownership::default());
        o.own(&tp(0), 1);
        o.own(&tp(1), 2);
        let busy0 = o.enter(&tp(0), 1).unwrap();
        let _busy1 = o.enter(&tp(1), 2).unwrap();
        o.revoke(&[tp(0)]);
        assert!(
            !o.drain(&[tp(0)], Duration::ZERO),
            "work on p0 is under way"
        );
        let o2 = o.clone();
        let waiter = std::thread::spawn(move || o2.drain(&[tp(0)], Duration::from_secs(30)));
        drop(busy0);
        assert!(waiter.join().unwrap(), "drained once the work ended");
        // p1's work does not hold p0's hand-over.
        assert!(o.drain(&[tp(0)], Duration::ZERO));
        assert_eq!(o.revoke_all(), vec![tp(1)]);
    }

    #[test]
    fn a_commit_holds_the_hand_over_and_skips_partitions_not_owned() {
        let o = Ownership::default();
        o.own(&tp(0), 1);
        o.own(&tp(1), 1);
        o.revoke(&[tp(1)]);
        let mut picked = Vec::new();
        let started = o.begin_commit(|owns| {
            for p in 0..2 {
                if owns(&tp(p), 1) {
                    picked.push(p);
                }
            }
            !picked.is_empty()
        });
        assert!(started);
        assert_eq!(picked, vec![0]);
        assert!(!o.drain(&[tp(1)], Duration::ZERO), "a commit is under way");
        o.end_commit();
        assert!(o.drain(&[tp(1)], Duration::ZERO));
        assert!(
            !o.begin_commit(|_| false),
            "nothing taken, nothing under way"
        );
        assert!(o.drain(&[tp(0)], Duration::ZERO));
    }
}
