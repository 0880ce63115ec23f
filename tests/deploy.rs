//! The Kubernetes manifests in deploy/kubernetes/: valid against
//! Kubernetes' schemas (offline, with the pinned `kubernetes-validate` that
//! `cargo xtask test` installs), and the least privilege the README claims.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

mod common;

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

/// The validator, or None after saying why (a failure under CI=true).
fn validator() -> Option<PathBuf> {
    match std::env::var_os("OBSERVER_KUBERNETES_VALIDATE") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            observer::privilege::skip_or_fail(
                "no kubernetes-validate: run the suite with `cargo xtask test` (it installs it)",
            );
            None
        }
    }
}

/// Every document of a YAML file, through the validator's own PyYAML.
fn documents(validator: &Path, file: &Path) -> Vec<Value> {
    let python = validator.with_file_name("python");
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(file)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn validate(validator: &Path, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(validator)
        .arg("--strict")
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn manifests_validate_against_kubernetes_schemas() {
    let Some(v) = validator() else { return };
    let files = manifests();
    let kinds: Vec<String> = files
        .iter()
        .flat_map(|f| documents(&v, f))
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    for k in ["DaemonSet", "ServiceAccount", "Service", "Namespace"] {
        assert!(kinds.iter().any(|x| x == k), "a {k} among {kinds:?}");
    }
    let (ok, text) = validate(&v, &files);
    assert!(ok, "kubernetes-validate --strict: {text}");
    assert!(!text.contains("WARN"), "{text}");

    // The validator does reject what Kubernetes would: a field a DaemonSet
    // does not have.
    let broken = std::env::temp_dir().join(format!("observer-broken-{}.yaml", std::process::id()));
    let ds = std::fs::read_to_string(
        files
            .iter()
            .find(|f| f.ends_with("daemonset.yaml"))
            .unwrap(),
    )
    .unwrap()
    .replace("  updateStrategy:", "  replicas: 3\n  updateStrategy:");
    std::fs::write(&broken, ds).unwrap();
    let (ok, text) = validate(&v, std::slice::from_ref(&broken));
    let _ = std::fs::remove_file(&broken);
    assert!(!ok, "a DaemonSet with replicas must not validate: {text}");
}

#[test]
fn the_daemonset_asks_for_the_least_privilege() {
    let Some(v) = validator() else { return };
    let file = manifests()
        .into_iter()
        .find(|f| f.ends_with("daemonset.yaml"))
        .expect("deploy/kubernetes/daemonset.yaml");
    let ds = documents(&v, &file).remove(0);
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(pod["hostNetwork"].is_null(), "the port is the pod's");
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["BPF", "PERFMON"])
    );
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(
        mounts.iter().all(|m| m["readOnly"] == true),
        "read-only mounts"
    );
    let host_paths: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["hostPath"]["path"].as_str().unwrap())
        .collect();
    for p in [
        "/sys/kernel/btf",
        "/sys/fs/cgroup",
        "/run/containerd/containerd.sock",
    ] {
        assert!(host_paths.contains(&p), "{p} in {host_paths:?}");
    }
    let env = c["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "NODE_NAME"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/metrics");
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][k][r].is_string(), "resources.{k}.{r}");
        }
    }
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // The arguments parse as the observer's own command line.
    use clap::Parser;
    let cli =
        observer::cli::Cli::try_parse_from(std::iter::once("observer").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("the DaemonSet's args: {e}"));
    assert_eq!(cli.watch.mode, observer::cli::Mode::Count);
    assert_eq!(
        cli.watch.metrics.map(|a| a.port()),
        c["ports"][0]["containerPort"].as_u64().map(|p| p as u16)
    );
}

/// A Podman container removed on drop, on every path.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", &self.0]).output();
    }
}

/// Podman 4.3 on a hybrid-cgroup host: runc, cgroupfs, explicit limits.
fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    c
}

fn podman_out(args: &[&str]) -> String {
    let out = podman().args(args).output().expect("run podman");
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `GET /metrics` on the container's own loopback, from inside its network
/// namespace (a pod's port is the pod's: nothing is published on the host).
fn scrape_in_netns(pid: u32, port: u16) -> Option<String> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).ok()?;
    std::thread::spawn(move || {
        use std::{
            io::{Read, Write},
            os::fd::AsRawFd,
        };
        // setns(2) moves only this thread.
        // SAFETY: a valid namespace fd; this thread does nothing else.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        // HTTP/1.0 or 1.1, as the server answers a 1.0 request.
        let (head, body) = resp.split_once("\r\n\r\n")?;
        (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_owned())
    })
    .join()
    .ok()
    .flatten()
}

