//! Decoded events -> attribution -> aggregation -> output. Holds everything
//! between the ring buffer and the sink, and no kernel handles, so tests can
//! drive it with synthetic records.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use observer_common::Header;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::{
    aggregate::{named_counts, Activity, Aggregator, Group, Loss},
    cli::{Format, Mode, WatchArgs},
    container::{docker::NameReply, Container, Registry},
    decode::{cstr, Event},
    kernel_info::{HostNamespaces, KernelInfo},
    output::{
        json::{self, Obj},
        table, Sink, SCHEMA_VERSION,
    },
};

/// The rendered end of a cgroup's event lines, with what it was rendered
/// from: the (pidns, mntns, utsns, netns) of the tasks and the container.
type Tail = ((u32, u32, u32, u32), Arc<str>, String);

/// Events held per cgroup while its name is looked up, at most.
const MAX_HELD: usize = 16_384;

struct Started {
    json: Arc<str>,
    first_ts: u64,
    cgroups: HashSet<u64>,
}

/// Map snapshots taken at a summary tick (cumulative since load).
#[derive(Debug, Default)]
pub struct KernelCounters {
    pub oncpu: HashMap<(u64, u32), u64>,
    pub loss_by_cgroup_cpu: HashMap<(u64, u32), u64>,
    pub emitted_total: u64,
    pub lost_total: u64,
    /// `--mode count` only: (cgroup, pidns, nr) -> count.
    pub counts: HashMap<(u64, u32, u32), u64>,
    /// Boot-time ns now, for count-mode first/last seen.
    pub now_ts: u64,
}

pub struct Pipeline {
    pub args: WatchArgs,
    pub registry: Registry,
    agg: Aggregator,
    pub sink: Sink,
    pub kernel: KernelInfo,
    pub host_ns: HostNamespaces,
    clock: i64,
    held: FxHashMap<u64, Vec<Event>>,
    started: HashMap<String, Started>,
    /// Cgroups already part of a started container: the per-event check.
    started_cgroups: FxHashSet<u64>,
    /// Verdicts to write into the kernel's cgroup filter (drained by the
    /// daemon): (cgroup, drop). Each cgroup gets one, once it is known.
    pub new_verdicts: Vec<(u64, bool)>,
    judged: FxHashSet<u64>,
    received: u64,
    received_total: u64,
    prev_emitted: u64,
    prev_lost: u64,
    prev_loss: HashMap<(u64, u32), u64>,
    pub decode_errors: u64,
    warned_names: bool,
    ncpus: usize,
    /// Per cgroup: the rendered end of its event lines, for the namespaces
    /// and container object it was rendered with.
    tails: FxHashMap<u64, Tail>,
    /// cgroup-v1-only hosts: attribution from /proc/PID/cgroup.
    v1: Option<crate::container::v1::V1Attribution>,
    /// `--metrics`: fed every summary interval.
    pub metrics: Option<crate::metrics::Metrics>,
}

