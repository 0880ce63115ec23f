//! `observer demo`: the workshop lesson in one command. Runs the two lesson
//! commands in containers while the observer watches, then prints a verdict
//! for the room: what each container saw of itself, what the host saw of
//! it, and the one kernel that served them all.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::Path,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::process::Command;

use crate::{
    cli::{DemoArgs, Format, Mode, WatchArgs},
    kernel_info::{virtualization, Virtualization},
};

/// One lesson command and what it printed.
#[derive(Clone, Debug)]
pub struct Ran {
    pub label: String,
    pub shown: String,
    pub output: String,
    /// Docker: the container name; unshare: the hostname it set.
    pub key: String,
}

async fn sh(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().await.ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn engine_answers() -> bool {
    sh(Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]))
        .await
        .is_some()
}

/// alpine when the engine has it or can pull it, else the fallback image.
async fn pick_image(args: &DemoArgs) -> Result<(String, Option<String>)> {
    if let Some(i) = &args.image {
        return Ok((i.clone(), None));
    }
    if sh(Command::new("docker").args(["image", "inspect", "alpine"]))
        .await
        .is_some()
    {
        return Ok(("alpine".into(), None));
    }
    let pulled = tokio::time::timeout(
        Duration::from_secs(30),
        sh(Command::new("docker").args(["pull", "-q", "alpine"])),
    )
    .await
    .ok()
    .flatten()
    .is_some();
    if pulled {
        return Ok(("alpine".into(), None));
    }
    let local = match &args.fallback_image {
        Some(f) => Some(f.clone()),
        None => local_image().await,
    };
    Ok(match local {
        Some(f) => (f.clone(), Some(format!("alpine is not available here (no registry reachable): using the locally built image {f}, busybox like alpine's"))),
        None => (String::new(), Some(
            "alpine is not available here (no registry reachable) and no local image could be found or built \
             (that needs a static busybox: sudo apt-get install busybox-static): making the point with namespaces made by unshare instead".to_owned())),
    })
}

/// The image `cargo xtask demo` builds: busybox and its applets, imported
/// from a rootfs (nothing pulled).
pub const LOCAL_IMAGE: &str = "observer-test/busybox:latest";

/// The local image: found in the engine, or built here from a static busybox
/// as `cargo xtask demo` builds it. None when neither works.
async fn local_image() -> Option<String> {
    if sh(Command::new("docker").args(["image", "inspect", LOCAL_IMAGE]))
        .await
        .is_some()
    {
        return Some(LOCAL_IMAGE.into());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let dir = std::env::temp_dir().join(format!("observer-demo-rootfs-{}", std::process::id()));
    let built = build_image(busybox, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    match built {
        Ok(()) => Some(LOCAL_IMAGE.into()),
        Err(e) => {
            eprintln!("note: could not build {LOCAL_IMAGE} from {busybox}: {e:#}");
            None
        }
    }
}

async fn build_image(busybox: &str, dir: &Path) -> Result<()> {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).context("make the image's rootfs")?;
    }
    std::fs::copy(busybox, root.join("bin/busybox")).context("copy busybox")?;
    let list = sh(Command::new(busybox).arg("--list"))
        .await
        .context("busybox --list")?;
    if sh(Command::new(root.join("bin/busybox")).arg("true"))
        .await
        .is_none()
    {
        bail!("{busybox} does not run on its own (not statically linked?)");
    }
    for a in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    let tar = dir.join("rootfs.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."))
    .await
    .context("tar the rootfs")?;
    sh(Command::new("docker")
        .args([
            "import",
            "--change",
            "CMD [\"/bin/sh\"]",
            "--change",
            "ENV PATH=/bin",
        ])
        .arg(&tar)
        .arg(LOCAL_IMAGE))
    .await
    .context("docker import")?;
    Ok(())
}

/// A stream file name nobody has used yet in the current directory.
fn fresh_stream_file() -> std::path::PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (0..)
        .map(|n| {
            std::path::PathBuf::from(if n == 0 {
                format!("observer-demo-{secs}.jsonl")
            } else {
                format!("observer-demo-{secs}-{n}.jsonl")
            })
        })
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .expect("an unused name")
}

