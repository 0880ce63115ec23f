//! The demo's VM half: the same static workload as a container's process
//! and as a VM's `/init`, and what the host kernel saw of each.
//!
//! `observer demo --vm` calls `VmHalf::prepare` before the observer starts
//! (the VMM's cgroup must exist for `--host-cgroup`), `boot` after the
//! containers ran, and `contrast` on the observer's records; `table` renders
//! the side-by-side verdict.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{
    init::{Facts, FACTS_TYPE},
    initramfs::{self, Entry},
    qemu::{Accel, AccelUsed, Vm, VmError, VmSpec},
};

/// Whether an ELF executable needs no dynamic loader (no PT_INTERP): what
/// runs in a busybox image and as a guest's `/init`. Pure, for tests.
pub fn is_static_elf(head: &[u8]) -> bool {
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        head.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |o: usize| {
        head.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    // 64-bit little-endian ELF only (x86_64, aarch64).
    if head.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum as usize).all(|i| {
        let at = phoff as usize + i * phentsize as usize;
        // PT_INTERP = 3; a header beyond what was read counts as dynamic.
        u32_at(at).is_some_and(|t| t != 3)
    })
}

/// The static workload to run in both worlds: `given`, else the
/// `observer-workload` beside this executable. An error names the fix.
pub fn find_workload(given: Option<&Path>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()
            .context("find this executable")?
            .with_file_name("observer-workload"),
    };
    let mut head = vec![0u8; 64 * 1024];
    let n = std::io::Read::read(
        &mut std::fs::File::open(&path).with_context(|| {
            format!(
                "the workload {}: pass --workload PATH (a static observer-workload: `cargo xtask guest-bins` builds one)",
                path.display()
            )
        })?,
        &mut head,
    )?;
    head.truncate(n);
    if !is_static_elf(&head) {
        bail!(
            "the workload {} is not a static executable (it must run in a busybox image and as a VM's /init): \
             pass --workload PATH to the one `cargo xtask guest-bins` builds, or run `cargo xtask demo`",
            path.display()
        );
    }
    Ok(path)
}

/// A host cgroup for the VMM, removed on drop (after QEMU is gone).
#[derive(Debug)]
pub struct VmmCgroup {
    pub path: PathBuf,
    pub id: u64,
}

impl VmmCgroup {
    pub fn create(name: &str) -> Result<Self> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").context("read mountinfo")?;
        let root = crate::container::cgroup2_mount(&mounts)
            .context("no cgroup2 hierarchy is mounted (the VMM's syscalls are told apart by its cgroup): sudo mount -t cgroup2 none /sys/fs/cgroup/unified")?;
        let path = root.join(name);
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path)?);
        Ok(VmmCgroup { path, id })
    }
}

