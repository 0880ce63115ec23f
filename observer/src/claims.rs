//! What a container may do to the kernel every other container shares, from
//! the credentials and seccomp state the kernel read at its exec, and the
//! lesson's words for the risky ones.

use serde::Serialize;

use crate::kernel_info::HostNamespaces;

/// Capability names by bit (include/uapi/linux/capability.h,
/// https://elixir.bootlin.com/linux/v6.18/source/include/uapi/linux/capability.h).
pub const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Capabilities that reach the shared kernel (or the host) directly.
pub const RISKY_CAPS: [&str; 4] = [
    "CAP_SYS_ADMIN",
    "CAP_SYS_MODULE",
    "CAP_BPF",
    "CAP_SYS_PTRACE",
];
/// Host namespaces whose sharing reaches the host.
pub const RISKY_NAMESPACES: [&str; 2] = ["pid", "mnt"];

/// The `"privilege"` object of a summary entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Privilege {
    pub capabilities: Vec<String>,
    pub privileged: bool,
    pub host_namespaces: Vec<&'static str>,
    pub seccomp: &'static str,
    pub no_new_privs: bool,
}

/// Names of the bits set in a capability mask (unknown bits as `CAP_<n>`).
pub fn cap_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| {
            CAP_NAMES
                .get(b)
                .map_or_else(|| format!("CAP_{b}"), |n| (*n).to_owned())
        })
        .collect()
}

/// Every capability this kernel knows (`cap_last_cap`).
pub fn full_set(cap_last_cap: u32) -> u64 {
    if cap_last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (cap_last_cap + 1)) - 1
    }
}

/// The full capability set on this host: what its init may ever hold
/// (`CapBnd` of PID 1, or of this process), which is every capability the
/// kernel knows unless the host itself runs with fewer (a root without
/// CAP_SYS_RESOURCE, as in some VMs: there Docker refuses `--privileged`).
pub fn host_full_set() -> u64 {
    let bnd = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapBnd:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
    };
    bnd("1").or_else(|| bnd("self")).unwrap_or_else(|| {
        let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(CAP_NAMES.len() as u32 - 1);
        full_set(last)
    })
}

pub fn seccomp_name(mode: u32) -> &'static str {
    match mode {
        0 => "disabled",
        1 => "strict",
        2 => "filter",
        _ => "unknown",
    }
}

impl Privilege {
    /// From what the kernel read at exec: the effective capabilities,
    /// seccomp mode and no_new_privs, and the task's namespaces as
    /// (pid, mnt, uts, net) inodes compared with the host's; `full` is the
    /// host's full capability set (`host_full_set`).
    pub fn from_exec(
        cap_effective: u64,
        seccomp_mode: u32,
        no_new_privs: u32,
        ns: (u32, u32, u32, u32),
        host: &HostNamespaces,
        full: u64,
    ) -> Self {
        let host_namespaces = [
            ("pid", ns.0, host.pidns),
            ("mnt", ns.1, host.mntns),
            ("uts", ns.2, host.utsns),
            ("net", ns.3, host.netns),
        ]
        .into_iter()
        .filter(|(_, own, host)| *own != 0 && own == host)
        .map(|(n, _, _)| n)
        .collect();
        Privilege {
            capabilities: cap_names(cap_effective),
            privileged: cap_effective & full == full,
            host_namespaces,
            seccomp: seccomp_name(seccomp_mode),
            no_new_privs: no_new_privs != 0,
        }
    }

