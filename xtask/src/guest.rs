//! What a guest VM needs from the build: a Debian kernel of its own and
//! static binaries to be its user space, plus QEMU itself.
//!
//! Usage (from other xtask code):
//! ```ignore
//! let k = guest::fetch_kernel("bookworm")?;     // or "bullseye" (5.10), "trixie" (6.12)
//! // k.vmlinuz: the bzImage; k.modules: lib/modules/<release> (NIC drivers:
//! // k.module("virtio_net")); k.release: "6.1.0-50-amd64".
//! let bins = guest::build_static()?;            // bins.observer, bins.workload
//! guest::ensure_qemu()?;                        // installs qemu-system-* when missing
//! ```
//! Kernels come from the distribution's mirror with a private apt setup
//! under `target/guest/<suite>/apt` (the machine's sources and package state
//! are never touched), `apt-get download` of the package `linux-image-<arch>`
//! depends on, and `dpkg -x` under `target/guest/<suite>/root`: unpacked,
//! never installed. A second call downloads nothing (`kernel.json` records
//! what was unpacked). `xtask guest-kernel SUITE` prints the paths as JSON
//! for tests: `OBSERVER_GUEST_KERNEL` (and `OBSERVER_GUEST_KERNEL_<SUITE>`)
//! is how `cargo xtask test` hands them on.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::util::{apt_install, dpkg_installed, output, run, which, workspace_root};

/// The mirror every suite's kernel comes from.
const MIRROR: &str = "http://deb.debian.org/debian";

/// A guest kernel unpacked under target/.
#[derive(Clone, Debug)]
pub struct GuestKernel {
    pub suite: String,
    /// The package unpacked (`linux-image-6.1.0-50-amd64`).
    pub package: String,
    /// Its `uname -r` (`6.1.0-50-amd64`).
    pub release: String,
    /// The bootable image (`-kernel`).
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of that kernel.
    pub modules: PathBuf,
}

impl GuestKernel {
    /// The path of module `name` (`virtio_net`, `e1000`, `failover`) in the
    /// kernel's tree, compressed or not.
    pub fn module(&self, name: &str) -> Option<PathBuf> {
        fn walk(dir: &Path, want: &[String]) -> Option<PathBuf> {
            for e in fs::read_dir(dir).ok()?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    if let Some(f) = walk(&p, want) {
                        return Some(f);
                    }
                } else if p
                    .file_name()
                    .is_some_and(|n| want.iter().any(|w| *w == n.to_string_lossy()))
                {
                    return Some(p);
                }
            }
            None
        }
        let want: Vec<String> = ["", ".xz", ".zst", ".gz"]
            .iter()
            .map(|c| format!("{name}.ko{c}"))
            .collect();
        walk(&self.modules.join("kernel"), &want)
    }

    pub fn to_json(&self) -> serde_json::Value {
        // The NIC drivers a guest with user networking needs (modules in
        // Debian's kernels): e1000 alone, or virtio_net after the others.
        let nic_modules: std::collections::BTreeMap<&str, PathBuf> = [
            "e1000",
            "virtio",
            "virtio_ring",
            "virtio_pci_legacy_dev",
            "virtio_pci_modern_dev",
            "virtio_pci",
            "failover",
            "net_failover",
            "virtio_net",
        ]
        .into_iter()
        .filter_map(|m| Some((m, self.module(m)?)))
        .collect();
        json!({
            "suite": self.suite,
            "package": self.package,
            "release": self.release,
            "vmlinuz": self.vmlinuz,
            "modules": self.modules,
            "nic_modules": nic_modules,
        })
    }
}

/// Debian's name for this machine's architecture.
fn deb_arch() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    }
}

/// `Depends: linux-image-6.1.0-50-amd64` in `apt-cache depends` -> the
/// package name. Pure, for tests.
pub fn image_dependency(depends: &str, arch: &str) -> Option<String> {
    depends.lines().find_map(|l| {
        let dep = l.trim().strip_prefix("Depends:")?.trim();
        (dep.starts_with("linux-image-") && dep.ends_with(arch)).then(|| dep.to_owned())
    })
}