impl Drop for VmmCgroup {
    fn drop(&mut self) {
        // A QEMU killed a moment ago may not be reaped yet: kill what is
        // left (cgroup.kill, Linux 5.14+) and give the kernel a moment.
        for i in 0..100 {
            if std::fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            if i == 0 {
                let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What the VM half needs, decided before the observer starts.
#[derive(Debug)]
pub struct VmHalf {
    pub kernel: PathBuf,
    pub workload: PathBuf,
    pub accel: Accel,
    pub calls: u64,
    pub timeout: Duration,
    pub kvm_timeout: Duration,
    pub cgroup: VmmCgroup,
    initrd: PathBuf,
}

/// What the VM reported and what its VMM cost on the host.
#[derive(Clone, Debug)]
pub struct VmRun {
    pub accel: AccelUsed,
    pub vmm_pid: u32,
    pub kernel_path: PathBuf,
    pub facts: Facts,
    /// QEMU started -> the guest's /init reported.
    pub boot: Duration,
    pub rss_bytes: u64,
    pub hwm_bytes: u64,
    pub vmm_cgroup_id: u64,
}

impl VmHalf {
    /// Checks the kernel and the workload and makes the VMM's cgroup and
    /// the initramfs. An error is one line with the fix.
    pub fn prepare(
        kernel: Option<&Path>,
        workload: &Path,
        accel: Accel,
        calls: u64,
        timeout: Duration,
        kvm_timeout: Duration,
    ) -> Result<Self> {
        let kernel = kernel.map(Path::to_owned).context(
            "no guest kernel: pass --vm-kernel PATH (a bzImage), or run `cargo xtask demo`, which fetches Debian's",
        )?;
        super::qemu::check_kernel(&kernel)?;
        let tag = std::process::id();
        let initrd = std::env::temp_dir().join(format!("observer-demo-vm-{tag}.cpio"));
        initramfs::write_file(&[Entry::file("/init", workload, 0o755)], &initrd)?;
        let cgroup = VmmCgroup::create(&format!("observer-demo-vmm-{tag}"))?;
        Ok(VmHalf {
            kernel,
            workload: workload.to_owned(),
            accel,
            calls,
            timeout,
            kvm_timeout,
            cgroup,
            initrd,
        })
    }

    /// Boots the VM, waits for its report and its power-off.
    pub async fn boot(&self) -> Result<VmRun, VmError> {
        let mut spec = VmSpec::new(self.kernel.clone(), self.initrd.clone());
        spec.append = format!("observer.calls={} observer.syscall=getppid", self.calls);
        spec.accel = self.accel;
        spec.kvm_progress = self.kvm_timeout;
        spec.cgroup = Some(self.cgroup.path.clone());
        let start = Instant::now();
        let mut vm = Vm::start(&spec).await?;
        let left = self.timeout.saturating_sub(start.elapsed());
        let facts = vm.wait_json(FACTS_TYPE, left).await?;
        let boot = vm.started.elapsed();
        let (rss_bytes, hwm_bytes) = vm.memory().unwrap_or_default();
        let facts: Facts = serde_json::from_value(facts.clone()).map_err(|e| VmError::Exited {
            what: format!("report its facts (unreadable: {e}: {facts})"),
            status: "running".into(),
            console: vm.console_tail(),
            stderr: vm.stderr(),
        })?;
        vm.wait_exit(Duration::from_secs(60)).await?;
        Ok(VmRun {
            accel: vm.accel.clone(),
            vmm_pid: vm.pid(),
            kernel_path: self.kernel.clone(),
            facts,
            boot,
            rss_bytes,
            hwm_bytes,
            vmm_cgroup_id: self.cgroup.id,
        })
    }
}

impl Drop for VmHalf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.initrd);
    }
}

/// What the container's run of the workload printed, and when it started.
#[derive(Clone, Debug)]
pub struct ContainerRun {
    pub name: String,
    pub facts: Facts,
    /// Unix ns just before `docker run` (or unshare) was started.
    pub launch_ts: i64,
    /// How the container was told apart in the records: by Docker name,
    /// or (unshare) by the hostname its namespace set.
    pub docker: bool,
}

/// The `vm` record: the VM's view and what the host saw of it.
pub fn vm_record(records: &[Value], run: &VmRun) -> Value {
    let of_vmm = |r: &&Value| r["cgroup_id"].as_u64() == Some(run.vmm_cgroup_id);
    let syscalls: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "syscall")
        .filter(of_vmm)
        .collect();
    let host_saw = syscalls
        .iter()
        .filter(|r| r["syscall"] == run.facts.syscall.as_str())
        .count();
    let pids: BTreeSet<u64> = records
        .iter()
        .filter(of_vmm)
        .filter_map(|r| r["pid"].as_u64())
        .collect();
    // Its names once QEMU runs (before its exec the task was our fork).
    let exec_ts = records
        .iter()
        .filter(of_vmm)
        .filter(|r| r["type"] == "exec")
        .filter_map(|r| r["ts"].as_i64())
        .min();
    // Our own name is the fork's before its exec.
    let own = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let comms: BTreeSet<&str> = records
        .iter()
        .filter(of_vmm)
        .filter(|r| exec_ts.is_none() || r["ts"].as_i64() >= exec_ts)
        .filter_map(|r| r["comm"].as_str())
        .filter(|c| *c != own.trim())
        .collect();
    let mut by_name: std::collections::BTreeMap<&str, u64> = Default::default();
    for r in &syscalls {
        if let Some(n) = r["syscall"].as_str() {
            *by_name.entry(n).or_default() += 1;
        }
    }
    let mut top: Vec<(&str, u64)> = by_name.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    top.truncate(5);
    json!({
        "type": "vm",
        "accel": run.accel.accel,
        "accel_why": run.accel.why,
        "vmm_pid": run.vmm_pid,
        "vmm_pids_seen": pids,
        "vmm_comms_seen": comms,
        "kernel_path": run.kernel_path,
        "release": run.facts.release,
        "version": run.facts.version,
        "boot_id": run.facts.boot_id,
        "boot_ms": run.boot.as_secs_f64() * 1e3,
        "guest_uptime_at_init_s": run.facts.uptime_s,
        "rss_bytes": run.rss_bytes,
        "hwm_bytes": run.hwm_bytes,
        "workload_syscall": run.facts.syscall,
        "guest_reported": run.facts.calls,
        "host_saw": host_saw,
        "vmm_syscalls": syscalls.len(),
        "vmm_top_syscalls": top.iter().map(|(n, c)| json!({"syscall": n, "count": c})).collect::<Vec<_>>(),
        "kvm_exits": kvm_exits(records, run.vmm_pid, &pids),
    })
}