impl Pipeline {
    pub fn new(args: WatchArgs, registry: Registry, sink: Sink, clock: i64) -> Self {
        Pipeline {
            args,
            registry,
            agg: Aggregator::default(),
            sink,
            kernel: KernelInfo::read(),
            host_ns: HostNamespaces::read(),
            clock,
            held: FxHashMap::default(),
            started: HashMap::new(),
            started_cgroups: FxHashSet::default(),
            new_verdicts: Vec::new(),
            judged: FxHashSet::default(),
            received: 0,
            received_total: 0,
            prev_emitted: 0,
            prev_lost: 0,
            prev_loss: HashMap::new(),
            decode_errors: 0,
            warned_names: false,
            v1: None,
            metrics: None,
            tails: FxHashMap::default(),
            ncpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }

    fn json_out(&self) -> bool {
        self.args.format == Format::Json
    }

    /// The first record: the kernel every container shares.
    pub fn kernel_record(&mut self) {
        if !self.json_out() {
            return;
        }
        let k = self.kernel.clone();
        let mut o = Obj::new(&mut self.sink.buf);
        o.str("type", "kernel")
            .u64("schema", SCHEMA_VERSION.into())
            .str("release", &k.release)
            .str("version", &k.version)
            .str("machine", &k.machine)
            .str("boot_id", &k.boot_id)
            .str("hostname", &k.hostname)
            .value("host_namespaces", &self.host_ns)
            .str(
                "mode",
                match self.args.mode {
                    Mode::Stream => "stream",
                    Mode::Count => "count",
                },
            )
            .u64("observer_pid", std::process::id().into())
            .str("observer_version", env!("CARGO_PKG_VERSION"));
        o.end();
    }

    /// One raw ring-buffer record.
    pub fn record(&mut self, bytes: &[u8]) {
        self.received += 1;
        match crate::decode::decode(bytes) {
            Ok(ev) => self.event(ev),
            Err(_) => self.decode_errors += 1,
        }
        // Out in 64 KiB writes: a buffer that stays in cache, and memory that
        // stays small however long the batch.
        let _ = self.sink.maybe_flush();
    }

    /// The cgroup hierarchy whose IDs name cgroups here: 0, the unified one,
    /// or the v1 hierarchy read on a host without cgroup2.
    fn hierarchy(&self) -> u32 {
        self.v1.as_ref().map_or(0, |v1| v1.hierarchy_id())
    }

    /// Attributes tasks by their v1 cgroup (a host without cgroup2).
    pub fn use_v1_attribution(&mut self, v1: crate::container::v1::V1Attribution) {
        self.v1 = Some(v1);
    }

    pub fn event(&mut self, mut ev: Event) {
        let exit = matches!(ev, Event::Exit(_));
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
                    let path = String::from_utf8_lossy(cstr(&r.path)).into_owned();
                    self.registry.learn(r.cgroup_id, &path);
                }
            }
            Event::CgroupRmdir(ref r) => {
                if r.hierarchy_id != self.hierarchy() {
                    return;
                }
                if let Some(q) = self.held.get_mut(&r.cgroup_id) {
                    q.push(ev);
                } else {
                    self.cgroup_removed(r.cgroup_id, r.ts);
                }
            }
            _ => {
                let Some(cg) = ev.header().map(|h| h.cgroup_id) else {
                    return;
                };
                if let Some(q) = self.held.get_mut(&cg) {
                    q.push(ev);
                    if q.len() >= MAX_HELD {
                        // A flood while the name is on its way: out without it.
                        self.release(cg);
                    }
                } else if self.registry.awaiting_name(cg) {
                    self.held.insert(cg, vec![ev]);
                } else {
                    self.task_event(ev);
                }
            }
        }
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

    /// Whether a cgroup's activity is shown; marks it for the kernel's drop
    /// filter when it never will be.
    fn wanted(&mut self, cg: u64) -> Option<(Option<Arc<Container>>, Arc<str>)> {
        let state = self.registry.get(cg);
        let (container, json) = (state.container.clone(), state.json.clone());
        let pending_name = state.name_pending.is_some();
        match &container {
            None if !self.args.host => {
                self.judge(cg, true);
                None
            }
            Some(c)
                if !self.args.containers.is_empty()
                    && !self.args.containers.iter().any(|s| c.matches(s)) =>
            {
                if !pending_name {
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

    fn task_event(&mut self, ev: Event) {
        let h: Header = *ev.header().expect("task events have a header");
        let Some((container, json)) = self.wanted(h.cgroup_id) else {
            return;
        };
        if let Some(c) = container {
            self.container_seen(&c, &json, h.cgroup_id, h.ts);
        }
        let what = match &ev {
            Event::Syscall(r) => Activity::Syscall(r.nr),
            Event::SyscallExit(_) => return self.emit(&ev, &json),
            Event::Fork(_) => Activity::Fork,
            Event::Exec(_) => Activity::Exec,
            Event::Exit(_) => Activity::Exit,
            _ => return,
        };
        self.agg.add(&h, what);
        self.emit(&ev, &json);
    }

    fn emit(&mut self, ev: &Event, container_json: &Arc<str>) {
        if !self.json_out() || self.args.summary_only {
            return;
        }
        let Some(h) = ev.header() else { return };
        let key = (h.pidns, h.mntns, h.utsns, h.netns);
        let cached = self
            .tails
            .get(&h.cgroup_id)
            .filter(|t| t.0 == key && Arc::ptr_eq(&t.1, container_json));
        if cached.is_none() {
            let tail = json::tail(h, container_json);
            self.tails
                .insert(h.cgroup_id, (key, container_json.clone(), tail));
        }
        let tail = &self.tails[&h.cgroup_id].2;
        json::event(&mut self.sink.buf, ev, tail, self.clock);
    }

    fn container_seen(&mut self, c: &Arc<Container>, json: &Arc<str>, cg: u64, ts: u64) {
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
        if let Some(m) = self.metrics.as_mut() {
            m.container_started(c);
        }
        self.started.insert(
            key,
            Started {
                json: json.clone(),
                first_ts: ts,
                cgroups: HashSet::from([cg]),
            },
        );
        if self.json_out() {
            let mut o = Obj::new(&mut self.sink.buf);
            o.str("type", "container")
                .str("event", "start")
                .i64("ts", self.clock.saturating_add_unsigned(ts))
                .raw("container", json)
                .u64("cgroup_id", cg);
            o.end();
        }
    }

    fn cgroup_removed(&mut self, cg: u64, ts: u64) {
        let container = self.registry.removed(cg).and_then(|s| s.container.clone());
        if !self.started_cgroups.remove(&cg) {
            return;
        }
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
        if let (Some(m), Some(c)) = (self.metrics.as_mut(), container) {
            m.container_gone(&c, std::time::Instant::now());
        }
        if self.json_out() {
            let lifetime_ms = ts.saturating_sub(s.first_ts) as f64 / 1e6;
            let mut o = Obj::new(&mut self.sink.buf);
            o.str("type", "container")
                .str("event", "exit")
                .i64("ts", self.clock.saturating_add_unsigned(ts))
                .raw("container", &s.json)
                .u64("cgroup_id", cg)
                .f64("lifetime_ms", (lifetime_ms * 1000.0).round() / 1000.0);
            o.end();
        }
    }

    /// Releases a cgroup's held events (its name is known, or the wait is over).
    fn release(&mut self, cg: u64) {
        let Some(q) = self.held.remove(&cg) else {
            return;
        };
        for ev in q {
            match ev {
                Event::CgroupRmdir(r) => self.cgroup_removed(r.cgroup_id, r.ts),
                other => self.task_event(other),
            }
            // A long queue must not pile up in the output buffer.
            let _ = self.sink.maybe_flush();
        }
    }

    /// A container name lookup answered.
    pub fn name_reply(&mut self, reply: NameReply) {
        if reply.name.is_none() && !self.warned_names {
            if let Some(p) = &reply.problem {
                self.warned_names = true;
                eprintln!("warning: container names unavailable ({p}); events keep flowing with container IDs, lookups retry later");
            }
        }
        for cg in self.registry.apply_name(&reply) {
            self.release(cg);
        }
    }

    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// At exit: everything still waiting for a name goes out as it is.
    pub fn release_all(&mut self) {
        for cg in self.held.keys().copied().collect::<Vec<_>>() {
            self.release(cg);
        }
    }

    /// Periodic housekeeping: waits that are over, cgroups long gone.
    /// Returns the cgroups forgotten, whose kernel-side state can go too.
    pub fn housekeeping(&mut self) -> Vec<u64> {
        for cg in self.registry.expired_waits() {
            self.release(cg);
        }
        self.registry.retry_names();
        let removed = self.registry.evict();
        for cg in &removed {
            self.agg.forget(*cg);
            self.judged.remove(cg);
            self.prev_loss.retain(|k, _| k.0 != *cg);
            self.tails.remove(cg);
        }
        removed
    }

    /// The interval's summary (and a loss record when something was lost).
    pub fn summary(&mut self, k: &KernelCounters, interval_s: f64) {
        for cg in self.held.keys().copied().collect::<Vec<_>>() {
            if !self.registry.awaiting_name(cg) {
                self.release(cg);
            }
        }
        if self.args.mode == Mode::Count {
            self.agg.add_counts(&k.counts, k.now_ts);
        }
        let groups = self.agg.take();
        let oncpu = self.agg.oncpu_deltas(&k.oncpu);
        let loss = self.loss(k);

        let mut entries = Vec::new();
        let mut host = Group::default();
        let mut host_cpu: BTreeMap<u32, u64> = BTreeMap::new();
        let mut host_cgroups = 0u64;
        let mut ids: Vec<u64> = groups
            .keys()
            .chain(oncpu.keys())
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        ids.sort_unstable();
        for cg in ids {
            let Some((container, json)) = self.wanted(cg) else {
                continue;
            };
            let g = groups.get(&cg).cloned().unwrap_or_default();
            let cpu = oncpu.get(&cg).cloned().unwrap_or_default();
            if container.is_none() {
                host_cgroups += 1;
                merge(&mut host, &g);
                for (c, ns) in cpu {
                    *host_cpu.entry(c).or_default() += ns;
                }
                continue;
            }
            if g.total == 0
                && g.pids.is_empty()
                && self.args.mode == Mode::Stream
                && !self.started.values().any(|s| s.cgroups.contains(&cg))
            {
                // CPU time only, from a container that made no event yet.
                continue;
            }
            entries.push(Entry {
                json: json.to_string(),
                cgroup_id: Some(cg),
                group: g,
                cpu,
                container,
            });
        }
        if self.args.host && (host_cgroups > 0) {
            entries.push(Entry {
                json: "null".to_owned(),
                cgroup_id: None,
                group: host,
                cpu: host_cpu,
                container: None,
            });
        }

        if let Some(m) = self.metrics.as_mut() {
            let interval: Vec<_> = entries
                .iter()
                .map(|e| crate::metrics::IntervalEntry {
                    container: e.container.as_deref(),
                    group: &e.group,
                    cpu: &e.cpu,
                })
                .collect();
            m.interval(&interval, &loss.by_cpu, std::time::Instant::now());
        }
        match self.args.format {
            Format::Json => self.summary_json(&entries, &loss, interval_s),
            Format::Table => self.summary_table(&entries, &loss, interval_s),
        }
        if self.json_out() && loss.lost > 0 {
            self.loss_record(&loss);
        }
    }

    fn loss(&mut self, k: &KernelCounters) -> Loss {
        let mut loss = Loss {
            lost: k.lost_total.saturating_sub(self.prev_lost),
            lost_total: k.lost_total,
            emitted: k.emitted_total.saturating_sub(self.prev_emitted),
            emitted_total: k.emitted_total,
            received: self.received,
            received_total: self.received_total + self.received,
            ..Default::default()
        };
        self.prev_lost = k.lost_total;
        self.prev_emitted = k.emitted_total;
        self.received_total += self.received;
        self.received = 0;
        for (&(cg, cpu), &n) in &k.loss_by_cgroup_cpu {
            let prev = self.prev_loss.insert((cg, cpu), n).unwrap_or(0);
            let d = n.saturating_sub(prev);
            if d > 0 {
                *loss.by_cpu.entry(cpu).or_default() += d;
                *loss.by_cgroup.entry(cg).or_default() += d;
            }
        }
        loss
    }

    /// `{"type":"loss", …}`: also written once at exit as the final account.
    pub fn loss_record(&mut self, loss: &Loss) {
        let mut o = Obj::new(&mut self.sink.buf);
        o.str("type", "loss")
            .u64("lost", loss.lost)
            .u64("lost_total", loss.lost_total)
            .u64("emitted_total", loss.emitted_total)
            .u64("received_total", loss.received_total)
            .u64("dropped_by_daemon", loss.dropped_by_daemon)
            .value("by_cpu", &loss.by_cpu)
            .value("by_cgroup", &loss.by_cgroup)
            .u64("decode_errors", self.decode_errors);
        o.end();
    }

    /// The final accounting, at exit.
    pub fn final_loss(&mut self, k: &KernelCounters) {
        let mut loss = self.loss(k);
        loss.lost = loss.lost_total;
        if self.json_out() {
            self.loss_record(&loss);
        }
    }

    fn summary_json(&mut self, entries: &[Entry], loss: &Loss, interval_s: f64) {
        let now = self.clock.saturating_add_unsigned(boot_ns());
        let mut list = Vec::new();
        for Entry {
            json,
            cgroup_id: cg,
            group: g,
            cpu,
            ..
        } in entries
        {
            let syscalls: serde_json::Map<String, serde_json::Value> = named_counts(g)
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect();
            let cpu_ns: BTreeMap<String, u64> =
                cpu.iter().map(|(c, ns)| (c.to_string(), *ns)).collect();
            let v = serde_json::json!({
                "container": serde_json::from_str::<serde_json::Value>(json).unwrap_or(serde_json::Value::Null),
                "cgroup_id": cg,
                "pidns": g.pidns,
                "pidns_seen": g.pidns_seen,
                "mntns": g.mntns,
                "utsns": g.utsns,
                "netns": g.netns,
                "syscalls": syscalls,
                "total": g.total,
                "processes": g.pids.len(),
                "pids": g.pids,
                "forks": g.forks,
                "execs": g.execs,
                "exits": g.exits,
                "cpu_ns": cpu_ns,
                "cpu_ns_total": cpu.values().sum::<u64>(),
                "first_seen": (g.first_seen > 0).then(|| self.clock.saturating_add_unsigned(g.first_seen)),
                "last_seen": (g.last_seen > 0).then(|| self.clock.saturating_add_unsigned(g.last_seen)),
            });
            list.push(v);
        }
        let k = &self.kernel;
        let kernel =
            serde_json::json!({"release": k.release, "version": k.version, "boot_id": k.boot_id});
        let mut o = Obj::new(&mut self.sink.buf);
        o.str("type", "summary")
            .i64("ts", now)
            .f64("interval_s", interval_s)
            .value("kernel", &kernel)
            .value("containers", &list)
            .value("loss", loss);
        o.end();
    }

    fn summary_table(&mut self, entries: &[Entry], loss: &Loss, interval_s: f64) {
        let capacity = interval_s * 1e9 * self.ncpus as f64;
        let rows: Vec<table::Row> = entries
            .iter()
            .map(
                |Entry {
                     group: g,
                     cpu,
                     container: c,
                     ..
                 }| table::Row {
                    name: c
                        .as_ref()
                        .map(|c| {
                            c.name
                                .clone()
                                .unwrap_or_else(|| c.id.chars().take(12).collect())
                        })
                        .unwrap_or_else(|| "(host)".into()),
                    runtime: c
                        .as_ref()
                        .map(|c| c.runtime.to_owned())
                        .unwrap_or_else(|| "-".into()),
                    pidns: g.pidns.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    processes: g.pids.len(),
                    syscalls_per_sec: g.total as f64 / interval_s,
                    top: named_counts(g)
                        .into_iter()
                        .take(3)
                        .map(|(n, c)| format!("{n}:{c}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    cpu_share: cpu.values().sum::<u64>() as f64 / capacity,
                },
            )
            .collect();
        let screen = table::render(
            &rows,
            &self.kernel.release,
            &self.kernel.boot_id,
            interval_s,
            loss.lost,
        );
        self.sink.buf.extend_from_slice(screen.as_bytes());
    }
}

/// One summary entry: a container's (or the host's) interval.
struct Entry {
    /// The rendered `container` value (`null` for the host).
    json: String,
    cgroup_id: Option<u64>,
    group: Group,
    cpu: BTreeMap<u32, u64>,
    container: Option<Arc<Container>>,
}

fn merge(into: &mut Group, g: &Group) {
    for (nr, n) in &g.syscalls {
        *into.syscalls.entry(*nr).or_default() += n;
    }
    into.total += g.total;
    into.pids.extend(&g.pids);
    into.forks += g.forks;
    into.execs += g.execs;
    into.exits += g.exits;
    into.pidns = into.pidns.or(g.pidns);
    into.pidns_seen.extend(&g.pidns_seen);
    into.mntns = into.mntns.or(g.mntns);
    into.utsns = into.utsns.or(g.utsns);
    into.netns = into.netns.or(g.netns);
    if g.first_seen > 0 && (into.first_seen == 0 || g.first_seen < into.first_seen) {
        into.first_seen = g.first_seen;
    }
    into.last_seen = into.last_seen.max(g.last_seen);
}

/// `CLOCK_BOOTTIME` now, in ns (the kernel's event clock).
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use observer_common::{SyscallRecord, KIND_SYSCALL};

    use super::*;
    use crate::{cli::Cli, output::Sink};

    /// A container whose name never comes while it floods: its events wait
    /// for the name only up to a bound, then go out without it.
    #[test]
    fn held_events_are_bounded() {
        let args = Cli::parse_from(["observer"]).watch;
        let mut registry = Registry::new(None);
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        registry.set_resolver(tx);
        let id = "3f4e8c2a1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";
        registry.learn(42, &format!("/docker/{id}"));
        assert!(registry.awaiting_name(42));
        let mut p = Pipeline::new(args, registry, Sink::new(Box::new(std::io::sink())), 0);
        let mut r = SyscallRecord::default();
        r.header.kind = KIND_SYSCALL;
        r.header.cgroup_id = 42;
        for _ in 0..MAX_HELD + 10 {
            p.event(Event::Syscall(r));
        }
        assert!(
            p.held.get(&42).map_or(0, Vec::len) < MAX_HELD,
            "released at the bound"
        );
        assert_eq!(
            p.agg.groups[&42].total, MAX_HELD as u64,
            "and processed, without the name"
        );
        assert!(p.sink.buf.capacity() <= 4 << 20 || p.sink.buf.len() < 1 << 16);
    }
}
