//! Per-interval grouping: for each cgroup active in the interval, what it ran,
//! in which namespaces, and how much CPU it had. Pure: the daemon feeds it
//! decoded events and map snapshots; tests feed it the same.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use observer_common::Header;
use rustc_hash::FxHashMap;
use serde::Serialize;

/// One cgroup's activity in one interval.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub syscalls: FxHashMap<i64, u64>,
    pub total: u64,
    pub pids: BTreeSet<u32>,
    /// Host PID -> the PID the task has in its own namespace.
    pub ns_pids: BTreeMap<u32, u32>,
    pub pidns: Option<u32>,
    /// Every PID namespace seen in the cgroup (a container's tasks share
    /// one; the runtime's helpers briefly sit in the host's).
    pub pidns_seen: BTreeSet<u32>,
    pub mntns: Option<u32>,
    pub utsns: Option<u32>,
    pub netns: Option<u32>,
    pub first_seen: u64,
    pub last_seen: u64,
    pub execs: u64,
    /// New processes.
    pub forks: u64,
    /// New threads of existing processes.
    pub threads: u64,
    pub exits: u64,
}

impl Group {
    fn seen(&mut self, h: &Header) {
        // Runs of events from one process are the common case.
        if self.pids.last() != Some(&h.pid) {
            self.pids.insert(h.pid);
            self.ns_pids.insert(h.pid, h.ns_pid);
        }
        if self.pidns != Some(h.pidns) {
            self.pidns = Some(h.pidns);
            self.pidns_seen.insert(h.pidns);
        }
        self.mntns = Some(h.mntns);
        self.utsns = Some(h.utsns);
        self.netns = Some(h.netns);
        if self.first_seen == 0 || h.ts < self.first_seen {
            self.first_seen = h.ts;
        }
        self.last_seen = self.last_seen.max(h.ts);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    Syscall(i64),
    Fork,
    Thread,
    Exec,
    Exit,
}

/// Accumulates the current interval.
#[derive(Debug, Default)]
pub struct Aggregator {
    pub groups: FxHashMap<u64, Group>,
    /// Cumulative per-(cgroup, cpu) counters from the kernel maps, to turn
    /// them into per-interval deltas.
    prev_oncpu: HashMap<(u64, u32), u64>,
    prev_counts: HashMap<(u64, u32, u32), u64>,
}

impl Aggregator {
    pub fn add(&mut self, h: &Header, what: Activity) {
        let g = self.groups.entry(h.cgroup_id).or_default();
        g.seen(h);
        match what {
            Activity::Syscall(nr) => {
                *g.syscalls.entry(nr).or_default() += 1;
                g.total += 1;
            }
            Activity::Fork => g.forks += 1,
            Activity::Thread => g.threads += 1,
            Activity::Exec => g.execs += 1,
            Activity::Exit => g.exits += 1,
        }
    }

    /// `--mode count`'s lifecycle events: counted, without the per-task
    /// state (PIDs, namespaces) count mode does not keep.
    pub fn add_lifecycle(&mut self, h: &Header, what: Activity) {
        let g = self.groups.entry(h.cgroup_id).or_default();
        match what {
            Activity::Fork => g.forks += 1,
            Activity::Thread => g.threads += 1,
            Activity::Exec => g.execs += 1,
            Activity::Exit => g.exits += 1,
            Activity::Syscall(_) => return,
        }
        if g.first_seen == 0 || h.ts < g.first_seen {
            g.first_seen = h.ts;
        }
        g.last_seen = g.last_seen.max(h.ts);
    }

    /// `--mode count`: cumulative counts per (cgroup, pidns, nr) from the
    /// kernel map, summed over CPUs; the interval's deltas are added.
    pub fn add_counts(&mut self, cumulative: &HashMap<(u64, u32, u32), u64>, now_ts: u64) {
        for (&(cgroup, pidns, nr), &total) in cumulative {
            let prev = self
                .prev_counts
                .insert((cgroup, pidns, nr), total)
                .unwrap_or(0);
            let delta = total.saturating_sub(prev);
            if delta == 0 {
                continue;
            }
            let g = self.groups.entry(cgroup).or_default();
            *g.syscalls
                .entry(crate::syscalls::from_count_key(nr))
                .or_default() += delta;
            g.total += delta;
            g.pidns = Some(pidns);
            g.pidns_seen.insert(pidns);
            if g.first_seen == 0 {
                g.first_seen = now_ts;
            }
            g.last_seen = now_ts;
        }
    }

