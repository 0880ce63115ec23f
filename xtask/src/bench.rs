//! `cargo xtask bench`: what the observer costs every syscall on the host,
//! side by side with the floor (an empty program on the same hook) and with
//! bpftrace; how many events per second it sustains with zero drops; its own
//! CPU and memory. One run, phases interleaved with `off` phases, workload
//! pinned to CPU 0 and the tools to CPU 1. Timings are compared as ratios to
//! the neighbouring `off` phases, measured in the same run.

use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{
    smaps,
    util::{apt_install, output, which, workspace_root},
};

pub struct Bench {
    observer: PathBuf,
    workload: PathBuf,
    quick: bool,
    out_dir: PathBuf,
    cgroup: CgroupDir,
    /// Per-call cost as the workload thread's CPU time rather than the
    /// wall clock (`--cpu-time`).
    cpu_time: bool,
}

impl Bench {
    /// Writes `<stem>.json` and `<stem>.md` under the bench's output
    /// directory and prints the table and where both went.
    fn write_report(&self, stem: &str, report: &Value, md: &str) -> Result<()> {
        let json = self.out_dir.join(format!("{stem}.json"));
        fs::write(&json, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("write {}", json.display()))?;
        let table = self.out_dir.join(format!("{stem}.md"));
        fs::write(&table, md).with_context(|| format!("write {}", table.display()))?;
        println!("{md}");
        println!(
            "Report: {}",
            self.out_dir.join(format!("{stem}.{{json,md}}")).display()
        );
        Ok(())
    }
}

/// A container-shaped cgroup (`/docker/<64 hex>`) so that the observer,
/// which shows containers by default, streams the workload's events.
struct CgroupDir {
    path: PathBuf,
}

impl CgroupDir {
    fn new() -> Result<Self> {
        let mounts = fs::read_to_string("/proc/self/mountinfo")?;
        let root = mounts
            .lines()
            .find_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                let mount_point = pre.split_whitespace().nth(4)?;
                post.starts_with("cgroup2 ")
                    .then(|| PathBuf::from(mount_point))
            })
            .context("no cgroup2 hierarchy is mounted")?;
        let id = format!("{:064x}", 0xbe_u128 << 100 | std::process::id() as u128);
        let path = root.join("docker").join(id);
        fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(CgroupDir { path })
    }
}

impl Drop for CgroupDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.path);
    }
}

/// A tool under test, pinned to CPU 1.
struct Tool {
    child: Child,
}

impl Tool {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait()? {
                if !st.success() && st.code() != Some(130) {
                    bail!("tool exited with {st}");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("tool did not stop within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// BPF links a process holds: attached means at least `n` of them.
fn bpf_links(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("bpf_link"))
                })
                .count()
        })
        .unwrap_or(0)
}

