//! The daemon under hostile conditions: bad flags, too few privileges,
//! exactly the documented capabilities, a reader that goes away, a second
//! observer, a planted symlink, and names no sane process has.
//!
//! Nothing here checks the host's count of loaded BPF programs and maps:
//! these tests run in parallel and load programs at the same time. The leak
//! checks are in `lifecycle.rs`, a binary with a single test.

mod common;

use std::{
    ffi::OsStr,
    fs,
    io::{BufRead, BufReader, Read},
    os::unix::{
        ffi::OsStrExt,
        fs::{MetadataExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// `observer-workload` as the kernel names it (comm is 15 bytes).
const WORKLOAD_COMM: &str = "observer-worklo";

/// The uid/gid every unprivileged run uses: `nobody`.
const NOBODY: &str = "65534";

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A directory for one test, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let p =
            std::env::temp_dir().join(format!("observer-robust-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs a command to the end (killed and failed after `limit`), capturing
/// stdout and stderr.
fn run(cmd: &mut Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    // Read both pipes on threads so that a chatty child can't block.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_for(&mut child, limit, &what);
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
        "the observer panicked: {stderr}"
    );
}

/// util-linux `setpriv`, to drop to another user with chosen capabilities.
/// Changing uid needs root: gated like the BPF tests.
fn setpriv_available() -> bool {
    if !privileged() {
        return false;
    }
    if Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    observer::privilege::skip_or_fail("needs util-linux setpriv (apt-get install util-linux)");
    false
}

/// `setpriv` as `nobody`, with exactly `caps` (e.g. "+bpf,+perfmon") in
/// the inheritable, ambient and bounding sets, or none at all.
fn as_nobody(caps: Option<&str>) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
    ]);
    match caps {
        None => c.args(["--inh-caps=-all", "--bounding-set=-all"]),
        Some(caps) => c.args([
            format!("--inh-caps={caps}"),
            format!("--ambient-caps={caps}"),
            format!("--bounding-set=-all,{caps}"),
        ]),
    };
    c.arg("--").arg(OBSERVER);
    c
}

/// Waits until a JSON-lines file has its kernel record.
fn wait_started(out: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fs::read_to_string(out).is_ok_and(|s| s.contains("\"type\":\"kernel\"")) {
        if let Some(s) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("observer exited with {s} before starting: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "observer did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// --- a. flags ----------------------------------------------------------------

#[test]
fn bad_flags_exit_2_with_clap_message() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--bogus"],
            &["unexpected argument '--bogus'", "Usage: observer"],
        ),
        (
            &["--interval", "0"],
            &[
                "invalid value '0' for '--interval <INTERVAL>'",
                "must be a positive number of seconds",
            ],
        ),
        (&["--interval=-1"], &["invalid value '-1'", "positive"]),
        (&["--duration", "nan"], &["invalid value 'nan'", "positive"]),
        (&["--duration", "inf"], &["invalid value 'inf'", "positive"]),
        (
            &["--interval", "soon"],
            &["`soon` is not a number of seconds"],
        ),
        (&["--mode", "fast"], &["invalid value 'fast' for '--mode"]),
        (
            &["--syscall", "unamee"],
            &[
                "invalid value 'unamee' for '--syscall <NAME>'",
                "no syscall `unamee` on this architecture (did you mean `uname`?)",
            ],
        ),
    ];
    for (args, wants) in cases {
        // Parsing fails before anything is loaded: no privileges needed, and
        // a run that got past it would be killed by the time limit.
        let out = run(Command::new(OBSERVER).args(*args), Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "observer {args:?}: clap's usage error is exit code 2; stderr: {stderr}"
        );
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        for w in *wants {
            assert!(stderr.contains(w), "{args:?}: expected {w:?} in: {stderr}");
        }
        assert!(stderr.contains("try '--help'"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
        no_panic(&stderr);
    }
}

// --- b. no privileges --------------------------------------------------------

#[test]
fn unprivileged_run_is_one_line_naming_cap_bpf() {
    if !setpriv_available() {
        return;
    }
    let out = run(
        as_nobody(None).args(["--duration", "1"]),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr: {stderr}");
    let l = lines[0];
    assert!(l.starts_with("observer: "), "{l}");
    assert!(l.contains("CAP_BPF"), "names the capability: {l}");
    assert!(l.contains("CAP_PERFMON"), "names the capability: {l}");
    assert!(
        l.contains("run as root") && l.contains("setcap cap_bpf,cap_perfmon"),
        "says how to run it: {l}"
    );
    let release = observer::kernel_info::KernelInfo::read().release;
    assert_eq!(
        l.contains("cap_sys_resource"),
        observer::privilege::needs_memlock(&release),
        "CAP_SYS_RESOURCE only before 5.11 (this is {release}): {l}"
    );
    no_panic(&stderr);
    assert!(out.stdout.is_empty(), "no record before the programs load");
}

// --- c. exactly the capabilities it needs -----------------------------------

/// The minimal set found on this kernel (6.x): CAP_BPF for the maps,
/// programs and BTF, CAP_PERFMON for tracing programs that read kernel
/// memory. CAP_SYS_RESOURCE (documented for RLIMIT_MEMLOCK) is only needed
/// before Linux 5.11, which charges BPF memory to the memlock limit; it is
/// not in this sandbox's bounding set at all, so setpriv can't even grant
/// it. CAP_DAC_READ_SEARCH only lets the daemon see that tracefs is already
/// mounted under the root-only /sys/kernel/tracing (without it: one
/// harmless warning that it could not mount it).
const MINIMAL_CAPS: &str = "+bpf,+perfmon";

#[test]
fn runs_as_nobody_with_only_cap_bpf_and_cap_perfmon() {
    if !setpriv_available() {
        return;
    }
    let dir = TempDir::new("caps");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let out = dir.path().join("out.jsonl");
    let mut child = as_nobody(Some(MINIMAL_CAPS))
        .args(["--duration", "4", "--host", "--output"])
        .arg(&out)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start setpriv");
    wait_started(&out, &mut child);
    let me = workload(&["--calls", "100"]);
    let status = wait_for(&mut child, Duration::from_secs(30), "observer as nobody");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "observer as nobody with {MINIMAL_CAPS} exited with {status}: {stderr}"
    );
    no_panic(&stderr);
    assert_eq!(
        fs::metadata(&out).unwrap().uid(),
        65534,
        "the output was written by nobody"
    );
    let lines = json_lines(&out);
    assert_eq!(lines[0]["type"], "kernel");
    let getppid = lines
        .iter()
        .filter(|l| {
            l["type"] == "syscall"
                && l["syscall"] == "getppid"
                && l["pid"] == me["host_pid"]
                && l["comm"] == WORKLOAD_COMM
        })
        .count();
    assert_eq!(getppid, 100, "every getppid of the workload");
    assert_eq!(lines.last().unwrap()["type"], "loss", "a clean finish");

    // With CAP_DAC_READ_SEARCH as well (the rest of the documented set that
    // this host can grant), the start is silent about tracefs.
    if Path::new("/sys/kernel/tracing/events").exists() {
        let caps = format!("{MINIMAL_CAPS},+dac_read_search");
        let out2 = dir.path().join("out2.jsonl");
        let o = run(
            as_nobody(Some(&caps))
                .args(["--duration", "1", "--output"])
                .arg(&out2),
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "with {caps}: {stderr}");
        assert!(!stderr.contains("tracefs"), "with {caps}: {stderr}");
        assert_eq!(json_lines(&out2)[0]["type"], "kernel");
    }
}

// --- d. the reader goes away -------------------------------------------------

#[test]
fn closing_stdout_stops_the_observer_quietly() {
    if !privileged() {
        return;
    }
    let mut child = Command::new(OBSERVER)
        .arg("--host")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the observer");
    let mut err = child.stderr.take().unwrap();
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for i in 0..5 {
            let l = lines
                .next()
                .unwrap_or_else(|| panic!("stdout ended after {i} lines"))
                .unwrap();
            let v: Value = serde_json::from_str(&l).unwrap();
            if i == 0 {
                assert_eq!(v["type"], "kernel");
            }
        }
        // Dropping the reader closes the pipe, like `observer | head -5`.
    }
    let started = Instant::now();
    // Keep some events coming so the observer has something to write.
    workload(&["--calls", "10"]);
    let status = wait_for(
        &mut child,
        Duration::from_secs(10),
        "observer after its reader went away",
    );
    let stderr = t_err.join().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "a closed output is a normal end ({:?} after the close): {stderr}",
        started.elapsed()
    );
    no_panic(&stderr);
    assert!(
        !stderr.contains("Broken pipe"),
        "no error for a reader that went away: {stderr}"
    );
}

/// A reader that stops reading (a paused `| less`, a full pipe) stalls only
/// the output: the observer still drains the ring buffer, and `--duration`
/// still ends it on time.
#[test]
fn a_stalled_stdout_does_not_stall_the_observer() {
    if !privileged() {
        return;
    }
    // Only this test's own cgroup: tests running beside it flood too.
    let id = fake_id();
    let cg = TestCgroup::new(&format!("/docker/{id}"));
    let mut child = Command::new(OBSERVER)
        .args(["--container", &id, "--syscall", "getppid"])
        .args(["--duration", "3", "--interval", "0.5"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the observer");
    // The kernel record says it runs; then nobody reads stdout: the pipe
    // fills.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("\"type\":\"kernel\""), "{first}");
    let mut err = child.stderr.take().unwrap();
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    // Far more output than a pipe holds.
    let path = cg.path.to_string_lossy().into_owned();
    workload(&["--cgroup", &path, "--calls", "300000"]);
    let status = wait_for(
        &mut child,
        Duration::from_secs(30),
        "observer whose stdout is not read",
    );
    let stderr = t_err.join().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // --duration 3, and at most 3 s for the writer at the end.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "--duration 3 ended it after {:?}",
        started.elapsed()
    );
    no_panic(&stderr);
    let mut written = Vec::new();
    let _ = stdout.read_to_end(&mut written);
    assert!(
        written.len() >= 60_000,
        "the pipe was full: {} bytes",
        written.len()
    );
}

// --- f. two observers --------------------------------------------------------

#[test]
fn two_observers_at_once_each_see_everything() {
    if !privileged() {
        return;
    }
    let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let a = Observer::start(&[]);
    let b = Observer::start(&[]);
    let cgroup = cg.path.to_string_lossy().into_owned();
    let me = workload(&["--cgroup", &cgroup, "--calls", "500"]);
    let ra = a.stop();
    let rb = b.stop();
    assert_ne!(
        ra.kernel()["observer_pid"],
        rb.kernel()["observer_pid"],
        "two processes"
    );
    for (who, rec) in [("first", &ra), ("second", &rb)] {
        let n = rec
            .in_cgroup(cg.id)
            .iter()
            .filter(|e| {
                e["type"] == "syscall" && e["syscall"] == "getppid" && e["pid"] == me["host_pid"]
            })
            .count();
        assert_eq!(n, 500, "the {who} observer saw every getppid");
        // Neither sees the other: each filters only itself, and the other
        // is a host process, not shown without --host.
        assert!(
            rec.lines
                .iter()
                .all(|l| l["pid"] != ra.kernel()["observer_pid"]
                    && l["pid"] != rb.kernel()["observer_pid"]),
            "the {who} observer shows no observer's own events"
        );
    }
}

// --- g. --output never follows a symlink ------------------------------------

#[test]
fn output_refuses_a_symlink() {
    // Refused before anything is loaded: needs no privileges. (A daemon
    // that followed the link would truncate the victim at once.)
    let dir = TempDir::new("symlink");
    let victim = dir.path().join("victim");
    let precious = b"precious content\nthat must survive\n";
    fs::write(&victim, precious).unwrap();
    let link = dir.path().join("out.jsonl");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    // A dangling link too: O_CREAT would create its target.
    let absent = dir.path().join("not-there");
    let dangling = dir.path().join("dangling.jsonl");
    std::os::unix::fs::symlink(&absent, &dangling).unwrap();

    for l in [&link, &dangling] {
        let out = run(
            Command::new(OBSERVER)
                .arg("--output")
                .arg(l)
                .args(["--duration", "1"]),
            Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "--output {} must be refused",
            l.display()
        );
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("symlink") && stderr.contains(&*l.to_string_lossy()),
            "the message names the path and the symlink: {stderr}"
        );
        no_panic(&stderr);
        assert!(
            fs::symlink_metadata(l).unwrap().file_type().is_symlink(),
            "the link is left alone"
        );
    }
    assert_eq!(fs::read(&victim).unwrap(), precious, "victim unchanged");
    assert!(!absent.exists(), "a dangling link's target is not created");
}

/// `-o` into a directory that does not exist says so (not "symlink").
#[test]
fn output_into_a_missing_directory_says_so() {
    let dir = TempDir::new("missing");
    let target = dir.path().join("no/such/dir/x.jsonl");
    let out = run(
        Command::new(OBSERVER)
            .arg("-o")
            .arg(&target)
            .args(["--duration", "1"]),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let parent = target.parent().unwrap().display().to_string();
    assert!(
        stderr.contains(&format!("the directory {parent} does not exist")),
        "{stderr}"
    );
    assert!(!stderr.contains("symlink"), "{stderr}");
    no_panic(&stderr);
}

// --- h. names no sane process has -------------------------------------------

/// A basename with quotes, a backslash, control characters and bytes that
/// are not UTF-8 (no `/`, no NUL, no newline).
const NASTY_BASENAME: &[u8] = b"q\"uo'te\x01\\\x1b[2J\xff\xfe\xc3(-true";

/// 16 bytes for `PR_SET_NAME`: the kernel keeps the first 15.
const NASTY_COMM: &[u8; 16] = b"c\"\\\x01\x7f\xff\xfe\xc3(\x1b]0;XYZ";

/// Lossy UTF-8, as the observer renders kernel strings.
fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Nested directories under `base` until the path is about `len` bytes.
fn deep_dir(base: &Path, len: usize) -> PathBuf {
    let mut p = base.to_path_buf();
    let mut i = 0;
    while p.as_os_str().len() + 41 < len {
        p.push(format!("{i:02}{}", "d".repeat(38)));
        i += 1;
    }
    fs::create_dir_all(&p).unwrap();
    p
}

fn copy_true(dir: &Path, name: &[u8]) -> PathBuf {
    let p = dir.join(OsStr::from_bytes(name));
    fs::copy("/bin/true", &p).unwrap_or_else(|e| panic!("copy /bin/true: {e}"));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Forks a child that renames itself with `PR_SET_NAME` and calls getppid
/// `calls` times; returns its pid once it has exited.
fn renamed_child(name: &[u8; 16], calls: usize) -> u32 {
    // NUL-terminated copy made before the fork: the child only makes
    // async-signal-safe calls.
    let mut buf = [0u8; 17];
    buf[..16].copy_from_slice(name);
    // SAFETY: fork in a multi-threaded test; the child makes raw syscalls
    // only (prctl, getppid, _exit) and never returns.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            libc::prctl(libc::PR_SET_NAME, buf.as_ptr(), 0, 0, 0);
            for _ in 0..calls {
                libc::syscall(libc::SYS_getppid);
            }
            libc::_exit(0);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        pid as u32
    }
}

#[test]
fn nasty_names_still_give_one_valid_json_object_per_line() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("names");
    // About 230 bytes: fits the record's 256-byte filename.
    let fits = copy_true(
        &deep_dir(dir.path(), 230 - NASTY_BASENAME.len()),
        NASTY_BASENAME,
    );
    let fits_len = fits.as_os_str().len();
    assert!((200..256).contains(&fits_len), "{fits_len}");
    // Over 256 bytes, ASCII up to the cut: truncated, still one line.
    let long = copy_true(&deep_dir(dir.path(), 300), NASTY_BASENAME);
    assert!(long.as_os_str().len() > 256);

    // Filter syscalls to getppid to keep the stream small; fork, exec and
    // exit records always go out.
    let obs = Observer::start(&["--host", "--syscall", "getppid"]);
    let run_it = |p: &Path| {
        let mut c = Command::new(p).spawn().expect("exec the copied /bin/true");
        let pid = c.id();
        assert!(c.wait().unwrap().success());
        pid
    };
    let pid_fits = run_it(&fits);
    let pid_long = run_it(&long);
    let pid_renamed = renamed_child(NASTY_COMM, 3);
    // Observer::stop parses every line as JSON and fails on the first
    // invalid one.
    let rec = obs.stop();

    let comm = lossy(&NASTY_BASENAME[..15]);
    let exec = rec
        .of_type("exec")
        .find(|e| e["pid"] == pid_fits)
        .unwrap_or_else(|| panic!("no exec record for pid {pid_fits}"));
    assert_eq!(
        exec["filename"],
        lossy(fits.as_os_str().as_bytes()),
        "the whole exec path, invalid UTF-8 replaced"
    );
    assert_eq!(exec["comm"], comm, "comm is the basename's first 15 bytes");
    let exit = rec
        .of_type("exit")
        .find(|e| e["pid"] == pid_fits)
        .expect("an exit record");
    assert_eq!(exit["comm"], comm);
    assert_eq!(exit["exit_code"], 0);

    let exec = rec
        .of_type("exec")
        .find(|e| e["pid"] == pid_long)
        .unwrap_or_else(|| panic!("no exec record for pid {pid_long}"));
    assert_eq!(
        exec["filename"],
        lossy(&long.as_os_str().as_bytes()[..255]),
        "a path longer than the record is cut at 255 bytes"
    );

    let calls: Vec<&Value> = rec
        .of_type("syscall")
        .filter(|e| e["pid"] == pid_renamed && e["syscall"] == "getppid")
        .collect();
    assert_eq!(calls.len(), 3, "every getppid of the renamed child");
    for c in calls {
        assert_eq!(
            c["comm"],
            lossy(&NASTY_COMM[..15]),
            "PR_SET_NAME keeps 15 bytes"
        );
    }
}

// --- a signal right after start ----------------------------------------------

/// A supervisor that waits for the kernel record (as `Observer::start`
/// does) and then stops the observer at once must still get a clean stop.
///
/// DAEMON BUG (reported, not fixed here): this fails today. The kernel
/// record is written and flushed in `daemon::run_until` before `run_loop`
/// installs the SIGINT/SIGTERM/SIGHUP handlers, so a signal in that window
/// takes the default action: the observer dies by the signal (exit status
/// -15 for SIGTERM) without its last summary and final loss record. Measured
/// here: about 4 runs in 10. Fix: create the `signal(...)` streams at the
/// top of `run_until` (before `loader::load` and `kernel_record`) and pass
/// them to `run_loop`; tokio keeps a signal that arrives before the first
/// `recv()`, so the loop then stops at once, cleanly.
#[test]
fn a_signal_right_after_the_kernel_record_still_stops_cleanly() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("early-signal");
    for i in 0..10 {
        let out = dir.path().join(format!("out-{i}.jsonl"));
        let mut child = Command::new(OBSERVER)
            .args(["--host", "--syscall", "getppid", "--output"])
            .arg(&out)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the observer");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !fs::read_to_string(&out).is_ok_and(|s| s.contains("\"type\":\"kernel\"")) {
            assert!(child.try_wait().unwrap().is_none(), "exited before start");
            assert!(Instant::now() < deadline, "no start within 30 s");
            // Busy: the window is short.
            std::thread::yield_now();
        }
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let status = wait_for(
            &mut child,
            Duration::from_secs(10),
            "observer after SIGTERM",
        );
        let lines = json_lines(&out);
        assert_eq!(
            status.code(),
            Some(0),
            "run {i}: SIGTERM right after the kernel record killed the observer ({status}); \
             it wrote {} line(s)",
            lines.len()
        );
        assert_eq!(
            lines.last().unwrap()["type"],
            "loss",
            "run {i}: final loss record"
        );
    }
}

