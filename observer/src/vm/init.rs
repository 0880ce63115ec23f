//! The guest's `/init`: the same static `observer-workload` binary that runs
//! in the container, started by the guest kernel as PID 1.
//!
//! As PID 1 (or with `observer-workload --init`) it
//! 1. mounts proc, sysfs, devtmpfs, tmpfs on /tmp and /run, and, where the
//!    kernel has them, tracefs, debugfs, bpffs and cgroup2 (what an observer
//!    inside the guest needs);
//! 2. reads its plan from `/proc/cmdline` (the kernel hands parameters with
//!    a dot to no one, so they are read from there):
//!    - `observer.insmod=/lib/modules/e1000.ko,...`: load these modules
//!      from the initramfs, in order (`.ko.xz`/`.ko.zst` are decompressed by
//!      the kernel where it can);
//!    - `observer.ifup=eth0:10.0.2.15/24`: bring `lo` and this interface up
//!      with this address (QEMU user networking's default guest address);
//!    - `observer.syscall=getppid` and `observer.calls=500`: the workload (the
//!      default: 500 getppid), `observer.facts=0` skips it;
//!    - `observer.run="/bin/observer --duration 5"`: then run this program
//!      from the initramfs with these arguments (double quotes group words),
//!      its output on the console; `observer.timeout=SECS` kills it after
//!      that long;
//! 3. prints one JSON line per step on the console (`ttyS0`):
//!    `{"type":"workload_facts",...}` (the same line the container's run
//!    prints), `{"type":"init_run","status":0}`, any `{"type":"init_error",
//!    "error":"..."}`, and last `{"type":"init_done"}`;
//! 4. powers the guest off (`reboot(RB_POWER_OFF)`), which ends QEMU.
//!
//! Kernel messages are silenced on the console once `/init` runs
//! (`observer.loglevel=N` to keep them), so the JSON lines stay whole.

use std::{
    ffi::CString,
    fs,
    io::Write,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use serde::Serialize;

/// What `/proc/cmdline` asks the init to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub insmod: Vec<String>,
    /// (interface, address, prefix length)
    pub ifup: Option<(String, [u8; 4], u8)>,
    /// Run the workload (and print its facts).
    pub facts: bool,
    pub syscall: String,
    pub calls: u64,
    /// Program and arguments to run after the workload.
    pub run: Vec<String>,
    pub timeout: Option<Duration>,
    /// Console log level once init runs.
    pub loglevel: u8,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            insmod: Vec::new(),
            ifup: None,
            facts: true,
            syscall: "getppid".into(),
            calls: 500,
            run: Vec::new(),
            timeout: None,
            loglevel: 1,
        }
    }
}

/// Splits a kernel command line into `key` / `key=value` words; double
/// quotes group words and are removed (the kernel's own `next_arg` rules).
pub fn split_cmdline(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

fn parse_ifup(v: &str) -> Result<(String, [u8; 4], u8), String> {
    let bad = || format!("observer.ifup={v}: expected IFACE:A.B.C.D/PREFIX");
    let (iface, cidr) = v.split_once(':').ok_or_else(bad)?;
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let ip: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(bad());
    }
    Ok((iface.to_owned(), ip.octets(), prefix))
}

/// The plan from a kernel command line; unknown `observer.` keys are
/// errors (a typo must not pass silently), other parameters are the
/// kernel's.
pub fn parse_plan(cmdline: &str) -> Result<Plan, String> {
    let mut p = Plan::default();
    for w in split_cmdline(cmdline) {
        let Some(rest) = w.strip_prefix("observer.") else {
            continue;
        };
        let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("observer.{k}={v}: not a number"))
        };
        match k {
            "insmod" => p
                .insmod
                .extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned)),
            "ifup" => p.ifup = Some(parse_ifup(v)?),
            "facts" => p.facts = v != "0",
            "syscall" => {
                if syscall_nr(v).is_none() {
                    return Err(format!(
                        "observer.syscall={v}: one of {}",
                        WORKLOAD_SYSCALLS.map(|s| s.0).join(", ")
                    ));
                }
                p.syscall = v.to_owned();
            }
            "calls" => p.calls = num(v)?,
            "run" => p.run = v.split_whitespace().map(str::to_owned).collect(),
            "timeout" => p.timeout = Some(Duration::from_secs(num(v)?)),
            "loglevel" => p.loglevel = num(v)?.min(8) as u8,
            _ => return Err(format!("unknown parameter observer.{k}")),
        }
    }
    Ok(p)
}

/// The syscalls the workload can repeat: cheap, argument-free, harmless.
pub const WORKLOAD_SYSCALLS: [(&str, libc::c_long); 4] = [
    ("getppid", libc::SYS_getppid),
    ("getpid", libc::SYS_getpid),
    ("gettid", libc::SYS_gettid),
    ("getuid", libc::SYS_getuid),
];

pub fn syscall_nr(name: &str) -> Option<libc::c_long> {
    WORKLOAD_SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| *nr)
}

