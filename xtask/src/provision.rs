//! Finds or installs what building the eBPF programs needs: a Rust compiler
//! that can build `core` from source for `bpfel-unknown-none`, and a
//! bpf-linker whose LLVM matches that compiler's.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::util::{apt_install, dpkg_installed, output, run, which};

/// How to invoke cargo for the eBPF build.
#[derive(Clone, Debug)]
pub struct EbpfToolchain {
    /// What the user sees: "rustup nightly (rust-src)" / "rustc 1.96 from /usr/bin with its library source".
    pub description: String,
    pub cargo: PathBuf,
    /// `+nightly` for rustup, nothing otherwise.
    pub cargo_prefix_args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub llvm_major: u32,
}

impl EbpfToolchain {
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.cargo);
        c.args(&self.cargo_prefix_args);
        // Never let the outer cargo's compiler choice leak in.
        c.env_remove("RUSTC")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("CARGO_TARGET_DIR");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

/// `LLVM version: 22.1.8` in `rustc -vV` -> 22.
pub fn llvm_major(rustc_vv: &str) -> Option<u32> {
    rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .and_then(|v| v.trim().split('.').next()?.parse().ok())
}

fn has_library_source(sysroot: &str) -> bool {
    Path::new(sysroot.trim())
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .exists()
}

/// Every compiler here that can build `core` for the BPF target: 1. a
/// rustup nightly with rust-src; 2. a system rustc whose sysroot carries the
/// library source (with RUSTC_BOOTSTRAP=1). A nightly without rust-src is
/// never a candidate.
pub fn find_toolchains() -> Vec<EbpfToolchain> {
    let mut found = Vec::new();
    if let (Some(rustup), Some(cargo)) = (which("rustup"), which("cargo")) {
        let sysroot =
            output(Command::new(&rustup).args(["run", "nightly", "rustc", "--print", "sysroot"]));
        if let Some(sysroot) = sysroot.filter(|s| has_library_source(s)) {
            let vv = output(Command::new(&rustup).args(["run", "nightly", "rustc", "-vV"]))
                .unwrap_or_default();
            if let Some(llvm) = llvm_major(&vv) {
                found.push(EbpfToolchain {
                    description: format!(
                        "rustup nightly with rust-src, LLVM {llvm} ({})",
                        sysroot.trim()
                    ),
                    cargo,
                    cargo_prefix_args: vec!["+nightly".into()],
                    env: vec![],
                    llvm_major: llvm,
                });
            }
        }
    }
    for rustc in ["/usr/bin/rustc", "/usr/local/bin/rustc"] {
        if !Path::new(rustc).exists() {
            continue;
        }
        let Some(sysroot) = output(Command::new(rustc).args(["--print", "sysroot"])) else {
            continue;
        };
        if !has_library_source(&sysroot) {
            continue;
        }
        let vv = output(Command::new(rustc).arg("-vV")).unwrap_or_default();
        let Some(llvm) = llvm_major(&vv) else {
            continue;
        };
        // The cargo shipped beside that rustc, else the default one.
        let cargo = Path::new(rustc).with_file_name("cargo");
        let Some(cargo) = cargo.exists().then_some(cargo).or_else(|| which("cargo")) else {
            continue;
        };
        let version = vv.lines().next().unwrap_or("rustc").to_owned();
        found.push(EbpfToolchain {
            description: format!(
                "{version} at {rustc} with its library source, LLVM {llvm} (RUSTC_BOOTSTRAP=1)"
            ),
            cargo,
            cargo_prefix_args: vec![],
            env: vec![
                ("RUSTC".into(), rustc.into()),
                ("RUSTC_BOOTSTRAP".into(), "1".into()),
            ],
            llvm_major: llvm,
        });
    }
    found
}

/// The LLVM major version an installed bpf-linker links against
/// (`libLLVM.so.22.1` / `libLLVM-22.so` in its dynamic dependencies).
pub fn linker_llvm(path: &Path) -> Option<u32> {
    let ldd = output(Command::new("ldd").arg(path))?;
    ldd.lines().find_map(|l| {
        let name = l.split_whitespace().next()?;
        let rest = name.strip_prefix("libLLVM")?;
        rest.trim_start_matches(['-', '.'])
            .trim_start_matches("so.")
            .split(['.', '-'])
            .next()?
            .parse()
            .ok()
    })
}

/// A bpf-linker usable with a compiler on LLVM `llvm`: its own LLVM must
/// be at least the compiler's, or it can't read the compiler's bitcode.
pub fn find_bpf_linker(llvm: u32) -> Option<PathBuf> {
    let path = which("bpf-linker")?;
    (linker_llvm(&path)? >= llvm).then_some(path)
}