/// Waits until the observer has attached (its first record is written
/// after its programs are attached), or has stopped.
async fn attached<T>(stream: &Path, observer: &tokio::task::JoinHandle<T>) -> Result<()> {
    for _ in 0..300 {
        if observer.is_finished() {
            bail!("the observer stopped");
        }
        if tokio::fs::read_to_string(stream)
            .await
            .is_ok_and(|s| s.contains("\"type\":\"kernel\""))
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the observer did not start within 15 s")
}

pub async fn run(args: DemoArgs, mut watch: WatchArgs) -> Result<()> {
    let docker = !args.unshare && engine_answers().await;
    let mut notes = Vec::new();
    if !args.unshare && !docker {
        notes.push(
            "Docker is not running here: install and start it with `sudo apt-get install docker.io && sudo dockerd --iptables=false --bridge=none &` \
             (or run `cargo xtask demo`, which does). Meanwhile the same point is made with namespaces made by unshare."
                .to_owned(),
        );
    }
    let image = if docker {
        let (image, note) = pick_image(&args).await?;
        notes.extend(note);
        Some(image).filter(|i| !i.is_empty())
    } else {
        None
    };
    for n in &notes {
        println!("note: {n}\n");
    }
    // Notes that arise while the commands run are printed before the verdict.
    let printed_notes = notes.len();
    let stream = args.stream_file.clone().unwrap_or_else(fresh_stream_file);
    watch.output = Some(stream.clone());
    watch.format = Format::Json;
    watch.mode = Mode::Stream;
    watch.summary_only = false;
    // Namespaces made by unshare live in the host's cgroups.
    watch.host = image.is_none();
    let _ = std::fs::remove_file(&stream);
    // The VM half (and the same workload in a container), when asked for.
    let mut vm = if args.vm && !args.no_vm {
        Some(crate::vm::lesson::DemoVm::new(&args)?)
    } else {
        None
    };
    watch
        .host_cgroups
        .extend(vm.as_ref().and_then(|v| v.host_cgroup()));
    // Where the VM may run under KVM, its exits are what the host kernel
    // sees of it: counted per VMM process.
    watch.kvm_exits |= vm.as_ref().is_some_and(|v| v.host_cgroup().is_some())
        && args.accel != crate::vm::qemu::Accel::Tcg
        && std::path::Path::new("/dev/kvm").exists();

    // With --web the page outlives the verdict: the room keeps watching
    // until Ctrl-C.
    let web = watch.web;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let observer = tokio::spawn(crate::daemon::run_until(watch, async {
        let _ = stop_rx.await;
    }));
    let ready = attached(&stream, &observer).await;
    if ready.is_err() || observer.is_finished() {
        let err = observer.await.context("the observer task")?.err();
        bail!(
            "start the observer: {}",
            err.map(|e| format!("{e:#}"))
                .unwrap_or_else(|| "it did not attach".into())
        );
    }

    let tag = std::process::id();
    let lesson: [(&str, &[&str]); 2] = [("uname", &["uname", "-r"]), ("ps", &["ps", "aux"])];
    let mut ran = Vec::new();
    for (label, cmd) in lesson {
        let (shown, mut c, key) = match &image {
            Some(image) => {
                let name = format!("observer-demo-{label}-{tag}");
                let shown = format!("docker run --rm {image} {}", cmd.join(" "));
                let mut c = Command::new("docker");
                c.args(["run", "--rm", "--network", "none", "--name", &name, image])
                    .args(cmd);
                (shown, c, name)
            }
            None => {
                let host = format!("demo-{label}");
                let script = format!("hostname {host}; exec {}", cmd.join(" "));
                let shown = format!("unshare --pid --fork --mount-proc --uts sh -c '{script}'");
                let mut c = Command::new("unshare");
                c.args([
                    "--pid",
                    "--fork",
                    "--mount-proc",
                    "--uts",
                    "sh",
                    "-c",
                    &script,
                ]);
                (shown, c, host)
            }
        };
        let out = c.output().await.with_context(|| format!("run `{shown}`"))?;
        if !out.status.success() {
            let _ = stop_tx.send(());
            bail!(
                "`{shown}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        ran.push(Ran {
            label: label.into(),
            shown,
            output: String::from_utf8_lossy(&out.stdout).into_owned(),
            key,
        });
    }
    // The other claims: limits the one kernel enforces, and privilege.
    let mut claims = Vec::new();
    if let Some(image) = &image {
        let runs: Vec<_> = CLAIMS
            .iter()
            .map(|(label, flags, cmd)| {
                let name = format!("observer-demo-{label}-{tag}");
                let shown = format!(
                    "docker run --rm {} {image} {}",
                    flags.join(" "),
                    cmd.join(" ")
                );
                let mut c = Command::new("docker");
                c.args(["run", "--rm", "--network", "none", "--name", &name])
                    .args(*flags)
                    .arg(image)
                    .args(*cmd)
                    .kill_on_drop(true);
                (label.to_string(), shown, name, c)
            })
            .collect();
        let fallback = format!("observer-demo-privileged-{tag}");
        // At once: the whole demo stays within a few seconds.
        let outs = futures_join(
            runs.into_iter()
                .map(|(label, shown, name, mut c)| async move {
                    let out = tokio::time::timeout(Duration::from_secs(20), c.output()).await;
                    let status = match &out {
                        Ok(Ok(o)) => o
                            .status
                            .code()
                            .map_or("killed".into(), |c| format!("exit {c}")),
                        Ok(Err(e)) => format!("failed: {e}"),
                        Err(_) => "timed out".into(),
                    };
                    let err = match &out {
                        Ok(Ok(o)) => String::from_utf8_lossy(&o.stderr).into_owned(),
                        _ => String::new(),
                    };
                    (
                        Ran {
                            label,
                            shown,
                            output: status,
                            key: name,
                        },
                        err,
                    )
                }),
        )
        .await;
        for (mut r, err) in outs {
            if r.key == fallback && err.contains("unable to apply caps") {
                notes.push("Docker refused --privileged here: the host's own root lacks a capability (CAP_SYS_RESOURCE), so it can't hand all of them on; the demo asks for every capability Docker can grant instead.".into());
                let out = Command::new("docker")
                    .args(["run", "--rm", "--network", "none", "--name", &r.key])
                    .args(PRIVILEGED_FALLBACK)
                    .args([image.as_str(), "true"])
                    .kill_on_drop(true)
                    .output()
                    .await;
                r.shown = format!(
                    "docker run --rm {} {image} true",
                    PRIVILEGED_FALLBACK.join(" ")
                );
                r.output = match out {
                    Ok(o) => o
                        .status
                        .code()
                        .map_or("killed".into(), |c| format!("exit {c}")),
                    Err(e) => format!("failed: {e}"),
                };
            }
            claims.push(r);
        }
    }
    if let Some(vm) = &mut vm {
        crate::web::publish_vm(serde_json::json!({"type": "vm", "state": "booting"}));
        if let Err(e) = vm.run_container(image.as_deref()).await {
            notes.push(format!("{e:#}"));
        }
        if let Err(e) = vm.run_vm().await {
            let _ = stop_tx.send(());
            let _ = observer.await;
            return Err(e);
        }
    }
    // Late records (exits, cgroup removal) and the last summary. The
    // observer writes each record out as it handles it: with --web it keeps
    // running, and the verdict reads what the stream holds by now.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let serving = match web {
        None => {
            let _ = stop_tx.send(());
            observer.await.context("the observer task")??;
            None
        }
        Some(addr) => Some((addr, stop_tx, observer)),
    };

    let read = |stream: &Path| -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(stream)
            .with_context(|| format!("read {}", stream.display()))?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    };
    let mut records = read(&stream)?;
    for n in &notes[printed_notes..] {
        println!("note: {n}\n");
    }
    let verdict = verdict(&records, &ran, image.is_some(), &virtualization());
    print!("{verdict}");
    let mut extra = Vec::new();
    if let Some(vm) = &vm {
        let (records, table) = vm.verdict(&records);
        // The page shows the VM beside the containers: its record, or
        // why it could not run.
        let shown = match records.iter().find(|r| r["type"] == "vm") {
            Some(v) => {
                let mut v = v.clone();
                v["state"] = "reported".into();
                v
            }
            None => serde_json::json!({
                "type": "vm",
                "state": "failed",
                "error": vm.error.clone().unwrap_or_default(),
            }),
        };
        crate::web::publish_vm(shown);
        extra = records;
        println!(
            "\nThe same workload ({} getppid calls) in a container and as a VM's /init, side by side:\n",
            args.calls
        );
        print!("{table}");
    }
    if !claims.is_empty() {
        print!("{}", claims_verdict(&records, &claims));
    }
    if let Some((addr, stop_tx, observer)) = serving {
        println!(
            "\nThe page stays live at http://{addr}/ for the room (run more containers: they appear); Ctrl-C stops it."
        );
        // The observer stops on Ctrl-C (or SIGTERM) by itself; `stop_tx`
        // lives until then, as its dropping would stop it.
        let r = observer.await.context("the observer task")?;
        drop(stop_tx);
        r?;
        records = read(&stream)?;
    }
    // The demo's own records go last, once nothing else writes the stream.
    append_records(&stream, &extra)?;
    let path = std::fs::canonicalize(&stream).unwrap_or(stream);
    println!(
        "\nThe full JSON stream ({} records) is in {}",
        records.len() + extra.len(),
        path.display()
    );
    Ok(())
}

