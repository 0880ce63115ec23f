//! The container runtimes the live runtime tests drive besides Docker:
//! Podman, containerd (with `ctr`), systemd-nspawn and LXC. Installs what a
//! fresh machine lacks and starts a containerd on its standard socket when
//! none answers there (Docker's own containerd is another socket and is
//! left alone); stops only what it started.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::util::{apt_install, dpkg_installed, is_root, workspace_root};

/// containerd's standard API socket (what the observer asks by default).
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

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
    started: Option<Child>,
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        if let Some(mut child) = self.started.take() {
            eprintln!("xtask: stopping the containerd this run started");
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn containerd_answers(socket: &str) -> bool {
    Path::new(socket).exists()
        && Command::new("ctr")
            .args(["--address", socket, "--timeout", "2s", "version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The packages installed, and a containerd answering on its standard socket.
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
    let mut started = None;
    if !containerd_answers(CONTAINERD_SOCKET) {
        let log_dir = workspace_root().join("target/xtask");
        fs::create_dir_all(&log_dir)?;
        let log = fs::File::create(log_dir.join("containerd.log"))?;
        eprintln!(
            "xtask: starting containerd on {CONTAINERD_SOCKET} (log: target/xtask/containerd.log)"
        );
        let mut child = Command::new("containerd")
            .args(["--address", CONTAINERD_SOCKET])
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("start containerd")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if containerd_answers(CONTAINERD_SOCKET) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Another one may have won the socket meanwhile.
                if containerd_answers(CONTAINERD_SOCKET) {
                    break;
                }
                bail!("containerd exited ({status}); see target/xtask/containerd.log");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("containerd did not answer within 30 s; see target/xtask/containerd.log");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if matches!(child.try_wait(), Ok(None)) {
            started = Some(child);
        }
    }
    Ok(Runtimes {
        containerd_socket: CONTAINERD_SOCKET.into(),
        started,
    })
}
