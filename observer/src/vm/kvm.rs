//! KVM exits per VMM process (`--kvm-exits`): read from the kernel's
//! counts, named, and written as a `kvm_exits` record whenever they change.
//! The field offsets come from the running kernel's tracepoint formats.

use std::collections::{BTreeMap, HashMap};

use aya::maps::{MapData, PerCpuHashMap};
use observer_common::{KvmExitKey, KvmFields, KVM_EXIT_TO_KERNEL, KVM_FIELD_ABSENT};
use serde_json::{json, Value};

const TRACEFS: &str = "/sys/kernel/tracing/events/kvm";

/// The offset of a 4-byte field in a tracepoint's `format` file.
pub fn field_offset(format: &str, name: &str) -> Option<u32> {
    format.lines().find_map(|l| {
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in l.trim().split(';') {
            let part = part.trim();
            if let Some(d) = part.strip_prefix("field:") {
                decl = d.split_whitespace().last();
            } else if let Some(o) = part.strip_prefix("offset:") {
                offset = o.parse::<u32>().ok();
            } else if let Some(s) = part.strip_prefix("size:") {
                size = s.parse::<u32>().ok();
            }
        }
        (decl == Some(name) && size == Some(4))
            .then_some(offset)
            .flatten()
    })
}

/// The offsets the kernel programs read, or None without KVM's tracepoints.
pub fn read_fields() -> Option<KvmFields> {
    let exit = std::fs::read_to_string(format!("{TRACEFS}/kvm_exit/format")).unwrap_or_default();
    let user =
        std::fs::read_to_string(format!("{TRACEFS}/kvm_userspace_exit/format")).unwrap_or_default();
    let or_absent = |o: Option<u32>| o.unwrap_or(KVM_FIELD_ABSENT);
    let f = KvmFields {
        exit_reason: or_absent(field_offset(&exit, "exit_reason")),
        isa: or_absent(field_offset(&exit, "isa")),
        userspace_reason: or_absent(field_offset(&user, "reason")),
        userspace_errno: or_absent(field_offset(&user, "errno")),
    };
    (f.exit_reason != KVM_FIELD_ABSENT || f.userspace_reason != KVM_FIELD_ABSENT).then_some(f)
}

/// Whether the running kernel has the tracepoint `kvm:NAME`.
pub fn has_tracepoint(name: &str) -> bool {
    std::path::Path::new(&format!("{TRACEFS}/{name}/format")).exists()
}

/// `kvm_exit`'s reason, named as the kernel's own `print fmt` names it
/// (`arch/x86/include/uapi/asm/vmx.h` and `svm.h`) for the common ones.
pub fn exit_name(isa: u32, reason: u32) -> String {
    match isa {
        1 => {
            let basic = reason & 0xffff;
            let name = match basic {
                0 => "EXCEPTION_NMI",
                1 => "EXTERNAL_INTERRUPT",
                2 => "TRIPLE_FAULT",
                7 => "INTERRUPT_WINDOW",
                10 => "CPUID",
                12 => "HLT",
                16 => "RDTSC",
                18 => "VMCALL",
                28 => "CR_ACCESS",
                30 => "IO_INSTRUCTION",
                31 => "MSR_READ",
                32 => "MSR_WRITE",
                40 => "PAUSE_INSTRUCTION",
                44 => "APIC_ACCESS",
                45 => "EOI_INDUCED",
                48 => "EPT_VIOLATION",
                49 => "EPT_MISCONFIG",
                52 => "PREEMPTION_TIMER",
                55 => "XSETBV",
                56 => "APIC_WRITE",
                _ => "",
            };
            let name = if name.is_empty() {
                format!("VMX_{basic}")
            } else {
                name.to_owned()
            };
            if reason & 0x8000_0000 != 0 {
                format!("{name} FAILED_VMENTRY")
            } else {
                name
            }
        }
        2 => match reason {
            0x040..=0x05f => format!("exception {}", reason - 0x40),
            0x060 => "interrupt".into(),
            0x061 => "nmi".into(),
            0x064 => "vintr".into(),
            0x06e => "rdtsc".into(),
            0x072 => "cpuid".into(),
            0x077 => "pause".into(),
            0x078 => "hlt".into(),
            0x07b => "io".into(),
            0x07c => "msr".into(),
            0x07f => "shutdown".into(),
            0x081 => "hypercall".into(),
            0x08d => "xsetbv".into(),
            0x400 => "npf".into(),
            r => format!("svm_{r:#x}"),
        },
        isa => format!("isa{isa}_{reason}"),
    }
}

/// `kvm_userspace_exit`'s `KVM_EXIT_*` (`include/uapi/linux/kvm.h`).
pub fn vmm_exit_name(reason: u32) -> String {
    if reason & 0x8000_0000 != 0 {
        let errno = reason & 0x7fff_ffff;
        return if errno == libc::EINTR as u32 {
            "restart (EINTR)".into()
        } else {
            format!(
                "error ({})",
                crate::errno::name(errno as i64).unwrap_or("?")
            )
        };
    }
    match reason {
        0 => "UNKNOWN",
        1 => "EXCEPTION",
        2 => "IO",
        3 => "HYPERCALL",
        4 => "DEBUG",
        5 => "HLT",
        6 => "MMIO",
        7 => "IRQ_WINDOW_OPEN",
        8 => "SHUTDOWN",
        9 => "FAIL_ENTRY",
        10 => "INTR",
        17 => "INTERNAL_ERROR",
        24 => "SYSTEM_EVENT",
        r => return format!("KVM_EXIT_{r}"),
    }
    .into()
}