/// Appends records (the demo's own) to the stream file.
fn append_records(stream: &Path, records: &[Value]) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(stream)
        .with_context(|| format!("append to {}", stream.display()))?;
    for r in records {
        writeln!(f, "{r}").with_context(|| format!("append to {}", stream.display()))?;
    }
    Ok(())
}

/// The four claim containers: (label, docker flags, command). Busybox only,
/// so that any image with a shell does.
const CLAIMS: [(&str, &[&str], &[&str]); 4] = [
    (
        "oom",
        &["--memory", "32m", "--memory-swap", "32m"],
        &["sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"],
    ),
    (
        "pids",
        &["--pids-limit", "16"],
        &["sh", "-c", "for i in $(seq 30); do sleep 2 & done; wait"],
    ),
    (
        "cpu",
        &["--cpus", "0.2"],
        // Not as PID 1, which ignores the signal from inside.
        &[
            "sh",
            "-c",
            "timeout -s KILL 3 sh -c 'while :; do :; done'; true",
        ],
    ),
    ("privileged", &["--privileged"], &["true"]),
];

/// Where the host's root lacks a capability, Docker refuses `--privileged`
/// ("unable to apply caps"): the closest it allows instead.
const PRIVILEGED_FALLBACK: &[&str] = &["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE"];

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join<T: Send + 'static, F: std::future::Future<Output = T> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(r) = h.await {
            out.push(r);
        }
    }
    out
}