/// A suite's kernel, fetched and unpacked once.
pub fn fetch_kernel(suite: &str) -> Result<GuestKernel> {
    if suite.is_empty() || !suite.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        bail!(
            "`{suite}` is not a Debian suite name (bookworm, bullseye, trixie, bookworm-backports)"
        );
    }
    let dir = workspace_root().join("target/guest").join(suite);
    let record = dir.join("kernel.json");
    if let Some(k) = read_record(&record) {
        return Ok(k);
    }
    for tool in ["apt-get", "apt-cache", "dpkg"] {
        if which(tool).is_none() {
            bail!("fetching a guest kernel needs {tool} (Debian or Ubuntu); elsewhere pass a bzImage with --vm-kernel PATH");
        }
    }
    let apt = dir.join("apt");
    for d in ["lists/partial", "cache/archives/partial"] {
        fs::create_dir_all(apt.join(d)).with_context(|| format!("create {}", apt.display()))?;
    }
    let sources = apt.join("sources.list");
    let component = if suite.ends_with("-backports") {
        // The backports' kernel links against the suite's own packages.
        format!(
            "deb {MIRROR} {suite} main\ndeb {MIRROR} {} main\n",
            suite.trim_end_matches("-backports")
        )
    } else {
        format!("deb {MIRROR} {suite} main\n")
    };
    fs::write(&sources, component).context("write the private sources list")?;
    let private = |tool: &str| {
        let mut c = Command::new(tool);
        c.arg(format!("-oDir::Etc::sourcelist={}", sources.display()))
            .arg("-oDir::Etc::sourceparts=-")
            .arg(format!(
                "-oDir::State::Lists={}",
                apt.join("lists").display()
            ))
            .arg(format!("-oDir::Cache={}", apt.join("cache").display()))
            .arg("-oAPT::Sandbox::User=root")
            .arg("-q");
        if tool == "apt-get" {
            // stdout is for the JSON `cargo xtask guest-kernel` prints.
            c.stdout(std::io::stderr());
        }
        c
    };
    eprintln!(
        "xtask: fetching the {suite} guest kernel from {MIRROR} (private apt lists under {})",
        apt.display()
    );
    run(private("apt-get").arg("update"))
        .with_context(|| format!("apt-get update for the {suite} guest kernel"))?;
    let meta = format!("linux-image-{}", deb_arch());
    let depends = output(private("apt-cache").args(["depends", &meta]))
        .with_context(|| format!("apt-cache depends {meta} in {suite}"))?;
    let package = image_dependency(&depends, deb_arch())
        .with_context(|| format!("{meta} in {suite} depends on no kernel image:\n{depends}"))?;
    let debs = dir.join("debs");
    fs::create_dir_all(&debs)?;
    run(private("apt-get")
        .args(["download", &package])
        .current_dir(&debs))
    .with_context(|| format!("apt-get download {package}"))?;
    let deb = fs::read_dir(&debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_")))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {package}_*.deb in {}",
                debs.display()
            )
        })?;
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    run(Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .stdout(std::io::stderr()))
    .with_context(|| format!("unpack {}", deb.display()))?;
    let release = package
        .strip_prefix("linux-image-")
        .expect("checked above")
        .trim_end_matches("-unsigned")
        .to_owned();
    let k = GuestKernel {
        suite: suite.to_owned(),
        package,
        vmlinuz: root.join(format!("boot/vmlinuz-{release}")),
        modules: root.join(format!("lib/modules/{release}")),
        release,
    };
    if !k.vmlinuz.is_file() {
        bail!("{} holds no {}", deb.display(), k.vmlinuz.display());
    }
    // Keep the unpacked tree, not the package.
    let _ = fs::remove_file(&deb);
    fs::write(&record, serde_json::to_vec_pretty(&k.to_json())?)?;
    eprintln!(
        "xtask: guest kernel {} at {}",
        k.release,
        k.vmlinuz.display()
    );
    Ok(k)
}

