//! A known, exact workload for the tests and the benchmark: N `getppid`
//! calls, optionally inside a given cgroup and fresh PID/mount/UTS
//! namespaces, with a fork/exec/exit chain inside. Prints what it was (host
//! PID, namespace PID, namespace inodes, ns per call) as one JSON line.
//!
//! Also the lesson's workload in both worlds: `--facts` prints the kernel
//! it runs on (release, boot ID, uptime) and makes exactly `--calls` calls
//! of `--syscall`, in a container; started as PID 1 (a guest's `/init`) or
//! with `--init` it is the guest's whole user space (`observer::vm::init`).

use std::{ffi::CString, fs, time::Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Move into this cgroup (a cgroup2 directory) first.
    #[arg(long)]
    cgroup: Option<String>,
    /// Wait this many ms before moving into `--cgroup` (as `runc init`
    /// runs a while before joining the container's cgroups).
    #[arg(long, default_value_t = 0)]
    cgroup_delay_ms: u64,
    /// Run in fresh PID, mount and UTS namespaces (as their PID 1).
    #[arg(long)]
    unshare: bool,
    /// With --unshare: nest this many PID namespaces, each the child of the
    /// last (the kernel allows 32).
    #[arg(long, default_value_t = 1)]
    depth: u32,
    /// Set this hostname (needs --unshare).
    #[arg(long)]
    hostname: Option<String>,
    /// Fork and exec this program once, and wait for it.
    #[arg(long)]
    exec: Option<String>,
    /// Pin to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Number of getppid calls.
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    /// Then this many getppid calls through `int 0x80` (x86_64): compat
    /// (ia32) syscalls, numbered from the i386 table (getppid is 64 there).
    /// The report's `int80` says whether the kernel took them.
    #[arg(long, default_value_t = 0)]
    int80_calls: u64,
    /// Sleep this many ms before exiting (keeps the task alive for checks).
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
    /// Instead of getppid: fork and exec /bin/true this many times.
    #[arg(long)]
    spawn: Option<u64>,
    /// Pace the getppid calls at this many per second (0: flat out), for
    /// `--seconds` seconds instead of a fixed count.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 0.0)]
    seconds: f64,
    /// Print the kernel's identity and make exactly --calls calls of
    /// --syscall, as one `workload_facts` JSON line (what the guest's /init
    /// prints too).
    #[arg(long)]
    facts: bool,
    /// The syscall `--facts` repeats.
    #[arg(long, default_value = "getppid")]
    syscall: String,
    /// Be a guest's /init (the default when started as PID 1).
    #[arg(long)]
    init: bool,
    /// In a kernel-matrix guest: run the observer against the workloads
    /// and print what it reported (`observer::vm::matrix`).
    #[arg(long)]
    matrix: bool,
    /// Also call each syscall number from 1000 to 1000+N-1 once (none
    /// exists: each fails with ENOSYS, but each is a distinct number).
    #[arg(long, default_value_t = 0)]
    distinct_numbers: u64,
    /// The main thread ends first (`pthread_exit`); a second thread then
    /// makes the getppid calls and ends the process.
    #[arg(long)]
    leader_exits_first: bool,
    /// A second thread execs this program (the kernel's `de_thread` then
    /// ends the old leader while the process goes on).
    #[arg(long)]
    exec_from_thread: Option<String>,
    /// Change who this task is between runs of getppid calls (each run a
    /// different count): a new comm by prctl, then by /proc, new UTS and
    /// network namespaces, back by setns, a named thread, a move into this
    /// cgroup, and last an exec of this program through `--identity-exec`
    /// (a symlink: its name becomes the comm). Prints each run as JSON.
    #[arg(long)]
    identity_changes: Option<String>,
    #[arg(long)]
    identity_exec: Option<String>,
    /// Fork this many children that wait, counting the forks the kernel
    /// refuses with EAGAIN (a pids limit); prints both counts.
    #[arg(long)]
    fork_past: Option<u64>,
    /// Allocate and touch this many MiB, 1 MiB at a time (past a memory
    /// limit: the OOM killer ends it).
    #[arg(long)]
    alloc_mb: Option<u64>,
    /// Spin on the CPU for this many seconds (under a CPU quota: throttled).
    #[arg(long)]
    spin_seconds: Option<f64>,
}

