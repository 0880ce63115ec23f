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

/// 1. a rustup nightly with rust-src; 2. a system rustc whose sysroot carries
/// the library source (with RUSTC_BOOTSTRAP=1). A nightly without rust-src
/// is never chosen.
pub fn find_toolchain() -> Option<EbpfToolchain> {
    if let Some(rustup) = which("rustup") {
        let sysroot =
            output(Command::new(&rustup).args(["run", "nightly", "rustc", "--print", "sysroot"]));
        if let Some(sysroot) = sysroot.filter(|s| has_library_source(s)) {
            let vv = output(Command::new(&rustup).args(["run", "nightly", "rustc", "-vV"]))
                .unwrap_or_default();
            let cargo = which("cargo")?;
            return Some(EbpfToolchain {
                description: format!("rustup nightly with rust-src ({})", sysroot.trim()),
                cargo,
                cargo_prefix_args: vec!["+nightly".into()],
                env: vec![],
                llvm_major: llvm_major(&vv)?,
            });
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
        // The cargo shipped beside that rustc, else the default one.
        let cargo = Path::new(rustc).with_file_name("cargo");
        let cargo = if cargo.exists() {
            cargo
        } else {
            which("cargo")?
        };
        let version = vv.lines().next().unwrap_or("rustc").to_owned();
        return Some(EbpfToolchain {
            description: format!(
                "{version} at {rustc} with its library source (RUSTC_BOOTSTRAP=1)"
            ),
            cargo,
            cargo_prefix_args: vec![],
            env: vec![
                ("RUSTC".into(), rustc.into()),
                ("RUSTC_BOOTSTRAP".into(), "1".into()),
            ],
            llvm_major: llvm_major(&vv)?,
        });
    }
    None
}

/// Finds the toolchain, installing one where it can.
pub fn ensure_toolchain() -> Result<EbpfToolchain> {
    if let Some(t) = find_toolchain() {
        return Ok(t);
    }
    eprintln!(
        "xtask: no Rust toolchain that can build `core` for bpfel-unknown-none; installing one"
    );
    // Upstream's way, where rustup can download.
    if let Some(rustup) = which("rustup") {
        let ok = Command::new(&rustup)
            .args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            if let Some(t) = find_toolchain() {
                return Ok(t);
            }
        }
        eprintln!("xtask: rustup could not provide nightly with rust-src; trying the distribution's rustc with its library source");
    }
    // Debian 12 / Ubuntu: a recent rustc with the library source.
    if which("apt-get").is_some() {
        apt_install(&["rustc-web", "cargo-web", "rust-web-src"])?;
        if let Some(t) = find_toolchain() {
            return Ok(t);
        }
    }
    bail!(
        "no toolchain to build the eBPF programs: run `rustup toolchain install nightly --component rust-src`, \
         or on Debian 12 `sudo apt-get install rustc-web cargo-web rust-web-src`"
    )
}

/// The LLVM major version a bpf-linker was built against, from the stamp
/// xtask writes when it installs one.
fn linker_stamp() -> PathBuf {
    crate::util::workspace_root().join("target/xtask/bpf-linker.llvm")
}

pub fn find_bpf_linker(llvm: u32) -> Option<PathBuf> {
    let path = which("bpf-linker")?;
    match std::fs::read_to_string(linker_stamp()) {
        // Installed by us for another LLVM: not usable with this compiler.
        Ok(s) if s.trim().parse::<u32>().ok() != Some(llvm) => None,
        _ => Some(path),
    }
}

/// A bpf-linker built against the compiler's LLVM (it must be at least the
/// compiler's, or the bitcode won't load).
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
            "--locked",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{llvm}"))
        .env("PATH", path)
        // llvm-sys finds llvm-config, but the final link needs libLLVM's
        // directory too.
        .env("LIBRARY_PATH", format!("{prefix}/lib"))
        .env(format!("LLVM_SYS_{llvm}1_PREFIX"), &prefix)
        .env_remove("RUSTC")
        .env_remove("CARGO_TARGET_DIR"))
    .with_context(|| format!("install bpf-linker for LLVM {llvm}"))?;
    std::fs::create_dir_all(linker_stamp().parent().expect("has a parent"))?;
    std::fs::write(linker_stamp(), llvm.to_string())?;
    which("bpf-linker").context("bpf-linker installed but not found: add ~/.cargo/bin to PATH")
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
}