/// The last value of a summary field for a container (by name).
fn last_entry(records: &[Value], name: &str) -> Value {
    records
        .iter()
        .filter(|r| r["type"] == "summary")
        .flat_map(|r| r["containers"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["container"]["name"] == name)
        .fold(Value::Null, |acc, e| {
            if acc.is_null() || !e["privilege"].is_null() || !e["limits"].is_null() {
                e
            } else {
                acc
            }
        })
}

fn opt(v: &Value, unit: &str) -> String {
    match v.as_u64() {
        Some(n) if unit == "MiB" => format!("{} MiB", n >> 20),
        Some(n) => format!("{n}{unit}"),
        None => "none".into(),
    }
}

/// The second screen: what the kernel enforced, how fast each container
/// started, and who may reach the shared kernel.
pub fn claims_verdict(records: &[Value], ran: &[Ran]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nThe same kernel enforces every container's limits (cgroups), measured live:"
    );
    for r in ran {
        let e = last_entry(records, &r.key);
        let count = |kind: &str| -> u64 {
            records
                .iter()
                .filter(|x| {
                    x["type"] == "enforced"
                        && x["kind"] == kind
                        && x["container"]["name"] == r.key.as_str()
                })
                .filter_map(|x| x["count"].as_u64())
                .sum()
        };
        let start = records
            .iter()
            .find(|x| {
                x["type"] == "container"
                    && x["event"] == "start"
                    && x["container"]["name"] == r.key.as_str()
            })
            .and_then(|x| x["start_ms"].as_f64());
        let _ = writeln!(o, "\n  $ {}   ({})", r.shown, r.output);
        let _ = writeln!(
            o,
            "    started in          {}",
            start.map_or("?".into(), |ms| format!(
                "{ms:.1} ms from its cgroup to its own command: a process start, no boot"
            ))
        );
        let l = &e["limits"];
        let _ = writeln!(
            o,
            "    limits              memory {}, pids {}, cpu {}",
            opt(&l["memory_bytes"], "MiB"),
            opt(&l["pids"], ""),
            match (l["cpu_quota_us"].as_u64(), l["cpu_period_us"].as_u64()) {
                (Some(q), Some(p)) if p > 0 =>
                    format!("{:.2} CPU ({q} us per {p} us)", q as f64 / p as f64),
                _ => "none".into(),
            }
        );
        let (oom, pids, cpu) = (
            count("oom_kill"),
            count("pids_limit"),
            count("cpu_throttled"),
        );
        let mut said = Vec::new();
        if oom > 0 {
            said.push(format!("OOM-killed {oom} process(es) at the memory limit"));
        }
        if pids > 0 {
            said.push(format!("refused {pids} fork(s) at the pids limit"));
        }
        if cpu > 0 {
            said.push(format!("throttled it in {cpu} CPU period(s)"));
        }
        let _ = writeln!(
            o,
            "    the kernel          {}",
            if said.is_empty() {
                "had nothing to enforce".to_owned()
            } else {
                said.join("; ")
            }
        );
        let p = &e["privilege"];
        if !p.is_null() {
            let caps = p["capabilities"].as_array().map_or(0, Vec::len);
            let _ = writeln!(
                o,
                "    privilege           {} capabilities{}, seccomp {}",
                caps,
                if p["privileged"] == true {
                    " (all: privileged)"
                } else {
                    ""
                },
                p["seccomp"].as_str().unwrap_or("?")
            );
            let risky_caps: Vec<&str> = crate::claims::RISKY_CAPS
                .iter()
                .copied()
                .filter(|c| {
                    p["capabilities"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == c))
                })
                .collect();
            let host_ns: Vec<&str> = p["host_namespaces"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .filter(|n| crate::claims::RISKY_NAMESPACES.contains(n))
                        .collect()
                })
                .unwrap_or_default();
            if !risky_caps.is_empty() {
                let _ = writeln!(o, "    RISK                holds {}: it can reach the kernel every other container shares", risky_caps.join(", "));
            }
            if !host_ns.is_empty() {
                let _ = writeln!(
                    o,
                    "    RISK                shares the host's {} namespace: it can reach the host",
                    host_ns.join(" and ")
                );
            }
        }
    }
    o
}

