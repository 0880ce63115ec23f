//! Maps and read-only globals shared by every program.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    btf_maps::{ArrayOfMaps, RingBuf as BtfRingBuf},
    helpers::bpf_get_smp_processor_id,
    macros::{btf_map, map},
    maps::{ring_buf::RingBufEntry, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use observer_common::{
    Config, CountKey, CountSlot, KernelOffsets, KvmExitKey, KvmFields, CGROUP_DROP, COUNT_SLOTS,
    FLAG_CGROUP_FILTER, IDENTITY_ENTRIES, KVM_FIELD_ABSENT, STAT_COUNT, STAT_EMITTED, STAT_LOST,
    VERDICT_CACHE_SLOTS,
};

/// An event ring as the kernel checks it against the array's template:
/// the daemon makes the real ones, sized by `--ring-buffer-kb`.
pub type EventRing = BtfRingBuf<u8, 4096>;

/// The event rings, one slot per possible CPU (the daemon sets the length).
/// The daemon fills every slot: with each CPU's own ring (`--rings
/// per-cpu`: no two CPUs ever contend for a ring's lock or its producer
/// position), or with one ring for all (`--rings shared`). The programs
/// don't know which: they write to their CPU's slot.
#[btf_map]
pub static EVENT_RINGS: ArrayOfMaps<EventRing, 1> = ArrayOfMaps::new();

/// Space for a `T` in this CPU's event ring; None when the ring is full
/// (or, never in a running observer, when its slot is empty).
#[inline(always)]
pub fn reserve<T: 'static>() -> Option<RingBufEntry<T>> {
    let cpu = unsafe { bpf_get_smp_processor_id() };
    EVENT_RINGS.get(cpu)?.reserve_untyped::<T>(0)
}

/// `cgroup_mkdir`/`cgroup_rmdir` records only (~300 bytes each, a few per
/// container): room for about 900 between two reads.
#[map(name = "CGROUP_EVENTS")]
pub static CGROUP_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 18, 0);

#[map(name = "COUNT_SLOTS")]
pub static COUNT_SLOTS_MAP: PerCpuArray<CountSlot> = PerCpuArray::with_max_entries(COUNT_SLOTS, 0);

#[map(name = "COUNTS")]
pub static COUNTS: PerCpuHashMap<CountKey, u64> =
    PerCpuHashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// Removed cgroups whose counts the daemon has read for the last time: their
/// count slots are free to take (cgroup ID -> 1).
#[map(name = "COUNT_RETIRED")]
pub static COUNT_RETIRED: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

#[map(name = "LOSS")]
pub static LOSS: PerCpuHashMap<u64, u64> = PerCpuHashMap::with_max_entries(4096, 0);

#[map(name = "ONCPU")]
pub static ONCPU: PerCpuHashMap<u64, u64> = PerCpuHashMap::with_max_entries(4096, 0);

/// What a task's last identity record said, as far as a syscall can tell
/// it changed without reading the rest: its cgroup and comm, and whether it
/// has since called `setns`/`unshare`.
#[repr(C)]
pub struct Sent {
    pub cgroup_id: u64,
    pub comm: [u64; 2],
    /// Set by `setns`/`unshare`: the next record sends the identity again.
    pub stale: u32,
    pub _pad: u32,
}

/// tid -> `Sent`. An LRU hash rather than task-local storage: the same map
/// on every supported kernel (task storage came in 5.11), and an entry it
/// evicts only costs one identity record more. Entries go at fork (a reused
/// tid), exec and exit.
#[map(name = "IDENTITY")]
pub static IDENTITY: LruHashMap<u32, Sent> = LruHashMap::with_max_entries(IDENTITY_ENTRIES, 0);

#[map(name = "STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

#[map(name = "CGROUP_FILTER")]
pub static CGROUP_FILTER: HashMap<u64, u32> = HashMap::with_max_entries(8192, 0);

#[map(name = "SWITCH_TS")]
pub static SWITCH_TS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

// Both globals live in `.rodata`, which aya freezes before load: the verifier
// then reads their values as constants, which is what lets the programs load
// kernel fields directly through BTF-typed pointers at these offsets.
#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets {
    task_pid: 0,
    task_tgid: 0,
    task_group_leader: 0,
    task_thread_pid: 0,
    task_nsproxy: 0,
    task_cgroups: 0,
    task_comm: 0,
    task_exit_code: 0,
    pid_level: 0,
    pid_numbers: 0,
    upid_size: 0,
    upid_nr: 0,
    upid_ns: 0,
    pidns_inum: 0,
    nsproxy_uts: 0,
    nsproxy_mnt: 0,
    nsproxy_net: 0,
    utsns_inum: 0,
    utsns_nodename: 0,
    mntns_inum: 0,
    netns_inum: 0,
    css_set_dfl_cgrp: 0,
    cgroup_kn: 0,
    cgroup_root: 0,
    cgroup_level: 0,
    kernfs_node_id: 0,
    cgroup_root_hierarchy_id: 0,
    bprm_filename: 0,
    task_signal: 0,
    signal_live: 0,
    task_ti_status: 0,
    _pad: 0,
};

