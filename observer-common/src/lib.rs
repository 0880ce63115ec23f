//! Records and names shared by the kernel programs and the daemon.
//!
//! Every record is `#[repr(C)]` with explicit padding, so that both sides agree
//! on the layout byte for byte and no uninitialised padding ever reaches the
//! ring buffer. Every ring-buffer record starts with a `u32` kind.
#![no_std]

/// Array of ring buffers carrying every streamed task record: slot N is the
/// ring CPU N writes to (its own, or one shared by all).
pub const MAP_EVENT_RINGS: &str = "EVENT_RINGS";
/// Ring buffer of their own for `CgroupRecord`s: a flood of syscall records
/// must not crowd out a container's start or end.
pub const MAP_CGROUP_EVENTS: &str = "CGROUP_EVENTS";
/// Per-CPU array of `CountSlot`: `--mode count`'s fast path, a direct-mapped
/// table indexed by cgroup ID.
pub const MAP_COUNT_SLOTS: &str = "COUNT_SLOTS";
/// Per-CPU hash: `CountKey` -> syscalls counted in `--mode count` for the
/// (cgroup, pidns) pairs whose slot is taken by another pair.
pub const MAP_COUNTS: &str = "COUNTS";
/// Hash: cgroup ID -> 1 for removed cgroups whose counts the daemon has read
/// for the last time; the kernel then takes their count slots over.
pub const MAP_COUNT_RETIRED: &str = "COUNT_RETIRED";
/// Per-CPU hash: cgroup ID -> records lost to a full ring buffer (and, in
/// `--mode count`, syscalls lost to a full `MAP_COUNTS`).
pub const MAP_LOSS: &str = "LOSS";
/// Per-CPU hash: cgroup ID -> nanoseconds on CPU (from `sched_switch`).
pub const MAP_ONCPU: &str = "ONCPU";
/// LRU hash: tid -> what the task's last identity record (`KIND_TASK`)
/// said, so that a syscall record need not say it again.
pub const MAP_IDENTITY: &str = "IDENTITY";
/// Tasks whose identity the kernel remembers having sent.
pub const IDENTITY_ENTRIES: u32 = 32768;
/// Per-CPU array: `[u64; STAT_COUNT]` counters indexed by `STAT_*`.
pub const MAP_STATS: &str = "STATS";
/// Hash: cgroup ID -> `CGROUP_*` verdict, filled by the daemon.
pub const MAP_CGROUP_FILTER: &str = "CGROUP_FILTER";
/// Per-CPU array: a direct-mapped cache of `CGROUP_FILTER` verdicts.
pub const MAP_VERDICT_CACHE: &str = "VERDICT_CACHE";
pub const VERDICT_CACHE_SLOTS: u32 = 1024;
/// Per-CPU scratch space for the last `sched_switch` timestamp.
pub const MAP_SWITCH_TS: &str = "SWITCH_TS";

/// Global (`.rodata`) holding the `KernelOffsets` resolved from BTF.
pub const GLOBAL_OFFSETS: &str = "OFFSETS";
/// `aya-log`'s level global: 0 (off) unless `--verbose`, so that a rare
/// condition costs one load and no ring reservation when nobody reads it.
pub const GLOBAL_LOG_LEVEL: &str = "AYA_LOG_LEVEL";
/// Global (`.rodata`) holding the `Config`.
pub const GLOBAL_CONFIG: &str = "CONFIG";

/// Program names, as exported by `observer-ebpf`.
pub const PROG_SYS_ENTER: &str = "sys_enter";
pub const PROG_SYS_EXIT: &str = "sys_exit";
pub const PROG_FORK: &str = "sched_process_fork";
pub const PROG_EXEC: &str = "sched_process_exec";
pub const PROG_EXIT: &str = "sched_process_exit";
pub const PROG_SWITCH: &str = "sched_switch";
pub const PROG_CGROUP_MKDIR: &str = "cgroup_mkdir";
pub const PROG_CGROUP_RMDIR: &str = "cgroup_rmdir";
/// Every program above also exists with this suffix, reading kernel memory
/// with `bpf_probe_read_kernel` from `bpf_get_current_task()` instead of
/// BTF-typed loads: what the loader picks on kernels without
/// `bpf_get_current_task_btf` (Linux 5.10).
pub const PROBE_SUFFIX: &str = "_probe";
/// Enforcement and privilege, in their own programs: `oom:mark_victim`, the
/// fork/clone syscalls' exits, and a second program on `sched_process_exec`.
pub const PROG_OOM_VICTIM: &str = "oom_mark_victim";
pub const PROG_FORK_REFUSED: &str = "fork_refused";
pub const PROG_EXEC_PRIVILEGE: &str = "exec_privilege";
/// The syscalls whose exits `PROG_FORK_REFUSED` watches (classic
/// `syscalls:sys_exit_*` tracepoints: each fires for its own syscall only).
pub const FORK_SYSCALLS: [&str; 4] = ["clone", "clone3", "fork", "vfork"];
/// Global (`.rodata`) holding the `ClaimOffsets`.
pub const GLOBAL_CLAIM_OFFSETS: &str = "CLAIM_OFFSETS";
/// Empty program on `sys_enter`: the floor the benchmark measures against.
pub const PROG_FLOOR: &str = "floor_sys_enter";
/// The same, on the classic `raw_syscalls:sys_enter` tracepoint.
pub const PROG_FLOOR_CLASSIC: &str = "floor_classic_sys_enter";

