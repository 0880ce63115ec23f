//! `cargo xtask soak --minutes N`: the memory soak. One short container a
//! second (`docker run -d --rm`, a shell that starts 50 processes and
//! exits) for N minutes, against a built observer that streams every event
//! (the whole event path: decode, attribution, aggregation, JSON) into a
//! pipe read here. Prints the observer's memory every 10 s and ends with a
//! verdict: the RSS after the warm-up against the RSS at the end. The CI
//! variant is tests/soak.rs (60 s).

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::util::which;

/// Until then the observer's caches fill up to their steady state: the
/// registry keeps a removed cgroup for 30 s (REMOVED_GRACE), so after 60 s
/// as many containers arrive as leave it.
const WARMUP: Duration = Duration::from_secs(60);
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Allowed RSS growth from the warm-up to the end: the same bound as
/// tests/soak.rs (see there): 8 MiB, and at most a quarter of the RSS.
const GROWTH_BOUND_KIB: u64 = 8 * 1024;
const GROWTH_BOUND_SHARE: f64 = 0.25;
/// Each container: 50 short-lived processes (fork, exec, open, read, exit).
const CHURN: &str = "i=0; while [ $i -lt 50 ]; do cat /proc/uptime >/dev/null; i=$((i+1)); done";

/// What /proc/PID/status says of a process's memory, in KiB.
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    rss: u64,
    hwm: u64,
    anon: u64,
}

