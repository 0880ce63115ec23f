//! The event rings, one per CPU (`--rings per-cpu`): a flood that fills one
//! CPU's ring loses records on that CPU only, counted against the flooding
//! cgroup; another CPU's ring carries its quieter neighbour whole; what
//! arrived plus what was lost is exactly what the workloads made; and every
//! thread's records come out in order, each with its identity, although
//! the rings are read separately and merged.

mod common;

use std::{collections::HashMap, sync::Mutex};

use common::*;
use serde_json::Value;

/// One test at a time: each one's floods would fill the other's rings
/// (a new cgroup's events reach the rings until the daemon has its
/// verdict on it, even when `--container` selects others).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The container's short ID, which `--container` selects it by.
fn short(cg: &TestCgroup) -> String {
    cg.rel
        .rsplit('/')
        .next()
        .unwrap()
        .chars()
        .take(12)
        .collect()
}

/// How many CPUs the kernel could ever number: `/sys/devices/system/cpu/
/// possible` is a range list such as `0-1` or `0,2-5`.
fn possible_cpus() -> u64 {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    list.trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

/// The `loss` records of the run, the final one (whole run) apart.
fn losses(rec: &Records) -> (Value, Vec<Value>) {
    let mut all: Vec<Value> = rec.of_type("loss").cloned().collect();
    let last = all.pop().expect("a final loss record");
    (last, all)
}

/// The syscall lines of a cgroup, and whether each thread's came out in
/// time order.
fn calls_in_order(rec: &Records, cgroup: u64) -> (u64, bool) {
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut ordered = true;
    let mut n = 0;
    for l in rec.in_cgroup(cgroup) {
        if l["syscall"] != "getppid" {
            continue;
        }
        n += 1;
        let tid = l["tid"].as_u64().expect("a syscall line has its tid");
        let ts = l["ts"].as_u64().expect("and its time");
        if last.insert(tid, ts).is_some_and(|prev| prev > ts) {
            ordered = false;
        }
    }
    (n, ordered)
}

/// A flood pinned to CPU 1 fills that CPU's ring; a paced workload pinned
/// to CPU 0 shares no ring with it and loses nothing. The loss is counted
/// on CPU 1 and against the flood's cgroup only, and the flood's received
/// and lost calls add up to what it made.
#[test]
fn a_flooded_cpu_ring_loses_on_that_cpu_and_cgroup_only() {
    if !privileged() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let flood = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let quiet = TestCgroup::new(&format!("/docker/{}", fake_id()));
    // 64 KiB in all, 32 KiB per ring on two CPUs: about 800 records, a
    // moment of a flat-out flood, and seconds of the paced workload.
    let obs = Observer::start(&[
        "--rings",
        "per-cpu",
        "--ring-buffer-kb",
        "64",
        "--syscall",
        "getppid",
        "--container",
        &short(&flood),
        "--container",
        &short(&quiet),
        "--interval",
        "0.5",
    ]);
    let quiet_path = quiet.path.to_string_lossy().into_owned();
    let flood_path = flood.path.to_string_lossy().into_owned();
    let paced = workload_spawn(&[
        "--cpu",
        "0",
        "--cgroup",
        &quiet_path,
        "--rate",
        "2000",
        "--seconds",
        "1.5",
    ]);
    let flat_out = workload_spawn(&["--cpu", "1", "--cgroup", &flood_path, "--calls", "400000"]);
    let made_flood = workload_wait(flat_out)["calls"].as_u64().unwrap();
    let made_quiet = workload_wait(paced)["calls"].as_u64().unwrap();
    let rec = obs.stop();
    let (finally, _) = losses(&rec);
    let flood_lost = finally["by_cgroup"][flood.id.to_string()]
        .as_u64()
        .unwrap_or(0);
    assert!(
        flood_lost > 0,
        "32 KiB can't hold a flat-out flood: {finally}"
    );
    assert_eq!(
        finally["by_cgroup"][quiet.id.to_string()].as_u64(),
        None,
        "the paced workload's ring is its CPU's own: nothing of it lost: {finally}"
    );
    let by_cpu = finally["by_cpu"].as_object().expect("by_cpu");
    assert_eq!(
        by_cpu.get("1").and_then(Value::as_u64),
        Some(flood_lost),
        "every loss on the flood's CPU: {finally}"
    );
    assert!(
        by_cpu.get("0").is_none(),
        "nothing lost on CPU 0: {finally}"
    );
    assert_eq!(finally["lost_total"].as_u64(), Some(flood_lost));
    let (flood_received, flood_ordered) = calls_in_order(&rec, flood.id);
    let (quiet_received, quiet_ordered) = calls_in_order(&rec, quiet.id);
    assert_eq!(quiet_received, made_quiet, "every paced call arrived");
    // Received plus lost is what it made; its exit record may be among the
    // lost.
    assert!(
        (made_flood..=made_flood + 1).contains(&(flood_received + flood_lost)),
        "made {made_flood}, received {flood_received}, lost {flood_lost}"
    );
    assert!(
        flood_ordered && quiet_ordered,
        "each thread's calls in order"
    );
    assert_eq!(finally["decode_errors"], 0, "{finally}");
}

/// Two threads of one container on two CPUs at once, each into its own
/// ring: every call is either received, with the identity of the thread
/// that made it, or counted as lost; nothing else.
#[test]
fn per_cpu_rings_account_for_every_call_of_two_cpus() {
    if !privileged() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let obs = Observer::start(&[
        "--rings",
        "per-cpu",
        "--ring-buffer-kb",
        "256",
        "--syscall",
        "getppid",
        "--container",
        &short(&cg),
    ]);
    let path = cg.path.to_string_lossy().into_owned();
    let children: Vec<_> = ["0", "1"]
        .iter()
        .map(|cpu| workload_spawn(&["--cpu", cpu, "--cgroup", &path, "--calls", "200000"]))
        .collect();
    let reports: Vec<Value> = children.into_iter().map(workload_wait).collect();
    let made: u64 = reports.iter().map(|r| r["calls"].as_u64().unwrap()).sum();
    let rec = obs.stop();
    let kernel = rec.of_type("kernel").next().expect("a kernel record");
    assert_eq!(kernel["rings"], "per-cpu");
    assert_eq!(
        kernel["ring_count"].as_u64(),
        Some(possible_cpus()),
        "a ring per possible CPU: {kernel}"
    );
    let (finally, _) = losses(&rec);
    let lost = finally["by_cgroup"][cg.id.to_string()]
        .as_u64()
        .unwrap_or(0);
    let (received, ordered) = calls_in_order(&rec, cg.id);
    // Each workload's exit record may be among the lost.
    assert!(
        (made..=made + 2).contains(&(received + lost)),
        "made {made}, received {received}, lost {lost}: {finally}"
    );
    assert!(ordered, "each thread's calls in order across the merge");
    assert_eq!(finally["decode_errors"], 0, "{finally}");
    // Each call carries the identity of the process that made it.
    for r in &reports {
        let pid = r["host_pid"].as_u64().unwrap();
        let mine = rec
            .in_cgroup(cg.id)
            .into_iter()
            .filter(|l| l["syscall"] == "getppid" && l["pid"] == pid)
            .count() as u64;
        let cpus: Vec<u64> = rec
            .in_cgroup(cg.id)
            .into_iter()
            .filter(|l| l["syscall"] == "getppid" && l["pid"] == pid)
            .filter_map(|l| l["cpu"].as_u64())
            .collect();
        assert!(mine > 0, "calls of {pid} arrived");
        assert!(
            cpus.iter().all(|&c| c == cpus[0]),
            "a pinned workload's calls all come from its CPU"
        );
    }
}