/// Where every record of the event rings keeps its `CLOCK_BOOTTIME` time
/// stamp: the rings are merged by it.
pub const RECORD_TS_OFFSET: usize = 8;

/// Record kinds (`Header::kind`).
pub const KIND_SYSCALL: u32 = 1;
pub const KIND_SYSCALL_EXIT: u32 = 2;
pub const KIND_FORK: u32 = 3;
pub const KIND_EXEC: u32 = 4;
pub const KIND_EXIT: u32 = 5;
pub const KIND_CGROUP_MKDIR: u32 = 6;
pub const KIND_CGROUP_RMDIR: u32 = 7;
/// Who a task is (`Header`): sent before its first syscall record and
/// again whenever that changes (exec, `setns`/`unshare`, a cgroup move, a
/// new comm).
pub const KIND_TASK: u32 = 8;
/// `TaskGoneRecord`: a task whose identity was sent has exited.
pub const KIND_TASK_GONE: u32 = 9;
pub const KIND_ENFORCED: u32 = 10;
pub const KIND_PRIVILEGE: u32 = 11;

/// `EnforcedRecord::what`.
pub const ENFORCED_OOM_KILL: u32 = 1;
pub const ENFORCED_PIDS_LIMIT: u32 = 2;

/// `STATS` slots.
pub const STAT_EMITTED: u32 = 0;
pub const STAT_LOST: u32 = 1;
/// Rare conditions, each logged (`aya-log`, shown with `--verbose`) at its
/// 1st, 2nd, 4th, 8th… occurrence per CPU: a full count table, a PID
/// namespace nested deeper than the levels read with direct loads, a
/// failed update of the identity map.
pub const STAT_RARE_COUNTS_FULL: u32 = 2;
pub const STAT_RARE_DEEP_PIDNS: u32 = 3;
pub const STAT_RARE_IDENTITY: u32 = 4;
pub const STAT_COUNT: u32 = 8;

/// `CGROUP_FILTER` verdicts. A cgroup absent from the map passes. The daemon
/// sets a cgroup's verdict once and never changes it (the kernel caches it).
pub const CGROUP_PASS: u32 = 0;
pub const CGROUP_DROP: u32 = 1;

/// `Config::mode`.
pub const MODE_STREAM: u32 = 0;
pub const MODE_COUNT: u32 = 1;

/// `Config::flags` bits.
pub const FLAG_SYSCALL_FILTER: u32 = 1 << 0;
pub const FLAG_CGROUP_FILTER: u32 = 1 << 1;

/// `Config::split`: how far a streamed syscall goes in `sys_enter`, for the
/// benchmark's kernel cost split (`cargo xtask bench --kernel-split`). A
/// `.rodata` constant: the verifier prunes the branches of the values not
/// chosen, so a normal run (`SPLIT_FULL`) carries none of them.
pub const SPLIT_FULL: u32 = 0;
/// Stop after taking the time stamp (no identity check, no record).
pub const SPLIT_TIMESTAMP: u32 = 1;
/// Stop after the time stamp and the identity check (comm loads and the
/// `IDENTITY` lookup).
pub const SPLIT_IDENTITY: u32 = 2;

/// Deepest PID-namespace level (0 is the host), the kernel's own limit: every
/// level is read, the first 8 with direct loads (the verifier needs a
/// constant offset into `pid->numbers[level]`, so those are unrolled), the
/// deeper ones with `bpf_probe_read_kernel`.
pub const MAX_PID_NS_LEVEL: u32 = 32;