/// A flood into a tiny ring buffer: the daemon survives, and what did not
/// fit is accounted for, per cgroup and per CPU, in `loss` records; what
/// arrived plus what was lost is what the workload made.
#[test]
fn a_full_ring_buffer_is_reported_as_loss_per_cgroup_and_cpu() {
    if !privileged() {
        return;
    }
    let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
    // 16 KiB: a wakeup comes every 4 KiB, far too late for a flat-out flood.
    let obs = Observer::start(&[
        "--ring-buffer-kb",
        "16",
        "--syscall",
        "getppid",
        "--interval",
        "0.5",
    ]);
    let path = cg.path.to_string_lossy().into_owned();
    let children: Vec<_> = (0..2)
        .map(|_| workload_spawn(&["--cgroup", &path, "--calls", "300000"]))
        .collect();
    for c in children {
        workload_wait(c);
    }
    let rec = obs.stop();
    let received = rec
        .in_cgroup(cg.id)
        .iter()
        .filter(|e| e["syscall"] == "getppid")
        .count() as u64;
    let last = rec.lines.last().unwrap();
    assert_eq!(last["type"], "loss", "the final account is the last record");
    let losses: Vec<&Value> = rec.of_type("loss").collect();
    let (finally, intervals) = losses.split_last().unwrap();
    let lost_here: u64 = intervals
        .iter()
        .filter_map(|l| l["by_cgroup"][cg.id.to_string()].as_u64())
        .sum();
    assert!(lost_here > 0, "a 16 KiB ring can't hold this flood: {last}");
    assert_eq!(
        finally["by_cgroup"][cg.id.to_string()].as_u64(),
        Some(lost_here),
        "the final account attributes the whole run's loss to the flood's cgroup: {last}"
    );
    assert_eq!(finally["lost"], finally["lost_total"]);
    // And a person reading stderr is told, naming the container.
    let short: String = cg
        .rel
        .rsplit('/')
        .next()
        .unwrap()
        .chars()
        .take(12)
        .collect();
    assert!(
        rec.stderr.contains("warning: lost ")
            && rec
                .stderr
                .contains(&format!("of them from container {short}")),
        "a loss warning on stderr naming the container: {}",
        rec.stderr
    );
    let warnings = rec.stderr.matches("warning: lost ").count();
    assert!(
        (1..=2).contains(&warnings),
        "rate-limited: {warnings} warnings in a few seconds: {}",
        rec.stderr
    );
    // Every call is either received or counted as lost; the cgroup's few
    // lifecycle records (the workloads' fork/exec/exit) may be lost too.
    assert!(
        (600_000..=600_016).contains(&(received + lost_here)),
        "received {received} + lost {lost_here}"
    );
    assert!(received <= 600_000);
    let by_cpu: u64 = intervals
        .iter()
        .flat_map(|l| l["by_cpu"].as_object().cloned().unwrap_or_default())
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    assert!(by_cpu >= lost_here, "losses are also counted per CPU");
    assert!(last["lost_total"].as_u64().unwrap() >= lost_here);
}