/// Per process: exits to the host kernel and exits handed on to the VMM,
/// by name.
pub type Counts = BTreeMap<u32, (BTreeMap<String, u64>, BTreeMap<String, u64>)>;

/// Sums the per-CPU counts and names them.
pub fn named(raw: &[(KvmExitKey, u64)]) -> Counts {
    let mut out = Counts::new();
    for (k, n) in raw {
        let e = out.entry(k.tgid).or_default();
        if k.kind == KVM_EXIT_TO_KERNEL {
            *e.0.entry(exit_name(k.isa, k.reason)).or_default() += n;
        } else {
            *e.1.entry(vmm_exit_name(k.reason)).or_default() += n;
        }
    }
    out
}

/// The kernel's counts, and what was last written of them.
pub struct KvmExits {
    map: PerCpuHashMap<MapData, KvmExitKey, u64>,
    comms: HashMap<u32, Option<String>>,
    last: Option<Counts>,
}

impl KvmExits {
    pub fn new(map: PerCpuHashMap<MapData, KvmExitKey, u64>) -> Self {
        KvmExits {
            map,
            comms: HashMap::new(),
            last: None,
        }
    }

    /// The `kvm_exits` record (cumulative since the start) when the counts
    /// changed since the last one.
    pub fn record(&mut self, ts: i64) -> Option<String> {
        let raw: Vec<(KvmExitKey, u64)> = self
            .map
            .iter()
            .flatten()
            .map(|(k, v)| (k, v.iter().sum()))
            .collect();
        let counts = named(&raw);
        if counts.is_empty() || self.last.as_ref() == Some(&counts) {
            return None;
        }
        let processes: Vec<Value> = counts
            .iter()
            .map(|(pid, (kernel, vmm))| {
                // The name while the process lives; kept once read.
                let comm = self
                    .comms
                    .entry(*pid)
                    .or_insert_with(|| {
                        std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .ok()
                            .map(|c| c.trim().to_owned())
                    })
                    .clone();
                json!({
                    "pid": pid,
                    "comm": comm,
                    "exits_total": kernel.values().sum::<u64>(),
                    "exits": kernel,
                    "to_vmm_total": vmm.values().sum::<u64>(),
                    "to_vmm": vmm,
                })
            })
            .collect();
        self.last = Some(counts);
        Some(json!({"type": "kvm_exits", "ts": ts, "processes": processes}).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of 6.18's `events/kvm/kvm_exit/format` and
    /// `kvm_userspace_exit/format`.
    const EXIT: &str = "name: kvm_exit\nID: 103\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:unsigned int exit_reason;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:unsigned long guest_rip;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:u32 isa;\toffset:24;\tsize:4;\tsigned:0;\n";
    const USER: &str = "name: kvm_userspace_exit\nformat:\n\tfield:__u32 reason;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:int errno;\toffset:12;\tsize:4;\tsigned:1;\n";

    #[test]
    fn offsets_come_from_the_format_files() {
        assert_eq!(field_offset(EXIT, "exit_reason"), Some(8));
        assert_eq!(field_offset(EXIT, "isa"), Some(24));
        // Not a 4-byte field: not read as one.
        assert_eq!(field_offset(EXIT, "guest_rip"), None);
        assert_eq!(field_offset(EXIT, "reason"), None);
        assert_eq!(field_offset(USER, "reason"), Some(8));
        assert_eq!(field_offset(USER, "errno"), Some(12));
    }

    #[test]
    fn exits_are_named_per_isa_and_summed_per_process() {
        assert_eq!(exit_name(1, 30), "IO_INSTRUCTION");
        assert_eq!(exit_name(1, 12), "HLT");
        assert_eq!(exit_name(1, 0x8000_0021), "VMX_33 FAILED_VMENTRY");
        assert_eq!(exit_name(2, 0x7b), "io");
        assert_eq!(exit_name(2, 0x4e), "exception 14");
        assert_eq!(vmm_exit_name(2), "IO");
        assert_eq!(vmm_exit_name(5), "HLT");
        assert_eq!(vmm_exit_name(0x8000_0004), "restart (EINTR)");
        let k = |tgid, kind, isa, reason| KvmExitKey {
            tgid,
            kind,
            isa,
            reason,
        };
        let c = named(&[
            (k(7, 0, 1, 30), 10),
            (k(7, 1, 0, 2), 10),
            (k(7, 1, 0, 5), 1),
            (k(8, 0, 1, 12), 3),
        ]);
        assert_eq!(c[&7].0["IO_INSTRUCTION"], 10);
        assert_eq!(c[&7].1["IO"], 10);
        assert_eq!(c[&7].1["HLT"], 1);
        assert_eq!(c[&8].0["HLT"], 3);
        assert!(c[&8].1.is_empty());
    }
}
