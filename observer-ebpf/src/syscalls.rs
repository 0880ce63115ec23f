//! `sys_enter` / `sys_exit`, through the BTF-enabled raw tracepoints: the
//! cheapest way onto the syscall path (the classic `raw_syscalls` tracepoint
//! adds ~35 ns per call on top of the same slow path).

use aya_ebpf::helpers::{bpf_get_smp_processor_id, bpf_ktime_get_boot_ns};
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use observer_common::{
    CountKey, CountSlot, Header, SyscallEvent, SyscallExitEvent, COUNT_NR_COMPAT, COUNT_SLOTS,
    COUNT_SLOT_NRS, FLAG_SYSCALL_FILTER, KIND_SYSCALL, KIND_SYSCALL_EXIT, KIND_TASK, MODE_COUNT,
    SPLIT_IDENTITY, SPLIT_TIMESTAMP, SYSCALL_BITMAP_WORDS, X32_SYSCALL_BIT,
};

use crate::{
    maps::{
        batched_wakeup, cgroup_dropped, record_loss, reserve, ro, Sent, CONFIG, COUNTS,
        COUNT_RETIRED, COUNT_SLOTS_MAP, IDENTITY, OFFSETS,
    },
    task::{
        cgroup_id, compat_flags, fill_header, in_compat_syscall, pidns, Access, Direct, Probe, Task,
    },
};

/// `unshare` and `setns`: the only calls that change the calling task's
/// namespaces (`switch_task_namespaces(current, …)`), and only its own.
#[cfg(bpf_target_arch = "x86_64")]
const NS_CHANGING: [i64; 2] = [272, 308];
#[cfg(bpf_target_arch = "aarch64")]
const NS_CHANGING: [i64; 2] = [97, 268];
/// The same in the i386 table, for compat calls. Either pair marks the
/// identity stale, compat or not: x86_64's 310 (`process_vm_readv`) then
/// costs one identity record more, and no compat state is carried through
/// the program (on Linux 5.10 a value live across `emit` multiplies the
/// verifier's states past its 1M-instruction limit).
#[cfg(bpf_target_arch = "x86_64")]
const NS_CHANGING_COMPAT: [i64; 2] = [310, 346];
#[cfg(bpf_target_arch = "aarch64")]
const NS_CHANGING_COMPAT: [i64; 2] = NS_CHANGING;

/// `TP_PROTO(struct pt_regs *regs, long id)`
#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> i32 {
    enter::<Direct>(&ctx)
}

/// The same with `bpf_probe_read_kernel` (Linux 5.10).
#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter_probe(ctx: BtfTracePointContext) -> i32 {
    enter::<Probe>(&ctx)
}

/// `TP_PROTO(struct pt_regs *regs, long ret)`: the number comes from the
/// registers. Only attached with `--sys-exit`.
#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> i32 {
    exit::<Direct>(&ctx)
}

#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit_probe(ctx: BtfTracePointContext) -> i32 {
    exit::<Probe>(&ctx)
}

#[inline(always)]
fn enter<A: Access>(ctx: &BtfTracePointContext) -> i32 {
    let nr: i64 = ctx.arg(1);
    match try_syscall::<A>(nr, 0, KIND_SYSCALL) {
        Ok(r) | Err(r) => r,
    }
}

#[inline(always)]
fn exit<A: Access>(ctx: &BtfTracePointContext) -> i32 {
    let ret: i64 = ctx.arg(1);
    let nr = syscall_nr_from_regs::<A>(ctx);
    match try_syscall::<A>(nr, ret, KIND_SYSCALL_EXIT) {
        Ok(r) | Err(r) => r,
    }
}

/// An empty program on the same hook: what the benchmark calls the floor.
#[btf_tracepoint(function = "sys_enter")]
pub fn floor_sys_enter(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// The same empty program on the classic `raw_syscalls:sys_enter`
/// tracepoint, to show what the BTF-enabled hook saves.
#[tracepoint(category = "raw_syscalls", name = "sys_enter")]
pub fn floor_classic_sys_enter(_ctx: TracePointContext) -> u32 {
    0
}

#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn syscall_nr_from_regs<A: Access>(ctx: &BtfTracePointContext) -> i64 {
    let regs: *const u8 = ctx.arg(0);
    // `orig_ax` holds the syscall number for the whole call.
    let off = core::mem::offset_of!(aya_ebpf::bindings::pt_regs, orig_rax) as u32;
    unsafe { A::ld::<u64>(regs, off) as i64 }
}

#[cfg(bpf_target_arch = "aarch64")]
#[inline(always)]
fn syscall_nr_from_regs<A: Access>(ctx: &BtfTracePointContext) -> i64 {
    let regs: *const u8 = ctx.arg(0);
    // arm64 `struct pt_regs`: 34 u64 of user registers, orig_x0, then the
    // s32 `syscallno`.
    unsafe { A::ld::<i32>(regs, 34 * 8 + 8) as i64 }
}