    /// What makes it risky, in the lesson's words; empty when nothing does.
    pub fn risks(&self) -> Vec<String> {
        let mut out = Vec::new();
        let caps: Vec<&str> = RISKY_CAPS
            .iter()
            .copied()
            .filter(|c| self.capabilities.iter().any(|h| h == c))
            .collect();
        if self.privileged {
            out.push(
                "privileged: it holds every capability and can reach the kernel every other container shares"
                    .to_owned(),
            );
        } else if !caps.is_empty() {
            out.push(format!(
                "holds {}: it can reach the kernel every other container shares",
                caps.join(", ")
            ));
        }
        let ns: Vec<&str> = RISKY_NAMESPACES
            .iter()
            .copied()
            .filter(|n| self.host_namespaces.contains(n))
            .collect();
        if !ns.is_empty() {
            out.push(format!(
                "shares the host's {} namespace{}: it can reach the host",
                ns.join(" and "),
                if ns.len() > 1 { "s" } else { "" }
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker's default capability set (moby's `oci/caps/defaults.go`).
    pub const DOCKER_DEFAULT: [&str; 14] = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];

    fn host() -> HostNamespaces {
        HostNamespaces {
            pidns: 4026531836,
            mntns: 4026531841,
            utsns: 4026531838,
            netns: 4026531840,
        }
    }

    #[test]
    fn a_default_docker_container() {
        // CapEff of a default `docker run` process.
        let p = Privilege::from_exec(
            0xa80425fb,
            2,
            0,
            (4026532301, 4026532299, 4026532300, 4026532303),
            &host(),
            full_set(40),
        );
        let mut want: Vec<&str> = DOCKER_DEFAULT.to_vec();
        want.sort_unstable();
        let mut got: Vec<&str> = p.capabilities.iter().map(String::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, want);
        assert!(!p.privileged);
        assert_eq!(p.seccomp, "filter");
        assert!(p.host_namespaces.is_empty());
        assert!(p.risks().is_empty());
    }

    #[test]
    fn a_privileged_container_with_the_hosts_pid_namespace() {
        let p = Privilege::from_exec(
            0x1ff_ffff_ffff,
            0,
            0,
            (4026531836, 4026532299, 4026532300, 4026531840),
            &host(),
            full_set(40),
        );
        assert!(p.privileged);
        assert_eq!(p.capabilities.len(), 41);
        assert_eq!(p.host_namespaces, vec!["pid", "net"]);
        assert_eq!(p.seccomp, "disabled");
        let r = p.risks();
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(
            r[0].contains("privileged") && r[0].contains("kernel every other container shares")
        );
        assert!(r[1].contains("host's pid namespace") && r[1].contains("reach the host"));
        // One risky capability, without the rest.
        let bpf = Privilege::from_exec(1 << 39, 2, 1, (1, 2, 3, 4), &host(), full_set(40));
        assert!(bpf.no_new_privs && !bpf.privileged);
        assert_eq!(
            bpf.risks(),
            vec!["holds CAP_BPF: it can reach the kernel every other container shares"]
        );
        // A host whose root lacks CAP_SYS_RESOURCE: its full set is that.
        let host_set = 0x1fffeffffff;
        assert!(Privilege::from_exec(host_set, 0, 0, (1, 2, 3, 4), &host(), host_set).privileged);
        // Docker 20.10's `--cap-add ALL` stops at CAP_AUDIT_READ (37).
        assert!(
            !Privilege::from_exec(0x3ffeffffff, 0, 0, (1, 2, 3, 4), &host(), host_set).privileged
        );
        assert_eq!(cap_names(1 << 50), vec!["CAP_50"]);
    }
}

/// How a container started: from its cgroup's creation to the first exec
/// of its own command.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Startup {
    pub start_ms: f64,
    /// Syscalls made in the cgroup before that exec: the runtime's work.
    pub runtime_setup_syscalls: u64,
}

/// Whether an exec is the container's own command rather than its
/// runtime's init (`runc init` re-executes `/proc/self/exe`, and keeps a
/// `runc:[…]` name until the container's command replaces it).
pub fn own_command(comm: &[u8], filename: &[u8]) -> bool {
    !(comm.starts_with(b"runc")
        || comm.starts_with(b"crun")
        || comm.starts_with(b"conmon")
        || filename == b"/proc/self/exe")
}

/// Refused forks of one cgroup in the current interval.
#[derive(Clone, Debug, Default)]
struct Refused {
    count: u64,
    /// The last task refused, where the kernel program named it
    /// (`--refused-fork-tasks`); unknown from the cgroup's counter.
    task: Option<(u32, String)>,
    /// The container's JSON, once an event or a summary entry gave it.
    json: Option<std::sync::Arc<str>>,
    /// The pids limit read while the refusals were counted (the cgroup,
    /// and its files, may be gone by the time they are reported).
    limit: Option<u64>,
}

/// Per container, cumulative: the limits the kernel enforced on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EnforcedTotals {
    pub oom_kill: u64,
    pub pids_limit: u64,
    pub cpu_throttled: u64,
}

/// Start times: each container cgroup from its creation to its own
/// command's first exec, and the syscalls made in it meanwhile. Fed by
/// attribution, which sees every event in order.
#[derive(Debug, Default)]
pub struct Starts {
    /// cgroup -> (mkdir ts, syscalls so far) until its own command's exec.
    starting: rustc_hash::FxHashMap<u64, (u64, u64)>,
}