pub const COMM_LEN: usize = 16;
pub const FILENAME_LEN: usize = 256;
/// `__NEW_UTS_LEN + 1` is 65; rounded up so that records stay 8-aligned.
pub const NODENAME_LEN: usize = 72;
pub const CGROUP_PATH_LEN: usize = 256;
/// Syscall numbers covered by the `--syscall` bitmap.
pub const SYSCALL_BITMAP_WORDS: usize = 8;

/// Offsets of the kernel fields the programs read, resolved by the daemon
/// from the running kernel's BTF and written into `.rodata` before load, so
/// that the verifier sees them as constants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_group_leader: u32,
    pub task_thread_pid: u32,
    pub task_nsproxy: u32,
    pub task_cgroups: u32,
    pub task_comm: u32,
    pub task_exit_code: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_nr: u32,
    pub upid_ns: u32,
    pub pidns_inum: u32,
    pub nsproxy_uts: u32,
    pub nsproxy_mnt: u32,
    pub nsproxy_net: u32,
    pub utsns_inum: u32,
    pub utsns_nodename: u32,
    pub mntns_inum: u32,
    pub netns_inum: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub cgroup_root: u32,
    pub cgroup_level: u32,
    pub kernfs_node_id: u32,
    pub cgroup_root_hierarchy_id: u32,
    pub bprm_filename: u32,
    pub task_signal: u32,
    /// `signal_struct.live`, an `atomic_t`.
    pub signal_live: u32,
    /// `task_struct.thread_info.status` (x86: `TS_COMPAT` set while the
    /// task is in a 32-bit syscall).
    pub task_ti_status: u32,
    pub _pad: u32,
}

/// Offsets for the enforcement and privilege programs, resolved like
/// `KernelOffsets` (from BTF, and from the tracepoint's format file for
/// `sys_exit_ret`), in a global of their own.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClaimOffsets {
    /// `task_struct.cred`: the subjective credentials.
    pub task_cred: u32,
    pub cred_cap_effective: u32,
    pub task_seccomp_mode: u32,
    /// `task_struct.atomic_flags`, whose bit `PFA_NO_NEW_PRIVS` (0) is
    /// no_new_privs.
    pub task_atomic_flags: u32,
    /// Offset of `ret` in a `syscalls:sys_exit_*` record.
    pub sys_exit_ret: u32,
    pub _pad: u32,
}

/// Run-time settings, written into `.rodata` before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The daemon's own tgid: never observed.
    pub self_tgid: u32,
    /// `MODE_STREAM` or `MODE_COUNT`.
    pub mode: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Force a reader wakeup every this many high-rate records on a CPU (a
    /// power of two); the others are submitted without one.
    pub wakeup_every: u32,
    /// `SPLIT_*`: `SPLIT_FULL` but in the benchmark.
    pub split: u32,
    pub _pad: u32,
    /// Bit `nr` set = syscall `nr` is observed (when `FLAG_SYSCALL_FILTER`).
    pub syscall_bitmap: [u64; SYSCALL_BITMAP_WORDS],
    /// The same for compat (ia32) syscalls, in the i386 numbering.
    pub compat_syscall_bitmap: [u64; SYSCALL_BITMAP_WORDS],
}

/// Who did it, as the kernel saw it at the moment of the event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub kind: u32,
    pub cpu: u32,
    /// `CLOCK_BOOTTIME` nanoseconds.
    pub ts: u64,
    /// cgroup v2 ID (the unified hierarchy's on hybrid hosts).
    pub cgroup_id: u64,
    /// Host view.
    pub pid: u32,
    pub tid: u32,
    /// As the task sees itself inside its PID namespace.
    pub ns_pid: u32,
    pub ns_tid: u32,
    /// Namespace inode numbers (`readlink /proc/PID/ns/*`).
    pub pidns: u32,
    pub mntns: u32,
    pub utsns: u32,
    pub netns: u32,
    pub comm: [u8; COMM_LEN],
}

/// A syscall as it crosses the ring buffer (`KIND_SYSCALL`): when, which
/// thread, which cgroup, which call. Everything else about the thread is in
/// its last `KIND_TASK` record, which the ring delivered before this one.
/// `cgroup_id` sits at the same offset as in `Header`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallEvent {
    pub kind: u32,
    pub tid: u32,
    /// `CLOCK_BOOTTIME` nanoseconds.
    pub ts: u64,
    pub cgroup_id: u64,
    pub nr: i32,
    pub cpu: u16,
    /// `SYSCALL_COMPAT` when the call came through the 32-bit entry.
    pub flags: u16,
}

