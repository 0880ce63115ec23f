//! What the observer needs from the host, checked up front so that a missing
//! privilege is one line naming it and the fix.

use std::fs;

use anyhow::{bail, Result};

/// Capability bits (linux/capability.h).
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYS_RESOURCE: u32 = 24;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// The effective capability set of this process, from /proc/self/status.
pub fn effective_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s))
        .unwrap_or(0)
}

/// `CapEff:\t000001ffffffffff` -> bits. Pure, for tests.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

pub fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// Loading tracing programs needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN,
/// which implies both on kernels before 5.8).
pub fn check_bpf_privileges() -> Result<()> {
    let caps = effective_caps();
    let admin = has_cap(caps, CAP_SYS_ADMIN);
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(c, _)| !admin && !has_cap(caps, *c))
        .map(|(_, n)| n)
        .collect();
    if !missing.is_empty() {
        let release = crate::kernel_info::KernelInfo::read().release;
        bail!(
            "missing {}: run as root (sudo -E observer …, or `cargo xtask run`), or grant the \
             capabilities: {}",
            missing.join(" and "),
            setcap_command(&release, "$(command -v observer)")
        );
    }
    Ok(())
}

/// The one `setcap` advice, for this kernel: CAP_SYS_RESOURCE only where
/// BPF memory is still charged to `RLIMIT_MEMLOCK` (before 5.11, when
/// memcg accounting replaced it).
pub fn setcap_command(release: &str, binary: &str) -> String {
    let caps = if needs_memlock(release) {
        "cap_bpf,cap_perfmon,cap_sys_resource"
    } else {
        "cap_bpf,cap_perfmon"
    };
    format!("sudo setcap {caps}+ep {binary}")
}

/// Whether a kernel release (`6.18.44-…`, `5.10.0-28-amd64`) is before 5.11.
pub fn needs_memlock(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) < (5, 11)
}

/// For privileged tests: prints why the test can't run here and returns, or
/// fails the test when running in CI (`CI=true`), where it must run.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("privileged test can't run in CI: {why}");
    }
    eprintln!("skipping privileged test: {why}");
}

/// Whether this process can load and attach tracing programs.
pub fn can_trace() -> bool {
    check_bpf_privileges().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_capability_sets() {
        let root = "Name:\tcat\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n";
        let caps = parse_cap_eff(root).unwrap();
        assert!(
            has_cap(caps, CAP_BPF) && has_cap(caps, CAP_PERFMON) && has_cap(caps, CAP_SYS_ADMIN)
        );
        let user = "CapEff:\t0000000000000000\n";
        assert_eq!(parse_cap_eff(user), Some(0));
        // cap_bpf,cap_perfmon only: bits 38 and 39.
        let bpf_only = "CapEff:\t000000c000000000\n";
        let caps = parse_cap_eff(bpf_only).unwrap();
        assert!(has_cap(caps, CAP_BPF) && has_cap(caps, CAP_PERFMON));
        assert!(!has_cap(caps, CAP_SYS_ADMIN));
        assert_eq!(parse_cap_eff("garbage"), None);
    }

    #[test]
    fn setcap_advice_matches_the_kernel() {
        assert_eq!(
            setcap_command("6.18.44-fc-v595", "/usr/local/bin/observer"),
            "sudo setcap cap_bpf,cap_perfmon+ep /usr/local/bin/observer"
        );
        assert!(setcap_command("5.11.0", "o").contains("cap_perfmon+ep"));
        assert!(setcap_command("5.10.0-28-amd64", "o").contains("cap_sys_resource"));
        assert!(needs_memlock("4.19.0") && !needs_memlock("5.11.1") && !needs_memlock("6.1.0"));
    }
}
