//! End to end with a real Docker engine: the lesson's two commands, and what
//! the observer shows of them. `cargo xtask test` starts the engine when none
//! runs and builds the image locally (OBSERVER_TEST_IMAGE).

mod common;

use std::{collections::HashSet, time::Duration};

use common::*;
use serde_json::Value;

/// `docker run --rm --network none` with a known name and ID.
fn run_rm(image: &str, name: &str, extra: &[&str], cmd: &[&str]) -> (String, String) {
    let cidfile = std::env::temp_dir().join(format!("{name}.cid"));
    let _ = std::fs::remove_file(&cidfile);
    let cid = cidfile.to_string_lossy().into_owned();
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--name",
        name,
        "--cidfile",
        &cid,
    ];
    args.extend_from_slice(extra);
    args.push(image);
    args.extend_from_slice(cmd);
    let out = docker(&args);
    let id = std::fs::read_to_string(&cidfile)
        .expect("docker wrote the cidfile")
        .trim()
        .to_owned();
    let _ = std::fs::remove_file(&cidfile);
    (out, id)
}

fn of_container<'a>(rec: &'a Records, id: &str) -> Vec<&'a Value> {
    rec.lines
        .iter()
        .filter(|l| l["container"]["id"] == id && l["type"] != "summary")
        .collect()
}

#[test]
fn uname_r_in_a_container_prints_the_hosts_kernel_and_is_attributed() {
    let Some(image) = docker_image() else { return };
    let obs = Observer::start(&[]);
    let name = unique("obs-uname");
    let (out, id) = run_rm(&image, &name, &[], &["uname", "-r"]);
    let rec = obs.stop();
    let host_release = observer::kernel_info::KernelInfo::read().release;
    assert_eq!(
        out.trim(),
        host_release,
        "the container prints the host's kernel release"
    );
    assert_eq!(
        rec.kernel()["release"],
        out.trim(),
        "the same release the observer reports"
    );
    let events = of_container(&rec, &id);
    let uname = events
        .iter()
        .find(|e| e["syscall"] == "uname")
        .expect("the container's uname syscall");
    assert_eq!(
        uname["container"]["name"],
        name.as_str(),
        "named as docker ps names it"
    );
    let start = rec
        .of_type("container")
        .find(|c| c["event"] == "start" && c["container"]["id"] == id.as_str())
        .expect("a start record");
    assert_eq!(start["container"]["runtime"], "docker");
    assert_eq!(start["container"]["image"], image.as_str());
    assert_eq!(uname["comm"], "uname");
    let exit = rec
        .of_type("container")
        .find(|c| c["event"] == "exit" && c["container"]["id"] == id.as_str())
        .expect("an exit record");
    assert_eq!(
        exit["container"]["name"],
        name.as_str(),
        "still named after its cgroup is gone"
    );
}

#[test]
fn ps_aux_sees_one_process_which_the_host_knows_by_another_pid() {
    let Some(image) = docker_image() else { return };
    let obs = Observer::start(&[]);
    let name = unique("obs-ps");
    let (out, id) = run_rm(&image, &name, &[], &["ps", "aux"]);
    let rec = obs.stop();
    let procs: Vec<&str> = out
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(procs.len(), 1, "ps inside lists only itself: {out}");
    assert!(
        procs[0].split_whitespace().next() == Some("1"),
        "as PID 1: {out}"
    );
    let host_pidns = rec.kernel()["host_namespaces"]["pidns"].clone();
    let events = of_container(&rec, &id);
    let exec = events
        .iter()
        .find(|e| e["type"] == "exec" && e["comm"] == "ps")
        .expect("the exec of ps");
    assert_eq!(exec["ns_pid"], 1, "PID 1 inside");
    assert_ne!(exec["pid"], 1, "another PID on the host");
    assert_ne!(exec["pidns"], host_pidns, "its own PID namespace");
    let getdents = events
        .iter()
        .filter(|e| e["syscall"] == "getdents64" && e["comm"] == "ps")
        .count();
    assert!(
        getdents > 0,
        "ps reads /proc with getdents64, attributed to the container"
    );
    assert!(events
        .iter()
        .filter(|e| e["comm"] == "ps")
        .all(|e| e["container"]["name"] == name.as_str()));
}