/// `SyscallEvent::flags`: a compat (ia32) syscall, numbered from the
/// architecture's 32-bit table (x86's `syscall_32.tbl`): a 32-bit binary,
/// or `int 0x80` from a 64-bit one. x32 calls are not compat: they carry
/// `X32_SYSCALL_BIT` in `nr` instead.
pub const SYSCALL_COMPAT: u16 = 1;
/// x86's `TS_COMPAT` in `thread_info.status`, which the 32-bit syscall
/// entry sets before the `sys_enter` tracepoint
/// (<https://elixir.bootlin.com/linux/v6.18/source/arch/x86/entry/syscall_32.c>).
pub const TS_COMPAT: u32 = 0x0002;
/// `__X32_SYSCALL_BIT`: set in the number of an x32 syscall.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// In `CountKey::nr`: a compat syscall's number (compat calls are counted
/// in `MAP_COUNTS` only, apart from the native ones).
pub const COUNT_NR_COMPAT: u32 = 1 << 31;

/// `KIND_SYSCALL_EXIT` on the wire: the same and the return value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallExitEvent {
    pub event: SyscallEvent,
    pub ret: i64,
}

/// `KIND_TASK_GONE`: the thread `tid` has exited; its identity can go.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskGoneRecord {
    pub kind: u32,
    pub tid: u32,
    /// `CLOCK_BOOTTIME` nanoseconds: the daemon merges the CPUs' rings by
    /// time, so every event record has one at this offset.
    pub ts: u64,
}

/// A syscall joined to its thread's identity: what the daemon hands on
/// (never sent whole by the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallRecord {
    pub header: Header,
    pub nr: i64,
    /// Return value (`KIND_SYSCALL_EXIT` only).
    pub ret: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkRecord {
    /// The parent.
    pub header: Header,
    pub child_pid: u32,
    pub child_tid: u32,
    pub child_ns_pid: u32,
    pub child_ns_tid: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecRecord {
    pub header: Header,
    pub filename: [u8; FILENAME_LEN],
    /// The task's UTS nodename: the container's own hostname.
    pub nodename: [u8; NODENAME_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitRecord {
    pub header: Header,
    /// `task->exit_code`: `status << 8 | signal`.
    pub exit_code: u32,
    pub _pad: u32,
}

/// The kernel enforcing a limit on a task: `oom:mark_victim` (the victim) or
/// a fork/clone refused with `-EAGAIN` (the caller).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforcedRecord {
    pub header: Header,
    /// `ENFORCED_*`.
    pub what: u32,
    /// The refused syscall's number (`ENFORCED_PIDS_LIMIT`), else 0.
    pub nr: u32,
    /// The refused syscall's return value, else 0.
    pub ret: i64,
}

/// What a task may do to the kernel, read at its exec.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrivilegeRecord {
    pub header: Header,
    /// `cred->cap_effective`: bit N = capability N.
    pub cap_effective: u64,
    /// `task->seccomp.mode`: 0 disabled, 1 strict, 2 filter.
    pub seccomp_mode: u32,
    pub no_new_privs: u32,
}

/// `cgroup_mkdir` / `cgroup_rmdir`, in every hierarchy (the daemon keeps
/// hierarchy 0, the unified one).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupRecord {
    pub kind: u32,
    pub hierarchy_id: u32,
    pub ts: u64,
    pub cgroup_id: u64,
    pub level: u32,
    pub _pad: u32,
    /// Path relative to the hierarchy's root, NUL-terminated.
    pub path: [u8; CGROUP_PATH_LEN],
}

/// Slots in `MAP_COUNT_SLOTS` (a power of two).
pub const COUNT_SLOTS: u32 = 256;
/// Syscall numbers counted per slot; higher ones go to `MAP_COUNTS`. A power
/// of two: the kernel side masks the index with it.
pub const COUNT_SLOT_NRS: usize = 512;

/// One (cgroup, pidns) pair's syscall counts on one CPU. A slot is claimed
/// by the first pair that lands on it (`cgroup_id` 0 = free), or taken over
/// on that CPU by another pair once its cgroup is in `MAP_COUNT_RETIRED`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountSlot {
    pub cgroup_id: u64,
    pub pidns: u32,
    pub _pad: u32,
    pub counts: [u64; COUNT_SLOT_NRS],
}

/// Key of `MAP_COUNTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CountKey {
    pub cgroup_id: u64,
    pub pidns: u32,
    pub nr: u32,
}