/// A suite's kernel when it was already fetched (nothing downloaded).
pub fn fetched_kernel(suite: &str) -> Option<GuestKernel> {
    read_record(
        &workspace_root()
            .join("target/guest")
            .join(suite)
            .join("kernel.json"),
    )
}

fn read_record(path: &Path) -> Option<GuestKernel> {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let k = GuestKernel {
        suite: s("suite")?,
        package: s("package")?,
        release: s("release")?,
        vmlinuz: s("vmlinuz")?.into(),
        modules: s("modules")?.into(),
    };
    k.vmlinuz.is_file().then_some(k)
}

/// Static builds of the guest's user space.
#[derive(Clone, Debug)]
pub struct StaticBins {
    /// The observer, its eBPF object embedded.
    pub observer: PathBuf,
    /// `observer-workload`: the guest's /init and the container's workload.
    pub workload: PathBuf,
}

/// This machine's target triple (`x86_64-unknown-linux-gnu`).
fn host_triple() -> Result<String> {
    let vv =
        output(Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())).arg("-vV"))
            .context("run rustc -vV")?;
    vv.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV names no host")
}

/// Builds the observer and observer-workload as static executables (glibc
/// linked in with `+crt-static`, which needs an explicit `--target`), so
/// they run in an initramfs with no libraries at all.
pub fn build_static() -> Result<StaticBins> {
    let obj = crate::build::build_ebpf()?;
    let triple = host_triple()?;
    let mut c = crate::build::cargo(&obj);
    c.args([
        "build",
        "--release",
        "--package",
        "observer",
        "--bin",
        "observer",
        "--bin",
        "observer-workload",
        "--target",
        &triple,
    ])
    // With --target these flags reach only the target's crates, not build
    // scripts or proc macros, and the host build's artefacts stay valid.
    .env(
        format!(
            "CARGO_TARGET_{}_RUSTFLAGS",
            triple.replace('-', "_").to_uppercase()
        ),
        "-C target-feature=+crt-static",
    );
    run(&mut c).context("build the static guest binaries")?;
    let dir = workspace_root()
        .join("target")
        .join(&triple)
        .join("release");
    let bins = StaticBins {
        observer: dir.join("observer"),
        workload: dir.join("observer-workload"),
    };
    for b in [&bins.observer, &bins.workload] {
        let file = output(Command::new("file").arg(b)).unwrap_or_default();
        if file.contains("dynamically linked") {
            bail!("{} is dynamically linked: {file}", b.display());
        }
    }
    Ok(bins)
}

/// Hands the guest pieces to the tests through the environment: QEMU
/// installed, `OBSERVER_GUEST_KERNEL` / `OBSERVER_GUEST_MODULES` (the
/// first suite's), `OBSERVER_GUEST_KERNEL_<SUITE>` / `_MODULES_<SUITE>`
/// (each suite's, upper case, `-` as `_`), `OBSERVER_STATIC_OBSERVER` and
/// `OBSERVER_STATIC_WORKLOAD`. A piece that can't be had is said and left
/// out: the tests that need it then say why they can't run (and fail in CI).
pub fn test_env(cmd: &mut Command, suites: &[&str]) {
    if let Err(e) = ensure_qemu() {
        eprintln!("xtask: no QEMU for the VM tests: {e:#}");
    }
    for (i, suite) in suites.iter().enumerate() {
        match fetch_kernel(suite) {
            Ok(k) => {
                let key = suite.replace('-', "_").to_uppercase();
                cmd.env(format!("OBSERVER_GUEST_KERNEL_{key}"), &k.vmlinuz)
                    .env(format!("OBSERVER_GUEST_MODULES_{key}"), &k.modules);
                if i == 0 {
                    cmd.env("OBSERVER_GUEST_KERNEL", &k.vmlinuz)
                        .env("OBSERVER_GUEST_MODULES", &k.modules);
                }
            }
            Err(e) => eprintln!("xtask: no {suite} guest kernel for the VM tests: {e:#}"),
        }
    }
    match build_static() {
        Ok(b) => {
            cmd.env("OBSERVER_STATIC_OBSERVER", &b.observer)
                .env("OBSERVER_STATIC_WORKLOAD", &b.workload);
        }
        Err(e) => eprintln!("xtask: no static binaries for the VM tests: {e:#}"),
    }
}

