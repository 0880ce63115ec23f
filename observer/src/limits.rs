//! What the kernel's cgroups allow a container and what it uses, read from
//! its cgroup files once per interval: the memory, pids and cpu controllers,
//! each from the hierarchy it is mounted on (v1 controllers on v1 and hybrid
//! hosts, the unified hierarchy where it holds the controller).
//!
//! Parsing is pure: a layout from the mount table and the unified root's
//! `cgroup.controllers`, and values from file contents handed in by a reader,
//! so that tests drive it with real v1 and v2 files.

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
};

use serde::Serialize;

/// `"limits"` of a summary entry: null where unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: Option<u64>,
}

/// `"usage"` of a summary entry: null where the file is missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub memory_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// Cumulative: periods in which the CFS bandwidth limit stopped it.
    pub cpu_throttled_periods: Option<u64>,
}

/// One cgroup's reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub limits: Limits,
    pub usage: Usage,
    /// Cumulative: forks the pids controller refused, from the cgroup's
    /// `pids.events` (see `Layout::refused_forks_file`).
    pub pids_refused: Option<u64>,
    /// How many of the cgroup's files could be read.
    pub files: u8,
    /// Whether `pids.max` itself could be read: a runtime tearing a
    /// container down removes its controllers' directories one by one, so
    /// a present cgroup with no pids limit may only mean the pids one went
    /// first.
    pub pids_max_read: bool,
}

impl Reading {
    /// Whether any file of the cgroup could be read (false: removed, or
    /// never there).
    pub fn present(&self) -> bool {
        self.files > 0
    }
}

/// Where a controller's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    V1(PathBuf),
    V2(PathBuf),
}

/// Which hierarchy holds each controller the observer reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub memory: Option<Place>,
    pub pids: Option<Place>,
    pub cpu: Option<Place>,
}

impl Layout {
    /// From the mount table and the unified root's `cgroup.controllers`
    /// (empty when there is no cgroup2 mount). A controller is on v1 when a
    /// v1 hierarchy is mounted with it, else on v2 when the unified root
    /// lists it (the kernel binds a controller to one hierarchy only).
    pub fn parse(mountinfo: &str, v2_controllers: &str) -> Layout {
        let mut v1: HashMap<&str, PathBuf> = HashMap::new();
        let mut v2_root = None;
        for l in mountinfo.lines() {
            let Some((pre, post)) = l.split_once(" - ") else {
                continue;
            };
            let mut post = post.split_whitespace();
            let (Some(fstype), Some(_src), Some(opts)) = (post.next(), post.next(), post.next())
            else {
                continue;
            };
            let Some(mount_point) = pre.split_whitespace().nth(4) else {
                continue;
            };
            match fstype {
                "cgroup" => {
                    for o in opts.split(',') {
                        v1.entry(o).or_insert_with(|| PathBuf::from(mount_point));
                    }
                }
                "cgroup2" => v2_root = v2_root.or_else(|| Some(PathBuf::from(mount_point))),
                _ => {}
            }
        }
        let on_v2: Vec<&str> = v2_controllers.split_whitespace().collect();
        let place = |c: &str| match (v1.get(c), &v2_root) {
            (Some(p), _) => Some(Place::V1(p.clone())),
            (None, Some(root)) if on_v2.contains(&c) => Some(Place::V2(root.clone())),
            _ => None,
        };
        Layout {
            memory: place("memory"),
            pids: place("pids"),
            cpu: place("cpu"),
        }
    }

    /// This host's layout.
    pub fn from_host() -> Layout {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let v2 = crate::container::cgroup2_mount(&mountinfo)
            .and_then(|root| fs::read_to_string(root.join("cgroup.controllers")).ok())
            .unwrap_or_default();
        Layout::parse(&mountinfo, &v2)
    }

