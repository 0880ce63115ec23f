//! Every runtime, for real: Podman, containerd (plain, and with the labels
//! the kubelet's CRI sets, under a kubepods cgroup), systemd-nspawn and LXC
//! run the exact workload inside a rootfs of ours (no registry); the
//! observer must count exactly its calls in that container, name it as the
//! runtime does, keep the runtime's helpers on the host, and report its exit.
//! A container that lives for milliseconds is named in each runtime too.
//! `cargo xtask test` installs the runtimes and starts containerd
//! (OBSERVER_TEST_RUNTIMES, OBSERVER_TEST_CONTAINERD).

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// The workload's comm (15 characters of `observer-workload`): the runtimes'
/// own init processes call getppid too, so its calls are told by its name.
const WORKLOAD_COMM: &str = "observer-worklo";
/// How long the workload stays alive after its calls, so that its helpers
/// can be looked at while the container runs.
const LINGER_MS: &str = "1500";
const IMAGE: &str = "localhost/observer-test/workload:latest";

fn runtimes() -> bool {
    if !privileged() {
        return false;
    }
    if std::env::var_os("OBSERVER_TEST_RUNTIMES").is_none() {
        observer::privilege::skip_or_fail(
            "the container runtimes are not set up: run the suite with `cargo xtask test`",
        );
        return false;
    }
    true
}

fn tag() -> String {
    fake_id()[..10].to_owned()
}

/// Runs a command to its end within `limit`; its stdout, or a panic with
/// its stderr.
fn run(cmd: &mut Command, limit: Duration) -> String {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    finish(child, limit, &what)
}

fn finish(mut child: Child, limit: Duration, what: &str) -> String {
    let status = wait_for(&mut child, limit, what);
    let out = child.wait_with_output().expect("collect output");
    assert!(
        status.success(),
        "{what}: {status}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"))
}

/// The workload's own report, the last JSON line a runtime passed through.
fn report(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no workload report in {stdout:?}"));
    serde_json::from_str(line).expect("workload report")
}

/// A minimal root filesystem: static busybox, the workload and the shared
/// libraries it links (from ldd), a /usr (nspawn wants one).
fn make_rootfs(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
    for d in [
        "bin", "proc", "sys", "dev", "etc", "tmp", "run", "var", "usr/lib", "root",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("static busybox at /bin/busybox");
    for a in ["sh", "true", "cat", "sleep"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
    fs::copy(WORKLOAD, dir.join("bin/observer-workload")).unwrap();
    let ldd = run(Command::new("ldd").arg(WORKLOAD), Duration::from_secs(20));
    for lib in ldd
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(Path::new)
    {
        let to = dir.join(lib.strip_prefix("/").unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(lib, &to).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
    fs::write(dir.join("etc/os-release"), "ID=observer-test\n").unwrap();
}

fn scratch(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("runtimes")
        .join(name)
}

/// The workload image, in Podman's store and as a docker-archive for ctr
/// (built once per run of this test binary).
fn image_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let dir = scratch("image");
        let root = dir.join("rootfs");
        make_rootfs(&root);
        let tar = dir.join("rootfs.tar");
        run(
            Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
            Duration::from_secs(60),
        );
        run(
            Command::new("podman")
                .args(["import", "-q"])
                .arg(&tar)
                .arg(IMAGE),
            Duration::from_secs(120),
        );
        let archive = dir.join("image.tar");
        let _ = fs::remove_file(&archive);
        run(
            Command::new("podman")
                .args(["save", "--format", "docker-archive", "-o"])
                .arg(&archive)
                .arg(IMAGE),
            Duration::from_secs(120),
        );
        archive
    })
}

fn podman() -> Command {
    let mut c = Command::new("podman");
    // crun refuses hybrid cgroup hosts; root may not raise nofile/nproc to
    // Podman's defaults without CAP_SYS_RESOURCE.
    c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    c
}

fn podman_run(name: &str, cidfile: &Path, cmd: &[&str]) -> Command {
    let _ = fs::remove_file(cidfile);
    let mut c = podman();
    c.args(["run", "--rm", "--network", "none"])
        .args([
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
        ])
        .args(["--name", name])
        .arg("--cidfile")
        .arg(cidfile)
        .arg(IMAGE)
        .args(cmd);
    c
}

fn containerd_socket() -> String {
    std::env::var("OBSERVER_TEST_CONTAINERD").expect("set with OBSERVER_TEST_RUNTIMES")
}

fn ctr(namespace: &str) -> Command {
    let mut c = Command::new("ctr");
    c.args(["--address", &containerd_socket(), "--namespace", namespace]);
    c
}

/// The image, in a containerd namespace.
fn ctr_import(namespace: &str) {
    let archive = image_archive();
    run(
        ctr(namespace).args(["images", "import"]).arg(archive),
        Duration::from_secs(120),
    );
}

/// Processes whose command line contains every one of `words`.
fn pids_with(words: &[&str]) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if words.iter().all(|w| cmdline.contains(w)) {
            out.push(pid);
        }
    }
    out
}

