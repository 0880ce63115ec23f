//! Privileged: cgroups laid out the way each runtime lays them out, real
//! namespaced tasks in them, and the observer's attribution and grouping.

mod common;

use std::collections::HashSet;

use common::*;

#[test]
fn every_runtime_layout_is_attributed_and_grouped_apart() {
    if !privileged() {
        return;
    }
    let id = |_: ()| fake_id();
    let uid = "2c6f3a1e-9b1d-4f3e-8a55-0d2b7c9e4f11";
    let tag = &fake_id()[..12];
    let layouts: Vec<(String, &str, String)> = vec![
        (format!("/docker/{}", id(())), "docker", String::new()),
        (
            format!("/system.slice/docker-{}.scope", id(())),
            "docker",
            String::new(),
        ),
        (
            format!("/system.slice/cri-containerd-{}.scope", id(())),
            "containerd",
            String::new(),
        ),
        (
            format!("/system.slice/crio-{}.scope", id(())),
            "crio",
            String::new(),
        ),
        (
            format!("/machine.slice/libpod-{}.scope", id(())),
            "podman",
            String::new(),
        ),
        (
            format!("/kubepods/besteffort/pod{uid}/{}", id(())),
            "kubernetes",
            String::new(),
        ),
        (format!("/lxc.payload.obs{tag}"), "lxc", format!("obs{tag}")),
        (
            format!("/machine.slice/machine-obs{tag}.scope"),
            "nspawn",
            format!("obs{tag}"),
        ),
    ];
    let cgroups: Vec<TestCgroup> = layouts.iter().map(|(p, _, _)| TestCgroup::new(p)).collect();
    let obs = Observer::start(&["--interval", "0.5"]);
    let mut seen_pidns = HashSet::new();
    // All alive at once, so that their namespaces coexist (a namespace's
    // inode number is reused once it is freed).
    let children: Vec<_> = cgroups
        .iter()
        .enumerate()
        .map(|(i, cg)| {
            let calls = (100 + i).to_string();
            let path = cg.path.to_string_lossy().into_owned();
            workload_spawn(&[
                "--cgroup",
                &path,
                "--unshare",
                "--calls",
                &calls,
                "--linger-ms",
                "1500",
            ])
        })
        .collect();
    let ran: Vec<_> = children.into_iter().map(workload_wait).collect();
    let rec = obs.stop();
    for (i, ((rel, runtime, name), cg)) in layouts.iter().zip(&cgroups).enumerate() {
        let events = rec.in_cgroup(cg.id);
        let getppid = events.iter().filter(|e| e["syscall"] == "getppid").count();
        assert_eq!(
            getppid,
            100 + i,
            "{rel}: every call attributed to its cgroup"
        );
        // Schema 2: event lines carry the container's id and name; the
        // whole object is in its `container` record.
        assert_eq!(events[0]["container"]["id"], rec.container_of(cg.id)["id"]);
        let c = rec.container_of(cg.id);
        assert_eq!(c["runtime"], *runtime, "{rel}: {c}");
        assert_eq!(c["cgroup"], rel.as_str());
        let expected_id = if name.is_empty() {
            rel.rsplit(['/', '-'])
                .next()
                .unwrap()
                .trim_end_matches(".scope")
                .to_owned()
        } else {
            name.clone()
        };
        assert_eq!(c["id"], expected_id.as_str(), "{rel}");
        if *runtime == "kubernetes" {
            assert_eq!(c["pod_uid"], uid);
        }
        if !name.is_empty() {
            assert_eq!(
                c["name"],
                name.as_str(),
                "nspawn machines and LXC containers are named by their cgroup"
            );
        }
        assert_eq!(
            rec.summary_count(cg.id, "getppid"),
            (100 + i) as u64,
            "{rel}: grouped in the summaries"
        );
        let pidns = ran[i]["pidns"].as_u64().unwrap();
        assert!(seen_pidns.insert(pidns), "each has its own PID namespace");
        let entries = rec.summary_entries(cg.id);
        assert!(entries
            .iter()
            .all(|e| e["container"]["runtime"] == *runtime));
    }
    // By default only containers: no host records at all.
    assert!(
        rec.lines
            .iter()
            .filter(|l| l["type"] == "syscall")
            .all(|l| !l["container"].is_null()),
        "host activity is not streamed without --host"
    );
    // One kernel under all of them.
    let releases: HashSet<String> = rec
        .of_type("summary")
        .map(|s| s["kernel"]["release"].to_string())
        .collect();
    assert_eq!(releases.len(), 1);
}