/// The DaemonSet's pod spec, for real: its image with exactly its
/// capabilities, mounts, host PID namespace, user, seccomp profile and
/// environment (the downward API's NODE_NAME given a test value) reports a
/// Docker workload container's exact getppid count at /metrics. The pod runs
/// under Podman: Docker 20.10 rejects `--cap-add BPF` ("unknown capability:
/// CAP_BPF"); Podman runs the same OCI spec with it.
#[test]
fn the_daemonset_pod_spec_runs_for_real() {
    let Some(v) = validator() else { return };
    if !observer::privilege::can_trace() {
        observer::privilege::skip_or_fail("needs root to run the pod spec under Docker");
        return;
    }
    let (Ok(image), Ok(busybox), Ok(workload)) = (
        std::env::var("OBSERVER_IMAGE"),
        std::env::var("OBSERVER_TEST_IMAGE"),
        std::env::var("OBSERVER_STATIC_WORKLOAD"),
    ) else {
        observer::privilege::skip_or_fail(
            "no observer image, test image or static workload: run `cargo xtask test`",
        );
        return;
    };
    let file = manifests()
        .into_iter()
        .find(|f| f.ends_with("daemonset.yaml"))
        .unwrap();
    let ds = documents(&v, &file).remove(0);
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        image, c["image"],
        "xtask builds the image the DaemonSet runs"
    );
    let sc = &c["securityContext"];
    if Command::new("podman").arg("--version").output().is_err() {
        observer::privilege::skip_or_fail("no podman to run the pod spec with CAP_BPF");
        return;
    }
    let name = format!("fleet-ds-{}", std::process::id());
    let _ = podman().args(["rm", "-f", &name]).output();
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--ulimit".into(),
        "nofile=20000:20000".into(),
        "--ulimit".into(),
        "nproc=32768:32768".into(),
        "--name".into(),
        name.clone(),
        // The pod's own network namespace; nothing published.
        "--network".into(),
        "none".into(),
        "--user".into(),
        sc["runAsUser"].to_string(),
        "--cap-drop".into(),
        "ALL".into(),
    ];
    assert_eq!(pod["hostPID"], true);
    args.extend(["--pid".into(), "host".into()]);
    for cap in sc["capabilities"]["add"].as_array().unwrap() {
        args.extend(["--cap-add".into(), cap.as_str().unwrap().into()]);
    }
    if sc["readOnlyRootFilesystem"] == true {
        args.push("--read-only".into());
    }
    if sc["allowPrivilegeEscalation"] == false {
        args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    match sc["seccompProfile"]["type"].as_str() {
        Some("Unconfined") => args.extend(["--security-opt".into(), "seccomp=unconfined".into()]),
        // The engine's default profile.
        Some("RuntimeDefault") => {}
        other => panic!("a seccomp profile the test does not map: {other:?}"),
    }
    for m in c["volumeMounts"].as_array().unwrap() {
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        let host = vol["hostPath"]["path"].as_str().unwrap();
        if vol["hostPath"]["type"] == "Socket" && !Path::new(host).exists() {
            // A node without containerd running (a CI machine where Docker
            // manages its own): names then come from elsewhere.
            eprintln!("no {host} on this host: that mount is left out");
            continue;
        }
        let ro = if m["readOnly"] == true { ":ro" } else { "" };
        args.extend([
            "-v".into(),
            format!("{host}:{}{ro}", m["mountPath"].as_str().unwrap()),
        ]);
    }
    for e in c["env"].as_array().unwrap() {
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("spec.nodeName") => "fleet-test-node".to_owned(),
            Some(other) => panic!("a downward API field the test does not give: {other}"),
            None => e["value"].as_str().unwrap().to_owned(),
        };
        args.extend([
            "-e".into(),
            format!("{}={value}", e["name"].as_str().unwrap()),
        ]);
    }
    args.push(format!("localhost/{image}"));
    args.extend(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned()),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let observer_ctr = Container(podman_out(&refs));
    let port = c["ports"][0]["containerPort"].as_u64().unwrap() as u16;
    let pid: u32 = podman_out(&["inspect", "-f", "{{.State.Pid}}", &name])
        .parse()
        .unwrap();
    let logs = || {
        let out = podman().args(["logs", &observer_ctr.0]).output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The readiness probe's view: /metrics answers once programs are attached.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while scrape_in_netns(pid, port).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pod never became ready: {}",
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The reference: an observer on the host, streaming every event. The
    // container's count includes its runtime's own calls (runc's init calls
    // getppid too), so the pod's counter must equal what the stream shows
    // for the container, of which exactly 1000 are the workload's.
    let reference = common::Observer::start(&[]);
    // A workload container making exactly 1000 getppid calls.
    let cidfile = std::env::temp_dir().join(format!("{name}-wl.cid"));
    let _ = std::fs::remove_file(&cidfile);
    common::docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cidfile",
        &cidfile.to_string_lossy(),
        "-v",
        &format!("{workload}:/observer-workload:ro"),
        &busybox,
        "/observer-workload",
        "--calls",
        "1000",
    ]);
    let cid = std::fs::read_to_string(&cidfile).unwrap().trim().to_owned();
    let _ = std::fs::remove_file(&cidfile);
    let want = format!("container_id=\"{cid}\"");
    let stream = |path: &Path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut all = 0u64;
        let mut workload = 0u64;
        for l in text
            .lines()
            .filter(|l| l.contains("getppid") && l.contains(&cid))
        {
            let Ok(v) = serde_json::from_str::<Value>(l) else {
                continue;
            };
            if v["type"] == "syscall"
                && v["syscall"] == "getppid"
                && v["container"]["id"] == cid.as_str()
            {
                all += 1;
                workload += u64::from(v["comm"] == "observer-worklo");
            }
        }
        (all, workload)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (line, all) = loop {
        let text = scrape_in_netns(pid, port).unwrap_or_default();
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("observer_syscalls_total{")
                    && l.contains(&want)
                    && l.contains("syscall=\"getppid\"")
            })
            .map(str::to_owned);
        let (all, workload) = stream(&reference.out);
        if let Some(l) = line.filter(|l| workload == 1000 && l.ends_with(&format!(" {all}"))) {
            break (l, all);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exact count for {cid} at /metrics (the stream: {all} getppid, {workload} of them the workload's):\n{text}\n{}",
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    drop(reference);
    eprintln!("the stream: {all} getppid in the container, 1000 of them the workload's");
    assert!(line.contains("node=\"fleet-test-node\""), "{line}");
    assert!(line.contains("runtime=\"docker\""), "{line}");
    eprintln!("the pod spec under Podman: {line}");
}