/// Whether the thread-group leader has exited: `/proc/self/stat` shows the
/// leader's state, `Z` once it is gone while other threads run.
fn leader_gone() -> bool {
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        .is_some_and(|state| state == 'Z')
}

/// `--leader-exits-first`: never returns.
fn leader_exits_first(calls: u64) -> ! {
    std::thread::spawn(move || {
        while !leader_gone() {
            std::thread::yield_now();
        }
        for _ in 0..calls {
            // SAFETY: getppid has no arguments and cannot fail.
            unsafe { libc::syscall(libc::SYS_getppid) };
        }
        // SAFETY: gettid has no arguments.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        println!("{}", serde_json::json!({"calls": calls, "last_tid": tid}));
        // exit_group from the last thread.
        std::process::exit(0);
    });
    // The bare exit(2) syscall ends only the calling (main) thread, as
    // pthread_exit does at its end, without unwinding Rust frames (which
    // glibc's forced unwind can't do).
    loop {
        // SAFETY: ends this thread; nothing of it is used afterwards.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
    }
}

/// A syscall through the 32-bit entry (`int 0x80`) from this 64-bit
/// process, with no arguments: what a 32-bit binary's calls look like to the
/// kernel (`TS_COMPAT`, the i386 numbering).
#[cfg(target_arch = "x86_64")]
fn int80(nr: u32) -> i32 {
    let ret: u32;
    // SAFETY: only argument-less calls (getpid, getppid) are made; the
    // kernel's int 0x80 entry zeroes r8-r11 on some versions.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("eax") nr => ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack),
        );
    }
    ret as i32
}

#[cfg(not(target_arch = "x86_64"))]
fn int80(_nr: u32) -> i32 {
    -libc::ENOSYS
}

/// i386 `getpid` and `getppid`.
const I386_GETPID: u32 = 20;
const I386_GETPPID: u32 = 64;

/// Whether this kernel takes `int 0x80` from a 64-bit process, tried in a
/// child (without IA32 emulation, or with it off by `ia32_emulation=0`,
/// the instruction faults: SIGSEGV). Err says why not.
fn int80_available() -> Result<(), String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("int 0x80 is x86 only".into());
    }
    // SAFETY: the child makes one syscall and exits.
    unsafe {
        let child = libc::fork();
        check(child as i64, "fork");
        if child == 0 {
            let r = int80(I386_GETPID);
            libc::_exit(if r == libc::getpid() {
                0
            } else if r == -libc::ENOSYS {
                3
            } else {
                4
            });
        }
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        if libc::WIFSIGNALED(status) {
            return Err(format!(
                "int 0x80 killed the process with signal {}: the kernel has no IA32 emulation, or it is off (ia32_emulation=0)",
                libc::WTERMSIG(status)
            ));
        }
        match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            3 => Err("int 0x80 returned ENOSYS".into()),
            n => Err(format!(
                "int 0x80 getpid returned something else (status {n})"
            )),
        }
    }
}

/// `n` getppid calls through `int 0x80`; the calls that returned the
/// parent's PID, as /proc tells it (no native getppid call is made: the
/// tests count those exactly; /proc is the host's, so the two views agree
/// only outside `--unshare`).
fn int80_getppid(n: u64) -> u64 {
    let ppid: i32 = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PPid:").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(-1);
    (0..n).filter(|_| int80(I386_GETPPID) == ppid).count() as u64
}

