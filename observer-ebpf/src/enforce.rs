//! The kernel enforcing what cgroups allow, and what a task may do to the
//! kernel every container shares. `oom:mark_victim` fires when the OOM
//! killer picks a victim, and the privilege read happens once per exec:
//! neither is on the per-syscall path. The refused-fork program is opt-in
//! (`--refused-fork-tasks`; by default the daemon counts refused forks from
//! the cgroups' `pids.events`): it runs only for the
//! `syscalls:sys_exit_{clone,clone3,fork,vfork}` tracepoints, but attaching
//! any classic `sys_exit_*` turns on the kernel's `raw_syscalls:sys_exit`
//! probe, which then tests every syscall's number against a bitmap
//! (https://elixir.bootlin.com/linux/v6.18/source/kernel/trace/trace_syscalls.c):
//! about +10 ns on every syscall.

use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use observer_common::{
    ClaimOffsets, EnforcedRecord, PrivilegeRecord, ENFORCED_OOM_KILL, ENFORCED_PIDS_LIMIT,
    KIND_ENFORCED, KIND_PRIVILEGE,
};

use crate::{
    maps::{cgroup_dropped, rare_wakeup, record_loss, reserve, ro, CONFIG, OFFSETS},
    // BTF flavour only: the loader skips these programs where it must
    // fall back to probe reads (Linux 5.10).
    task::{cgroup_id, fill_header, Access, Direct, Task},
};

/// Resolved by the daemon from BTF before load (see `KernelOffsets`).
#[unsafe(no_mangle)]
pub static CLAIM_OFFSETS: ClaimOffsets = ClaimOffsets {
    task_cred: 0,
    cred_cap_effective: 0,
    task_seccomp_mode: 0,
    task_atomic_flags: 0,
    sys_exit_ret: 0,
    _pad: 0,
};

/// `-EAGAIN`: what `copy_process` returns when the pids controller refuses
/// the new task (`pids_can_fork`), or RLIMIT_NPROC does; the daemon tells
/// them apart by whether the cgroup has a pids limit.
const EAGAIN: i64 = -11;

/// `PFA_NO_NEW_PRIVS`, bit 0 of `task->atomic_flags`
/// (https://elixir.bootlin.com/linux/v6.18/source/include/linux/sched.h).
const PFA_NO_NEW_PRIVS: u64 = 1;

/// The task's cgroup, unless it is the daemon's or a dropped one.
#[inline(always)]
fn wanted(task: Task) -> Option<u64> {
    let tgid: u32 = unsafe { Direct::ld(task, ro(&OFFSETS.task_tgid)) };
    if tgid == ro(&CONFIG.self_tgid) {
        return None;
    }
    let cgroup = cgroup_id::<Direct>(task);
    (!cgroup_dropped(cgroup)).then_some(cgroup)
}

#[inline(always)]
fn enforced(task: Task, what: u32, nr: u32, ret: i64) -> i32 {
    let Some(cgroup) = wanted(task) else { return 0 };
    let Some(mut entry) = reserve::<EnforcedRecord>() else {
        record_loss(cgroup);
        return 0;
    };
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    fill_header::<Direct>(&mut rec.header, KIND_ENFORCED, task, cgroup);
    rec.what = what;
    rec.nr = nr;
    rec.ret = ret;
    entry.submit(rare_wakeup());
    0
}

/// `TP_PROTO(struct task_struct *task, uid_t uid)` (the uid since 6.8): the
/// task the OOM killer chose, whose cgroup is the one at its limit when the
/// OOM is a cgroup's.
#[btf_tracepoint(function = "mark_victim")]
pub fn oom_mark_victim(ctx: BtfTracePointContext) -> i32 {
    let task: Task = ctx.arg(0);
    enforced(task, ENFORCED_OOM_KILL, 0, 0)
}

/// `syscalls:sys_exit_{clone,clone3,fork,vfork}`: a refused new task.
#[tracepoint(category = "syscalls", name = "sys_exit_clone")]
pub fn fork_refused(ctx: TracePointContext) -> u32 {
    // `struct syscall_trace_exit { struct trace_entry ent; int nr; long ret; }`
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(ro(&CLAIM_OFFSETS.sys_exit_ret) as usize) }) else {
        return 0;
    };
    if ret != EAGAIN {
        return 0;
    }
    let nr = unsafe { ctx.read_at::<i32>(8) }.unwrap_or(-1);
    enforced(Direct::current(), ENFORCED_PIDS_LIMIT, nr as u32, ret) as u32
}

/// `TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`:
/// after `begin_new_exec` installed the new program's credentials.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn exec_privilege(ctx: BtfTracePointContext) -> i32 {
    let task: Task = ctx.arg(0);
    let Some(cgroup) = wanted(task) else { return 0 };
    let Some(mut entry) = reserve::<PrivilegeRecord>() else {
        record_loss(cgroup);
        return 0;
    };
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    fill_header::<Direct>(&mut rec.header, KIND_PRIVILEGE, task, cgroup);
    let o = &CLAIM_OFFSETS;
    unsafe {
        let cred: *const u8 = Direct::ld(task, ro(&o.task_cred));
        // `kernel_cap_t` is one u64 since 6.3 and two u32 before: the same
        // eight bytes on little-endian machines.
        rec.cap_effective = if cred.is_null() {
            0
        } else {
            Direct::ld(cred, ro(&o.cred_cap_effective))
        };
        rec.seccomp_mode = Direct::ld(task, ro(&o.task_seccomp_mode));
        let flags: u64 = Direct::ld(task, ro(&o.task_atomic_flags));
        rec.no_new_privs = (flags & PFA_NO_NEW_PRIVS) as u32;
    }
    entry.submit(rare_wakeup());
    0
}