fn wait_attached(t: &mut Tool, links: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while bpf_links(t.pid()) < links {
        if let Some(st) = t.child.try_wait()? {
            bail!("tool exited early ({st})");
        }
        if Instant::now() > deadline {
            bail!("tool did not attach within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the reader settle.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

/// CPU time of every thread of a process, in ns (schedstat: finer than the
/// clock ticks of /proc/PID/stat, which round a quiet daemon down to 0).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn status_kb(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The largest resident memory (without the ring buffers) a process
/// reaches while watched, with its breakdown at that moment: smaps read
/// every 250 ms from a thread of the bench's own.
struct MemoryPeak {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<smaps::Breakdown>,
}

impl MemoryPeak {
    fn watch(pid: u32) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = smaps::Breakdown::default();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match smaps::of(pid) {
                    Some(b) if b.without_ring() > peak.without_ring() => peak = b,
                    Some(_) => {}
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            peak
        });
        MemoryPeak { stop, thread }
    }

    fn finish(self) -> smaps::Breakdown {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Kernel memory charged for the maps a process holds (fdinfo `memlock`).
fn map_memory(pid: u32) -> Vec<Value> {
    let mut maps = Vec::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return maps;
    };
    for e in dir.flatten() {
        if !fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("bpf-map")) {
            continue;
        }
        let info = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let get = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        maps.push(json!({
            "map_type": get("map_type:").parse::<u64>().unwrap_or(0),
            "max_entries": get("max_entries:").parse::<u64>().unwrap_or(0),
            "value_size": get("value_size:").parse::<u64>().unwrap_or(0),
            "memlock": get("memlock:").parse::<u64>().unwrap_or(0),
        }));
    }
    maps
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Bench {
    pub fn new(observer: PathBuf, workload: PathBuf, quick: bool) -> Result<Self> {
        let out_dir = workspace_root().join("target/bench");
        fs::create_dir_all(&out_dir)?;
        Ok(Bench {
            observer,
            workload,
            quick,
            out_dir,
            cgroup: CgroupDir::new()?,
            cpu_time: false,
        })
    }

    fn calls(&self) -> u64 {
        if self.quick {
            300_000
        } else {
            3_000_000
        }
    }

    /// ns per getppid, pinned to CPU 0; `in_cgroup`: in the container-shaped cgroup.
    fn getppid_ns(&self, in_cgroup: bool) -> Result<f64> {
        self.getppid_ns_on(&["0"], in_cgroup)
    }

    /// `getppid_ns` with one workload pinned to each of `cpus`, all at
    /// once: their mean.
    fn getppid_ns_on(&self, cpus: &[&str], in_cgroup: bool) -> Result<f64> {
        let children = cpus
            .iter()
            .map(|cpu| {
                let mut c = Command::new(&self.workload);
                c.args(["--cpu", cpu, "--calls", &self.calls().to_string()]);
                if in_cgroup {
                    c.arg("--cgroup").arg(&self.cgroup.path);
                }
                c.stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .context("run observer-workload")
            })
            .collect::<Result<Vec<Child>>>()?;
        let key = if self.cpu_time {
            "cpu_ns_per_call"
        } else {
            "ns_per_call"
        };
        let mut sum = 0.0;
        for c in children {
            let v = workload_report(c.wait_with_output().context("wait for observer-workload")?)?;
            sum += v[key].as_f64().context("workload report")?;
        }
        Ok(sum / cpus.len() as f64)
    }

    fn spawn_ns(&self) -> Result<f64> {
        let n = if self.quick { "100" } else { "500" };
        let mut c = Command::new(&self.workload);
        c.args(["--cpu", "0", "--spawn", n])
            .arg("--cgroup")
            .arg(&self.cgroup.path);
        let v = self.run_workload(&mut c)?;
        v["ns_per_spawn"].as_f64().context("workload report")
    }

    fn run_workload(&self, c: &mut Command) -> Result<Value> {
        workload_report(
            c.stderr(Stdio::inherit())
                .output()
                .context("run observer-workload")?,
        )
    }

    fn observer(&self, args: &[&str], links: usize) -> Result<Tool> {
        self.observer_bin(&self.observer, args, links)
    }

    fn observer_bin(&self, bin: &Path, args: &[&str], links: usize) -> Result<Tool> {
        let child = Command::new("taskset")
            .arg("-c")
            .arg("1")
            .arg(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the observer")?;
        let mut t = Tool { child };
        wait_attached(&mut t, links)?;
        Ok(t)
    }

    fn bpftrace(&self) -> Result<Tool> {
        let mut child = Command::new("taskset")
            .args([
                "-c",
                "1",
                "bpftrace",
                "-e",
                "tracepoint:raw_syscalls:sys_enter { @[cgroup, args->id] = count(); }",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start bpftrace")?;
        // "Attaching 1 probe..." comes once it is attached.
        let stdout = child.stdout.take().context("bpftrace stdout")?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        // It prints its maps at exit: keep reading so that it can.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        std::thread::sleep(Duration::from_millis(300));
        Ok(Tool { child })
    }

    /// One phase: start the tool, measure, stop it. A `_probe_read` suffix:
    /// the same with the 5.10 fallback's programs (`--task-access
    /// probe-read`).
    ///
    /// A `_per_cpu` suffix: with a ring per CPU (`--rings per-cpu`). A
    /// `_2cpu` suffix before it: two workloads at once, pinned to CPUs 0
    /// and 1, each producing into the rings (the figure is their mean).
    fn phase(&self, name: &str) -> Result<f64> {
        let mut extra: Vec<&str> = Vec::new();
        let mut name = name;
        if let Some(base) = name.strip_suffix(PROBE_READ) {
            extra.extend(["--task-access", "probe-read"]);
            name = base;
        }
        if let Some(base) = name.strip_suffix(PER_CPU) {
            extra.extend(["--rings", "per-cpu"]);
            name = base;
        }
        let cpus: &[&str] = match name.strip_suffix(TWO_CPUS) {
            Some(base) => {
                name = base;
                &["0", "1"]
            }
            None => &["0"],
        };
        self.phase_with(name, &extra, cpus)
    }

    fn phase_with(&self, name: &str, access: &[&str], cpus: &[&str]) -> Result<f64> {
        let observer = |args: &[&str], links: usize| {
            let all: Vec<&str> = args.iter().chain(access).copied().collect();
            self.observer(&all, links)
        };
        let file = self.out_dir.join("stream.jsonl");
        let file_s = file.to_string_lossy().into_owned();
        let ns = match name {
            "off" => self.getppid_ns_on(cpus, true)?,
            "floor" => {
                let t = self.observer(&["floor"], 1)?;
                let ns = self.getppid_ns(true)?;
                t.stop()?;
                ns
            }
            "floor_classic" => {
                let t = self.observer(&["floor", "--classic"], 1)?;
                let ns = self.getppid_ns(true)?;
                t.stop()?;
                ns
            }
            "count" | "count_no_claims" | "count_refused_fork_tasks" => {
                let mut args = vec!["--mode", "count", "--output", "/dev/null"];
                match name {
                    "count_no_claims" => args.push("--no-claims"),
                    "count_refused_fork_tasks" => args.push("--refused-fork-tasks"),
                    _ => {}
                }
                let t = observer(&args, 4)?;
                let ns = self.getppid_ns(true)?;
                t.stop()?;
                ns
            }
            "stream_null"
            | "stream_file"
            | "stream_null_no_claims"
            | "stream_null_refused_fork_tasks"
            | "stream_file_commit_each" => {
                let out = if name.starts_with("stream_file") {
                    file_s.as_str()
                } else {
                    "/dev/null"
                };
                let mut args = vec!["--output", out];
                match name {
                    "stream_null_no_claims" => args.push("--no-claims"),
                    "stream_null_refused_fork_tasks" => args.push("--refused-fork-tasks"),
                    _ => {}
                }
                // The reader handing each record's space back at once, as
                // aya's `RingBuf::next` does (the default batches it).
                if name == "stream_file_commit_each" {
                    args.extend(["--ring-commit-bytes", "0"]);
                }
                let t = observer(&args, 7)?;
                let ns = self.getppid_ns_on(cpus, true)?;
                t.stop()?;
                let _ = fs::remove_file(&file);
                ns
            }
            "stream_filtered" => {
                // The common case on a busy host: the host's own syscalls,
                // filtered out in the kernel while containers are watched.
                let t = observer(&["--output", "/dev/null"], 7)?;
                let ns = self.getppid_ns(false)?;
                t.stop()?;
                ns
            }
            "bpftrace" => {
                let t = self.bpftrace()?;
                let ns = self.getppid_ns(true)?;
                t.stop()?;
                ns
            }
            other => bail!("unknown phase {other}"),
        };
        Ok(ns)
    }

    /// Interleaved rounds: off, X, off, Y, off, …
    fn overhead(&self, phases: &[&str], rounds: usize) -> Result<Value> {
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); phases.len()];
        let mut added: Vec<Vec<f64>> = vec![Vec::new(); phases.len()];
        let mut ns: Vec<Vec<f64>> = vec![Vec::new(); phases.len()];
        // The `off` beside a two-CPU phase is two workloads at once too.
        let off_of = |p: &str| {
            if p.contains(TWO_CPUS) {
                "off_2cpu"
            } else {
                "off"
            }
        };
        let mut offs: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        for round in 0..rounds {
            let mut kind = off_of(phases.first().copied().unwrap_or("off"));
            let mut before = self.phase(kind)?;
            offs.entry(kind).or_default().push(before);
            for (i, p) in phases.iter().enumerate() {
                if off_of(p) != kind {
                    kind = off_of(p);
                    before = self.phase(kind)?;
                    offs.entry(kind).or_default().push(before);
                }
                let v = self.phase(p)?;
                let after = self.phase(kind)?;
                offs.entry(kind).or_default().push(after);
                let off = (before + after) / 2.0;
                ns[i].push(v);
                ratios[i].push(v / off);
                added[i].push(v - off);
                eprintln!(
                    "bench: round {} {p}: {v:.1} ns/call (off {off:.1}, ratio {:.2})",
                    round + 1,
                    v / off
                );
                before = after;
            }
        }
        let stats = |v: &[f64]| {
            let mut c = v.to_vec();
            let med = median(&mut c);
            json!({"median": med, "min": c.first(), "max": c.last()})
        };
        let mut out = serde_json::Map::new();
        for (kind, v) in &offs {
            out.insert((*kind).into(), json!({"ns_per_call": stats(v)}));
        }
        for (i, p) in phases.iter().enumerate() {
            out.insert((*p).into(), json!({"ns_per_call": stats(&ns[i]), "ratio": stats(&ratios[i]), "ns_added": stats(&added[i])}));
        }
        Ok(Value::Object(out))
    }

    fn fork_exec(&self) -> Result<Value> {
        let mut off = Vec::new();
        let mut on = Vec::new();
        for _ in 0..if self.quick { 1 } else { 3 } {
            off.push(self.spawn_ns()?);
            let t = self.observer(&["--output", "/dev/null"], 7)?;
            on.push(self.spawn_ns()?);
            t.stop()?;
        }
        let (off, on) = (median(&mut off), median(&mut on));
        Ok(json!({"off_us": off / 1e3, "stream_us": on / 1e3, "ratio": on / off}))
    }

    /// One step of the sustained-rate test: `rate` getppid/s from several
    /// workers for `secs`, JSON per event to a file. Zero drops means every
    /// generated call reached the daemon and no reserve failed.
    fn sustained_step(&self, rate: u64, secs: f64) -> Result<Value> {
        self.streamed(rate, secs, None)
    }

    /// A sustained step with `--web` and `clients` readers of `/events`
    /// connected (and reading) all along: what the page costs the pipeline.
    fn web_step(&self, rate: u64, secs: f64, clients: usize) -> Result<Value> {
        self.streamed(rate, secs, Some(clients))
    }

    fn streamed(&self, rate: u64, secs: f64, web: Option<usize>) -> Result<Value> {
        self.streamed_bin(&self.observer, rate, secs, web, &[], &["0", "0"])
    }

    /// A sustained step run with the observer binary `bin`.
    /// `extra`: more observer arguments; `cpus`: one worker on each.
    fn streamed_bin(
        &self,
        bin: &Path,
        rate: u64,
        secs: f64,
        web: Option<usize>,
        extra: &[&str],
        cpus: &[&str],
    ) -> Result<Value> {
        let file = self.out_dir.join("sustained.jsonl");
        let file_s = file.to_string_lossy().into_owned();
        let addr = match web {
            Some(_) => Some(free_loopback_addr()?),
            None => None,
        };
        let mut args = vec!["--output".to_owned(), file_s.clone()];
        if let Some(a) = &addr {
            args.extend(["--web".to_owned(), a.clone()]);
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let t = self.observer_bin(bin, &args, 7)?;
        let pid = t.pid();
        let readers = match (web, &addr) {
            (Some(n), Some(a)) => Some(SseReaders::connect(a, n)?),
            _ => None,
        };
        let rss_before_load = status_kb(pid, "VmRSS:");
        let mem_rest = smaps::of(pid).unwrap_or_default();
        let peak = MemoryPeak::watch(pid);
        let workers = cpus.len() as u64;
        let t0 = cpu_ns(pid);
        let start = Instant::now();
        let children: Vec<Child> = cpus
            .iter()
            .map(|cpu| {
                Command::new(&self.workload)
                    .args([
                        "--cpu",
                        cpu,
                        "--rate",
                        &(rate / workers).to_string(),
                        "--seconds",
                        &secs.to_string(),
                    ])
                    .arg("--cgroup")
                    .arg(&self.cgroup.path)
                    .stdout(Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        let mut generated = 0;
        for c in children {
            let out = c.wait_with_output()?;
            let v: Value = serde_json::from_slice(&out.stdout)?;
            generated += v["calls"].as_u64().unwrap_or(0);
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu_s = (cpu_ns(pid) - t0) as f64 / 1e9;
        let mem_peak = peak.finish();
        let hwm = status_kb(pid, "VmHWM:");
        let rss = status_kb(pid, "VmRSS:");
        let mem_end = smaps::of(pid).unwrap_or_default();
        let maps = map_memory(pid);
        // At rest again: what the load left behind once the daemon has
        // written everything out and a summary interval has passed.
        std::thread::sleep(Duration::from_secs(2));
        let mem_after = smaps::of(pid).unwrap_or_default();
        let web_clients = readers.map(SseReaders::finish).transpose()?;
        t.stop()?;
        // What the daemon received for the cgroup, and what was lost: from
        // its summary and loss lines, read as a stream (the file holds a
        // line per event, gigabytes at these rates).
        let cgroup_id = fs::metadata(&self.cgroup.path)?.ino();
        let mut received = 0;
        let mut lost = 0;
        let mut dropped = 0;
        let mut lines = 0u64;
        let reader = BufReader::with_capacity(1 << 20, fs::File::open(&file)?);
        for l in reader.split(b'\n') {
            let l = l?;
            lines += 1;
            if l.starts_with(br#"{"type":"summary""#) {
                let v: Value = serde_json::from_slice(&l)?;
                for c in v["containers"].as_array().into_iter().flatten() {
                    if c["cgroup_id"] == cgroup_id {
                        received += c["syscalls"]["getppid"].as_u64().unwrap_or(0);
                    }
                }
            } else if l.starts_with(br#"{"type":"loss""#) {
                let v: Value = serde_json::from_slice(&l)?;
                lost = v["lost_total"].as_u64().unwrap_or(0);
                dropped = v["dropped_by_daemon"].as_u64().unwrap_or(0);
            }
        }
        let _ = fs::remove_file(&file);
        let achieved = generated as f64 / elapsed;
        Ok(json!({
            "rate": rate, "seconds": secs, "workers": workers,
            "generated": generated, "received": received, "lost": lost, "json_lines": lines,
            // Lines the daemon could not hand to a slow output count too.
            "dropped_by_daemon": dropped,
            "zero_drops": lost == 0 && dropped == 0 && received == generated,
            // A step counts only if the workers really made that rate.
            "rate_reached": achieved >= 0.95 * rate as f64,
            "achieved_rate": achieved,
            "daemon_cpu_s": cpu_s,
            "cpu_s_per_million": cpu_s / (generated.max(1) as f64 / 1e6),
            "vm_hwm_kb": hwm, "vm_rss_kb": rss, "ring_rss_kb": mem_end.ring,
            // The ring buffers' pages excluded by their mappings.
            "rss_without_ring_kb": mem_end.without_ring(),
            "rss_before_load_kb": rss_before_load,
            "memory": {
                "rest": mem_rest.to_json(),
                "peak": mem_peak.to_json(),
                "end": mem_end.to_json(),
                "after": mem_after.to_json(),
            },
            "maps": maps,
            "web_clients": web_clients,
        }))
    }

    /// The daemon's CPU share in --mode count at a given syscall rate.
    fn count_cpu(&self, rate: u64, secs: f64) -> Result<Value> {
        let t = self.observer(&["--mode", "count", "--output", "/dev/null"], 4)?;
        let pid = t.pid();
        let t0 = cpu_ns(pid);
        let start = Instant::now();
        let mut c = Command::new(&self.workload);
        c.args([
            "--cpu",
            "0",
            "--rate",
            &rate.to_string(),
            "--seconds",
            &secs.to_string(),
        ])
        .arg("--cgroup")
        .arg(&self.cgroup.path);
        let v = self.run_workload(&mut c)?;
        let elapsed = start.elapsed().as_secs_f64();
        let cpu_s = (cpu_ns(pid) - t0) as f64 / 1e9;
        let hwm = status_kb(pid, "VmHWM:");
        t.stop()?;
        Ok(json!({
            "rate": rate, "calls": v["calls"], "seconds": elapsed,
            "cpu_share": cpu_s / elapsed,
            "vm_hwm_kb": hwm,
        }))
    }
}

/// A loopback address nobody listens on now (the kernel's pick).
fn free_loopback_addr() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// Readers of the page's `/events`, one thread each, reading as a browser
/// does (everything, as it comes) until told to stop.
struct SseReaders {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(u64, u64)>>,
}

impl SseReaders {
    /// Connects `n` readers and returns once each has its first event.
    fn connect(addr: &str, n: usize) -> Result<SseReaders> {
        use std::{
            io::{Read, Write},
            net::TcpStream,
            sync::{atomic::AtomicBool, mpsc, Arc},
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let mut threads = Vec::new();
        for _ in 0..n {
            let mut s = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            s.write_all(
                format!(
                    "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
                )
                .as_bytes(),
            )?;
            let stop = stop.clone();
            let ready = ready_tx.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                let (mut bytes, mut states) = (0u64, 0u64);
                let mut first = true;
                // An event name split across two reads is counted by the
                // window that spans them.
                let mut tail: Vec<u8> = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            bytes += k as u64;
                            tail.extend_from_slice(&buf[..k]);
                            let pat = b"event: state\n";
                            states += tail.windows(pat.len()).filter(|w| w == pat).count() as u64;
                            let keep = tail.len().saturating_sub(pat.len() - 1);
                            tail.drain(..keep);
                            if first {
                                first = false;
                                let _ = ready.send(Ok(()));
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(e) => {
                            if first {
                                let _ = ready.send(Err(e.to_string()));
                            }
                            break;
                        }
                    }
                }
                (bytes, states)
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for _ in 0..n {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(left) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => bail!("an /events reader failed: {e}"),
                Err(_) => {
                    bail!("the /events readers did not all get their first event within 30 s")
                }
            }
        }
        Ok(SseReaders { stop, threads })
    }

    /// Stops the readers: how many there were, what they read.
    fn finish(self) -> Result<Value> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut bytes, mut states) = (0, 0);
        let n = self.threads.len();
        for t in self.threads {
            let (b, s) = t
                .join()
                .map_err(|_| anyhow::anyhow!("an /events reader panicked"))?;
            bytes += b;
            states += s;
        }
        Ok(json!({"clients": n, "bytes_read": bytes, "state_events_read": states}))
    }
}

/// The phase-name suffix for the probe-read flavour.
const PROBE_READ: &str = "_probe_read";
/// An `observer-workload` run's JSON report, or why there is none.
fn workload_report(out: std::process::Output) -> Result<Value> {
    if !out.status.success() {
        bail!("observer-workload failed: {}", out.status);
    }
    serde_json::from_slice(&out.stdout).context("workload report")
}

const PER_CPU: &str = "_per_cpu";
const TWO_CPUS: &str = "_2cpu";

/// `cargo xtask bench --fallback`: what the 5.10 fallback (every field read
/// with `bpf_probe_read_kernel`) costs against the BTF flavour on this
/// kernel, each mode in both flavours, phases interleaved with `off`.
/// Writes target/bench/fallback.{json,md}.
pub fn run_fallback(observer: PathBuf, workload: PathBuf, quick: bool) -> Result<()> {
    let b = Bench::new(observer, workload, quick)?;
    let base = ["count", "stream_null", "stream_filtered"];
    let phases: Vec<String> = base
        .iter()
        .flat_map(|p| [(*p).to_owned(), format!("{p}{PROBE_READ}")])
        .collect();
    let names: Vec<&str> = phases.iter().map(String::as_str).collect();
    let rounds = if quick { 1 } else { 5 };
    let overhead = b.overhead(&names, rounds)?;
    let mut r = json!({
        "machine": machine(), "quick": quick, "rounds": rounds, "phases": phases,
        "overhead": overhead,
    });
    // The fallback against the BTF flavour, per round's medians.
    let mut fallback = serde_json::Map::new();
    for p in base {
        let btf = &r["overhead"][p]["ns_added"]["median"];
        let probe = &r["overhead"][format!("{p}{PROBE_READ}")]["ns_added"]["median"];
        if let (Some(btf), Some(probe)) = (btf.as_f64(), probe.as_f64()) {
            fallback.insert(
                p.into(),
                json!({"btf_ns_added": btf, "probe_read_ns_added": probe, "extra_ns": probe - btf}),
            );
        }
    }
    r["fallback"] = Value::Object(fallback);
    let mut md = overhead_table(&r, "bench --fallback");
    md.push_str("\n| mode | ns added, btf | ns added, probe_read | the fallback's extra ns per call |\n|---|---|---|---|\n");
    for p in base {
        let x = &r["fallback"][p];
        md.push_str(&format!(
            "| {p} | {} | {} | {} |\n",
            f(&x["btf_ns_added"]),
            f(&x["probe_read_ns_added"]),
            f(&x["extra_ns"])
        ));
    }
    b.write_report("fallback", &r, &md)?;
    Ok(())
}

fn machine() -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned());
    json!({
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpu": model,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "bpf_stats_enabled": fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default().trim() == "1",
        "date": output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])).unwrap_or_default().trim(),
    })
}

fn f(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.1}"))
        .unwrap_or_else(|| "–".into())
}

/// The machine line and the interleaved phases' table.
fn overhead_table(r: &Value, command: &str) -> String {
    let m = &r["machine"];
    let mut s = format!(
        "Machine: Linux {}, {} × {}, kernel.bpf_stats_enabled={}; {} rounds; `cargo xtask {command}{}` on {}.\n\n",
        m["kernel"].as_str().unwrap_or("?"),
        m["cpus"],
        m["cpu"].as_str().unwrap_or("?"),
        if m["bpf_stats_enabled"] == true { 1 } else { 0 },
        r["rounds"],
        if r["quick"] == true { " --quick" } else { "" },
        m["date"].as_str().unwrap_or("?"),
    );
    let what = if r["clock"] == "thread_cpu" {
        "CPU ns per getppid"
    } else {
        "ns per getppid"
    };
    s.push_str(&format!(
        "| phase | {what} (median, min–max) | ratio to off | ns added |\n|---|---|---|---|\n"
    ));
    let o = &r["overhead"];
    // `off_2cpu`: two workloads at once, beside the `_2cpu` phases.
    for off in ["off", "off_2cpu"] {
        if o[off].is_object() {
            s.push_str(&format!(
                "| {off} | {} ({}–{}) | 1.00 | 0 |\n",
                f(&o[off]["ns_per_call"]["median"]),
                f(&o[off]["ns_per_call"]["min"]),
                f(&o[off]["ns_per_call"]["max"])
            ));
        }
    }
    for p in r["phases"].as_array().into_iter().flatten() {
        let p = p.as_str().unwrap_or_default();
        let x = &o[p];
        s.push_str(&format!(
            "| {p} | {} ({}–{}) | {:.2} ({:.2}–{:.2}) | {} |\n",
            f(&x["ns_per_call"]["median"]),
            f(&x["ns_per_call"]["min"]),
            f(&x["ns_per_call"]["max"]),
            x["ratio"]["median"].as_f64().unwrap_or(f64::NAN),
            x["ratio"]["min"].as_f64().unwrap_or(f64::NAN),
            x["ratio"]["max"].as_f64().unwrap_or(f64::NAN),
            f(&x["ns_added"]["median"]),
        ));
    }
    s
}

fn markdown(r: &Value) -> String {
    let mut s = overhead_table(r, "bench");
    let fe = &r["fork_exec"];
    s.push_str(&format!(
        "\nfork+exec of /bin/true: {:.0} µs off, {:.0} µs with the observer streaming (ratio {:.2}).\n",
        fe["off_us"].as_f64().unwrap_or(f64::NAN),
        fe["stream_us"].as_f64().unwrap_or(f64::NAN),
        fe["ratio"].as_f64().unwrap_or(f64::NAN)
    ));
    s.push_str("\n| sustained rate (getppid/s, JSON per event to a file) | achieved | generated | received | lost | zero drops | daemon CPU s per 1M events | VmHWM MiB | RSS without ring MiB |\n|---|---|---|---|---|---|---|---|---|\n");
    for st in r["sustained"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "| {} for {} s | {:.0} | {} | {} | {} | {} | {:.2} | {:.1} | {:.1} |\n",
            st["rate"],
            st["seconds"],
            st["achieved_rate"].as_f64().unwrap_or(0.0),
            st["generated"],
            st["received"],
            st["lost"],
            if st["zero_drops"] == true {
                "yes"
            } else {
                "no"
            },
            st["cpu_s_per_million"].as_f64().unwrap_or(f64::NAN),
            st["vm_hwm_kb"].as_f64().unwrap_or(0.0) / 1024.0,
            st["rss_without_ring_kb"].as_f64().unwrap_or(0.0) / 1024.0,
        ));
    }
    s.push_str("\nThe daemon's resident memory by holder (MiB, from /proc/PID/smaps; ring buffers: the `anon_inode:bpf-map` mappings):\n\n");
    s.push_str(MEMORY_HEADER);
    for st in r["sustained"].as_array().into_iter().flatten() {
        s.push_str(&memory_rows(&format!("{}/s", st["rate"]), st));
    }
    s.push_str(&format!(
        "\nHighest rate sustained with zero drops: {} events/s.\n",
        r["max_zero_drop_rate"]
            .as_u64()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "none of the steps".into())
    ));
    let c = &r["count_cpu"];
    s.push_str(&format!(
        "`--mode count` at {} syscalls/s: daemon CPU {:.2}% of a core.\n",
        c["rate"],
        c["cpu_share"].as_f64().unwrap_or(f64::NAN) * 100.0
    ));
    let mem: u64 = r["sustained"][0]["maps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["memlock"].as_u64())
        .sum();
    s.push_str(&format!(
        "Kernel memory of the maps (fdinfo memlock): {:.1} MiB.\n",
        mem as f64 / (1 << 20) as f64
    ));
    s
}