/// Waits (a readiness signal, time-boxed) until `f` gives something.
fn wait_until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The helper processes' cgroup2 paths are the host's as the observer's
/// parser reads them.
fn helpers_are_the_hosts(pids: &[u32], what: &str) {
    assert!(!pids.is_empty(), "{what}: no helper process found");
    for pid in pids {
        let Ok(cg) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue; // gone already
        };
        let path = cg
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/");
        assert_eq!(
            observer::container::parse_cgroup_path(path),
            None,
            "{what} {pid} in {path} is the host's"
        );
    }
}

fn cgroup_gone(rel: &str) {
    let path = cgroup2_root().join(rel.trim_start_matches('/'));
    wait_until(Duration::from_secs(20), &format!("{rel} removed"), || {
        (!path.exists()).then_some(())
    });
}

/// What every runtime must show of its container.
struct Expect<'a> {
    id: &'a str,
    runtime: &'a str,
    name: &'a str,
    calls: usize,
    report: &'a Value,
    helpers: &'a [u32],
}

fn check(rec: &Records, x: &Expect) {
    let events: Vec<&Value> = rec
        .lines
        .iter()
        .filter(|l| {
            l["container"]["id"] == x.id && l["type"] != "summary" && l["type"] != "container"
        })
        .collect();
    assert!(!events.is_empty(), "{}: no events of {}", x.runtime, x.id);
    let own: Vec<&&Value> = events
        .iter()
        .filter(|e| e["syscall"] == "getppid" && e["comm"] == WORKLOAD_COMM)
        .collect();
    assert_eq!(
        own.len(),
        x.calls,
        "{}: exactly the workload's calls in its container",
        x.runtime
    );
    // Schema 2: task lines carry the container's id and name; the whole
    // object is in its `container` record.
    let start = rec
        .of_type("container")
        .find(|c| c["event"] == "start" && c["container"]["id"] == x.id)
        .unwrap_or_else(|| panic!("{}: a start record for {}", x.runtime, x.id));
    assert_eq!(start["container"]["runtime"], x.runtime, "{start}");
    let first = rec
        .lines
        .iter()
        .find(|l| l["container"]["id"] == x.id)
        .unwrap();
    assert_eq!(first, start, "the start record comes before its events");
    for e in &events {
        assert_eq!(
            e["container"]["name"], x.name,
            "named as the runtime knows it: {e}"
        );
    }
    let host_pidns = &rec.kernel()["host_namespaces"]["pidns"];
    for e in &own {
        assert_eq!(
            e["pidns"], x.report["pidns"],
            "the workload's own PID namespace"
        );
        assert_ne!(&e["pidns"], host_pidns, "not the host's PID namespace");
    }
    for e in &events {
        let pid = e["pid"].as_u64().unwrap() as u32;
        assert!(
            !x.helpers.contains(&pid),
            "{}: a helper's event attributed to the container: {e}",
            x.runtime
        );
    }
    let exit = rec
        .of_type("container")
        .find(|c| c["event"] == "exit" && c["container"]["id"] == x.id)
        .unwrap_or_else(|| panic!("{}: an exit record for {}", x.runtime, x.id));
    assert_eq!(exit["container"]["name"], x.name);
    assert!(exit["lifetime_ms"].as_f64().unwrap() > 0.0, "{exit}");
}

