//! The kernel matrix's guest side: inside a guest booted from one of the
//! kernels the observer supports, run the observer against the exact
//! workload and print what it reported, for the host-side test
//! (`tests/matrix.rs`) to check. Started by the guest's `/init` as
//! `observer.run="/init --matrix"`.
//!
//! Each phase starts `/bin/observer`, waits for its first line (the
//! `kernel` record, written once every program is attached: a guest under
//! TCG takes seconds to load them), runs the workloads, stops the observer
//! with SIGINT and prints, one JSON line each on the console:
//! `{"type":"matrix_workload",...}` (what each workload says of itself),
//! `{"type":"matrix_record","phase":...,"record":{...}}` for every record
//! but the syscall ones, and `{"type":"matrix_calls",...}`: the getppid
//! records counted per (pid, tid, ns_pid, pidns, cgroup_id, abi). The clock
//! phase steps the guest's wall clock a day ahead under a running observer
//! and prints `{"type":"matrix_clock",...}`: the `ts` of a workload's
//! records before and after the step. The load phase
//! prints `{"type":"matrix_load","access":...,"mode":...,"loaded":...}`
//! for every program of each flavour (`error` where one was refused). The
//! cost phase
//! prints `{"type":"matrix_cost","access":...,"ns_per_call":...}` for the
//! workload alone and under each program flavour the kernel can load.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

const OBSERVER: &str = "/bin/observer";
const WORKLOAD: &str = "/init";
/// A Docker-shaped cgroup, so that summaries list it by itself.
pub const CONTAINER_ID: &str = "6d617472697800000000000000000000000000000000000000000000000000aa";
pub const HOST_CALLS: u64 = 321;
pub const CONTAINER_CALLS: u64 = 123;
/// The compat workload on the host: getppid through `syscall` (x86_64's
/// 110) and through `int 0x80` (i386's 64).
pub const COMPAT_NATIVE_CALLS: u64 = 47;
pub const COMPAT_INT80_CALLS: u64 = 89;
pub const COST_CALLS: u64 = 100_000;
/// Loading the programs under TCG takes seconds; a busy host, more.
const READY: Duration = Duration::from_secs(240);

/// The programs a process holds (`prog_id:` in /proc/PID/fdinfo).
fn held_programs(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for fd in fds.flatten() {
        for line in fs::read_to_string(fd.path()).unwrap_or_default().lines() {
            if let Some(id) = line.strip_prefix("prog_id:") {
                ids.extend(id.trim().parse::<u32>().ok());
            }
        }
    }
    ids
}

/// For the workload alone and under each program flavour the kernel loads
/// (`btf`, `probe-read`): (flavour, ns per workload call, ns per run of the
/// observer's `sys_enter` program as the kernel's BPF statistics time it;
/// None where the kernel refused the flavour).
pub fn cost(observer: &str, workload: &str, calls: u64) -> Vec<(String, Option<f64>, Option<f64>)> {
    let run = |args: &[&str]| -> Option<f64> {
        let out = Command::new(workload).args(args).output().ok()?;
        serde_json::from_slice::<Value>(&out.stdout).ok()?["ns_per_call"].as_f64()
    };
    let calls = calls.to_string();
    let mut rows = vec![(
        "none".to_owned(),
        run(&["--calls", &calls, "--cpu", "0"]),
        None,
    )];
    // Kept open: the kernel times programs while this fd lives.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
    for access in ["btf", "probe-read"] {
        let out = format!("/tmp/observer-cost-{}-{access}.jsonl", std::process::id());
        let _ = fs::remove_file(&out);
        let Ok(mut child) = Command::new(observer)
            .args(["--output", &out, "--host", "--task-access", access])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            rows.push((access.to_owned(), None, None));
            continue;
        };
        let t = Instant::now();
        let ready = loop {
            if fs::read_to_string(&out).is_ok_and(|s| s.contains("\"type\":\"kernel\"")) {
                break true;
            }
            if matches!(child.try_wait(), Ok(Some(_))) || t.elapsed() > READY {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            rows.push((access.to_owned(), None, None));
            continue;
        }
        let progs = held_programs(child.id());
        let stat = || -> (u64, u64) {
            aya::programs::loaded_programs()
                .flatten()
                .filter(|p| progs.contains(&p.id()))
                .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("sys_enter")))
                .fold((0, 0), |(t, n), p| {
                    (t + p.run_time().as_nanos() as u64, n + p.run_count())
                })
        };
        let before = stat();
        let per_call = run(&["--calls", &calls, "--cpu", "0"]);
        let after = stat();
        let runs = after.1.saturating_sub(before.1);
        let per_run = (runs > 0).then(|| after.0.saturating_sub(before.0) as f64 / runs as f64);
        rows.push((access.to_owned(), per_call, per_run));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let _ = child.wait();
        let _ = fs::remove_file(&out);
    }
    rows
}