impl Starts {
    /// A container's cgroup was made at `ts`.
    pub fn cgroup_made(&mut self, cg: u64, ts: u64) {
        self.starting.insert(cg, (ts, 0));
    }

    /// Whether the cgroup's start is still awaited (its start record waits).
    pub fn starting(&self, cg: u64) -> bool {
        self.starting.contains_key(&cg)
    }

    /// A syscall in the cgroup: counted while its runtime sets it up.
    #[inline]
    pub fn syscall(&mut self, cg: u64) {
        if self.starting.is_empty() {
            return;
        }
        if let Some((_, n)) = self.starting.get_mut(&cg) {
            *n += 1;
        }
    }

    /// An exec in the cgroup; the container's start when it is its own
    /// command's first.
    pub fn exec(&mut self, cg: u64, ts: u64, comm: &[u8], filename: &[u8]) -> Option<Startup> {
        if !own_command(comm, filename) {
            return None;
        }
        let (made, n) = self.starting.remove(&cg)?;
        Some(Startup {
            start_ms: (ts.saturating_sub(made) as f64 / 1e3).round() / 1e3,
            runtime_setup_syscalls: n,
        })
    }

    /// The start is not coming (the cgroup is gone, or never exec'd).
    pub fn give_up(&mut self, cg: u64) {
        self.starting.remove(&cg);
    }

    /// Gives up the starts whose cgroup was made before `before` (boot-time
    /// ns); returns their cgroups.
    pub fn expired(&mut self, before: u64) -> Vec<u64> {
        let gone: Vec<u64> = self
            .starting
            .iter()
            .filter(|(_, (made, _))| *made < before)
            .map(|(cg, _)| *cg)
            .collect();
        for cg in &gone {
            self.starting.remove(cg);
        }
        gone
    }
}

/// One enforcement record: `{"type":"enforced", …}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enforced {
    /// Boot-time ns.
    pub ts: u64,
    /// `oom_kill`, `pids_limit` or `cpu_throttled`.
    pub kind: &'static str,
    pub json: std::sync::Arc<str>,
    pub cgroup_id: u64,
    /// The task, where one is to blame (not for throttling).
    pub task: Option<(u32, String)>,
    pub count: u64,
    /// In the limit's own unit: bytes, PIDs, or µs of quota per period.
    pub limit: Option<u64>,
}

/// The claims fields of a container's summary entry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntryClaims {
    pub limits: crate::limits::Limits,
    pub usage: crate::limits::Usage,
    pub enforced: EnforcedTotals,
    pub startup: Option<Startup>,
    pub privilege: Option<Privilege>,
}

/// The lesson's claims per cgroup: privilege at exec, and the limits the
/// kernel enforced, from its events and from the cgroup files.
#[derive(Debug)]
pub struct Claims {
    pub files: crate::limits::CgroupReader,
    pub startup: rustc_hash::FxHashMap<u64, Startup>,
    pub privilege: rustc_hash::FxHashMap<u64, Privilege>,
    refused: rustc_hash::FxHashMap<u64, Refused>,
    totals: rustc_hash::FxHashMap<u64, EnforcedTotals>,
    host_ns: HostNamespaces,
    host_caps: u64,
    /// Refused forks come from the kernel program on the fork syscalls'
    /// exits (`--refused-fork-tasks`: with the task's pid and comm), not
    /// from the cgroups' `pids.events` counters: one source per run, so
    /// that no fork is counted twice.
    pub refused_from_program: bool,
}

impl Claims {
    pub fn new(layout: crate::limits::Layout, host_ns: HostNamespaces, host_caps: u64) -> Self {
        Claims {
            files: crate::limits::CgroupReader::new(layout),
            startup: Default::default(),
            privilege: Default::default(),
            refused: Default::default(),
            totals: Default::default(),
            host_ns,
            host_caps,
            refused_from_program: false,
        }
    }

    pub fn from_host(host_ns: HostNamespaces) -> Self {
        Claims::new(crate::limits::Layout::from_host(), host_ns, host_full_set())
    }

    /// See `refused_from_program`.
    pub fn with_refused_from_program(mut self, yes: bool) -> Self {
        self.refused_from_program = yes;
        self
    }