/// Whether `nr` passes `--syscall`: a compat call by its i386 number.
#[inline(always)]
fn syscall_wanted<A: Access>(task: Task, nr: i64) -> bool {
    if ro(&CONFIG.flags) & FLAG_SYSCALL_FILTER == 0 {
        return true;
    }
    if nr < 0 || nr >= (SYSCALL_BITMAP_WORDS * 64) as i64 {
        return false;
    }
    let bitmap = if in_compat_syscall::<A>(task) {
        &CONFIG.compat_syscall_bitmap
    } else {
        &CONFIG.syscall_bitmap
    };
    let word = match bitmap.get((nr / 64) as usize) {
        Some(w) => ro(w),
        None => return false,
    };
    word & (1 << (nr % 64)) != 0
}

#[inline(always)]
fn try_syscall<A: Access>(nr: i64, ret: i64, kind: u32) -> Result<i32, i32> {
    let task = A::current();
    // A compat call's number is the i386 table's: it is filtered, counted
    // and sent as such, marked. Whether it is one is read again where each
    // of those needs it (see `NS_CHANGING_COMPAT`).
    // Seen whatever the filter says: the next record of this task must
    // say who it is again.
    let ns_change = kind == KIND_SYSCALL
        && (nr == NS_CHANGING[0]
            || nr == NS_CHANGING[1]
            || nr == NS_CHANGING_COMPAT[0]
            || nr == NS_CHANGING_COMPAT[1]);
    let wanted = syscall_wanted::<A>(task, nr);
    if !wanted && !ns_change {
        return Ok(0);
    }
    // One load from the task we hold anyway, cheaper than the helper.
    let tgid: u32 = unsafe { A::ld(task, ro(&OFFSETS.task_tgid)) };
    if tgid == ro(&CONFIG.self_tgid) {
        return Ok(0);
    }
    let cgroup = cgroup_id::<A>(task);
    if ro(&CONFIG.mode) == MODE_COUNT {
        // Counting a host cgroup costs what filtering it out would: count
        // everything, and let the daemon choose what to show.
        if kind == KIND_SYSCALL && wanted {
            count(cgroup, pidns::<A>(task), nr, in_compat_syscall::<A>(task));
        }
        return Ok(0);
    }
    if cgroup_dropped(cgroup) {
        return Ok(0);
    }
    let tid: u32 = unsafe { A::ld(task, ro(&OFFSETS.task_pid)) };
    if wanted {
        emit::<A>(task, tid, cgroup, nr, ret, kind);
    }
    if ns_change {
        if let Some(s) = IDENTITY.get_ptr_mut(tid) {
            unsafe { (*s).stale = 1 };
        }
    }
    Ok(0)
}

/// The task's identity record when it is not the one last sent, then the
/// compact syscall record. The identity goes first into the same ring, so
/// the daemon always has it when the syscall arrives.
#[inline(always)]
fn emit<A: Access>(task: Task, tid: u32, cgroup: u64, nr: i64, ret: i64, kind: u32) {
    // The benchmark's cut-off points (see `SPLIT_*`); constants the
    // verifier folds, so none of this is left in a normal run.
    let split = ro(&CONFIG.split);
    if split == SPLIT_TIMESTAMP {
        core::hint::black_box(unsafe { bpf_ktime_get_boot_ns() });
        return;
    }
    let comm: [u64; 2] = unsafe { A::ld(task, ro(&OFFSETS.task_comm)) };
    let known = match IDENTITY.get_ptr_mut(tid) {
        // SAFETY: an entry of this map; a concurrent eviction at worst
        // makes one identity record more.
        Some(s) => unsafe {
            (*s).stale == 0
                && (*s).cgroup_id == cgroup
                && (*s).comm[0] == comm[0]
                && (*s).comm[1] == comm[1]
        },
        None => false,
    };
    if split == SPLIT_IDENTITY {
        // Cumulative: the time stamp too, as a record takes it.
        core::hint::black_box((known, unsafe { bpf_ktime_get_boot_ns() }));
        return;
    }
    if !known {
        let Some(mut entry) = reserve::<Header>() else {
            // Without its identity the syscall can't be told: it is lost.
            record_loss(cgroup);
            return;
        };
        // SAFETY: sized for a Header, every field written before submit.
        let h = unsafe { &mut *entry.as_mut_ptr() };
        fill_header::<A>(h, KIND_TASK, task, cgroup);
        entry.submit(batched_wakeup());
        let sent = Sent {
            cgroup_id: cgroup,
            comm,
            stale: 0,
            _pad: 0,
        };
        // A failed insert only means the identity is sent again.
        if let Err(e) = IDENTITY.insert(tid, &sent, 0) {
            crate::rare::identity_not_kept(tid, e);
        }
    }
    if kind == KIND_SYSCALL {
        let Some(mut entry) = reserve::<SyscallEvent>() else {
            record_loss(cgroup);
            return;
        };
        // SAFETY: sized for the record; every field written before submit,
        // so no stale kernel memory leaves the program.
        let rec = unsafe { &mut *entry.as_mut_ptr() };
        fill_event(rec, kind, tid, cgroup, nr, compat_flags::<A>(task));
        entry.submit(batched_wakeup());
    } else {
        let Some(mut entry) = reserve::<SyscallExitEvent>() else {
            record_loss(cgroup);
            return;
        };
        let rec = unsafe { &mut *entry.as_mut_ptr() };
        fill_event(
            &mut rec.event,
            kind,
            tid,
            cgroup,
            nr,
            compat_flags::<A>(task),
        );
        rec.ret = ret;
        entry.submit(batched_wakeup());
    }
}

