//! A QEMU guest we own: booted from a kernel and an initramfs, read line by
//! line on its serial console, killed on every path.
//!
//! Usage:
//! ```no_run
//! # async fn f() -> Result<(), observer::vm::qemu::VmError> {
//! use std::time::Duration;
//! use observer::vm::qemu::{Accel, Vm, VmSpec};
//! let mut spec = VmSpec::new("target/guest/bookworm/vmlinuz".into(), "target/guest/initrd.cpio".into());
//! spec.append = "observer.calls=500".into();     // read by the guest's /init
//! spec.accel = Accel::Auto;                      // KVM when it works, else TCG
//! spec.hostfwd = vec![(9100, 9100)];             // optional: user networking, loopback only
//! let mut vm = Vm::start(&spec).await?;          // says which accel ran and why: vm.accel
//! let facts = vm.wait_json("workload_facts", Duration::from_secs(120)).await?;
//! let (rss, hwm) = vm.memory().unwrap_or_default(); // the VMM process, while it runs
//! vm.wait_exit(Duration::from_secs(30)).await?; // the guest powers off
//! # Ok(()) }
//! ```
//! The machine: `-M pc` (x86_64) or `-M virt` (aarch64), `-nodefaults`, the
//! serial console on QEMU's stdout, no display, no disk and no network
//! unless `hostfwd` asks for user networking (`restrict=on`: the guest
//! reaches nothing but the forwarded ports, which bind 127.0.0.1 only).
//! `panic=-1` and `-no-reboot` make a guest panic end QEMU at once.
//!
//! Ownership: QEMU is killed when the `Vm` is dropped (`kill_on_drop`), and
//! gets SIGKILL from the kernel when the thread that started it dies
//! (`PR_SET_PDEATHSIG`), so it never outlives the process that started it,
//! a Ctrl-C or a SIGKILL included. Start it from a runtime's own thread
//! (an async task), not from a short-lived thread.
//!
//! Acceleration (`Accel::Auto`): KVM when `/dev/kvm` opens read-write and
//! the guest kernel prints its first line within `kvm_progress` (nested
//! KVM can hang right after the kernel's decompressor), otherwise TCG;
//! `Vm::accel` says which ran and why.

use std::{
    collections::VecDeque,
    fmt,
    io::Read,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

/// `--accel`: how the guest's CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when it opens and the guest makes progress, else TCG.
    Auto,
    /// Hardware virtualisation; an error where it does not work.
    Kvm,
    /// QEMU's own CPU emulation: slow, works everywhere.
    Tcg,
}

/// Which acceleration a guest ran with, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AccelUsed {
    /// "kvm" or "tcg".
    pub accel: &'static str,
    pub why: String,
}

/// What can go wrong with a guest; callers branch on missing pieces.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{binary} is not installed: {fix}")]
    QemuMissing { binary: String, fix: String },
    #[error("guest kernel {}: {why}", path.display())]
    BadKernel { path: PathBuf, why: String },
    #[error("initramfs {}: {why}", path.display())]
    BadInitrd { path: PathBuf, why: String },
    #[error("KVM: {0}")]
    Kvm(String),
    #[error("start {binary}: {source}")]
    Start {
        binary: String,
        source: std::io::Error,
    },
    #[error("the guest did not {what} within {after:?}{}", context(.console, .stderr))]
    Timeout {
        what: String,
        after: Duration,
        console: String,
        stderr: String,
    },
    #[error("QEMU exited ({status}) before the guest would {what}{}", context(.console, .stderr))]
    Exited {
        what: String,
        status: String,
        console: String,
        stderr: String,
    },
}

fn context(console: &str, stderr: &str) -> String {
    let mut s = String::new();
    if !stderr.trim().is_empty() {
        s.push_str(&format!("; QEMU said: {}", stderr.trim()));
    }
    if !console.trim().is_empty() {
        s.push_str(&format!("; last console lines:\n{}", console.trim_end()));
    }
    s
}

