//! Rendering: attributed events, container lifecycle and summaries become
//! JSON lines (or the table) in the sink's buffer. Holds no attribution or
//! accounting state, only what makes lines cheap: each cgroup's line tail,
//! rendered once.

use std::{collections::BTreeMap, sync::Arc};

use observer_common::Header;
use rustc_hash::FxHashMap;

use crate::{
    aggregate::{named_counts, Loss},
    attribute::Lifecycle,
    cli::{Format, Mode, WatchArgs},
    container::Container,
    decode::Event,
    kernel_info::{HostNamespaces, KernelInfo},
    output::{
        json::{self, Obj},
        table, Sink, SCHEMA_VERSION,
    },
    roster::Roster,
    summary::Summary,
};

/// The rendered end of a cgroup's event lines, with what it was rendered
/// from: the (pidns, mntns, utsns, netns) of the tasks and the container.
type Tail = ((u32, u32, u32, u32), Arc<str>, String);

pub struct Render {
    pub sink: Sink,
    pub kernel: KernelInfo,
    pub host_ns: HostNamespaces,
    /// Boot time -> Unix time, in ns.
    pub clock: i64,
    /// How the loaded programs read kernel memory (the `kernel` record).
    pub task_access: crate::loader::TaskAccess,
    /// The event rings (the `kernel` record): their layout and how many.
    pub rings: (crate::loader::RingLayout, usize),
    format: Format,
    mode: Mode,
    summary_only: bool,
    ncpus: usize,
    /// Per cgroup: the rendered end of its event lines, for the namespaces
    /// and container object it was rendered with.
    tails: FxHashMap<u64, Tail>,
    /// `--format table`: the row order between frames.
    table: table::Table,
    /// The table goes to stdout (a terminal, maybe), not an `-o` file.
    to_stdout: bool,
    /// `--container` selectors, for the table's empty-state hint.
    selectors: Vec<String>,
    /// An image the engine has, for the table's empty-state hint (looked
    /// up while the observer runs).
    pub example_image: Arc<std::sync::OnceLock<String>>,
    /// The next summary is the last (it then says so).
    pub last: bool,
    /// Table frames drawn with rows or after a full interval.
    frames: u64,
}

impl Render {
    pub fn new(args: &WatchArgs, sink: Sink, clock: i64) -> Self {
        Render {
            sink,
            kernel: KernelInfo::read(),
            host_ns: HostNamespaces::read(),
            clock,
            task_access: crate::loader::TaskAccess::Auto,
            rings: (args.rings, 1),
            format: args.format,
            mode: args.mode,
            summary_only: args.summary_only,
            ncpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            tails: FxHashMap::default(),
            table: table::Table::default(),
            to_stdout: args
                .output
                .as_deref()
                .is_none_or(|o| o == std::path::Path::new("-")),
            selectors: args.containers.clone(),
            example_image: Arc::default(),
            last: false,
            frames: 0,
        }
    }

    fn json_out(&self) -> bool {
        self.format == Format::Json
    }

