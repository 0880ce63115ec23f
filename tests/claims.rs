//! The lesson's other claims, measured on real Docker containers: the one
//! kernel enforces each container's cgroup limits (OOM kill, refused forks,
//! CPU throttling), containers start like processes, and what a container
//! may do to the shared kernel is read from its credentials at exec.

mod common;

use std::{process::Command, time::Instant};

use common::*;
use serde_json::Value;

/// The workload binary and the host's C library, read-only, so that the
/// busybox image can run it as `/workload`.
fn workload_mounts() -> Vec<String> {
    vec![
        "-v".into(),
        format!("{WORKLOAD}:/workload:ro"),
        "-v".into(),
        "/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:ro".into(),
        "-v".into(),
        "/lib64:/lib64:ro".into(),
    ]
}

/// `docker run --rm --network none --name NAME EXTRA IMAGE CMD`; returns
/// (stdout, wall time in ms).
fn run(image: &str, name: &str, extra: &[&str], cmd: &[&str]) -> (String, f64) {
    let mut args: Vec<String> = ["run", "--rm", "--network", "none", "--name", name]
        .map(String::from)
        .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(image.into());
    args.extend(cmd.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = Instant::now();
    let out = docker(&args);
    let wall_ms = t.elapsed().as_secs_f64() * 1e3;
    (out, wall_ms)
}

fn named(rec: &Records, name: &str) -> Option<u64> {
    rec.lines
        .iter()
        .find(|l| l["container"]["name"] == name)
        .and_then(|l| l["cgroup_id"].as_u64())
}

fn enforced<'a>(rec: &'a Records, name: &'a str, kind: &'a str) -> Vec<&'a Value> {
    rec.of_type("enforced")
        .filter(|e| e["kind"] == kind && e["container"]["name"] == name)
        .collect()
}