/// The header of a resident-memory table (MiB, from smaps).
const MEMORY_HEADER: &str = "| step | moment | RSS without ring | ring buffers | text | binary data | libraries | heap | thread arenas | thread stacks | other anon | other |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";

/// A sustained step's memory rows: at rest before the load, at the load's
/// peak, and at rest after it.
fn memory_rows(step: &str, st: &Value) -> String {
    let mib = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN) / 1024.0;
    let mut s = String::new();
    for (moment, key) in [
        ("at rest, before load", "rest"),
        ("load, peak", "peak"),
        ("at rest, 2 s after load", "after"),
    ] {
        let m = &st["memory"][key];
        s.push_str(&format!(
            "| {step} | {moment} | **{:.1}** | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            mib(m, "without_ring_kb"),
            mib(m, "ring_kb"),
            mib(m, "text_kb"),
            mib(m, "binary_data_kb"),
            mib(m, "libs_kb"),
            mib(m, "heap_kb"),
            mib(m, "arenas_kb"),
            mib(m, "stacks_kb"),
            mib(m, "anon_kb"),
            mib(m, "other_kb"),
        ));
    }
    s
}

/// `cargo xtask bench --memory`: sustained steps streaming JSON per event
/// to a file, the daemon's resident memory by holder at rest, at the load's
/// peak and after it; with `baseline`, the same steps with that binary,
/// interleaved. Writes target/bench/memory.{json,md}.
/// What `cargo xtask bench --memory` runs.
pub struct MemoryRun {
    /// Another observer binary, run interleaved with this build's.
    pub baseline: Option<PathBuf>,
    pub rates: Vec<u64>,
    pub secs: f64,
    pub rounds: usize,
    /// Event ring layouts (`--rings` values), each run in turn.
    pub rings: Vec<String>,
    /// Workers on CPUs 0 and 1 instead of both on 0.
    pub spread: bool,
}