#[unsafe(no_mangle)]
pub static CONFIG: Config = Config {
    self_tgid: 0,
    mode: 0,
    flags: 0,
    wakeup_every: 512,
    split: 0,
    _pad: 0,
    syscall_bitmap: [0; 8],
    compat_syscall_bitmap: [0; 8],
};

#[map(name = "KVM_EXITS")]
pub static KVM_EXITS: PerCpuHashMap<KvmExitKey, u64> = PerCpuHashMap::with_max_entries(4096, 0);

#[unsafe(no_mangle)]
pub static KVM_FIELDS: KvmFields = KvmFields {
    exit_reason: KVM_FIELD_ABSENT,
    isa: KVM_FIELD_ABSENT,
    userspace_reason: KVM_FIELD_ABSENT,
    userspace_errno: KVM_FIELD_ABSENT,
};

/// Reads a `.rodata` value without letting the compiler fold the
/// compile-time placeholder in.
#[inline(always)]
pub fn ro<T: Copy>(v: &T) -> T {
    unsafe { core::ptr::read_volatile(v) }
}

#[inline(always)]
pub fn stat_add(slot: u32, n: u64) -> u64 {
    match STATS.get_ptr_mut(slot) {
        Some(p) => unsafe {
            *p += n;
            *p
        },
        None => 0,
    }
}

/// Per-CPU direct-mapped cache of the daemon's verdicts, indexed by the low
/// bits of the cgroup ID, each slot `id << 1 | drop`: an inlined array
/// lookup in front of the hash lookup on every event. Safe to cache because
/// the daemon sets a cgroup's verdict once and never changes it, and cgroup
/// IDs are never reused, so a slot never goes stale. Cgroups without a
/// verdict yet (new ones) are not cached and pass.
#[map(name = "VERDICT_CACHE")]
pub static VERDICT_CACHE: PerCpuArray<u64> = PerCpuArray::with_max_entries(VERDICT_CACHE_SLOTS, 0);

/// Whether the daemon asked to drop this cgroup's events (the host's
/// cgroups, when only containers are watched, or containers not selected).
#[inline(always)]
pub fn cgroup_dropped(cgroup_id: u64) -> bool {
    if ro(&CONFIG.flags) & FLAG_CGROUP_FILTER == 0 {
        return false;
    }
    let slot = VERDICT_CACHE.get_ptr_mut(cgroup_id as u32 & (VERDICT_CACHE_SLOTS - 1));
    if let Some(slot) = slot {
        let cached = unsafe { *slot };
        if cached >> 1 == cgroup_id {
            return cached & 1 == 1;
        }
    }
    match unsafe { CGROUP_FILTER.get(&cgroup_id) } {
        Some(v) => {
            let drop = *v == CGROUP_DROP;
            if let Some(slot) = slot {
                unsafe { *slot = cgroup_id << 1 | drop as u64 };
            }
            drop
        }
        None => false,
    }
}

/// A full ring buffer loses the record: count it, per CPU and per cgroup.
#[inline(always)]
pub fn record_loss(cgroup_id: u64) {
    stat_add(STAT_LOST, 1);
    match LOSS.get_ptr_mut(&cgroup_id) {
        Some(p) => unsafe { *p += 1 },
        None => {
            let _ = LOSS.insert(&cgroup_id, &1, 0);
        }
    }
}

/// Wakeup flags for a high-rate record: wake the daemon once every
/// `wakeup_every` records per CPU instead of once per record, so that it
/// drains in batches (a wakeup costs the traced task microseconds). A
/// per-CPU counter is cheap; asking the ring for the bytes waiting
/// (`BPF_RB_AVAIL_DATA`) reads the consumer position, a cache line the
/// reader on another CPU keeps writing, and measured slower. The daemon
/// also drains on a short timer, which bounds the latency of the rest.
#[inline(always)]
pub fn batched_wakeup() -> u64 {
    let n = stat_add(STAT_EMITTED, 1);
    let every = ro(&CONFIG.wakeup_every) as u64;
    if every <= 1 || n & (every - 1) == 0 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Rare records (exec, fork, exit, cgroups) always wake the daemon.
#[inline(always)]
pub fn rare_wakeup() -> u64 {
    stat_add(STAT_EMITTED, 1);
    BPF_RB_FORCE_WAKEUP as u64
}
