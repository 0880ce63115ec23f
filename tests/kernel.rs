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
    tags_everything(TaskAccess::Btf);
}

/// The 5.10 fallback (`bpf_probe_read_kernel` from `bpf_get_current_task`)
/// gives the same records, forced here on a kernel that has both.
#[test]
fn the_probe_read_fallback_tags_the_same() {
    if !privileged() {
        return;
    }
    tags_everything(TaskAccess::ProbeRead);
}

#[derive(Clone, Copy, Debug)]
enum TaskAccess {
    Btf,
    ProbeRead,
}

impl TaskAccess {
    fn arg(self) -> &'static str {
        match self {
            TaskAccess::Btf => "btf",
            TaskAccess::ProbeRead => "probe-read",
        }
    }

    fn reported(self) -> &'static str {
        match self {
            TaskAccess::Btf => "btf",
            TaskAccess::ProbeRead => "probe_read",
        }
    }
}

fn tags_everything(access: TaskAccess) {
    let cg = TestCgroup::new(&format!("/observer-test-{}", fake_id()));
    let obs = Observer::start(&["--host", "--task-access", access.arg()]);
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
    assert_eq!(rec.kernel()["task_access"], access.reported());
}

/// Records of one host PID (task events only).
fn of_pid(rec: &Records, pid: u32) -> Vec<&Value> {
    rec.lines
        .iter()
        .filter(|l| l["pid"] == pid && l["type"] != "summary")
        .collect()
}

/// `exit` means the process is gone: not when the thread-group leader ends
/// while another thread runs on, nor when a thread's execve ends the old
/// leader; once, when the last thread exits.
#[test]
fn exit_comes_once_when_the_whole_thread_group_is_gone() {
    if !privileged() {
        return;
    }
    for access in [TaskAccess::Btf, TaskAccess::ProbeRead] {
        // In a container-shaped cgroup of its own: only its records are
        // streamed, whatever else the host does meanwhile.
        let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
        let path = cg.path.to_string_lossy().into_owned();
        let obs = Observer::start(&["--task-access", access.arg()]);
        let leader_first =
            workload_spawn(&["--cgroup", &path, "--leader-exits-first", "--calls", "200"]);
        let pid1 = leader_first.id();
        let report = workload_wait(leader_first);
        let exec_from_thread =
            workload_spawn(&["--cgroup", &path, "--exec-from-thread", "/bin/true"]);
        let pid2 = exec_from_thread.id();
        let status = wait_for(
            &mut { exec_from_thread },
            std::time::Duration::from_secs(30),
            "exec from a thread",
        );
        assert!(status.success());
        let rec = obs.stop();

        let events = of_pid(&rec, pid1);
        let exits: Vec<_> = events.iter().filter(|e| e["type"] == "exit").collect();
        assert_eq!(
            exits.len(),
            1,
            "{access:?}: one exit for the process: {exits:?}"
        );
        let last_call = events
            .iter()
            .filter(|e| e["syscall"] == "getppid")
            .map(|e| e["ts"].as_u64().unwrap())
            .max()
            .expect("the second thread's calls");
        assert_eq!(
            events.iter().filter(|e| e["syscall"] == "getppid").count(),
            200
        );
        assert!(
            exits[0]["ts"].as_u64().unwrap() > last_call,
            "{access:?}: exit after the last thread's calls: {exits:?}"
        );
        assert_eq!(
            exits[0]["tid"], report["last_tid"],
            "the last thread ends it"
        );

        let events = of_pid(&rec, pid2);
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| e["type"] == "exec" || e["type"] == "exit")
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        // Its thread execs /bin/true, which ends the old leader: no exit
        // for that. (The workload's own exec came before it joined.)
        assert_eq!(
            kinds,
            ["exec", "exit"],
            "{access:?}: the old leader's end is no exit"
        );
    }
}