/// Every program of each flavour, loaded and attached on this kernel: the
/// observer started with `--sys-exit` and `--refused-fork-tasks` (the
/// optional programs) in each mode under each `--task-access`, for a
/// second. Per (flavour, mode): the
/// flavour the first line names, or the error the observer stopped with.
pub fn loads(observer: &str) -> Vec<(String, String, Result<String, String>)> {
    let mut rows = Vec::new();
    for access in ["btf", "probe-read"] {
        for mode in ["stream", "count"] {
            let out = format!(
                "/tmp/observer-load-{}-{access}-{mode}.jsonl",
                std::process::id()
            );
            let _ = fs::remove_file(&out);
            let got = Command::new(observer)
                .args(["--output", &out, "--host", "--sys-exit", "--duration", "1"])
                .arg("--refused-fork-tasks")
                .args(["--mode", mode, "--task-access", access])
                .stdin(Stdio::null())
                .output();
            let first = fs::read_to_string(&out)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(t.lines().next()?).ok());
            let _ = fs::remove_file(&out);
            let row = match got {
                Err(e) => Err(format!("start {observer}: {e}")),
                Ok(o) if !o.status.success() => {
                    // `observer: load … : <verifier log>`: its first line
                    // and the last (the errno).
                    let stderr = String::from_utf8_lossy(&o.stderr);
                    let mut lines = stderr.lines().skip_while(|l| !l.starts_with("observer:"));
                    let first = lines.next().unwrap_or(stderr.trim());
                    Err(match lines.last() {
                        Some(last) => format!("{first} … {last}"),
                        None => first.to_owned(),
                    })
                }
                Ok(_) => match first {
                    Some(k) if k["type"] == "kernel" => {
                        Ok(k["task_access"].as_str().unwrap_or_default().to_owned())
                    }
                    _ => Err("no kernel record first".to_owned()),
                },
            };
            rows.push((access.to_owned(), mode.to_owned(), row));
        }
    }
    rows
}

/// How far the clock phase steps the guest's wall clock.
pub const CLOCK_STEP_NS: i64 = 86_400 * 1_000_000_000;

fn wall_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn step_wall_clock(by_ns: i64) {
    let t = wall_ns() + by_ns;
    let ts = libc::timespec {
        tv_sec: t / 1_000_000_000,
        tv_nsec: t % 1_000_000_000,
    };
    // SAFETY: a valid clock and timespec; the guest's init may set its clock.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        fail(&format!(
            "clock_settime: {}",
            std::io::Error::last_os_error()
        ));
    }
}

/// A step of the wall clock while the observer runs (NTP, a resumed VM):
/// the `ts` of events after it must follow it. Prints
/// `{"type":"matrix_clock","before":{...},"after":{...}}`: for the
/// workload run before the step and the one after, the wall-clock window
/// it ran in and the first and last `ts` of its getppid records.
fn clock_step() {
    let out = "/tmp/clock.jsonl";
    let obs = start_observer(out, &["--host", "--syscall", "getppid"]);
    let run = || {
        let from = wall_ns();
        let report = workload(&["--calls", "10"]);
        (report["host_pid"].clone(), from, wall_ns())
    };
    let before = run();
    step_wall_clock(CLOCK_STEP_NS);
    // The observer takes the boot-to-Unix offset again every 100 ms (its
    // drain tick): wait three of those, not for a readiness signal (there
    // is none to wait for).
    std::thread::sleep(Duration::from_millis(300));
    let after = run();
    stop_observer(obs);
    let text = fs::read_to_string(out).unwrap_or_else(|e| fail(&format!("read {out}: {e}")));
    let window = |(pid, from, to): (Value, i64, i64)| {
        let ts: Vec<i64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["syscall"] == "getppid" && r["pid"] == pid)
            .filter_map(|r| r["ts"].as_i64())
            .collect();
        json!({"from": from, "to": to, "first_ts": ts.iter().min(), "last_ts": ts.iter().max(), "n": ts.len()})
    };
    say(
        json!({"type": "matrix_clock", "step_ns": CLOCK_STEP_NS, "before": window(before), "after": window(after)}),
    );
    step_wall_clock(-CLOCK_STEP_NS);
}

