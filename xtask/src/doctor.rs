//! `cargo xtask doctor`: every prerequisite, one line each, with the fix.

use std::{fs, path::Path, process::Command};

use anyhow::Result;

use crate::{
    provision::{find_bpf_linker, find_toolchain},
    util::{is_root, output, which},
};

fn line(ok: bool, what: &str, detail: &str) {
    println!(
        "{} {what}: {detail}",
        if ok { "OK     " } else { "MISSING" }
    );
}

fn kernel_version() -> (u32, u32, String) {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0), release)
}

fn cap_eff() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn doctor() -> Result<()> {
    let (major, minor, release) = kernel_version();
    line(
        (major, minor) >= (5, 8),
        "kernel",
        &if (major, minor) >= (5, 8) {
            format!("Linux {release} (5.8+ needed: BPF ring buffer, tp_btf, CAP_BPF)")
        } else {
            format!("Linux {release} is older than 5.8: upgrade the kernel")
        },
    );

    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    line(
        btf,
        "BTF",
        if btf {
            "/sys/kernel/btf/vmlinux"
        } else {
            "no /sys/kernel/btf/vmlinux: use a kernel built with CONFIG_DEBUG_INFO_BTF=y"
        },
    );

    let caps = cap_eff();
    let privileged = is_root() || (caps & (1 << 39) != 0 && caps & (1 << 38) != 0);
    line(
        privileged,
        "privileges",
        if privileged {
            "root or CAP_BPF + CAP_PERFMON"
        } else {
            "not root: `cargo xtask run` re-runs under sudo -E, or run: sudo setcap cap_bpf,cap_perfmon+ep target/release/observer"
        },
    );
    let unpriv =
        fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").unwrap_or_default();
    line(
        Path::new("/sys/fs/bpf").exists() || !unpriv.is_empty(),
        "bpf syscall",
        &format!(
            "available (kernel.unprivileged_bpf_disabled={})",
            unpriv.trim()
        ),
    );

    let tracefs = Path::new("/sys/kernel/tracing/events").exists();
    line(
        true,
        "tracefs",
        if tracefs {
            "mounted at /sys/kernel/tracing"
        } else {
            "not mounted; the observer mounts it (or: sudo mount -t tracefs tracefs /sys/kernel/tracing)"
        },
    );

    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cg2 = mounts
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned));
    let hybrid = mounts.lines().any(|l| l.contains(" - cgroup "));
    line(cg2.is_some(), "cgroup v2", &match (&cg2, hybrid) {
        (Some(p), true) => format!("hybrid: v1 controllers plus cgroup2 at {p}"),
        (Some(p), false) => format!("unified at {p}"),
        (None, _) => "v1 only: containers are attributed from /proc; mount cgroup2: sudo mount -t cgroup2 none /sys/fs/cgroup/unified".into(),
    });

    match find_toolchain() {
        Some(t) => {
            line(true, "eBPF toolchain", &t.description);
            match find_bpf_linker(t.llvm_major) {
                Some(p) => line(true, "bpf-linker", &p.display().to_string()),
                None => line(false, "bpf-linker", &format!(
                    "missing (`cargo xtask build` installs it): sudo apt-get install llvm-{0}-dev && cargo install bpf-linker --no-default-features --features llvm-{0}",
                    t.llvm_major
                )),
            }
        }
        None => {
            line(false, "eBPF toolchain", "none (`cargo xtask build` installs it): rustup toolchain install nightly --component rust-src, or on Debian 12: sudo apt-get install rustc-web cargo-web rust-web-src");
            line(false, "bpf-linker", "needs the eBPF toolchain first");
        }
    }

    let docker_cli = which("docker").is_some();
    let engine = docker_cli
        && output(Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]))
            .is_some();
    let docker_detail = if engine {
        "engine running (optional: names containers, end-to-end tests)".to_owned()
    } else if which("dockerd").is_some() {
        "(optional) installed but not running: sudo dockerd --iptables=false --bridge=none &"
            .to_owned()
    } else {
        "(optional) not installed: sudo apt-get install docker.io".to_owned()
    };
    println!(
        "{} docker: {docker_detail}",
        if engine { "OK     " } else { "OPTIONAL" }
    );
    runtimes();
    vm();
    Ok(())
}

/// The VM half of the demo: QEMU, KVM, a guest kernel. Optional: without
/// them the demo runs its container half and says what is missing.
fn vm() {
    let found = |ok: bool, what: &str, detail: &str| {
        println!(
            "{} {what}: {detail}",
            if ok { "OK     " } else { "OPTIONAL" }
        );
    };
    let (binary, package) = crate::guest::qemu_names();
    match which(binary) {
        Some(p) => {
            let version = output(Command::new(&p).arg("--version"))
                .and_then(|v| v.lines().next().map(str::to_owned))
                .unwrap_or_else(|| "version unknown".into());
            found(true, "qemu", &format!("{} ({version})", p.display()));
        }
        None => found(
            false,
            "qemu",
            &format!(
                "{binary} not installed (the demo's VM; `cargo xtask demo` installs it): sudo apt-get install {package} \
                 (next to a backports qemu-utils: sudo apt-get install --allow-downgrades {package} qemu-utils/bookworm)"
            ),
        ),
    }
    let (kvm_ok, kvm) = kvm_state();
    found(kvm_ok, "kvm", &kvm);
    match crate::guest::fetched_kernel("bookworm") {
        Some(k) => found(
            true,
            "guest kernel",
            &format!("{} ({})", k.vmlinuz.display(), k.release),
        ),
        None => found(
            false,
            "guest kernel",
            "none fetched yet (`cargo xtask demo` fetches it): cargo xtask guest-kernel bookworm, or pass --vm-kernel PATH",
        ),
    }
}