/// Tasks nested deeper than the levels read with direct loads still get
/// both PID views and their namespace.
#[test]
fn deep_pid_namespaces_keep_both_views() {
    if !privileged() {
        return;
    }
    let cg = TestCgroup::new(&format!("/observer-test-{}", fake_id()));
    let obs = Observer::start(&["--host", "--syscall", "getppid", "--verbose"]);
    let cgroup = cg.path.to_string_lossy().into_owned();
    let me = workload(&[
        "--cgroup",
        &cgroup,
        "--unshare",
        "--depth",
        "10",
        "--calls",
        "50",
    ]);
    let rec = obs.stop();
    let calls: Vec<_> = rec
        .in_cgroup(cg.id)
        .into_iter()
        .filter(|e| e["syscall"] == "getppid" && e["pid"] == me["host_pid"])
        .collect();
    assert_eq!(calls.len(), 50);
    assert!(
        calls
            .iter()
            .all(|e| e["ns_pid"] == 1 && e["pidns"] == me["pidns"]),
        "10 levels deep: {:?} / {me}",
        calls[0]
    );
    // A rare condition, told by the kernel's log under --verbose, at its
    // 1st, 2nd, 4th… occurrence per CPU (the levels from 8 down are each
    // process of the nesting, each read a few times).
    let said: Vec<&str> = rec
        .stderr
        .lines()
        .filter(|l| l.starts_with("observer-ebpf: info: PID namespace level "))
        .collect();
    assert!(
        !said.is_empty()
            && said
                .iter()
                .all(|l| l.contains("beyond the unrolled levels")),
        "{}",
        rec.stderr
    );
    assert!(said.len() <= 2 * 16, "rate-limited: {}", rec.stderr);
}

