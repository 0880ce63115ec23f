//! The running observer: loads the programs, reads the ring buffer when the
//! kernel wakes it, and drives the pipeline until a signal, `--duration`, or
//! a closed output ends it. Everything attached is released on the way out.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use aya::{
    maps::{MapData, RingBuf},
    programs::Program,
};
use observer_common::{
    CountKey, CGROUP_DROP, CGROUP_PASS, KIND_CGROUP_RMDIR, MODE_COUNT, MODE_STREAM, STAT_EMITTED,
    STAT_LOST, SYSCALL_BITMAP_WORDS,
};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

use crate::{
    cli::{Mode, WatchArgs},
    container::{docker, Registry},
    decode,
    kernel_info::{boot_to_unix_offset_ns, HostNamespaces, KernelInfo},
    loader::{self, Counters, LoadOptions, Loaded},
    output::{open_output, Sink},
    pipeline::{boot_ns, KernelCounters, Pipeline, Taps},
    rings::EventRings,
    web::{self, Feed},
};

/// How often records that were submitted without a wakeup are collected:
/// the upper bound on their latency (the kernel wakes the reader every
/// `--wakeup-every` records per CPU, and on every lifecycle record).
const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// The kernel's bitmaps of the native and the compat syscall numbers.
pub type SyscallBitmaps = ([u64; SYSCALL_BITMAP_WORDS], [u64; SYSCALL_BITMAP_WORDS]);

/// `--syscall NAME…` -> the kernel's bitmaps: each name by its number in
/// the native table and in the compat (ia32) one, where it has one; a
/// number is a native number.
pub fn syscall_bitmap(names: &[String]) -> Result<Option<SyscallBitmaps>> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut native = [0u64; SYSCALL_BITMAP_WORDS];
    let mut compat = [0u64; SYSCALL_BITMAP_WORDS];
    let set = |bitmap: &mut [u64; SYSCALL_BITMAP_WORDS], n: &str, nr: u32| -> Result<()> {
        let word = bitmap
            .get_mut(nr as usize / 64)
            .with_context(|| format!("--syscall {n}: number {nr} is beyond the filter's range"))?;
        *word |= 1 << (nr % 64);
        Ok(())
    };
    for n in names {
        let nr = crate::syscalls::number(n).or_else(|| n.parse().ok());
        let compat_nr = crate::syscalls::compat_number(n);
        if nr.is_none() && compat_nr.is_none() {
            bail!("--syscall {n}: no such syscall on this architecture");
        }
        if let Some(nr) = nr {
            set(&mut native, n, nr)?;
        }
        if let Some(nr) = compat_nr {
            set(&mut compat, n, nr)?;
        }
    }
    Ok(Some((native, compat)))
}

pub fn load_options(args: &WatchArgs) -> Result<LoadOptions> {
    Ok(LoadOptions {
        mode: match args.mode {
            Mode::Stream => MODE_STREAM,
            Mode::Count => MODE_COUNT,
        },
        sys_exit: args.sys_exit,
        lifecycle: true,
        ring_buffer_bytes: args.ring_buffer_kb.saturating_mul(1024),
        rings: args.rings,
        syscall_filter: syscall_bitmap(&args.syscalls)?,
        // Nothing to drop when the host and every container are shown: skip
        // the per-event map lookup.
        cgroup_filter: !args.host || !args.containers.is_empty(),
        wakeup_every: args.wakeup_every,
        floor_only: false,
        floor_classic: false,
        access: args.task_access,
        verbose: args.verbose,
        kvm_exits: args.kvm_exits,
        claims: !args.no_claims,
        refused_fork_tasks: args.refused_fork_tasks,
        split: args.kernel_split.value(),
    })
}