pub fn run_memory(observer: PathBuf, workload: PathBuf, run: MemoryRun) -> Result<()> {
    let MemoryRun {
        baseline,
        rates,
        secs,
        rounds,
        rings,
        spread,
    } = run;
    let rates = &rates[..];
    let b = Bench::new(observer.clone(), workload, false)?;
    let mut bins = Vec::new();
    for layout in &rings {
        if let Some(p) = &baseline {
            bins.push((format!("baseline, {layout}"), p.clone(), layout.clone()));
        }
        bins.push((
            format!("this build, {layout}"),
            observer.clone(),
            layout.clone(),
        ));
    }
    let cpus: &[&str] = if spread { &["0", "1"] } else { &["0", "0"] };
    let mut steps = Vec::new();
    for round in 1..=rounds {
        for &rate in rates {
            // Alternate which binary goes first, round by round.
            let order: Vec<_> = if round % 2 == 1 {
                bins.iter().collect()
            } else {
                bins.iter().rev().collect()
            };
            for (label, bin, layout) in order {
                eprintln!("bench: memory round {round}, {label}, {rate}/s for {secs} s");
                // The default layout goes without the flag: a baseline
                // from before it had none.
                let rings: &[&str] = if layout == "shared" {
                    &[]
                } else {
                    &["--rings", layout.as_str()]
                };
                let mut st = b.streamed_bin(bin, rate, secs, None, rings, cpus)?;
                st["round"] = json!(round);
                st["binary"] = json!(label);
                st["path"] = json!(bin.display().to_string());
                steps.push(st);
            }
        }
    }
    let report = json!({
        "machine": machine(), "rates": rates, "seconds": secs, "rounds": rounds,
        "steps": steps,
    });
    let m = &report["machine"];
    let mut md = format!(
        "Machine: Linux {}, {} × {}; `cargo xtask bench --memory` on {}: getppid from 2 workers (CPU {}), \
         the observer (CPU 1) streaming JSON per event to a file; resident memory from /proc/PID/smaps, MiB \
         (ring buffers: the `anon_inode:bpf-map` mappings).\n\n",
        m["kernel"].as_str().unwrap_or("?"),
        m["cpus"],
        m["cpu"].as_str().unwrap_or("?"),
        m["date"].as_str().unwrap_or("?"),
        if spread { "0 and 1" } else { "0" },
    );
    md.push_str(MEMORY_HEADER);
    for st in &steps {
        let label = format!(
            "{} {}/s r{}",
            st["binary"].as_str().unwrap_or("?"),
            st["rate"],
            st["round"]
        );
        md.push_str(&memory_rows(&label, st));
    }
    md.push_str("\n| step | achieved/s | generated | received | lost | dropped | zero drops | CPU s per 1M | VmHWM MiB |\n|---|---|---|---|---|---|---|---|---|\n");
    for st in &steps {
        md.push_str(&format!(
            "| {} {}/s r{} | {:.0} | {} | {} | {} | {} | {} | {:.2} | {:.1} |\n",
            st["binary"].as_str().unwrap_or("?"),
            st["rate"],
            st["round"],
            st["achieved_rate"].as_f64().unwrap_or(0.0),
            st["generated"],
            st["received"],
            st["lost"],
            st["dropped_by_daemon"],
            if st["zero_drops"] == true {
                "yes"
            } else {
                "no"
            },
            st["cpu_s_per_million"].as_f64().unwrap_or(f64::NAN),
            st["vm_hwm_kb"].as_f64().unwrap_or(0.0) / 1024.0,
        ));
    }
    b.write_report("memory", &report, &md)?;
    Ok(())
}

