//! KVM exits per VMM process: what the host kernel sees of a VM. A guest's
//! own syscalls never reach this kernel; its exits to it do (`kvm_exit`),
//! and some of those are handed on to the VMM (`kvm_userspace_exit`).
//! Counted in the kernel, per process and reason; attached only when asked
//! (`--kvm-exits`). Classic tracepoints: their records are the stable
//! interface, read at the offsets the running kernel's `format` files give.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use observer_common::{KvmExitKey, KVM_EXIT_TO_KERNEL, KVM_EXIT_TO_VMM, KVM_FIELD_ABSENT};

use crate::maps::{ro, KVM_EXITS, KVM_FIELDS};

#[inline(always)]
fn field(ctx: &TracePointContext, offset: u32) -> Option<u32> {
    if offset == KVM_FIELD_ABSENT {
        return None;
    }
    unsafe { ctx.read_at::<u32>(offset as usize) }.ok()
}

#[inline(always)]
fn count(kind: u32, isa: u32, reason: u32) {
    let key = KvmExitKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        kind,
        isa,
        reason,
    };
    match KVM_EXITS.get_ptr_mut(&key) {
        Some(n) => unsafe { *n += 1 },
        None => {
            // A full map loses this exit's count; the daemon reads a
            // handful of processes, far below its size.
            let _ = KVM_EXITS.insert(&key, &1, 0);
        }
    }
}

/// `TP_PROTO(struct kvm_vcpu *vcpu, u32 isa)`; the record has
/// `exit_reason` and `isa` (1 VMX, 2 SVM).
#[tracepoint(category = "kvm", name = "kvm_exit")]
pub fn kvm_exit(ctx: TracePointContext) -> u32 {
    let f = ro(&KVM_FIELDS);
    let Some(reason) = field(&ctx, f.exit_reason) else {
        return 0;
    };
    let isa = field(&ctx, f.isa).unwrap_or(0);
    count(KVM_EXIT_TO_KERNEL, isa, reason);
    0
}

/// `TP_PROTO(__u32 reason, int errno)`: `KVM_RUN` returning to the VMM.
#[tracepoint(category = "kvm", name = "kvm_userspace_exit")]
pub fn kvm_userspace_exit(ctx: TracePointContext) -> u32 {
    let f = ro(&KVM_FIELDS);
    let Some(reason) = field(&ctx, f.userspace_reason) else {
        return 0;
    };
    let errno = field(&ctx, f.userspace_errno).unwrap_or(0) as i32;
    let reason = if errno < 0 {
        0x8000_0000 | errno.unsigned_abs()
    } else {
        reason
    };
    count(KVM_EXIT_TO_VMM, 0, reason);
    0
}
