//! Attribution: which container each decoded event belongs to. Learns
//! cgroups as they are made and removed, holds a container's events while
//! its name is looked up, decides which cgroups are shown (and tells the
//! kernel's filter about the others), and turns the first event and the last
//! cgroup removal of a container into its start and exit.
//!
//! In: decoded events, name replies, housekeeping ticks. Out: `Attributed`
//! items, in order, for accounting and rendering.

use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{
    claims::{Starts, Startup},
    cli::WatchArgs,
    container::{docker::NameReply, v1::V1Attribution, Container, Registry},
    decode::{cstr, Event},
};

/// How often started containers' cgroups are checked against cgroupfs.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// Events held per cgroup while its name is looked up, at most.
pub const MAX_HELD: usize = 16_384;

/// How long a start record waits for the container's own command's exec.
const START_WAIT_NS: u64 = 2_500_000_000;

/// A container's start (its first event seen) or exit (its last cgroup
/// removed): the `container` records, and what live views follow.
#[derive(Clone, Debug)]
pub enum Lifecycle {
    Start {
        /// Boot-time ns of the first event.
        ts: u64,
        container: Arc<Container>,
        /// The rendered `container` object.
        json: Arc<str>,
        cgroup_id: u64,
        /// From its cgroup's creation to its own command's exec, when the
        /// creation was seen (the record waits for that exec).
        startup: Option<Startup>,
    },
    Exit {
        /// Boot-time ns of the removal.
        ts: u64,
        container: Arc<Container>,
        /// The `container` object as rendered at the start (`container`
        /// is as known at the exit).
        json: Arc<str>,
        cgroup_id: u64,
        lifetime_ns: u64,
    },
}

/// What attribution hands on.
#[derive(Debug)]
pub enum Attributed {
    /// A shown task event and its container (`None`: the host).
    Task {
        ev: Event,
        container: Option<Arc<Container>>,
        /// The rendered `container` value (`null` for the host).
        json: Arc<str>,
    },
    Lifecycle(Lifecycle),
}

struct Started {
    container: Arc<Container>,
    json: Arc<str>,
    first_ts: u64,
    cgroups: HashSet<u64>,
    /// Whether its start record is out.
    announced: bool,
    first_cgroup: u64,
}

pub struct Attributor {
    pub registry: Registry,
    host: bool,
    containers: Vec<String>,
    held: FxHashMap<u64, Vec<Event>>,
    started: HashMap<String, Started>,
    /// Cgroups already part of a started container: the per-event check.
    started_cgroups: FxHashSet<u64>,
    /// Verdicts to write into the kernel's cgroup filter (drained by the
    /// daemon): (cgroup, drop). Each cgroup gets one, once it is known.
    pub new_verdicts: Vec<(u64, bool)>,
    judged: FxHashSet<u64>,
    warned_names: bool,
    /// cgroup-v1-only hosts: attribution from /proc/PID/cgroup.
    v1: Option<V1Attribution>,
    /// Host cgroups shown without --host (`--host-cgroup`: the demo's VMM).
    host_cgroup_ids: FxHashSet<u64>,
    /// Started cgroups found missing from cgroupfs at the last check.
    missing: FxHashSet<u64>,
    last_reconcile: Option<Instant>,
    pub starts: Starts,
    /// Start times measured while the container's events waited, for its
    /// start record.
    ready_starts: FxHashMap<u64, Startup>,
    /// Events of cgroups not known yet dropped past `MAX_HELD` while the
    /// walk that finds them ran (counted in `dropped_by_daemon`).
    pub dropped: u64,
}

impl Attributor {
    pub fn new(args: &WatchArgs, registry: Registry) -> Self {
        Attributor {
            registry,
            host: args.host,
            containers: args.containers.clone(),
            held: FxHashMap::default(),
            started: HashMap::new(),
            started_cgroups: FxHashSet::default(),
            new_verdicts: Vec::new(),
            judged: FxHashSet::default(),
            warned_names: false,
            v1: None,
            // A cgroup's ID is its directory's inode.
            host_cgroup_ids: args
                .host_cgroups
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .collect(),
            missing: FxHashSet::default(),
            last_reconcile: None,
            starts: Starts::default(),
            ready_starts: FxHashMap::default(),
            dropped: 0,
        }
    }