fn mem(pid: u32) -> Result<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status: did the observer exit?"))?;
    let mut m = Mem::default();
    for l in status.lines() {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let kib = || {
            v.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        match k {
            "VmRSS" => m.rss = kib(),
            "VmHWM" => m.hwm = kib(),
            "RssAnon" => m.anon = kib(),
            _ => {}
        }
    }
    Ok(m)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What the reader of the observer's stream has seen so far.
#[derive(Default)]
struct Seen {
    records: AtomicU64,
    /// Container IDs with a start record, and with an exit record.
    starts: Mutex<HashSet<String>>,
    exits: Mutex<HashSet<String>>,
    /// Container IDs with on-CPU time in a summary: the kernel's per-cgroup
    /// CPU map has room for 4096 cgroups, so this stops growing when the
    /// entries of removed cgroups are not deleted.
    on_cpu: Mutex<HashSet<String>>,
}

/// Reads the observer's JSON lines: the kernel record (for the observer's
/// PID, which is not the child's under sudo), the container lifecycle
/// records and the summaries; every other line is only counted.
fn read_stream(out: impl std::io::Read, seen: Arc<Seen>, pid_tx: mpsc::Sender<u32>) {
    let mut r = BufReader::with_capacity(1 << 20, out);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        seen.records.fetch_add(1, Ordering::Relaxed);
        let kernel = line.starts_with(br#"{"type":"kernel""#);
        let container = line.starts_with(br#"{"type":"container""#);
        let summary = line.starts_with(br#"{"type":"summary""#);
        if !(kernel || container || summary) {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
            continue;
        };
        if kernel {
            if let Some(pid) = v["observer_pid"].as_u64() {
                let _ = pid_tx.send(pid as u32);
            }
            continue;
        }
        if summary {
            let entries = v["containers"].as_array().into_iter().flatten();
            let mut on_cpu = seen.on_cpu.lock().unwrap();
            for e in entries.filter(|e| e["cpu_ns_total"].as_u64().unwrap_or(0) > 0) {
                if let Some(id) = e["container"]["id"].as_str() {
                    on_cpu.insert(id.to_owned());
                }
            }
            continue;
        }
        let Some(id) = v["container"]["id"].as_str() else {
            continue;
        };
        let set = match v["event"].as_str() {
            Some("start") => &seen.starts,
            Some("exit") => &seen.exits,
            _ => continue,
        };
        set.lock().unwrap().insert(id.to_owned());
    }
}

/// `docker run -d --rm --network none`, not waited for: the pace must not
/// depend on how long the engine takes to start one.
fn start_container(image: &str, name: &str) -> Result<Child> {
    Command::new("docker")
        .args(["run", "-d", "--rm", "--network", "none", "--name", name])
        .args([image, "sh", "-c", CHURN])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run docker")
}

/// The IDs of finished `docker run`s (all of them when `wait`); failures
/// are counted and the first few printed.
fn reap(running: &mut Vec<(String, Child)>, ids: &mut Vec<String>, failed: &mut u64, wait: bool) {
    let mut i = 0;
    while i < running.len() {
        if !(wait || matches!(running[i].1.try_wait(), Ok(Some(_)))) {
            i += 1;
            continue;
        }
        let (name, c) = running.swap_remove(i);
        match c.wait_with_output() {
            Ok(out) if out.status.success() => {
                ids.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
            }
            Ok(out) => {
                *failed += 1;
                if *failed <= 5 {
                    eprintln!(
                        "xtask: docker run {name}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
            Err(e) => {
                *failed += 1;
                eprintln!("xtask: docker run {name}: {e}");
            }
        }
    }
}

/// How many of this run's containers still exist.
fn remaining(prefix: &str) -> usize {
    Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=^{prefix}-")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// Least-squares slope of (seconds, KiB) samples, in KiB per minute.
fn slope_kib_per_min(samples: &[(f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mt = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mk = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let cov: f64 = samples.iter().map(|s| (s.0 - mt) * (s.1 as f64 - mk)).sum();
    let var: f64 = samples.iter().map(|s| (s.0 - mt).powi(2)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var * 60.0
    }
}

struct Running {
    child: Child,
    pid: u32,
}

impl Running {
    /// SIGINT (a clean stop), then waits up to 30 s.
    fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on our own child (the observer, or sudo, which
        // relays the signal to it).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the observer exited with {status}");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("the observer did not exit within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Churn for `minutes` against `observer`, printing its memory; fails when
/// the RSS grew past the bound, or containers went unseen.
pub fn soak(minutes: f64, observer: &Path, image: &str) -> Result<()> {
    if !(minutes.is_finite() && minutes > 0.0) {
        bail!("--minutes must be a positive number");
    }
    if which("docker").is_none() {
        bail!("no docker client: the soak runs containers");
    }
    let total = Duration::from_secs_f64(minutes * 60.0);
    // Short runs (for trying the harness) warm up for a quarter of the run.
    let warmup = WARMUP.min(total / 4);
    let mut cmd = crate::build::root_command(observer)?;
    // The default view (containers only), every event as a JSON line into
    // the pipe: the path a real consumer exercises, without filling a disk.
    cmd.args(["--output", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", observer.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let seen = Arc::new(Seen::default());
    let (pid_tx, pid_rx) = mpsc::channel();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || read_stream(stdout, seen, pid_tx))
    };
    let pid = match pid_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(pid) => pid,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the observer did not start within 30 s");
        }
    };
    let obs = Running { child, pid };

    let prefix = format!("observer-soak-{}", std::process::id());
    eprintln!(
        "xtask: soak: {minutes} min of one container a second ({image}), observer PID {}; \
         warm-up {} s; memory every {} s",
        obs.pid,
        warmup.as_secs(),
        REPORT_EVERY.as_secs()
    );
    println!(
        "{:>8}  {:>9}  {:>9}  {:>9}  {:>10}  {:>8}  {:>10}",
        "elapsed", "RSS MiB", "HWM MiB", "anon MiB", "containers", "exits", "records"
    );
    let t0 = Instant::now();
    let mut running: Vec<(String, Child)> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut failed = 0u64;
    let mut started = 0u64;
    // (seconds since the start, RSS KiB), every second after the warm-up.
    let mut post: Vec<(f64, u64)> = Vec::new();
    let mut after_warmup: Option<Mem> = None;
    let mut last = Mem::default();
    let mut peak_hwm = 0;
    let mut tick = 0u64;
    let churn = (|| -> Result<()> {
        loop {
            let at = Duration::from_secs(tick);
            std::thread::sleep((t0 + at).saturating_duration_since(Instant::now()));
            let m = mem(obs.pid)?;
            peak_hwm = peak_hwm.max(m.hwm);
            last = m;
            if at >= warmup {
                after_warmup.get_or_insert(m);
                post.push((at.as_secs_f64(), m.rss));
            }
            if tick.is_multiple_of(REPORT_EVERY.as_secs()) {
                println!(
                    "{:>7}s  {:>9.1}  {:>9.1}  {:>9.1}  {:>10}  {:>8}  {:>10}",
                    at.as_secs(),
                    mib(m.rss),
                    mib(m.hwm),
                    mib(m.anon),
                    started,
                    seen.exits.lock().unwrap().len(),
                    seen.records.load(Ordering::Relaxed)
                );
            }
            if at >= total {
                return Ok(());
            }
            let name = format!("{prefix}-{tick}");
            running.push((name.clone(), start_container(image, &name)?));
            started += 1;
            reap(&mut running, &mut ids, &mut failed, false);
            tick += 1;
        }
    })();
    // Whatever happened, let the containers finish and stop the observer.
    reap(&mut running, &mut ids, &mut failed, true);
    let deadline = Instant::now() + Duration::from_secs(60);
    while remaining(&prefix) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    // The last lifecycle records and name lookups.
    std::thread::sleep(Duration::from_secs(1));
    let stopped = obs.stop();
    let _ = reader.join();
    churn?;
    stopped?;

    let (starts, exits) = (seen.starts.lock().unwrap(), seen.exits.lock().unwrap());
    let both = ids
        .iter()
        .filter(|id| starts.contains(*id) && exits.contains(*id))
        .count() as u64;
    // On-CPU time of the last quarter of the containers (IDs are in about
    // the order they started): still accounted for late in the run.
    let late = &ids[ids.len() - ids.len() / 4..];
    let on_cpu = seen.on_cpu.lock().unwrap();
    let late_cpu = late.iter().filter(|id| on_cpu.contains(*id)).count();
    let base = after_warmup.context("the run ended before the warm-up")?;
    let growth = last.rss as i64 - base.rss as i64;
    let bound = GROWTH_BOUND_KIB.min((base.rss as f64 * GROWTH_BOUND_SHARE) as u64);
    let max = post.iter().map(|s| s.1).max().unwrap_or(base.rss);
    let slope = slope_kib_per_min(&post);
    let flat = growth < bound as i64;
    let all_seen = both * 10 >= started * 9;
    let cpu_seen = late_cpu * 10 >= late.len() * 9;
    println!(
        "verdict: {}: RSS {:.1} MiB after the {} s warm-up, {:.1} MiB at the end ({:+.2} MiB, bound {:.1} MiB; \
         max {:.1} MiB, trend {:+.1} KiB/min); peak VmHWM {:.1} MiB; {started} containers, {both} seen to start \
         and exit, {late_cpu} of the last {} with on-CPU time; {failed} docker run failures; {} records",
        if !flat {
            "GREW"
        } else if all_seen && cpu_seen {
            "flat"
        } else {
            "flat, but containers went unaccounted"
        },
        mib(base.rss),
        warmup.as_secs(),
        mib(last.rss),
        growth as f64 / 1024.0,
        mib(bound),
        mib(max),
        slope,
        mib(peak_hwm),
        late.len(),
        seen.records.load(Ordering::Relaxed),
    );
    if !flat {
        bail!("the observer's RSS grew by {growth} KiB under churn (bound {bound} KiB)");
    }
    if !all_seen {
        bail!("start and exit records for only {both} of {started} containers");
    }
    if !cpu_seen {
        bail!(
            "on-CPU time for only {late_cpu} of the last {} containers: is the kernel's \
             per-cgroup CPU map full of removed cgroups?",
            late.len()
        );
    }
    Ok(())
}