/// Whether the distribution can provide LLVM `llvm`'s development files.
fn llvm_dev_available(llvm: u32) -> bool {
    dpkg_installed(&format!("llvm-{llvm}-dev"))
        || output(Command::new("apt-cache").args(["policy", &format!("llvm-{llvm}-dev")]))
            .is_some_and(|s| {
                s.lines()
                    .any(|l| l.trim().starts_with("Candidate:") && !l.contains("(none)"))
            })
}

/// The first candidate for which a bpf-linker exists or can be built.
fn pick(candidates: Vec<EbpfToolchain>) -> Option<EbpfToolchain> {
    let mut rest = Vec::new();
    for t in candidates {
        if find_bpf_linker(t.llvm_major).is_some() {
            return Some(t);
        }
        rest.push(t);
    }
    rest.into_iter().find(|t| llvm_dev_available(t.llvm_major))
}

/// The toolchain `cargo xtask doctor` reports, without installing anything.
pub fn find_toolchain() -> Option<EbpfToolchain> {
    pick(find_toolchains())
}

/// Finds a toolchain, installing one where it can. On Debian and Ubuntu the
/// distribution's rustc goes first: its LLVM is the one whose development
/// files the distribution ships, which bpf-linker must be built against.
pub fn ensure_toolchain() -> Result<EbpfToolchain> {
    if let Some(t) = find_toolchain() {
        return Ok(t);
    }
    eprintln!("xtask: no Rust toolchain that can build `core` for bpfel-unknown-none with a matching bpf-linker; installing one");
    if which("apt-get").is_some() {
        apt_install(&["rustc-web", "cargo-web", "rust-web-src"])?;
        if let Some(t) = find_toolchain() {
            return Ok(t);
        }
    }
    if let Some(rustup) = which("rustup") {
        // Upstream's way, where rustup can download.
        run(Command::new(&rustup).args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        if let Some(t) = find_toolchain() {
            return Ok(t);
        }
    }
    bail!(
        "no toolchain to build the eBPF programs: on Debian 12 run `sudo apt-get install rustc-web cargo-web rust-web-src llvm-22-dev`, \
         elsewhere `rustup toolchain install nightly --component rust-src` and a bpf-linker built for its LLVM"
    )
}

/// A bpf-linker built against the compiler's LLVM.
pub fn ensure_bpf_linker(llvm: u32) -> Result<PathBuf> {
    if let Some(p) = find_bpf_linker(llvm) {
        return Ok(p);
    }
    let dev = format!("llvm-{llvm}-dev");
    if !dpkg_installed(&dev) && which("apt-get").is_some() {
        apt_install(&[dev.as_str()])?;
    }
    let prefix = format!("/usr/lib/llvm-{llvm}");
    if !Path::new(&prefix).join("bin/llvm-config").exists() {
        bail!("LLVM {llvm} development files are missing: run `sudo apt-get install llvm-{llvm}-dev`, then `cargo install bpf-linker --no-default-features --features llvm-{llvm}`");
    }
    let cargo = which("cargo").context("cargo not found on PATH")?;
    let path = format!("{prefix}/bin:{}", std::env::var("PATH").unwrap_or_default());
    run(Command::new(cargo)
        .args([
            "install",
            "bpf-linker",
            "--force",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{llvm}"))
        .env("PATH", path)
        // llvm-sys finds llvm-config, but the final link also needs
        // libLLVM's directory.
        .env("LIBRARY_PATH", format!("{prefix}/lib"))
        .env(format!("LLVM_SYS_{llvm}1_PREFIX"), &prefix)
        .env_remove("RUSTC")
        .env_remove("CARGO_TARGET_DIR"))
    .with_context(|| format!("install bpf-linker for LLVM {llvm}"))?;
    find_bpf_linker(llvm).context("bpf-linker installed but not found: add ~/.cargo/bin to PATH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llvm_major_from_rustc() {
        let vv = "rustc 1.96.0 (ac68faa20 2026-05-25) (built from a source tarball)\nbinary: rustc\nLLVM version: 22.1.8\n";
        assert_eq!(llvm_major(vv), Some(22));
        assert_eq!(llvm_major("rustc 1.0"), None);
    }

    #[test]
    fn reads_the_linkers_llvm() {
        // Whatever bpf-linker is installed here must name its LLVM.
        if let Some(p) = which("bpf-linker") {
            assert!(linker_llvm(&p).is_some_and(|v| v >= 14), "{}", p.display());
        }
    }
}