    /// Cumulative on-CPU ns per (cgroup, cpu) -> this interval's, per cgroup.
    pub fn oncpu_deltas(
        &mut self,
        cumulative: &HashMap<(u64, u32), u64>,
    ) -> HashMap<u64, BTreeMap<u32, u64>> {
        let mut out: HashMap<u64, BTreeMap<u32, u64>> = HashMap::new();
        for (&(cgroup, cpu), &ns) in cumulative {
            let prev = self.prev_oncpu.insert((cgroup, cpu), ns).unwrap_or(0);
            let d = ns.saturating_sub(prev);
            if d > 0 {
                out.entry(cgroup).or_default().insert(cpu, d);
            }
        }
        out
    }

    /// Forget a removed cgroup's cumulative counters.
    pub fn forget(&mut self, cgroup: u64) {
        self.prev_oncpu.retain(|k, _| k.0 != cgroup);
        self.prev_counts.retain(|k, _| k.0 != cgroup);
    }

    pub fn take(&mut self) -> FxHashMap<u64, Group> {
        std::mem::take(&mut self.groups)
    }
}

/// The `syscalls` object of a summary entry: name -> count, largest first.
/// Compat calls are apart, as `name (ia32)` (`crate::syscalls::label`).
pub fn named_counts(g: &Group) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = g
        .syscalls
        .iter()
        .map(|(&nr, &n)| (crate::syscalls::label(nr), n))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Loss accounting for one interval.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Loss {
    /// Records lost to a full ring buffer in this interval.
    pub lost: u64,
    /// Since the start.
    pub lost_total: u64,
    /// Records the kernel side emitted in this interval, and since the start.
    pub emitted: u64,
    pub emitted_total: u64,
    /// Records received by the daemon in this interval, and since the start.
    pub received: u64,
    pub received_total: u64,
    /// Lines the daemon itself dropped since the start, because the output
    /// did not take them (a stalled pipe or disk: the reader never waits
    /// for the output, so that the ring buffer keeps being drained).
    pub dropped_by_daemon: u64,
    /// Lost in this interval, per CPU and per cgroup.
    pub by_cpu: BTreeMap<u32, u64>,
    pub by_cgroup: BTreeMap<u64, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(cgroup: u64, pid: u32, ts: u64) -> Header {
        Header {
            cgroup_id: cgroup,
            pid,
            tid: pid,
            ts,
            pidns: 10,
            mntns: 11,
            utsns: 12,
            netns: 13,
            ..Default::default()
        }
    }

    #[test]
    fn groups_by_cgroup_and_counts_by_syscall() {
        let mut a = Aggregator::default();
        for i in 0..1000 {
            a.add(&hdr(7, 100, 1000 + i), Activity::Syscall(110));
        }
        a.add(&hdr(7, 101, 5000), Activity::Syscall(0));
        a.add(&hdr(8, 200, 3000), Activity::Exec);
        let g = a.take();
        assert_eq!(g.len(), 2);
        let c7 = &g[&7];
        assert_eq!(c7.total, 1001);
        assert_eq!(c7.syscalls[&110], 1000);
        assert_eq!(c7.pids.len(), 2);
        assert_eq!((c7.first_seen, c7.last_seen), (1000, 5000));
        assert_eq!(c7.pidns, Some(10));
        assert_eq!(g[&8].execs, 1);
        assert_eq!(g[&8].total, 0);
        assert!(a.take().is_empty(), "take starts a new interval");
    }

    #[test]
    fn turns_cumulative_kernel_counters_into_deltas() {
        let mut a = Aggregator::default();
        let mut counts = HashMap::from([((7, 10, 110), 500u64)]);
        a.add_counts(&counts, 1);
        counts.insert((7, 10, 110), 800);
        counts.insert((9, 20, 0), 5);
        let first = a.take();
        assert_eq!(first[&7].total, 500);
        a.add_counts(&counts, 2);
        let second = a.take();
        assert_eq!(second[&7].syscalls[&110], 300);
        assert_eq!(second[&9].total, 5);
        let mut oncpu = HashMap::from([((7, 0), 1_000u64), ((7, 1), 50)]);
        assert_eq!(a.oncpu_deltas(&oncpu)[&7][&0], 1_000);
        oncpu.insert((7, 0), 1_600);
        let d = a.oncpu_deltas(&oncpu);
        assert_eq!(d[&7].get(&0), Some(&600));
        assert_eq!(d[&7].get(&1), None, "no change, no entry");
    }

    #[test]
    fn names_syscalls_largest_first() {
        let mut a = Aggregator::default();
        for _ in 0..3 {
            a.add(&hdr(1, 1, 1), Activity::Syscall(39));
        }
        a.add(&hdr(1, 1, 1), Activity::Syscall(99_999));
        let g = a.take();
        let named = named_counts(&g[&1]);
        assert_eq!(named[0].1, 3);
        assert_eq!(named[1], ("99999".to_owned(), 1));
    }
}
