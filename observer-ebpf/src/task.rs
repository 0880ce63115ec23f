//! Who a task is: its cgroup, namespaces and both PID views, read straight
//! from `struct task_struct`.
//!
//! Two ways to read the same fields, chosen by the daemon at load time from
//! the running kernel (each program exists in both flavours):
//!
//! - `Direct` (Linux 5.11+): every pointer is BTF-typed (from
//!   `bpf_get_current_task_btf()` or a `tp_btf` argument), so plain loads are
//!   allowed and become fault-tolerant probe loads (a NULL `nsproxy` on an
//!   exiting task reads as 0). The offsets come from the running kernel's BTF
//!   through `OFFSETS` in `.rodata`; the verifier sees them as constants,
//!   which it requires for loads through a BTF pointer. A few ns for the
//!   whole chain.
//! - `Probe` (Linux 5.10, which lacks `bpf_get_current_task_btf`, added in
//!   5.11 by
//!   <https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/commit/?id=3ca1032ab7ab>):
//!   `bpf_get_current_task()` gives an untyped address, and every field is
//!   read with `bpf_probe_read_kernel` at the same BTF offsets: one helper
//!   call per field.

use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_get_current_task_btf, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
};
use observer_common::{Header, COMM_LEN, MAX_PID_NS_LEVEL};
#[cfg(bpf_target_arch = "x86_64")]
use observer_common::{SYSCALL_COMPAT, TS_COMPAT};

use crate::maps::{ro, OFFSETS};

pub type Task = *const u8;

/// How kernel memory is read.
pub trait Access {
    /// The current task.
    fn current() -> Task;
    /// Loads a field at a BTF offset; 0 where the memory can't be read.
    unsafe fn ld<T: Copy>(base: *const u8, off: u32) -> T;
}

/// Loads through BTF-typed pointers (Linux 5.11+).
pub enum Direct {}

/// `bpf_probe_read_kernel` per field (the 5.10 fallback).
pub enum Probe {}

impl Access for Direct {
    #[inline(always)]
    fn current() -> Task {
        unsafe { bpf_get_current_task_btf() as Task }
    }

    #[inline(always)]
    unsafe fn ld<T: Copy>(base: *const u8, off: u32) -> T {
        unsafe { core::ptr::read_volatile(base.add(off as usize) as *const T) }
    }
}

impl Access for Probe {
    #[inline(always)]
    fn current() -> Task {
        unsafe { bpf_get_current_task() as Task }
    }

    #[inline(always)]
    unsafe fn ld<T: Copy>(base: *const u8, off: u32) -> T {
        let mut v = core::mem::MaybeUninit::<T>::uninit();
        // The helper zeroes `v` when the read fails, so no zeroing of our
        // own: for an array that would be a call to `memset`, a function
        // without BTF, which the kernel then refuses in the object's
        // func_info.
        unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                v.as_mut_ptr().cast(),
                core::mem::size_of::<T>() as u32,
                base.add(off as usize).cast(),
            );
            v.assume_init()
        }
    }
}

/// cgroup v2 ID: `task->cgroups->dfl_cgrp->kn->id`, the same value as
/// `bpf_get_current_cgroup_id()` (the unified hierarchy's, on hybrid hosts)
/// but for any task and without the helper's RCU round trip.
#[inline(always)]
pub fn cgroup_id<A: Access>(task: Task) -> u64 {
    let o = &OFFSETS;
    unsafe {
        let cset: *const u8 = A::ld(task, ro(&o.task_cgroups));
        let cgrp: *const u8 = A::ld(cset, ro(&o.css_set_dfl_cgrp));
        cgroup_kn_id::<A>(cgrp)
    }
}

#[inline(always)]
pub fn cgroup_kn_id<A: Access>(cgrp: *const u8) -> u64 {
    let o = &OFFSETS;
    unsafe {
        let kn: *const u8 = A::ld(cgrp, ro(&o.cgroup_kn));
        A::ld(kn, ro(&o.kernfs_node_id))
    }
}