    /// Attributes tasks by their v1 cgroup (a host without cgroup2).
    pub fn use_v1(&mut self, v1: V1Attribution) {
        self.v1 = Some(v1);
    }

    /// The cgroup hierarchy whose IDs name cgroups here: 0, the unified one,
    /// or the v1 hierarchy read on a host without cgroup2.
    fn hierarchy(&self) -> u32 {
        self.v1.as_ref().map_or(0, |v1| v1.hierarchy_id())
    }

    pub fn event(&mut self, mut ev: Event, out: &mut Vec<Attributed>) {
        let exit = matches!(ev, Event::Exit(_));
        if let Some(v1) = self.v1.as_mut() {
            // A task's v1 cgroup is cached at first sight, which can come
            // before `runc init` moves it into the container's cgroups: look
            // again when it execs or forks (the container's entrypoint is an
            // exec, its processes forks).
            match &ev {
                Event::Exec(r) => v1.forget(r.header.pid),
                Event::Fork(r) => {
                    v1.forget(r.header.pid);
                    v1.forget(r.child_pid);
                }
                _ => {}
            }
        }
        if let (Some(v1), Some(h)) = (self.v1.as_mut(), ev.header_mut()) {
            if let Some((id, path)) = v1.resolve(h.pid) {
                h.cgroup_id = id;
                self.registry.learn_if_new(id, &path);
            }
            if exit {
                v1.forget(h.pid);
            }
        }
        match ev {
            Event::CgroupMkdir(r) => {
                if r.hierarchy_id == self.hierarchy() {
                    let raw = cstr(&r.path);
                    // The kernel cut the path to fit the record (Kubernetes
                    // pod scopes run past 300 bytes).
                    let truncated = raw.len() >= observer_common::CGROUP_PATH_LEN - 1;
                    let path = String::from_utf8_lossy(raw).into_owned();
                    let cg = r.cgroup_id;
                    self.registry.learn_mkdir(cg, &path, truncated);
                    // Events met before it was known wait no longer.
                    if self.held.contains_key(&cg)
                        && !self.registry.awaiting_walk(cg)
                        && !self.registry.awaiting_name(cg)
                        && !self.starts.starting(cg)
                    {
                        self.release(cg, out);
                    }
                    if self
                        .registry
                        .peek(r.cgroup_id)
                        .is_some_and(|s| s.container.is_some())
                    {
                        self.starts.cgroup_made(r.cgroup_id, r.ts);
                    }
                }
            }
            Event::CgroupRmdir(ref r) => {
                if r.hierarchy_id != self.hierarchy() {
                    return;
                }
                let cg = r.cgroup_id;
                if self.registry.peek(cg).is_none()
                    && (self.held.contains_key(&cg) || self.registry.awaiting_walk(cg))
                {
                    // Its events came before anything said what it is (its
                    // `cgroup_mkdir` lost, the walk not back yet): the
                    // removal's path says, before the walk could find it
                    // gone.
                    let path = String::from_utf8_lossy(cstr(&r.path)).into_owned();
                    self.registry.learn(cg, &path);
                }
                if let Some(q) = self.held.get_mut(&cg) {
                    q.push(ev);
                    // Gone before its command ran: its start is not coming.
                    self.starts.give_up(cg);
                    if !self.registry.awaiting_name(cg) {
                        self.release(cg, out);
                    }
                } else {
                    self.cgroup_removed(r.cgroup_id, r.ts, out);
                }
            }
            _ => {
                let Some(cg) = ev.header().map(|h| h.cgroup_id) else {
                    return;
                };
                let started = self.start_progress(cg, &ev);
                if let Some(q) = self.held.get_mut(&cg) {
                    if q.len() >= MAX_HELD && self.registry.awaiting_walk(cg) {
                        // Not known until the walk answers: past the bound
                        // its events are dropped, and counted.
                        self.dropped += 1;
                        return;
                    }
                    q.push(ev);
                    if q.len() >= MAX_HELD && !self.registry.awaiting_walk(cg) {
                        // A flood while the name or the start is on its
                        // way: out without them.
                        self.starts.give_up(cg);
                        self.release(cg, out);
                    } else if started
                        && !self.registry.awaiting_name(cg)
                        && !self.registry.awaiting_walk(cg)
                    {
                        self.release(cg, out);
                    }
                    return;
                }
                // One lookup for a known cgroup, as before; an unknown one
                // is noted for the walker thread, never walked for here.
                let hold = match self.registry.peek(cg) {
                    Some(s) => s.name_pending.is_some() || self.starts.starting(cg),
                    None => self.starts.starting(cg) || self.registry.note_miss(cg),
                };
                if hold {
                    // Its start record comes first, with its name and its
                    // start time: its events wait for both; an unknown
                    // cgroup's wait for the walk that says what it is.
                    self.held.insert(cg, vec![ev]);
                } else {
                    self.task_event(ev, out);
                }
            }
        }
    }

