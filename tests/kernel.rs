//! Privileged: the real programs in the real kernel, with namespaces and
//! cgroups made by the test. Every event must carry, tagged in the kernel,
//! the cgroup ID, the namespace inodes and both PID views.

mod common;

use common::*;
use serde_json::Value;

/// `observer-workload` as the kernel names it (comm is 15 bytes).
const COMM: &str = "observer-worklo";

#[test]
fn stream_tags_cgroup_namespaces_and_both_pid_views() {
    if !privileged() {
        return;
    }
    let cg = TestCgroup::new(&format!("/observer-test-{}", fake_id()));
    let obs = Observer::start(&["--host"]);
    let cgroup = cg.path.to_string_lossy().into_owned();
    let me = workload(&[
        "--cgroup",
        &cgroup,
        "--unshare",
        "--hostname",
        "inside",
        "--exec",
        "/bin/true",
        "--calls",
        "1000",
    ]);
    let rec = obs.stop();
    let host_pidns = rec.kernel()["host_namespaces"]["pidns"].as_u64().unwrap();
    let events = rec.in_cgroup(cg.id);

    // Exactly the workload's getppid calls, under the directory's inode.
    let getppid: Vec<&&Value> = events
        .iter()
        .filter(|e| e["syscall"] == "getppid" && e["comm"] == COMM)
        .collect();
    assert_eq!(getppid.len(), 1000, "one record per getppid call");
    let e = getppid[0];
    assert_eq!(
        e["cgroup_id"], cg.id,
        "cgroup_id is the cgroup directory's inode"
    );
    assert_eq!(
        e["ns_pid"], 1,
        "PID 1 in its own PID namespace: {e} / workload {me}"
    );
    assert_eq!(e["pid"], me["host_pid"], "host PID as the host sees it");
    assert_ne!(e["pid"], e["ns_pid"]);
    assert_eq!(
        e["pidns"], me["pidns"],
        "pidns is what readlink /proc/PID/ns/pid shows"
    );
    assert_eq!(e["mntns"], me["mntns"]);
    assert_eq!(e["utsns"], me["utsns"]);
    assert_ne!(
        e["pidns"].as_u64().unwrap(),
        host_pidns,
        "a PID namespace of its own"
    );
    assert_eq!(e["nr"], observer::syscalls::number("getppid").unwrap());

    // fork -> exec -> exit inside, with both PID views and the nodename.
    // (The workload's first fork, from outside, makes the namespace's PID 1.)
    let outer = events
        .iter()
        .find(|e| e["type"] == "fork" && e["child_ns_pid"] == 1)
        .expect("the fork of PID 1");
    assert_eq!(outer["child_pid"], me["host_pid"]);
    let fork = events
        .iter()
        .find(|e| e["type"] == "fork" && e["pidns"] == me["pidns"])
        .expect("a fork record inside");
    assert_eq!(fork["ns_pid"], 1);
    assert_eq!(fork["child_ns_pid"], 2, "the child is PID 2 inside");
    assert_ne!(fork["child_pid"], 2, "and something else on the host");
    let exec = events
        .iter()
        .find(|e| e["type"] == "exec" && e["filename"] == "/bin/true")
        .expect("an exec record");
    assert_eq!(exec["nodename"], "inside", "the namespace's own hostname");
    assert_eq!(exec["ns_pid"], 2);
    assert_eq!(exec["pid"], fork["child_pid"]);
    assert_eq!(exec["pidns"], me["pidns"]);
    let exit = events
        .iter()
        .find(|e| e["type"] == "exit" && e["pid"] == fork["child_pid"])
        .expect("an exit record");
    assert_eq!(exit["exit_code"], 0);
    assert_eq!(
        rec.kernel()["release"],
        observer::kernel_info::KernelInfo::read().release
    );
}