#[test]
fn a_container_that_lives_milliseconds_is_attributed_after_its_cgroup_is_gone() {
    if !privileged() {
        return;
    }
    let obs = Observer::start(&[]);
    // Made after the observer started: only cgroup_mkdir can tell its path.
    let id = fake_id();
    let rel = format!("/docker/{id}");
    let mut cg = TestCgroup::new(&rel);
    let path = cg.path.to_string_lossy().into_owned();
    let start = std::time::Instant::now();
    workload(&["--cgroup", &path, "--unshare", "--calls", "5"]);
    cg.remove();
    let lived = start.elapsed();
    let rec = obs.stop();
    assert!(lived.as_millis() < 500, "the task lived {lived:?}");
    let events = rec.in_cgroup(cg.id);
    assert!(
        events.iter().filter(|e| e["syscall"] == "getppid").count() == 5,
        "{events:?}"
    );
    assert!(events.iter().all(|e| e["container"]["id"] == id.as_str()));
    assert_eq!(rec.container_of(cg.id)["cgroup"], rel.as_str());
    let lifecycle: Vec<_> = rec
        .of_type("container")
        .filter(|c| c["container"]["id"] == id.as_str())
        .collect();
    assert_eq!(
        lifecycle.len(),
        2,
        "a start and an exit record: {lifecycle:?}; {}",
        rec.of_type("loss").last().unwrap()
    );
    assert_eq!(lifecycle[0]["event"], "start");
    assert_eq!(lifecycle[1]["event"], "exit");
    let ms = lifecycle[1]["lifetime_ms"].as_f64().unwrap();
    assert!(ms > 0.0 && ms < 1000.0, "lifetime_ms {ms}");
    // The final summary still carries it, by name and ID.
    assert!(rec
        .summary_entries(cg.id)
        .iter()
        .any(|e| e["container"]["id"] == id.as_str()));
}

#[test]
fn container_filter_selects_by_id_prefix() {
    if !privileged() {
        return;
    }
    let a = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let b = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let a_id = a.rel.rsplit('/').next().unwrap().to_owned();
    let obs = Observer::start(&["--container", &a_id[..12]]);
    for cg in [&a, &b] {
        workload(&["--cgroup", &cg.path.to_string_lossy(), "--calls", "50"]);
    }
    let rec = obs.stop();
    assert_eq!(
        rec.in_cgroup(a.id)
            .iter()
            .filter(|e| e["syscall"] == "getppid")
            .count(),
        50
    );
    assert!(
        rec.in_cgroup(b.id).is_empty(),
        "the other container is filtered out"
    );
    assert!(rec.summary_entries(b.id).is_empty());
}