/// `n` getppid calls.
fn getppid(n: u64) {
    for _ in 0..n {
        // SAFETY: getppid has no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
}

/// Who the calling thread is, with `calls` getppid calls made as it.
fn identity_run(calls: u64) -> serde_json::Value {
    getppid(calls);
    let thread_ns = |kind: &str| {
        fs::read_link(format!("/proc/thread-self/ns/{kind}"))
            .ok()
            .and_then(|l| {
                l.to_string_lossy()
                    .split(['[', ']'])
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    // /proc is the host's mount: `thread-self` is `PID/task/TID` there.
    let host_tid: u64 = fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.to_string_lossy().rsplit('/').next()?.parse().ok())
        .unwrap_or(0);
    let comm = fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
    // SAFETY: gettid has no arguments.
    let ns_tid = unsafe { libc::syscall(libc::SYS_gettid) };
    serde_json::json!({
        "calls": calls,
        "tid": host_tid,
        "ns_tid": ns_tid,
        "comm": comm.trim_end(),
        "pidns": thread_ns("pid"),
        "mntns": thread_ns("mnt"),
        "utsns": thread_ns("uts"),
        "netns": thread_ns("net"),
        "cgroup": fs::read_to_string("/proc/thread-self/cgroup").unwrap_or_default(),
    })
}

/// `--identity-changes CGROUP`: never returns (ends in an exec).
fn identity_changes(cgroup: &str, exec: Option<&str>) -> ! {
    let open = |path: &str| {
        let c = CString::new(path).expect("no NUL");
        // SAFETY: a valid path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        check(fd.into(), path);
        fd
    };
    let (uts, net) = (open("/proc/self/ns/uts"), open("/proc/self/ns/net"));
    let mut runs = vec![identity_run(101)];
    let name = CString::new("id-prctl").expect("no NUL");
    // SAFETY: PR_SET_NAME with a NUL-terminated name.
    check(
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) }.into(),
        "prctl",
    );
    runs.push(identity_run(102));
    if let Err(e) = fs::write("/proc/thread-self/comm", "id-written") {
        eprintln!("observer-workload: write comm: {e}");
        std::process::exit(1);
    }
    runs.push(identity_run(103));
    // SAFETY: plain syscalls on this (single-threaded) process.
    check(
        unsafe { libc::unshare(libc::CLONE_NEWUTS | libc::CLONE_NEWNET) }.into(),
        "unshare",
    );
    runs.push(identity_run(104));
    // SAFETY: namespace fds opened above.
    unsafe {
        check(libc::setns(uts, libc::CLONE_NEWUTS).into(), "setns uts");
        check(libc::setns(net, libc::CLONE_NEWNET).into(), "setns net");
    }
    runs.push(identity_run(105));
    let thread = std::thread::spawn(|| {
        let name = CString::new("id-thread").expect("no NUL");
        // SAFETY: as above, for this thread.
        check(
            unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) }.into(),
            "prctl",
        );
        identity_run(106)
    });
    runs.push(thread.join().expect("the thread"));
    if let Err(e) = fs::write(format!("{cgroup}/cgroup.procs"), "0") {
        eprintln!("observer-workload: join cgroup {cgroup}: {e}");
        std::process::exit(1);
    }
    runs.push(identity_run(107));
    println!("{}", serde_json::json!({ "runs": runs }));
    let prog = CString::new(exec.unwrap_or("/proc/self/exe")).expect("no NUL");
    let argv = [
        prog.as_ptr(),
        c"--calls".as_ptr(),
        c"108".as_ptr(),
        std::ptr::null(),
    ];
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: valid NUL-terminated path and argv.
    unsafe { libc::execv(prog.as_ptr(), argv.as_ptr()) };
    eprintln!(
        "observer-workload: exec: {}",
        std::io::Error::last_os_error()
    );
    std::process::exit(1)
}