#[test]
fn count_mode_counts_exactly_in_the_kernel() {
    if !privileged() {
        return;
    }
    // A Docker-shaped path so that the summaries list the cgroup by itself.
    let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let obs = Observer::start(&["--mode", "count", "--interval", "0.5"]);
    let cgroup = cg.path.to_string_lossy().into_owned();
    let me = workload(&["--cgroup", &cgroup, "--unshare", "--calls", "1000"]);
    let mut cg = cg;
    cg.remove();
    let rec = obs.stop();
    assert_eq!(
        rec.summary_count(cg.id, "getppid"),
        1000,
        "in-kernel count of getppid for the cgroup"
    );
    // The lifecycle tracepoints stay on in count mode: forks and exits are
    // counted (the workload forks its PID 1 and both exit; it execs nothing
    // there), and the container's start and exit are recorded.
    let total = |k: &str| -> u64 {
        rec.summary_entries(cg.id)
            .iter()
            .map(|e| e[k].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(
        total("forks") >= 1 && total("exits") >= 2,
        "forks {} execs {} exits {}",
        total("forks"),
        total("execs"),
        total("exits")
    );
    let lifecycle: Vec<&Value> = rec
        .of_type("container")
        .filter(|l| l["cgroup_id"] == cg.id)
        .collect();
    assert_eq!(
        lifecycle.len(),
        2,
        "a start and an exit record: {lifecycle:?}"
    );
    assert_eq!(lifecycle[0]["event"], "start");
    assert_eq!(lifecycle[1]["event"], "exit");
    for t in ["fork", "exec", "exit"] {
        assert_eq!(rec.of_type(t).count(), 0, "count mode streams no {t} lines");
    }
    let entries = rec.summary_entries(cg.id);
    // Keyed by each task's own pidns: the workload's PID 1 inside its own,
    // its parent (which made the namespace) in the host's.
    let seen: Vec<&Value> = entries
        .iter()
        .flat_map(|e| e["pidns_seen"].as_array().unwrap().iter())
        .collect();
    assert!(seen.contains(&&me["pidns"]), "{entries:?}");
    assert_eq!(
        rec.of_type("syscall").count(),
        0,
        "count mode streams no per-syscall records"
    );
}

#[test]
fn syscall_filter_keeps_only_the_named_syscalls() {
    if !privileged() {
        return;
    }
    let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let obs = Observer::start(&["--syscall", "getppid"]);
    let cgroup = cg.path.to_string_lossy().into_owned();
    workload(&["--cgroup", &cgroup, "--calls", "300"]);
    let rec = obs.stop();
    let events = rec.in_cgroup(cg.id);
    let syscalls: Vec<_> = events.iter().filter(|e| e["type"] == "syscall").collect();
    assert_eq!(syscalls.len(), 300);
    assert!(syscalls.iter().all(|e| e["syscall"] == "getppid"));
}

#[test]
fn sys_exit_carries_return_values() {
    if !privileged() {
        return;
    }
    let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let obs = Observer::start(&["--sys-exit", "--syscall", "getppid"]);
    let cgroup = cg.path.to_string_lossy().into_owned();
    workload(&["--cgroup", &cgroup, "--unshare", "--calls", "10"]);
    let rec = obs.stop();
    let exits: Vec<_> = rec
        .in_cgroup(cg.id)
        .into_iter()
        .filter(|e| e["type"] == "syscall_exit" && e["syscall"] == "getppid")
        .collect();
    assert_eq!(exits.len(), 10);
    // PID 1's parent is outside its namespace: getppid returns 0.
    assert!(exits.iter().all(|e| e["ret"] == 0), "{exits:?}");
}

#[test]
fn the_observer_never_observes_itself() {
    if !privileged() {
        return;
    }
    let obs = Observer::start(&["--host"]);
    let pid = obs.pid();
    workload(&["--calls", "10"]);
    let rec = obs.stop();
    assert!(
        rec.lines.iter().all(|l| l["pid"] != pid),
        "its own tgid is filtered in the kernel"
    );
    assert!(rec.of_type("syscall").count() > 0);
}