    /// The first record: the kernel every container shares.
    pub fn kernel_record(&mut self, interval_s: f64) {
        if !self.json_out() {
            // The table's header and kernel line, at once.
            let hint =
                format!("(watching: the first interval's activity shows in {interval_s:.1}s)");
            self.draw_table(&mut [], &hint, interval_s, 0);
            return;
        }
        let k = &self.kernel;
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
                match self.mode {
                    Mode::Stream => "stream",
                    Mode::Count => "count",
                },
            )
            .u64("observer_pid", std::process::id().into())
            .str("task_access", self.task_access.as_str())
            .str("rings", self.rings.0.as_str())
            .u64("ring_count", self.rings.1 as u64)
            .str("observer_version", env!("CARGO_PKG_VERSION"));
        o.end();
    }

    /// One task event's line.
    pub fn task(&mut self, ev: &Event, container: Option<&Container>, container_json: &Arc<str>) {
        // Count mode has no per-event lines: its lifecycle events are
        // counted in the summaries.
        if !self.json_out() || self.summary_only || self.mode == Mode::Count {
            return;
        }
        let Some(h) = ev.header() else { return };
        let tail = tail(&mut self.tails, h, container, container_json);
        json::event(&mut self.sink.buf, ev, tail, self.clock);
    }

    /// A container's `start` or `exit` record.
    pub fn lifecycle(&mut self, l: &Lifecycle) {
        if !self.json_out() {
            return;
        }
        let mut o = Obj::new(&mut self.sink.buf);
        match l {
            Lifecycle::Start {
                ts,
                json,
                cgroup_id,
                startup,
                ..
            } => {
                o.str("type", "container")
                    .str("event", "start")
                    .i64("ts", self.clock.saturating_add_unsigned(*ts))
                    .raw("container", json)
                    .u64("cgroup_id", *cgroup_id);
                match startup {
                    Some(s) => o
                        .f64("start_ms", s.start_ms)
                        .u64("runtime_setup_syscalls", s.runtime_setup_syscalls),
                    None => o
                        .raw("start_ms", "null")
                        .raw("runtime_setup_syscalls", "null"),
                };
            }
            Lifecycle::Exit {
                ts,
                json,
                cgroup_id,
                lifetime_ns,
                ..
            } => {
                let lifetime_ms = *lifetime_ns as f64 / 1e6;
                o.str("type", "container")
                    .str("event", "exit")
                    .i64("ts", self.clock.saturating_add_unsigned(*ts))
                    .raw("container", json)
                    .u64("cgroup_id", *cgroup_id)
                    .f64("lifetime_ms", (lifetime_ms * 1000.0).round() / 1000.0);
            }
        }
        o.end();
    }

    /// `{"type":"enforced", …}`: a limit the kernel enforced.
    pub fn enforced(&mut self, e: &crate::claims::Enforced) {
        if !self.json_out() {
            return;
        }
        let mut o = Obj::new(&mut self.sink.buf);
        o.str("type", "enforced")
            .i64("ts", self.clock.saturating_add_unsigned(e.ts))
            .str("kind", e.kind)
            .raw("container", &e.json)
            .u64("cgroup_id", e.cgroup_id);
        match &e.task {
            Some((pid, comm)) => o.u64("pid", (*pid).into()).str("comm", comm),
            None => o.raw("pid", "null").raw("comm", "null"),
        };
        o.u64("count", e.count);
        match e.limit {
            Some(l) => o.u64("limit", l),
            None => o.raw("limit", "null"),
        };
        o.end();
    }

    /// Forgets a removed cgroup.
    pub fn forget(&mut self, cg: u64) {
        self.tails.remove(&cg);
    }

    /// The interval's summary, and a loss record when something was lost.
    /// The table lists every container of the roster (idle ones at 0/s,
    /// exited ones for a while); the JSON summary only the active ones.
    pub fn summary(&mut self, s: &Summary, roster: &Roster) {
        match self.format {
            Format::Json => self.summary_json(s),
            Format::Table => self.summary_table(s, roster),
        }
        if self.json_out() && s.loss.lost > 0 {
            self.loss(&s.loss, s.decode_errors);
        }
    }

    /// `{"type":"loss", …}`: also written once at exit as the final account.
    pub fn loss(&mut self, loss: &Loss, decode_errors: u64) {
        if !self.json_out() {
            return;
        }
        let mut o = Obj::new(&mut self.sink.buf);
        Self::loss_fields(&mut o, loss, decode_errors);
        o.end();
    }

    /// The final `loss` record: the account, and what the cgroup registry
    /// did (walks on and off the daemon's thread, name lookups deferred).
    pub fn final_loss(
        &mut self,
        loss: &Loss,
        decode_errors: u64,
        registry: &crate::container::RegistryStats,
    ) {
        if !self.json_out() {
            return;
        }
        let mut o = Obj::new(&mut self.sink.buf);
        Self::loss_fields(&mut o, loss, decode_errors);
        o.value(
            "registry",
            &serde_json::json!({
                "cgroup_walks_inline": registry.walks_inline,
                "cgroup_walks_background": registry.walks_background,
                "unknown_cgroups": registry.unknown_cgroups,
                "names_deferred": registry.names_deferred,
            }),
        );
        o.end();
    }

    fn loss_fields(o: &mut Obj<'_>, loss: &Loss, decode_errors: u64) {
        o.str("type", "loss")
            .u64("lost", loss.lost)
            .u64("lost_total", loss.lost_total)
            .u64("emitted_total", loss.emitted_total)
            .u64("received_total", loss.received_total)
            .u64("dropped_by_daemon", loss.dropped_by_daemon)
            .value("by_cpu", &loss.by_cpu)
            .value("by_cgroup", &loss.by_cgroup)
            .u64("decode_errors", decode_errors);
    }

    fn summary_json(&mut self, s: &Summary) {
        let mut list = Vec::new();
        for e in &s.entries {
            let g = &e.group;
            let syscalls: serde_json::Map<String, serde_json::Value> = named_counts(g)
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect();
            let cpu_ns: BTreeMap<String, u64> =
                e.cpu.iter().map(|(c, ns)| (c.to_string(), *ns)).collect();
            let mut v = serde_json::json!({
                "container": serde_json::from_str::<serde_json::Value>(&e.json).unwrap_or(serde_json::Value::Null),
                "cgroup_id": e.cgroup_id,
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
                "threads": g.threads,
                "execs": g.execs,
                "exits": g.exits,
                "cpu_ns": cpu_ns,
                "cpu_ns_total": e.cpu.values().sum::<u64>(),
                "first_seen": (g.first_seen > 0).then(|| self.clock.saturating_add_unsigned(g.first_seen)),
                "last_seen": (g.last_seen > 0).then(|| self.clock.saturating_add_unsigned(g.last_seen)),
            });
            if let (Some(c), serde_json::Value::Object(m)) = (&e.claims, &mut v) {
                m.insert("limits".into(), serde_json::json!(c.limits));
                m.insert("usage".into(), serde_json::json!(c.usage));
                m.insert("enforced".into(), serde_json::json!(c.enforced));
                m.insert(
                    "start_ms".into(),
                    serde_json::json!(c.startup.map(|s| s.start_ms)),
                );
                m.insert(
                    "runtime_setup_syscalls".into(),
                    serde_json::json!(c.startup.map(|s| s.runtime_setup_syscalls)),
                );
                m.insert("privilege".into(), serde_json::json!(c.privilege));
            }
            list.push(v);
        }
        let k = &self.kernel;
        let kernel =
            serde_json::json!({"release": k.release, "version": k.version, "boot_id": k.boot_id});
        let mut o = Obj::new(&mut self.sink.buf);
        o.str("type", "summary")
            .i64("ts", s.ts)
            .f64("interval_s", s.interval_s);
        if self.last {
            o.raw("final", "true");
        }
        o.value("kernel", &kernel)
            .value("containers", &list)
            .value("loss", &s.loss);
        o.end();
    }

    fn summary_table(&mut self, s: &Summary, roster: &Roster) {
        if self.last && s.entries.is_empty() && self.frames > 0 {
            // A run ended moments after a frame: that frame, showing what
            // ran, stays as the room's last screen.
            return;
        }
        self.frames += 1;
        let capacity = s.interval_s * 1e9 * self.ncpus as f64;
        let shown: std::collections::HashSet<u64> =
            s.entries.iter().filter_map(|e| e.cgroup_id).collect();
        let quiet: Vec<crate::summary::Entry> = roster
            .iter()
            .filter(|(cg, _)| !shown.contains(cg))
            .map(|(cg, m)| crate::summary::Entry {
                container: Some(m.container.clone()),
                json: m.json.clone(),
                cgroup_id: Some(cg),
                group: Default::default(),
                cpu: BTreeMap::new(),
                // Idle in the interval: its claims come with its next entry.
                claims: None,
            })
            .collect();
        let mut rows: Vec<table::Row> = s
            .entries
            .iter()
            .chain(&quiet)
            .map(|e| {
                let (g, c) = (&e.group, &e.container);
                let exited = e.cgroup_id.and_then(|cg| roster.get(cg)?.exit);
                let mut top: Vec<(String, f64)> = named_counts(g)
                    .into_iter()
                    .take(6)
                    .map(|(n, c)| (n, c as f64 / s.interval_s))
                    .collect();
                if let Some(x) = exited {
                    // First in the top-syscalls column: what the room must
                    // know about this row.
                    let lived = x
                        .lifetime_ms
                        .map(|ms| format!("exited, lived {}", lifetime(ms)))
                        .unwrap_or_else(|| "exited".into());
                    top.insert(0, (lived, f64::NAN));
                }
                table::Row {
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
                    syscalls_per_sec: g.total as f64 / s.interval_s,
                    top,
                    cpu_share: e.cpu.values().sum::<u64>() as f64 / capacity,
                    risks: e
                        .claims
                        .as_ref()
                        .and_then(|c| c.privilege.as_ref())
                        .map(|p| p.risks())
                        .unwrap_or_default(),
                }
            })
            .collect();
        let hint = self.empty_hint(s.interval_s);
        self.draw_table(&mut rows, &hint, s.interval_s, s.loss.lost);
    }

    /// What the table says when no row is shown: that a `--container`
    /// filter matches nothing, or how to start a container with an image
    /// the engine has.
    fn empty_hint(&self, interval_s: f64) -> String {
        if !self.selectors.is_empty() {
            return format!(
                "(nothing matches --container {} in the last {interval_s:.1}s: a name, a full ID, or an ID prefix of 4+ characters of a running container)",
                self.selectors.join(", --container ")
            );
        }
        match self.example_image.get() {
            Some(i) => format!("(no container activity in the last {interval_s:.1}s: start one, e.g. docker run --rm --network none {i} uname -r)"),
            None => format!("(no container activity in the last {interval_s:.1}s: start a container in another terminal)"),
        }
    }

    fn draw_table(&mut self, rows: &mut [table::Row], hint: &str, interval_s: f64, lost: u64) {
        self.table.sort(rows);
        // Asked again each frame: the terminal may have been resized.
        let view = table::View::detect(self.to_stdout);
        let footer = table::Footer {
            release: &self.kernel.release,
            boot_id: &self.kernel.boot_id,
            interval_s,
            lost,
            empty_hint: hint,
        };
        let screen = table::render(rows, &footer, &view);
        self.sink.buf.extend_from_slice(screen.as_bytes());
    }
}

/// "212 ms", "3.4 s", "2 min 5 s".
fn lifetime(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// A cgroup's line tail, rendered again only when its namespaces or its
/// container (whose rendering changes when its name arrives) changed.
fn tail<'a>(
    tails: &'a mut FxHashMap<u64, Tail>,
    h: &Header,
    container: Option<&Container>,
    container_json: &Arc<str>,
) -> &'a str {
    let key = (h.pidns, h.mntns, h.utsns, h.netns);
    let cached = tails
        .get(&h.cgroup_id)
        .filter(|t| t.0 == key && Arc::ptr_eq(&t.1, container_json));
    if cached.is_none() {
        let tail = json::tail(h, &event_container(container));
        tails.insert(h.cgroup_id, (key, container_json.clone(), tail));
    }
    &tails[&h.cgroup_id].2
}

/// The `container` value of an event line (schema 2): the container's `id`
/// and `name`, enough to select one container's events; the whole object
/// is in its `container` record and in summaries.
pub fn event_container(c: Option<&Container>) -> String {
    match c {
        None => "null".to_owned(),
        Some(c) => serde_json::json!({"id": c.id, "name": c.name}).to_string(),
    }
}