/// What the room sees about one container, from the observer's records.
#[derive(Debug, Default, PartialEq)]
pub struct Seen {
    pub hostname: Option<String>,
    pub ns_pids: BTreeSet<u64>,
    pub host_pids: BTreeSet<u64>,
    pub namespaces: BTreeMap<&'static str, u64>,
    pub syscalls: BTreeMap<String, u64>,
    pub total: u64,
    /// Of `total`: made by the runtime while it set the container up
    /// (`runc:[2:INIT]` is the container's PID 1 until it execs).
    pub setup: u64,
    /// The commands that made the setup's syscalls (`runc:[2:INIT]`, or
    /// `unshare`, `sh`, `hostname`).
    pub setup_comms: BTreeSet<String>,
    pub id: Option<String>,
}

const NS: [&str; 4] = ["pidns", "mntns", "utsns", "netns"];

/// Gathers one container's records: by container name (Docker) or by the
/// hostname its namespace set (unshare). Syscalls made under another name
/// than `command`'s are the setup: the runtime (`runc:[2:INIT]` is the
/// container's PID 1 until it execs), or `unshare`, `sh` and `hostname`.
pub fn seen(records: &[Value], key: &str, command: &str, docker: bool) -> Seen {
    let mut s = Seen::default();
    // Its own tasks: in its own PID namespace (the runtime's helpers start
    // in the host's before they enter the container's).
    let own_pidns: Option<u64> = records
        .iter()
        .filter(|r| {
            r["type"] == "exec"
                && if docker {
                    r["container"]["name"] == key
                } else {
                    r["nodename"] == key
                }
        })
        .filter_map(|r| r["pidns"].as_u64())
        .next_back();
    for r in records {
        let ours = if docker {
            r["container"]["name"] == key
        } else {
            own_pidns.is_some() && r["pidns"].as_u64() == own_pidns
        };
        if !ours || r["type"] == "container" || r["type"] == "summary" {
            continue;
        }
        if s.id.is_none() {
            s.id = r["container"]["id"].as_str().map(str::to_owned);
        }
        if r["pidns"].as_u64() != own_pidns {
            continue;
        }
        if r["type"] == "exec" {
            s.hostname = r["nodename"].as_str().map(str::to_owned);
        }
        s.ns_pids.extend(r["ns_pid"].as_u64());
        s.host_pids.extend(r["pid"].as_u64());
        for k in NS {
            if let Some(v) = r[k].as_u64() {
                s.namespaces.insert(k, v);
            }
        }
        if r["type"] == "syscall" {
            s.total += 1;
            let comm = r["comm"].as_str().unwrap_or("?");
            if comm != command {
                s.setup += 1;
                s.setup_comms.insert(comm.to_owned());
            } else if let Some(name) = r["syscall"].as_str() {
                *s.syscalls.entry(name.to_owned()).or_default() += 1;
            }
        }
    }
    s
}