/// The VMM's KVM exits from the observer's last `kvm_exits` record (summed
/// over the VMM's processes, a KVM attempt before a fallback included), or
/// null when they were not counted (no KVM, or no tracepoint to count them).
fn kvm_exits(records: &[Value], vmm_pid: u32, pids: &BTreeSet<u64>) -> Value {
    let Some(last) = records.iter().rev().find(|r| r["type"] == "kvm_exits") else {
        return Value::Null;
    };
    let mut exits: std::collections::BTreeMap<String, u64> = Default::default();
    let mut to_vmm: std::collections::BTreeMap<String, u64> = Default::default();
    let mut seen = Vec::new();
    for p in last["processes"].as_array().into_iter().flatten() {
        let pid = p["pid"].as_u64().unwrap_or(0);
        if pid != u64::from(vmm_pid) && !pids.contains(&pid) {
            continue;
        }
        seen.push(pid);
        for (into, key) in [(&mut exits, "exits"), (&mut to_vmm, "to_vmm")] {
            for (name, n) in p[key].as_object().into_iter().flatten() {
                *into.entry(name.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }
    json!({
        "pids": seen,
        "exits_total": exits.values().sum::<u64>(),
        "exits": exits,
        "to_vmm_total": to_vmm.values().sum::<u64>(),
        "to_vmm": to_vmm,
    })
}

/// "IO 10, HLT 1": the largest counts first.
fn top_counts(v: &Value, n: usize) -> String {
    let mut c: Vec<(&String, u64)> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| (k, n.as_u64().unwrap_or(0)))
        .collect();
    c.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    c.iter()
        .take(n)
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The KVM exits as the table says them.
fn exits_text(k: &Value) -> String {
    let mut s = format!("{} KVM exits", k["exits_total"]);
    if k["exits_total"].as_u64() > Some(0) {
        s.push_str(&format!(" ({})", top_counts(&k["exits"], 3)));
    }
    s.push_str(&format!(", {} handed on to the VMM", k["to_vmm_total"]));
    if k["to_vmm_total"].as_u64() > Some(0) {
        s.push_str(&format!(" ({})", top_counts(&k["to_vmm"], 3)));
    }
    s
}

/// The container's column: its view and what the host saw of it.
pub fn container_record(records: &[Value], run: &ContainerRun) -> Value {
    let ours = |r: &&Value| {
        if run.docker {
            r["container"]["name"] == run.name.as_str()
        } else {
            r["nodename"] == run.name.as_str()
        }
    };
    // The workload's own process: the task that exec'd it.
    let exec = records
        .iter()
        .filter(|r| r["type"] == "exec")
        .filter(ours)
        .find(|r| {
            r["filename"]
                .as_str()
                .is_some_and(|f| f.ends_with("observer-workload"))
        });
    let pid = exec.and_then(|e| e["pid"].as_u64());
    let cgroup = exec.and_then(|e| e["cgroup_id"].as_u64());
    let pidns = exec.and_then(|e| e["pidns"].as_u64());
    let exec_ts = exec.and_then(|e| e["ts"].as_i64());
    let in_cgroup = |r: &&Value| cgroup.is_some() && r["cgroup_id"].as_u64() == cgroup;
    // From its exec on: before it, the same task was the runtime's init.
    let seen_calls = records
        .iter()
        .filter(|r| {
            r["type"] == "syscall"
                && r["syscall"] == run.facts.syscall.as_str()
                && pid.is_some()
                && r["pid"].as_u64() == pid
                && r["ts"].as_i64() >= exec_ts
        })
        .count();
    let first_ts = records
        .iter()
        .filter(in_cgroup)
        .filter_map(|r| r["ts"].as_i64())
        .min();
    // Its own processes: in its own PID namespace (the runtime's helpers
    // start in the host's before they enter it).
    let processes: BTreeSet<(u64, u64)> = records
        .iter()
        .filter(in_cgroup)
        .filter(|r| r["type"] != "container" && r["pidns"].as_u64() == pidns)
        .filter_map(|r| Some((r["pid"].as_u64()?, r["ns_pid"].as_u64()?)))
        .collect();
    let ms = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(a), Some(b)) => json!((b - a) as f64 / 1e6),
        _ => Value::Null,
    };
    json!({
        "name": run.name,
        "release": run.facts.release,
        "version": run.facts.version,
        "boot_id": run.facts.boot_id,
        "workload_syscall": run.facts.syscall,
        "guest_reported": run.facts.calls,
        "host_saw": seen_calls,
        "cgroup_to_exec_ms": ms(first_ts, exec_ts),
        "launch_to_exec_ms": ms(Some(run.launch_ts), exec_ts),
        "memory_bytes": run.facts.cgroup_memory_bytes,
        "memory_peak_bytes": run.facts.cgroup_memory_peak_bytes,
        "processes": processes.iter().map(|(p, n)| json!({"pid": p, "ns_pid": n})).collect::<Vec<_>>(),
    })
}

/// The `contrast` record: both columns, the VM's `null` with `vm_error`
/// when it did not run.
pub fn contrast_record(
    container: Option<Value>,
    vm: Option<Value>,
    vm_error: Option<&str>,
) -> Value {
    json!({
        "type": "contrast",
        "container": container,
        "vm": vm,
        "vm_error": vm_error,
    })
}

fn mib(v: &Value) -> String {
    v.as_u64()
        .map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "?".into())
}