/// Containers that come and go while a flood fills the ring buffer: each
/// one seen starting is also seen ending. The cgroup records must not be
/// crowded out by syscall records (a lost `cgroup_rmdir` meant no exit
/// record, and the container's state kept for ever).
#[test]
fn container_exits_are_not_lost_in_a_flood() {
    if !privileged() {
        return;
    }
    let flood = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let obs = Observer::start(&["--ring-buffer-kb", "16", "--interval", "0.5"]);
    let path = flood.path.to_string_lossy().into_owned();
    let flooders: Vec<_> = (0..2)
        .map(|_| workload_spawn(&["--cgroup", &path, "--calls", "3000000"]))
        .collect();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let id = fake_id();
        let mut cg = TestCgroup::new(&format!("/docker/{id}"));
        let p = cg.path.to_string_lossy().into_owned();
        workload(&["--cgroup", &p, "--calls", "200"]);
        cg.remove();
        ids.push(id);
    }
    for f in flooders {
        workload_wait(f);
    }
    // Removals are reconciled with cgroupfs within two checks a second
    // apart, should a record still be missing.
    std::thread::sleep(Duration::from_millis(2500));
    let rec = obs.stop();
    assert!(
        rec.of_type("loss").any(|l| l["lost"].as_u64() > Some(0)),
        "the ring overflowed"
    );
    let mut started = 0;
    for id in &ids {
        let events: Vec<_> = rec
            .of_type("container")
            .filter(|c| c["container"]["id"] == id.as_str())
            .map(|c| c["event"].as_str().unwrap_or_default().to_owned())
            .collect();
        if events.is_empty() {
            // All its records lost to the flood: it never started for us.
            continue;
        }
        started += 1;
        assert_eq!(events, ["start", "exit"], "container {id}");
    }
    assert!(started > 0, "some of the containers were seen");
}

