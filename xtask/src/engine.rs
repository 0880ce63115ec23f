//! A Docker engine and a local image for the end-to-end tests and the demo.
//! Uses a running engine, or installs and starts one (and stops only what it
//! started). No registry is needed: the image is a busybox rootfs imported
//! with `docker import`.

use std::{
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::util::{apt_install, is_root, output, run, which, workspace_root};

/// The project's local image: busybox and its applets, nothing pulled.
pub const IMAGE: &str = "observer-test/busybox:latest";

pub struct Engine {
    pub image: String,
    started: Option<Child>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut child) = self.started.take() {
            eprintln!("xtask: stopping the dockerd this run started");
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

fn engine_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running engine: the one already there, or one started here.
pub fn ensure_engine() -> Result<Engine> {
    let mut started = None;
    if !(which("docker").is_some() && engine_answers()) {
        if !is_root() {
            bail!("no Docker engine answers; start one (sudo systemctl start docker) or run as root so that xtask can");
        }
        if which("dockerd").is_none() || which("docker").is_none() {
            apt_install(&["docker.io"])?;
        }
        let log_dir = workspace_root().join("target/xtask");
        fs::create_dir_all(&log_dir)?;
        let log = fs::File::create(log_dir.join("dockerd.log"))?;
        eprintln!("xtask: starting dockerd --iptables=false --bridge=none (log: target/xtask/dockerd.log)");
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--bridge=none"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("start dockerd")?;
        started = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine_answers() {
            if Instant::now() > deadline {
                bail!("dockerd did not answer within 60 s; see target/xtask/dockerd.log");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let engine = Engine {
        image: IMAGE.to_owned(),
        started,
    };
    ensure_image()?;
    Ok(engine)
}

/// Builds the busybox image unless the engine has it.
fn ensure_image() -> Result<()> {
    if output(Command::new("docker").args(["image", "inspect", IMAGE])).is_some() {
        return Ok(());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists() && is_static(p));
    let busybox = match busybox {
        Some(b) => b.to_owned(),
        None => {
            apt_install(&["busybox-static"])?;
            "/bin/busybox".to_owned()
        }
    };
    let root = workspace_root().join("target/xtask/rootfs");
    let _ = fs::remove_dir_all(&root);
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::copy(&busybox, root.join("bin/busybox")).context("copy busybox into the image rootfs")?;
    let applets = output(Command::new(&busybox).arg("--list")).context("busybox --list")?;
    for a in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(root.join("etc/group"), "root:x:0:\n")?;
    let tar = workspace_root().join("target/xtask/rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."))?;
    run(Command::new("docker")
        .args([
            "import",
            "--change",
            "CMD [\"/bin/sh\"]",
            "--change",
            "ENV PATH=/bin",
        ])
        .arg(&tar)
        .arg(IMAGE))
    .context("import the busybox image")?;
    Ok(())
}

fn is_static(p: &str) -> bool {
    output(Command::new("file").arg("-L").arg(p))
        .map(|s| s.contains("statically linked"))
        .unwrap_or(true)
}
