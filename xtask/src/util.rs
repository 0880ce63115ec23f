//! Small process helpers: every step says what it runs.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command, echoing it, failing with its exit status.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout when it succeeds.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // cargo install puts binaries here, which may not be on PATH yet.
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// `apt-get install -y PKGS` (after one `apt-get update`), as root only.
pub fn apt_install(pkgs: &[&str]) -> Result<()> {
    if which("apt-get").is_none() {
        bail!(
            "install {} with your package manager (no apt-get here)",
            pkgs.join(" ")
        );
    }
    if !is_root() {
        bail!(
            "missing packages; run: sudo apt-get install -y {}",
            pkgs.join(" ")
        );
    }
    static UPDATED: std::sync::Once = std::sync::Once::new();
    let mut update_result = Ok(());
    UPDATED.call_once(|| {
        update_result = run(Command::new("apt-get").args(["update", "-q"]));
    });
    update_result?;
    run(Command::new("apt-get")
        // Other apt runs (another build, unattended upgrades) hold the
        // dpkg lock for a while: wait for it rather than fail.
        .args(["-o", "DPkg::Lock::Timeout=600"])
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

pub fn dpkg_installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.contains("install ok installed"))
}