/// How to boot a guest. `VmSpec::new` gives the defaults.
#[derive(Clone, Debug)]
pub struct VmSpec {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Kernel parameters after `console=… panic=-1` (e.g. the guest init's
    /// `observer.*` plan).
    pub append: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    /// How long KVM gets to show the guest's first kernel line.
    pub kvm_progress: Duration,
    /// (host port, guest port) TCP forwards on 127.0.0.1; empty: no network.
    pub hostfwd: Vec<(u16, u16)>,
    /// The NIC when `hostfwd` is set (the guest needs its driver: on Debian
    /// kernels it is a module; e1000.ko needs no other module, virtio_net
    /// needs virtio, virtio_ring, virtio_pci and net_failover first).
    pub nic_model: String,
    /// The QEMU binary; default: qemu-system-<this machine's arch> on PATH.
    pub qemu: Option<PathBuf>,
    /// A cgroup2 directory QEMU joins before it runs (so an observer can
    /// tell the VMM's syscalls and memory apart).
    pub cgroup: Option<PathBuf>,
}

impl VmSpec {
    pub fn new(kernel: PathBuf, initrd: PathBuf) -> Self {
        VmSpec {
            kernel,
            initrd,
            append: String::new(),
            memory_mib: 256,
            cpus: 1,
            accel: Accel::Auto,
            kvm_progress: Duration::from_secs(8),
            hostfwd: Vec::new(),
            nic_model: "e1000".into(),
            qemu: None,
            cgroup: None,
        }
    }
}

/// The QEMU binary for this machine and the package that has it.
pub fn qemu_binary() -> (&'static str, &'static str) {
    if cfg!(target_arch = "aarch64") {
        ("qemu-system-aarch64", "qemu-system-arm")
    } else {
        ("qemu-system-x86_64", "qemu-system-x86")
    }
}

/// The console device the guest kernel writes to.
pub fn console_device() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "ttyAMA0"
    } else {
        "ttyS0"
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether `head` (a file's first bytes) looks like a kernel QEMU can boot
/// with `-kernel` here: a bzImage (x86, "HdrS" at 0x202), an arm64 Image
/// ("ARMd" at 0x38), or a PE/EFI-stub or gzip'd image (arm64 distributions).
/// Pure, for tests.
pub fn kernel_format(head: &[u8]) -> Result<&'static str, String> {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if at(0x202, b"HdrS") {
        return Ok("bzImage");
    }
    if cfg!(target_arch = "aarch64") {
        if at(0x38, b"ARM\x64") {
            return Ok("arm64 Image");
        }
        if at(0, b"MZ") {
            return Ok("EFI zboot");
        }
        if at(0, &[0x1f, 0x8b]) {
            return Ok("gzip'd Image");
        }
    }
    if head.len() < 0x206 {
        return Err(format!(
            "{} bytes: too short for a kernel image",
            head.len()
        ));
    }
    if at(0, b"\x7fELF") {
        return Err(
            "an ELF file (vmlinux?), not a bootable image: pass the bzImage (/boot/vmlinuz-*)"
                .into(),
        );
    }
    Err(if cfg!(target_arch = "aarch64") {
        "not an arm64 kernel image (no Image or EFI header)".into()
    } else {
        "not an x86 kernel image (no bzImage \"HdrS\" header at 0x202): pass a bzImage such as /boot/vmlinuz-*".into()
    })
}

/// Checks that `path` is a kernel image QEMU can boot.
pub fn check_kernel(path: &Path) -> Result<&'static str, VmError> {
    let bad = |why: String| VmError::BadKernel {
        path: path.to_owned(),
        why,
    };
    let mut head = Vec::with_capacity(0x240);
    std::fs::File::open(path)
        .and_then(|f| f.take(0x240).read_to_end(&mut head))
        .map_err(|e| bad(e.to_string()))?;
    kernel_format(&head).map_err(bad)
}

/// Whether /dev/kvm opens for read and write (what QEMU needs).
pub fn kvm_opens() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("/dev/kvm does not open ({e})"))
}

/// A kernel's first line on the console: `Linux version …` or any line
/// with a printk timestamp.
pub fn is_kernel_progress(line: &str) -> bool {
    line.contains("Linux version")
        || line
            .trim_start()
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .is_some_and(|(t, _)| {
                let t = t.trim();
                !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.')
            })
}