    /// A container started: its limits are in place once its command runs.
    pub fn started(&mut self, container: &crate::container::Container, cg: u64, s: Startup) {
        self.startup.insert(cg, s);
        self.files.refresh(cg, &container.cgroup);
    }

    /// The privilege of the container's own command, at its first exec.
    pub fn exec_privilege(&mut self, r: &observer_common::PrivilegeRecord) {
        let h = &r.header;
        let comm = crate::decode::cstr(&h.comm);
        if !own_command(comm, b"") || self.privilege.contains_key(&h.cgroup_id) {
            return;
        }
        let p = Privilege::from_exec(
            r.cap_effective,
            r.seccomp_mode,
            r.no_new_privs,
            (h.pidns, h.mntns, h.utsns, h.netns),
            &self.host_ns,
            self.host_caps,
        );
        self.privilege.insert(h.cgroup_id, p);
    }

    /// An OOM kill (a record of its own) or a refused fork (summed per
    /// interval, in `interval`).
    pub fn enforced(
        &mut self,
        container: &crate::container::Container,
        json: &std::sync::Arc<str>,
        r: &observer_common::EnforcedRecord,
    ) -> Option<Enforced> {
        let h = &r.header;
        let reading = self.files.refresh(h.cgroup_id, &container.cgroup);
        let comm = String::from_utf8_lossy(crate::decode::cstr(&h.comm)).into_owned();
        match r.what {
            observer_common::ENFORCED_OOM_KILL => {
                self.totals.entry(h.cgroup_id).or_default().oom_kill += 1;
                Some(Enforced {
                    ts: h.ts,
                    kind: "oom_kill",
                    json: json.clone(),
                    cgroup_id: h.cgroup_id,
                    task: Some((h.pid, comm)),
                    count: 1,
                    limit: reading.limits.memory_bytes,
                })
            }
            // -EAGAIN in a cgroup whose `pids.max` says `max` is
            // RLIMIT_NPROC's. One whose `pids.max` can't be read (removed
            // by the time its records are read: the runtime tears a
            // short-lived container down at once, controller by
            // controller) had a limit when the kernel refused the fork, as
            // far as can be told: it counts.
            observer_common::ENFORCED_PIDS_LIMIT
                if self.refused_from_program
                    && (reading.limits.pids.is_some() || !reading.pids_max_read) =>
            {
                let f = self.refused.entry(h.cgroup_id).or_default();
                f.count += 1;
                f.task = Some((h.pid, comm));
                f.json = Some(json.clone());
                f.limit = reading.limits.pids.or(f.limit);
                None
            }
            _ => None,
        }
    }

    /// Forks refused since the previous reading of the cgroup's counter.
    fn count_refused(&mut self, cg: u64, grown: u64) {
        if grown > 0 && !self.refused_from_program {
            self.refused.entry(cg).or_default().count += grown;
        }
    }

    /// A task of the container exited: when the container has a pids
    /// limit, its refused-fork count is read now, while its cgroup is
    /// still there (the runtime removes it, and the count with it, soon
    /// after its last task exits, possibly before the next summary). One
    /// small file read per exit, in limited containers only.
    pub fn task_exit(&mut self, cg: u64, rel: &str) {
        let limited = self.files.last(cg).is_some_and(|r| r.limits.pids.is_some());
        if self.refused_from_program || !limited {
            return;
        }
        let grown = self.files.refresh_refused(cg, rel);
        self.count_refused(cg, grown);
    }

