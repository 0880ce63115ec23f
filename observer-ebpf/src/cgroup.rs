//! `cgroup_mkdir` / `cgroup_rmdir`: the path of every new cgroup, handed over
//! by the kernel at the moment it is made, so that a container that lives for
//! milliseconds is still named by its path after its cgroup is gone. They go
//! through a ring buffer of their own (`CGROUP_EVENTS`).

use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, bpf_probe_read_kernel_str_bytes},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use observer_common::{CgroupRecord, KIND_CGROUP_MKDIR, KIND_CGROUP_RMDIR};

use crate::{
    maps::{rare_wakeup, record_loss, ro, CGROUP_EVENTS, OFFSETS},
    task::{cgroup_kn_id, Access, Direct, Probe},
};

/// `TP_PROTO(struct cgroup *cgrp, const char *path)`
#[btf_tracepoint(function = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: BtfTracePointContext) -> i32 {
    emit::<Direct>(&ctx, KIND_CGROUP_MKDIR)
}

#[btf_tracepoint(function = "cgroup_rmdir")]
pub fn cgroup_rmdir(ctx: BtfTracePointContext) -> i32 {
    emit::<Direct>(&ctx, KIND_CGROUP_RMDIR)
}

#[btf_tracepoint(function = "cgroup_mkdir")]
pub fn cgroup_mkdir_probe(ctx: BtfTracePointContext) -> i32 {
    emit::<Probe>(&ctx, KIND_CGROUP_MKDIR)
}

#[btf_tracepoint(function = "cgroup_rmdir")]
pub fn cgroup_rmdir_probe(ctx: BtfTracePointContext) -> i32 {
    emit::<Probe>(&ctx, KIND_CGROUP_RMDIR)
}

#[inline(always)]
fn emit<A: Access>(ctx: &BtfTracePointContext, kind: u32) -> i32 {
    let cgrp: *const u8 = ctx.arg(0);
    let path: *const u8 = ctx.arg(1);
    let id = cgroup_kn_id::<A>(cgrp);
    // A ring of their own: syscall records filling the event ring can't
    // crowd these out.
    let Some(mut entry) = CGROUP_EVENTS.reserve::<CgroupRecord>(0) else {
        record_loss(id);
        return 0;
    };
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    rec.kind = kind;
    rec.ts = unsafe { bpf_ktime_get_boot_ns() };
    rec.cgroup_id = id;
    rec._pad = 0;
    unsafe {
        let root: *const u8 = A::ld(cgrp, ro(&OFFSETS.cgroup_root));
        rec.hierarchy_id = A::ld(root, ro(&OFFSETS.cgroup_root_hierarchy_id));
        rec.level = A::ld(cgrp, ro(&OFFSETS.cgroup_level));
        rec.path[0] = 0;
        let _ = bpf_probe_read_kernel_str_bytes(path, &mut rec.path);
    }
    entry.submit(rare_wakeup());
    0
}