/// The side-by-side verdict for the room, every row from the records.
pub fn table(contrast: &Value, host: &Value) -> String {
    let c = &contrast["container"];
    let v = &contrast["vm"];
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let host_release = host["release"].as_str().unwrap_or("?");
    let host_boot = host["boot_id"].as_str().unwrap_or("?");
    let whose = |release: &Value, boot: &Value| {
        let (Some(r), Some(b)) = (release.as_str(), boot.as_str()) else {
            return "—".to_owned();
        };
        let same = r == host_release && b == host_boot;
        format!(
            "{r}, boot {} ({})",
            &b[..b.len().min(8)],
            if same {
                "the host's"
            } else if b == host_boot {
                "the host's boot, another release?"
            } else {
                "its own"
            }
        )
    };
    rows.push((
        "kernel the workload saw".into(),
        whose(&c["release"], &c["boot_id"]),
        whose(&v["release"], &v["boot_id"]),
    ));
    let calls = |x: &Value| {
        if x.is_null() {
            return "—".to_owned();
        }
        format!(
            "{} of {} {}",
            x["host_saw"],
            x["guest_reported"],
            x["workload_syscall"].as_str().unwrap_or("?")
        )
    };
    rows.push(("its calls the host kernel saw".into(), calls(c), calls(v)));
    rows.push((
        "what the host saw instead".into(),
        "—".into(),
        if v.is_null() {
            "—".into()
        } else if v["accel"] == "kvm" {
            format!(
                "{} syscalls of the VMM (ioctl KVM_RUN), {}",
                v["vmm_syscalls"],
                if v["kvm_exits"].is_null() {
                    "KVM exits uncounted".into()
                } else {
                    exits_text(&v["kvm_exits"])
                }
            )
        } else {
            let top = v["vmm_top_syscalls"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .take(3)
                        .map(|t| format!("{} {}", t["syscall"].as_str().unwrap_or("?"), t["count"]))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let attempt = match &v["kvm_exits"] {
                k if k["exits_total"].as_u64() > Some(0)
                    || k["to_vmm_total"].as_u64() > Some(0) =>
                {
                    format!("; its KVM attempt: {}", exits_text(k))
                }
                _ => String::new(),
            };
            format!(
                "{} syscalls of the VMM itself (TCG): {top}{attempt}",
                v["vmm_syscalls"]
            )
        },
    ));
    let ms = |x: &Value| x.as_f64().map(|m| format!("{m:.1} ms"));
    rows.push((
        "start: launch -> workload runs".into(),
        match (ms(&c["cgroup_to_exec_ms"]), ms(&c["launch_to_exec_ms"])) {
            (Some(a), Some(b)) => format!("{a} (cgroup -> exec), {b} from `docker run`"),
            (a, b) => a.or(b).unwrap_or_else(|| "?".into()),
        },
        if v.is_null() {
            "—".into()
        } else {
            format!(
                "{:.2} s (VMM start -> /init; guest uptime {:.2} s)",
                v["boot_ms"].as_f64().unwrap_or(0.0) / 1e3,
                v["guest_uptime_at_init_s"].as_f64().unwrap_or(0.0)
            )
        },
    ));
    rows.push((
        "memory".into(),
        if c.is_null() {
            "—".into()
        } else {
            format!(
                "{} now, {} peak (its cgroup)",
                mib(&c["memory_bytes"]),
                mib(&c["memory_peak_bytes"])
            )
        },
        if v.is_null() {
            "—".into()
        } else {
            format!(
                "{} RSS, {} peak (the VMM process)",
                mib(&v["rss_bytes"]),
                mib(&v["hwm_bytes"])
            )
        },
    ));
    rows.push((
        "processes the host sees".into(),
        c["processes"]
            .as_array()
            .map(|p| {
                p.iter()
                    .map(|x| format!("pid {} (in it: {})", x["pid"], x["ns_pid"]))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| "—".into()),
        if v.is_null() {
            "—".into()
        } else {
            format!(
                "one VMM process, pid {} ({})",
                v["vmm_pid"],
                v["vmm_comms_seen"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            )
        },
    ));
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w1 = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .max("container".len());
    let mut o = String::new();
    let _ = writeln!(o, "  {:w0$}  {:w1$}  VM", "", "container");
    for (a, b, c) in &rows {
        let _ = writeln!(o, "  {a:w0$}  {b:w1$}  {c}");
    }
    if let Some(e) = contrast["vm_error"].as_str() {
        let _ = writeln!(o, "\n  The VM half did not run: {e}");
    }
    if !v.is_null() {
        let _ = writeln!(
            o,
            "\n  The VM ran with {} ({}).",
            v["accel"].as_str().unwrap_or("?"),
            v["accel_why"].as_str().unwrap_or("")
        );
        let _ = writeln!(
            o,
            "\nThe container virtualised the OS user space and shared the host kernel: this kernel answered its {} {} calls.\n\
             The VM virtualised the hardware and ran a complete kernel of its own ({}): its {} calls never reached this kernel,\n\
             which only saw the VMM process that runs it.",
            c["guest_reported"],
            c["workload_syscall"].as_str().unwrap_or("?"),
            v["release"].as_str().unwrap_or("?"),
            v["guest_reported"],
        );
    }
    o
}

/// The demo's VM half from start to verdict; a piece that can't run is
/// kept as one line for the room, never an error for the container half.
#[derive(Debug, Default)]
pub struct DemoVm {
    half: Option<VmHalf>,
    workload: Option<PathBuf>,
    calls: u64,
    /// Why the VM half (or the workload container) could not run.
    pub error: Option<String>,
    pub container: Option<ContainerRun>,
    pub vm: Option<VmRun>,
}

fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl DemoVm {
    /// Checks what the VM half needs before the observer starts. A bad
    /// `--vm-kernel` is an error (the user asked for that file); anything
    /// else missing is kept in `error`.
    pub fn new(args: &crate::cli::DemoArgs) -> Result<DemoVm> {
        let mut d = DemoVm {
            calls: args.calls,
            ..Default::default()
        };
        let workload = match find_workload(args.workload.as_deref()) {
            Ok(w) => w,
            Err(e) => {
                d.error = Some(format!("{e:#}"));
                return Ok(d);
            }
        };
        d.workload = Some(workload.clone());
        if let Some(k) = &args.vm_kernel {
            super::qemu::check_kernel(k).map_err(|e| anyhow::anyhow!("--vm-kernel: {e}"))?;
        }
        let (binary, package) = super::qemu::qemu_binary();
        let has_qemu = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|d| d.join(binary).is_file());
        if !has_qemu {
            d.error = Some(format!(
                "{binary} is not installed: run `sudo apt-get install {package}` (or `cargo xtask demo`, which installs it)"
            ));
            return Ok(d);
        }
        match VmHalf::prepare(
            args.vm_kernel.as_deref(),
            &workload,
            args.accel,
            args.calls,
            Duration::from_secs_f64(args.vm_timeout),
            Duration::from_secs_f64(args.kvm_timeout),
        ) {
            Ok(h) => d.half = Some(h),
            Err(e) => d.error = Some(format!("{e:#}")),
        }
        Ok(d)
    }

    /// The VMM's cgroup, for the observer's `--host-cgroup`.
    pub fn host_cgroup(&self) -> Option<PathBuf> {
        self.half.as_ref().map(|h| h.cgroup.path.clone())
    }

    /// The workload in a container (Docker `image`) or, without Docker, in
    /// namespaces made by unshare.
    pub async fn run_container(&mut self, image: Option<&str>) -> Result<()> {
        let Some(workload) = &self.workload else {
            return Ok(());
        };
        let tag = std::process::id();
        let calls = self.calls.to_string();
        let (name, mut cmd) = match image {
            Some(image) => {
                let name = format!("observer-demo-workload-{tag}");
                let mut c = tokio::process::Command::new("docker");
                c.args(["run", "--rm", "--network", "none", "--name", &name, "-v"])
                    .arg(format!("{}:/observer-workload:ro", workload.display()))
                    .args([image, "/observer-workload", "--facts", "--calls", &calls]);
                (name, c)
            }
            None => {
                let name = "demo-workload".to_owned();
                let mut c = tokio::process::Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc", "--uts", "sh", "-c"])
                    .arg(format!(
                        "hostname {name}; exec {} --facts --calls {calls}",
                        workload.display()
                    ));
                (name, c)
            }
        };
        let launch_ts = unix_ns();
        let out = cmd
            .kill_on_drop(true)
            .output()
            .await
            .context("run the workload container")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let facts = text
            .lines()
            .find_map(|l| serde_json::from_str::<Facts>(l).ok())
            .with_context(|| {
                format!(
                    "the workload container printed no facts ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })?;
        self.container = Some(ContainerRun {
            name,
            facts,
            launch_ts,
            docker: image.is_some(),
        });
        Ok(())
    }

    /// Boots the VM (time-boxed); a failure is kept in `error`. Returns
    /// an error only when interrupted (Ctrl-C, SIGTERM): QEMU is killed
    /// before it returns.
    pub async fn run_vm(&mut self) -> Result<()> {
        let Some(half) = &self.half else {
            return Ok(());
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install SIGTERM handler")?;
        let r = tokio::select! {
            r = half.boot() => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted while the VM booted: QEMU killed"),
            _ = term.recv() => bail!("terminated while the VM booted: QEMU killed"),
        };
        match r {
            Ok(run) => self.vm = Some(run),
            Err(e) => self.error = Some(e.to_string()),
        }
        Ok(())
    }

    /// The `vm` and `contrast` records (to append to the stream) and the
    /// side-by-side table.
    pub fn verdict(&self, records: &[Value]) -> (Vec<Value>, String) {
        let kernel = records
            .iter()
            .find(|r| r["type"] == "kernel")
            .cloned()
            .unwrap_or(Value::Null);
        let c = self
            .container
            .as_ref()
            .map(|c| container_record(records, c));
        let v = self.vm.as_ref().map(|v| vm_record(records, v));
        let contrast = contrast_record(c, v.clone(), self.error.as_deref());
        let table = table(&contrast, &kernel);
        (v.into_iter().chain([contrast]).collect(), table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(release: &str, boot: &str) -> Facts {
        Facts {
            kind: FACTS_TYPE.into(),
            release: release.into(),
            version: "#1 SMP".into(),
            machine: "x86_64".into(),
            boot_id: boot.into(),
            uptime_s: 1.5,
            pid: 1,
            syscall: "getppid".into(),
            calls: 3,
            ns_per_call: 100.0,
            cgroup_memory_bytes: Some(1 << 20),
            cgroup_memory_peak_bytes: Some(2 << 20),
        }
    }

    #[test]
    fn static_and_dynamic_executables() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries are linked like the host's: dynamic unless built
        // with +crt-static.
        let dynamic =
            me.windows(12).any(|w| w == b"/ld-linux-x8") || me.windows(8).any(|w| w == b"/ld-linu");
        assert_eq!(is_static_elf(&me), !dynamic);
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(&[]));
    }

    #[test]
    fn both_columns_from_the_records() {
        let c = json!({"id": "abc", "name": "demo-workload"});
        let vmm_cg = 777;
        let records = vec![
            json!({"type": "kernel", "release": "6.18", "boot_id": "hostboot"}),
            json!({"type": "syscall", "ts": 900_000, "pid": 48, "ns_pid": 48, "pidns": 1, "syscall": "getppid", "comm": "runc", "cgroup_id": 9, "container": c}),
            json!({"type": "syscall", "ts": 1_000_000, "pid": 50, "ns_pid": 1, "pidns": 2, "syscall": "getppid", "comm": "runc:[2:INIT]", "cgroup_id": 9, "container": c}),
            json!({"type": "exec", "ts": 4_000_000, "pid": 50, "ns_pid": 1, "pidns": 2, "filename": "/observer-workload", "cgroup_id": 9, "container": c}),
            json!({"type": "syscall", "ts": 5_000_000, "pid": 50, "ns_pid": 1, "pidns": 2, "syscall": "getppid", "cgroup_id": 9, "container": c}),
            json!({"type": "syscall", "ts": 5_000_001, "pid": 50, "ns_pid": 1, "pidns": 2, "syscall": "getppid", "cgroup_id": 9, "container": c}),
            json!({"type": "syscall", "ts": 5_000_002, "pid": 50, "ns_pid": 1, "pidns": 2, "syscall": "getppid", "cgroup_id": 9, "container": c}),
            json!({"type": "syscall", "ts": 6_000_000, "pid": 900, "ns_pid": 900, "syscall": "ppoll", "comm": "qemu-system-x86", "cgroup_id": vmm_cg, "container": null}),
            json!({"type": "syscall", "ts": 6_000_001, "pid": 900, "ns_pid": 900, "syscall": "write", "comm": "qemu-system-x86", "cgroup_id": vmm_cg, "container": null}),
        ];
        let crun = ContainerRun {
            name: "demo-workload".into(),
            facts: facts("6.18", "hostboot"),
            launch_ts: 0,
            docker: true,
        };
        let col = container_record(&records, &crun);
        assert_eq!(col["host_saw"], 3);
        assert_eq!(col["cgroup_to_exec_ms"], 3.1);
        assert_eq!(col["launch_to_exec_ms"], 4.0);
        assert_eq!(col["processes"], json!([{"pid": 50, "ns_pid": 1}]));
        let vrun = VmRun {
            accel: AccelUsed {
                accel: "tcg",
                why: "asked for".into(),
            },
            vmm_pid: 900,
            kernel_path: "/k".into(),
            facts: facts("6.1.0-50-amd64", "guestboot"),
            boot: Duration::from_millis(9500),
            rss_bytes: 200 << 20,
            hwm_bytes: 210 << 20,
            vmm_cgroup_id: vmm_cg,
        };
        let v = vm_record(&records, &vrun);
        assert_eq!(v["host_saw"], 0);
        assert_eq!(v["guest_reported"], 3);
        assert_eq!(v["vmm_syscalls"], 2);
        assert_eq!(v["vmm_pids_seen"], json!([900]));
        assert!(v["kvm_exits"].is_null(), "not counted: null");
        let contrast = contrast_record(Some(col), Some(v), None);
        let t = table(&contrast, &records[0]);
        assert!(t.contains("6.18, boot hostboot (the host's)"), "{t}");
        assert!(t.contains("6.1.0-50-amd64, boot guestboo (its own)"), "{t}");
        assert!(t.contains("3 of 3 getppid"), "{t}");
        assert!(t.contains("0 of 3 getppid"), "{t}");
        assert!(
            t.contains("2 syscalls of the VMM itself (TCG): ppoll 1, write 1"),
            "{t}"
        );
        assert!(t.contains("9.50 s"), "{t}");
        assert!(t.contains("200.0 MiB RSS"), "{t}");
        assert!(t.contains("one VMM process, pid 900"), "{t}");
        let none = contrast_record(
            Some(container_record(&records, &crun)),
            None,
            Some("qemu-system-x86_64 is not installed"),
        );
        let t = table(&none, &records[0]);
        assert!(
            t.contains("The VM half did not run: qemu-system-x86_64"),
            "{t}"
        );

        // Under KVM: the observer's last kvm_exits record, for the VMM's
        // processes only.
        let mut records = records;
        records.push(json!({"type": "kvm_exits", "processes": [
            {"pid": 900, "exits": {"IO_INSTRUCTION": 7}, "to_vmm": {"IO": 5, "HLT": 1}},
            {"pid": 901, "exits": {"HLT": 100}, "to_vmm": {}},
        ]}));
        records.push(json!({"type": "kvm_exits", "processes": [
            {"pid": 900, "exits": {"IO_INSTRUCTION": 9, "EPT_VIOLATION": 40}, "to_vmm": {"IO": 6, "HLT": 1}},
            {"pid": 901, "exits": {"HLT": 100}, "to_vmm": {}},
        ]}));
        let vrun = VmRun {
            accel: AccelUsed {
                accel: "kvm",
                why: "asked for".into(),
            },
            ..vrun
        };
        let v = vm_record(&records, &vrun);
        assert_eq!(
            v["kvm_exits"],
            json!({"pids": [900], "exits_total": 49, "exits": {"EPT_VIOLATION": 40, "IO_INSTRUCTION": 9},
                   "to_vmm_total": 7, "to_vmm": {"HLT": 1, "IO": 6}})
        );
        let contrast = contrast_record(Some(container_record(&records, &crun)), Some(v), None);
        let t = table(&contrast, &records[0]);
        assert!(
            t.contains("2 syscalls of the VMM (ioctl KVM_RUN), 49 KVM exits (EPT_VIOLATION 40, IO_INSTRUCTION 9), 7 handed on to the VMM (IO 6, HLT 1)"),
            "{t}"
        );
    }
}