    /// A container's start, followed as its events arrive (before they wait
    /// for anything): syscalls its runtime makes, then its own command's
    /// exec, which ends the start. True for that exec.
    fn start_progress(&mut self, cg: u64, ev: &Event) -> bool {
        match ev {
            Event::Syscall(_) => self.starts.syscall(cg),
            Event::Exec(r) => {
                let h = &r.header;
                if let Some(s) = self.starts.exec(cg, h.ts, cstr(&h.comm), cstr(&r.filename)) {
                    self.ready_starts.insert(cg, s);
                    return true;
                }
            }
            _ => {}
        }
        false
    }

    /// Tells the kernel, once, what to do with a cgroup whose fate is known.
    fn judge(&mut self, cg: u64, drop: bool) {
        // With v1 attribution the IDs here are v1 directory inodes, which
        // mean nothing to the kernel's (cgroup v2) filter.
        if self.v1.is_some() {
            return;
        }
        if self.registry.peek(cg).is_some() && self.judged.insert(cg) {
            self.new_verdicts.push((cg, drop));
        }
    }

    /// Whether a cgroup's activity is shown, with its container and the
    /// rendered container value; marks it for the kernel's drop filter when
    /// it never will be.
    pub fn wanted(&mut self, cg: u64) -> Option<(Option<Arc<Container>>, Arc<str>)> {
        let state = self.registry.get(cg);
        let (container, json) = (state.container.clone(), state.json.clone());
        let pending_name = state.name_pending.is_some();
        // A container still without a name may yet match a --container
        // NAME selector (a slow or failed lookup is retried): no drop
        // verdict, which the kernel would keep for good, until it has one.
        let name_unknown =
            state.wants_name() && container.as_ref().is_some_and(|c| c.name.is_none());
        match &container {
            None if !self.host && !self.host_cgroup_ids.contains(&cg) => {
                self.judge(cg, true);
                None
            }
            Some(c)
                if !self.containers.is_empty() && !self.containers.iter().any(|s| c.matches(s)) =>
            {
                if !pending_name && !name_unknown {
                    self.judge(cg, true);
                }
                None
            }
            _ => {
                // Selected for good once its name is known (a --container
                // selector may match the name).
                if !pending_name {
                    self.judge(cg, false);
                }
                Some((container, json))
            }
        }
    }

    /// Whether records of this cgroup can be attributed: its path is known
    /// (with v1 attribution, every task is looked up by PID).
    pub fn knows(&self, cg: u64) -> bool {
        self.v1.is_some() || self.registry.peek(cg).is_some()
    }

    /// Whether a cgroup belongs to a container that has started and not
    /// exited.
    pub fn is_started(&self, cg: u64) -> bool {
        self.started.values().any(|s| s.cgroups.contains(&cg))
    }