/// A container that lived for milliseconds: named in its records.
fn check_brief(rec: &Records, id: &str, name: &str) {
    let exit = rec
        .of_type("container")
        .find(|c| c["event"] == "exit" && c["container"]["id"] == id)
        .unwrap_or_else(|| panic!("an exit record for the brief container {id}"));
    assert_eq!(exit["container"]["name"], name, "{exit}");
    assert!(rec
        .lines
        .iter()
        .filter(|l| l["container"]["id"] == id)
        .all(|l| l["container"]["name"] == name));
}

#[test]
fn podman_containers_are_counted_named_and_their_conmon_is_the_hosts() {
    if !runtimes() {
        return;
    }
    image_archive();
    let obs = Observer::start(&[]);
    let t = tag();
    let dir = scratch(&format!("podman-{t}"));
    fs::create_dir_all(&dir).unwrap();

    let brief = format!("obs-rt-brief-{t}");
    run(
        &mut podman_run(&brief, &dir.join("brief.cid"), &["/bin/true"]),
        Duration::from_secs(60),
    );
    let brief_id = fs::read_to_string(dir.join("brief.cid")).unwrap();

    let name = format!("obs-rt-pod-{t}");
    let cidfile = dir.join("main.cid");
    let child = spawn(&mut podman_run(
        &name,
        &cidfile,
        &[
            "/bin/observer-workload",
            "--calls",
            "1201",
            "--linger-ms",
            LINGER_MS,
        ],
    ));
    let id = wait_until(Duration::from_secs(30), "podman's cidfile", || {
        fs::read_to_string(&cidfile).ok().filter(|s| s.len() == 64)
    });
    let conmon = wait_until(Duration::from_secs(30), "conmon", || {
        Some(pids_with(&["conmon", &id])).filter(|p| !p.is_empty())
    });
    helpers_are_the_hosts(&conmon, "conmon");
    let out = finish(child, Duration::from_secs(60), "podman run");
    cgroup_gone(&format!("/libpod_parent/libpod-{id}"));
    let rec = obs.stop();
    check(
        &rec,
        &Expect {
            id: &id,
            runtime: "podman",
            name: &name,
            calls: 1201,
            report: &report(&out),
            helpers: &conmon,
        },
    );
    let c = &rec
        .lines
        .iter()
        .find(|l| l["event"] == "start" && l["container"]["id"] == id.as_str())
        .unwrap()["container"];
    assert_eq!(c["image"], IMAGE);
    check_brief(&rec, &brief_id, &brief);
    let _ = fs::remove_dir_all(&dir);
}

/// A containerd container run by ctr; returns (stdout, shim PIDs).
fn ctr_run(namespace: &str, args: &[&str], id: &str, cmd: &[&str]) -> (String, Vec<u32>) {
    let mut c = ctr(namespace);
    c.args(["run", "--rm"])
        .args(args)
        .arg(IMAGE)
        .arg(id)
        .args(cmd);
    let child = spawn(&mut c);
    let shims = wait_until(Duration::from_secs(30), "the containerd shim", || {
        Some(pids_with(&["containerd-shim", id])).filter(|p| !p.is_empty())
    });
    helpers_are_the_hosts(&shims, "containerd-shim");
    (finish(child, Duration::from_secs(60), "ctr run"), shims)
}