/// The report is well formed: every figure the README table needs is there
/// and is a number. (No bound on the numbers: CI machines are not benches.)
pub fn validate(r: &Value) -> Result<()> {
    let num = |v: &Value, what: &str| -> Result<()> {
        match v.as_f64() {
            Some(x) if x.is_finite() => Ok(()),
            _ => bail!("bench report: {what} is not a number: {v}"),
        }
    };
    num(
        &r["overhead"]["off"]["ns_per_call"]["median"],
        "off ns per call",
    )?;
    for p in r["phases"].as_array().context("bench report: no phases")? {
        let p = p.as_str().unwrap_or_default();
        num(
            &r["overhead"][p]["ns_per_call"]["median"],
            &format!("{p} ns per call"),
        )?;
        num(&r["overhead"][p]["ratio"]["median"], &format!("{p} ratio"))?;
    }
    num(&r["fork_exec"]["ratio"], "fork+exec ratio")?;
    let steps = r["sustained"]
        .as_array()
        .context("bench report: no sustained steps")?;
    if steps.is_empty() {
        bail!("bench report: no sustained steps");
    }
    for st in steps {
        num(&st["cpu_s_per_million"], "CPU s per million events")?;
        num(&st["vm_hwm_kb"], "VmHWM")?;
        if st["received"].as_u64().is_none() || st["generated"].as_u64().is_none() {
            bail!("bench report: a sustained step lacks received/generated counts");
        }
    }
    num(&r["count_cpu"]["cpu_share"], "count-mode CPU share")?;
    for k in ["kernel", "cpu", "bpf_stats_enabled"] {
        if r["machine"][k].is_null() {
            bail!("bench report: machine.{k} missing");
        }
    }
    Ok(())
}