/// Whether /dev/kvm opens and answers; QEMU then tries KVM first and falls
/// back to TCG when the guest makes no progress (nested KVM that hangs).
fn kvm_state() -> (bool, String) {
    use std::os::fd::AsRawFd;
    let f = match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (false, "no /dev/kvm: the demo's VM runs under TCG (emulated, ~10-20 s to boot); enable virtualization (VT-x/AMD-V, or nested virtualization for a VM) and load kvm_intel or kvm_amd".into())
        }
        Err(e) => {
            return (false, format!("/dev/kvm does not open ({e}): the demo's VM runs under TCG; run as root or join the kvm group (sudo usermod -aG kvm $USER)"))
        }
    };
    // KVM_GET_API_VERSION = _IO(KVMIO 0xAE, 0x00): 12 on every kernel since 2.6.22.
    // SAFETY: an ioctl without argument on a file we own.
    let api = unsafe { libc::ioctl(f.as_raw_fd(), 0xAE00 as _) };
    if api != 12 {
        return (
            false,
            format!(
                "/dev/kvm opens but KVM_GET_API_VERSION says {api}: the demo's VM runs under TCG"
            ),
        );
    }
    let exits = Path::new("/sys/kernel/tracing/events/kvm/kvm_exit").exists()
        || Path::new("/sys/kernel/debug/tracing/events/kvm/kvm_exit").exists()
        || fs::read_to_string("/proc/kallsyms").is_ok_and(|k| k.contains("__tracepoint_kvm_exit"));
    (
        true,
        format!(
            "/dev/kvm usable (API 12); the demo tries KVM and falls back to TCG when a guest makes no progress (nested KVM){}",
            if exits { "; the kvm:kvm_exit tracepoint is present" } else { "" }
        ),
    )
}

/// Which other runtimes are here, and whether their containers get names.
fn runtimes() {
    let found = |ok: bool, rt: &str, detail: &str| {
        println!("{} {rt}: {detail}", if ok { "OK     " } else { "OPTIONAL" });
    };
    if which("podman").is_some() {
        let api = Path::new("/run/podman/podman.sock").exists();
        let store = ["overlay", "vfs", "btrfs", "zfs"].iter().any(|d| {
            Path::new(&format!(
                "/var/lib/containers/storage/{d}-containers/containers.json"
            ))
            .exists()
        });
        found(
            true,
            "podman",
            match (api, store) {
                (true, _) => "installed; named through its API (/run/podman/podman.sock)",
                (false, true) => "installed; named from its container store (/var/lib/containers/storage); for the API: podman system service --time=0 unix:///run/podman/podman.sock &",
                (false, false) => "installed; named from its container store once it has run a container",
            },
        );
    } else {
        found(
            false,
            "podman",
            "not installed (sudo apt-get install podman)",
        );
    }
    let socket = "/run/containerd/containerd.sock";
    if which("containerd").is_some() {
        let answers = Path::new(socket).exists()
            && output(Command::new("ctr").args([
                "--address",
                socket,
                "--timeout",
                "2s",
                "version",
            ]))
            .is_some();
        found(
            answers,
            "containerd",
            &if answers {
                format!("running; containers and Kubernetes pods named through its API ({socket})")
            } else {
                format!("installed but nothing answers on {socket}: its containers are not named; start it (sudo containerd &) or pass --containerd-socket (Docker's own is /var/run/docker/containerd/containerd.sock)")
            },
        );
    } else {
        found(
            false,
            "containerd",
            "not installed (sudo apt-get install containerd)",
        );
    }
    if which("kubelet").is_some() {
        found(
            true,
            "kubernetes",
            "kubelet installed; pods named from containerd's CRI labels (CRI-O's are not named)",
        );
    }
    if which("crio").is_some() {
        found(
            true,
            "crio",
            "installed; attributed by cgroup path, not named (no CRI-O client)",
        );
    }
    found(
        which("systemd-nspawn").is_some(),
        "systemd-nspawn",
        if which("systemd-nspawn").is_some() {
            "installed; machines named by their cgroup path"
        } else {
            "not installed (sudo apt-get install systemd-container)"
        },
    );
    found(
        which("lxc-start").is_some(),
        "lxc",
        if which("lxc-start").is_some() {
            "installed; containers named by their cgroup path, template from /var/lib/lxc/NAME/config"
        } else {
            "not installed (sudo apt-get install lxc)"
        },
    );
}
