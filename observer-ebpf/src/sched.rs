//! Process lifecycle (`sched_process_fork/exec/exit`) as records, and CPU time
//! per cgroup from `sched_switch`, summed in the kernel: one scheduler sharing
//! the same CPUs among every container, never one record per switch.

use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, bpf_probe_read_kernel_str_bytes},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use observer_common::{
    ExecRecord, ExitRecord, ForkRecord, TaskGoneRecord, KIND_EXEC, KIND_EXIT, KIND_FORK,
    KIND_TASK_GONE,
};

use crate::{
    maps::{
        batched_wakeup, cgroup_dropped, rare_wakeup, record_loss, reserve, ro, CONFIG, IDENTITY,
        OFFSETS, ONCPU, SWITCH_TS,
    },
    task::{cgroup_id, fill_header, group_dead, pid_views, uts_ns, Access, Direct, Probe, Task},
};

/// Common gate for lifecycle records: not the daemon, not a dropped cgroup.
/// Returns the task's cgroup ID when the record is wanted. Count mode keeps
/// them too: they fire rarely, and they are what tells a container's start,
/// exit and process churn.
#[inline(always)]
fn wanted<A: Access>(task: Task) -> Option<u64> {
    let tgid: u32 = unsafe { A::ld(task, ro(&OFFSETS.task_tgid)) };
    if tgid == ro(&CONFIG.self_tgid) {
        return None;
    }
    let cgroup = cgroup_id::<A>(task);
    if cgroup_dropped(cgroup) {
        None
    } else {
        Some(cgroup)
    }
}

/// `TP_PROTO(struct task_struct *parent, struct task_struct *child)`
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    fork::<Direct>(&ctx)
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork_probe(ctx: BtfTracePointContext) -> i32 {
    fork::<Probe>(&ctx)
}

#[inline(always)]
fn fork<A: Access>(ctx: &BtfTracePointContext) -> i32 {
    let parent: Task = ctx.arg(0);
    let child: Task = ctx.arg(1);
    // A reused tid: whatever was sent for the task that had it is not who
    // this one is.
    let child_tid: u32 = unsafe { A::ld(child, ro(&OFFSETS.task_pid)) };
    let _ = IDENTITY.remove(child_tid);
    let Some(cgroup) = wanted::<A>(parent) else {
        return 0;
    };
    let Some(mut entry) = reserve::<ForkRecord>() else {
        record_loss(cgroup);
        return 0;
    };
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    fill_header::<A>(&mut rec.header, KIND_FORK, parent, cgroup);
    let (pid, tid, ns_pid, ns_tid) = pid_views::<A>(child);
    rec.child_pid = pid;
    rec.child_tid = tid;
    rec.child_ns_pid = ns_pid;
    rec.child_ns_tid = ns_tid;
    entry.submit(rare_wakeup());
    0
}

/// `TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    exec::<Direct>(&ctx)
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec_probe(ctx: BtfTracePointContext) -> i32 {
    exec::<Probe>(&ctx)
}

#[inline(always)]
fn exec<A: Access>(ctx: &BtfTracePointContext) -> i32 {
    let task: Task = ctx.arg(0);
    let old_pid: i32 = ctx.arg(1);
    let bprm: *const u8 = ctx.arg(2);
    // A new program, maybe a new comm, and a thread that execs takes the
    // group leader's tid: the next syscall says who it is again.
    let _ = IDENTITY.remove(old_pid as u32);
    let tid: u32 = unsafe { A::ld(task, ro(&OFFSETS.task_pid)) };
    let _ = IDENTITY.remove(tid);
    let Some(cgroup) = wanted::<A>(task) else {
        return 0;
    };
    let Some(mut entry) = reserve::<ExecRecord>() else {
        record_loss(cgroup);
        return 0;
    };
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    fill_header::<A>(&mut rec.header, KIND_EXEC, task, cgroup);
    rec.filename[0] = 0;
    rec.nodename[0] = 0;
    unsafe {
        let filename: *const u8 = A::ld(bprm, ro(&OFFSETS.bprm_filename));
        let _ = bpf_probe_read_kernel_str_bytes(filename, &mut rec.filename);
        let uts = uts_ns::<A>(task);
        if !uts.is_null() {
            let nodename = uts.add(ro(&OFFSETS.utsns_nodename) as usize);
            let _ = bpf_probe_read_kernel_str_bytes(nodename, &mut rec.nodename);
        }
    }
    entry.submit(rare_wakeup());
    0
}

/// `TP_PROTO(struct task_struct *p, ...)`: one record per process, when its
/// last thread exits (see `group_dead`); the header is that thread's.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    exit::<Direct>(&ctx)
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit_probe(ctx: BtfTracePointContext) -> i32 {
    exit::<Probe>(&ctx)
}

#[inline(always)]
fn exit<A: Access>(ctx: &BtfTracePointContext) -> i32 {
    let task: Task = ctx.arg(0);
    let tid: u32 = unsafe { A::ld(task, ro(&OFFSETS.task_pid)) };
    if IDENTITY.remove(tid).is_ok() {
        // Its identity was sent: the daemon can forget it.
        if let Some(mut entry) = reserve::<TaskGoneRecord>() {
            let rec = unsafe { &mut *entry.as_mut_ptr() };
            rec.kind = KIND_TASK_GONE;
            rec.tid = tid;
            rec.ts = unsafe { bpf_ktime_get_boot_ns() };
            entry.submit(batched_wakeup());
        }
    }
    if !group_dead::<A>(task) {
        return 0;
    }
    let Some(cgroup) = wanted::<A>(task) else {
        return 0;
    };
    let Some(mut entry) = reserve::<ExitRecord>() else {
        record_loss(cgroup);
        return 0;
    };
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    fill_header::<A>(&mut rec.header, KIND_EXIT, task, cgroup);
    rec.exit_code = unsafe { A::ld(task, ro(&OFFSETS.task_exit_code)) };
    rec._pad = 0;
    entry.submit(rare_wakeup());
    0
}

/// `TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)`: the time since the previous switch on this CPU
/// was spent by `prev`; add it to `prev`'s cgroup.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    switch::<Direct>(&ctx)
}

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_probe(ctx: BtfTracePointContext) -> i32 {
    switch::<Probe>(&ctx)
}

#[inline(always)]
fn switch<A: Access>(ctx: &BtfTracePointContext) -> i32 {
    let prev: Task = ctx.arg(1);
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let Some(last) = SWITCH_TS.get_ptr_mut(0) else {
        return 0;
    };
    let since = unsafe { core::mem::replace(&mut *last, now) };
    let prev_pid: u32 = unsafe { A::ld(prev, ro(&OFFSETS.task_pid)) };
    // pid 0 is the idle task; the first switch on a CPU has no start.
    if since == 0 || prev_pid == 0 {
        return 0;
    }
    let delta = now.saturating_sub(since);
    let cgroup = cgroup_id::<A>(prev);
    match ONCPU.get_ptr_mut(&cgroup) {
        Some(p) => unsafe { *p += delta },
        None => {
            let _ = ONCPU.insert(&cgroup, &delta, 0);
        }
    }
    0
}
