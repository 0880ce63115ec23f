//! The way from ring-buffer record to line, one direction only:
//!
//! ```text
//! record -> decode -> identity -> attribute -> account -> render -> sink
//!                         |            |
//!                     Lifecycle     Summary  -> subscribers (Taps)
//! ```
//!
//! Each stage is its own module and type (`attribute::Attributor`,
//! `account::Account`, `render::Render`); this file only composes them. It
//! holds no kernel handles, so tests drive it with synthetic records.

use std::{
    collections::BTreeMap,
    io::IsTerminal,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{broadcast, watch};

pub use crate::account::KernelCounters;
use crate::{
    account::Account,
    aggregate::Loss,
    attribute::{Attributed, Attributor, Lifecycle},
    claims::Claims,
    cli::{Format, Mode, WatchArgs},
    container::{docker::NameReply, v1::V1Attribution, Registry},
    decode::{cstr, Event},
    identity::Identities,
    output::Sink,
    render::Render,
    roster::Roster,
    summary::{self, Summary},
    web::{
        state::{Active, Sample},
        Feed,
    },
};

/// Lifecycle records a slow subscriber may fall behind by before it skips
/// ahead.
const LIFECYCLE_BACKLOG: usize = 1024;

/// Records attribution may hand on at once that `flow` keeps room for.
const OUT_KEPT: usize = 64;

/// What the pipeline publishes for live views (a web page, metrics): the
/// latest summary, and each container start and exit.
#[derive(Clone)]
pub struct Taps {
    pub summaries: watch::Sender<Option<Arc<Summary>>>,
    pub lifecycle: broadcast::Sender<Lifecycle>,
}

impl Default for Taps {
    fn default() -> Self {
        Taps {
            summaries: watch::Sender::new(None),
            lifecycle: broadcast::Sender::new(LIFECYCLE_BACKLOG),
        }
    }
}

impl Taps {
    pub fn summaries(&self) -> watch::Receiver<Option<Arc<Summary>>> {
        self.summaries.subscribe()
    }

    pub fn lifecycle(&self) -> broadcast::Receiver<Lifecycle> {
        self.lifecycle.subscribe()
    }
}

pub struct Pipeline {
    pub args: WatchArgs,
    pub identity: Identities,
    pub attribute: Attributor,
    pub account: Account,
    pub render: Render,
    /// Limits, enforcement and privilege per container.
    pub claims: Claims,
    pub taps: Taps,
    /// `--metrics`: fed every summary interval.
    pub metrics: Option<crate::metrics::Metrics>,
    /// What attribution handed on, reused from record to record.
    out: Vec<Attributed>,
    /// One-line warnings on stderr about what a person would otherwise not
    /// notice: records lost, selectors that match nothing.
    warnings: Warnings,
    /// Running containers, busy or idle, and the recently exited ones: what
    /// the table and the page list.
    pub roster: Roster,
    /// `--web`: the page's state, fed every interval.
    pub web: Option<Feed>,
}

impl Pipeline {
    pub fn new(args: WatchArgs, registry: Registry, sink: Sink, clock: i64) -> Self {
        Pipeline {
            identity: Identities::default(),
            attribute: Attributor::new(&args, registry),
            account: Account::new(args.mode == Mode::Count),
            render: Render::new(&args, sink, clock),
            claims: Claims::from_host(crate::kernel_info::HostNamespaces::read())
                .with_refused_from_program(args.refused_fork_tasks),
            taps: Taps::default(),
            metrics: None,
            out: Vec::new(),
            warnings: Warnings::new(&args),
            roster: Roster::default(),
            web: None,
            args,
        }
    }

    /// Publishes summaries and lifecycle events to these taps.
    pub fn with_taps(mut self, taps: Taps) -> Self {
        self.taps = taps;
        self
    }

    /// Attributes tasks by their v1 cgroup (a host without cgroup2).
    pub fn use_v1_attribution(&mut self, v1: V1Attribution) {
        self.attribute.use_v1(v1);
    }

    /// The first record: the kernel every container shares.
    pub fn kernel_record(&mut self) {
        self.render.kernel_record(self.args.interval);
    }

    /// A raw ring-buffer record read and counted, but not handed on.
    pub fn record_dropped(&mut self) {
        self.account.received();
        self.account.dropped_total += 1;
    }

    /// One raw ring-buffer record.
    pub fn record(&mut self, bytes: &[u8]) {
        self.account.received();
        match crate::decode::decode(bytes) {
            Ok(Event::Task(h)) => self.identity.learn(h),
            Ok(Event::TaskGone(tid)) => self.identity.forget(tid),
            Ok(mut ev @ (Event::Syscall(_) | Event::SyscallExit(_))) => {
                // A syscall without its thread's identity still counts and
                // goes out, tid and cgroup known; it is a decode error too.
                if let Some(h) = ev.header_mut() {
                    if !self.identity.join(h) {
                        self.account.decode_error();
                    }
                }
                self.event(ev);
            }
            Ok(ev) => self.event(ev),
            Err(_) => self.account.decode_error(),
        }
        // Out in 64 KiB writes: a buffer that stays in cache, and memory that
        // stays small however long the batch.
        let _ = self.render.sink.maybe_flush();
    }

    pub fn event(&mut self, ev: Event) {
        self.read_cgroup_files(&ev);
        self.attribute.event(ev, &mut self.out);
        self.flow();
    }

    /// A container's cgroup files, read as its exec or an enforcement
    /// arrives: its events may wait for its name while the cgroup goes.
    fn read_cgroup_files(&mut self, ev: &Event) {
        // Runtimes write the limits after `runc init` joined the cgroup:
        // the container's own command's exec reads them again.
        let (cg, always) = match ev {
            Event::Exit(r) => {
                let cg = r.header.cgroup_id;
                if let Some(path) = self.container_cgroup(cg) {
                    self.claims.task_exit(cg, &path);
                }
                return;
            }
            Event::Enforced(r) => (r.header.cgroup_id, true),
            Event::Exec(r) => (
                r.header.cgroup_id,
                crate::claims::own_command(cstr(&r.header.comm), cstr(&r.filename)),
            ),
            _ => return,
        };
        if !always && self.claims.files.last(cg).is_some() {
            return;
        }
        let Some(path) = self.container_cgroup(cg) else {
            return;
        };
        self.claims.files.refresh(cg, &path);
    }

    /// The cgroup path of a known container's cgroup.
    fn container_cgroup(&self, cg: u64) -> Option<String> {
        self.attribute
            .registry
            .peek(cg)
            .and_then(|s| s.container.as_ref())
            .map(|c| c.cgroup.clone())
    }

    /// Moves what attribution handed on through accounting and rendering.
    fn flow(&mut self) {
        let many = self.out.len() > 1;
        for a in self.out.drain(..) {
            match a {
                Attributed::Task {
                    ev,
                    json,
                    container,
                } => match (&ev, &container) {
                    (Event::Privilege(r), _) => self.claims.exec_privilege(r),
                    (Event::Enforced(r), Some(c)) => {
                        if let Some(e) = self.claims.enforced(c, &json, r) {
                            self.render.enforced(&e);
                        }
                    }
                    (Event::Enforced(_), None) => {}
                    _ => {
                        self.account.task(&ev);
                        if let (Some(w), Event::Syscall(r)) = (self.web.as_mut(), &ev) {
                            sample(w, &self.account, self.render.clock, r);
                        }
                        self.render.task(&ev, container.as_deref(), &json);
                    }
                },
                Attributed::Lifecycle(l) => {
                    match &l {
                        Lifecycle::Start {
                            ts,
                            container,
                            json,
                            cgroup_id,
                            startup,
                        } => {
                            self.roster.start(*cgroup_id, container, json, *ts);
                            if let Some(s) = startup {
                                self.claims.started(container, *cgroup_id, *s);
                            }
                        }
                        Lifecycle::Exit { ts, cgroup_id, .. } => {
                            self.roster.exit(*cgroup_id, *ts, Instant::now());
                        }
                    }
                    if let Some(m) = self.metrics.as_mut() {
                        match &l {
                            Lifecycle::Start { container, .. } => m.container_started(container),
                            Lifecycle::Exit { container, .. } => {
                                m.container_gone(container, std::time::Instant::now())
                            }
                        }
                    }
                    self.render.lifecycle(&l);
                    // No subscriber is fine.
                    let _ = self.taps.lifecycle.send(l);
                }
            }
            if many {
                // A long queue of released events must not pile up in the
                // output buffer.
                let _ = self.render.sink.maybe_flush();
            }
        }
        // A container's events held for its name come out at once, tens of
        // thousands under a flood: not kept at that size ever after.
        if self.out.capacity() > OUT_KEPT {
            self.out.shrink_to(OUT_KEPT);
        }
    }

    /// A container name lookup answered.
    pub fn name_reply(&mut self, reply: NameReply) {
        self.attribute.name_reply(reply, &mut self.out);
        self.flow();
    }

    /// A walk of the cgroup tree answered (from the walker thread).
    pub fn walked(&mut self, w: crate::container::Walked) {
        self.attribute.walked(w, &mut self.out);
        self.flow();
    }

    /// Whether records of this cgroup can be attributed (its path is known).
    pub fn knows_cgroup(&self, cg: u64) -> bool {
        self.attribute.knows(cg)
    }

    pub fn has_held(&self) -> bool {
        self.attribute.has_held()
    }

    /// At exit: everything still waiting for a name goes out as it is.
    pub fn release_all(&mut self) {
        self.attribute.release_all(&mut self.out);
        self.flow();
    }

    /// Periodic housekeeping: waits that are over, cgroups long gone.
    /// Returns the cgroups forgotten, whose kernel-side state can go too.
    pub fn housekeeping(&mut self) -> Vec<u64> {
        let removed = self.attribute.housekeeping(boot_ns(), &mut self.out);
        self.flow();
        for &cg in &removed {
            self.account.forget(cg);
            self.render.forget(cg);
            self.claims.forget(cg);
        }
        removed
    }

    /// Verdicts for the kernel's cgroup filter: (cgroup, drop).
    pub fn new_verdicts(&mut self) -> std::vec::Drain<'_, (u64, bool)> {
        self.attribute.new_verdicts.drain(..)
    }

    pub fn sink(&mut self) -> &mut Sink {
        &mut self.render.sink
    }

    /// The interval's summary: made as data, rendered (with a loss record
    /// when something was lost), published, and returned.
    pub fn summary(&mut self, k: &KernelCounters, interval_s: f64) -> Arc<Summary> {
        self.attribute.release_unawaited(&mut self.out);
        self.flow();
        let iv = self.account.interval(k, self.args.mode == Mode::Count);
        let mut loss = self.account.loss(k);
        loss.dropped_by_daemon += self.render.sink.dropped_lines + self.attribute.dropped;
        let mut entries = summary::entries(
            iv,
            &mut self.attribute,
            self.args.host,
            self.args.mode == Mode::Stream,
        );
        for e in self.claims.interval(&mut entries, boot_ns()) {
            self.render.enforced(&e);
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
        self.warnings.matched(&entries);
        self.warnings.lost(&loss, &mut self.attribute, false);
        self.update_roster();
        if let Some(w) = self.web.as_mut() {
            let active: Vec<Active> = entries
                .iter()
                .filter_map(|e| {
                    Some(Active {
                        cgroup_id: e.cgroup_id.filter(|_| e.container.is_some())?,
                        group: &e.group,
                        cpu: &e.cpu,
                    })
                })
                .collect();
            w.interval(
                &self.roster,
                &active,
                &loss,
                self.account.decode_errors,
                interval_s,
            );
        }
        let s = Arc::new(Summary {
            ts: self.render.clock.saturating_add_unsigned(boot_ns()),
            interval_s,
            entries,
            loss,
            decode_errors: self.account.decode_errors,
        });
        self.render.summary(&s, &self.roster);
        self.taps.summaries.send_replace(Some(s.clone()));
        s
    }

    /// The roster at an interval's end: exited members past their time go,
    /// names learnt since the start are taken, containers running quietly
    /// (no event yet) join it, and quiet ones whose cgroup went are exited.
    fn update_roster(&mut self) {
        let now = Instant::now();
        self.roster.expire(now);
        let registry = &self.attribute.registry;
        let gone: Vec<u64> = self
            .roster
            .iter()
            .filter(|(cg, m)| {
                m.exit.is_none() && registry.peek(*cg).is_none_or(|s| s.removed.is_some())
            })
            .map(|(cg, _)| cg)
            .collect();
        let mut quiet = Vec::new();
        for (cg, c) in registry.live_containers() {
            match self.roster.get(cg) {
                Some(m) if !Arc::ptr_eq(&m.container, c) => quiet.push(cg),
                Some(_) => {}
                // Pod-level cgroups have no container of their own; a
                // container's nested cgroups are the container itself.
                None if !c.id.is_empty() && !self.roster.has_container(&c.id) => quiet.push(cg),
                None => {}
            }
        }
        let ts = boot_ns();
        for cg in gone {
            self.roster.exit(cg, ts, now);
        }
        for cg in quiet {
            if let Some((Some(c), json)) = self.attribute.wanted(cg) {
                if self.roster.get(cg).is_some() {
                    self.roster.rename(cg, &c, &json);
                } else {
                    self.roster.start(cg, &c, &json, 0);
                }
            }
        }
    }

    /// The final accounting, at exit.
    pub fn final_loss(&mut self, k: &KernelCounters) {
        let mut loss = self.account.final_loss(k);
        loss.dropped_by_daemon += self.render.sink.dropped_lines + self.attribute.dropped;
        self.warnings.lost(&loss, &mut self.attribute, true);
        self.render.final_loss(
            &loss,
            self.account.decode_errors,
            &self.attribute.registry.stats,
        );
    }

    /// The last summary, at exit: it covers exactly `covered_s`, the time
    /// since the previous one, and says it is the last.
    pub fn final_summary(&mut self, k: &KernelCounters, covered_s: f64) -> Arc<Summary> {
        self.render.last = true;
        // Microseconds: what a clock read twice can honestly claim.
        self.summary(k, (covered_s * 1e6).round() / 1e6)
    }
}

/// How long a `--container` selector may match nothing before it is
/// warned about: five intervals, and at least this long.
const UNMATCHED_AT_LEAST: Duration = Duration::from_secs(3);

/// At most one loss warning this often (a flood lasts many intervals).
const LOSS_WARN_EVERY: Duration = Duration::from_secs(10);

/// Warnings on stderr, each said once or rate-limited.
struct Warnings {
    start: Instant,
    /// `--container` selectors, and whether a shown container matched each.
    selectors: Vec<(String, bool)>,
    unmatched_after: Duration,
    unmatched_said: bool,
    /// Loss not yet warned about, and when the last warning went out.
    lost: u64,
    lost_by_cgroup: BTreeMap<u64, u64>,
    lost_since: Instant,
    lost_said: Option<Instant>,
    /// The table on the terminal shows loss itself; stderr would tear it.
    quiet_loss: bool,
}

impl Warnings {
    fn new(args: &WatchArgs) -> Self {
        let now = Instant::now();
        let to_terminal = args.output.as_deref().is_none_or(|o| o == Path::new("-"))
            && std::io::stdout().is_terminal();
        Warnings {
            start: now,
            selectors: args.containers.iter().map(|s| (s.clone(), false)).collect(),
            unmatched_after: UNMATCHED_AT_LEAST.max(Duration::from_secs_f64(args.interval * 5.0)),
            unmatched_said: false,
            lost: 0,
            lost_by_cgroup: BTreeMap::new(),
            lost_since: now,
            lost_said: None,
            quiet_loss: args.format == Format::Table && to_terminal,
        }
    }

    /// Notes which selectors the interval's containers matched; once, after
    /// a while, names those that matched nothing.
    fn matched(&mut self, entries: &[summary::Entry]) {
        for e in entries {
            if let Some(c) = &e.container {
                for (sel, hit) in &mut self.selectors {
                    *hit |= c.matches(sel);
                }
            }
        }
        if let Some(line) = self.unmatched_line() {
            eprintln!("{line}");
        }
    }

    fn unmatched_line(&mut self) -> Option<String> {
        if self.unmatched_said || self.start.elapsed() < self.unmatched_after {
            return None;
        }
        self.unmatched_said = true;
        let none: Vec<&str> = self
            .selectors
            .iter()
            .filter(|(_, hit)| !hit)
            .map(|(s, _)| s.as_str())
            .collect();
        (!none.is_empty()).then(|| {
            format!(
                "warning: nothing has matched --container {} in {:.0} s: give a container's name, full ID \
                 or an ID prefix of 4+ characters (`docker ps` lists them); still watching",
                none.join(", --container "),
                self.start.elapsed().as_secs_f64()
            )
        })
    }

    /// Loss, on stderr: at most once per `LOSS_WARN_EVERY` (and what is
    /// left at the end), with the cgroup that lost most, by name.
    fn lost(&mut self, loss: &Loss, attr: &mut Attributor, at_exit: bool) {
        if !at_exit {
            self.lost += loss.lost;
            for (cg, n) in &loss.by_cgroup {
                *self.lost_by_cgroup.entry(*cg).or_default() += n;
            }
        }
        let due = self
            .lost_said
            .is_none_or(|t| t.elapsed() >= LOSS_WARN_EVERY);
        if self.lost == 0 || self.quiet_loss || !(due || at_exit) {
            return;
        }
        let most = self
            .lost_by_cgroup
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(&cg, &n)| (cg, n));
        let who = most.map(|(cg, n)| {
            let name = match attr.registry.peek(cg).and_then(|s| s.container.clone()) {
                Some(c) => format!(
                    "container {}",
                    c.name
                        .clone()
                        .unwrap_or_else(|| c.id.chars().take(12).collect())
                ),
                None => format!("cgroup {cg} (the host)"),
            };
            format!(", {n} of them from {name}")
        });
        eprintln!(
            "{}",
            loss_line(
                self.lost,
                self.lost_since.elapsed().as_secs_f64(),
                who.as_deref().unwrap_or("")
            )
        );
        self.lost = 0;
        self.lost_by_cgroup.clear();
        self.lost_since = Instant::now();
        self.lost_said = Some(Instant::now());
    }
}