/// Per-CPU hash: `KvmExitKey` -> exits counted (`--kvm-exits`, the demo's
/// VM under KVM): the only way a VM touches the host kernel.
pub const MAP_KVM_EXITS: &str = "KVM_EXITS";
/// Global (`.rodata`) holding the `KvmFields` read from the running
/// kernel's tracepoint formats.
pub const GLOBAL_KVM_FIELDS: &str = "KVM_FIELDS";
/// On `kvm:kvm_exit`: every exit from the guest to the host kernel.
pub const PROG_KVM_EXIT: &str = "kvm_exit";
/// On `kvm:kvm_userspace_exit`: the exits the host kernel hands on to the
/// VMM process (`KVM_RUN` returning).
pub const PROG_KVM_USERSPACE_EXIT: &str = "kvm_userspace_exit";
/// `KvmExitKey::kind`: an exit to the host kernel (`kvm_exit`).
pub const KVM_EXIT_TO_KERNEL: u32 = 0;
/// `KvmExitKey::kind`: an exit handed on to the VMM (`kvm_userspace_exit`).
pub const KVM_EXIT_TO_VMM: u32 = 1;
/// `KvmFields` value of a field this kernel's format does not have.
pub const KVM_FIELD_ABSENT: u32 = u32::MAX;

/// Key of `MAP_KVM_EXITS`. `reason`: `kvm_exit`'s `exit_reason` (VMX or
/// SVM numbering, as `isa` says), or `kvm_userspace_exit`'s `KVM_EXIT_*`
/// (with `0x8000_0000 | -errno` when `KVM_RUN` failed).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KvmExitKey {
    pub tgid: u32,
    pub kind: u32,
    pub isa: u32,
    pub reason: u32,
}

/// Offsets in the tracepoints' records, from their `format` files.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvmFields {
    pub exit_reason: u32,
    pub isa: u32,
    pub userspace_reason: u32,
    pub userspace_errno: u32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are #[repr(C)] plain integers and byte arrays with explicit
    // padding: every bit pattern is valid and no byte is uninitialised.
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for ClaimOffsets {}
    unsafe impl aya::Pod for CountKey {}
    unsafe impl aya::Pod for KvmExitKey {}
    unsafe impl aya::Pod for KvmFields {}
    unsafe impl aya::Pod for CountSlot {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    /// A change here is a change of the wire format: both sides must agree,
    /// and the sizes must stay multiples of 8 with no implicit padding.
    #[test]
    fn record_sizes_have_no_hidden_padding() {
        assert_eq!(size_of::<Header>(), 72);
        assert_eq!(size_of::<SyscallRecord>(), 88);
        assert_eq!(size_of::<SyscallEvent>(), 32);
        assert_eq!(size_of::<SyscallExitEvent>(), 40);
        assert_eq!(size_of::<TaskGoneRecord>(), 16);
        // Every record of the event rings has its time stamp at
        // `RECORD_TS_OFFSET`: the daemon merges the rings by it.
        assert_eq!(core::mem::offset_of!(Header, ts), RECORD_TS_OFFSET);
        assert_eq!(core::mem::offset_of!(SyscallEvent, ts), RECORD_TS_OFFSET);
        assert_eq!(core::mem::offset_of!(TaskGoneRecord, ts), RECORD_TS_OFFSET);
        assert_eq!(core::mem::offset_of!(ForkRecord, header), 0);
        assert_eq!(core::mem::offset_of!(ExecRecord, header), 0);
        assert_eq!(core::mem::offset_of!(ExitRecord, header), 0);
        assert_eq!(core::mem::offset_of!(EnforcedRecord, header), 0);
        assert_eq!(core::mem::offset_of!(PrivilegeRecord, header), 0);
        assert_eq!(
            core::mem::offset_of!(SyscallEvent, cgroup_id),
            core::mem::offset_of!(Header, cgroup_id)
        );
        assert_eq!(size_of::<ForkRecord>(), 88);
        assert_eq!(size_of::<ExecRecord>(), 72 + FILENAME_LEN + NODENAME_LEN);
        assert_eq!(size_of::<ExitRecord>(), 80);
        assert_eq!(size_of::<CgroupRecord>(), 32 + CGROUP_PATH_LEN);
        assert_eq!(size_of::<EnforcedRecord>(), 88);
        assert_eq!(size_of::<PrivilegeRecord>(), 88);
        assert_eq!(size_of::<ClaimOffsets>(), 24);
        assert_eq!(size_of::<CountKey>(), 16);
        assert_eq!(size_of::<CountSlot>(), 16 + 8 * COUNT_SLOT_NRS);
        assert_eq!(size_of::<KernelOffsets>(), 32 * 4);
        assert_eq!(size_of::<Config>(), 24 + 2 * 8 * SYSCALL_BITMAP_WORDS);
    }
}
