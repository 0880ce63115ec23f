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
        "a start and an exit record: {lifecycle:?}"
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