/// Cumulative counters from the kernel maps. Count slots still holding a
/// retired cgroup are skipped: its counts were reported before it was
/// retired, and the aggregator has forgotten them.
fn snapshot(l: &Counters, mode: Mode, retired: &HashSet<u64>) -> KernelCounters {
    let mut k = KernelCounters {
        now_ts: boot_ns(),
        ..Default::default()
    };
    for (cg, values) in l.oncpu.iter().flatten() {
        for (cpu, ns) in values.iter().enumerate() {
            if *ns > 0 {
                k.oncpu.insert((cg, cpu as u32), *ns);
            }
        }
    }
    for (cg, values) in l.loss.iter().flatten() {
        for (cpu, n) in values.iter().enumerate() {
            if *n > 0 {
                k.loss_by_cgroup_cpu.insert((cg, cpu as u32), *n);
            }
        }
    }
    let sum = |slot: u32| l.stats.get(&slot, 0).map(|v| v.iter().sum()).unwrap_or(0);
    k.emitted_total = sum(STAT_EMITTED);
    k.lost_total = sum(STAT_LOST);
    if mode == Mode::Count {
        let mut counts: HashMap<(u64, u32, u32), u64> = HashMap::new();
        for values in l.count_slots.iter().flatten() {
            for slot in values
                .iter()
                .filter(|s| s.cgroup_id != 0 && !retired.contains(&s.cgroup_id))
            {
                for (nr, &n) in slot.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                    *counts
                        .entry((slot.cgroup_id, slot.pidns, nr as u32))
                        .or_default() += n;
                }
            }
        }
        for (key, values) in l.counts.iter().flatten() {
            if retired.contains(&key.cgroup_id) {
                continue;
            }
            *counts
                .entry((key.cgroup_id, key.pidns, key.nr))
                .or_default() += values.iter().sum::<u64>();
        }
        k.counts = counts;
    }
    k
}

/// Count mode's bookkeeping of removed cgroups. Once the registry forgets a
/// removed cgroup (long after its last task is gone, and after summaries
/// have reported its last counts), the cgroup is retired: its hash entries
/// are deleted, and the kernel may take its slots over (each CPU its own
/// copy, so nothing races; see `reclaim` in `observer-ebpf`). A retired
/// cgroup is forgotten here once no slot holds it any more.
#[derive(Default)]
struct Retirement {
    retired: HashSet<u64>,
}

impl Retirement {
    fn retire(&mut self, l: &mut Counters, removed: &[u64]) {
        if removed.is_empty() {
            return;
        }
        let gone: HashSet<u64> = removed.iter().copied().collect();
        for &cg in removed {
            // A full map only keeps the slot from being reused.
            let _ = l.count_retired.insert(cg, 1, 0);
            self.retired.insert(cg);
        }
        let keys: Vec<CountKey> = l
            .counts
            .keys()
            .flatten()
            .filter(|k| gone.contains(&k.cgroup_id))
            .collect();
        for k in keys {
            let _ = l.counts.remove(&k);
        }
    }

    /// Forgets retired cgroups that no CPU's slot holds any more.
    fn prune(&mut self, l: &mut Counters) {
        if self.retired.is_empty() {
            return;
        }
        let held: HashSet<u64> = l
            .count_slots
            .iter()
            .flatten()
            .flat_map(|v| v.iter().map(|s| s.cgroup_id).collect::<Vec<_>>())
            .collect();
        let free: Vec<u64> = self
            .retired
            .iter()
            .copied()
            .filter(|cg| !held.contains(cg))
            .collect();
        for cg in free {
            let _ = l.count_retired.remove(&cg);
            self.retired.remove(&cg);
        }
    }
}

/// How long the output gets at the end to take what is queued for it: a
/// stalled one (a paused pager) must not keep the observer from ending.
const FINISH_WRITING: Duration = Duration::from_secs(3);

/// Records handled per turn of the loop: under a producer as fast as the
/// reader, the ring never empties, and signals and ticks must still get in.
const DRAIN_BATCH: usize = 16 * 1024;

/// How long the last drain may hand records on, once the programs are
/// detached.
const FINAL_DRAIN: Duration = Duration::from_secs(5);

/// The longest a cgroup removal waits for the event ring to empty (under a
/// flood that never lets it) before it is applied anyway.
const REMOVAL_WAIT: Duration = Duration::from_secs(1);

/// The cgroup records' own ring, and the removals read from it that wait
/// for the event ring.
struct CgroupRing {
    ring: AsyncFd<RingBuf<MapData>>,
    removals: Vec<(Instant, Vec<u8>)>,
}