/// `--exec-from-thread`: never returns.
fn exec_from_thread(prog: &str, calls: u64) -> ! {
    let c = CString::new(prog).expect("no NUL in path");
    for _ in 0..calls {
        // SAFETY: getppid has no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    let t = std::thread::spawn(move || {
        let argv = [c.as_ptr(), std::ptr::null()];
        // SAFETY: valid NUL-terminated path and argv.
        unsafe { libc::execv(c.as_ptr(), argv.as_ptr()) };
        eprintln!(
            "observer-workload: execv from a thread: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    });
    let _ = t.join();
    std::process::exit(1)
}

/// Tries `n` forks; the children block on a pipe until the parent is done,
/// so that each success holds a PID. Returns (forked, refused with EAGAIN).
fn fork_past(n: u64) -> (u64, u64) {
    let mut fds = [0; 2];
    // SAFETY: valid array of two fds.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) } as i64, "pipe");
    let (mut forked, mut eagain) = (0u64, 0u64);
    let mut children = Vec::new();
    for _ in 0..n {
        // SAFETY: the child only calls async-signal-safe functions.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut b = [0u8; 1];
            // SAFETY: reads into a local byte; returns at EOF.
            unsafe {
                libc::close(fds[1]);
                libc::read(fds[0], b.as_mut_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        if pid > 0 {
            forked += 1;
            children.push(pid);
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
            eagain += 1;
        } else {
            check(-1, "fork");
        }
    }
    // SAFETY: closing our ends releases the children; then reap them.
    unsafe {
        libc::close(fds[1]);
        libc::close(fds[0]);
        for pid in children {
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
    }
    (forked, eagain)
}

/// This thread's CPU time in ns: what the calls cost it, without the time
/// other tasks held its CPU (which the wall clock counts on a busy machine).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; this clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// fork + exec /bin/true, `n` times; ns per round trip.
fn spawn_loop(n: u64) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        let st = std::process::Command::new("/bin/true").status();
        if !st.is_ok_and(|s| s.success()) {
            eprintln!("observer-workload: /bin/true failed");
            std::process::exit(1);
        }
    }
    start.elapsed().as_nanos() as f64 / n.max(1) as f64
}

/// getppid at `rate` per second for `seconds`, in 1 ms slices; returns the
/// number of calls made.
fn paced(rate: u64, seconds: f64) -> u64 {
    let start = Instant::now();
    let end = std::time::Duration::from_secs_f64(seconds);
    let mut done = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= end {
            return done;
        }
        let due = (rate as f64 * elapsed.as_secs_f64()) as u64;
        if done < due {
            for _ in done..due {
                // SAFETY: getppid has no arguments and cannot fail.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
            done = due;
        } else {
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
    }
}

fn check(rc: i64, what: &str) {
    if rc < 0 {
        eprintln!(
            "observer-workload: {what}: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
}

fn ns(kind: &str) -> u64 {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .ok()
        .and_then(|l| {
            l.to_string_lossy()
                .split(['[', ']'])
                .nth(1)
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    // A guest kernel starts `/init` as PID 1, its plan in /proc/cmdline. A
    // container's PID 1 is started by another name (and with flags).
    if std::process::id() == 1 && std::env::args().next().as_deref() == Some("/init") {
        observer::vm::init::main();
    }
    let args = Args::parse();
    if args.matrix {
        std::process::exit(observer::vm::matrix::main());
    }
    if args.init {
        observer::vm::init::main();
    }
    if args.facts {
        match observer::vm::init::workload(&args.syscall, args.calls) {
            Ok(f) => println!("{}", serde_json::to_string(&f).expect("facts serialize")),
            Err(e) => {
                eprintln!("observer-workload: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    if let Some(cpu) = args.cpu {
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            check(
                libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) as i64,
                "pin to CPU",
            );
        }
    }
    if let Some(cg) = &args.cgroup {
        std::thread::sleep(std::time::Duration::from_millis(args.cgroup_delay_ms));
        if let Err(e) = fs::write(format!("{cg}/cgroup.procs"), "0") {
            eprintln!("observer-workload: join cgroup {cg}: {e}");
            std::process::exit(1);
        }
    }
    for level in 0..if args.unshare { args.depth.max(1) } else { 0 } {
        let flags = if level == 0 {
            libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS
        } else {
            libc::CLONE_NEWPID
        };
        // SAFETY: plain syscalls; after fork the child only continues this
        // single-threaded program.
        unsafe {
            check(libc::unshare(flags) as i64, "unshare");
            let child = libc::fork();
            check(child as i64, "fork");
            if child > 0 {
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
                std::process::exit(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    1
                });
            }
        }
    }
    if let Some(h) = &args.hostname {
        // SAFETY: valid buffer and length.
        check(
            unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) } as i64,
            "sethostname",
        );
    }
    if let Some(prog) = &args.exec {
        let c = CString::new(prog.as_str()).expect("no NUL in path");
        // SAFETY: fork then execv in the child; the child only calls
        // async-signal-safe functions.
        unsafe {
            let child = libc::fork();
            check(child as i64, "fork");
            if child == 0 {
                let argv = [c.as_ptr(), std::ptr::null()];
                libc::execv(c.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
            let mut status = 0;
            libc::waitpid(child, &mut status, 0);
        }
    }
    if args.leader_exits_first {
        leader_exits_first(args.calls);
    }
    if let Some(prog) = &args.exec_from_thread {
        exec_from_thread(prog, args.calls);
    }
    if let Some(cg) = &args.identity_changes {
        identity_changes(cg, args.identity_exec.as_deref());
    }
    if let Some(n) = args.fork_past {
        let (forked, eagain) = fork_past(n);
        println!(
            "{}",
            serde_json::json!({"tried": n, "forked": forked, "eagain": eagain})
        );
        return;
    }
    if let Some(mb) = args.alloc_mb {
        let mut held: Vec<Vec<u8>> = Vec::new();
        for i in 0..mb {
            // Touched: the pages are charged to the memory cgroup.
            held.push(vec![1u8; 1 << 20]);
            if i % 8 == 0 {
                eprintln!("observer-workload: {} MiB", i + 1);
            }
        }
        println!("{}", serde_json::json!({"allocated_mb": held.len()}));
        return;
    }
    if let Some(secs) = args.spin_seconds {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < secs {
            n = std::hint::black_box(n.wrapping_add(1));
        }
        println!("{}", serde_json::json!({"spun_s": secs}));
        return;
    }
    if let Some(n) = args.spawn {
        println!(
            "{}",
            serde_json::json!({"spawns": n, "ns_per_spawn": spawn_loop(n)})
        );
        return;
    }
    if args.rate > 0 {
        let calls = paced(args.rate, args.seconds);
        println!(
            "{}",
            serde_json::json!({"calls": calls, "rate": args.rate, "seconds": args.seconds})
        );
        return;
    }
    for nr in 1000..1000 + args.distinct_numbers {
        // SAFETY: a number no kernel implements: ENOSYS, no effect.
        unsafe { libc::syscall(nr as libc::c_long) };
    }
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    for _ in 0..args.calls {
        // SAFETY: getppid has no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    let elapsed = start.elapsed();
    let cpu = thread_cpu_ns().saturating_sub(cpu_start);
    let int80 = (args.int80_calls > 0).then(|| match int80_available() {
        Ok(()) => serde_json::json!({
            "available": true,
            "calls": args.int80_calls,
            "returned_ppid": int80_getppid(args.int80_calls),
        }),
        Err(why) => serde_json::json!({"available": false, "calls": 0, "why": why}),
    });
    // /proc is still the host's mount: /proc/self names the host PID.
    let host_pid: u64 = fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_string_lossy().parse().ok())
        .unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "host_pid": host_pid,
            "ns_pid": std::process::id(),
            "pidns": ns("pid"),
            "mntns": ns("mnt"),
            "utsns": ns("uts"),
            "calls": args.calls,
            "ns_per_call": elapsed.as_nanos() as f64 / args.calls.max(1) as f64,
            "cpu_ns_per_call": cpu as f64 / args.calls.max(1) as f64,
            "int80": int80,
        })
    );
    if args.linger_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(args.linger_ms));
    }
}
