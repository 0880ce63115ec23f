//! Who a task is: its cgroup, namespaces and both PID views, read straight
//! from `struct task_struct`.
//!
//! Every pointer here is BTF-typed (from `bpf_get_current_task_btf()` or a
//! `tp_btf` argument), so plain loads are allowed and become fault-tolerant
//! probe loads (a NULL `nsproxy` on an exiting task reads as 0). The offsets
//! come from the running kernel's BTF through `OFFSETS` in `.rodata`; the
//! verifier sees them as constants, which it requires for loads through a
//! BTF pointer. This costs a few ns for the whole chain, where
//! `bpf_probe_read_kernel` per field costs ~170 ns.

use aya_ebpf::helpers::{
    bpf_get_current_task_btf, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
};
use observer_common::{Header, COMM_LEN};

use crate::maps::{ro, OFFSETS};

pub type Task = *const u8;

#[inline(always)]
pub fn current() -> Task {
    unsafe { bpf_get_current_task_btf() as Task }
}

/// Loads a field at a BTF offset.
#[inline(always)]
pub unsafe fn ld<T: Copy>(base: *const u8, off: u32) -> T {
    unsafe { core::ptr::read_volatile(base.add(off as usize) as *const T) }
}

/// cgroup v2 ID: `task->cgroups->dfl_cgrp->kn->id`, the same value as
/// `bpf_get_current_cgroup_id()` (the unified hierarchy's, on hybrid hosts)
/// but for any task and without the helper's RCU round trip.
#[inline(always)]
pub fn cgroup_id(task: Task) -> u64 {
    let o = &OFFSETS;
    unsafe {
        let cset: *const u8 = ld(task, ro(&o.task_cgroups));
        let cgrp: *const u8 = ld(cset, ro(&o.css_set_dfl_cgrp));
        cgroup_kn_id(cgrp)
    }
}

#[inline(always)]
pub fn cgroup_kn_id(cgrp: *const u8) -> u64 {
    let o = &OFFSETS;
    unsafe {
        let kn: *const u8 = ld(cgrp, ro(&o.cgroup_kn));
        ld(kn, ro(&o.kernfs_node_id))
    }
}

/// `pid->numbers[level]`: (nr, ns). The verifier needs a constant offset into
/// the array, so each level is its own branch with its own constant.
#[inline(always)]
fn upid(pid: *const u8, level: u32) -> (u32, *const u8) {
    macro_rules! at {
        ($l:literal) => {{
            let o = &OFFSETS;
            let base = ro(&o.pid_numbers) + $l * ro(&o.upid_size);
            unsafe {
                (
                    ld::<u32>(pid, base + ro(&o.upid_nr)),
                    ld::<*const u8>(pid, base + ro(&o.upid_ns)),
                )
            }
        }};
    }
    match level {
        0 => at!(0),
        1 => at!(1),
        2 => at!(2),
        3 => at!(3),
        4 => at!(4),
        5 => at!(5),
        6 => at!(6),
        7 => at!(7),
        _ => (0, core::ptr::null()),
    }
}

/// PID-namespace views of a task: (ns_tid, pidns inode, level).
#[inline(always)]
fn thread_view(task: Task) -> (u32, u32, u32) {
    let o = &OFFSETS;
    unsafe {
        let pid: *const u8 = ld(task, ro(&o.task_thread_pid));
        let level: u32 = ld(pid, ro(&o.pid_level));
        let (nr, ns) = upid(pid, level);
        let inum = if ns.is_null() {
            0
        } else {
            ld::<u32>(ns, ro(&o.pidns_inum))
        };
        (nr, inum, level)
    }
}

/// The thread-group leader's PID in the task's own PID namespace.
#[inline(always)]
fn leader_ns_pid(task: Task, level: u32) -> u32 {
    let o = &OFFSETS;
    unsafe {
        let leader: Task = ld(task, ro(&o.task_group_leader));
        let pid: *const u8 = ld(leader, ro(&o.task_thread_pid));
        upid(pid, level).0
    }
}

#[inline(always)]
fn ns_inum(nsproxy: *const u8, field: u32, inum: u32) -> u32 {
    unsafe {
        let ns: *const u8 = ld(nsproxy, field);
        if ns.is_null() {
            0
        } else {
            ld(ns, inum)
        }
    }
}

/// The task's UTS namespace (for the nodename), or NULL.
#[inline(always)]
pub fn uts_ns(task: Task) -> *const u8 {
    let o = &OFFSETS;
    unsafe {
        let nsproxy: *const u8 = ld(task, ro(&o.task_nsproxy));
        if nsproxy.is_null() {
            return core::ptr::null();
        }
        ld(nsproxy, ro(&o.nsproxy_uts))
    }
}

/// Both PID views of a task: (pid, tid, ns_pid, ns_tid).
#[inline(always)]
pub fn pid_views(task: Task) -> (u32, u32, u32, u32) {
    let o = &OFFSETS;
    let (ns_tid, _, level) = thread_view(task);
    unsafe {
        (
            ld(task, ro(&o.task_tgid)),
            ld(task, ro(&o.task_pid)),
            leader_ns_pid(task, level),
            ns_tid,
        )
    }
}

/// Fills the whole header for `task`, which is the current task or a task the
/// tracepoint hands over.
#[inline(always)]
pub fn fill_header(h: &mut Header, kind: u32, task: Task, cgroup_id: u64) {
    let o = &OFFSETS;
    h.kind = kind;
    h.cpu = unsafe { bpf_get_smp_processor_id() };
    h.ts = unsafe { bpf_ktime_get_boot_ns() };
    h.cgroup_id = cgroup_id;
    let (ns_tid, pidns, level) = thread_view(task);
    unsafe {
        h.pid = ld(task, ro(&o.task_tgid));
        h.tid = ld(task, ro(&o.task_pid));
        h.ns_pid = leader_ns_pid(task, level);
        h.ns_tid = ns_tid;
        h.pidns = pidns;
        let nsproxy: *const u8 = ld(task, ro(&o.task_nsproxy));
        if nsproxy.is_null() {
            h.mntns = 0;
            h.utsns = 0;
            h.netns = 0;
        } else {
            h.mntns = ns_inum(nsproxy, ro(&o.nsproxy_mnt), ro(&o.mntns_inum));
            h.utsns = ns_inum(nsproxy, ro(&o.nsproxy_uts), ro(&o.utsns_inum));
            h.netns = ns_inum(nsproxy, ro(&o.nsproxy_net), ro(&o.netns_inum));
        }
        h.comm = ld::<[u8; COMM_LEN]>(task, ro(&o.task_comm));
    }
}

/// The task's PID namespace inode alone (what `--mode count` keys on).
#[inline(always)]
pub fn pidns(task: Task) -> u32 {
    thread_view(task).1
}