impl CgroupRing {
    /// Reads every cgroup record. A `cgroup_mkdir` is applied at once: it
    /// is made before any task can enter the cgroup, so before any event of
    /// it. A `cgroup_rmdir` waits until the event ring has been emptied once
    /// after it was read: every event of the cgroup was in that ring before
    /// the cgroup could be removed, so by then each has been handled, and
    /// the container's exit comes after its last event.
    fn drain(&mut self, p: &mut Pipeline) {
        while let Some(item) = self.ring.get_mut().next() {
            if decode::kind(&item) == Some(KIND_CGROUP_RMDIR) {
                self.removals.push((Instant::now(), item.to_vec()));
            } else {
                p.record(&item);
            }
        }
    }

    /// Applies the removals read before `read_before` (the event rings
    /// have handed out everything committed before that instant), and
    /// those that waited `REMOVAL_WAIT`.
    fn apply_removals(&mut self, p: &mut Pipeline, read_before: Option<Instant>) {
        if self.removals.is_empty() {
            return;
        }
        let now = Instant::now();
        self.removals.retain(|(t, r)| {
            let due = read_before.is_some_and(|b| *t < b) || now.duration_since(*t) >= REMOVAL_WAIT;
            if due {
                p.record(r);
            }
            !due
        });
    }
}

/// Reads up to `DRAIN_BATCH` records; true when the rings were emptied.
fn drain(rings: &mut EventRings, cgroups: &mut CgroupRing, p: &mut Pipeline) -> bool {
    cgroups.drain(p);
    rings.begin_round();
    // Runs of records from one cgroup are the common case: check each new
    // cgroup once.
    let mut known = u64::MAX;
    for _ in 0..DRAIN_BATCH {
        let Some(item) = rings.next() else {
            cgroups.apply_removals(p, Some(rings.handed_out_before()));
            return !rings.more();
        };
        if let Some(cg) = decode::task_cgroup(item) {
            if cg != known {
                if !p.knows_cgroup(cg) {
                    // Its `cgroup_mkdir` was committed before this record:
                    // it is in the cgroup ring by now.
                    cgroups.drain(p);
                }
                known = cg;
            }
        }
        p.record(item);
    }
    cgroups.apply_removals(p, None);
    false
}

