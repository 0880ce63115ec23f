//! The one kernel every container shares: its identity, the host's own
//! namespaces to compare against, and whether it runs in a virtual machine.

use std::{ffi::CStr, fs, path::Path};

use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct KernelInfo {
    pub release: String,
    pub version: String,
    pub machine: String,
    pub boot_id: String,
    pub hostname: String,
}

fn field(f: &[libc::c_char]) -> String {
    // SAFETY: utsname fields are NUL-terminated within their arrays.
    unsafe { CStr::from_ptr(f.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

impl KernelInfo {
    pub fn read() -> Self {
        // SAFETY: uname fills the struct; zeroed is a valid utsname.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        unsafe { libc::uname(&mut u) };
        KernelInfo {
            release: field(&u.release),
            version: field(&u.version),
            machine: field(&u.machine),
            boot_id: fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            hostname: field(&u.nodename),
        }
    }
}

/// The inode number in a namespace link such as `pid:[4026531836]`.
pub fn parse_ns_link(link: &str) -> Option<u32> {
    let start = link.find('[')? + 1;
    let end = link[start..].find(']')? + start;
    link[start..end].parse().ok()
}

/// The namespace inode of `kind` ("pid", "mnt", "uts", "net") for a process.
pub fn ns_inode(pid: &str, kind: &str) -> Option<u32> {
    let link = fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    parse_ns_link(&link.to_string_lossy())
}

/// The host's namespaces, as the daemon's own (it runs in the host's): on
/// some hosts `/proc/1/ns` is not readable even by root.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct HostNamespaces {
    pub pidns: u32,
    pub mntns: u32,
    pub utsns: u32,
    pub netns: u32,
}

impl HostNamespaces {
    pub fn read() -> Self {
        let get = |k| ns_inode("self", k).unwrap_or(0);
        HostNamespaces {
            pidns: get("pid"),
            mntns: get("mnt"),
            utsns: get("uts"),
            netns: get("net"),
        }
    }
}

/// Offset to add to a `CLOCK_BOOTTIME` timestamp to get Unix time, in ns.
pub fn boot_to_unix_offset_ns() -> i64 {
    fn now(clock: libc::clockid_t) -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid clock id and out pointer.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_BOOTTIME)
}

/// Whether this kernel itself runs under a hypervisor, and how we know.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Virtualization {
    pub virtual_machine: bool,
    /// What gave it away: "cpu hypervisor flag", "DMI vendor …", …
    pub evidence: Vec<String>,
    /// `systemd-detect-virt --vm` or the DMI product, where known.
    pub hypervisor: Option<String>,
}

/// Pure: decides from the host's files, for tests.
pub fn detect_virtualization(
    cpuinfo: &str,
    dmi_vendor: &str,
    dmi_product: &str,
    detect_virt: Option<&str>,
) -> Virtualization {
    let mut evidence = Vec::new();
    let mut hypervisor = None;
    if cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
    {
        evidence.push("cpu hypervisor flag".to_owned());
    }
    const VENDORS: [&str; 9] = [
        "QEMU",
        "KVM",
        "VMware",
        "innotek",
        "Xen",
        "Microsoft Corporation",
        "Amazon EC2",
        "Google",
        "Firecracker",
    ];
    let dmi = format!("{} {}", dmi_vendor.trim(), dmi_product.trim());
    if let Some(v) = VENDORS.iter().find(|v| dmi.contains(*v)) {
        evidence.push(format!("DMI: {}", dmi.trim()));
        hypervisor = Some(v.to_string());
    }
    if let Some(d) = detect_virt
        .map(str::trim)
        .filter(|d| !d.is_empty() && *d != "none")
    {
        evidence.push(format!("systemd-detect-virt: {d}"));
        hypervisor = Some(d.to_owned());
    }
    Virtualization {
        virtual_machine: !evidence.is_empty(),
        evidence,
        hypervisor,
    }
}

pub fn virtualization() -> Virtualization {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let detect = if Path::new("/usr/bin/systemd-detect-virt").exists() {
        std::process::Command::new("systemd-detect-virt")
            .arg("--vm")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        None
    };
    detect_virtualization(
        &read("/proc/cpuinfo"),
        &read("/sys/class/dmi/id/sys_vendor"),
        &read("/sys/class/dmi/id/product_name"),
        detect.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_links() {
        assert_eq!(parse_ns_link("pid:[4026531836]"), Some(4026531836));
        assert_eq!(parse_ns_link("uts:[4026532201]"), Some(4026532201));
        assert_eq!(parse_ns_link("garbage"), None);
        assert_eq!(parse_ns_link("pid:[]"), None);
    }

    #[test]
    fn reads_this_kernel() {
        let k = KernelInfo::read();
        assert!(!k.release.is_empty() && !k.machine.is_empty());
        assert_eq!(k.boot_id.len(), 36, "boot_id is a UUID: {}", k.boot_id);
        let host = HostNamespaces::read();
        assert_ne!(host.pidns, 0);
    }

    #[test]
    fn detects_virtual_machines() {
        let vm = detect_virtualization("flags\t\t: fpu vme hypervisor lahf_lm\n", "", "", None);
        assert!(vm.virtual_machine);
        let kvm = detect_virtualization(
            "flags : fpu\n",
            "QEMU\n",
            "Standard PC (Q35 + ICH9, 2009)\n",
            Some("kvm\n"),
        );
        assert!(kvm.virtual_machine);
        assert_eq!(kvm.hypervisor.as_deref(), Some("kvm"));
        let metal = detect_virtualization(
            "flags : fpu vme\n",
            "Dell Inc.\n",
            "PowerEdge R640\n",
            Some("none\n"),
        );
        assert!(!metal.virtual_machine);
        assert!(metal.evidence.is_empty());
    }
}
