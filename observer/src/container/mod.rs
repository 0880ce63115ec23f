//! From cgroup ID to container: which cgroup a task ran in (learnt when the
//! cgroup is made, or from the cgroup2 tree for ones made earlier), which
//! runtime's container that cgroup belongs to, and its name and image.

pub mod containerd;
pub mod disk;
pub mod docker;
pub mod parse;
pub mod v1;

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use serde::Serialize;

use self::docker::{NameReply, NameRequest};
pub use self::parse::{containerd_namespace, parse_cgroup_path, ContainerRef, Runtime};

/// How long a removed cgroup's record is kept, for late events and the
/// final summary.
pub const REMOVED_GRACE: Duration = Duration::from_secs(30);
/// How long a container's events wait for its name before going out without.
pub const NAME_WAIT: Duration = Duration::from_millis(1500);
/// How often a failed name lookup is retried.
pub const NAME_RETRY: Duration = Duration::from_secs(10);
/// Minimum time between two rescans of the cgroup tree for unknown IDs.
const RESCAN_EVERY: Duration = Duration::from_millis(500);

/// The `"container"` object of every record.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: Option<String>,
    pub runtime: &'static str,
    pub image: Option<String>,
    pub cgroup: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Kubernetes containers: their pod, its namespace, the container's
    /// name in the pod (from the CRI's `io.kubernetes.*` labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Kubernetes>,
}

/// Where a Kubernetes container sits: `kubectl -n NAMESPACE get pod POD`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Kubernetes {
    pub pod: String,
    pub namespace: Option<String>,
    pub container: Option<String>,
}

impl Container {
    fn new(r: &ContainerRef, cgroup: &str) -> Self {
        // nspawn machines and LXC containers are known by name.
        let name = matches!(r.runtime, Runtime::Nspawn | Runtime::Lxc).then(|| r.id.clone());
        Container {
            id: r.id.clone(),
            name,
            runtime: r.runtime.as_str(),
            image: None,
            cgroup: cgroup.to_owned(),
            pod_uid: r.pod_uid.clone(),
            kubernetes: None,
        }
    }

    /// Whether `--container NAME|ID` selects this one: the name, the full ID,
    /// or an ID prefix of at least 4 characters (as `docker` accepts).
    pub fn matches(&self, sel: &str) -> bool {
        self.name.as_deref() == Some(sel)
            || self.id == sel
            || (sel.len() >= 4 && self.id.starts_with(sel))
    }
}

#[derive(Clone, Debug)]
pub struct CgroupState {
    pub path: String,
    /// None: the host.
    pub container: Option<Arc<Container>>,
    /// Pre-rendered `"container"` JSON value (`null` for the host).
    pub json: Arc<str>,
    pub removed: Option<Instant>,
    /// Name lookup sent and not yet answered, since when.
    pub name_pending: Option<Instant>,
    pub name_failed: Option<Instant>,
    /// Whoever names this runtime's containers has answered: no more
    /// lookups, even where the answer had no image (an LXC container made
    /// without a template).
    pub name_known: bool,
}

impl CgroupState {
    fn new(path: &str) -> Self {
        let container = parse_cgroup_path(path).map(|r| Arc::new(Container::new(&r, path)));
        let mut s = CgroupState {
            path: path.to_owned(),
            container,
            json: Arc::from("null"),
            removed: None,
            name_pending: None,
            name_failed: None,
            name_known: false,
        };
        s.render();
        s
    }

    fn render(&mut self) {
        self.json = match &self.container {
            Some(c) => Arc::from(serde_json::to_string(c.as_ref()).expect("container serialises")),
            None => Arc::from("null"),
        };
    }

    /// Whether someone can tell more about this container than its cgroup
    /// path did: a name for the engines' containers, an image (template) for
    /// LXC's. nspawn machines are known by their path alone.
    pub fn wants_name(&self) -> bool {
        !self.name_known
            && self.container.as_ref().is_some_and(|c| {
                !c.id.is_empty()
                    && match c.runtime {
                        "docker" | "podman" | "kubernetes" | "containerd" => c.name.is_none(),
                        "lxc" => c.image.is_none(),
                        _ => false,
                    }
            })
    }
}

/// Where the unified (v2) hierarchy is mounted: `/sys/fs/cgroup` on v2
/// hosts, `/sys/fs/cgroup/unified` on hybrid ones, none on v1-only hosts.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let fstype = post.split_whitespace().next()?;
        let mount_point = pre.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