/// Nothing listens on a network port: none of the observer's sockets is a
/// listening TCP socket or a bound UDP one.
#[test]
fn listens_on_no_network_port() {
    if !privileged() {
        return;
    }
    let obs = Observer::start(&["--host"]);
    let pid = obs.pid();
    // Socket inodes the observer holds.
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Columns: sl local rem st … inode (10th).
            if f.len() > 9 && inodes.iter().any(|i| i == f[9]) {
                let listening = f[3] == "0A" || table.starts_with("udp");
                assert!(
                    !listening,
                    "the observer has a {table} socket bound at {}",
                    f[1]
                );
            }
        }
    }
    obs.stop();
}

// --- i. the end of a run, and what a person reads ---------------------------

/// The summaries of a finished `--duration` run, with their checks: every
/// summary's `interval_s` is the time since the previous one (by their
/// `ts`), and only the last says `final`.
fn summaries_of(args: &[&str]) -> Vec<Value> {
    let dir = TempDir::new("final");
    let out = dir.path().join("out.jsonl");
    let o = run(
        Command::new(OBSERVER).arg("-o").arg(&out).args(args),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{args:?}: {stderr}");
    let s: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "summary")
        .collect();
    assert!(s.len() >= 2, "{args:?}: {s:?}");
    for w in s.windows(2) {
        let between = (w[1]["ts"].as_i64().unwrap() - w[0]["ts"].as_i64().unwrap()) as f64 / 1e9;
        let said = w[1]["interval_s"].as_f64().unwrap();
        if w[1]["final"] == true {
            assert!(
                (between - said).abs() < 0.02,
                "{args:?}: the final summary says {said} s and covers {between} s"
            );
        }
    }
    let (last, rest) = s.split_last().unwrap();
    assert_eq!(last["final"], true, "{args:?}: the last summary says it is");
    assert!(rest.iter().all(|x| x.get("final").is_none()));
    s
}