/// Whether `sig` was set to SIG_IGN by whoever started us (the disposition
/// is inherited across exec).
pub fn signal_ignored(sig: libc::c_int) -> bool {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a NULL new action
    // only queries.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Runs the observer until a signal, `--duration` or a closed output.
pub async fn run(args: WatchArgs) -> Result<()> {
    run_until(args, std::future::pending()).await
}

/// Like `run`, and also stops when `stop` completes (the demo drives it).
pub async fn run_until(args: WatchArgs, stop: impl std::future::Future<Output = ()>) -> Result<()> {
    run_with_taps(args, stop, Taps::default()).await
}

/// Like `run_until`, publishing each summary and container lifecycle event
/// to `taps` (subscribe before calling) for live views.
pub async fn run_with_taps(
    args: WatchArgs,
    stop: impl std::future::Future<Output = ()>,
    taps: Taps,
) -> Result<()> {
    // Handlers first: from here on a signal is a clean stop, even one that
    // comes while the programs are still loading.
    let mut sigint = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    // Under `nohup` (or any parent that ignores SIGHUP) a hangup must not
    // stop us: only catch SIGHUP when it was not ignored when we started.
    let mut sighup = if signal_ignored(libc::SIGHUP) {
        None
    } else {
        Some(signal(SignalKind::hangup()).context("install SIGHUP handler")?)
    };
    let duration = args.duration.map(Duration::from_secs_f64);
    let shutdown = async move {
        let deadline = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
            _ = async {
                match sighup.as_mut() {
                    Some(s) => { s.recv().await; }
                    None => std::future::pending().await,
                }
            } => {}
            _ = stop => {}
            _ = deadline => {}
        }
    };
    let opts = load_options(&args)?;
    for w in crate::cli::selector_warnings(&args.containers) {
        eprintln!("{w}");
    }
    let sink = Sink::threaded(open_output(args.output.as_deref())?)?;
    // The page's port first: a taken one is an error before anything loads.
    let (feed, server) = match args.web {
        Some(addr) => {
            let (feed, hub) = Feed::new(
                KernelInfo::read(),
                HostNamespaces::read(),
                boot_to_unix_offset_ns(),
                taps.lifecycle.clone(),
            );
            (Some(feed), Some(web::start(addr, hub)?))
        }
        None => (None, None),
    };
    let loaded = loader::load(&opts)?;
    // What loading parsed is freed: give its pages back.
    crate::memory::release();

    // Bounded: behind an engine that hangs, lookups must not pile up.
    let (req_tx, req_rx) = mpsc::channel(crate::container::NAME_QUEUE);
    let (rep_tx, mut rep_rx) = mpsc::unbounded_channel();
    let sockets = docker::EngineSockets {
        docker: args.docker_socket.clone(),
        podman: args.podman_socket.clone(),
        containerd: args.containerd_socket.clone(),
        ..Default::default()
    };
    tokio::spawn(docker::resolver(sockets, req_rx, rep_tx));
    let mut registry = if args.cgroup_v1 {
        Registry::new(None)
    } else {
        Registry::from_host()
    };
    let v1 = if registry.root().is_none() {
        let v1 = crate::container::v1::V1Attribution::from_host();
        eprintln!(
            "warning: no cgroup2 hierarchy {}: {}; tasks that exit before their first event is read may go unattributed (mount cgroup2 for exact attribution: sudo mount -t cgroup2 none /sys/fs/cgroup/unified)",
            if args.cgroup_v1 { "used (--cgroup-v1)" } else { "is mounted" },
            if v1.is_some() { "attributing containers from /proc/PID/cgroup" } else { "and no v1 hierarchy either: containers can't be told apart" }
        );
        v1
    } else {
        None
    };
    registry.set_resolver(req_tx);
    registry.request_names();
    // Unknown cgroups are walked for on a thread of its own: the event
    // path never reads cgroupfs.
    let walks = registry.start_walker();

    let mode = args.mode;
    let interval = Duration::from_secs_f64(args.interval);
    let mut p =
        Pipeline::new(args.clone(), registry, sink, boot_to_unix_offset_ns()).with_taps(taps);
    if let Some(v1) = v1 {
        p.use_v1_attribution(v1);
    }
    if let Some(addr) = args.metrics {
        // Served once the programs are attached: a ready endpoint means a
        // counting observer (the DaemonSet's readiness probe relies on it).
        let node = crate::metrics::node_name(
            args.node.as_deref(),
            std::env::var("NODE_NAME").ok(),
            &p.render.kernel.hostname,
        );
        let m = crate::metrics::Metrics::new(
            node,
            &p.render.kernel,
            args.metrics_syscalls,
            Duration::from_secs_f64(args.metrics_retention),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        );
        crate::metrics::server::spawn(addr, m.registry()).await?;
        p.metrics = Some(m);
    }
    p.web = feed;
    p.render.task_access = loaded.access;
    p.render.rings = (args.rings, loaded.events.len());
    p.kernel_record();
    p.sink().flush().ok();
    if args.format == crate::cli::Format::Table {
        let slot = p.render.example_image.clone();
        tokio::spawn(async move {
            if let Some(i) = example_image().await {
                let _ = slot.set(i);
            }
        });
    }

    let result = run_loop(loaded, p, &mut rep_rx, walks, interval, mode, shutdown).await;
    // The pipeline, and with it the feed, is gone: the pages' streams end.
    if let Some(s) = server {
        s.shutdown(Duration::from_secs(1));
    }
    result
}

/// An image the engine has, for the table's hint: alpine, the project's
/// local image, or any other (None without an engine or a `docker` CLI).
async fn example_image() -> Option<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::process::Command::new("docker")
            .args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    pick_example_image(&list)
}

/// From `docker image ls` lines: alpine first, then the local busybox image,
/// then the first tagged one.
fn pick_example_image(list: &str) -> Option<String> {
    let images: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("<none>"))
        .collect();
    let find = |p: &str| images.iter().find(|i| i.starts_with(p)).copied();
    find("alpine:")
        .map(|_| "alpine")
        .or_else(|| find(crate::demo::LOCAL_IMAGE))
        .or_else(|| images.first().copied())
        .map(str::to_owned)
}