/// What the workload saw of its kernel, and what it did: the same line in
/// a container and in a VM.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Facts {
    #[serde(rename = "type")]
    pub kind: String,
    pub release: String,
    pub version: String,
    pub machine: String,
    pub boot_id: String,
    /// The kernel's uptime when the workload started (/proc/uptime).
    pub uptime_s: f64,
    pub pid: u32,
    pub syscall: String,
    pub calls: u64,
    pub ns_per_call: f64,
    /// Its cgroup's memory, as it reads it from inside (a container's own
    /// cgroup; none in a VM, whose memory is the VMM's on the host).
    pub cgroup_memory_bytes: Option<u64>,
    pub cgroup_memory_peak_bytes: Option<u64>,
}

/// The memory of the cgroup we run in, read from inside: cgroup2's
/// memory.current/peak, else v1's usage_in_bytes/max_usage_in_bytes (the
/// runtime mounts the container's own cgroup there).
fn own_cgroup_memory() -> (Option<u64>, Option<u64>) {
    let read = |p: &str| fs::read_to_string(p).ok()?.trim().parse::<u64>().ok();
    match read("/sys/fs/cgroup/memory.current") {
        Some(cur) => (Some(cur), read("/sys/fs/cgroup/memory.peak")),
        None => (
            read("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
            read("/sys/fs/cgroup/memory/memory.max_usage_in_bytes"),
        ),
    }
}

pub const FACTS_TYPE: &str = "workload_facts";

/// Reads the kernel's identity, then makes exactly `calls` calls of
/// `syscall` (a name from `WORKLOAD_SYSCALLS`).
pub fn workload(syscall: &str, calls: u64) -> Result<Facts, String> {
    let nr = syscall_nr(syscall).ok_or_else(|| format!("unknown workload syscall {syscall}"))?;
    let k = crate::kernel_info::KernelInfo::read();
    let uptime_s = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let start = Instant::now();
    for _ in 0..calls {
        // SAFETY: the workload syscalls take no arguments and cannot fail.
        unsafe { libc::syscall(nr) };
    }
    let elapsed = start.elapsed();
    let (cgroup_memory_bytes, cgroup_memory_peak_bytes) = own_cgroup_memory();
    Ok(Facts {
        cgroup_memory_bytes,
        cgroup_memory_peak_bytes,
        kind: FACTS_TYPE.into(),
        release: k.release,
        version: k.version,
        machine: k.machine,
        boot_id: k.boot_id,
        uptime_s,
        pid: std::process::id(),
        syscall: syscall.into(),
        calls,
        ns_per_call: elapsed.as_nanos() as f64 / calls.max(1) as f64,
    })
}

/// One line on the console in a single write (kernel messages must not
/// land in the middle of it).
fn say(v: serde_json::Value) {
    let mut line = v.to_string();
    line.push('\n');
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

fn error(what: &str) {
    say(serde_json::json!({"type": "init_error", "error": what}));
}

fn mount(src: &str, target: &str, fstype: &str) -> Result<(), String> {
    let _ = fs::create_dir_all(target);
    let c = |s: &str| CString::new(s).expect("no NUL");
    let (s, t, f) = (c(src), c(target), c(fstype));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(format!(
            "mount {fstype} on {target}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn insmod(path: &str) -> Result<(), String> {
    let f = fs::File::open(path).map_err(|e| format!("open module {path}: {e}"))?;
    // MODULE_INIT_COMPRESSED_FILE (linux/module.h): the kernel decompresses.
    let flags = if path.ends_with(".ko") { 0 } else { 4 };
    // SAFETY: a valid fd and an empty, NUL-terminated parameter string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), flags) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("load module {path}: {e}"));
        }
    }
    Ok(())
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: a zeroed ifreq is valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    r
}

fn sockaddr(ip: [u8; 4]) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Brings `iface` up (with an IPv4 address when given).
fn ifup(iface: &str, addr: Option<([u8; 4], u8)>) -> Result<(), String> {
    // SAFETY: plain socket and ioctl calls on structs we own.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if s < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let io = |req: libc::c_ulong, r: &mut libc::ifreq, what: &str| {
            if libc::ioctl(s, req as _, r as *mut libc::ifreq) != 0 {
                Err(format!(
                    "{what} {iface}: {}",
                    std::io::Error::last_os_error()
                ))
            } else {
                Ok(())
            }
        };
        let result = (|| {
            if let Some((ip, prefix)) = addr {
                let mut r = ifreq(iface);
                r.ifr_ifru.ifru_addr = sockaddr(ip);
                io(libc::SIOCSIFADDR, &mut r, "set the address of")?;
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                };
                let mut r = ifreq(iface);
                r.ifr_ifru.ifru_netmask = sockaddr(mask.to_be_bytes());
                io(libc::SIOCSIFNETMASK, &mut r, "set the netmask of")?;
            }
            let mut r = ifreq(iface);
            io(libc::SIOCGIFFLAGS, &mut r, "read the flags of")?;
            r.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            io(libc::SIOCSIFFLAGS, &mut r, "bring up")
        })();
        libc::close(s);
        result
    }
}