    /// At a summary: reads each shown container's cgroup files into its
    /// entry, and returns the interval's enforcement records: CPU
    /// throttling as the growth of the throttled counter, and the refused
    /// forks (the growth of the pids controller's counter, or what the
    /// kernel program saw with `--refused-fork-tasks`).
    pub fn interval(&mut self, entries: &mut [crate::summary::Entry], now: u64) -> Vec<Enforced> {
        let mut out = Vec::new();
        for e in entries.iter_mut() {
            let (Some(cg), Some(c)) = (e.cgroup_id, &e.container) else {
                continue;
            };
            let r = self.files.refresh(cg, &c.cgroup);
            let refused = self.files.refused_growth(cg, r.pids_refused);
            self.count_refused(cg, refused);
            if let Some(f) = self.refused.get_mut(&cg) {
                f.json.get_or_insert_with(|| e.json.clone());
            }
            let grown = self.files.throttled_growth(cg, &r);
            if grown > 0 {
                self.totals.entry(cg).or_default().cpu_throttled += grown;
                out.push(Enforced {
                    ts: now,
                    kind: "cpu_throttled",
                    json: e.json.clone(),
                    cgroup_id: cg,
                    task: None,
                    count: grown,
                    limit: r.limits.cpu_quota_us,
                });
            }
        }
        // A count read at a task's exit waits for the container's JSON: the
        // next summary entry that shows it (its exit is activity, so the
        // same interval's as a rule).
        let ready: Vec<u64> = self
            .refused
            .iter()
            .filter(|(_, f)| f.json.is_some())
            .map(|(cg, _)| *cg)
            .collect();
        for cg in ready {
            let Some(Refused {
                count,
                task,
                json: Some(json),
                limit,
            }) = self.refused.remove(&cg)
            else {
                continue;
            };
            self.totals.entry(cg).or_default().pids_limit += count;
            out.push(Enforced {
                ts: now,
                kind: "pids_limit",
                json,
                cgroup_id: cg,
                task,
                count,
                limit: self.files.last(cg).and_then(|l| l.limits.pids).or(limit),
            });
        }
        for e in entries.iter_mut() {
            let (Some(cg), Some(_)) = (e.cgroup_id, &e.container) else {
                continue;
            };
            let r = self.files.last(cg).unwrap_or_default();
            e.claims = Some(EntryClaims {
                limits: r.limits,
                usage: r.usage,
                enforced: self.totals.get(&cg).copied().unwrap_or_default(),
                startup: self.startup.get(&cg).copied(),
                privilege: self.privilege.get(&cg).cloned(),
            });
        }
        out
    }

    pub fn forget(&mut self, cg: u64) {
        self.files.forget(cg);
        self.startup.remove(&cg);
        self.privilege.remove(&cg);
        self.refused.remove(&cg);
        self.totals.remove(&cg);
    }
}

#[cfg(test)]
mod start_tests {
    use super::*;

    /// cgroup made, the runtime's syscalls, runc init's re-exec, then the
    /// container's command.
    #[test]
    fn start_runs_from_cgroup_to_the_containers_own_exec() {
        let mut c = Starts::default();
        c.cgroup_made(7, 1_000_000_000);
        for _ in 0..120 {
            c.syscall(7);
        }
        c.syscall(8);
        assert!(c.starting(7));
        assert_eq!(
            c.exec(7, 1_010_000_000, b"runc:[2:INIT]", b"/proc/self/exe"),
            None
        );
        let s = c.exec(7, 1_042_345_678, b"uname", b"/bin/uname").unwrap();
        assert_eq!(s.start_ms, 42.346);
        assert_eq!(s.runtime_setup_syscalls, 120);
        assert!(!c.starting(7));
        // Later execs are not a start.
        assert_eq!(c.exec(7, 1_100_000_000, b"sh", b"/bin/sh"), None);
        // A cgroup made before the observer: no start known.
        assert_eq!(c.exec(9, 5, b"sh", b"/bin/sh"), None);
    }
}

#[cfg(test)]
mod refused_tests {
    use std::{fs, sync::Arc};

    use super::*;
    use crate::{
        container::Container,
        limits::{Layout, Place},
        summary::Entry,
    };