fn entries(rec: &Records, name: &str) -> Vec<Value> {
    rec.of_type("summary")
        .flat_map(|s| s["containers"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["container"]["name"] == name)
        .collect()
}

#[test]
fn an_oom_kill_is_attributed_to_its_container_and_pid() {
    let Some(image) = docker_image() else { return };
    let obs = Observer::start(&["--interval", "0.5"]);
    let name = unique("obs-oom");
    let mut args: Vec<String> = ["run", "-d", "--network", "none", "--name", &name]
        .map(String::from)
        .to_vec();
    args.extend(workload_mounts());
    args.extend(["--memory", "32m", "--memory-swap", "32m"].map(String::from));
    args.push(image.clone());
    // The pause lets the test learn the host PID before the kill.
    args.extend(["sh", "-c", "sleep 1; exec /workload --alloc-mb 256"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = docker(&args).trim().to_owned();
    let pid: u64 = docker(&["inspect", "-f", "{{.State.Pid}}", &id])
        .trim()
        .parse()
        .unwrap();
    let code = docker(&["wait", &id]);
    let oom = docker(&["inspect", "-f", "{{.State.OOMKilled}}", &id]);
    docker(&["rm", &id]);
    let rec = obs.stop();
    assert_eq!(code.trim(), "137", "killed by SIGKILL");
    assert_eq!(oom.trim(), "true", "Docker agrees it was the OOM killer");
    let kills = enforced(&rec, &name, "oom_kill");
    assert_eq!(kills.len(), 1, "{kills:?}");
    assert_eq!(kills[0]["pid"], pid, "the container's process, by host PID");
    assert_eq!(kills[0]["comm"], "workload");
    assert_eq!(kills[0]["container"]["id"], id.as_str());
    assert_eq!(kills[0]["count"], 1);
    assert_eq!(kills[0]["limit"], 32u64 << 20);
    let e = entries(&rec, &name);
    assert!(e
        .iter()
        .any(|e| e["limits"]["memory_bytes"] == 32u64 << 20 && e["enforced"]["oom_kill"] == 1));
}

/// A `--pids-limit 16` container tries 40 forks; returns the records, the
/// container's name and the workload's own count of EAGAIN failures.
fn fork_past_a_pids_limit(observer_args: &[&str]) -> Option<(Records, String, u64)> {
    let image = docker_image()?;
    let mut args = vec!["--interval", "0.5"];
    args.extend(observer_args);
    let obs = Observer::start(&args);
    let name = unique("obs-pids");
    let mut extra = workload_mounts();
    extra.extend(["--pids-limit", "16"].map(String::from));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (out, _) = run(&image, &name, &extra, &["/workload", "--fork-past", "40"]);
    let rec = obs.stop();
    let counted: Value = serde_json::from_str(out.trim()).expect("the workload's count");
    let eagain = counted["eagain"].as_u64().unwrap();
    assert_eq!(counted["forked"], 15, "16 PIDs, one of them the workload");
    assert_eq!(eagain, 25);
    let refused = enforced(&rec, &name, "pids_limit");
    let total: u64 = refused.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(total, eagain, "{refused:?}");
    assert!(refused.iter().all(|e| e["limit"] == 16), "{refused:?}");
    let e = entries(&rec, &name);
    assert!(e.iter().all(|e| e["limits"]["pids"] == 16), "{e:?}");
    assert!(
        e.iter().any(|e| e["enforced"]["pids_limit"] == eagain),
        "the container's total: {e:?}"
    );
    Some((rec, name, eagain))
}

/// By default, from the pids controller's own counter (`pids.events`): no
/// program on the syscall path, and no task named.
#[test]
fn refused_forks_are_counted_as_the_workload_counted_them() {
    let Some((rec, name, _)) = fork_past_a_pids_limit(&[]) else {
        return;
    };
    let refused = enforced(&rec, &name, "pids_limit");
    assert!(
        refused
            .iter()
            .all(|e| e["pid"].is_null() && e["comm"].is_null()),
        "{refused:?}"
    );
}

/// `--refused-fork-tasks`: the kernel program names the refused task, and
/// the counter is not read as well (the same total, not twice it).
#[test]
fn refused_fork_tasks_name_the_workload() {
    let Some((rec, name, _)) = fork_past_a_pids_limit(&["--refused-fork-tasks"]) else {
        return;
    };
    let refused = enforced(&rec, &name, "pids_limit");
    assert!(
        refused
            .iter()
            .all(|e| e["comm"] == "workload" && e["pid"].as_u64() > Some(1)),
        "{refused:?}"
    );
}

#[test]
fn a_cpu_quota_throttles_the_spinner_and_not_the_idle_one() {
    let Some(image) = docker_image() else { return };
    let obs = Observer::start(&["--interval", "0.5"]);
    let (spin, idle) = (unique("obs-spin"), unique("obs-idle"));
    let mut extra = workload_mounts();
    extra.extend(["--cpus", "0.2"].map(String::from));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let idle_run = {
        let (image, idle) = (image.clone(), idle.clone());
        std::thread::spawn(move || run(&image, &idle, &[], &["sleep", "2"]))
    };
    run(&image, &spin, &extra, &["/workload", "--spin-seconds", "2"]);
    idle_run.join().unwrap();
    let rec = obs.stop();
    let throttled: u64 = enforced(&rec, &spin, "cpu_throttled")
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert!(throttled > 0, "the --cpus 0.2 spinner was throttled");
    assert!(enforced(&rec, &spin, "cpu_throttled")
        .iter()
        .all(|e| e["limit"] == 20000));
    let s = entries(&rec, &spin);
    assert!(s
        .iter()
        .all(|e| e["limits"]["cpu_quota_us"] == 20000 && e["limits"]["cpu_period_us"] == 100000));
    assert!(s
        .iter()
        .any(|e| e["usage"]["cpu_throttled_periods"].as_u64() > Some(0)));
    assert!(enforced(&rec, &idle, "cpu_throttled").is_empty());
    let i = entries(&rec, &idle);
    assert!(!i.is_empty());
    assert!(i.iter().all(|e| e["usage"]["cpu_throttled_periods"] == 0
        && e["limits"]["cpu_quota_us"].is_null()
        && e["limits"]["memory_bytes"].is_null()
        && e["limits"]["pids"].is_null()));
}

/// Docker's default capability set (moby `oci/caps/defaults.go`).
const DOCKER_DEFAULT: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

#[test]
fn start_time_and_privilege_of_default_privileged_and_host_pid_containers() {
    let Some(image) = docker_image() else { return };
    let obs = Observer::start(&["--interval", "0.5"]);
    let (plain, privd, hostpid) = (unique("obs-plain"), unique("obs-priv"), unique("obs-hpid"));
    let (_, wall_ms) = run(&image, &plain, &[], &["true"]);
    // Docker refuses --privileged where the host's root lacks a capability
    // (CAP_SYS_RESOURCE here): then every capability it can grant.
    let privileged_runs = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--name",
            &privd,
            "--privileged",
            &image,
            "true",
        ])
        .output()
        .expect("run docker");
    let refused = String::from_utf8_lossy(&privileged_runs.stderr).contains("unable to apply caps");
    if refused {
        eprintln!("Docker refuses --privileged on this host (its root lacks a capability): checking --cap-add ALL instead");
        run(
            &image,
            &privd,
            &["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE"],
            &["true"],
        );
    } else {
        assert!(privileged_runs.status.success(), "{privileged_runs:?}");
    }
    run(&image, &hostpid, &["--pid", "host"], &["true"]);
    let rec = obs.stop();

    let start = rec
        .of_type("container")
        .find(|c| c["event"] == "start" && c["container"]["name"] == plain.as_str())
        .expect("a start record");
    let ms = start["start_ms"].as_f64().expect("start_ms");
    assert!(
        ms > 0.0 && ms < wall_ms,
        "start_ms {ms} vs docker run {wall_ms} ms"
    );
    assert!(start["runtime_setup_syscalls"].as_u64() > Some(0));

    let privilege = |name: &str| -> Value {
        entries(&rec, name)
            .into_iter()
            .find(|e| !e["privilege"].is_null())
            .unwrap_or_else(|| panic!("a privilege for {name}"))["privilege"]
            .clone()
    };
    let p = privilege(&plain);
    let caps: Vec<&str> = p["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let mut sorted = caps.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, DOCKER_DEFAULT);
    assert_eq!(p["privileged"], false);
    assert_eq!(p["seccomp"], "filter");
    assert_eq!(p["host_namespaces"], serde_json::json!([]));
    let p = privilege(&privd);
    assert_eq!(p["privileged"], !refused);
    assert!(p["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "CAP_SYS_ADMIN"));
    if !refused {
        assert_eq!(p["seccomp"], "disabled");
    }
    let p = privilege(&hostpid);
    assert!(p["host_namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "pid"));
    assert!(named(&rec, &plain).is_some());
}