/// The QEMU command line for `spec` with `accel` ("kvm" or "tcg").
/// Pure, for tests.
pub fn qemu_args(spec: &VmSpec, accel: &str) -> Vec<String> {
    let aarch64 = cfg!(target_arch = "aarch64");
    let mut a: Vec<String> = Vec::new();
    let mut push = |v: &[&str]| a.extend(v.iter().map(|s| s.to_string()));
    push(&["-M", if aarch64 { "virt" } else { "pc" }]);
    push(&["-accel", accel]);
    if accel == "kvm" {
        push(&["-cpu", "host"]);
    } else if aarch64 {
        push(&["-cpu", "max"]);
    }
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]);
    let (m, smp) = (spec.memory_mib.to_string(), spec.cpus.to_string());
    push(&["-m", &m, "-smp", &smp]);
    push(&["-kernel", &spec.kernel.to_string_lossy()]);
    push(&["-initrd", &spec.initrd.to_string_lossy()]);
    let append = format!(
        "console={} panic=-1 {}",
        console_device(),
        spec.append.trim()
    );
    push(&["-append", append.trim_end()]);
    if !spec.hostfwd.is_empty() {
        let mut netdev = "user,id=net0,restrict=on".to_owned();
        for (host, guest) in &spec.hostfwd {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        push(&["-netdev", &netdev]);
        push(&["-device", &format!("{},netdev=net0", spec.nic_model)]);
    }
    a
}

/// Lines kept for error messages.
const TAIL_LINES: usize = 40;

/// A running guest. Dropping it kills QEMU.
pub struct Vm {
    child: Child,
    pid: u32,
    /// Which acceleration runs this guest, and why.
    pub accel: AccelUsed,
    /// When the QEMU process that runs the guest was started.
    pub started: Instant,
    lines: mpsc::UnboundedReceiver<String>,
    /// Lines read while deciding on KVM, not yet handed out.
    pending: VecDeque<String>,
    tail: Arc<Mutex<VecDeque<String>>>,
    stderr: Arc<Mutex<String>>,
    /// (VmRSS, VmHWM) of QEMU at its latest console line.
    memory: Arc<Mutex<Option<(u64, u64)>>>,
    status: Option<ExitStatus>,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("pid", &self.pid)
            .field("accel", &self.accel)
            .finish()
    }
}

impl Vm {
    /// Boots a guest with the acceleration `spec.accel` asks for.
    pub async fn start(spec: &VmSpec) -> Result<Vm, VmError> {
        check_kernel(&spec.kernel)?;
        if let Err(e) = std::fs::metadata(&spec.initrd) {
            return Err(VmError::BadInitrd {
                path: spec.initrd.clone(),
                why: e.to_string(),
            });
        }
        let (binary, package) = qemu_binary();
        let qemu = match &spec.qemu {
            Some(q) => q.clone(),
            None => find_on_path(binary).ok_or_else(|| VmError::QemuMissing {
                binary: binary.into(),
                fix: format!(
                    "run `sudo apt-get install {package}` (or `cargo xtask demo`, which installs it)"
                ),
            })?,
        };
        match spec.accel {
            Accel::Tcg => Self::spawn(spec, &qemu, "tcg", "asked for (--accel tcg)".into()),
            Accel::Kvm => {
                kvm_opens().map_err(VmError::Kvm)?;
                let mut vm = Self::spawn(spec, &qemu, "kvm", "asked for (--accel kvm)".into())?;
                vm.progress(spec.kvm_progress).await?;
                Ok(vm)
            }
            Accel::Auto => {
                let why = match kvm_opens() {
                    Err(e) => e,
                    Ok(()) => {
                        let mut vm = Self::spawn(
                            spec,
                            &qemu,
                            "kvm",
                            "/dev/kvm opens and the guest kernel runs under it".into(),
                        )?;
                        match vm.progress(spec.kvm_progress).await {
                            Ok(()) => return Ok(vm),
                            Err(e) => {
                                vm.kill().await;
                                match e {
                                    VmError::Timeout { after, .. } => format!(
                                        "/dev/kvm opens but the guest kernel printed nothing under KVM within {after:?} \
                                         (nested virtualisation does not run guests here)"
                                    ),
                                    e => format!("/dev/kvm opens but the guest failed under KVM: {}", first_line(&e.to_string())),
                                }
                            }
                        }
                    }
                };
                Self::spawn(spec, &qemu, "tcg", format!("{why}: using TCG"))
            }
        }
    }

