//! The container runtimes the live runtime tests drive besides Docker:
//! Podman, containerd (with `ctr`), systemd-nspawn and LXC. Installs what a
//! fresh machine lacks, and starts a containerd of this run's own (its own
//! socket, root and state; the CRI plugin off), so that runs side by side
//! never share one, and a containerd already serving the machine
//! (`/run/containerd`, or Docker's own) is never touched. Stops and removes
//! what it started.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::util::{apt_install, dpkg_installed, is_root, workspace_root};

/// (Debian package, a program it brings) for each runtime, and what the
/// tests run inside them.
const PACKAGES: &[(&str, &str)] = &[
    ("podman", "podman"),
    ("runc", "runc"),
    ("containerd", "ctr"),
    ("systemd-container", "systemd-nspawn"),
    ("lxc", "lxc-create"),
    ("busybox-static", "busybox"),
];

pub struct Runtimes {
    pub containerd_socket: PathBuf,
    child: Child,
    /// Removed after containerd stops: its state and socket, and its root.
    dirs: Vec<PathBuf>,
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        eprintln!("xtask: stopping the containerd this run started");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for d in &self.dirs {
            let _ = fs::remove_dir_all(d);
        }
    }
}

fn containerd_answers(socket: &Path) -> bool {
    socket.exists()
        && Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["--timeout", "2s", "version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The packages installed, and a containerd of this run's own answering.
pub fn ensure_runtimes() -> Result<Runtimes> {
    if !is_root() {
        bail!("the runtime tests run containers: run `cargo xtask test` as root");
    }
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(pkg, _)| !dpkg_installed(pkg))
        .map(|(pkg, _)| *pkg)
        .collect();
    if !missing.is_empty() {
        apt_install(&missing).context("install the container runtimes")?;
    }
    // Short paths: a unix socket's path is limited to 107 bytes.
    let run = PathBuf::from(format!(
        "/run/observer-test-containerd-{}",
        std::process::id()
    ));
    let root = workspace_root().join(format!("target/xtask/containerd-{}", std::process::id()));
    let log_dir = workspace_root().join("target/xtask");
    fs::create_dir_all(&run)?;
    fs::create_dir_all(&root)?;
    let socket = run.join("containerd.sock");
    let config = run.join("config.toml");
    fs::write(
        &config,
        format!(
            "version = 2\n\
             root = \"{root}\"\n\
             state = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n\
             [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{root}/opt\"\n",
            root = root.display(),
            state = run.join("state").display(),
            sock = socket.display(),
        ),
    )?;
    let log = fs::File::create(log_dir.join("containerd.log"))?;
    eprintln!(
        "xtask: starting a containerd for the tests on {} (log: target/xtask/containerd.log)",
        socket.display()
    );
    let child = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .context("start containerd")?;
    let mut rt = Runtimes {
        containerd_socket: socket,
        child,
        dirs: vec![run, root],
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !containerd_answers(&rt.containerd_socket) {
        if let Ok(Some(status)) = rt.child.try_wait() {
            bail!("containerd exited ({status}); see target/xtask/containerd.log");
        }
        if Instant::now() > deadline {
            bail!("containerd did not answer within 30 s; see target/xtask/containerd.log");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(rt)
}
