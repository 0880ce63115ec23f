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

use rustc_hash::{FxHashMap, FxHashSet};
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
/// Name lookups queued for the resolver, at most. Behind an engine that
/// hangs (each lookup then waits for its timeout) the queue would grow with
/// every new container: past this, a container's events go out with its ID
/// and its lookup is queued again once there is room.
pub const NAME_QUEUE: usize = 256;
/// Minimum time between two walks of the cgroup tree for unknown IDs.
const WALK_EVERY: Duration = Duration::from_millis(200);
/// How long an unknown cgroup's events wait for the walk that finds it
/// (one that never answers, on a stuck filesystem, holds them no longer).
pub const WALK_WAIT: Duration = Duration::from_millis(1500);
/// Unknown cgroups whose events wait for a walk, at most.
pub const MAX_MISSES: usize = 1024;
/// IDs remembered as gone (removed and forgotten), or as not found by a
/// walk, at most each.
const REMEMBERED_MAX: usize = 65_536;
/// A walk that did not find an ID: it is looked for again after this,
/// doubling up to `NOT_FOUND_MAX` (it may have been made and its
/// `cgroup_mkdir` lost, or moved out of sight for a moment).
const NOT_FOUND_FIRST: Duration = Duration::from_secs(1);
const NOT_FOUND_MAX: Duration = Duration::from_secs(64);

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
    /// Name lookup not sent: the queue was full (`NAME_QUEUE`); sent again
    /// once there is room.
    pub name_deferred: bool,
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
            name_deferred: false,
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

/// What the registry did, for the final `loss` record: proof that the event
/// path never walks cgroupfs and that name lookups stay bounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Walks of the cgroup tree on the daemon's own thread: the one at
    /// start, before any event.
    pub walks_inline: u64,
    /// Walks on the walker thread, for unknown IDs and cut mkdir paths.
    pub walks_background: u64,
    /// Unknown cgroup IDs met in events (each once per wait).
    pub unknown_cgroups: u64,
    /// Name lookups not queued because the queue was full.
    pub names_deferred: u64,
}

/// One walk's answer, from the walker thread.
#[derive(Debug)]
pub struct Walked {
    /// When the walk was asked for: it settles the misses noted before.
    pub asked: Instant,
    /// Every cgroup below the root: (ID, path relative to the root).
    pub found: Vec<(u64, String)>,
}

/// An unknown ID met in an event (or a cgroup whose `cgroup_mkdir` path the
/// kernel cut), waiting for a walk.
#[derive(Clone, Debug)]
struct Miss {
    since: Instant,
    /// The cut path of a `cgroup_mkdir`: learnt as it is if no walk finds
    /// the whole one.
    cut: Option<String>,
}

/// An ID a walk did not find: looked for again at `retry`.
#[derive(Clone, Copy, Debug)]
struct NotFound {
    retry: Instant,
    wait: Duration,
}

/// Every cgroup below `root`: (ID, path relative to the root). A cgroup's ID
/// is its directory's inode.
pub fn walk(root: &Path) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = fs::metadata(&dir) else {
            continue;
        };
        let rel = dir
            .strip_prefix(root)
            .map(|p| format!("/{}", p.display()))
            .unwrap_or_default();
        let rel = if rel == "/" {
            "/".to_owned()
        } else {
            rel.trim_end_matches('/').to_owned()
        };
        out.push((meta.ino(), rel));
        if let Ok(entries) = fs::read_dir(&dir) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out
}

pub struct Registry {
    root: Option<PathBuf>,
    cgroups: FxHashMap<u64, CgroupState>,
    requests: Option<tokio::sync::mpsc::Sender<NameRequest>>,
    host: CgroupState,
    /// Unknown IDs seen in events, waiting for a walk.
    misses: FxHashMap<u64, Miss>,
    /// IDs of cgroups removed and forgotten: never looked for again (the
    /// kernel does not reuse cgroup IDs).
    gone: FxHashSet<u64>,
    /// IDs a walk did not find, until their next look.
    not_found: FxHashMap<u64, NotFound>,
    /// Cgroups whose name lookup waits for room in the queue, oldest
    /// first.
    deferred: std::collections::VecDeque<u64>,
    /// Asks the walker thread for a walk (`start_walker`).
    walker: Option<std::sync::mpsc::Sender<Instant>>,
    /// The walk under way, asked at.
    walking: Option<Instant>,
    last_walk: Option<Instant>,
    pub stats: RegistryStats,
}