/// The verdict printed for the room.
pub fn verdict(records: &[Value], ran: &[Ran], docker: bool, vm: &Virtualization) -> String {
    let mut o = String::new();
    let kernel = records
        .iter()
        .find(|r| r["type"] == "kernel")
        .cloned()
        .unwrap_or(Value::Null);
    let release = kernel["release"].as_str().unwrap_or("?");
    let host = &kernel["host_namespaces"];
    let _ = writeln!(o, "What the containers printed:");
    for r in ran {
        let _ = writeln!(o, "  $ {}", r.shown);
        for l in r.output.lines() {
            let _ = writeln!(o, "    {l}");
        }
    }
    let _ = writeln!(o, "\nWhat the observer saw, in the one kernel:");
    for r in ran {
        let s = seen(records, &r.key, &r.label, docker);
        let title = if docker {
            format!("container {}", r.key)
        } else {
            format!("namespaces with hostname {}", r.key)
        };
        let _ = writeln!(o, "\n  {title} (`{}`)", r.label);
        if let Some(id) = &s.id {
            let _ = writeln!(o, "    container ID        {}", &id[..id.len().min(12)]);
        }
        let _ = writeln!(
            o,
            "    hostname inside     {} (the host is {})",
            s.hostname.as_deref().unwrap_or("?"),
            kernel["hostname"].as_str().unwrap_or("?")
        );
        let join = |v: &BTreeSet<u64>| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        let _ = writeln!(o, "    PIDs it sees        {}", join(&s.ns_pids));
        let _ = writeln!(o, "    the same, on host   {}", join(&s.host_pids));
        let (own, shared): (Vec<&str>, Vec<&str>) = NS.iter().partition(|k| {
            s.namespaces
                .get(*k)
                .is_some_and(|v| Some(*v) != host[**k].as_u64())
        });
        let names = |v: &[&str]| {
            v.iter()
                .map(|k| k.trim_end_matches("ns"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            o,
            "    own namespaces      {}{}",
            names(&own),
            if shared.is_empty() {
                String::new()
            } else {
                format!(" (shares the host's {})", names(&shared))
            }
        );
        let mut top: Vec<(&String, &u64)> = s.syscalls.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top = top
            .iter()
            .take(6)
            .map(|(n, c)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            o,
            "    syscalls            {} in all: {} by {} setting it up, {} by `{}` itself",
            s.total,
            s.setup,
            if docker {
                "the runtime".to_owned()
            } else {
                let comms: Vec<String> = s.setup_comms.iter().map(|c| format!("`{c}`")).collect();
                if comms.is_empty() {
                    "the setup".to_owned()
                } else {
                    comms.join(", ")
                }
            },
            s.total - s.setup,
            r.label
        );
        let _ = writeln!(o, "    its own, top        {top}");
        if r.label == "uname" {
            let answered = s.syscalls.get("uname").copied().unwrap_or(0);
            let _ = writeln!(o, "    its uname           {answered} call(s), answered by the host kernel: it printed {}", r.output.trim());
        }
    }
    let _ = writeln!(o, "\nOne kernel served them all, and the host:");
    let _ = writeln!(o, "    release             {release}");
    let _ = writeln!(
        o,
        "    version             {}",
        kernel["version"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        o,
        "    boot_id             {}",
        kernel["boot_id"].as_str().unwrap_or("?")
    );
    let printed_same = ran
        .iter()
        .filter(|r| r.label == "uname")
        .all(|r| r.output.trim() == release);
    let _ = writeln!(
        o,
        "    uname -r inside     {}",
        if printed_same {
            "the same release: the container has no kernel of its own"
        } else {
            "DIFFERS from the host's release"
        }
    );
    if vm.virtual_machine {
        let _ = writeln!(
            o,
            "\nThis kernel itself runs in a virtual machine ({}{}). That VM carries its own kernel, booted on a hypervisor;\nthe containers above carry none: they shared this one.",
            vm.hypervisor.as_deref().map(|h| format!("{h}; ")).unwrap_or_default(),
            vm.evidence.join(", ")
        );
    } else {
        let _ = writeln!(o, "\nThis kernel runs on bare metal: no hypervisor under it. A VM would bring its own kernel; the containers above brought none.");
    }
    o
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_verdict_tells_each_containers_view_and_the_shared_kernel() {
        let c = json!({"id": "3f4e8c2a1b0d9e8f", "name": "demo-uname", "runtime": "docker"});
        let records = vec![
            json!({"type": "kernel", "release": "6.18.44", "version": "#1 SMP", "boot_id": "b00t", "hostname": "vm",
                   "host_namespaces": {"pidns": 1, "mntns": 2, "utsns": 3, "netns": 4}}),
            // The runtime's helper, still in the host's PID namespace.
            json!({"type": "syscall", "syscall": "read", "pid": 90, "ns_pid": 90, "pidns": 1, "mntns": 2, "utsns": 3, "netns": 4, "container": c}),
            json!({"type": "exec", "nodename": "3f4e8c2a1b0d", "pid": 100, "ns_pid": 1, "pidns": 11, "mntns": 12, "utsns": 13, "netns": 4, "container": c}),
            json!({"type": "syscall", "syscall": "uname", "comm": "uname", "pid": 100, "ns_pid": 1, "pidns": 11, "mntns": 12, "utsns": 13, "netns": 4, "container": c}),
            json!({"type": "syscall", "syscall": "write", "comm": "uname", "pid": 100, "ns_pid": 1, "pidns": 11, "mntns": 12, "utsns": 13, "netns": 4, "container": c}),
        ];
        let s = seen(&records, "demo-uname", "uname", true);
        assert_eq!(s.ns_pids, BTreeSet::from([1]));
        assert_eq!(
            s.host_pids,
            BTreeSet::from([100]),
            "the helper in the host's pidns is not the container's own"
        );
        assert_eq!(s.total, 2);
        assert_eq!(s.setup, 0);
        let ran = [Ran {
            label: "uname".into(),
            shown: "docker run --rm alpine uname -r".into(),
            output: "6.18.44\n".into(),
            key: "demo-uname".into(),
        }];
        let vm = Virtualization {
            virtual_machine: true,
            evidence: vec!["cpu hypervisor flag".into()],
            hypervisor: None,
        };
        let v = verdict(&records, &ran, true, &vm);
        assert!(
            v.contains("own namespaces      pid mnt uts (shares the host's net)"),
            "{v}"
        );
        assert!(v.contains("release             6.18.44"));
        assert!(v.contains("the same release"));
        assert!(v.contains("1 call(s), answered by the host kernel"));
        assert!(v.contains("virtual machine"));
        assert!(v.contains("hostname inside     3f4e8c2a1b0d (the host is vm)"));
    }

    /// With unshare, what `unshare`, `sh` and `hostname` did in the new
    /// namespaces is the setup, not the command's own.
    #[test]
    fn unshare_setup_is_attributed_to_the_setup() {
        let ns = |comm: &str, ty: &str, sc: &str| {
            json!({"type": ty, "syscall": sc, "comm": comm, "nodename": "demo-uname", "pid": 7, "ns_pid": 1,
                   "pidns": 11, "mntns": 12, "utsns": 13, "netns": 4, "container": null})
        };
        let records = vec![
            json!({"type": "kernel", "release": "6.18.44", "hostname": "vm",
                   "host_namespaces": {"pidns": 1, "mntns": 2, "utsns": 3, "netns": 4}}),
            ns("unshare", "syscall", "mount"),
            ns("sh", "syscall", "execve"),
            ns("hostname", "syscall", "sethostname"),
            ns("uname", "exec", ""),
            ns("uname", "syscall", "uname"),
        ];
        let s = seen(&records, "demo-uname", "uname", false);
        assert_eq!((s.total, s.setup), (4, 3));
        assert_eq!(s.syscalls.keys().collect::<Vec<_>>(), ["uname"]);
        let ran = [Ran {
            label: "uname".into(),
            shown: "unshare … uname -r".into(),
            output: "6.18.44\n".into(),
            key: "demo-uname".into(),
        }];
        let vm = Virtualization {
            virtual_machine: false,
            evidence: vec![],
            hypervisor: None,
        };
        let v = verdict(&records, &ran, false, &vm);
        assert!(
            v.contains(
                "4 in all: 3 by `hostname`, `sh`, `unshare` setting it up, 1 by `uname` itself"
            ),
            "{v}"
        );
    }
}