/// Only the per-syscall cost of the given phases, interleaved with `off`
/// as in the full run: `target/bench/phases.{json,md}`. With `cpu_time`,
/// each call's cost is the workload thread's CPU time, which other load on
/// a shared machine disturbs far less than the wall clock.
pub fn run_phases(
    observer: PathBuf,
    workload: PathBuf,
    phases: &[String],
    rounds: usize,
    cpu_time: bool,
) -> Result<()> {
    let mut b = Bench::new(observer, workload, false)?;
    b.cpu_time = cpu_time;
    let phases: Vec<&str> = phases.iter().map(String::as_str).collect();
    let overhead = b.overhead(&phases, rounds)?;
    let report = json!({
        "machine": machine(), "quick": false, "rounds": rounds, "phases": phases,
        "clock": if cpu_time { "thread_cpu" } else { "wall" },
        "overhead": overhead,
    });
    let md = overhead_table(
        &report,
        &format!(
            "bench --phases {} --rounds {rounds}{}",
            phases.join(","),
            if cpu_time { " --cpu-time" } else { "" }
        ),
    );
    b.write_report("phases", &report, &md)?;
    Ok(())
}

pub fn run(observer: PathBuf, workload: PathBuf, quick: bool) -> Result<()> {
    if which("bpftrace").is_none() {
        if let Err(e) = apt_install(&["bpftrace"]) {
            eprintln!(
                "bench: bpftrace is not installed and could not be ({e:#}); its phase is skipped"
            );
        }
    }
    let stats_on = fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .unwrap_or_default()
        .trim()
        == "1";
    if stats_on {
        eprintln!("bench: kernel.bpf_stats_enabled=1 adds a clock read per program run: timings will be inflated (sysctl -w kernel.bpf_stats_enabled=0)");
    }
    let b = Bench::new(observer, workload, quick)?;
    let mut phases = vec![
        "floor",
        "floor_classic",
        // The same two with and without the enforcement and privilege
        // programs: what they add per syscall.
        "count_no_claims",
        "count",
        "stream_null_no_claims",
        "stream_null",
        "stream_file",
        "stream_filtered",
    ];
    if which("bpftrace").is_some() {
        phases.push("bpftrace");
    }
    let rounds = if quick { 1 } else { 5 };
    let overhead = b.overhead(&phases, rounds)?;
    let fork_exec = b.fork_exec()?;
    let (steps, secs): (Vec<u64>, f64) = if quick {
        (vec![200_000, 1_000_000], 2.0)
    } else {
        (
            vec![500_000, 1_000_000, 1_500_000, 2_000_000, 3_000_000],
            30.0,
        )
    };
    let mut sustained = Vec::new();
    let mut max_ok = None;
    for rate in steps {
        eprintln!("bench: sustained {rate}/s for {secs} s");
        let st = b.sustained_step(rate, secs)?;
        let ok = st["zero_drops"] == true && st["rate_reached"] == true;
        sustained.push(st);
        if ok {
            max_ok = Some(rate);
        } else {
            break;
        }
    }
    let count_cpu = b.count_cpu(1_000_000, if quick { 2.0 } else { 10.0 })?;
    let report = json!({
        "machine": machine(), "quick": quick, "rounds": rounds, "phases": phases,
        "overhead": overhead, "fork_exec": fork_exec, "sustained": sustained,
        "max_zero_drop_rate": max_ok, "count_cpu": count_cpu,
    });
    validate(&report)?;
    let md = markdown(&report);
    b.write_report("report", &report, &md)?;
    Ok(())
}