    fn spawn(spec: &VmSpec, qemu: &Path, accel: &'static str, why: String) -> Result<Vm, VmError> {
        let mut cmd = Command::new(qemu);
        cmd.args(qemu_args(spec, accel))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let procs = spec
            .cgroup
            .as_ref()
            .map(|c| std::ffi::CString::new(c.join("cgroup.procs").as_os_str().as_encoded_bytes()))
            .transpose()
            .map_err(|_| VmError::Start {
                binary: qemu.display().to_string(),
                source: std::io::Error::other("a NUL in the cgroup path"),
            })?;
        // SAFETY: only async-signal-safe calls (prctl, open, write, close)
        // run in the child before exec, on memory prepared before fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(p) = &procs {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| VmError::Start {
            binary: qemu.display().to_string(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let (tx, rx) = mpsc::unbounded_channel();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stdout = child.stdout.take().expect("piped");
        let t = tail.clone();
        let memory = Arc::new(Mutex::new(None));
        let m = memory.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                {
                    let mut t = t.lock().expect("not poisoned");
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line.clone());
                }
                // Sampled as the guest speaks: a guest that reports and
                // powers off at once leaves no /proc entry to read later.
                if let Some(now) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| parse_rss_hwm(&s))
                {
                    *m.lock().expect("not poisoned") = Some(now);
                }
                // The receiver may be gone: keep draining so QEMU never
                // blocks on a full pipe.
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped");
        let e = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut e = e.lock().expect("not poisoned");
                if e.len() < 64 * 1024 {
                    e.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Ok(Vm {
            child,
            pid,
            accel: AccelUsed { accel, why },
            started,
            lines: rx,
            pending: VecDeque::new(),
            tail,
            stderr,
            memory,
            status: None,
        })
    }