#[test]
fn two_containers_at_once_are_grouped_apart_under_one_kernel() {
    let Some(image) = docker_image() else { return };
    let obs = Observer::start(&["--interval", "0.5"]);
    let names = [unique("obs-a"), unique("obs-b")];
    let ids: Vec<String> = names
        .iter()
        .map(|n| {
            docker(&[
                "run",
                "-d",
                "--rm",
                "--network",
                "none",
                "--name",
                n,
                &image,
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6 7 8 9 10; do cat /proc/uptime >/dev/null; sleep 0.2; done",
            ])
            .trim()
            .to_owned()
        })
        .collect();
    for id in &ids {
        docker(&["wait", id]);
    }
    let rec = obs.stop();
    let mut ns = Vec::new();
    for (id, name) in ids.iter().zip(&names) {
        let entries: Vec<Value> = rec
            .of_type("summary")
            .flat_map(|s| s["containers"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["container"]["id"] == id.as_str())
            .collect();
        assert!(!entries.is_empty(), "{name} has summary entries");
        assert!(entries
            .iter()
            .all(|e| e["container"]["name"] == name.as_str()));
        let busiest = entries
            .iter()
            .max_by_key(|e| e["total"].as_u64().unwrap_or(0))
            .unwrap();
        // The container's own tasks (the runtime's helpers briefly run in
        // the host's namespaces before entering the container's).
        let exec = of_container(&rec, id)
            .into_iter()
            .find(|e| e["type"] == "exec" && e["comm"] == "sh")
            .cloned()
            .expect("exec of sh");
        assert!(busiest["pidns_seen"]
            .as_array()
            .unwrap()
            .contains(&exec["pidns"]));
        ns.push((
            exec["pidns"].clone(),
            exec["mntns"].clone(),
            exec["utsns"].clone(),
        ));
    }
    assert_ne!(ns[0].0, ns[1].0, "different PID namespaces");
    assert_ne!(ns[0].1, ns[1].1, "different mount namespaces");
    assert_ne!(ns[0].2, ns[1].2, "different UTS namespaces");
    let kernels: HashSet<String> = rec
        .of_type("summary")
        .map(|s| s["kernel"].to_string())
        .collect();
    assert_eq!(kernels.len(), 1, "the same kernel block in every summary");
}

#[test]
fn a_container_started_before_the_observer_is_attributed_and_named() {
    let Some(image) = docker_image() else { return };
    let name = unique("obs-early");
    let id = docker(&[
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "--name",
        &name,
        &image,
        "sh",
        "-c",
        "while true; do cat /proc/loadavg >/dev/null; sleep 0.1; done",
    ])
    .trim()
    .to_owned();
    std::thread::sleep(Duration::from_millis(500));
    let obs = Observer::start(&[]);
    std::thread::sleep(Duration::from_millis(1500));
    let rec = obs.stop();
    docker(&["rm", "-f", &id]);
    let events = of_container(&rec, &id);
    assert!(
        events.iter().any(|e| e["comm"] == "cat"),
        "its activity is seen"
    );
    assert!(
        events
            .iter()
            .all(|e| e["container"]["name"] == name.as_str()),
        "and named"
    );
}

#[test]
fn the_containers_hostname_is_its_own_while_the_release_is_the_hosts() {
    let Some(image) = docker_image() else { return };
    let obs = Observer::start(&[]);
    let name = unique("obs-uts");
    let hostname = unique("inside");
    // `uname -a`: "Linux <nodename> <release> …" in one exec.
    let (out, id) = run_rm(&image, &name, &["--hostname", &hostname], &["uname", "-a"]);
    let rec = obs.stop();
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields[1], hostname, "its own nodename: {out}");
    assert_eq!(
        fields[2],
        rec.kernel()["release"].as_str().unwrap(),
        "the host's release: {out}"
    );
    let execs: Vec<&Value> = of_container(&rec, &id)
        .into_iter()
        .filter(|e| e["type"] == "exec" && e["comm"] == "uname")
        .collect();
    assert_eq!(execs.len(), 1);
    assert!(
        execs.iter().all(|e| e["nodename"] == hostname.as_str()),
        "the container's own hostname on its execs"
    );
    assert_ne!(
        rec.kernel()["hostname"],
        hostname.as_str(),
        "not the host's"
    );
}
