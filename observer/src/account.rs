//! Accounting: what was received, decoded, and lost, and what each cgroup
//! did in the current interval. Turns the kernel's cumulative counters into
//! per-interval figures.
//!
//! In: attributed task events and map snapshots. Out: the interval's groups
//! and its `Loss`.

use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxHashMap;

use crate::{
    aggregate::{Activity, Aggregator, Group, Loss},
    decode::Event,
};

/// Map snapshots taken at a summary tick (cumulative since load).
#[derive(Debug, Default)]
pub struct KernelCounters {
    pub oncpu: HashMap<(u64, u32), u64>,
    pub loss_by_cgroup_cpu: HashMap<(u64, u32), u64>,
    pub emitted_total: u64,
    pub lost_total: u64,
    /// `--mode count` only: (cgroup, pidns, nr) -> count.
    pub counts: HashMap<(u64, u32, u32), u64>,
    /// Boot-time ns now, for count-mode first/last seen.
    pub now_ts: u64,
}

/// One interval's activity, per cgroup.
pub struct Interval {
    pub groups: FxHashMap<u64, Group>,
    /// On-CPU ns per cgroup and CPU.
    pub oncpu: HashMap<u64, BTreeMap<u32, u64>>,
}

#[derive(Default)]
pub struct Account {
    pub agg: Aggregator,
    /// `--mode count`: task events are only the lifecycle's, counted
    /// without per-task state.
    pub count_mode: bool,
    received: u64,
    received_total: u64,
    prev_emitted: u64,
    prev_lost: u64,
    prev_loss: HashMap<(u64, u32), u64>,
    /// Lost records since the start, per CPU and per cgroup: the final
    /// account's, kept after a cgroup is forgotten.
    lost_by_cpu: BTreeMap<u32, u64>,
    lost_by_cgroup: BTreeMap<u64, u64>,
    pub decode_errors: u64,
    /// Records read but not handed on (the end of a final drain that ran
    /// out of time), since the start.
    pub dropped_total: u64,
}

impl Account {
    pub fn new(count_mode: bool) -> Self {
        Account {
            count_mode,
            ..Account::default()
        }
    }

    /// A record read from the ring buffer.
    pub fn received(&mut self) {
        self.received += 1;
    }

    /// A record that did not decode.
    pub fn decode_error(&mut self) {
        self.decode_errors += 1;
    }

    /// A shown task event.
    pub fn task(&mut self, ev: &Event) {
        let what = match ev {
            Event::Syscall(r) => Activity::Syscall(r.nr),
            // A new thread joins its parent's thread group (same tgid).
            Event::Fork(f) if f.child_pid == f.header.pid => Activity::Thread,
            Event::Fork(_) => Activity::Fork,
            Event::Exec(_) => Activity::Exec,
            Event::Exit(_) => Activity::Exit,
            Event::SyscallExit(_)
            | Event::Task(_)
            | Event::TaskGone(_)
            | Event::CgroupMkdir(_)
            | Event::CgroupRmdir(_)
            | Event::Enforced(_)
            | Event::Privilege(_) => return,
        };
        if let Some(h) = ev.header() {
            if self.count_mode {
                self.agg.add_lifecycle(h, what);
            } else {
                self.agg.add(h, what);
            }
        }
    }

    /// Ends the interval: its groups (with `--mode count`'s kernel counts
    /// added when given) and on-CPU time.
    pub fn interval(&mut self, k: &KernelCounters, count_mode: bool) -> Interval {
        if count_mode {
            self.agg.add_counts(&k.counts, k.now_ts);
        }
        let groups = self.agg.take();
        let oncpu = self.agg.oncpu_deltas(&k.oncpu);
        Interval { groups, oncpu }
    }

    /// The interval's loss account; starts the next interval's.
    pub fn loss(&mut self, k: &KernelCounters) -> Loss {
        let mut loss = Loss {
            lost: k.lost_total.saturating_sub(self.prev_lost),
            lost_total: k.lost_total,
            emitted: k.emitted_total.saturating_sub(self.prev_emitted),
            emitted_total: k.emitted_total,
            received: self.received,
            received_total: self.received_total + self.received,
            dropped_by_daemon: self.dropped_total,
            ..Default::default()
        };
        self.prev_lost = k.lost_total;
        self.prev_emitted = k.emitted_total;
        self.received_total += self.received;
        self.received = 0;
        for (&(cg, cpu), &n) in &k.loss_by_cgroup_cpu {
            let prev = self.prev_loss.insert((cg, cpu), n).unwrap_or(0);
            let d = n.saturating_sub(prev);
            if d > 0 {
                *loss.by_cpu.entry(cpu).or_default() += d;
                *loss.by_cgroup.entry(cg).or_default() += d;
                *self.lost_by_cpu.entry(cpu).or_default() += d;
                *self.lost_by_cgroup.entry(cg).or_default() += d;
            }
        }
        loss
    }

    /// The final account: everything since the start (`lost`, `by_cpu`,
    /// `by_cgroup` alike), after the last interval's.
    pub fn final_loss(&mut self, k: &KernelCounters) -> Loss {
        let mut loss = self.loss(k);
        loss.lost = loss.lost_total;
        loss.by_cpu = self.lost_by_cpu.clone();
        loss.by_cgroup = self.lost_by_cgroup.clone();
        loss
    }

    /// Forgets a removed cgroup.
    pub fn forget(&mut self, cg: u64) {
        self.agg.forget(cg);
        self.prev_loss.retain(|k, _| k.0 != cg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cumulative kernel counters become per-interval loss, per CPU and per
    /// cgroup; what the daemon received adds up across intervals.
    #[test]
    fn loss_is_per_interval() {
        let mut a = Account::default();
        for _ in 0..5 {
            a.received();
        }
        let mut k = KernelCounters {
            emitted_total: 5,
            lost_total: 2,
            loss_by_cgroup_cpu: HashMap::from([((42, 1), 2)]),
            ..Default::default()
        };
        let l = a.loss(&k);
        assert_eq!((l.lost, l.received, l.emitted), (2, 5, 5));
        assert_eq!(l.by_cpu, BTreeMap::from([(1, 2)]));
        a.received();
        k.emitted_total = 6;
        k.lost_total = 5;
        k.loss_by_cgroup_cpu.insert((42, 1), 5);
        let l = a.loss(&k);
        assert_eq!(
            (l.lost, l.lost_total, l.received, l.received_total),
            (3, 5, 1, 6)
        );
        assert_eq!(l.by_cgroup, BTreeMap::from([(42, 3)]));
        // The final account covers the whole run, per cgroup too, even
        // after the interval that saw the loss (and the cgroup) is gone.
        a.forget(42);
        // (the daemon removes the forgotten cgroup's kernel entry too)
        k.loss_by_cgroup_cpu.clear();
        let f = a.final_loss(&k);
        assert_eq!((f.lost, f.lost_total), (5, 5));
        assert_eq!(f.by_cgroup, BTreeMap::from([(42, 5)]));
        assert_eq!(f.by_cpu, BTreeMap::from([(1, 5)]));
    }
}