#[test]
fn containerd_containers_are_named_through_its_api() {
    if !runtimes() {
        return;
    }
    ctr_import("default");
    let sock = containerd_socket();
    let obs = Observer::start(&["--containerd-socket", &sock]);

    // nerdctl's name label, on a container gone within milliseconds.
    let brief_id = fake_id();
    let brief = format!("obs-rt-brief-{}", tag());
    run(
        ctr("default")
            .args(["run", "--rm", "--label", &format!("nerdctl/name={brief}")])
            .arg(IMAGE)
            .arg(&brief_id)
            .arg("/bin/true"),
        Duration::from_secs(60),
    );

    // Plain ctr: the ID is its name.
    let id = fake_id();
    let (out, shims) = ctr_run(
        "default",
        &[],
        &id,
        &[
            "/bin/observer-workload",
            "--calls",
            "1202",
            "--linger-ms",
            LINGER_MS,
        ],
    );
    cgroup_gone(&format!("/default/{id}"));
    cgroup_gone(&format!("/default/{brief_id}"));
    let rec = obs.stop();
    check(
        &rec,
        &Expect {
            id: &id,
            runtime: "containerd",
            name: &id,
            calls: 1202,
            report: &report(&out),
            helpers: &shims,
        },
    );
    let c = &rec
        .lines
        .iter()
        .find(|l| l["event"] == "start" && l["container"]["id"] == id.as_str())
        .unwrap()["container"];
    assert_eq!(c["image"], IMAGE, "the image containerd knows");
    check_brief(&rec, &brief_id, &brief);
}