fn say(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn fail(what: &str) -> ! {
    say(json!({"type": "matrix_error", "error": what}));
    std::process::exit(1)
}

/// Starts the observer writing to `out`; returns once its first line is
/// there.
fn start_observer(out: &str, args: &[&str]) -> Child {
    let _ = fs::remove_file(out);
    let mut child = Command::new(OBSERVER)
        .args(["--output", out])
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| fail(&format!("start {OBSERVER}: {e}")));
    let t = Instant::now();
    loop {
        if fs::read_to_string(out).is_ok_and(|s| s.contains("\"type\":\"kernel\"")) {
            return child;
        }
        if let Ok(Some(s)) = child.try_wait() {
            fail(&format!(
                "{OBSERVER} {args:?} exited with {s} before its first line"
            ));
        }
        if t.elapsed() > READY {
            let _ = child.kill();
            fail(&format!(
                "{OBSERVER} {args:?}: no first line after {READY:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop_observer(mut child: Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return,
            Ok(Some(s)) => fail(&format!("{OBSERVER} exited with {s}")),
            _ if t.elapsed() > READY => {
                let _ = child.kill();
                fail("the observer did not stop after SIGINT");
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs the workload to the end; its report.
fn workload(args: &[&str]) -> Value {
    let out = Command::new(WORKLOAD)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| fail(&format!("run {WORKLOAD}: {e}")));
    if !out.status.success() {
        fail(&format!("{WORKLOAD} {args:?} exited with {}", out.status));
    }
    // With --exec /init the child's report comes first; the workload's own
    // is the last line.
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| fail(&format!("{WORKLOAD} {args:?} printed no JSON: {e}")))
}

/// Prints what one observer run reported.
fn report(phase: &str, out: &str) {
    let text = fs::read_to_string(out).unwrap_or_else(|e| fail(&format!("read {out}: {e}")));
    // (pid, tid, ns_pid, pidns, cgroup_id, abi) -> getppid records.
    type Key = (u64, u64, u64, u64, u64, Option<String>);
    let mut calls: BTreeMap<Key, u64> = BTreeMap::new();
    for line in text.lines() {
        let Ok(rec) = serde_json::from_str::<Value>(line) else {
            fail(&format!("{phase}: not a JSON line: {line}"));
        };
        if rec["type"] == "syscall" {
            if rec["syscall"] == "getppid" {
                let n = |k: &str| rec[k].as_u64().unwrap_or(0);
                *calls
                    .entry((
                        n("pid"),
                        n("tid"),
                        n("ns_pid"),
                        n("pidns"),
                        n("cgroup_id"),
                        rec["abi"].as_str().map(str::to_owned),
                    ))
                    .or_default() += 1;
            }
            continue;
        }
        say(json!({"type": "matrix_record", "phase": phase, "record": rec}));
    }
    for ((pid, tid, ns_pid, pidns, cgroup_id, abi), count) in calls {
        say(json!({
            "type": "matrix_calls", "phase": phase, "pid": pid, "tid": tid,
            "ns_pid": ns_pid, "pidns": pidns, "cgroup_id": cgroup_id, "abi": abi,
            "count": count,
        }));
    }
}

/// The host's workload, the compat one (on the host too: getppid through
/// `syscall` and through `int 0x80`) and the container's (its own cgroup
/// and PID namespace, with a fork and exec of the workload inside).
fn workloads(phase: &str, cgroup: &str) {
    let host = workload(&["--calls", &HOST_CALLS.to_string()]);
    say(json!({"type": "matrix_workload", "phase": phase, "role": "host", "report": host}));
    let compat = workload(&[
        "--calls",
        &COMPAT_NATIVE_CALLS.to_string(),
        "--int80-calls",
        &COMPAT_INT80_CALLS.to_string(),
    ]);
    say(json!({"type": "matrix_workload", "phase": phase, "role": "compat", "report": compat}));
    let inside = workload(&[
        "--cgroup",
        cgroup,
        "--unshare",
        "--exec",
        WORKLOAD,
        "--calls",
        &CONTAINER_CALLS.to_string(),
    ]);
    say(json!({"type": "matrix_workload", "phase": phase, "role": "container", "report": inside}));
}

pub fn main() -> i32 {
    let root = "/sys/fs/cgroup";
    let cgroup = format!("{root}/docker/{CONTAINER_ID}");
    if let Err(e) = fs::create_dir_all(&cgroup) {
        fail(&format!("mkdir {cgroup}: {e}"));
    }
    let id = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&cgroup).map(|m| m.ino()).unwrap_or(0)
    };
    say(json!({"type": "matrix_cgroup", "path": cgroup, "cgroup_id": id}));

    // Stream mode: every getppid and the lifecycle, with both PID views.
    let out = "/tmp/stream.jsonl";
    let obs = start_observer(out, &["--host", "--syscall", "getppid"]);
    workloads("stream", &cgroup);
    stop_observer(obs);
    report("stream", out);

    // Count mode: exact counts from the kernel's maps.
    let out = "/tmp/count.jsonl";
    let obs = start_observer(out, &["--host", "--mode", "count", "--interval", "1"]);
    workloads("count", &cgroup);
    stop_observer(obs);
    report("count", out);

    // A step of the wall clock under a running observer.
    clock_step();

    // Every program of each flavour this kernel can load.
    for (access, mode, row) in loads(OBSERVER) {
        let (loaded, error) = match row {
            Ok(a) => (Some(a), None),
            Err(e) => (None, Some(e)),
        };
        say(json!({
            "type": "matrix_load", "access": access, "mode": mode,
            "loaded": loaded, "error": error,
        }));
    }

    // Cost: per call of the workload, and per run of the sys_enter program
    // as the kernel times it (BPF run-time stats), under each program
    // flavour this kernel loads (stream mode, every syscall recorded).
    for (access, ns_per_call, ns_per_run) in cost(OBSERVER, WORKLOAD, COST_CALLS) {
        say(json!({
            "type": "matrix_cost", "access": access,
            "ns_per_call": ns_per_call, "prog_ns_per_run": ns_per_run,
        }));
    }
    let _ = fs::remove_dir(&cgroup);
    0
}