/// The loss warning's text.
fn loss_line(lost: u64, secs: f64, who: &str) -> String {
    format!(
        "warning: lost {lost} records in the last {secs:.1}s (the ring buffer was full){who}; see the \
         loss records, and try --mode count, a --syscall filter, --ring-buffer-kb 65536 or --summary-only"
    )
}

/// A few syscalls per container and interval for the page's ticker: the
/// first ones, then one at every doubling (cheap at any rate).
fn sample(w: &mut Feed, account: &Account, clock: i64, r: &observer_common::SyscallRecord) {
    let h = &r.header;
    let n = account.agg.groups.get(&h.cgroup_id).map_or(0, |g| g.total);
    if n <= 3 || n.is_power_of_two() {
        w.sample(
            h.cgroup_id,
            Sample {
                ts: clock.saturating_add_unsigned(h.ts),
                pid: h.pid,
                ns_pid: h.ns_pid,
                comm: String::from_utf8_lossy(cstr(&h.comm)).into_owned(),
                syscall: crate::syscalls::label(r.nr),
            },
        );
    }
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
    use crate::{attribute::MAX_HELD, cli::Cli};

    /// A container whose name never comes while it floods: its events wait
    /// for the name only up to a bound, then go out without it.
    #[test]
    fn held_events_are_bounded() {
        let args = Cli::parse_from(["observer"]).watch;
        let mut registry = Registry::new(None);
        let (tx, _rx) = tokio::sync::mpsc::channel(crate::container::NAME_QUEUE);
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
        assert!(p.attribute.held(42) < MAX_HELD, "released at the bound");
        assert_eq!(
            p.account.agg.groups[&42].total, MAX_HELD as u64,
            "and processed, without the name"
        );
        assert!(p.render.sink.buf.capacity() <= 4 << 20 || p.render.sink.buf.len() < 1 << 16);
    }

    /// The summary is data first: subscribers get the same value the lines
    /// were rendered from, and lifecycle events as they happen.
    #[test]
    fn publishes_summaries_and_lifecycle() {
        let args = Cli::parse_from(["observer"]).watch;
        let mut registry = Registry::new(None);
        registry.learn(
            42,
            "/docker/3f4e8c2a1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f",
        );
        let mut p = Pipeline::new(args, registry, Sink::new(Box::new(std::io::sink())), 0);
        let summaries = p.taps.summaries();
        let mut lifecycle = p.taps.lifecycle();
        let mut r = SyscallRecord::default();
        r.header.kind = KIND_SYSCALL;
        r.header.cgroup_id = 42;
        r.nr = 39;
        for _ in 0..3 {
            p.event(Event::Syscall(r));
        }
        assert!(matches!(
            lifecycle.try_recv(),
            Ok(Lifecycle::Start { cgroup_id: 42, .. })
        ));
        let s = p.summary(&KernelCounters::default(), 1.0);
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.entries[0].group.total, 3);
        let latest = summaries.borrow().clone().expect("published");
        assert!(Arc::ptr_eq(&latest, &s));
    }

    /// A selector that matched nothing is named once, after a while; one
    /// that matched is not.
    #[test]
    fn selectors_that_match_nothing_are_named_once() {
        let args = Cli::parse_from([
            "observer",
            "--container",
            "web",
            "--container",
            "nosuchthing",
            "--interval",
            "0.1",
        ])
        .watch;
        let mut w = Warnings::new(&args);
        w.selectors[0].1 = true;
        assert!(w.unmatched_line().is_none(), "not before a while");
        w.start -= Duration::from_secs(5);
        let l = w.unmatched_line().expect("said after a while");
        assert!(
            l.contains("--container nosuchthing") && !l.contains("web"),
            "{l}"
        );
        assert!(w.unmatched_line().is_none(), "once");
        let l = loss_line(181_627, 5.0, ", 181000 of them from container web");
        assert!(l.starts_with("warning: lost 181627 records in the last 5.0s"));
        assert!(l.contains("from container web") && l.contains("--mode count"));
    }
}