#[test]
fn the_final_summary_covers_exactly_the_time_since_the_previous_one() {
    if !privileged() {
        return;
    }
    // Half an interval after the last tick: it covers that half.
    let s = summaries_of(&["--interval", "1", "--duration", "2.5"]);
    let last = s.last().unwrap()["interval_s"].as_f64().unwrap();
    assert!((0.3..0.7).contains(&last), "{last}");
    assert_eq!(s.len(), 3, "{s:?}");
    // The end falls on a tick: no near-empty summary an instant after it;
    // the final one covers the whole last interval.
    let s = summaries_of(&["--interval", "1", "--duration", "2"]);
    assert_eq!(s.len(), 2, "{s:?}");
    let last = s.last().unwrap()["interval_s"].as_f64().unwrap();
    assert!((0.8..1.2).contains(&last), "{last}");
}

#[test]
fn container_selectors_that_cannot_or_do_not_match_are_warned_about() {
    if !privileged() {
        return;
    }
    let nothing = format!("nosuchthing-{}", std::process::id());
    let o = run(
        Command::new(OBSERVER).args([
            "--container",
            "6c6",
            "--container",
            &nothing,
            "--interval",
            "0.5",
            "--duration",
            "4",
            "-o",
            "/dev/null",
        ]),
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: --container 6c6: too short for an ID prefix (4+ characters)"),
        "{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("warning: nothing has matched"))
        .unwrap_or_else(|| panic!("no unmatched warning: {stderr}"));
    assert!(
        line.contains("--container 6c6") && line.contains(&format!("--container {nothing}")),
        "{line}"
    );
    assert_eq!(stderr.matches("nothing has matched").count(), 1, "once");
    no_panic(&stderr);
}

/// Into a pipe the table has no escapes, its header and kernel line come
/// at once (before the first interval ends), and it fits `$COLUMNS`.
#[test]
fn the_table_in_a_pipe_is_plain_text_within_its_width() {
    if !privileged() {
        return;
    }
    let o = run(
        Command::new(OBSERVER).env("COLUMNS", "80").args([
            "--format",
            "table",
            "--interval",
            "5",
            "--duration",
            "1",
        ]),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !stdout.contains('\x1b'),
        "no escapes into a pipe: {stdout:?}"
    );
    // Two frames: the one drawn at once, and the last (1 s of a 5 s
    // interval: the first interval never ended).
    assert_eq!(stdout.matches("CONTAINER").count(), 2, "{stdout}");
    assert!(stdout.starts_with("CONTAINER"), "{stdout}");
    assert!(
        stdout.contains("one kernel serves them all: Linux"),
        "{stdout}"
    );
    assert!(stdout.lines().all(|l| l.chars().count() <= 80), "{stdout}");
}

/// Started under `nohup` (SIGHUP ignored by the parent), a hangup does not
/// stop the observer; SIGINT still does.
#[test]
fn an_inherited_sighup_ignore_is_respected() {
    if !privileged() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("nohup");
    let out = dir.path().join("out.jsonl");
    let mut cmd = Command::new(OBSERVER);
    cmd.arg("--output")
        .arg(&out)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only signal(2), async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start the observer");
    wait_started(&out, &mut child);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    // Its next records prove it outlived the hangup: a workload's calls
    // arrive after it.
    let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
    let path = cg.path.to_string_lossy().into_owned();
    workload(&["--cgroup", &path, "--calls", "10"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&out).is_ok_and(|s| s.contains(&format!("\"cgroup_id\":{}", cg.id))) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "SIGHUP stopped an observer that inherited SIG_IGN for it"
        );
        assert!(Instant::now() < deadline, "no records after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.try_wait().unwrap().is_none());
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_for(&mut child, Duration::from_secs(30), "observer after SIGINT");
    assert!(status.success());
}

/// Records still in the ring when the observer is told to stop are read to
/// the last one: what the kernel emitted is what the daemon received.
#[test]
fn the_final_drain_reads_everything_left_in_the_ring() {
    if !privileged() {
        return;
    }
    let cg = TestCgroup::new(&format!("/docker/{}", fake_id()));
    // 64 MiB hold the whole workload: nothing is lost in the kernel.
    let obs = Observer::start(&["--ring-buffer-kb", "65536", "--syscall", "getppid"]);
    // Stopped, the daemon reads nothing while the ring fills.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(obs.pid() as i32, libc::SIGSTOP) };
    let path = cg.path.to_string_lossy().into_owned();
    workload(&["--cgroup", &path, "--calls", "200000"]);
    // SAFETY: as above; SIGINT is queued before the process runs again.
    unsafe {
        libc::kill(obs.pid() as i32, libc::SIGINT);
        libc::kill(obs.pid() as i32, libc::SIGCONT);
    }
    let rec = obs.stop();
    let received = rec
        .in_cgroup(cg.id)
        .iter()
        .filter(|e| e["syscall"] == "getppid")
        .count();
    let last = rec.lines.last().unwrap();
    assert_eq!(last["type"], "loss");
    assert_eq!(last["lost_total"], 0, "{last}");
    // Every record left in the ring was read: handed on, or (on a machine
    // too slow to render them all in the final drain's time) counted.
    let dropped = last["dropped_by_daemon"].as_u64().unwrap();
    // (the workload's few lifecycle records may be among the counted).
    assert!(
        (200_000..=200_010).contains(&(received as u64 + dropped)),
        "received {received}: {last}"
    );
    if dropped == 0 {
        assert_eq!(received, 200_000, "{last}");
    }
    assert_eq!(last["received_total"], last["emitted_total"], "{last}");
}

/// In a PID namespace of its own (a container without `--pid=host`), the
/// observer can't know its host PID: it refuses in one line with the fix,
/// instead of watching itself.
#[test]
fn refuses_to_run_in_a_pid_namespace_of_its_own() {
    if !privileged() {
        return;
    }
    let out = run(
        Command::new("unshare")
            .args(["--pid", "--fork", "--"])
            .arg(OBSERVER)
            .args(["--duration", "1"]),
        Duration::from_secs(60),
    );
    let stderr = lossy(&out.stderr);
    no_panic(&stderr);
    assert!(!out.status.success(), "it ran: {stderr}");
    assert!(
        stderr.contains("PID namespace other than the host's") && stderr.contains("--pid=host"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