    fn task_event(&mut self, ev: Event, out: &mut Vec<Attributed>) {
        let Some(h) = ev.header() else { return };
        let (cg, ts) = (h.cgroup_id, h.ts);
        let Some((container, json)) = self.wanted(cg) else {
            return;
        };
        if let Some(c) = &container {
            self.container_seen(c, &json, cg, ts, out);
            // Another of the container's cgroups was seen first.
            if let Some(s) = self.ready_starts.remove(&cg) {
                self.announce(cg, Some(s), out);
            }
        }
        out.push(Attributed::Task {
            ev,
            container,
            json,
        });
    }

    fn container_seen(
        &mut self,
        c: &Arc<Container>,
        json: &Arc<str>,
        cg: u64,
        ts: u64,
        out: &mut Vec<Attributed>,
    ) {
        if !self.started_cgroups.insert(cg) {
            return;
        }
        // Pod-level Kubernetes cgroups have no container ID: key on the pod.
        let key = if c.id.is_empty() {
            format!("pod:{}", c.pod_uid.as_deref().unwrap_or_default())
        } else {
            c.id.clone()
        };
        if let Some(s) = self.started.get_mut(&key) {
            s.cgroups.insert(cg);
            return;
        }
        self.started.insert(
            key,
            Started {
                container: c.clone(),
                json: json.clone(),
                first_ts: ts,
                cgroups: HashSet::from([cg]),
                announced: false,
                first_cgroup: cg,
            },
        );
        if !self.starts.starting(cg) {
            let startup = self.ready_starts.remove(&cg);
            self.announce(cg, startup, out);
        }
    }

    /// A container's start record, once: with its start time when its own
    /// command's exec was seen.
    fn announce(&mut self, cg: u64, startup: Option<Startup>, out: &mut Vec<Attributed>) {
        let Some(s) = self
            .started
            .values_mut()
            .find(|s| !s.announced && s.cgroups.contains(&cg))
        else {
            return;
        };
        s.announced = true;
        out.push(Attributed::Lifecycle(Lifecycle::Start {
            ts: s.first_ts,
            container: s.container.clone(),
            json: s.json.clone(),
            cgroup_id: s.first_cgroup,
            startup,
        }));
    }

    /// Start records still waiting for their container's exec since before
    /// `before` go out without a start time.
    fn announce_waiting(&mut self, before: u64, out: &mut Vec<Attributed>) {
        let waiting: Vec<u64> = self
            .started
            .values()
            .filter(|s| !s.announced && s.first_ts < before)
            .map(|s| s.first_cgroup)
            .collect();
        for cg in waiting {
            self.starts.give_up(cg);
            self.announce(cg, None, out);
        }
    }

    fn cgroup_removed(&mut self, cg: u64, ts: u64, out: &mut Vec<Attributed>) {
        let current = self.registry.removed(cg).and_then(|s| s.container.clone());
        self.starts.give_up(cg);
        self.ready_starts.remove(&cg);
        if !self.started_cgroups.remove(&cg) {
            return;
        }
        self.announce(cg, None, out);
        let Some(id) = self
            .started
            .iter()
            .find(|(_, s)| s.cgroups.contains(&cg))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        let s = self.started.get_mut(&id).expect("found above");
        s.cgroups.remove(&cg);
        if !s.cgroups.is_empty() {
            return;
        }
        let s = self.started.remove(&id).expect("found above");
        out.push(Attributed::Lifecycle(Lifecycle::Exit {
            ts,
            // As it is known now (its name may have come after the start).
            container: current.unwrap_or(s.container),
            json: s.json,
            cgroup_id: cg,
            lifetime_ns: ts.saturating_sub(s.first_ts),
        }));
    }

    /// Releases a cgroup's held events (its name is known, or the wait is
    /// over).
    fn release(&mut self, cg: u64, out: &mut Vec<Attributed>) {
        let Some(q) = self.held.remove(&cg) else {
            return;
        };
        for ev in q {
            match ev {
                Event::CgroupRmdir(r) => self.cgroup_removed(r.cgroup_id, r.ts, out),
                other => self.task_event(other, out),
            }
        }
    }

