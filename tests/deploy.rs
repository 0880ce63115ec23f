//! The Kubernetes manifests in deploy/kubernetes/: valid against
//! Kubernetes' schemas (offline, with the pinned `kubernetes-validate` that
//! `cargo xtask test` installs), and the least privilege the README claims.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

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