    /// Waits for the guest kernel's first console line (kept for readers).
    async fn progress(&mut self, within: Duration) -> Result<(), VmError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let done = is_kernel_progress(&line);
                    self.pending.push_back(line);
                    if done {
                        return Ok(());
                    }
                }
                Ok(None) => return Err(self.exited("print its first kernel line").await),
                Err(_) => return Err(self.timeout("print its first kernel line", within)),
            }
        }
    }

    /// QEMU's process ID on the host.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The next console line; `None` when QEMU has closed its console.
    pub async fn next_line(&mut self, timeout: Duration) -> Result<Option<String>, VmError> {
        if let Some(l) = self.pending.pop_front() {
            return Ok(Some(l));
        }
        tokio::time::timeout(timeout, self.lines.recv())
            .await
            .map_err(|_| self.timeout("print a console line", timeout))
    }

    /// Reads console lines until one satisfies `pred`, within `timeout`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left).await {
                Ok(Some(l)) if pred(&l) => return Ok(l),
                Ok(Some(_)) => {}
                Ok(None) => return Err(self.exited(what).await),
                Err(_) => return Err(self.timeout(what, timeout)),
            }
        }
    }

    /// The first console line holding a JSON object with `"type": kind`
    /// (kernel messages before it on the same line are skipped).
    pub async fn wait_json(
        &mut self,
        kind: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, VmError> {
        let mut found = None;
        self.wait_for(&format!("print its `{kind}` line"), timeout, |l| {
            found = json_of_type(l, kind);
            found.is_some()
        })
        .await?;
        Ok(found.expect("set when the predicate held"))
    }

    /// Waits for QEMU to exit (the guest powered off), within `timeout`;
    /// kills it past that.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, VmError> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(s)) => {
                self.status = Some(s);
                Ok(s)
            }
            Ok(Err(e)) => Err(VmError::Exited {
                what: "power off".into(),
                status: e.to_string(),
                console: self.console_tail(),
                stderr: self.stderr(),
            }),
            Err(_) => {
                let e = self.timeout("power off", timeout);
                self.kill().await;
                Err(e)
            }
        }
    }

    /// The VMM process's resident and peak resident memory (bytes), from
    /// /proc/PID/status now, or as sampled at its latest console line once
    /// it has exited; `None` if it never printed a line.
    pub fn memory(&self) -> Option<(u64, u64)> {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| parse_rss_hwm(&s))
            .or(*self.memory.lock().expect("not poisoned"))
    }

    /// Kills QEMU and reaps it.
    pub async fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.start_kill();
            if let Ok(s) = self.child.wait().await {
                self.status = Some(s);
            }
        }
    }

    /// The last console lines (for error messages).
    pub fn console_tail(&self) -> String {
        let t = self.tail.lock().expect("not poisoned");
        t.iter().fold(String::new(), |mut s, l| {
            s.push_str("  | ");
            s.push_str(l);
            s.push('\n');
            s
        })
    }

    /// What QEMU wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("not poisoned").clone()
    }

    fn timeout(&self, what: &str, after: Duration) -> VmError {
        VmError::Timeout {
            what: what.into(),
            after,
            console: self.console_tail(),
            stderr: self.stderr(),
        }
    }

    async fn exited(&mut self, what: &str) -> VmError {
        let status = match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(Ok(s)) => {
                self.status = Some(s);
                s.to_string()
            }
            _ => "console closed".into(),
        };
        // Let the stderr reader catch QEMU's last words.
        tokio::time::sleep(Duration::from_millis(50)).await;
        VmError::Exited {
            what: what.into(),
            status,
            console: self.console_tail(),
            stderr: self.stderr(),
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The JSON object of type `kind` in a console line, if any. Pure.
pub fn json_of_type(line: &str, kind: &str) -> Option<serde_json::Value> {
    let start = line.find('{')?;
    let v: serde_json::Value = serde_json::from_str(line[start..].trim_end()).ok()?;
    (v["type"] == kind).then_some(v)
}

/// `VmRSS:` and `VmHWM:` (kB) in /proc/PID/status -> bytes. Pure.
pub fn parse_rss_hwm(status: &str) -> Option<(u64, u64)> {
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    Some((kb("VmRSS:")?, kb("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_images_are_told_from_other_files() {
        let mut bz = vec![0u8; 0x240];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(kernel_format(&bz), Ok("bzImage"));
        let mut elf = vec![0u8; 0x240];
        elf[..4].copy_from_slice(b"\x7fELF");
        assert!(kernel_format(&elf).unwrap_err().contains("ELF"));
        assert!(kernel_format(b"#!/bin/sh\n")
            .unwrap_err()
            .contains("too short"));
        assert!(kernel_format(&[0u8; 0x300]).is_err());
    }

    #[test]
    fn a_real_bzimage_passes_where_one_is_installed() {
        let Ok(dir) = std::fs::read_dir("/boot") else {
            return;
        };
        for e in dir.flatten() {
            let p = e.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
                && cfg!(target_arch = "x86_64")
            {
                assert_eq!(check_kernel(&p).unwrap(), "bzImage", "{}", p.display());
            }
        }
        let err = check_kernel(Path::new("/etc/hostname")).unwrap_err();
        assert!(matches!(err, VmError::BadKernel { .. }), "{err}");
        let err = check_kernel(Path::new("/nonexistent/vmlinuz")).unwrap_err();
        assert!(err.to_string().contains("No such file"), "{err}");
    }

    #[test]
    fn kernel_progress_lines() {
        for (line, want) in [
            (
                "[    0.000000] Linux version 6.1.0-50-amd64 (debian-kernel@lists.debian.org)",
                true,
            ),
            ("Linux version 6.1.0 (gcc)", true),
            ("[    1.234567] Run /init as init process", true),
            ("Booting the kernel.", false),
            ("[init] starting", false),
            ("{\"type\":\"workload_facts\"}", false),
        ] {
            assert_eq!(is_kernel_progress(line), want, "{line}");
        }
    }

    #[test]
    fn the_command_line_has_no_network_or_disk_unless_asked() {
        let mut spec = VmSpec::new("/k".into(), "/i".into());
        spec.append = "observer.calls=5".into();
        let a = qemu_args(&spec, "tcg");
        let joined = a.join(" ");
        assert!(joined.contains("-accel tcg"), "{joined}");
        assert!(joined.contains("-nodefaults"));
        assert!(joined.contains("-kernel /k -initrd /i"));
        assert!(!joined.contains("-netdev") && !joined.contains("-drive"));
        let append = &a[a.iter().position(|x| x == "-append").unwrap() + 1];
        assert_eq!(
            append,
            &format!("console={} panic=-1 observer.calls=5", console_device())
        );
        spec.hostfwd = vec![(19100, 9100)];
        let joined = qemu_args(&spec, "kvm").join(" ");
        assert!(joined.contains("-accel kvm -cpu host"));
        assert!(
            joined.contains("-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:19100-:9100"),
            "{joined}"
        );
        assert!(joined.contains("-device e1000,netdev=net0"));
    }

    #[test]
    fn json_lines_on_a_noisy_console() {
        let v = json_of_type(
            "[    2.1] random: crng init done{\"type\":\"workload_facts\",\"calls\":500}\r",
            "workload_facts",
        )
        .unwrap();
        assert_eq!(v["calls"], 500);
        assert!(json_of_type("{\"type\":\"init_done\"}", "workload_facts").is_none());
        assert!(json_of_type("no json", "x").is_none());
    }

    #[test]
    fn memory_from_proc_status() {
        let s = "Name:\tqemu-system-x86\nVmHWM:\t  123456 kB\nVmRSS:\t  100000 kB\n";
        assert_eq!(parse_rss_hwm(s), Some((100000 * 1024, 123456 * 1024)));
        assert_eq!(parse_rss_hwm("Name: x\n"), None);
    }
}
