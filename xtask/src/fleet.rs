//! What the fleet tests need beyond one machine's observer: a Prometheus to
//! scrape it, a validator for the Kubernetes manifests, and the observer's
//! container image.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};

use crate::util::{apt_install, dpkg_installed, output, run, which, workspace_root};

/// Debian's `prometheus`, for the tests that scrape the observer (they start
/// their own instance on loopback; the package's service is not used).
pub fn ensure_prometheus() -> Result<()> {
    if which("prometheus").is_some() || dpkg_installed("prometheus") {
        return Ok(());
    }
    eprintln!("xtask: installing prometheus (the metrics tests scrape the observer with it)");
    apt_install(&["prometheus"])
}

/// The pinned `kubernetes-validate` (PyPI) that checks `deploy/kubernetes/`
/// against Kubernetes' schemas offline, in a virtualenv under target/ (the
/// machine's Python packages are not touched). Returns its executable.
pub fn ensure_kubernetes_validate() -> Result<PathBuf> {
    let venv = workspace_root().join("target/fleet/kubernetes-validate");
    let exe = venv.join("bin/kubernetes-validate");
    let version = output(Command::new(&exe).arg("--version")).unwrap_or_default();
    if version.contains(KUBERNETES_VALIDATE.trim_start_matches("kubernetes-validate==")) {
        return Ok(exe);
    }
    let python = which("python3").context("no python3 to install kubernetes-validate with")?;
    let mut venv_cmd = Command::new(&python);
    venv_cmd.args(["-m", "venv", "--clear"]).arg(&venv);
    if run(&mut venv_cmd).is_err() {
        // Debian's own python3 keeps venv in a separate package.
        apt_install(&["python3-venv"])?;
        run(&mut venv_cmd)?;
    }
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        KUBERNETES_VALIDATE,
    ]))
    .context("pip install kubernetes-validate")?;
    Ok(exe)
}

/// Pinned: its schemas (Kubernetes 1.37 by default) decide what validates.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