#[inline(always)]
fn fill_event(rec: &mut SyscallEvent, kind: u32, tid: u32, cgroup: u64, nr: i64, flags: u16) {
    rec.kind = kind;
    rec.tid = tid;
    rec.ts = unsafe { bpf_ktime_get_boot_ns() };
    rec.cgroup_id = cgroup;
    rec.nr = nr as i32;
    // NR_CPUS is at most 8192 on every architecture.
    rec.cpu = unsafe { bpf_get_smp_processor_id() } as u16;
    rec.flags = flags;
}

const _: () = assert!(COUNT_SLOT_NRS.is_power_of_two());

/// One syscall into the per-CPU direct-mapped slot table, or into the hash
/// map when the slot belongs to another (cgroup, pidns) pair. Per-CPU array
/// lookups are inlined by the verifier: the common case is a few loads and
/// one increment, with no hashing. Compat calls (rare: 32-bit binaries,
/// `int 0x80`) go to the hash map, their number marked, so that they are
/// counted apart from the native call of the same number.
#[inline(always)]
fn count(cgroup: u64, pidns: u32, nr: i64, compat: bool) {
    if compat {
        let nr = if (0..X32_SYSCALL_BIT as i64).contains(&nr) {
            nr as u32 | COUNT_NR_COMPAT
        } else {
            nr as u32
        };
        count_hashed(cgroup, pidns, nr);
        return;
    }
    let slot = (cgroup as u32) & (COUNT_SLOTS - 1);
    if let Some(s) = COUNT_SLOTS_MAP.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot; programs run with migration disabled, so
        // nothing else writes it while we do.
        let s = unsafe { &mut *s };
        if s.cgroup_id == 0 {
            s.cgroup_id = cgroup;
            s.pidns = pidns;
        } else if s.cgroup_id != cgroup && retired(s.cgroup_id) {
            reclaim(s, cgroup, pidns);
        }
        if s.cgroup_id == cgroup && s.pidns == pidns && (0..COUNT_SLOT_NRS as i64).contains(&nr) {
            // Masked at the use, from a value the compiler can't see
            // through: it keeps `nr` on the stack across this function,
            // and Linux 5.10's verifier forgets a spilled scalar's bounds
            // (tracking them came in 5.11), so the check above alone is
            // refused there ("math between map_value pointer and register
            // with unbounded min value"). The mask keeps the index bounded
            // at the very instruction that adds it to the slot's address.
            let i = core::hint::black_box(nr as usize) & (COUNT_SLOT_NRS - 1);
            if let Some(c) = s.counts.get_mut(i) {
                *c += 1;
                return;
            }
        }
    }
    count_hashed(cgroup, pidns, nr as u32);
}

#[inline(always)]
fn count_hashed(cgroup: u64, pidns: u32, nr: u32) {
    let key = CountKey {
        cgroup_id: cgroup,
        pidns,
        nr,
    };
    match COUNTS.get_ptr_mut(&key) {
        Some(p) => unsafe { *p += 1 },
        None => {
            // A full map loses the count: say so, like a full ring buffer.
            if COUNTS.insert(&key, &1, 0).is_err() {
                record_loss(cgroup);
                crate::rare::counts_full(cgroup, nr as i64);
            }
        }
    }
}

/// Whether the daemon has read a removed cgroup's last counts: its slots may
/// then be taken over (on the collision path only).
#[inline(always)]
fn retired(cgroup: u64) -> bool {
    unsafe { COUNT_RETIRED.get(&cgroup).is_some() }
}

/// Takes over this CPU's copy of a slot whose owner is retired. Only this
/// CPU writes its copy, so the slot changes hands exactly: the old owner's
/// counts were read before it was retired, and no task of a removed cgroup
/// is left to add to them.
#[inline(always)]
fn reclaim(s: &mut CountSlot, cgroup: u64, pidns: u32) {
    // A bounded loop (not a memset, which the BPF target can't call).
    for i in 0..COUNT_SLOT_NRS {
        if let Some(c) = s.counts.get_mut(i) {
            unsafe { core::ptr::write_volatile(c, 0) };
        }
    }
    s.cgroup_id = cgroup;
    s.pidns = pidns;
}