/// `cargo xtask bench --web-clients N`: the same fixed load streamed as JSON
/// to a file with `--web`, with 0 and with N readers of `/events`, phases
/// interleaved; the daemon's CPU and memory, and what the pipeline
/// delivered, for each. Writes target/bench/web.{json,md}.
pub fn run_web(observer: PathBuf, workload: PathBuf, clients: usize, quick: bool) -> Result<()> {
    let b = Bench::new(observer, workload, quick)?;
    let (rate, secs, rounds) = if quick {
        (100_000, 2.0, 1)
    } else {
        (300_000, 10.0, 3)
    };
    let mut phases: Vec<Value> = Vec::new();
    for round in 1..=rounds {
        for n in [0, clients] {
            eprintln!("bench: web round {round}, {n} /events readers, {rate}/s for {secs} s");
            let mut st = b.web_step(rate, secs, n)?;
            st["round"] = json!(round);
            st["clients"] = json!(n);
            phases.push(st);
        }
    }
    let summary = |n: usize| {
        let of = |k: &str| -> Vec<f64> {
            phases
                .iter()
                .filter(|p| p["clients"] == n)
                .filter_map(|p| p[k].as_f64())
                .collect()
        };
        let med = |k: &str| median(&mut of(k));
        let max = |k: &str| of(k).into_iter().fold(f64::NAN, f64::max);
        json!({
            "clients": n,
            "daemon_cpu_s": med("daemon_cpu_s"),
            "cpu_s_per_million": med("cpu_s_per_million"),
            "achieved_rate": med("achieved_rate"),
            "vm_hwm_kb_max": max("vm_hwm_kb"),
            "vm_rss_kb": med("vm_rss_kb"),
            "rss_before_load_kb": med("rss_before_load_kb"),
            "generated": of("generated").iter().sum::<f64>(),
            "received": of("received").iter().sum::<f64>(),
            "lost": of("lost").iter().sum::<f64>(),
            "dropped_by_daemon": of("dropped_by_daemon").iter().sum::<f64>(),
            "all_zero_drops": phases.iter().filter(|p| p["clients"] == n).all(|p| p["zero_drops"] == true),
        })
    };
    let report = json!({
        "machine": machine(), "quick": quick, "rate": rate, "seconds": secs, "rounds": rounds,
        "clients": clients, "phases": phases,
        "without": summary(0), "with": summary(clients),
    });
    let md = web_markdown(&report);
    b.write_report("web", &report, &md)?;
    for p in &phases {
        if p["clients"].as_u64().unwrap_or(0) > 0
            && p["web_clients"]["state_events_read"].as_u64().unwrap_or(0) == 0
        {
            bail!("the /events readers read no state during a phase: the page was not served");
        }
    }
    Ok(())
}

fn web_markdown(r: &Value) -> String {
    let m = &r["machine"];
    let mut s = format!(
        "Machine: Linux {}, {} × {}; `cargo xtask bench --web-clients {}{}` on {}: {} getppid/s for {} s from 2 workers (CPU 0), \
         the observer (CPU 1) streaming JSON per event to a file with `--web`, {} rounds, phases interleaved.\n\n",
        m["kernel"].as_str().unwrap_or("?"),
        m["cpus"],
        m["cpu"].as_str().unwrap_or("?"),
        r["clients"],
        if r["quick"] == true { " --quick" } else { "" },
        m["date"].as_str().unwrap_or("?"),
        r["rate"],
        r["seconds"],
        r["rounds"],
    );
    s.push_str("| round | /events readers | achieved/s | generated | received | lost | dropped | daemon CPU s | CPU s per 1M | VmHWM MiB | RSS before load MiB | SSE MiB read | state events read |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for p in r["phases"].as_array().into_iter().flatten() {
        let w = &p["web_clients"];
        s.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} | {} |\n",
            p["round"],
            p["clients"],
            p["achieved_rate"].as_f64().unwrap_or(0.0),
            p["generated"],
            p["received"],
            p["lost"],
            p["dropped_by_daemon"],
            p["daemon_cpu_s"].as_f64().unwrap_or(f64::NAN),
            p["cpu_s_per_million"].as_f64().unwrap_or(f64::NAN),
            p["vm_hwm_kb"].as_f64().unwrap_or(0.0) / 1024.0,
            p["rss_before_load_kb"].as_f64().unwrap_or(0.0) / 1024.0,
            w["bytes_read"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
            w["state_events_read"],
        ));
    }
    let (a, b) = (&r["without"], &r["with"]);
    let ratio = |k: &str| b[k].as_f64().unwrap_or(f64::NAN) / a[k].as_f64().unwrap_or(f64::NAN);
    s.push_str(&format!(
        "\nMedians, {} readers vs none: daemon CPU {:.2} s vs {:.2} s ({:.2}×), {:.2} vs {:.2} CPU s per 1M events; \
         peak VmHWM {:.1} MiB vs {:.1} MiB; throughput {:.0}/s vs {:.0}/s; zero drops in every phase: {} with readers, {} without.\n",
        r["clients"],
        b["daemon_cpu_s"].as_f64().unwrap_or(f64::NAN),
        a["daemon_cpu_s"].as_f64().unwrap_or(f64::NAN),
        ratio("daemon_cpu_s"),
        b["cpu_s_per_million"].as_f64().unwrap_or(f64::NAN),
        a["cpu_s_per_million"].as_f64().unwrap_or(f64::NAN),
        b["vm_hwm_kb_max"].as_f64().unwrap_or(0.0) / 1024.0,
        a["vm_hwm_kb_max"].as_f64().unwrap_or(0.0) / 1024.0,
        b["achieved_rate"].as_f64().unwrap_or(f64::NAN),
        a["achieved_rate"].as_f64().unwrap_or(f64::NAN),
        if b["all_zero_drops"] == true { "yes" } else { "no" },
        if a["all_zero_drops"] == true { "yes" } else { "no" },
    ));
    s
}

