//! The kernel side's rare conditions, told to the daemon with `aya-log`
//! (shown under `--verbose`). Never on the per-event path: each is behind a
//! failure or an unusual branch, and is logged only at its 1st, 2nd, 4th,
//! 8th… occurrence per CPU, so a condition that persists (a full table)
//! costs a counter increment, not a log record per event.

use aya_log_ebpf::{info, warn};
use observer_common::{STAT_RARE_COUNTS_FULL, STAT_RARE_DEEP_PIDNS, STAT_RARE_IDENTITY};

use crate::maps::stat_add;

#[inline(always)]
fn due(slot: u32) -> Option<u64> {
    let n = stat_add(slot, 1);
    n.is_power_of_two().then_some(n)
}

/// `--mode count`'s collision table had no room for a (cgroup, pidns, nr).
#[inline(always)]
pub fn counts_full(cgroup: u64, nr: i64) {
    if let Some(n) = due(STAT_RARE_COUNTS_FULL) {
        warn!(
            0,
            "count table full ({} times on this CPU): a call of {} in cgroup {} counted as lost",
            n,
            nr,
            cgroup
        );
    }
}

/// A task in a PID namespace deeper than the levels read with direct loads:
/// read with `bpf_probe_read_kernel` instead.
#[inline(always)]
pub fn deep_pidns(level: u32) {
    if let Some(n) = due(STAT_RARE_DEEP_PIDNS) {
        info!(
            0,
            "PID namespace level {} ({} times on this CPU): beyond the unrolled levels, read with bpf_probe_read_kernel",
            level,
            n
        );
    }
}

/// The identity map refused an update: the task's identity is sent again
/// with its next record.
#[inline(always)]
pub fn identity_not_kept(tid: u32, err: i32) {
    if let Some(n) = due(STAT_RARE_IDENTITY) {
        warn!(
            0,
            "identity of tid {} not kept ({} times on this CPU): error {}; sent again next time",
            tid,
            n,
            err
        );
    }
}