#[test]
fn kubernetes_pods_on_containerd_are_named_from_the_cri_labels() {
    if !runtimes() {
        return;
    }
    ctr_import("k8s.io");
    let sock = containerd_socket();
    let obs = Observer::start(&["--containerd-socket", &sock]);
    let t = tag();
    let h = fake_id();
    let uid = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    let pod_dir = format!("/kubepods/besteffort/pod{uid}");
    let labels = |pod: &str, container: &str| {
        vec![
            "--label".to_owned(),
            format!("io.kubernetes.pod.name={pod}"),
            "--label".to_owned(),
            "io.kubernetes.pod.namespace=obs-rt".to_owned(),
            "--label".to_owned(),
            format!("io.kubernetes.container.name={container}"),
            "--label".to_owned(),
            format!("io.kubernetes.pod.uid={uid}"),
        ]
    };

    // A job-like container that is over within milliseconds.
    let brief_pod = format!("obs-job-{t}");
    let brief_id = fake_id();
    let mut args = labels(&brief_pod, "job");
    args.extend(["--cgroup".to_owned(), format!("{pod_dir}/{brief_id}")]);
    run(
        ctr("k8s.io")
            .args(["run", "--rm"])
            .args(&args)
            .arg(IMAGE)
            .arg(&brief_id)
            .arg("/bin/true"),
        Duration::from_secs(60),
    );

    let pod = format!("obs-web-{t}");
    let id = fake_id();
    let mut args = labels(&pod, "web");
    args.extend(["--cgroup".to_owned(), format!("{pod_dir}/{id}")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, shims) = ctr_run(
        "k8s.io",
        &args,
        &id,
        &[
            "/bin/observer-workload",
            "--calls",
            "1203",
            "--linger-ms",
            LINGER_MS,
        ],
    );
    cgroup_gone(&format!("{pod_dir}/{id}"));
    cgroup_gone(&format!("{pod_dir}/{brief_id}"));
    let rec = obs.stop();
    let _ = fs::remove_dir(cgroup2_root().join(pod_dir.trim_start_matches('/')));
    check(
        &rec,
        &Expect {
            id: &id,
            runtime: "kubernetes",
            name: &pod,
            calls: 1203,
            report: &report(&out),
            helpers: &shims,
        },
    );
    let c = &rec
        .lines
        .iter()
        .find(|l| l["event"] == "start" && l["container"]["id"] == id.as_str())
        .unwrap()["container"];
    assert_eq!(c["pod_uid"], uid.as_str());
    assert_eq!(c["kubernetes"]["pod"], pod.as_str());
    assert_eq!(c["kubernetes"]["namespace"], "obs-rt");
    assert_eq!(c["kubernetes"]["container"], "web");
    assert_eq!(c["image"], IMAGE);
    check_brief(&rec, &brief_id, &brief_pod);
}

/// systemd-nspawn as its template unit runs it (`systemd-nspawn@NAME.service`
/// with --keep-unit): in the unit's cgroup, which the test makes (there is
/// no systemd here to make it); nspawn splits it into `payload` and
/// `supervisor`.
fn nspawn(name: &str, rootfs: &Path, cmd: &[&str]) -> (Child, TestCgroup) {
    let cg = TestCgroup::new(&format!("/machine.slice/systemd-nspawn@{name}.service"));
    let procs = cg.path.join("cgroup.procs");
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"echo $$ > "$0" && exec "$@""#)
        .arg(&procs)
        .args(["systemd-nspawn", "--register=no", "--keep-unit", "-q"])
        .arg(format!("--machine={name}"))
        .arg("-D")
        .arg(rootfs)
        .args(cmd);
    (spawn(&mut c), cg)
}

/// What nspawn leaves behind, then the unit's cgroup, as systemd would.
fn nspawn_cleanup(mut cg: TestCgroup) {
    for sub in ["payload", "supervisor"] {
        let _ = fs::remove_dir(cg.path.join(sub));
    }
    cg.remove();
}

#[test]
fn nspawn_machines_are_counted_and_named_and_their_supervisor_is_the_hosts() {
    if !runtimes() {
        return;
    }
    let t = tag();
    let rootfs = scratch(&format!("nspawn-{t}"));
    make_rootfs(&rootfs);
    let obs = Observer::start(&[]);

    let brief = format!("obs-rt-brief-{t}");
    let (child, cg) = nspawn(&brief, &rootfs, &["/bin/true"]);
    finish(child, Duration::from_secs(60), "systemd-nspawn /bin/true");
    nspawn_cleanup(cg);

    let name = format!("obs-rt-n-{t}");
    let (child, cg) = nspawn(
        &name,
        &rootfs,
        &[
            "/bin/observer-workload",
            "--calls",
            "1204",
            "--linger-ms",
            LINGER_MS,
        ],
    );
    let supervisor = child.id();
    let payload = cg.path.join("payload/cgroup.procs");
    wait_until(Duration::from_secs(30), "the nspawn payload", || {
        fs::read_to_string(&payload)
            .ok()
            .filter(|p| !p.trim().is_empty())
    });
    helpers_are_the_hosts(&[supervisor], "the nspawn supervisor");
    let out = finish(child, Duration::from_secs(60), "systemd-nspawn");
    let rel = cg.rel.clone();
    nspawn_cleanup(cg);
    cgroup_gone(&rel);
    let rec = obs.stop();
    check(
        &rec,
        &Expect {
            id: &name,
            runtime: "nspawn",
            name: &name,
            calls: 1204,
            report: &report(&out),
            helpers: &[supervisor],
        },
    );
    check_brief(&rec, &brief, &brief);
    let _ = fs::remove_dir_all(&rootfs);
}

/// An LXC container from the busybox template, without a network; the
/// workload copied in (the template bind-mounts the host's /lib and /lib64,
/// which hold its libraries).
struct Lxc(String);

impl Lxc {
    fn create(name: &str) -> Self {
        run(
            Command::new("lxc-create").args(["-n", name, "-t", "busybox"]),
            Duration::from_secs(60),
        );
        let lxc = Lxc(name.to_owned());
        let dir = Path::new("/var/lib/lxc").join(name);
        let config = fs::read_to_string(dir.join("config")).unwrap();
        let config: String = config
            .lines()
            .filter(|l| !l.starts_with("lxc.net.0."))
            .map(|l| format!("{l}\n"))
            .chain(["lxc.net.0.type = empty\n".to_owned()])
            .collect();
        fs::write(dir.join("config"), config).unwrap();
        fs::copy(WORKLOAD, dir.join("rootfs/bin/observer-workload")).unwrap();
        lxc
    }
}

impl Drop for Lxc {
    fn drop(&mut self) {
        let _ = Command::new("lxc-stop")
            .args(["-n", &self.0, "-k"])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("lxc-destroy")
            .args(["-n", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn lxc_containers_are_counted_and_named_and_their_monitor_is_the_hosts() {
    if !runtimes() {
        return;
    }
    let t = tag();
    let brief = format!("obs-rt-brief-{t}");
    let name = format!("obs-rt-l-{t}");
    let _brief_lxc = Lxc::create(&brief);
    let _lxc = Lxc::create(&name);
    let obs = Observer::start(&[]);

    run(
        Command::new("lxc-execute").args(["-n", &brief, "--", "/bin/true"]),
        Duration::from_secs(60),
    );
    cgroup_gone(&format!("/lxc.payload.{brief}"));

    run(
        Command::new("lxc-start").args(["-n", &name, "-d"]),
        Duration::from_secs(60),
    );
    let monitor_procs = cgroup2_root().join(format!("lxc.monitor.{name}/cgroup.procs"));
    let monitor: Vec<u32> = wait_until(Duration::from_secs(30), "the LXC monitor", || {
        let pids: Vec<u32> = fs::read_to_string(&monitor_procs)
            .ok()?
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        (!pids.is_empty()).then_some(pids)
    });
    helpers_are_the_hosts(&monitor, "the LXC monitor");
    let out = run(
        Command::new("lxc-attach").args([
            "-n",
            &name,
            "--",
            "/bin/observer-workload",
            "--calls",
            "1205",
        ]),
        Duration::from_secs(60),
    );
    run(
        Command::new("lxc-stop").args(["-n", &name, "-k"]),
        Duration::from_secs(60),
    );
    cgroup_gone(&format!("/lxc.payload.{name}"));
    let rec = obs.stop();
    check(
        &rec,
        &Expect {
            id: &name,
            runtime: "lxc",
            name: &name,
            calls: 1205,
            report: &report(&out),
            helpers: &monitor,
        },
    );
    let c = &rec
        .lines
        .iter()
        .find(|l| l["event"] == "start" && l["container"]["id"] == name.as_str())
        .unwrap()["container"];
    assert_eq!(c["image"], "busybox", "the template it was made from");
    check_brief(&rec, &brief, &brief);
}

#[test]
fn a_hanging_containerd_socket_delays_no_event_and_warns_once() {
    if !runtimes() {
        return;
    }
    ctr_import("default");
    // A socket that accepts and never answers, as a wedged containerd does.
    let dir = scratch(&format!("hang-{}", tag()));
    fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("containerd.sock");
    let _ = fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let obs = Observer::start(&["--containerd-socket", &sock.to_string_lossy()]);
    let id = fake_id();
    let (out, shims) = ctr_run(
        "default",
        &[],
        &id,
        &["/bin/observer-workload", "--calls", "1206"],
    );
    cgroup_gone(&format!("/default/{id}"));
    let rec = obs.stop();
    let own: Vec<&Value> = rec
        .lines
        .iter()
        .filter(|l| {
            l["container"]["id"] == id.as_str()
                && l["syscall"] == "getppid"
                && l["comm"] == WORKLOAD_COMM
        })
        .collect();
    assert_eq!(own.len(), 1206, "every call, without a name");
    let start = rec
        .of_type("container")
        .find(|c| c["event"] == "start" && c["container"]["id"] == id.as_str())
        .expect("a start record");
    assert_eq!(start["container"]["runtime"], "containerd", "{start}");
    assert!(own.iter().all(|e| e["container"]["name"].is_null()
        && e["pidns"] == report(&out)["pidns"]
        && !shims.contains(&(e["pid"].as_u64().unwrap() as u32))));
    let warnings = rec
        .stderr
        .lines()
        .filter(|l| l.contains("container names unavailable"))
        .count();
    assert!(warnings <= 1, "one warning at most: {}", rec.stderr);
    let _ = fs::remove_dir_all(&dir);
}