    /// Reads the cgroup at `rel` (its path from the hierarchy's root, e.g.
    /// `/docker/<id>`: runtimes name a container's cgroup alike in every
    /// hierarchy) through `read`, which returns a file's contents.
    pub fn read(&self, rel: &str, read: impl Fn(&Path) -> io::Result<String>) -> Reading {
        let rel = rel.trim_start_matches('/');
        let mut r = Reading::default();
        let mut file = |root: &Path, name: &str| -> Option<String> {
            let s = read(&root.join(rel).join(name)).ok()?;
            r.files = r.files.saturating_add(1);
            Some(s)
        };
        match &self.memory {
            Some(Place::V1(root)) => {
                r.limits.memory_bytes =
                    file(root, "memory.limit_in_bytes").and_then(|s| v1_memory_limit(&s));
                r.usage.memory_bytes = file(root, "memory.usage_in_bytes").and_then(|s| num(&s));
                r.usage.memory_peak_bytes =
                    file(root, "memory.max_usage_in_bytes").and_then(|s| num(&s));
            }
            Some(Place::V2(root)) => {
                r.limits.memory_bytes = file(root, "memory.max").and_then(|s| max_or_num(&s));
                r.usage.memory_bytes = file(root, "memory.current").and_then(|s| num(&s));
                // memory.peak is Linux 5.19+.
                r.usage.memory_peak_bytes = file(root, "memory.peak").and_then(|s| num(&s));
            }
            None => {}
        }
        if let Some(Place::V1(root) | Place::V2(root)) = &self.pids {
            // The same two files on both hierarchies.
            let max = file(root, "pids.max");
            r.pids_max_read = max.is_some();
            r.limits.pids = max.and_then(|s| max_or_num(&s));
            r.usage.pids = file(root, "pids.current").and_then(|s| num(&s));
        }
        r.pids_refused = self.read_refused_forks(rel, &read);
        match &self.cpu {
            Some(Place::V1(root)) => {
                r.limits.cpu_quota_us = file(root, "cpu.cfs_quota_us").and_then(|s| v1_quota(&s));
                r.limits.cpu_period_us = file(root, "cpu.cfs_period_us").and_then(|s| num(&s));
                r.usage.cpu_throttled_periods =
                    file(root, "cpu.stat").and_then(|s| stat_field(&s, "nr_throttled"));
            }
            Some(Place::V2(root)) => {
                if let Some((quota, period)) = file(root, "cpu.max").and_then(|s| cpu_max(&s)) {
                    r.limits.cpu_quota_us = quota;
                    r.limits.cpu_period_us = Some(period);
                }
                r.usage.cpu_throttled_periods =
                    file(root, "cpu.stat").and_then(|s| stat_field(&s, "nr_throttled"));
            }
            None => {}
        }
        r
    }

    /// Reads from the filesystem.
    pub fn read_host(&self, rel: &str) -> Reading {
        self.read(rel, |p| fs::read_to_string(p))
    }

    /// The kernel's count of forks the pids controller refused, for the
    /// cgroup at `rel`: `None` without a pids controller, or once the
    /// cgroup is removed (its files go with it).
    ///
    /// Which count, by hierarchy and kernel
    /// (https://elixir.bootlin.com/linux/v6.18/source/kernel/cgroup/pids.c):
    /// - v1, any kernel: `pids.events` counts the forks refused to the tasks
    ///   of this cgroup, whichever ancestor's limit was hit (6.18 keeps
    ///   the old local count on v1, and has no `pids.events.local` there).
    /// - v2 with `pids.events.local` (added in 2024: 6.12 and 6.18 have
    ///   it): that file counts the forks refused because this cgroup's own
    ///   `pids.max` was hit, wherever in its subtree the forking task was;
    ///   `pids.events` there is hierarchical (this cgroup's and its
    ///   descendants' limits).
    /// - v2 without it (5.10, 6.1): `pids.events` counts, like v1, the
    ///   forks refused to the tasks of this cgroup.
    ///
    /// A container's tasks live in its own cgroup, whose limit is the one
    /// `--pids-limit` sets: every reading names the same forks there.
    pub fn read_refused_forks(
        &self,
        rel: &str,
        read: impl Fn(&Path) -> io::Result<String>,
    ) -> Option<u64> {
        let dir = |root: &Path| root.join(rel.trim_start_matches('/'));
        let s = match self.pids.as_ref()? {
            Place::V1(root) => read(&dir(root).join("pids.events")).ok()?,
            Place::V2(root) => read(&dir(root).join("pids.events.local"))
                .or_else(|_| read(&dir(root).join("pids.events")))
                .ok()?,
        };
        refused_forks(&s)
    }
}

