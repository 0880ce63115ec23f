//! Stopping by signal: SIGINT, SIGTERM and SIGHUP each end the observer
//! cleanly (exit 0, last summary, final loss account) and release every BPF
//! program and map it loaded.
//!
//! The host's count of loaded programs and maps is global, so this binary
//! holds a single test that runs the signals one after the other (cargo
//! runs test binaries one at a time; other processes on the host that load
//! programs meanwhile are told apart by the IDs they hold).

mod common;

use std::{
    collections::BTreeSet,
    fs,
    io::Read,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// IDs of loaded BPF programs and maps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Ids {
    progs: BTreeSet<u32>,
    maps: BTreeSet<u32>,
}

/// Every program and map loaded on the host now.
fn loaded_ids() -> Ids {
    Ids {
        progs: aya::programs::loaded_programs()
            .flatten()
            .map(|p| p.id())
            .collect(),
        maps: aya::maps::loaded_maps().flatten().map(|m| m.id()).collect(),
    }
}

/// The programs and maps one process holds through its file descriptors
/// (`prog_id:` / `map_id:` in /proc/PID/fdinfo; links name their program).
fn held_ids(pid: &str, into: &mut Ids) {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return;
    };
    for fd in fds.flatten() {
        let Ok(info) = fs::read_to_string(fd.path()) else {
            continue;
        };
        for line in info.lines() {
            let mut kv = line.splitn(2, ':');
            let (Some(k), Some(v)) = (kv.next(), kv.next()) else {
                continue;
            };
            let Ok(id) = v.trim().parse::<u32>() else {
                continue;
            };
            match k {
                "prog_id" => {
                    into.progs.insert(id);
                }
                "map_id" => {
                    into.maps.insert(id);
                }
                _ => {}
            }
        }
    }
}

/// What every live process holds.
fn held_by_live_processes() -> Ids {
    let mut ids = Ids::default();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.bytes().all(|b| b.is_ascii_digit()) {
            held_ids(&name, &mut ids);
        }
    }
    ids
}

fn out_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "observer-lifecycle-{}-{tag}.jsonl",
        std::process::id()
    ))
}

/// One run: start, work, signal, and check the end and the release.
fn stop_by(sig: libc::c_int, name: &str) {
    let baseline = observer::loader::loaded_counts();
    let baseline_ids = loaded_ids();
    let out = out_path(name);
    let _ = fs::remove_file(&out);
    // --sys-exit: every program the daemon has is attached.
    let mut child = Command::new(OBSERVER)
        .args(["--host", "--sys-exit", "--syscall", "getppid", "--output"])
        .arg(&out)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the observer");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fs::read_to_string(&out).is_ok_and(|s| s.contains("\"type\":\"kernel\"")) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{name}: the observer exited before starting"
        );
        assert!(Instant::now() < deadline, "{name}: no start within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Attached (the kernel record is written after attach): what it holds.
    let mut ours = Ids::default();
    held_ids(&pid.to_string(), &mut ours);
    // sys_enter, sys_exit, fork, exec, exit, sched_switch, cgroup mkdir/rmdir.
    assert!(
        ours.progs.len() >= 8,
        "{name}: the observer holds its programs: {ours:?}"
    );
    assert!(!ours.maps.is_empty(), "{name}: and its maps: {ours:?}");
    let now = loaded_ids();
    assert!(
        ours.progs.is_subset(&now.progs) && ours.maps.is_subset(&now.maps),
        "{name}: what it holds is what the host lists"
    );

    let me = workload(&["--calls", "50"]);
    // The handlers are installed right after the kernel record; leave the
    // loop time to start and to read the workload's records.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    let status = wait_for(
        &mut child,
        Duration::from_secs(10),
        &format!("{name}: the observer"),
    );
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert_eq!(
        status.code(),
        Some(0),
        "{name}: a clean exit ({status}): {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");

    // The end of the stream: last summary, then the final loss account
    // (a loss record of the last interval may sit between them).
    let lines = json_lines(&out);
    let _ = fs::remove_file(&out);
    assert_eq!(lines[0]["type"], "kernel");
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "loss", "{name}: the final loss account last");
    assert_eq!(
        last["lost"], last["lost_total"],
        "{name}: the final account covers the whole run"
    );
    let tail: Vec<&Value> = lines.iter().rev().skip(1).take(2).collect();
    assert!(
        tail.first().is_some_and(|l| l["type"] == "summary")
            || (tail.first().is_some_and(|l| l["type"] == "loss")
                && tail.get(1).is_some_and(|l| l["type"] == "summary")),
        "{name}: the last summary right before: {tail:?}"
    );
    let getppid = lines
        .iter()
        .filter(|l| l["type"] == "syscall" && l["pid"] == me["host_pid"])
        .count();
    assert_eq!(getppid, 50, "{name}: every record was read before exit");

    // Everything released. The kernel frees programs and maps
    // asynchronously after the last reference goes: poll.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = loaded_ids();
        let counts = observer::loader::loaded_counts();
        let ours_left = Ids {
            progs: ours.progs.intersection(&now.progs).copied().collect(),
            maps: ours.maps.intersection(&now.maps).copied().collect(),
        };
        if ours_left == Ids::default() && counts == baseline {
            return;
        }
        if Instant::now() >= deadline {
            assert_eq!(
                ours_left,
                Ids::default(),
                "{name}: programs and maps of the stopped observer still loaded"
            );
            // Ours are gone but the count differs: only acceptable when the
            // difference is held by other live processes (another observer
            // or test on this host loading at the same time).
            let held = held_by_live_processes();
            // Only what was loaded both before and after the scan counts:
            // a program loaded or freed while /proc was read is not a leak.
            let after = loaded_ids();
            let now = Ids {
                progs: now.progs.intersection(&after.progs).copied().collect(),
                maps: now.maps.intersection(&after.maps).copied().collect(),
            };
            let unexplained = Ids {
                progs: now
                    .progs
                    .difference(&baseline_ids.progs)
                    .filter(|id| !held.progs.contains(id))
                    .copied()
                    .collect(),
                maps: now
                    .maps
                    .difference(&baseline_ids.maps)
                    .filter(|id| !held.maps.contains(id))
                    .copied()
                    .collect(),
            };
            assert_eq!(
                unexplained,
                Ids::default(),
                "{name}: loaded (programs, maps) {counts:?} vs {baseline:?} before, \
                 with new ones nobody holds"
            );
            eprintln!(
                "{name}: counts {counts:?} vs {baseline:?} before: the difference is held by \
                 other processes"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn signals_stop_cleanly_and_release_every_program_and_map() {
    if !privileged() {
        return;
    }
    for (sig, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        stop_by(sig, name);
    }
}

/// tracefs not mounted: the daemon mounts it. In this binary, which runs
/// alone, so that no other test's tools lose tracefs meanwhile.
#[test]
fn mounts_tracefs_when_it_is_missing() {
    if !privileged() {
        return;
    }
    let mounted =
        || observer::loader::tracefs_mounted(&fs::read_to_string("/proc/self/mountinfo").unwrap());
    while mounted() {
        let st = Command::new("umount")
            .arg("/sys/kernel/tracing")
            .status()
            .unwrap();
        assert!(st.success(), "umount /sys/kernel/tracing");
    }
    let obs = Observer::start(&["--host"]);
    assert!(mounted(), "the observer mounted tracefs");
    let rec = obs.stop();
    assert!(rec.of_type("syscall").count() > 0);
    assert!(!rec.stderr.contains("mount tracefs"), "{}", rec.stderr);
}