/// `observer demo` arguments for the VM half (on by default): QEMU
/// installed, the bookworm kernel (unless `--vm-kernel` is given) and the
/// static workload. A piece that can't be had is said here and left out;
/// the demo then names it in its verdict, and the container half runs.
pub fn demo_vm_args(given: &[String]) -> Vec<String> {
    let mut a = vec!["--vm".to_owned()];
    if let Err(e) = ensure_qemu() {
        eprintln!("xtask: no QEMU for the demo's VM: {e:#}");
    }
    if !given
        .iter()
        .any(|g| g == "--vm-kernel" || g.starts_with("--vm-kernel="))
    {
        match fetch_kernel("bookworm") {
            Ok(k) => {
                a.push("--vm-kernel".into());
                a.push(k.vmlinuz.display().to_string());
            }
            Err(e) => eprintln!("xtask: no guest kernel for the demo's VM: {e:#}"),
        }
    }
    if !given
        .iter()
        .any(|g| g == "--workload" || g.starts_with("--workload="))
    {
        match build_static() {
            Ok(b) => {
                a.push("--workload".into());
                a.push(b.workload.display().to_string());
            }
            Err(e) => eprintln!("xtask: no static workload for the demo's VM: {e:#}"),
        }
    }
    a
}

/// The QEMU binary for this machine's architecture and its Debian package.
pub fn qemu_names() -> (&'static str, &'static str) {
    if cfg!(target_arch = "aarch64") {
        ("qemu-system-aarch64", "qemu-system-arm")
    } else {
        ("qemu-system-x86_64", "qemu-system-x86")
    }
}

/// QEMU for this machine's architecture, installed when missing.
pub fn ensure_qemu() -> Result<PathBuf> {
    let (binary, package) = qemu_names();
    if let Some(p) = which(binary) {
        return Ok(p);
    }
    eprintln!("xtask: {binary} is missing; installing {package}");
    let plain = apt_install(&[package]);
    if plain.is_err() && dpkg_installed("qemu-utils") {
        // A newer qemu-utils (backports) breaks the suite's
        // qemu-system-common; take the suite's qemu-utils with it.
        eprintln!("xtask: `apt-get install {package}` failed next to the installed qemu-utils; retrying with the suite's qemu-utils");
        let suite = fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| "bookworm".into());
        run(Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "--allow-downgrades",
                package,
            ])
            .arg(format!("qemu-utils/{suite}"))
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .with_context(|| format!("install {package}"))?;
    } else {
        plain?;
    }
    which(binary).with_context(|| format!("{package} installed but no {binary} on PATH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_package_from_apt_cache_depends() {
        let bookworm = "linux-image-amd64\n  Depends: linux-image-6.1.0-50-amd64\n";
        assert_eq!(
            image_dependency(bookworm, "amd64").as_deref(),
            Some("linux-image-6.1.0-50-amd64")
        );
        let trixie = "linux-image-amd64\n  Depends: linux-image-6.12.57+deb13-amd64\n  Recommends: firmware\n";
        assert_eq!(
            image_dependency(trixie, "amd64").as_deref(),
            Some("linux-image-6.12.57+deb13-amd64")
        );
        assert_eq!(image_dependency("linux-image-amd64\n", "amd64"), None);
    }
}