/// Without cgroup2 (forced here with the hidden `--cgroup-v1`), containers
/// are attributed from their v1 cgroup in /proc/PID/cgroup.
#[test]
fn cgroup_v1_attribution_from_proc() {
    if !privileged() {
        return;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some((mount, _)) = observer::container::v1::v1_hierarchy(&mountinfo) else {
        observer::privilege::skip_or_fail("no cgroup v1 hierarchy is mounted on this host");
        return;
    };
    let id = fake_id();
    let dir = mount.join("docker").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let obs = Observer::start(&["--cgroup-v1", "--syscall", "getppid"]);
    // Alive long enough for its /proc entry to be read.
    let me = workload(&[
        "--cgroup",
        &dir.to_string_lossy(),
        "--unshare",
        "--calls",
        "200",
        "--linger-ms",
        "800",
    ]);
    let rec = obs.stop();
    let _ = std::fs::remove_dir(&dir);
    let ours: Vec<_> = rec
        .of_type("syscall")
        .filter(|e| e["container"]["id"] == id.as_str())
        .collect();
    assert_eq!(ours.len(), 200, "every call attributed to the container");
    assert!(ours.iter().all(|e| e["pidns"] == me["pidns"]));
    let start = rec
        .of_type("container")
        .find(|c| c["container"]["id"] == id.as_str())
        .expect("a container record");
    assert_eq!(start["container"]["runtime"], "docker");
    assert!(
        rec.stderr
            .contains("attributing containers from /proc/PID/cgroup"),
        "{}",
        rec.stderr
    );
}

/// Without cgroup2, a process seen before it joins its container's v1
/// cgroups (as `runc init` is) is looked up again when it forks or execs:
/// what it does from then on is the container's.
#[test]
fn cgroup_v1_attribution_follows_a_late_join() {
    if !privileged() {
        return;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some((mount, _)) = observer::container::v1::v1_hierarchy(&mountinfo) else {
        observer::privilege::skip_or_fail("no cgroup v1 hierarchy is mounted on this host");
        return;
    };
    let id = fake_id();
    let dir = mount.join("docker").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let obs = Observer::start(&["--cgroup-v1", "--syscall", "getppid"]);
    // Its exec is read while it is still in the host's cgroup; it then
    // joins, forks (for /bin/true) and makes its calls.
    workload(&[
        "--cgroup",
        &dir.to_string_lossy(),
        "--cgroup-delay-ms",
        "500",
        "--exec",
        "/bin/true",
        "--calls",
        "200",
        "--linger-ms",
        "800",
    ]);
    let rec = obs.stop();
    let _ = std::fs::remove_dir(&dir);
    let ours = rec
        .of_type("syscall")
        .filter(|e| e["syscall"] == "getppid" && e["container"]["id"] == id.as_str())
        .count();
    assert_eq!(ours, 200, "every call after the join is the container's");
}

/// The registry's account in the final `loss` record.
fn registry_account(rec: &Records) -> serde_json::Value {
    rec.of_type("loss").last().expect("a final loss record")["registry"].clone()
}

/// A cgroup path longer than the kernel's record holds (a kind pod's
/// container scope) is completed from cgroupfs by a walk on the walker
/// thread, never on the event path: the one walk on the daemon's thread is
/// the one at start.
#[test]
fn a_cut_cgroup_path_is_completed_off_the_event_path() {
    if !privileged() {
        return;
    }
    let obs = Observer::start(&[]);
    let id = fake_id();
    let rel = format!(
        "/obs-long-{}{}/docker-{id}.scope",
        &id[..16],
        "x".repeat(200)
    );
    assert!(rel.len() > 256, "longer than the record's path");
    let mut cg = TestCgroup::new(&rel);
    let path = cg.path.to_string_lossy().into_owned();
    workload(&["--cgroup", &path, "--calls", "100", "--linger-ms", "500"]);
    cg.remove();
    let rec = obs.stop();
    let events = rec.in_cgroup(cg.id);
    assert_eq!(
        events.iter().filter(|e| e["syscall"] == "getppid").count(),
        100,
        "every call attributed"
    );
    assert!(events.iter().all(|e| e["container"]["id"] == id.as_str()));
    assert_eq!(
        rec.container_of(cg.id)["cgroup"],
        rel.as_str(),
        "the whole path"
    );
    let reg = registry_account(&rec);
    assert_eq!(
        reg["cgroup_walks_inline"], 1,
        "only the walk at start: {reg}"
    );
    assert!(
        reg["cgroup_walks_background"].as_u64().unwrap() >= 1,
        "{reg}"
    );
}

/// Behind a Docker socket that accepts and never answers, name lookups
/// queue up to their bound and no further: a container past it is not held
/// for a name that can't come, so its events are out before a name wait
/// (1.5 s) could have ended; every call of every container is there, by ID.
#[test]
fn a_hanging_docker_socket_bounds_the_lookups_and_holds_no_event_back() {
    if !privileged() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("observer-hang-docker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("docker.sock");
    let _ = std::fs::remove_file(&sock);
    // A socket that accepts and never answers, as a wedged engine does.
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    // More containers than lookups may queue (256), all looked up at start:
    // the engine's 2 s timeout keeps the queue full for the whole test.
    let cgroups: Vec<TestCgroup> = (0..320)
        .map(|_| TestCgroup::new(&format!("/docker/{}", fake_id())))
        .collect();
    let obs = Observer::start(&["--docker-socket", &sock.to_string_lossy()]);
    // A container made now: its lookup finds the queue full.
    let late = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let ran = std::time::Instant::now();
    // Its own command's exec ends its start (which its events wait for).
    workload(&[
        "--cgroup",
        &late.path.to_string_lossy(),
        "--exec",
        "/bin/true",
        "--calls",
        "50",
    ]);
    let needle = format!("\"cgroup_id\":{}", late.id);
    let out_in = loop {
        let text = std::fs::read_to_string(&obs.out).unwrap_or_default();
        let n = text
            .lines()
            .filter(|l| l.contains(&needle) && l.contains("\"syscall\":\"getppid\""))
            .count();
        if n == 50 {
            break ran.elapsed();
        }
        assert!(
            ran.elapsed() < std::time::Duration::from_secs(10),
            "{n} of 50 calls out after 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let early = &cgroups[0];
    workload(&["--cgroup", &early.path.to_string_lossy(), "--calls", "50"]);
    let rec = obs.stop();
    let reg = registry_account(&rec);
    assert!(
        out_in < std::time::Duration::from_millis(1200),
        "a container past the queue's bound waited {out_in:?} for its name: {reg}"
    );
    for cg in [early, &late] {
        let events = rec.in_cgroup(cg.id);
        assert_eq!(
            events.iter().filter(|e| e["syscall"] == "getppid").count(),
            50,
            "every call, without a name"
        );
        assert!(events.iter().all(|e| e["container"]["name"].is_null()));
    }
    assert!(
        reg["names_deferred"].as_u64().unwrap() > 320 - 257,
        "lookups past the bound deferred, the late one's too: {reg}"
    );
    assert_eq!(reg["cgroup_walks_inline"], 1, "{reg}");
    drop(cgroups);
    let _ = std::fs::remove_dir_all(&dir);
}