/// `pids.events`: `max N`, the forks the pids controller refused.
pub fn refused_forks(s: &str) -> Option<u64> {
    stat_field(s, "max")
}

fn num(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// `max` (unlimited) or a number: `pids.max`, `memory.max`.
pub fn max_or_num(s: &str) -> Option<u64> {
    match s.trim() {
        "max" => None,
        v => v.parse().ok(),
    }
}

/// v1 `memory.limit_in_bytes`: unlimited is the page counter's maximum in
/// bytes (`PAGE_COUNTER_MAX * PAGE_SIZE`, 9223372036854771712 with 4 KiB
/// pages), never a real limit.
pub fn v1_memory_limit(s: &str) -> Option<u64> {
    num(s).filter(|&v| v < 1 << 62)
}

/// v1 `cpu.cfs_quota_us`: -1 is unlimited.
pub fn v1_quota(s: &str) -> Option<u64> {
    s.trim()
        .parse::<i64>()
        .ok()
        .and_then(|v| u64::try_from(v).ok())
}

/// v2 `cpu.max`: `$MAX $PERIOD`, `max` for no quota.
pub fn cpu_max(s: &str) -> Option<(Option<u64>, u64)> {
    let mut it = s.split_whitespace();
    let quota = it.next()?;
    let period = it.next()?.parse().ok()?;
    let quota = match quota {
        "max" => None,
        q => Some(q.parse().ok()?),
    };
    Some((quota, period))
}

/// A `key value` line of a flat-keyed file (`cpu.stat`, `memory.events`).
pub fn stat_field(s: &str, key: &str) -> Option<u64> {
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The readings of the cgroups seen, kept after the cgroup is gone, and
/// the growth of each throttled counter since the previous interval.
#[derive(Debug)]
pub struct CgroupReader {
    layout: Layout,
    last: HashMap<u64, Reading>,
    throttled: HashMap<u64, u64>,
    refused: HashMap<u64, u64>,
}

impl CgroupReader {
    pub fn new(layout: Layout) -> Self {
        CgroupReader {
            layout,
            last: HashMap::new(),
            throttled: HashMap::new(),
            refused: HashMap::new(),
        }
    }

    /// Reads the cgroup again when it is still there; otherwise the last
    /// reading (a removed cgroup's files are gone with it).
    pub fn refresh(&mut self, cgroup_id: u64, rel: &str) -> Reading {
        let r = self.layout.read_host(rel);
        match self.last.get(&cgroup_id) {
            // Fewer files than before: the runtime is removing the
            // cgroup's directories one controller at a time. The last
            // whole reading says more about the container than the part.
            Some(last) if r.files < last.files => *last,
            _ if r.present() => {
                self.last.insert(cgroup_id, r);
                r
            }
            last => last.copied().unwrap_or_default(),
        }
    }

    /// The last reading, without reading again.
    pub fn last(&self, cgroup_id: u64) -> Option<Reading> {
        self.last.get(&cgroup_id).copied()
    }

    /// Throttled periods since the previous call for this cgroup (the first
    /// call counts from zero: the cgroup's whole life so far).
    pub fn throttled_growth(&mut self, cgroup_id: u64, r: &Reading) -> u64 {
        let Some(now) = r.usage.cpu_throttled_periods else {
            return 0;
        };
        let prev = self.throttled.insert(cgroup_id, now).unwrap_or(0);
        now.saturating_sub(prev)
    }

    /// Refused forks since the previous call for this cgroup (the first
    /// call counts from zero, like `throttled_growth`).
    pub fn refused_growth(&mut self, cgroup_id: u64, now: Option<u64>) -> u64 {
        let Some(now) = now else { return 0 };
        let prev = self.refused.insert(cgroup_id, now).unwrap_or(0);
        now.saturating_sub(prev)
    }

    /// Reads only the refused-fork count of a cgroup that is still there
    /// (a task of it exited: the cgroup may go soon, and its count with
    /// it); returns its growth since the previous reading.
    pub fn refresh_refused(&mut self, cgroup_id: u64, rel: &str) -> u64 {
        let now = self
            .layout
            .read_refused_forks(rel, |p| fs::read_to_string(p));
        if let (Some(n), Some(r)) = (now, self.last.get_mut(&cgroup_id)) {
            r.pids_refused = Some(n);
        }
        self.refused_growth(cgroup_id, now)
    }

    pub fn forget(&mut self, cgroup_id: u64) {
        self.last.remove(&cgroup_id);
        self.throttled.remove(&cgroup_id);
        self.refused.remove(&cgroup_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine kind's mount table: v1 controllers, cgroup2 beside them.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    /// systemd's hybrid layout, with the controllers in one mount each.
    const SYSTEMD_HYBRID: &str = "\
25 24 0:22 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
27 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,cpu,cpuacct
30 24 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
33 24 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
";
    const V2: &str =
        "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

    fn files(list: &[(&str, &str)]) -> impl Fn(&Path) -> io::Result<String> {
        let m: HashMap<PathBuf, String> = list
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.to_string()))
            .collect();
        move |p: &Path| {
            m.get(p)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }

    #[test]
    fn finds_each_controller_on_its_hierarchy() {
        let l = Layout::parse(HYBRID, "hugetlb\n");
        assert_eq!(l.memory, Some(Place::V1("/sys/fs/cgroup/memory".into())));
        assert_eq!(l.pids, Some(Place::V1("/sys/fs/cgroup/pids".into())));
        assert_eq!(l.cpu, Some(Place::V1("/sys/fs/cgroup/cpu".into())));
        let l = Layout::parse(SYSTEMD_HYBRID, "");
        assert_eq!(l.cpu, Some(Place::V1("/sys/fs/cgroup/cpu,cpuacct".into())));
        let l = Layout::parse(V2, "cpuset cpu io memory hugetlb pids rdma misc\n");
        assert_eq!(l.memory, Some(Place::V2("/sys/fs/cgroup".into())));
        assert_eq!(l.cpu, Some(Place::V2("/sys/fs/cgroup".into())));
        // cgroup2 mounted, but the controllers not enabled at its root.
        let l = Layout::parse(V2, "");
        assert_eq!(l, Layout::default());
    }

    /// Real files of `docker run --memory 32m --pids-limit 16 --cpus 0.2` on
    /// a hybrid host (cgroupfs driver).
    #[test]
    fn reads_v1_limits_and_usage() {
        let l = Layout::parse(HYBRID, "");
        let d = "/docker/3f4e8c2a";
        let read = files(&[
            (
                "/sys/fs/cgroup/memory/docker/3f4e8c2a/memory.limit_in_bytes",
                "33554432\n",
            ),
            (
                "/sys/fs/cgroup/memory/docker/3f4e8c2a/memory.usage_in_bytes",
                "1216512\n",
            ),
            (
                "/sys/fs/cgroup/memory/docker/3f4e8c2a/memory.max_usage_in_bytes",
                "33554432\n",
            ),
            ("/sys/fs/cgroup/pids/docker/3f4e8c2a/pids.max", "16\n"),
            ("/sys/fs/cgroup/pids/docker/3f4e8c2a/pids.current", "3\n"),
            ("/sys/fs/cgroup/cpu/docker/3f4e8c2a/cpu.cfs_quota_us", "20000\n"),
            ("/sys/fs/cgroup/cpu/docker/3f4e8c2a/cpu.cfs_period_us", "100000\n"),
            (
                "/sys/fs/cgroup/cpu/docker/3f4e8c2a/cpu.stat",
                "nr_periods 31\nnr_throttled 29\nthrottled_time 2318725160\nnr_bursts 0\nburst_time 0\n",
            ),
        ]);
        let r = l.read(d, read);
        assert!(r.present());
        assert_eq!(
            r.limits,
            Limits {
                memory_bytes: Some(32 << 20),
                pids: Some(16),
                cpu_quota_us: Some(20000),
                cpu_period_us: Some(100000),
            }
        );
        assert_eq!(
            r.usage,
            Usage {
                memory_bytes: Some(1216512),
                memory_peak_bytes: Some(32 << 20),
                pids: Some(3),
                cpu_throttled_periods: Some(29),
            }
        );
    }

    #[test]
    fn unlimited_v1_values_are_null() {
        let l = Layout::parse(HYBRID, "");
        let read = files(&[
            (
                "/sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            ("/sys/fs/cgroup/pids/docker/x/pids.max", "max\n"),
            ("/sys/fs/cgroup/cpu/docker/x/cpu.cfs_quota_us", "-1\n"),
            ("/sys/fs/cgroup/cpu/docker/x/cpu.cfs_period_us", "100000\n"),
        ]);
        let r = l.read("/docker/x", read);
        assert_eq!(
            r.limits,
            Limits {
                cpu_period_us: Some(100000),
                ..Default::default()
            }
        );
        // Usage files missing: null, not zero.
        assert_eq!(r.usage, Usage::default());
    }

    #[test]
    fn reads_v2_limits_and_usage() {
        let l = Layout::parse(V2, "cpuset cpu io memory pids\n");
        let base = "/sys/fs/cgroup/system.slice/docker-ab12.scope";
        let f = |n: &str| format!("{base}/{n}");
        let (m, mc, mp, pm, pc, cm, cs) = (
            f("memory.max"),
            f("memory.current"),
            f("memory.peak"),
            f("pids.max"),
            f("pids.current"),
            f("cpu.max"),
            f("cpu.stat"),
        );
        let read = files(&[
            (&m, "33554432\n"),
            (&mc, "270336\n"),
            (&mp, "33554432\n"),
            (&pm, "16\n"),
            (&pc, "1\n"),
            (&cm, "20000 100000\n"),
            (
                &cs,
                "usage_usec 412391\nuser_usec 400112\nsystem_usec 12279\nnr_periods 25\nnr_throttled 24\nthrottled_usec 1929731\n",
            ),
        ]);
        let r = l.read("/system.slice/docker-ab12.scope", read);
        assert_eq!(r.limits.memory_bytes, Some(32 << 20));
        assert_eq!(r.limits.pids, Some(16));
        assert_eq!(r.limits.cpu_quota_us, Some(20000));
        assert_eq!(r.limits.cpu_period_us, Some(100000));
        assert_eq!(r.usage.memory_bytes, Some(270336));
        assert_eq!(r.usage.memory_peak_bytes, Some(32 << 20));
        assert_eq!(r.usage.pids, Some(1));
        assert_eq!(r.usage.cpu_throttled_periods, Some(24));
        // `max` everywhere, and a kernel before 5.19 (no memory.peak).
        let read = files(&[
            (&m, "max\n"),
            (&mc, "270336\n"),
            (&pm, "max\n"),
            (&cm, "max 100000\n"),
        ]);
        let r = l.read("/system.slice/docker-ab12.scope", read);
        assert_eq!(
            r.limits,
            Limits {
                cpu_period_us: Some(100000),
                ..Default::default()
            }
        );
        assert_eq!(r.usage.memory_peak_bytes, None);
        assert_eq!(r.usage.memory_bytes, Some(270336));
    }

    #[test]
    fn malformed_values_are_null_not_zero() {
        assert_eq!(max_or_num("max\n"), None);
        assert_eq!(max_or_num(""), None);
        assert_eq!(max_or_num("12x"), None);
        assert_eq!(cpu_max("max"), None);
        assert_eq!(cpu_max("50000 100000"), Some((Some(50000), 100000)));
        assert_eq!(v1_quota("-1"), None);
        assert_eq!(
            stat_field("nr_throttledx 3\nnr_throttled 4\n", "nr_throttled"),
            Some(4)
        );
        assert_eq!(stat_field("nr_periods 1\n", "nr_throttled"), None);
    }

    /// `pids.events` as the kernel writes it, and what is not a count.
    #[test]
    fn parses_the_refused_fork_count() {
        for (file, want) in [
            ("max 25\n", Some(25)),
            ("max 0\n", Some(0)),
            ("max 25", Some(25)),
            ("", None),
            ("max\n", None),
            ("max -1\n", None),
            ("maxx 3\n", None),
        ] {
            assert_eq!(refused_forks(file), want, "{file:?}");
        }
    }

    /// v1 reads `pids.events`; v2 prefers `pids.events.local` (6.12+) and
    /// falls back to `pids.events` (5.10, 6.1); a missing file or a removed
    /// cgroup has no count, not zero.
    #[test]
    fn reads_the_refused_fork_count_of_each_hierarchy() {
        let v1 = Layout::parse(HYBRID, "");
        let read = files(&[
            ("/sys/fs/cgroup/pids/docker/a/pids.max", "16\n"),
            ("/sys/fs/cgroup/pids/docker/a/pids.events", "max 25\n"),
        ]);
        assert_eq!(v1.read_refused_forks("/docker/a", &read), Some(25));
        assert_eq!(v1.read("/docker/a", &read).pids_refused, Some(25));
        assert_eq!(v1.read_refused_forks("/docker/gone", &read), None);
        let r = v1.read("/docker/gone", &read);
        assert!(!r.present());
        assert_eq!(r.pids_refused, None);

        let v2 = Layout::parse(V2, "cpu memory pids\n");
        let s = "/system.slice/docker-ab12.scope";
        let newer = files(&[
            (
                "/sys/fs/cgroup/system.slice/docker-ab12.scope/pids.events",
                "max 30\n",
            ),
            (
                "/sys/fs/cgroup/system.slice/docker-ab12.scope/pids.events.local",
                "max 25\n",
            ),
        ]);
        assert_eq!(v2.read_refused_forks(s, &newer), Some(25));
        let older = files(&[(
            "/sys/fs/cgroup/system.slice/docker-ab12.scope/pids.events",
            "max 7\n",
        )]);
        assert_eq!(v2.read_refused_forks(s, &older), Some(7));
        assert_eq!(v2.read_refused_forks(s, files(&[])), None);
        // No pids controller anywhere: no count.
        assert_eq!(
            Layout::default().read_refused_forks("/docker/a", &read),
            None
        );
    }

    /// A removed cgroup: nothing to read, and the reader keeps the last
    /// reading; the throttled counter's growth is per call.
    #[test]
    fn a_removed_cgroup_keeps_its_last_reading() {
        let l = Layout::parse(HYBRID, "");
        let r = l.read("/docker/gone", files(&[]));
        assert!(!r.present());
        assert_eq!(r.limits, Limits::default());

        let dir = std::env::temp_dir().join(format!("observer-limits-{}", std::process::id()));
        let cpu = dir.join("cpu/docker/c1");
        fs::create_dir_all(&cpu).unwrap();
        fs::write(cpu.join("cpu.cfs_quota_us"), "20000\n").unwrap();
        fs::write(cpu.join("cpu.stat"), "nr_periods 10\nnr_throttled 7\n").unwrap();
        let pids = dir.join("pids/docker/c1");
        fs::create_dir_all(&pids).unwrap();
        fs::write(pids.join("pids.max"), "16\n").unwrap();
        fs::write(pids.join("pids.events"), "max 3\n").unwrap();
        let mut reader = CgroupReader::new(Layout {
            cpu: Some(Place::V1(dir.join("cpu"))),
            pids: Some(Place::V1(dir.join("pids"))),
            ..Default::default()
        });
        let first = reader.refresh(9, "/docker/c1");
        assert_eq!(first.limits.cpu_quota_us, Some(20000));
        assert_eq!(reader.throttled_growth(9, &first), 7);
        assert_eq!(reader.refused_growth(9, first.pids_refused), 3);
        // A task exits: the count alone, read again.
        fs::write(pids.join("pids.events"), "max 25\n").unwrap();
        assert_eq!(reader.refresh_refused(9, "/docker/c1"), 22);
        assert_eq!(reader.refresh_refused(9, "/docker/c1"), 0);
        fs::write(cpu.join("cpu.stat"), "nr_periods 20\nnr_throttled 12\n").unwrap();
        let second = reader.refresh(9, "/docker/c1");
        assert_eq!(reader.throttled_growth(9, &second), 5);
        assert_eq!(reader.refused_growth(9, second.pids_refused), 0);
        fs::remove_dir_all(&dir).unwrap();
        let after = reader.refresh(9, "/docker/c1");
        assert_eq!(after, second, "the last reading of a removed cgroup");
        assert_eq!(reader.throttled_growth(9, &after), 0);
        assert_eq!(reader.refused_growth(9, after.pids_refused), 0);
        assert_eq!(reader.refresh_refused(9, "/docker/c1"), 0);
        reader.forget(9);
        assert_eq!(reader.last(9), None);
    }
}
