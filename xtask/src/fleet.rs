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

/// The image's name: what deploy/kubernetes/daemonset.yaml runs.
pub const IMAGE: &str = concat!("observer:", env!("CARGO_PKG_VERSION"));

/// The built image: imported into Docker, and as an OCI archive.
pub struct Image {
    pub name: String,
    /// For `ctr -n k8s.io images import` (containerd, e.g. a cluster node).
    pub oci_archive: PathBuf,
}

/// `cargo xtask image`: the observer's container image from its static
/// binary alone (no base image, no registry): a rootfs tar imported with
/// `docker import` when an engine answers, and an OCI image layout archive.
pub fn image() -> Result<Image> {
    let bins = crate::guest::build_static()?;
    let dir = workspace_root().join("target/image");
    let rootfs = dir.join("rootfs");
    let _ = std::fs::remove_dir_all(&dir);
    for d in ["proc", "sys", "dev", "run", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).context("make the image's rootfs")?;
    }
    std::fs::copy(&bins.observer, rootfs.join("observer")).context("copy the static observer")?;
    let layer = dir.join("rootfs.tar");
    run(Command::new("tar")
        .args([
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--sort=name",
            "-C",
        ])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg("."))?;

    // The OCI layout: the same tar as the one (uncompressed) layer.
    let oci = dir.join("oci");
    let blobs = oci.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let blob = |bytes: &[u8]| -> Result<(String, usize)> {
        let path = dir.join("blob.tmp");
        std::fs::write(&path, bytes)?;
        let digest = sha256(&path)?;
        std::fs::rename(&path, blobs.join(&digest))?;
        Ok((format!("sha256:{digest}"), bytes.len()))
    };
    let (layer_digest, layer_size) = blob(&std::fs::read(&layer)?)?;
    let config = serde_json::json!({
        "architecture": goarch(),
        "os": "linux",
        "config": {"Entrypoint": ["/observer"], "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = blob(config.to_string().as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = blob(manifest.to_string().as_bytes())?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {
                "io.containerd.image.name": format!("docker.io/library/{IMAGE}"),
                "org.opencontainers.image.ref.name": env!("CARGO_PKG_VERSION"),
            },
        }],
    });
    std::fs::write(oci.join("index.json"), index.to_string())?;
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let oci_archive = dir.join("observer-oci.tar");
    run(Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(&oci)
        .arg("-cf")
        .arg(&oci_archive)
        .arg("."))?;
    eprintln!(
        "xtask: OCI archive {} (ctr -n k8s.io images import {0})",
        oci_archive.display()
    );

    if which("docker").is_some() {
        run(Command::new("docker")
            .args(["import", "--change", r#"ENTRYPOINT ["/observer"]"#])
            .arg(&layer)
            .arg(IMAGE))
        .context("docker import the observer's image")?;
    }
    // Podman knows CAP_BPF by name where Docker 20.10 does not: the pod
    // spec test runs the image under Podman.
    if which("podman").is_some() {
        run(Command::new("podman")
            .args(["import", "--change", r#"ENTRYPOINT ["/observer"]"#])
            .arg(&layer)
            .arg(format!("localhost/{IMAGE}")))
        .context("podman import the observer's image")?;
    }
    Ok(Image {
        name: IMAGE.to_owned(),
        oci_archive,
    })
}

fn sha256(path: &std::path::Path) -> Result<String> {
    let out = output(Command::new("sha256sum").arg(path)).context("run sha256sum")?;
    out.split_whitespace()
        .next()
        .map(str::to_owned)
        .context("sha256sum printed nothing")
}

fn goarch() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    }
}