/// `pid->numbers[level]`: its nr, and with `NS` also its namespace's inode
/// (0 otherwise). Direct loads need a constant offset into the array, so the
/// first levels are each their own branch with their own constant; deeper
/// ones (and every level with `Probe`) are read with `bpf_probe_read_kernel`
/// at a computed offset, which takes any address.
#[inline(always)]
fn upid<A: Access, const NS: bool>(pid: *const u8, level: u32) -> (u32, u32) {
    macro_rules! at {
        ($r:ty, $l:expr) => {{
            let o = &OFFSETS;
            let base = ro(&o.pid_numbers) + $l * ro(&o.upid_size);
            unsafe {
                let nr = <$r>::ld::<u32>(pid, base + ro(&o.upid_nr));
                if !NS {
                    return (nr, 0);
                }
                let ns = <$r>::ld::<*const u8>(pid, base + ro(&o.upid_ns));
                let inum = if ns.is_null() {
                    0
                } else {
                    <$r>::ld::<u32>(ns, ro(&o.pidns_inum))
                };
                (nr, inum)
            }
        }};
    }
    match level {
        0 => at!(A, 0),
        1 => at!(A, 1),
        2 => at!(A, 2),
        3 => at!(A, 3),
        4 => at!(A, 4),
        5 => at!(A, 5),
        6 => at!(A, 6),
        7 => at!(A, 7),
        l if l <= MAX_PID_NS_LEVEL => {
            crate::rare::deep_pidns(l);
            at!(Probe, l)
        }
        _ => (0, 0),
    }
}

const _: () = assert!(MAX_PID_NS_LEVEL == 32, "the kernel's own MAX_PID_NS_LEVEL");

/// PID-namespace views of a task: (ns_tid, pidns inode, level).
#[inline(always)]
fn thread_view<A: Access>(task: Task) -> (u32, u32, u32) {
    let o = &OFFSETS;
    unsafe {
        let pid: *const u8 = A::ld(task, ro(&o.task_thread_pid));
        let level: u32 = A::ld(pid, ro(&o.pid_level));
        let (nr, inum) = upid::<A, true>(pid, level);
        (nr, inum, level)
    }
}

/// The thread-group leader's PID in the task's own PID namespace.
#[inline(always)]
fn leader_ns_pid<A: Access>(task: Task, level: u32) -> u32 {
    let o = &OFFSETS;
    unsafe {
        let leader: Task = A::ld(task, ro(&o.task_group_leader));
        let pid: *const u8 = A::ld(leader, ro(&o.task_thread_pid));
        upid::<A, false>(pid, level).0
    }
}

#[inline(always)]
fn ns_inum<A: Access>(nsproxy: *const u8, field: u32, inum: u32) -> u32 {
    unsafe {
        let ns: *const u8 = A::ld(nsproxy, field);
        if ns.is_null() {
            0
        } else {
            A::ld(ns, inum)
        }
    }
}

/// The task's UTS namespace (for the nodename), or NULL.
#[inline(always)]
pub fn uts_ns<A: Access>(task: Task) -> *const u8 {
    let o = &OFFSETS;
    unsafe {
        let nsproxy: *const u8 = A::ld(task, ro(&o.task_nsproxy));
        if nsproxy.is_null() {
            return core::ptr::null();
        }
        A::ld(nsproxy, ro(&o.nsproxy_uts))
    }
}

/// Both PID views of a task: (pid, tid, ns_pid, ns_tid).
#[inline(always)]
pub fn pid_views<A: Access>(task: Task) -> (u32, u32, u32, u32) {
    let o = &OFFSETS;
    let (ns_tid, _, level) = thread_view::<A>(task);
    unsafe {
        (
            A::ld(task, ro(&o.task_tgid)),
            A::ld(task, ro(&o.task_pid)),
            leader_ns_pid::<A>(task, level),
            ns_tid,
        )
    }
}