fn run(argv: &[String], timeout: Option<Duration>) -> Result<i32, String> {
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .spawn()
        .map_err(|e| format!("start {}: {e}", argv[0]))?;
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if let Some(st) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            return Ok(st.code().unwrap_or(128 + 9));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{} still ran after {:?}: killed", argv[0], timeout));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// PID 1's whole life: mount, follow the plan, power off. Never returns.
pub fn main() -> ! {
    // The basics; the rest only where this kernel has them.
    for (src, target, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        if let Err(e) = mount(src, target, fstype) {
            error(&e);
        }
    }
    for (src, target, fstype) in [
        ("tmpfs", "/tmp", "tmpfs"),
        ("tmpfs", "/run", "tmpfs"),
        ("tracefs", "/sys/kernel/tracing", "tracefs"),
        ("debugfs", "/sys/kernel/debug", "debugfs"),
        ("bpf", "/sys/fs/bpf", "bpf"),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
    ] {
        let _ = mount(src, target, fstype);
    }
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    match parse_plan(&cmdline) {
        Err(e) => error(&e),
        Ok(plan) => {
            // SYSLOG_ACTION_CONSOLE_LEVEL: only messages below this level.
            // SAFETY: no buffer is used by this action.
            unsafe { libc::klogctl(8, std::ptr::null_mut(), plan.loglevel.into()) };
            follow(&plan);
        }
    }
    say(serde_json::json!({"type": "init_done"}));
    // SAFETY: sync and power off; PID 1 must never exit (the kernel panics).
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn follow(plan: &Plan) {
    for m in &plan.insmod {
        if let Err(e) = insmod(m) {
            error(&e);
        }
    }
    if let Some((iface, ip, prefix)) = &plan.ifup {
        if let Err(e) = ifup("lo", None).and_then(|_| ifup(iface, Some((*ip, *prefix)))) {
            error(&e);
        }
    }
    if plan.facts {
        match workload(&plan.syscall, plan.calls) {
            Ok(f) => say(serde_json::to_value(f).expect("facts serialize")),
            Err(e) => error(&e),
        }
    }
    if !plan.run.is_empty() {
        match run(&plan.run, plan.timeout) {
            Ok(status) => say(serde_json::json!({"type": "init_run", "status": status})),
            Err(e) => error(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_like_the_kernels() {
        let table: &[(&str, &[&str])] = &[
            ("console=ttyS0 quiet", &["console=ttyS0", "quiet"]),
            (
                "a observer.run=\"/bin/observer --duration 5\" b\n",
                &["a", "observer.run=/bin/observer --duration 5", "b"],
            ),
            ("  x  ", &["x"]),
            ("k=\"\"", &["k="]),
        ];
        for (line, want) in table {
            assert_eq!(split_cmdline(line), *want, "{line}");
        }
    }

    #[test]
    fn plans_from_real_command_lines() {
        let p = parse_plan(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 panic=-1 observer.calls=42 observer.syscall=getpid",
        )
        .unwrap();
        assert_eq!((p.calls, p.syscall.as_str(), p.facts), (42, "getpid", true));
        assert!(p.run.is_empty());
        let p = parse_plan(
            "console=ttyS0 observer.facts=0 observer.insmod=/lib/modules/failover.ko,/lib/modules/net_failover.ko \
             observer.insmod=/lib/modules/virtio_net.ko observer.ifup=eth0:10.0.2.15/24 \
             observer.run=\"/bin/observer --mode count --duration 5\" observer.timeout=60 observer.loglevel=7",
        )
        .unwrap();
        assert!(!p.facts);
        assert_eq!(p.insmod.len(), 3);
        assert_eq!(p.ifup, Some(("eth0".into(), [10, 0, 2, 15], 24)));
        assert_eq!(
            p.run,
            ["/bin/observer", "--mode", "count", "--duration", "5"]
        );
        assert_eq!(p.timeout, Some(Duration::from_secs(60)));
        assert_eq!(p.loglevel, 7);
        assert_eq!(parse_plan("").unwrap(), Plan::default());
        for bad in [
            "observer.calls=many",
            "observer.syscall=reboot",
            "observer.ifup=eth0",
            "observer.ifup=eth0:10.0.2.15/33",
            "observer.colls=5",
        ] {
            assert!(parse_plan(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_workload_makes_its_calls_and_reads_its_kernel() {
        let f = workload("getppid", 10).unwrap();
        assert_eq!(f.calls, 10);
        assert_eq!(f.kind, FACTS_TYPE);
        assert_eq!(f.release, crate::kernel_info::KernelInfo::read().release);
        assert!(f.uptime_s > 0.0);
        assert!(workload("open", 1).is_err());
    }
}