impl Registry {
    pub fn new(root: Option<PathBuf>) -> Self {
        let mut r = Registry {
            root,
            cgroups: FxHashMap::default(),
            requests: None,
            host: CgroupState::new("/"),
            misses: FxHashMap::default(),
            gone: FxHashSet::default(),
            not_found: FxHashMap::default(),
            deferred: std::collections::VecDeque::new(),
            walker: None,
            walking: None,
            last_walk: None,
            stats: RegistryStats::default(),
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

    /// Name lookups go to this channel (the resolver task's), bounded
    /// (`NAME_QUEUE`).
    pub fn set_resolver(&mut self, tx: tokio::sync::mpsc::Sender<NameRequest>) {
        self.requests = Some(tx);
    }

    /// Starts the thread that walks the cgroup tree when asked; its answers
    /// come on the returned channel, for `walked`. None without a cgroup2
    /// root (nothing to walk) or when the thread can't start (then unknown
    /// IDs wait `WALK_WAIT` and are the host's).
    pub fn start_walker(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Walked>> {
        let root = self.root.clone()?;
        let (ask, asked) = std::sync::mpsc::channel::<Instant>();
        // Unbounded but never more than one answer in flight: a walk is
        // asked for only when the previous one has answered.
        let (tell, answers) = tokio::sync::mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("cgroup-walk".into())
            .spawn(move || {
                // Ends when the registry (the asking side) or the daemon
                // (the answering side) is gone.
                while let Ok(at) = asked.recv() {
                    let found = walk(&root);
                    if tell.send(Walked { asked: at, found }).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        self.walker = Some(ask);
        Some(answers)
    }

    /// Walks the cgroup2 tree here and now: at start, before any event.
    pub fn scan(&mut self) {
        let Some(root) = self.root.clone() else {
            return;
        };
        self.stats.walks_inline += 1;
        self.last_walk = Some(Instant::now());
        let found = walk(&root);
        self.merge(found);
    }

    /// Learns the cgroups a walk found that are new to us (and asks for
    /// their names); a cut mkdir path gets its whole one.
    fn merge(&mut self, found: Vec<(u64, String)>) {
        for (id, rel) in found {
            if self.gone.contains(&id) {
                // Removed and forgotten since the walk read it.
                continue;
            }
            if let Some(Miss { cut: Some(_), .. }) = self.misses.get(&id) {
                self.misses.remove(&id);
                self.learn(id, &rel);
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = self.cgroups.entry(id) {
                e.insert(CgroupState::new(&rel));
                self.not_found.remove(&id);
                self.misses.remove(&id);
                self.request_name(id);
            }
        }
        let wanted: Vec<u64> = self
            .cgroups
            .iter()
            .filter(|(_, s)| {
                s.wants_name()
                    && s.removed.is_none()
                    && s.name_pending.is_none()
                    && s.name_failed.is_none()
                    && !s.name_deferred
            })
            .map(|(id, _)| *id)
            .collect();
        for id in wanted {
            self.request_name(id);
        }
    }

    /// Asks for the names of every cgroup known that wants one (once the
    /// resolver is set, after the scan at start).
    pub fn request_names(&mut self) {
        self.merge(Vec::new());
    }

    /// A walk's answer (from the channel `start_walker` returned): new
    /// cgroups are learnt; the misses noted before the walk was asked for
    /// that it did not find are looked for again later (`NotFound`), their
    /// events going out meanwhile as the host's. Returns the misses it
    /// settled, found or not, whose held events can go.
    pub fn walked(&mut self, w: Walked) -> Vec<u64> {
        self.walking = None;
        self.stats.walks_background += 1;
        // Misses noted before the walk was asked for, and those it found.
        let before: Vec<u64> = self
            .misses
            .iter()
            .filter(|(_, m)| m.since <= w.asked)
            .map(|(id, _)| *id)
            .collect();
        let misses: Vec<u64> = self.misses.keys().copied().collect();
        self.merge(w.found);
        let mut settled: Vec<u64> = misses
            .into_iter()
            .filter(|id| !self.misses.contains_key(id))
            .collect();
        for id in before {
            if let Some(m) = self.misses.remove(&id) {
                self.not_found_by_walk(id, m);
                settled.push(id);
            }
        }
        self.ask_walk();
        settled
    }

    /// A miss no walk found: a cut mkdir path is learnt as it is; an ID
    /// waits before it is looked for again, twice as long each time.
    fn not_found_by_walk(&mut self, id: u64, m: Miss) {
        if let Some(cut) = m.cut {
            self.learn(id, &cut);
            return;
        }
        if self.not_found.len() >= REMEMBERED_MAX {
            self.not_found.clear();
        }
        let wait = self
            .not_found
            .get(&id)
            .map_or(NOT_FOUND_FIRST, |n| (n.wait * 2).min(NOT_FOUND_MAX));
        self.not_found.insert(
            id,
            NotFound {
                retry: Instant::now() + wait,
                wait,
            },
        );
    }

    /// Asks the walker thread for a walk when misses wait, none is under
    /// way and the last was at least `WALK_EVERY` ago. Never waits.
    pub fn ask_walk(&mut self) {
        // A cut mkdir path is looked for at once: its container may live
        // only milliseconds.
        let urgent = || self.misses.values().any(|m| m.cut.is_some());
        if self.misses.is_empty()
            || self.walking.is_some()
            || (self.last_walk.is_some_and(|t| t.elapsed() < WALK_EVERY) && !urgent())
        {
            return;
        }
        let Some(w) = &self.walker else {
            return;
        };
        let now = Instant::now();
        if w.send(now).is_ok() {
            self.walking = Some(now);
            self.last_walk = Some(now);
        }
    }

    /// Misses that waited `WALK_WAIT` without an answer (the walker is
    /// stuck, or there is none): their events go out as they are.
    pub fn expired_misses(&mut self) -> Vec<u64> {
        let old: Vec<u64> = self
            .misses
            .iter()
            .filter(|(_, m)| m.since.elapsed() >= WALK_WAIT)
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            if let Some(m) = self.misses.remove(id) {
                self.not_found_by_walk(*id, m);
            }
        }
        old
    }

    /// An ID seen in an event. Returns whether its events should wait for a
    /// walk of the tree (on the walker thread) to say what it is: not for a
    /// known cgroup, one removed and forgotten, one a walk just did not
    /// find (until its next look), nor without a tree to walk.
    pub fn note_miss(&mut self, id: u64) -> bool {
        if self.misses.contains_key(&id) {
            return true;
        }
        if self.root.is_none()
            || self.cgroups.contains_key(&id)
            || self.gone.contains(&id)
            || self.misses.len() >= MAX_MISSES
            || self
                .not_found
                .get(&id)
                .is_some_and(|n| n.retry > Instant::now())
        {
            return false;
        }
        self.misses.insert(
            id,
            Miss {
                since: Instant::now(),
                cut: None,
            },
        );
        self.stats.unknown_cgroups += 1;
        self.ask_walk();
        true
    }

    /// Whether events of this cgroup wait for a walk.
    pub fn awaiting_walk(&self, id: u64) -> bool {
        self.misses.contains_key(&id)
    }

    /// A cgroup learnt some other way (v1 attribution), unless known.
    pub fn learn_if_new(&mut self, id: u64, path: &str) {
        if !self.cgroups.contains_key(&id) {
            self.learn(id, path);
        }
    }

    /// `cgroup_mkdir` with the path as the kernel handed it over. A
    /// truncated path is completed from cgroupfs by the cgroup's ID (its
    /// directory's inode) by the next walk, on the walker thread; its
    /// events wait for it; a full path already known is never replaced by
    /// a cut one.
    pub fn learn_mkdir(&mut self, id: u64, path: &str, truncated: bool) {
        if !truncated {
            return self.learn(id, path);
        }
        if self.cgroups.contains_key(&id) {
            return;
        }
        if self.root.is_none() || (self.walker.is_none() && self.misses.len() >= MAX_MISSES) {
            return self.learn(id, path);
        }
        self.misses.insert(
            id,
            Miss {
                since: Instant::now(),
                cut: Some(path.to_owned()),
            },
        );
        self.ask_walk();
    }

    /// `cgroup_mkdir` in the unified hierarchy (a cgroup already known by
    /// this path keeps its state).
    pub fn learn(&mut self, id: u64, path: &str) {
        self.misses.remove(&id);
        self.not_found.remove(&id);
        self.gone.remove(&id);
        if self
            .cgroups
            .get(&id)
            .is_some_and(|s| s.path == path && s.removed.is_none())
        {
            return;
        }
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
        if !s.wants_name() || s.name_deferred {
            return;
        }
        let Some(tx) = &self.requests else {
            return;
        };
        // First come, first asked: while lookups wait for room, a new one
        // waits behind them.
        if self.deferred.is_empty() && tx.capacity() > 0 {
            Self::send_request(tx, s);
        } else {
            s.name_deferred = true;
            self.deferred.push_back(id);
            self.stats.names_deferred += 1;
        }
    }

    /// Queues a cgroup's name lookup (there is room).
    fn send_request(tx: &tokio::sync::mpsc::Sender<NameRequest>, s: &mut CgroupState) {
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
        if tx.try_send(req).is_ok() {
            s.name_pending = Some(Instant::now());
        }
    }

    /// The state of a cgroup; the host's for an ID not known (yet). On the
    /// per-event path: one hash lookup, never a walk. An unknown ID is
    /// noted for the next walk, on the walker thread.
    pub fn get(&mut self, id: u64) -> &CgroupState {
        if !self.cgroups.contains_key(&id) {
            self.note_miss(id);
        }
        self.cgroups.get(&id).unwrap_or(&self.host)
    }

    /// Asks again for the names that could not be had (the engine was down,
    /// or slow), at most every `NAME_RETRY`, and queues the lookups
    /// deferred by a full queue, oldest first, as room frees up; from
    /// housekeeping, not per event.
    pub fn retry_names(&mut self) {
        let failed: Vec<u64> = self
            .cgroups
            .iter()
            .filter(|(_, s)| {
                s.wants_name()
                    && s.name_pending.is_none()
                    && s.removed.is_none()
                    && !s.name_deferred
                    && s.name_failed.is_some_and(|t| t.elapsed() >= NAME_RETRY)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            // Now or behind the deferred ones.
            self.request_name(id);
        }
        let Some(tx) = &self.requests else {
            return;
        };
        while tx.capacity() > 0 {
            let Some(id) = self.deferred.pop_front() else {
                break;
            };
            let Some(s) = self.cgroups.get_mut(&id) else {
                continue;
            };
            s.name_deferred = false;
            if s.wants_name() && s.removed.is_none() && s.name_pending.is_none() {
                Self::send_request(tx, s);
            }
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
            // Its late events are the host's, without a walk for them.
            if self.gone.len() >= REMEMBERED_MAX {
                self.gone.clear();
            }
            self.gone.insert(*id);
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
        // Completed by a walk, off the event path: its events wait for it.
        assert!(r.peek(id).is_none() && r.awaiting_walk(id));
        assert_eq!(walk_now(&mut r), vec![id]);
        let s = r.peek(id).expect("learnt");
        assert_eq!(s.path, full);
        assert_eq!(s.container.as_ref().unwrap().id, DOCKER_ID);
        // A cut path never replaces the whole one.
        r.learn_mkdir(id, cut, true);
        assert_eq!(r.peek(id).unwrap().path, full);
        let _ = fs::remove_dir_all(&root);
    }

    /// What the walker thread would answer, here and now.
    fn walk_now(r: &mut Registry) -> Vec<u64> {
        let asked = Instant::now();
        let found = walk(r.root().unwrap());
        r.walked(Walked { asked, found })
    }

    fn tree(name: &str, dirs: usize) -> PathBuf {
        let root = std::env::temp_dir().join(format!("observer-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for i in 0..dirs {
            fs::create_dir_all(root.join(format!("s{}/c{i}", i % 50))).unwrap();
        }
        root
    }

    /// An event of a cgroup not known yet costs a hash lookup: the walk of
    /// the tree that finds it runs on the walker thread, and its answer
    /// comes back over a channel.
    #[test]
    fn an_unknown_cgroup_is_walked_for_off_the_event_path() {
        let root = tree("walk", 3000);
        let mut r = Registry::new(Some(root.clone()));
        assert_eq!(r.stats.walks_inline, 1, "the scan at start");
        let t = Instant::now();
        let _ = walk(&root);
        let one_walk = t.elapsed();
        let mut answers = r.start_walker().expect("a walker thread");
        // A walk is due again (the scan at start was one).
        std::thread::sleep(WALK_EVERY);
        let dir = root.join("docker").join(DOCKER_ID);
        fs::create_dir_all(&dir).unwrap();
        let id = fs::metadata(&dir).unwrap().ino();
        let t = Instant::now();
        let s = r.get(id);
        let lookup = t.elapsed();
        assert_eq!(&*s.json, "null", "the host's until the walk says");
        assert!(
            lookup * 10 < one_walk,
            "an unknown ID took {lookup:?} on the event path (a walk of the tree: {one_walk:?})"
        );
        assert_eq!(r.stats.walks_inline, 1, "no walk on the event path");
        assert!(r.awaiting_walk(id));
        assert!(r.note_miss(id), "its events wait for the walk");
        let deadline = Instant::now() + Duration::from_secs(10);
        let w = loop {
            match answers.try_recv() {
                Ok(w) => break w,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("the walker did not answer: {e}"),
            }
        };
        assert_eq!(r.walked(w), vec![id]);
        assert_eq!(r.stats.walks_background, 1);
        assert_eq!(r.peek(id).unwrap().path, format!("/docker/{DOCKER_ID}"));
        assert!(!r.awaiting_walk(id) && !r.note_miss(id));
        let _ = fs::remove_dir_all(&root);
    }

    /// What is remembered of an ID no walk found, step by step: nothing
    /// for good unless the cgroup is known gone. An ID a walk did not find
    /// is looked for again later (twice as late each time), and found once
    /// it is there; a cgroup removed and forgotten is never walked for; a
    /// miss noted after a walk was asked for waits for the next one; a cut
    /// mkdir path no walk completes is learnt as it is.
    #[test]
    fn remembered_failures_are_only_what_is_known_gone() {
        let root = tree("remember", 10);
        let mut r = Registry::new(Some(root.clone()));
        let unknown = 9_000_000_001;
        assert!(r.note_miss(unknown), "new: wait for a walk");
        assert_eq!(walk_now(&mut r), vec![unknown], "settled: not found");
        assert!(!r.note_miss(unknown), "not found just now: not held again");
        let first = r.not_found[&unknown].wait;
        assert_eq!(first, NOT_FOUND_FIRST);
        // Its next look is due: looked for again, not found, later still.
        r.not_found.get_mut(&unknown).unwrap().retry = Instant::now();
        assert!(r.note_miss(unknown), "due again: held for one more walk");
        walk_now(&mut r);
        assert_eq!(r.not_found[&unknown].wait, first * 2, "backs off");
        // A cgroup not found at first that appears later is found.
        let dir = root.join("docker").join(DOCKER_ID);
        fs::create_dir_all(&dir).unwrap();
        let late = fs::metadata(&dir).unwrap().ino();
        r.not_found.insert(
            late,
            NotFound {
                retry: Instant::now(),
                wait: NOT_FOUND_FIRST,
            },
        );
        assert!(r.note_miss(late));
        assert_eq!(walk_now(&mut r), vec![late]);
        assert_eq!(r.peek(late).unwrap().path, format!("/docker/{DOCKER_ID}"));
        assert!(!r.not_found.contains_key(&late));
        // A miss noted after the walk was asked for is not settled by it.
        let asked = Instant::now();
        let found = walk(&root);
        assert!(r.note_miss(unknown + 1));
        r.misses.get_mut(&(unknown + 1)).unwrap().since = asked + Duration::from_millis(1);
        assert!(r.walked(Walked { asked, found }).is_empty());
        assert!(r.awaiting_walk(unknown + 1), "waits for the next walk");
        // Removed and forgotten: known gone, never walked for again, and
        // a walk that read it before its removal does not bring it back.
        r.removed(late);
        r.cgroups.get_mut(&late).unwrap().removed = Some(Instant::now() - REMOVED_GRACE);
        assert_eq!(r.evict(), vec![late]);
        assert!(!r.note_miss(late));
        assert_eq!(&*r.get(late).json, "null");
        r.misses.clear();
        r.walked(Walked {
            asked: Instant::now(),
            found: vec![(late, format!("/docker/{DOCKER_ID}"))],
        });
        assert!(r.peek(late).is_none(), "not brought back");
        // A cut mkdir path that no walk completes is learnt as it is.
        let cut = "/kubepods/besteffort/podx/cri-containerd-ab";
        r.learn_mkdir(unknown + 2, cut, true);
        assert!(r.awaiting_walk(unknown + 2));
        walk_now(&mut r);
        assert_eq!(r.peek(unknown + 2).unwrap().path, cut);
        // Nothing to walk (no cgroup2): unknown IDs are the host's at once.
        let mut none = Registry::new(None);
        assert!(!none.note_miss(unknown));
        let _ = fs::remove_dir_all(&root);
    }

    /// Behind an engine that never answers, name requests stop at
    /// `NAME_QUEUE`; the containers beyond it are not held for a name
    /// (their events go out with the ID) and are queued again, as room
    /// frees up, without ever passing the bound.
    #[test]
    fn name_requests_stay_bounded_behind_a_hanging_engine() {
        let mut r = Registry::new(None);
        let (tx, mut rx) = tokio::sync::mpsc::channel(NAME_QUEUE);
        r.set_resolver(tx);
        let n = 10 * NAME_QUEUE;
        let ids = |i: usize| 1000 + i as u64;
        for i in 0..n {
            r.learn(ids(i), &format!("/docker/{i:064x}"));
        }
        assert_eq!(rx.len(), NAME_QUEUE, "requests queued");
        let waiting = (0..n).filter(|i| r.awaiting_name(ids(*i))).count();
        assert_eq!(waiting, NAME_QUEUE, "cgroups whose events wait for a name");
        assert_eq!(r.stats.names_deferred, (n - NAME_QUEUE) as u64);
        // Housekeeping while the engine still hangs: nothing more queued.
        r.retry_names();
        assert_eq!(rx.len(), NAME_QUEUE);
        assert_eq!(
            r.stats.names_deferred,
            (n - NAME_QUEUE) as u64,
            "counted once each"
        );
        // The resolver takes ten: ten more are queued, no more.
        for _ in 0..10 {
            let req = rx.try_recv().unwrap();
            r.apply_name(&NameReply {
                id: req.id,
                ..Default::default()
            });
        }
        r.retry_names();
        assert_eq!(rx.len(), NAME_QUEUE);
        let waiting = (0..n).filter(|i| r.awaiting_name(ids(*i))).count();
        assert_eq!(waiting, NAME_QUEUE);
        // Oldest first: the ten are the first ten deferred, and a container
        // made now waits behind the rest even when there is room.
        let queued: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|q| q.id)
            .collect();
        let expected: Vec<String> = (NAME_QUEUE..NAME_QUEUE + 10)
            .map(|i| format!("{i:064x}"))
            .collect();
        assert_eq!(queued[NAME_QUEUE - 10..], expected[..]);
        r.learn(1, &format!("/docker/{DOCKER_ID}"));
        assert!(!r.awaiting_name(1) && rx.is_empty());
        r.retry_names();
        assert_eq!(
            rx.try_recv().unwrap().id,
            format!("{:064x}", NAME_QUEUE + 10)
        );
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
        let (tx, mut rx) = tokio::sync::mpsc::channel(NAME_QUEUE);
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
        let (tx, mut rx) = tokio::sync::mpsc::channel(NAME_QUEUE);
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