    /// A container name lookup answered.
    pub fn name_reply(&mut self, reply: NameReply, out: &mut Vec<Attributed>) {
        if reply.name.is_none() && !self.warned_names {
            if let Some(p) = &reply.problem {
                self.warned_names = true;
                eprintln!("warning: container names unavailable ({p}); events keep flowing with container IDs, lookups retry later");
            }
        }
        for cg in self.registry.apply_name(&reply) {
            if !self.starts.starting(cg) {
                self.release(cg, out);
            }
        }
    }

    /// Whether events wait for a name still on its way (not for a start,
    /// which no reply ends: at exit those go out at once).
    pub fn has_held(&self) -> bool {
        self.held
            .keys()
            .any(|&cg| self.registry.awaiting_name(cg) || self.registry.awaiting_walk(cg))
    }

    /// A walk of the cgroup tree answered (from the walker thread): the
    /// cgroups it settled release their events, unless a name or a start
    /// is still on its way.
    pub fn walked(&mut self, w: crate::container::Walked, out: &mut Vec<Attributed>) {
        for cg in self.registry.walked(w) {
            if !self.registry.awaiting_name(cg) && !self.starts.starting(cg) {
                self.release(cg, out);
            }
        }
    }

    /// At exit: everything still waiting for a name goes out as it is.
    pub fn release_all(&mut self, out: &mut Vec<Attributed>) {
        for cg in self.held.keys().copied().collect::<Vec<_>>() {
            self.starts.give_up(cg);
            self.release(cg, out);
        }
        self.announce_waiting(u64::MAX, out);
    }

    /// Held events whose wait ended without a release (before a summary).
    pub fn release_unawaited(&mut self, out: &mut Vec<Attributed>) {
        for cg in self.held.keys().copied().collect::<Vec<_>>() {
            if !self.registry.awaiting_name(cg)
                && !self.registry.awaiting_walk(cg)
                && !self.starts.starting(cg)
            {
                self.release(cg, out);
            }
        }
    }

    /// Periodic housekeeping: waits that are over, cgroups long gone.
    /// Returns the cgroups forgotten, whose state elsewhere can go too.
    pub fn housekeeping(&mut self, now_ts: u64, out: &mut Vec<Attributed>) -> Vec<u64> {
        for cg in self.registry.expired_waits() {
            if !self.starts.starting(cg) && !self.registry.awaiting_walk(cg) {
                self.release(cg, out);
            }
        }
        // Unknown cgroups whose walk never answered: out as they are.
        for cg in self.registry.expired_misses() {
            if !self.registry.awaiting_name(cg) && !self.starts.starting(cg) {
                self.release(cg, out);
            }
        }
        self.registry.ask_walk();
        // Starts whose command never ran within the wait: their events go
        // out, and their start records without a start time.
        let before = crate::pipeline::boot_ns().saturating_sub(START_WAIT_NS);
        for cg in self.starts.expired(before) {
            if !self.registry.awaiting_name(cg) && !self.registry.awaiting_walk(cg) {
                self.release(cg, out);
            }
        }
        self.reconcile(now_ts, out);
        self.announce_waiting(before, out);
        self.registry.retry_names();
        let removed = self.registry.evict();
        for cg in &removed {
            self.judged.remove(cg);
            self.ready_starts.remove(cg);
        }
        removed
    }

    /// Started containers' cgroups checked against cgroupfs, at most every
    /// `RECONCILE_EVERY`: one found gone at two checks in a row is removed
    /// (its `cgroup_rmdir` record was lost). Two checks, so that its last
    /// events, still in the ring buffer at the first, are read first.
    fn reconcile(&mut self, now_ts: u64, out: &mut Vec<Attributed>) {
        if self.v1.is_some()
            || self
                .last_reconcile
                .is_some_and(|t| t.elapsed() < RECONCILE_EVERY)
        {
            return;
        }
        let Some(root) = self.registry.root().map(Path::to_path_buf) else {
            return;
        };
        self.last_reconcile = Some(Instant::now());
        let mut gone = Vec::new();
        for &cg in &self.started_cgroups {
            let Some(s) = self.registry.peek(cg) else {
                continue;
            };
            let dir = root.join(s.path.trim_start_matches('/'));
            if fs::metadata(&dir).is_ok_and(|m| m.ino() == cg) {
                self.missing.remove(&cg);
            } else if !self.missing.insert(cg) {
                gone.push(cg);
            }
        }
        for cg in gone {
            self.missing.remove(&cg);
            self.cgroup_removed(cg, now_ts, out);
        }
    }