/// Fills the whole header for `task`, which is the current task or a task the
/// tracepoint hands over.
#[inline(always)]
pub fn fill_header<A: Access>(h: &mut Header, kind: u32, task: Task, cgroup_id: u64) {
    let o = &OFFSETS;
    h.kind = kind;
    h.cpu = unsafe { bpf_get_smp_processor_id() };
    h.ts = unsafe { bpf_ktime_get_boot_ns() };
    h.cgroup_id = cgroup_id;
    let (ns_tid, pidns, level) = thread_view::<A>(task);
    unsafe {
        h.pid = A::ld(task, ro(&o.task_tgid));
        h.tid = A::ld(task, ro(&o.task_pid));
        h.ns_pid = leader_ns_pid::<A>(task, level);
        h.ns_tid = ns_tid;
        h.pidns = pidns;
        let nsproxy: *const u8 = A::ld(task, ro(&o.task_nsproxy));
        if nsproxy.is_null() {
            h.mntns = 0;
            h.utsns = 0;
            h.netns = 0;
        } else {
            h.mntns = ns_inum::<A>(nsproxy, ro(&o.nsproxy_mnt), ro(&o.mntns_inum));
            h.utsns = ns_inum::<A>(nsproxy, ro(&o.nsproxy_uts), ro(&o.utsns_inum));
            h.netns = ns_inum::<A>(nsproxy, ro(&o.nsproxy_net), ro(&o.netns_inum));
        }
        h.comm = A::ld::<[u8; COMM_LEN]>(task, ro(&o.task_comm));
    }
}

/// The task's PID namespace inode alone (what `--mode count` keys on).
#[inline(always)]
pub fn pidns<A: Access>(task: Task) -> u32 {
    thread_view::<A>(task).1
}

/// Whether the task's whole thread group has exited: `signal->live`, which
/// `do_exit` decrements before `trace_sched_process_exit`
/// (<https://elixir.bootlin.com/linux/v5.10/source/kernel/exit.c#L793>),
/// reached 0. The group leader's own exit is not it: the leader can end
/// first (`pthread_exit` in main), and a non-leader's `execve` kills the
/// old leader while the process goes on.
#[inline(always)]
pub fn group_dead<A: Access>(task: Task) -> bool {
    let o = &OFFSETS;
    unsafe {
        let signal: *const u8 = A::ld(task, ro(&o.task_signal));
        if signal.is_null() {
            return false;
        }
        A::ld::<i32>(signal, ro(&o.signal_live)) == 0
    }
}

/// Whether the current task is in a compat (ia32) syscall: x86's
/// `TS_COMPAT`, which the 32-bit entry (`int 0x80`, `sysenter`, a 32-bit
/// `syscall`) sets and the next 64-bit entry clears. The syscall number is
/// then the i386 table's.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
pub fn in_compat_syscall<A: Access>(task: Task) -> bool {
    let status: u32 = unsafe { A::ld(task, ro(&OFFSETS.task_ti_status)) };
    status & TS_COMPAT != 0
}

/// `SyscallEvent::flags` for the current call: `SYSCALL_COMPAT` in a
/// compat syscall, computed without a branch (the record's last field,
/// read just before it is written: no state for the verifier to carry).
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
pub fn compat_flags<A: Access>(task: Task) -> u16 {
    const _: () = assert!(TS_COMPAT == 2 && SYSCALL_COMPAT == 1);
    let status: u32 = unsafe { A::ld(task, ro(&OFFSETS.task_ti_status)) };
    ((status & TS_COMPAT) >> 1) as u16
}

#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
pub fn compat_flags<A: Access>(_task: Task) -> u16 {
    0
}

/// arm64's compat (AArch32) tasks are not told apart yet.
#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
pub fn in_compat_syscall<A: Access>(_task: Task) -> bool {
    false
}