    fn entry(cg: u64) -> Entry {
        let c = Container {
            id: "c1".into(),
            name: Some("forker".into()),
            runtime: "docker",
            image: None,
            cgroup: "/docker/c1".into(),
            pod_uid: None,
            kubernetes: None,
        };
        Entry {
            container: Some(Arc::new(c)),
            json: Arc::from(r#"{"id":"c1","name":"forker"}"#),
            cgroup_id: Some(cg),
            group: Default::default(),
            cpu: Default::default(),
            claims: None,
        }
    }

    /// The refused-fork records: (count, task, limit).
    type Refusal = (u64, Option<(u32, String)>, Option<u64>);

    fn pids(e: &[Enforced]) -> Vec<Refusal> {
        e.iter()
            .filter(|e| e.kind == "pids_limit")
            .map(|e| (e.count, e.task.clone(), e.limit))
            .collect()
    }

    /// The pids controller's counter, read each interval and at a task's
    /// exit, gives each refused fork once, without a task; after the
    /// cgroup is gone nothing more, and the total stays. With the kernel
    /// program as the source, the counter is not read as well.
    #[test]
    fn refused_forks_come_from_one_source() {
        let dir = std::env::temp_dir().join(format!("observer-refused-{}", std::process::id()));
        let cg_dir = dir.join("docker/c1");
        fs::create_dir_all(&cg_dir).unwrap();
        fs::write(cg_dir.join("pids.max"), "16\n").unwrap();
        fs::write(cg_dir.join("pids.events"), "max 0\n").unwrap();
        let layout = Layout {
            pids: Some(Place::V1(dir.clone())),
            ..Default::default()
        };
        let host = HostNamespaces {
            pidns: 1,
            mntns: 2,
            utsns: 3,
            netns: 4,
        };
        let mut c = Claims::new(layout.clone(), host, u64::MAX);
        let mut es = vec![entry(7)];
        assert!(pids(&c.interval(&mut es, 1)).is_empty());
        // Refused, then the task exits: read at once.
        fs::write(cg_dir.join("pids.events"), "max 3\n").unwrap();
        c.task_exit(7, "/docker/c1");
        fs::write(cg_dir.join("pids.events"), "max 25\n").unwrap();
        let out = c.interval(&mut es, 2);
        assert_eq!(pids(&out), vec![(25, None, Some(16))]);
        assert_eq!(out[0].json.as_ref(), r#"{"id":"c1","name":"forker"}"#);
        assert_eq!(es[0].claims.as_ref().unwrap().enforced.pids_limit, 25);
        // The same count again: nothing new.
        assert!(pids(&c.interval(&mut es, 3)).is_empty());
        // Removed: no count, no record, the total kept.
        fs::remove_dir_all(&cg_dir).unwrap();
        c.task_exit(7, "/docker/c1");
        assert!(pids(&c.interval(&mut es, 4)).is_empty());
        assert_eq!(es[0].claims.as_ref().unwrap().enforced.pids_limit, 25);

        // `--refused-fork-tasks`: the program's records only.
        fs::create_dir_all(&cg_dir).unwrap();
        fs::write(cg_dir.join("pids.max"), "16\n").unwrap();
        fs::write(cg_dir.join("pids.events"), "max 9\n").unwrap();
        let mut c = Claims::new(layout, host, u64::MAX).with_refused_from_program(true);
        c.task_exit(7, "/docker/c1");
        assert!(pids(&c.interval(&mut es, 5)).is_empty());
        assert_eq!(es[0].claims.as_ref().unwrap().enforced.pids_limit, 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// `--refused-fork-tasks`: a short-lived container's records are often
    /// read after its runtime removed the cgroup. Those still count, and
    /// the limit read with the first of them is the one reported.
    #[test]
    fn refusals_read_after_the_cgroup_went_still_count() {
        let dir = std::env::temp_dir().join(format!("observer-gone-{}", std::process::id()));
        let cg_dir = dir.join("docker/c1");
        fs::create_dir_all(&cg_dir).unwrap();
        fs::write(cg_dir.join("pids.max"), "16\n").unwrap();
        let mem_dir = std::env::temp_dir().join(format!("observer-gone-m-{}", std::process::id()));
        let layout = Layout {
            pids: Some(Place::V1(dir.clone())),
            memory: Some(Place::V2(mem_dir.clone())),
            ..Default::default()
        };
        let mut c = Claims::new(layout, HostNamespaces::default(), u64::MAX)
            .with_refused_from_program(true);
        let mut es = vec![entry(7)];
        let container = es[0].container.clone().unwrap();
        let json = es[0].json.clone();
        let mut r = observer_common::EnforcedRecord {
            what: observer_common::ENFORCED_PIDS_LIMIT,
            ..Default::default()
        };
        r.header.cgroup_id = 7;
        r.header.pid = 42;
        assert!(c.enforced(&container, &json, &r).is_none());
        // Torn down controller by controller: the pids directory goes
        // first, the memory one is still there for a moment.
        fs::remove_dir_all(&cg_dir).unwrap();
        fs::create_dir_all(mem_dir.join("docker/c1")).unwrap();
        fs::write(mem_dir.join("docker/c1/memory.max"), "max\n").unwrap();
        for _ in 0..12 {
            assert!(c.enforced(&container, &json, &r).is_none());
        }
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&mem_dir).unwrap();
        for _ in 0..12 {
            assert!(c.enforced(&container, &json, &r).is_none());
        }
        c.files.forget(7);
        let out = c.interval(&mut es, 1);
        assert_eq!(pids(&out), vec![(25, Some((42, String::new())), Some(16))]);
    }
}