async fn run_loop(
    loaded: Loaded,
    mut p: Pipeline,
    names: &mut mpsc::UnboundedReceiver<docker::NameReply>,
    walks: Option<mpsc::UnboundedReceiver<crate::container::Walked>>,
    interval: Duration,
    mode: Mode,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(shutdown);
    let mut walks = walks;
    let Loaded {
        mut ebpf,
        access: _,
        mut log,
        events,
        cgroup_events,
        count_slots,
        counts,
        count_retired,
        loss,
        oncpu,
        stats,
        mut cgroup_filter,
        kvm_exits,
    } = loaded;
    let mut kvm_exits = kvm_exits.map(crate::vm::kvm::KvmExits::new);
    let json_out = p.args.format == crate::cli::Format::Json;
    let mut retirement = Retirement::default();
    let mut maps = Counters {
        count_slots,
        counts,
        count_retired,
        loss,
        oncpu,
        stats,
    };
    let events = EventRings::new(&events, p.args.ring_commit_bytes)?;
    // SAFETY: the reader owns the rings' map fds and their epoll set, which
    // stay open for as long as the AsyncFd owns the reader.
    let mut ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .context("watch the event rings")?;
    // SAFETY: as above.
    let mut cgroups = CgroupRing {
        ring: unsafe { AsyncFd::register_with_interest(cgroup_events, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("watch the cgroup ring buffer")?,
        removals: Vec::new(),
    };
    let start = tokio::time::Instant::now();
    let mut summary = tokio::time::interval_at(start + interval, interval);
    // When the previous summary was taken: the last one covers exactly the
    // time since.
    let mut last_summary = start;
    // `--duration`: a tick that falls on the end (the shutdown follows it by
    // a fraction of a millisecond) is left to the final summary, which then
    // covers that whole interval instead of the instant after it.
    let end = p.args.duration.map(|d| start + Duration::from_secs_f64(d));
    let mut drain_tick = tokio::time::interval(DRAIN_EVERY);

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("wait for the ring buffer")?;
                // Only an emptied ring waits for the next wakeup; otherwise
                // the loop comes straight back here.
                if drain(guard.get_inner_mut(), &mut cgroups, &mut p) {
                    guard.clear_ready();
                }
            }
            _ = drain_tick.tick() => {
                drain(ring.get_mut(), &mut cgroups, &mut p);
                // Rare conditions only: read on the tick, off the event path.
                if let Some(l) = log.as_mut() {
                    l.flush();
                }
                // Boot time to Unix time, again: a step of the wall clock
                // (NTP, a resumed VM) must not skew every later `ts`.
                p.render.clock = boot_to_unix_offset_ns();
                let removed = p.housekeeping();
                if mode == Mode::Count {
                    retirement.retire(&mut maps, &removed);
                }
                for cg in &removed {
                    let _ = cgroup_filter.remove(cg);
                    let _ = maps.oncpu.remove(cg);
                    let _ = maps.loss.remove(cg);
                }
            }
            guard = cgroups.ring.readable_mut() => {
                let mut guard = guard.context("wait for the cgroup ring buffer")?;
                guard.clear_ready();
                drop(guard);
                cgroups.drain(&mut p);
            }
            Some(reply) = names.recv() => p.name_reply(reply),
            Some(w) = next_walk(&mut walks) => p.walked(w),
            _ = summary.tick() => {
                if end.is_some_and(|e| e.saturating_duration_since(tokio::time::Instant::now()) < interval / 4) {
                    break;
                }
                drain(ring.get_mut(), &mut cgroups, &mut p);
                let k = snapshot(&maps, mode, &retirement.retired);
                last_summary = tokio::time::Instant::now();
                p.summary(&k, interval.as_secs_f64());
                if let (Some(kx), true) = (kvm_exits.as_mut(), json_out) {
                    kvm_record(kx, &mut p);
                }
                retirement.prune(&mut maps);
                // A burst's queued lines are freed by now.
                crate::memory::release();
            }
            _ = &mut shutdown => break,
        }
        for (cg, drop) in p.new_verdicts() {
            // A full filter map only costs work, never correctness.
            let _ = cgroup_filter.insert(cg, if drop { CGROUP_DROP } else { CGROUP_PASS }, 0);
        }
        // Writes also happen while records are read: the sink remembers a
        // closed reader or an error, whichever write met it.
        let _ = p.sink().flush();
        if p.sink().closed {
            // The reader went away (`observer | head`): stop quietly.
            let _ = p.sink().finish(FINISH_WRITING);
            return Ok(());
        }
        if let Some(e) = p.sink().error.take() {
            anyhow::bail!("write output: {e}");
        }
    }

    // Detach every program first: nothing more enters either ring, so the
    // event ring can be drained to the end (a busy host would never let it
    // empty), and every record the kernel counted as emitted is read. The
    // maps taken out of `ebpf` stay readable for the last summary and loss
    // account. Last records, last summary, final loss account; then every
    // map is released as they drop. The tp_btf programs are detached at
    // once; the classic `syscalls:sys_exit_*` links of the refused-fork
    // program (`--refused-fork-tasks`) each wait for the kernel's
    // tracepoint unregistration (about 0.1 s apiece), so they go with
    // `ebpf` after the final summary, which covers exactly the time since
    // the previous one. They only fire on a refused fork, so they cannot
    // keep the ring from emptying.
    for (_, prog) in ebpf.programs_mut() {
        if let Program::BtfTracePoint(prog) = prog {
            let _ = prog.unload();
        }
    }
    // Handled for up to `FINAL_DRAIN`; what a slow machine leaves after that
    // is still read, and counted in `dropped_by_daemon` rather than lost
    // without a trace.
    let until = Instant::now() + FINAL_DRAIN;
    while !drain(ring.get_mut(), &mut cgroups, &mut p) {
        if Instant::now() >= until {
            let rings = ring.get_mut();
            loop {
                rings.begin_round();
                while rings.next().is_some() {
                    p.record_dropped();
                }
                if !rings.more() {
                    break;
                }
            }
            break;
        }
    }
    cgroups.apply_removals(&mut p, Some(Instant::now()));
    if let Some(l) = log.as_mut() {
        l.flush();
    }
    // Names still on their way get a last short chance.
    let grace = tokio::time::sleep(Duration::from_millis(300));
    tokio::pin!(grace);
    while p.has_held() {
        tokio::select! {
            Some(reply) = names.recv() => p.name_reply(reply),
            Some(w) = next_walk(&mut walks) => p.walked(w),
            _ = &mut grace => break,
        }
    }
    p.release_all();
    if let (Some(kx), true) = (kvm_exits.as_mut(), json_out) {
        kvm_record(kx, &mut p);
    }
    let k = snapshot(&maps, mode, &retirement.retired);
    p.final_summary(&k, last_summary.elapsed().as_secs_f64());
    p.final_loss(&k);
    let _ = p.sink().finish(FINISH_WRITING);
    drop(ring);
    drop(ebpf);
    Ok(())
}