/// Cumulative `run_time_ns` and `run_cnt` of each BPF program `pid` holds,
/// by program ID, from `/proc/PID/fdinfo` (filled while
/// `kernel.bpf_stats_enabled` is 1).
fn prog_stats(pid: u32) -> std::collections::HashMap<u64, (u64, u64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(info) = fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(t), Some(n)) =
            (field("prog_id:"), field("run_time_ns:"), field("run_cnt:"))
        {
            out.insert(id, (t, n));
        }
    }
    out
}

/// Sets `kernel.bpf_stats_enabled` for as long as it lives.
struct BpfStats {
    before: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> Result<Self> {
        let before = fs::read_to_string(BPF_STATS)
            .with_context(|| format!("read {BPF_STATS}"))?
            .trim()
            .to_owned();
        fs::write(BPF_STATS, "1")
            .with_context(|| format!("write 1 to {BPF_STATS} (needs root)"))?;
        Ok(BpfStats { before })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, &self.before);
    }
}

/// The kernel cost split's configurations: name, observer arguments, the
/// programs it attaches, whether the workload runs in the watched cgroup.
const SPLIT: &[(&str, &[&str], usize, bool)] = &[
    ("floor", &["floor"], 1, true),
    (
        "count",
        &["--mode", "count", "--output", "/dev/null"],
        4,
        true,
    ),
    ("stream_filtered", &["--output", "/dev/null"], 7, false),
    (
        "stream_timestamp",
        &["--output", "/dev/null", "--kernel-split", "timestamp"],
        7,
        true,
    ),
    (
        "stream_identity",
        &["--output", "/dev/null", "--kernel-split", "identity"],
        7,
        true,
    ),
    (
        "stream_commit_each",
        &["--output", "/dev/null", "--ring-commit-bytes", "0"],
        7,
        true,
    ),
    ("stream", &["--output", "/dev/null"], 7, true),
];

impl Bench {
    /// One configuration: the `sys_enter` program's mean run time (ns per
    /// run, as bpf_stats counts it) over one getppid workload, and the
    /// workload's ns per call. The program is the one of the observer's
    /// that ran most often meanwhile: `sys_enter` fires on every call.
    fn split_phase(&self, args: &[&str], links: usize, in_cgroup: bool) -> Result<(f64, f64)> {
        let t = self.observer(args, links)?;
        let before = prog_stats(t.pid());
        let ns = self.getppid_ns(in_cgroup)?;
        let after = prog_stats(t.pid());
        t.stop()?;
        let (dt, dn) = after
            .iter()
            .filter_map(|(id, (t1, n1))| {
                let (t0, n0) = before.get(id).copied().unwrap_or((0, 0));
                Some((t1.checked_sub(t0)?, n1.checked_sub(n0)?))
            })
            .max_by_key(|(_, n)| *n)
            .context("no BPF program run counts in the observer's fdinfo")?;
        if dn < self.calls() {
            bail!(
                "the busiest program ran {dn} times for {} calls: sys_enter not found",
                self.calls()
            );
        }
        Ok((dt as f64 / dn as f64, ns))
    }
}

/// `bench --kernel-split`: the `sys_enter` program's own time per run for
/// each step of the stream path, from bpf_stats, rounds interleaved:
/// `target/bench/kernel_split.{json,md}`. bpf_stats times each run with two
/// clock reads around the program; the empty `floor` program's time is that
/// cost alone, and is subtracted from every row.
pub fn run_kernel_split(observer: PathBuf, workload: PathBuf, rounds: usize) -> Result<()> {
    let b = Bench::new(observer, workload, false)?;
    let _stats = BpfStats::enable()?;
    let mut run_ns: Vec<Vec<f64>> = vec![Vec::new(); SPLIT.len()];
    let mut call_ns: Vec<Vec<f64>> = vec![Vec::new(); SPLIT.len()];
    for round in 0..rounds {
        for (i, (name, args, links, in_cgroup)) in SPLIT.iter().enumerate() {
            let (r, c) = b.split_phase(args, *links, *in_cgroup)?;
            eprintln!(
                "bench: round {} {name}: {r:.1} ns per run, {c:.1} ns per getppid",
                round + 1
            );
            run_ns[i].push(r);
            call_ns[i].push(c);
        }
    }
    let floor = median(&mut run_ns[0].clone());
    let mut rows = Vec::new();
    let m = machine();
    let mut md = format!(
        "Machine: Linux {}, {} × {}; {rounds} rounds, interleaved; `cargo xtask bench --kernel-split --rounds {rounds}` on {}.\n\n\
         `sys_enter`'s own time per run from bpf_stats (`run_time_ns / run_cnt`), minus the empty program's ({floor:.1} ns: bpf_stats' own clock reads), median (min–max):\n\n\
         | step | program ns per run | ns per getppid (stats on) |\n|---|---|---|\n",
        m["kernel"].as_str().unwrap_or("?"),
        m["cpus"],
        m["cpu"].as_str().unwrap_or("?"),
        m["date"].as_str().unwrap_or("?"),
    );
    for (i, (name, ..)) in SPLIT.iter().enumerate() {
        let mut r = run_ns[i].clone();
        let mut c = call_ns[i].clone();
        let (rm, cm) = (median(&mut r), median(&mut c));
        let own = if i == 0 { rm } else { rm - floor };
        md.push_str(&format!(
            "| {name} | {own:.1} ({:.1}–{:.1}) | {cm:.1} |\n",
            r.first().copied().unwrap_or(f64::NAN) - if i == 0 { 0.0 } else { floor },
            r.last().copied().unwrap_or(f64::NAN) - if i == 0 { 0.0 } else { floor },
        ));
        rows.push(json!({"step": name, "run_ns": run_ns[i], "own_ns_median": own, "getppid_ns": call_ns[i]}));
    }
    let report = json!({"machine": m, "rounds": rounds, "stats_floor_ns": floor, "steps": rows});
    b.write_report("kernel_split", &report, &md)?;
    Ok(())
}