    #[cfg(test)]
    pub fn held(&self, cg: u64) -> usize {
        self.held.get(&cg).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use observer_common::{
        CgroupRecord, SyscallRecord, CGROUP_PATH_LEN, KIND_CGROUP_RMDIR, KIND_SYSCALL,
    };

    use super::*;
    use crate::cli::Cli;

    const ID: &str = "3f4e8c2a1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";

    fn syscall(cg: u64, ts: u64) -> Event {
        let mut r = SyscallRecord::default();
        r.header.kind = KIND_SYSCALL;
        r.header.cgroup_id = cg;
        r.header.ts = ts;
        Event::Syscall(r)
    }

    /// A container starts with its first event, before that event, and
    /// exits when its cgroup goes; the host's events are not shown by
    /// default and the kernel is told to drop them.
    #[test]
    fn starts_and_exits_containers_and_judges_the_rest() {
        let args = Cli::parse_from(["observer"]).watch;
        let mut registry = Registry::new(None);
        registry.learn(42, &format!("/docker/{ID}"));
        registry.learn(7, "/user.slice");
        let mut a = Attributor::new(&args, registry);
        let mut out = Vec::new();
        a.event(syscall(42, 100), &mut out);
        a.event(syscall(42, 150), &mut out);
        a.event(syscall(7, 160), &mut out);
        a.event(rmdir(42, 1100, ""), &mut out);
        assert_eq!(out.len(), 4, "start, two events, exit: {out:?}");
        assert!(matches!(
            &out[0],
            Attributed::Lifecycle(Lifecycle::Start {
                ts: 100,
                cgroup_id: 42,
                ..
            })
        ));
        assert!(matches!(
            &out[1],
            Attributed::Task {
                container: Some(_),
                ..
            }
        ));
        assert!(matches!(
            &out[3],
            Attributed::Lifecycle(Lifecycle::Exit {
                lifetime_ns: 1000,
                ..
            })
        ));
        assert_eq!(a.new_verdicts, vec![(42, false), (7, true)]);
    }

    /// `--container NAME` and a container whose name comes only after its
    /// wait expired (a slow engine): it is never dropped in the kernel for
    /// want of a name, and is shown once the name matches.
    #[test]
    fn a_late_name_still_selects_its_container() {
        let args = Cli::parse_from(["observer", "--container", "web"]).watch;
        let mut registry = Registry::new(None);
        let (tx, _rx) = tokio::sync::mpsc::channel(crate::container::NAME_QUEUE);
        registry.set_resolver(tx);
        registry.learn(42, &format!("/docker/{ID}"));
        let mut a = Attributor::new(&args, registry);
        let mut out = Vec::new();
        a.event(syscall(42, 1), &mut out);
        // The wait ends without an answer.
        for s in a.registry.cgroups_mut() {
            s.name_pending = s.name_pending.map(|t| t - crate::container::NAME_WAIT);
        }
        a.housekeeping(0, &mut out);
        a.event(syscall(42, 2), &mut out);
        assert!(a.new_verdicts.is_empty(), "no verdict without a name");
        let reply = crate::container::docker::NameReply {
            id: ID.to_owned(),
            name: Some("web".to_owned()),
            ..Default::default()
        };
        a.registry.apply_name(&reply);
        out.clear();
        a.event(syscall(42, 3), &mut out);
        assert!(
            out.iter().any(|x| matches!(x, Attributed::Task { .. })),
            "shown once named: {out:?}"
        );
        assert_eq!(a.new_verdicts, vec![(42, false)]);
    }

    /// A cgroup record of `kind` at level 2 with `path`.
    fn cgroup_record(kind: u32, cg: u64, path: &str, ts: u64) -> Box<CgroupRecord> {
        let mut r = CgroupRecord {
            kind,
            hierarchy_id: 0,
            ts,
            cgroup_id: cg,
            level: 2,
            _pad: 0,
            path: [0; CGROUP_PATH_LEN],
        };
        r.path[..path.len()].copy_from_slice(path.as_bytes());
        Box::new(r)
    }

    fn mkdir(cg: u64, path: &str, ts: u64) -> Event {
        Event::CgroupMkdir(cgroup_record(
            observer_common::KIND_CGROUP_MKDIR,
            cg,
            path,
            ts,
        ))
    }

    fn exec(cg: u64, ts: u64, comm: &str, filename: &str) -> Event {
        let mut r = observer_common::ExecRecord {
            header: Default::default(),
            filename: [0; observer_common::FILENAME_LEN],
            nodename: [0; observer_common::NODENAME_LEN],
        };
        r.header.kind = observer_common::KIND_EXEC;
        r.header.cgroup_id = cg;
        r.header.ts = ts;
        r.header.comm[..comm.len()].copy_from_slice(comm.as_bytes());
        r.filename[..filename.len()].copy_from_slice(filename.as_bytes());
        Event::Exec(Box::new(r))
    }

    /// A container seen from its cgroup's creation: its events wait for its
    /// own command's exec (not `runc init`'s) and for its name, so that its
    /// start record comes before them, with its start time, the syscalls
    /// its runtime made, and what the runtime answered.
    #[test]
    fn the_start_record_comes_first_with_its_start_time_and_name() {
        let args = Cli::parse_from(["observer"]).watch;
        let mut registry = Registry::new(None);
        let (tx, _rx) = tokio::sync::mpsc::channel(crate::container::NAME_QUEUE);
        registry.set_resolver(tx);
        let mut a = Attributor::new(&args, registry);
        let mut out = Vec::new();
        a.event(mkdir(42, &format!("/docker/{ID}"), 1_000_000), &mut out);
        for ts in [2_000_000, 2_500_000, 3_000_000] {
            a.event(syscall(42, ts), &mut out);
        }
        a.event(
            exec(42, 4_000_000, "runc:[2:INIT]", "/proc/self/exe"),
            &mut out,
        );
        a.event(syscall(42, 5_000_000), &mut out);
        a.event(exec(42, 13_500_000, "workload", "/bin/workload"), &mut out);
        a.event(syscall(42, 14_000_000), &mut out);
        assert!(out.is_empty(), "its events wait for its name: {out:?}");
        let reply = crate::container::docker::NameReply {
            id: ID.to_owned(),
            name: Some("web".to_owned()),
            image: Some("alpine:3".to_owned()),
            ..Default::default()
        };
        a.name_reply(reply, &mut out);
        assert_eq!(out.len(), 8, "start, then its seven events: {out:?}");
        let Attributed::Lifecycle(Lifecycle::Start {
            ts,
            json,
            startup: Some(s),
            ..
        }) = &out[0]
        else {
            panic!("the start record first, with its start time: {out:?}");
        };
        assert_eq!(*ts, 2_000_000);
        assert_eq!(s.start_ms, 12.5);
        assert_eq!(s.runtime_setup_syscalls, 4);
        assert!(
            json.contains(r#""name":"web""#) && json.contains(r#""image":"alpine:3""#),
            "{json}"
        );
        assert!(out[1..]
            .iter()
            .all(|x| matches!(x, Attributed::Task { .. })));

        // Without a name to wait for, the exec alone lets them go.
        let mut a = Attributor::new(&args, Registry::new(None));
        out.clear();
        a.event(
            mkdir(43, "/machine.slice/machine-db.scope", 1_000_000),
            &mut out,
        );
        a.event(syscall(43, 2_000_000), &mut out);
        assert!(out.is_empty(), "waits for the exec: {out:?}");
        a.event(exec(43, 3_000_000, "init", "/sbin/init"), &mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(
            &out[0],
            Attributed::Lifecycle(Lifecycle::Start {
                startup: Some(Startup {
                    runtime_setup_syscalls: 1,
                    ..
                }),
                ..
            })
        ));
    }

    /// A container whose name never comes while it floods: its events wait
    /// for the name only up to a bound, then go out without it.
    #[test]
    fn held_events_are_bounded() {
        let args = Cli::parse_from(["observer"]).watch;
        let mut registry = Registry::new(None);
        let (tx, _rx) = tokio::sync::mpsc::channel(crate::container::NAME_QUEUE);
        registry.set_resolver(tx);
        registry.learn(42, &format!("/docker/{ID}"));
        assert!(registry.awaiting_name(42));
        let mut a = Attributor::new(&args, registry);
        let mut out = Vec::new();
        for _ in 0..MAX_HELD + 10 {
            a.event(syscall(42, 1), &mut out);
        }
        assert!(a.held(42) < MAX_HELD, "released at the bound");
        let tasks = out
            .iter()
            .filter(|x| matches!(x, Attributed::Task { .. }))
            .count();
        assert_eq!(tasks, MAX_HELD, "and handed on, without the name");
    }

    fn rmdir(cg: u64, ts: u64, path: &str) -> Event {
        Event::CgroupRmdir(cgroup_record(KIND_CGROUP_RMDIR, cg, path, ts))
    }

    fn kinds(out: &[Attributed]) -> Vec<&'static str> {
        out.iter()
            .map(|x| match x {
                Attributed::Task {
                    container: None, ..
                } => "host",
                Attributed::Task { .. } => "task",
                Attributed::Lifecycle(Lifecycle::Start { .. }) => "start",
                Attributed::Lifecycle(Lifecycle::Exit { .. }) => "exit",
            })
            .collect()
    }

    /// Events of a cgroup not known yet (its `cgroup_mkdir` lost) wait for
    /// the walk on the walker thread instead of going out as the host's;
    /// one removed before the walk found it is learnt from its removal's
    /// path: events, start and exit all come out with its container. Past
    /// `MAX_HELD` an unknown cgroup's events are dropped and counted.
    #[test]
    fn an_unknown_cgroup_waits_for_the_walk_or_its_removal() {
        let root = std::env::temp_dir().join(format!("observer-held-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let args = Cli::parse_from(["observer"]).watch;
        let mut a = Attributor::new(&args, Registry::new(Some(root.clone())));
        // Made after the scan at start, its mkdir never read.
        let dir = root.join("docker").join(ID);
        fs::create_dir_all(&dir).unwrap();
        let found = dir.metadata().unwrap().ino();
        let mut out = Vec::new();
        a.event(syscall(found, 10), &mut out);
        a.event(syscall(found, 11), &mut out);
        assert!(out.is_empty(), "held, not the host's: {out:?}");
        assert_eq!(a.held(found), 2);
        let asked = Instant::now();
        let w = crate::container::walk(&root);
        a.walked(crate::container::Walked { asked, found: w }, &mut out);
        assert_eq!(kinds(&out), ["start", "task", "task"]);
        // Removed before any walk: the removal's path says.
        let gone = 987_654_321;
        let other = format!("{:064x}", 7);
        out.clear();
        a.event(syscall(gone, 20), &mut out);
        assert!(out.is_empty());
        a.event(rmdir(gone, 30, &format!("/docker/{other}")), &mut out);
        assert_eq!(kinds(&out), ["start", "task", "exit"]);
        assert!(out.iter().all(|x| match x {
            Attributed::Task { container, .. } => container.as_ref().unwrap().id == other,
            _ => true,
        }));
        // A flood from a cgroup the walk has not found yet: held up to the
        // bound, the rest counted as dropped.
        out.clear();
        let flood = 987_654_322;
        for _ in 0..MAX_HELD + 5 {
            a.event(syscall(flood, 40), &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(a.held(flood), MAX_HELD);
        assert_eq!(a.dropped, 5);
        let _ = fs::remove_dir_all(&root);
    }
}