pub struct Registry {
    root: Option<PathBuf>,
    cgroups: FxHashMap<u64, CgroupState>,
    last_scan: Option<Instant>,
    requests: Option<tokio::sync::mpsc::UnboundedSender<NameRequest>>,
    host: CgroupState,
}

impl Registry {
    pub fn new(root: Option<PathBuf>) -> Self {
        let mut r = Registry {
            root,
            cgroups: FxHashMap::default(),
            last_scan: None,
            requests: None,
            host: CgroupState::new("/"),
        };
        r.scan();
        r
    }

    /// The cgroup2 mount of this host.
    pub fn from_host() -> Self {
        let root = fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|m| cgroup2_mount(&m));
        Self::new(root)
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Name lookups go to this channel (the resolver task's).
    pub fn set_resolver(&mut self, tx: tokio::sync::mpsc::UnboundedSender<NameRequest>) {
        self.requests = Some(tx);
    }

    /// Walks the cgroup2 tree: a cgroup's ID is its directory's inode.
    pub fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        let Some(root) = self.root.clone() else {
            return;
        };
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(meta) = fs::metadata(&dir) else {
                continue;
            };
            let rel = dir
                .strip_prefix(&root)
                .map(|p| format!("/{}", p.display()))
                .unwrap_or_default();
            let rel = if rel == "/" {
                "/".to_owned()
            } else {
                rel.trim_end_matches('/').to_owned()
            };
            self.cgroups
                .entry(meta.ino())
                .or_insert_with(|| CgroupState::new(&rel));
            if let Ok(entries) = fs::read_dir(&dir) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        let wanted: Vec<u64> = self
            .cgroups
            .iter()
            .filter(|(_, s)| s.wants_name() && s.name_pending.is_none() && s.name_failed.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in wanted {
            self.request_name(id);
        }
    }

    /// A cgroup learnt some other way (v1 attribution), unless known.
    pub fn learn_if_new(&mut self, id: u64, path: &str) {
        if !self.cgroups.contains_key(&id) {
            self.learn(id, path);
        }
    }

    /// `cgroup_mkdir` with the path as the kernel handed it over. A
    /// truncated path is completed from cgroupfs by the cgroup's ID (its
    /// directory's inode), searched only below the last whole directory of
    /// the cut path; a full path already known is never replaced by a cut
    /// one.
    pub fn learn_mkdir(&mut self, id: u64, path: &str, truncated: bool) {
        if !truncated {
            return self.learn(id, path);
        }
        if self.cgroups.contains_key(&id) {
            return;
        }
        let full = self.find_by_id(id, path);
        self.learn(id, full.as_deref().unwrap_or(path));
    }

    /// The path (relative to the root) of the cgroup with this ID, looked
    /// for below the deepest whole directory of `cut`.
    fn find_by_id(&self, id: u64, cut: &str) -> Option<String> {
        let root = self.root.as_ref()?;
        let whole = cut.rsplit_once('/').map_or("", |(dir, _)| dir);
        let mut stack = vec![root.join(whole.trim_start_matches('/'))];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).ok()?.flatten() {
                let Ok(meta) = e.metadata() else { continue };
                if !meta.is_dir() {
                    continue;
                }
                if meta.ino() == id {
                    let rel = e.path();
                    let rel = rel.strip_prefix(root).ok()?;
                    return Some(format!("/{}", rel.display()));
                }
                stack.push(e.path());
            }
        }
        None
    }

    /// `cgroup_mkdir` in the unified hierarchy.
    pub fn learn(&mut self, id: u64, path: &str) {
        self.cgroups.insert(id, CgroupState::new(path));
        self.request_name(id);
    }

    /// `cgroup_rmdir`: keep the record for `REMOVED_GRACE`.
    pub fn removed(&mut self, id: u64) -> Option<&CgroupState> {
        let s = self.cgroups.get_mut(&id)?;
        s.removed = Some(Instant::now());
        Some(s)
    }

    fn request_name(&mut self, id: u64) {
        let Some(s) = self.cgroups.get_mut(&id) else {
            return;
        };
        if !s.wants_name() {
            return;
        }
        // Off the per-event path: once per cgroup and retry.
        let Some(r) = parse_cgroup_path(&s.path) else {
            return;
        };
        let req = NameRequest {
            namespace: containerd_namespace(&s.path, &r),
            runtime: r.runtime,
            id: r.id,
            engine: r.engine,
        };
        if let Some(tx) = &self.requests {
            if tx.send(req).is_ok() {
                s.name_pending = Some(Instant::now());
            }
        }
    }

    /// The state of a cgroup, learning it from the tree when it is new to
    /// us. On the per-event path: one hash lookup when the cgroup is known.
    pub fn get(&mut self, id: u64) -> &CgroupState {
        if !self.cgroups.contains_key(&id)
            && self.last_scan.is_none_or(|t| t.elapsed() >= RESCAN_EVERY)
        {
            self.scan();
        }
        self.cgroups.get(&id).unwrap_or(&self.host)
    }

    /// Asks again for the names that could not be had (the engine was down,
    /// or slow), at most every `NAME_RETRY`; from housekeeping, not per event.
    pub fn retry_names(&mut self) {
        let due: Vec<u64> = self
            .cgroups
            .iter()
            .filter(|(_, s)| {
                s.wants_name()
                    && s.name_pending.is_none()
                    && s.removed.is_none()
                    && s.name_failed.is_some_and(|t| t.elapsed() >= NAME_RETRY)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.request_name(id);
        }
    }

    /// The containers whose cgroups exist now, by cgroup ID.
    pub fn live_containers(&self) -> impl Iterator<Item = (u64, &Arc<Container>)> {
        self.cgroups.iter().filter_map(|(id, s)| {
            s.removed
                .is_none()
                .then_some(s.container.as_ref())
                .flatten()
                .map(|c| (*id, c))
        })
    }

    /// Like `get`, without side effects.
    #[cfg(test)]
    pub fn cgroups_mut(&mut self) -> impl Iterator<Item = &mut CgroupState> {
        self.cgroups.values_mut()
    }

    pub fn peek(&self, id: u64) -> Option<&CgroupState> {
        self.cgroups.get(&id)
    }

    /// Applies a name lookup's answer to every cgroup of that container.
    /// Returns the cgroup IDs whose held events can now go out.
    pub fn apply_name(&mut self, reply: &NameReply) -> Vec<u64> {
        let mut done = Vec::new();
        for (id, s) in self.cgroups.iter_mut() {
            let Some(c) = &s.container else { continue };
            if c.id != reply.id {
                continue;
            }
            s.name_pending = None;
            if reply.name.is_some() {
                let mut c = (**c).clone();
                c.name = reply.name.clone();
                c.image = reply.image.clone();
                c.kubernetes = reply.kubernetes.clone();
                s.container = Some(Arc::new(c));
                s.render();
                s.name_known = true;
            } else {
                // retry_names asks again later.
                s.name_failed = Some(Instant::now());
            }
            done.push(*id);
        }
        done
    }

    /// Whether events of this cgroup should wait for its name (until the
    /// answer, or until `expired_waits` ends the wait).
    pub fn awaiting_name(&self, id: u64) -> bool {
        self.cgroups
            .get(&id)
            .is_some_and(|s| s.name_pending.is_some())
    }

    /// Cgroups whose name wait is over (answered or timed out).
    pub fn expired_waits(&mut self) -> Vec<u64> {
        let mut out = Vec::new();
        for (id, s) in self.cgroups.iter_mut() {
            if s.name_pending.is_some_and(|t| t.elapsed() >= NAME_WAIT) {
                s.name_pending = None;
                s.name_failed = Some(Instant::now());
                out.push(*id);
            }
        }
        out
    }

    /// Forgets cgroups removed more than `REMOVED_GRACE` ago; returns them.
    pub fn evict(&mut self) -> Vec<u64> {
        let gone: Vec<u64> = self
            .cgroups
            .iter()
            .filter(|(_, s)| s.removed.is_some_and(|t| t.elapsed() >= REMOVED_GRACE))
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.cgroups.remove(id);
        }
        gone
    }

    pub fn len(&self) -> usize {
        self.cgroups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cgroups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_ID: &str = "3f4e8c2a1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";

    /// A kind pod's container scope is longer than the kernel's record holds:
    /// the cut path is completed from the directory tree by ID, and the
    /// container is parsed from the whole of it.
    #[test]
    fn completes_a_truncated_mkdir_path_from_cgroupfs() {
        let root = std::env::temp_dir().join(format!("observer-longpath-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        // A kind node is itself a Docker container: its kubelet's tree sits
        // below the node's own scope.
        let node = "9".repeat(64);
        let pod = format!("system.slice/docker-{node}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod0f3c2a4e_5b6d_4e7f_8a9b_0c1d2e3f4a5b.slice");
        let scope = format!("cri-containerd-{DOCKER_ID}.scope");
        let dir = root.join(&pod).join(&scope);
        fs::create_dir_all(&dir).unwrap();
        let id = fs::metadata(&dir).unwrap().ino();
        let full = format!("/{pod}/{scope}");
        assert!(full.len() > observer_common::CGROUP_PATH_LEN);
        let cut = &full[..observer_common::CGROUP_PATH_LEN - 1];
        let mut r = Registry::new(Some(root.clone()));
        // As if made after the scan: only the event's cut path is known.
        r.cgroups.remove(&id);
        r.learn_mkdir(id, cut, true);
        let s = r.peek(id).expect("learnt");
        assert_eq!(s.path, full);
        assert_eq!(s.container.as_ref().unwrap().id, DOCKER_ID);
        // A cut path never replaces the whole one.
        r.learn_mkdir(id, cut, true);
        assert_eq!(r.peek(id).unwrap().path, full);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let hybrid = "25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n\
                      27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let v2 = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(cgroup2_mount(v2), Some(PathBuf::from("/sys/fs/cgroup")));
        let v1 = "27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(cgroup2_mount(v1), None);
    }

    #[test]
    fn learns_names_and_keeps_removed_cgroups_for_a_while() {
        let mut r = Registry::new(None);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        r.set_resolver(tx);
        r.learn(77, &format!("/docker/{DOCKER_ID}"));
        let req = rx.try_recv().expect("a name request goes out at mkdir");
        assert_eq!(req.id, DOCKER_ID);
        assert!(r.awaiting_name(77));
        let s = r.get(77);
        assert_eq!(s.container.as_ref().unwrap().runtime, "docker");
        assert!(s.json.contains("\"name\":null"));
        let done = r.apply_name(&NameReply {
            id: DOCKER_ID.into(),
            name: Some("web".into()),
            image: Some("alpine".into()),
            ..Default::default()
        });
        assert_eq!(done, vec![77]);
        assert!(!r.awaiting_name(77));
        let s = r.get(77);
        assert!(
            s.json.contains("\"name\":\"web\"") && s.json.contains("\"image\":\"alpine\""),
            "{}",
            s.json
        );
        assert!(s.container.as_ref().unwrap().matches("web"));
        assert!(s.container.as_ref().unwrap().matches(&DOCKER_ID[..12]));
        assert!(!s.container.as_ref().unwrap().matches("db"));
        r.removed(77);
        assert!(r.evict().is_empty(), "kept during the grace period");
        assert!(r.peek(77).is_some());
        // The host and unknown IDs render as null.
        r.learn(5, "/system.slice/ssh.service");
        assert_eq!(&*r.get(5).json, "null");
        assert_eq!(&*r.get(123456).json, "null");
    }

    #[test]
    fn each_runtime_is_asked_once_and_an_answer_without_image_is_final() {
        let mut r = Registry::new(None);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        r.set_resolver(tx);
        r.learn(1, &format!("/default/{DOCKER_ID}"));
        let req = rx.try_recv().expect("containerd containers are looked up");
        assert_eq!(req.runtime, Runtime::Containerd);
        assert_eq!(req.namespace.as_deref(), Some("default"));
        r.learn(2, "/lxc.payload.c1");
        let req = rx
            .try_recv()
            .expect("LXC containers are asked for their template");
        assert_eq!((req.runtime, req.id.as_str()), (Runtime::Lxc, "c1"));
        assert!(r.get(2).json.contains("\"name\":\"c1\""));
        r.apply_name(&NameReply {
            id: "c1".into(),
            name: Some("c1".into()),
            ..Default::default()
        });
        r.learn(3, "/machine.slice/systemd-nspawn@web.service/payload");
        r.scan();
        r.retry_names();
        assert!(
            rx.try_recv().is_err(),
            "nspawn is named by its path, and a template-less LXC container is not asked again"
        );
        assert!(!r.awaiting_name(2) && !r.awaiting_name(3));
    }
}
