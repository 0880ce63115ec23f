//! Attribution on cgroup-v1-only hosts, where every task carries the root of
//! the (unmounted) unified hierarchy as its cgroup v2 ID: the task's v1 cgroup
//! is read from `/proc/PID/cgroup` when its first event arrives, and the
//! inode of that cgroup's directory stands in for the cgroup ID. A task that
//! exits before its first event is read can't be attributed this way.

use std::{fs, os::unix::fs::MetadataExt, path::PathBuf};

use rustc_hash::FxHashMap;

use super::parse::parse_proc_cgroup_line;

/// The v1 hierarchy to read: the named systemd one, else `pids`, else
/// `memory`, else the first. Returns (mount point, its controller list as
/// `/proc/PID/cgroup` spells it).
pub fn v1_hierarchy(mountinfo: &str) -> Option<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split_whitespace();
            if post.next()? != "cgroup" {
                return None;
            }
            let opts = post.nth(1)?;
            let controllers: Vec<&str> = opts
                .split(',')
                .filter(|o| {
                    !matches!(
                        *o,
                        "rw" | "ro"
                            | "nosuid"
                            | "nodev"
                            | "noexec"
                            | "relatime"
                            | "xattr"
                            | "clone_children"
                    )
                })
                .filter(|o| !o.starts_with("release_agent="))
                .collect();
            Some((
                PathBuf::from(pre.split_whitespace().nth(4)?),
                controllers.join(","),
            ))
        })
        .collect();
    let rank = |c: &str| match c {
        "name=systemd" => 0,
        "pids" => 1,
        "memory" => 2,
        _ => 3,
    };
    found.sort_by_key(|(_, c)| rank(c));
    found.into_iter().next()
}

/// The path of `controllers`' hierarchy in a `/proc/PID/cgroup` file.
pub fn v1_path<'a>(proc_cgroup: &'a str, controllers: &str) -> Option<&'a str> {
    proc_cgroup
        .lines()
        .filter_map(parse_proc_cgroup_line)
        .find(|(id, c, _)| *id != 0 && *c == controllers)
        .map(|(_, _, p)| p)
}

pub struct V1Attribution {
    mount: PathBuf,
    controllers: String,
    /// The hierarchy's number (`N:` in /proc/PID/cgroup): its cgroup_mkdir
    /// and cgroup_rmdir records carry it, and the directory inodes used as
    /// IDs here are its kernfs IDs.
    hierarchy_id: u32,
    by_pid: FxHashMap<u32, Option<(u64, String)>>,
}

impl V1Attribution {
    pub fn from_host() -> Option<Self> {
        let (mount, controllers) = v1_hierarchy(&fs::read_to_string("/proc/self/mountinfo").ok()?)?;
        let own = fs::read_to_string("/proc/self/cgroup").ok()?;
        let hierarchy_id = own
            .lines()
            .filter_map(parse_proc_cgroup_line)
            .find(|(id, c, _)| *id != 0 && *c == controllers)
            .map(|(id, _, _)| id)?;
        Some(V1Attribution {
            mount,
            controllers,
            hierarchy_id,
            by_pid: FxHashMap::default(),
        })
    }

    pub fn hierarchy_id(&self) -> u32 {
        self.hierarchy_id
    }

    /// (stand-in cgroup ID, cgroup path) of a process, read once per process.
    pub fn resolve(&mut self, pid: u32) -> Option<(u64, String)> {
        if let Some(known) = self.by_pid.get(&pid) {
            return known.clone();
        }
        let found = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|text| {
                let path = v1_path(&text, &self.controllers)?.to_owned();
                let ino = fs::metadata(self.mount.join(path.trim_start_matches('/')))
                    .ok()?
                    .ino();
                Some((ino, path))
            });
        self.by_pid.insert(pid, found.clone());
        found
    }

    /// The process exited: its PID may be reused.
    pub fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }

    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real v1-only host (Debian 10, systemd 241).
    const V1_MOUNTINFO: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:5 - cgroup cgroup rw,xattr,name=systemd
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory
30 25 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,pids
31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn picks_the_systemd_hierarchy_first() {
        assert_eq!(
            v1_hierarchy(V1_MOUNTINFO),
            Some((
                PathBuf::from("/sys/fs/cgroup/systemd"),
                "name=systemd".to_owned()
            ))
        );
        let no_systemd: String = V1_MOUNTINFO
            .lines()
            .filter(|l| !l.contains("name=systemd"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            v1_hierarchy(&no_systemd),
            Some((PathBuf::from("/sys/fs/cgroup/pids"), "pids".to_owned()))
        );
        assert_eq!(
            v1_hierarchy("35 24 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
            None
        );
    }

    #[test]
    fn reads_the_hierarchys_path_from_proc() {
        let id = "3f4e8c2a1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";
        let proc_cgroup = format!(
            "12:pids:/docker/{id}\n5:cpu,cpuacct:/docker/{id}\n1:name=systemd:/docker/{id}\n0::/system.slice/containerd.service\n"
        );
        assert_eq!(
            v1_path(&proc_cgroup, "name=systemd"),
            Some(format!("/docker/{id}").as_str())
        );
        assert_eq!(
            v1_path(&proc_cgroup, "cpu,cpuacct"),
            Some(format!("/docker/{id}").as_str())
        );
        assert_eq!(v1_path(&proc_cgroup, "memory"), None);
        // The unified line (hierarchy 0) is never taken for a v1 hierarchy.
        assert_eq!(v1_path("0::/docker/x\n", ""), None);
    }
}
