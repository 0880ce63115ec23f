//! Helpers for the privileged tests: a real observer process, real cgroups
//! and namespaces, the exact workload.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod prometheus;
pub mod vm;

pub const OBSERVER: &str = env!("CARGO_BIN_EXE_observer");
pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_observer-workload");

/// Whether the privileged tests can run here; prints why not, and fails
/// under CI=true where they must run.
pub fn privileged() -> bool {
    if !observer::privilege::can_trace() {
        observer::privilege::skip_or_fail("needs root or CAP_BPF + CAP_PERFMON");
        return false;
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        observer::privilege::skip_or_fail("needs kernel BTF at /sys/kernel/btf/vmlinux");
        return false;
    }
    if option_env!("OBSERVER_EBPF_OBJECT").is_none_or(str::is_empty) {
        observer::privilege::skip_or_fail("built without the eBPF object: run `cargo xtask test`");
        return false;
    }
    true
}

/// The local image the end-to-end tests run (`cargo xtask test` builds it
/// and starts an engine); None, after saying why, where there is none.
pub fn docker_image() -> Option<String> {
    if !privileged() {
        return None;
    }
    let Ok(image) = std::env::var("OBSERVER_TEST_IMAGE") else {
        observer::privilege::skip_or_fail(
            "no Docker engine and image: run the suite with `cargo xtask test`",
        );
        return None;
    };
    Some(image)
}

/// Every line of a JSON-lines file, parsed (each must be valid JSON).
pub fn json_lines(path: &Path) -> Vec<Value> {
    let text = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                panic!("invalid JSON line ({e}): {}", String::from_utf8_lossy(l))
            })
        })
        .collect()
}

/// Waits for a child up to `limit`; kills it (and fails) past that.
pub fn wait_for(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn cgroup2_root() -> PathBuf {
    let m = fs::read_to_string("/proc/self/mountinfo").unwrap();
    observer::container::cgroup2_mount(&m).expect("a cgroup2 hierarchy is mounted")
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique 64-hex container ID for this test run.
pub fn fake_id() -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // Sequence first, so that 12-character prefixes (Docker's short IDs)
    // differ between the IDs of one run.
    format!("{n:08x}{:08x}{nanos:048x}", std::process::id())
}

/// A cgroup made for the test at `rel` (e.g. "/docker/<id>"), removed on drop.
pub struct TestCgroup {
    pub path: PathBuf,
    pub rel: String,
    pub id: u64,
    made: Vec<PathBuf>,
}

impl TestCgroup {
    pub fn new(rel: &str) -> Self {
        let root = cgroup2_root();
        let path = root.join(rel.trim_start_matches('/'));
        let mut made = Vec::new();
        let mut p = path.clone();
        while !p.exists() {
            made.push(p.clone());
            p = p.parent().unwrap().to_path_buf();
        }
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let id = fs::metadata(&path).unwrap().ino();
        TestCgroup {
            path,
            rel: rel.to_owned(),
            id,
            made,
        }
    }

    pub fn remove(&mut self) {
        for d in self.made.drain(..) {
            // Deepest first (made was collected deepest first).
            let _ = fs::remove_dir(&d);
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs the exact workload; returns what it reports about itself.
pub fn workload(args: &[&str]) -> Value {
    let out = Command::new(WORKLOAD)
        .args(args)
        .output()
        .expect("run observer-workload");
    assert!(
        out.status.success(),
        "workload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("workload prints JSON")
}

/// Starts the workload without waiting (for tasks that must overlap).
pub fn workload_spawn(args: &[&str]) -> Child {
    Command::new(WORKLOAD)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start observer-workload")
}

/// Waits for a spawned workload and returns its report.
pub fn workload_wait(child: Child) -> Value {
    let out = child
        .wait_with_output()
        .expect("wait for observer-workload");
    assert!(out.status.success(), "workload failed");
    serde_json::from_slice(&out.stdout).expect("workload prints JSON")
}

pub struct Observer {
    child: Child,
    pub out: PathBuf,
}

impl Observer {
    /// Starts the observer writing to a file; returns once its programs are
    /// attached (the kernel record is written after attach).
    pub fn start(args: &[&str]) -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let out =
            std::env::temp_dir().join(format!("observer-test-{}-{n}.jsonl", std::process::id()));
        let _ = fs::remove_file(&out);
        let child = Command::new(OBSERVER)
            .arg("--output")
            .arg(&out)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the observer");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if fs::read_to_string(&out).is_ok_and(|s| s.contains("\"type\":\"kernel\"")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "observer did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Observer { child, out }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT, wait for a clean exit, and return every record (each line
    /// must be valid JSON).
    pub fn stop(mut self) -> Records {
        // Let the last drain tick and name lookups pass.
        std::thread::sleep(Duration::from_millis(600));
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = wait_for(
            &mut self.child,
            Duration::from_secs(30),
            "observer after SIGINT",
        );
        let mut stderr = String::new();
        if let Some(e) = self.child.stderr.take() {
            for l in BufReader::new(e).lines().map_while(Result::ok) {
                stderr.push_str(&l);
                stderr.push('\n');
            }
        }
        assert!(status.success(), "observer exited with {status}: {stderr}");
        let lines = json_lines(&self.out);
        let _ = fs::remove_file(&self.out);
        Records { lines, stderr }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Records {
    pub lines: Vec<Value>,
    pub stderr: String,
}

impl Records {
    pub fn of_type<'a>(&'a self, t: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.lines.iter().filter(move |l| l["type"] == t)
    }

    /// The whole `container` object of a cgroup, from the summaries (event
    /// lines carry only its id and name; a `container` record names the
    /// container's first cgroup only).
    pub fn container_of(&self, cgroup_id: u64) -> Value {
        self.summary_entries(cgroup_id)
            .first()
            .unwrap_or_else(|| panic!("no summary entry for cgroup {cgroup_id}"))["container"]
            .clone()
    }

    pub fn kernel(&self) -> &Value {
        assert_eq!(
            self.lines[0]["type"], "kernel",
            "the first record is the kernel"
        );
        &self.lines[0]
    }

    /// Task events of one cgroup.
    pub fn in_cgroup(&self, id: u64) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| l["cgroup_id"] == id && l["type"] != "summary" && l["type"] != "container")
            .collect()
    }

    /// Sum over all summaries of one syscall's count for one cgroup.
    pub fn summary_count(&self, cgroup: u64, syscall: &str) -> u64 {
        self.of_type("summary")
            .flat_map(|s| s["containers"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["cgroup_id"] == cgroup)
            .map(|c| c["syscalls"][syscall].as_u64().unwrap_or(0))
            .sum()
    }

    pub fn summary_entries(&self, cgroup: u64) -> Vec<Value> {
        self.of_type("summary")
            .flat_map(|s| s["containers"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["cgroup_id"] == cgroup)
            .collect()
    }
}

/// A name unique to this run: `PREFIX-` and 12 hex digits.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &fake_id()[..12])
}

/// `docker ARGS`, returning stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET path` over HTTP/1.0: (status, body), or None when nothing answers.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}