/// The walker thread's next answer; never, without one.
async fn next_walk(
    walks: &mut Option<mpsc::UnboundedReceiver<crate::container::Walked>>,
) -> Option<crate::container::Walked> {
    match walks.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A `kvm_exits` line when the counts changed.
fn kvm_record(kx: &mut crate::vm::kvm::KvmExits, p: &mut Pipeline) {
    let ts = boot_to_unix_offset_ns().saturating_add_unsigned(boot_ns());
    if let Some(line) = kx.record(ts) {
        let buf = &mut p.sink().buf;
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
    }
}

/// `observer floor`: only the empty `sys_enter` program, until told to stop.
pub async fn floor(duration: Option<f64>, classic: bool) -> Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let opts = LoadOptions {
        floor_only: true,
        floor_classic: classic,
        ..Default::default()
    };
    let loaded = loader::load(&opts)?;
    println!("floor attached");
    let wait = async {
        match duration {
            Some(d) => tokio::time::sleep(Duration::from_secs_f64(d)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = wait => {}
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    drop(loaded);
    Ok(())
}

#[cfg(test)]
mod example_image_tests {
    use super::*;

    #[test]
    fn the_tables_hint_names_an_image_the_engine_has() {
        assert_eq!(
            pick_example_image("observer-test/busybox:latest\nalpine:latest\n").as_deref(),
            Some("alpine")
        );
        assert_eq!(
            pick_example_image("<none>:<none>\nfoo/bar:1\nobserver-test/busybox:latest\n")
                .as_deref(),
            Some("observer-test/busybox:latest")
        );
        assert_eq!(pick_example_image("<none>:<none>\n"), None);
    }
}