/// The first line is the promise that everything is attached: a workload
/// started the moment it is written is seen whole, lifecycle included, in
/// both access flavours.
#[test]
fn everything_after_the_first_line_is_seen() {
    if !privileged() {
        return;
    }
    for access in [TaskAccess::Btf, TaskAccess::ProbeRead] {
        let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
        // `start` returns as soon as the kernel record is in the file.
        let obs = Observer::start(&["--task-access", access.arg()]);
        let cgroup = cg.path.to_string_lossy().into_owned();
        let me = workload(&[
            "--cgroup",
            &cgroup,
            "--exec",
            "/bin/true",
            "--calls",
            "1000",
        ]);
        let rec = obs.stop();
        let mine = rec.in_cgroup(cg.id);
        assert_eq!(
            mine.iter()
                .filter(|e| e["syscall"] == "getppid" && e["pid"] == me["host_pid"])
                .count(),
            1000,
            "{access:?}"
        );
        for kind in ["fork", "exec", "exit"] {
            assert!(
                mine.iter().any(|e| e["type"] == kind),
                "{access:?}: no {kind} record"
            );
        }
    }
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

/// A cgroup made under `parent` whose count slot (the ID's low 8 bits,
/// `COUNT_SLOTS` 256) is `slot`.
fn cgroup_in_slot(parent: &str, slot: u64) -> TestCgroup {
    let mut spare = Vec::new();
    loop {
        let cg = TestCgroup::new(&format!("{parent}/{}", fake_id()));
        if cg.id % u64::from(observer_common::COUNT_SLOTS) == slot {
            return cg;
        }
        spare.push(cg);
        assert!(spare.len() < 1024, "no cgroup ID landed in slot {slot}");
    }
}

/// Count mode across a container's removal: its counts are reported once
/// (never again after the registry forgets it), and a later cgroup on the
/// same slot starts from zero.
#[test]
fn count_mode_counts_removed_cgroups_once_and_reuses_their_slots() {
    if !privileged() {
        return;
    }
    let obs = Observer::start(&["--mode", "count", "--interval", "0.5"]);
    let mut a = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let slot = a.id % u64::from(observer_common::COUNT_SLOTS);
    let path = a.path.to_string_lossy().into_owned();
    // One CPU: the other CPUs' copies of the slot stay empty.
    workload(&["--cgroup", &path, "--cpu", "0", "--calls", "1000"]);
    let a_id = a.id;
    a.remove();
    // The registry forgets a removed cgroup after REMOVED_GRACE; wait for
    // two summaries past that.
    let until = std::time::Instant::now()
        + observer::container::REMOVED_GRACE
        + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let b = cgroup_in_slot("/docker", slot);
    let path = b.path.to_string_lossy().into_owned();
    workload(&["--cgroup", &path, "--cpu", "0", "--calls", "700"]);
    let rec = obs.stop();
    assert_eq!(
        rec.summary_count(a_id, "getppid"),
        1000,
        "the removed cgroup's calls, once"
    );
    assert_eq!(
        rec.summary_count(b.id, "getppid"),
        700,
        "the slot's next owner starts from zero"
    );
}

/// Count mode's overflow map is bounded (16k pairs): what does not fit is
/// counted as loss for its cgroup, never dropped silently.
#[test]
fn count_mode_overflow_is_counted_as_loss() {
    if !privileged() {
        return;
    }
    let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let obs = Observer::start(&["--mode", "count", "--interval", "0.5", "--verbose"]);
    let path = cg.path.to_string_lossy().into_owned();
    workload(&[
        "--cgroup",
        &path,
        "--cpu",
        "0",
        "--calls",
        "0",
        "--distinct-numbers",
        "17000",
    ]);
    let rec = obs.stop();
    let counted: u64 = rec
        .summary_entries(cg.id)
        .iter()
        .flat_map(|e| e["syscalls"].as_object().cloned().unwrap_or_default())
        .filter(|(name, _)| name.parse::<u64>().is_ok_and(|nr| nr >= 1000))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    // The last loss record accounts for the whole run.
    let last = rec.of_type("loss").last().expect("a final loss record");
    let lost = last["by_cgroup"][cg.id.to_string()].as_u64().unwrap_or(0);
    assert!(lost > 0, "17000 numbers can't all fit: counted {counted}");
    // The workload's own few other syscalls may overflow too.
    assert!(
        (17_000..=17_200).contains(&(counted + lost)),
        "counted {counted} + lost {lost}"
    );
    // Said by the kernel's log under --verbose, rate-limited: the 1st,
    // 2nd, 4th… full-table loss per CPU, never one line per lost call.
    let said = rec
        .stderr
        .lines()
        .filter(|l| l.starts_with("observer-ebpf: warn: count table full"))
        .count();
    assert!(
        said >= 1 && (said as u64) <= 2 * (64 - lost.leading_zeros() as u64) + 2,
        "{said} lines for {lost} lost: {}",
        rec.stderr
    );
}

/// A new thread is no new process: summaries count it in `threads`, apart
/// from `forks`.
#[test]
fn threads_are_counted_apart_from_forks() {
    if !privileged() {
        return;
    }
    let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let obs = Observer::start(&["--interval", "0.5"]);
    let path = cg.path.to_string_lossy().into_owned();
    // One thread, no child process.
    workload(&["--cgroup", &path, "--leader-exits-first", "--calls", "10"]);
    // One child process, no thread.
    workload(&["--cgroup", &path, "--exec", "/bin/true", "--calls", "10"]);
    let rec = obs.stop();
    let entries = rec.summary_entries(cg.id);
    let sum = |k: &str| -> u64 { entries.iter().map(|e| e[k].as_u64().unwrap_or(0)).sum() };
    assert_eq!(sum("threads"), 1, "{entries:?}");
    assert_eq!(sum("forks"), 1, "{entries:?}");
}

/// Syscall records carry only time, thread, cgroup and number; who the
/// thread is goes out once and again when it changes. Every line must still
/// say exactly who made the call: after a new comm (by prctl and by
/// /proc), new UTS and network namespaces and back again by setns, in a
/// named thread, after a move to another cgroup and after an exec, each run
/// of calls is counted exactly under its own identity, in both flavours.
#[test]
fn identity_follows_every_change_with_compact_records() {
    if !privileged() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("observer-test-idexec-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let link = dir.join("id-exec");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(WORKLOAD, &link).expect("symlink the workload");
    for access in [TaskAccess::Btf, TaskAccess::ProbeRead] {
        let first = TestCgroup::new(&format!("/docker/{}", fake_id()));
        let second = TestCgroup::new(&format!("/docker/{}", fake_id()));
        let obs = Observer::start(&["--task-access", access.arg()]);
        let out = std::process::Command::new(WORKLOAD)
            .args(["--cgroup", &first.path.to_string_lossy(), "--unshare"])
            .arg("--identity-changes")
            .arg(&second.path)
            .arg("--identity-exec")
            .arg(&link)
            .output()
            .expect("run the workload");
        assert!(
            out.status.success(),
            "workload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rec = obs.stop();
        let reports: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON lines"))
            .collect();
        let after_exec = &reports[1];
        let mut runs: Vec<(Value, u64)> = reports[0]["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), if i < 6 { first.id } else { second.id }))
            .collect();
        runs.push((
            serde_json::json!({
                "calls": 108,
                "tid": after_exec["host_pid"],
                "ns_tid": after_exec["ns_pid"],
                "comm": "id-exec",
                "pidns": after_exec["pidns"],
                "mntns": after_exec["mntns"],
                "utsns": after_exec["utsns"],
                "netns": runs[0].0["netns"],
            }),
            second.id,
        ));
        // The runs differ where they should.
        assert_ne!(runs[3].0["utsns"], runs[0].0["utsns"], "{runs:?}");
        assert_ne!(runs[3].0["netns"], runs[0].0["netns"], "{runs:?}");
        assert_eq!(runs[4].0["utsns"], runs[0].0["utsns"], "{runs:?}");
        assert_ne!(runs[5].0["tid"], runs[0].0["tid"], "{runs:?}");
        // Runs with the same identity (the first with a new comm by /proc,
        // and after setns back) add up; every call is under exactly its
        // run's identity.
        let key = |v: &Value, cgroup: &Value| {
            ["tid", "ns_tid", "comm", "pidns", "mntns", "utsns", "netns"]
                .iter()
                .map(|k| v[*k].to_string())
                .chain([cgroup.to_string()])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut expected = std::collections::BTreeMap::<String, u64>::new();
        for (run, cgroup) in &runs {
            *expected.entry(key(run, &(*cgroup).into())).or_default() +=
                run["calls"].as_u64().unwrap();
        }
        let pid = runs[0].0["tid"].clone();
        let mut seen = std::collections::BTreeMap::<String, u64>::new();
        for l in rec
            .lines
            .iter()
            .filter(|l| l["pid"] == pid && l["syscall"] == "getppid")
        {
            assert_eq!(l["ns_pid"], 1, "{access:?}: {l}");
            *seen.entry(key(l, &l["cgroup_id"])).or_default() += 1;
        }
        assert_eq!(
            seen, expected,
            "{access:?}: calls per identity (tid ns_tid comm pidns mntns utsns netns cgroup)"
        );
        assert_eq!(expected.values().sum::<u64>(), (101..=108).sum::<u64>());
        let loss = rec.of_type("loss").last().expect("the final loss record");
        assert_eq!(loss["decode_errors"], 0, "{access:?}: every call joined");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Compat (ia32) syscalls: `int 0x80` from a 64-bit process reaches
/// `sys_enter` with the i386 table's number (getppid is 64 there; 64 is
/// semget in x86_64's). They are named from the i386 table and marked
/// `"abi":"ia32"` in the stream, kept apart as `getppid (ia32)` in count
/// mode's summaries, and pass a `--syscall getppid` filter by their own
/// number, in both program flavours.
#[test]
fn compat_syscalls_are_named_from_the_i386_table() {
    if !privileged() {
        return;
    }
    const NATIVE: u64 = 200;
    const INT80: u64 = 150;
    let run = |cgroup: &str| -> Value {
        let me = workload(&[
            "--cgroup",
            cgroup,
            "--calls",
            &NATIVE.to_string(),
            "--int80-calls",
            &INT80.to_string(),
        ]);
        let int80 = &me["int80"];
        assert_eq!(
            int80["available"], true,
            "this kernel takes no int 0x80 from a 64-bit process: {int80}"
        );
        assert_eq!(int80["returned_ppid"], INT80, "{int80}");
        me
    };
    for access in [TaskAccess::Btf, TaskAccess::ProbeRead] {
        let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
        let cgroup = cg.path.to_string_lossy().into_owned();
        let obs = Observer::start(&["--syscall", "getppid", "--task-access", access.arg()]);
        let me = run(&cgroup);
        let rec = obs.stop();
        let calls: Vec<&Value> = rec
            .in_cgroup(cg.id)
            .into_iter()
            .filter(|e| e["type"] == "syscall" && e["pid"] == me["host_pid"])
            .collect();
        let native = calls.iter().filter(|e| e.get("abi").is_none()).count() as u64;
        let ia32: Vec<_> = calls.iter().filter(|e| e["abi"] == "ia32").collect();
        assert_eq!(
            (native, ia32.len() as u64, calls.len() as u64),
            (NATIVE, INT80, NATIVE + INT80),
            "{access:?}: native and ia32 getppid calls, nothing else"
        );
        assert!(
            calls.iter().all(|e| e["syscall"] == "getppid"),
            "{access:?}: {:?}",
            calls.iter().find(|e| e["syscall"] != "getppid")
        );
        assert_eq!(ia32[0]["nr"], 64, "{access:?}: the i386 number");
        assert!(
            calls
                .iter()
                .filter(|e| e.get("abi").is_none())
                .all(|e| e["nr"] == 110),
            "{access:?}"
        );

        let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
        let cgroup = cg.path.to_string_lossy().into_owned();
        let obs = Observer::start(&[
            "--mode",
            "count",
            "--interval",
            "0.5",
            "--task-access",
            access.arg(),
        ]);
        run(&cgroup);
        let rec = obs.stop();
        assert_eq!(
            (
                rec.summary_count(cg.id, "getppid"),
                rec.summary_count(cg.id, "getppid (ia32)"),
                rec.summary_count(cg.id, "semget"),
            ),
            (NATIVE, INT80, 0),
            "{access:?}: count mode keeps compat calls apart"
        );
    }
}
