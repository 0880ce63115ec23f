//! Loads the kernel programs with this kernel's offsets and the run's
//! settings, and attaches them. Dropping `Loaded` detaches every link and
//! releases every program and map.

use std::fs;

use anyhow::{bail, Context, Result};
use aya::{
    maps::{ArrayOfMaps, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::BtfTracePoint,
    Btf, Ebpf, EbpfLoader,
};
use observer_common::*;

use crate::btf::KernelBtf;

/// The eBPF object built from `observer-ebpf` (empty when built without the
/// eBPF toolchain).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/observer.bpf.o"));

/// The oldest kernel the observer loads on, and the kernels the VM matrix
/// test (`tests/matrix.rs`) and this machine verify it on.
pub const MIN_KERNEL: (u32, u32) = (5, 10);
pub const VERIFIED_KERNELS: &str = "5.10, 6.1, 6.12 and 6.18";

/// How the CPUs share the event rings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RingLayout {
    /// A ring of its own for each CPU: producers on different CPUs never
    /// meet on a ring's lock or producer position; the daemon merges the
    /// rings by time stamp.
    PerCpu,
    /// One ring for every CPU.
    #[default]
    Shared,
}

impl RingLayout {
    /// As the `kernel` record names it.
    pub fn as_str(self) -> &'static str {
        match self {
            RingLayout::PerCpu => "per-cpu",
            RingLayout::Shared => "shared",
        }
    }
}

/// How the programs read kernel memory (see `observer-ebpf/src/task.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskAccess {
    /// `btf` where the kernel has `bpf_get_current_task_btf` (5.11+),
    /// `probe-read` before.
    #[default]
    Auto,
    /// Loads through BTF-typed pointers.
    Btf,
    /// `bpf_probe_read_kernel` per field, the 5.10 fallback.
    ProbeRead,
}

impl TaskAccess {
    /// As the `kernel` record names it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskAccess::Auto => "auto",
            TaskAccess::Btf => "btf",
            TaskAccess::ProbeRead => "probe_read",
        }
    }
}

/// `major.minor` of a release string such as `5.10.0-32-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// One line for a kernel the observer does not run on.
pub fn check_kernel_version(release: &str) -> Result<()> {
    match kernel_version(release) {
        Some(v) if v < MIN_KERNEL => bail!(
            "Linux {release} is too old: the observer needs Linux {}.{} or newer with BTF (verified on {VERIFIED_KERNELS})",
            MIN_KERNEL.0,
            MIN_KERNEL.1
        ),
        _ => Ok(()),
    }
}

/// What to load and attach.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub mode: u32,
    pub sys_exit: bool,
    /// Attach the lifecycle programs (fork/exec/exit).
    pub lifecycle: bool,
    /// All event rings together (`--ring-buffer-kb`): with `PerCpu`, each
    /// ring has its share, rounded up to a power of two.
    pub ring_buffer_bytes: u32,
    pub rings: RingLayout,
    /// The syscalls to observe: bitmaps of the native numbers and of the
    /// compat (ia32) ones.
    pub syscall_filter: Option<([u64; SYSCALL_BITMAP_WORDS], [u64; SYSCALL_BITMAP_WORDS])>,
    pub cgroup_filter: bool,
    /// See `Config::wakeup_every`.
    pub wakeup_every: u32,
    /// Attach only the empty `sys_enter` program (the benchmark's floor).
    pub floor_only: bool,
    /// With `floor_only`: on the classic `raw_syscalls` tracepoint instead.
    pub floor_classic: bool,
    pub access: TaskAccess,
    /// Read the kernel's rare-condition log (`aya-log`) onto stderr.
    pub verbose: bool,
    /// Count KVM exits per process (`kvm:kvm_exit`, `kvm:kvm_userspace_exit`).
    pub kvm_exits: bool,
    /// Attach the enforcement (OOM) and exec-privilege programs.
    pub claims: bool,
    /// With `claims`: also the refused-fork program on the classic
    /// `syscalls:sys_exit_{clone,clone3,fork,vfork}` tracepoints, which
    /// names the refused task but turns on the kernel's syscall-exit
    /// tracepoint for every syscall (about +10 ns each). Without it the
    /// daemon counts refused forks from the cgroups' `pids.events`.
    pub refused_fork_tasks: bool,
    /// `SPLIT_*`: how far `sys_enter` goes (the benchmark's cost split).
    pub split: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            mode: MODE_STREAM,
            sys_exit: false,
            lifecycle: true,
            ring_buffer_bytes: 8 << 20,
            rings: RingLayout::default(),
            syscall_filter: None,
            cgroup_filter: true,
            wakeup_every: 512,
            floor_only: false,
            floor_classic: false,
            access: TaskAccess::Auto,
            verbose: false,
            kvm_exits: false,
            claims: true,
            refused_fork_tasks: false,
            split: SPLIT_FULL,
        }
    }
}

pub struct Loaded {
    pub ebpf: Ebpf,
    /// The flavour of programs loaded (never `Auto`).
    pub access: TaskAccess,
    /// The event rings: one, or one per CPU (slot order).
    pub events: Vec<MapData>,
    pub cgroup_events: RingBuf<MapData>,
    pub count_slots: PerCpuArray<MapData, CountSlot>,
    pub counts: PerCpuHashMap<MapData, CountKey, u64>,
    pub count_retired: BpfHashMap<MapData, u64, u32>,
    pub loss: PerCpuHashMap<MapData, u64, u64>,
    pub oncpu: PerCpuHashMap<MapData, u64, u64>,
    pub stats: PerCpuArray<MapData, u64>,
    pub cgroup_filter: BpfHashMap<MapData, u64, u32>,
    /// `--verbose`: the kernel's rare-condition log.
    pub log: Option<aya_log::EbpfLogger<Stderr>>,
    /// With `kvm_exits`, when KVM's tracepoints exist.
    pub kvm_exits: Option<PerCpuHashMap<MapData, KvmExitKey, u64>>,
}

/// Writes the kernel programs' log records to stderr, one line each.
pub struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, r: &log::Record) {
        eprintln!(
            "observer-ebpf: {}: {}",
            r.level().as_str().to_lowercase(),
            r.args()
        );
    }

    fn flush(&self) {}
}

/// The maps read at every summary.
pub struct Counters {
    pub count_slots: PerCpuArray<MapData, CountSlot>,
    pub counts: PerCpuHashMap<MapData, CountKey, u64>,
    pub count_retired: BpfHashMap<MapData, u64, u32>,
    pub loss: PerCpuHashMap<MapData, u64, u64>,
    pub oncpu: PerCpuHashMap<MapData, u64, u64>,
    pub stats: PerCpuArray<MapData, u64>,
}

/// Whether a tracefs is mounted, from the mount table (the directory itself
/// is 0700: without CAP_DAC_READ_SEARCH it can't be looked into).
pub fn tracefs_mounted(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| {
        l.split_once(" - ")
            .is_some_and(|(_, post)| post.starts_with("tracefs "))
    })
}

/// The BTF tracepoints need no tracefs, but classic tracepoints (and the
/// tools users reach for beside this one) do: mount it when it is missing.
pub fn ensure_tracefs() -> Result<()> {
    if tracefs_mounted(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()) {
        return Ok(());
    }
    let (src, target, fstype) = (c"tracefs", c"/sys/kernel/tracing", c"tracefs");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        bail!(
            "mount tracefs at /sys/kernel/tracing: {} (run: sudo mount -t tracefs tracefs /sys/kernel/tracing)",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Byte offset of `field` in a tracepoint's record, from its tracefs
/// `format` file (`\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;`).
pub fn format_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|l| {
        let mut parts = l.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        if decl.rsplit([' ', '*']).next()? != field {
            return None;
        }
        parts.find_map(|p| p.strip_prefix("offset:")?.parse().ok())
    })
}

/// Where `syscalls:sys_exit_*` keeps `ret`, from the running kernel.
fn sys_exit_ret_offset() -> Result<u32> {
    let path = "/sys/kernel/tracing/events/syscalls/sys_exit_clone/format";
    let format = fs::read_to_string(path).with_context(|| {
        format!("read {path} (the kernel needs CONFIG_FTRACE_SYSCALLS and a mounted tracefs)")
    })?;
    format_field_offset(&format, "ret").with_context(|| format!("no `ret` field in {path}"))
}

/// The enforcement and privilege programs (the refused-fork one when
/// `exit_ret` was resolved, i.e. with `--refused-fork-tasks`). A kernel
/// without one of their hooks still runs everything else: the missing
/// claim is one warning.
fn attach_claims(
    ebpf: &mut Ebpf,
    btf: &Btf,
    access: TaskAccess,
    have_offsets: bool,
    exit_ret: bool,
) {
    if access == TaskAccess::ProbeRead {
        // The enforcement and privilege programs come in the BTF flavour only.
        eprintln!("warning: OOM kills, refused forks' tasks and privileges at exec not observed: their programs need bpf_get_current_task_btf (Linux 5.11 or later)");
        return;
    }
    let warn = |what: &str, r: Result<()>| {
        if let Err(e) = r {
            eprintln!("warning: {what} not observed: {e:#}");
        }
    };
    warn(
        "OOM kills",
        attach(ebpf, btf, access, PROG_OOM_VICTIM, "mark_victim"),
    );
    if exit_ret {
        warn("refused forks", attach_fork_exits(ebpf));
    }
    if have_offsets {
        warn(
            "privileges at exec",
            attach(ebpf, btf, access, PROG_EXEC_PRIVILEGE, "sched_process_exec"),
        );
    }
}

fn attach_fork_exits(ebpf: &mut Ebpf) -> Result<()> {
    let p: &mut aya::programs::TracePoint = ebpf
        .program_mut(PROG_FORK_REFUSED)
        .with_context(|| format!("program {PROG_FORK_REFUSED} missing from the eBPF object"))?
        .try_into()?;
    p.load().context("load syscalls:sys_exit_clone")?;
    for sc in FORK_SYSCALLS {
        let tp = format!("sys_exit_{sc}");
        // clone3 and vfork are missing on some architectures.
        if sc != "clone"
            && !std::path::Path::new(&format!("/sys/kernel/tracing/events/syscalls/{tp}")).exists()
        {
            continue;
        }
        p.attach("syscalls", &tp)
            .with_context(|| format!("attach syscalls:{tp}"))?;
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones
/// account it to the memory cgroup and ignore the limit.
fn raise_memlock(release: &str) {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (5, 11) {
        return;
    }
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to a local rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        eprintln!(
            "warning: could not raise RLIMIT_MEMLOCK ({}); on kernels before 5.11 loading may fail without CAP_SYS_RESOURCE",
            std::io::Error::last_os_error()
        );
    }
}

fn attach(
    ebpf: &mut Ebpf,
    btf: &Btf,
    access: TaskAccess,
    prog: &str,
    tracepoint: &str,
) -> Result<()> {
    let name = match access {
        TaskAccess::ProbeRead => format!("{prog}{PROBE_SUFFIX}"),
        _ => prog.to_owned(),
    };
    let p: &mut BtfTracePoint = ebpf
        .program_mut(&name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?
        .try_into()?;
    p.load(tracepoint, btf)
        .with_context(|| format!("load {name} on tp_btf/{tracepoint}"))?;
    p.attach()
        .with_context(|| format!("attach tp_btf/{tracepoint}"))?;
    Ok(())
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .with_context(|| format!("map {name} missing from the eBPF object"))?;
    T::try_from(map).with_context(|| format!("open map {name}"))
}

/// A power of two, and a batch of at most a quarter of the ring, so that a
/// wakeup comes well before the ring fills.
fn wakeup_every(opts: &LoadOptions) -> u32 {
    // Each record in the ring is its 8-byte header and the record.
    let record = 8 + std::mem::size_of::<SyscallExitEvent>() as u32;
    let fits = (ring_bytes(opts, ring_count(opts)) / 4 / record).max(1);
    let n = opts.wakeup_every.clamp(1, fits);
    1 << (31 - n.leading_zeros())
}

/// How many event rings: one per possible CPU, or one.
fn ring_count(opts: &LoadOptions) -> u32 {
    match opts.rings {
        RingLayout::PerCpu => cpu_slots(),
        RingLayout::Shared => 1,
    }
}

/// The CPU numbers `bpf_get_smp_processor_id` can return: the possible
/// CPUs, 0 to N-1.
fn cpu_slots() -> u32 {
    aya::util::nr_cpus().map_or(1, |n| n.max(1) as u32)
}

/// Each ring's size: its share of `--ring-buffer-kb`, a power of two of at
/// least a page (the kernel's rule for ring buffers).
fn ring_bytes(opts: &LoadOptions, rings: u32) -> u32 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u32;
    (opts.ring_buffer_bytes / rings)
        .max(page)
        .next_power_of_two()
}

/// Makes the event rings and puts them in the programs' array: each CPU's
/// slot gets its own ring, or every slot the one shared ring.
fn event_rings(ebpf: &mut Ebpf, opts: &LoadOptions) -> Result<Vec<MapData>> {
    let slots = cpu_slots();
    let count = ring_count(opts);
    let size = ring_bytes(opts, count);
    let mut rings = Vec::with_capacity(count as usize);
    for i in 0..count {
        let def = aya_obj::Map::new_from_params(
            aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF as u32,
            0,
            0,
            size,
            0,
        );
        let name = if count == 1 {
            "EVENTS".to_owned()
        } else {
            format!("EVENTS_{i}")
        };
        rings.push(MapData::create(def, &name, None).with_context(|| {
            format!(
                "create event ring {i} of {count} ({size} bytes): lower --ring-buffer-kb, or use --rings shared"
            )
        })?);
    }
    let mut array: ArrayOfMaps<&mut MapData, MapData> = ebpf
        .map_mut(MAP_EVENT_RINGS)
        .with_context(|| format!("map {MAP_EVENT_RINGS} missing from the eBPF object"))?
        .try_into()
        .with_context(|| format!("open map {MAP_EVENT_RINGS}"))?;
    for slot in 0..slots {
        let ring = &rings[(slot % count) as usize];
        array
            .set(slot, ring, 0)
            .with_context(|| format!("put event ring {} in slot {slot}", slot % count))?;
    }
    Ok(rings)
}

pub fn load(opts: &LoadOptions) -> Result<Loaded> {
    if OBJECT.is_empty() {
        bail!("this observer was built without its eBPF programs: build it with `cargo xtask build` (or run `cargo xtask run`)");
    }
    crate::privilege::check_bpf_privileges()?;
    if let Err(e) = ensure_tracefs() {
        eprintln!("warning: {e:#}");
    }
    let release = crate::kernel_info::KernelInfo::read().release;
    check_kernel_version(&release)?;
    raise_memlock(&release);
    let kernel_btf = KernelBtf::load()?;
    let offsets = kernel_btf
        .kernel_offsets()
        .with_context(|| format!("resolve kernel structure offsets from BTF on Linux {release}"))?;
    let exit_ret = if opts.floor_only || !(opts.claims && opts.refused_fork_tasks) {
        None
    } else {
        sys_exit_ret_offset()
            .map_err(|e| eprintln!("warning: refused forks not observed: {e:#}"))
            .ok()
    };
    let claim_offsets = kernel_btf
        .claim_offsets(exit_ret.unwrap_or(0))
        .map_err(|e| eprintln!("warning: privileges at exec not observed: {e:#}"))
        .ok();
    let access = match opts.access {
        TaskAccess::Auto if kernel_btf.has_helper("get_current_task_btf") => TaskAccess::Btf,
        TaskAccess::Auto => TaskAccess::ProbeRead,
        chosen => chosen,
    };
    drop(kernel_btf);
    let mut config = Config {
        self_tgid: crate::selfid::host_tgid()?,
        mode: opts.mode,
        flags: 0,
        wakeup_every: wakeup_every(opts),
        split: opts.split,
        _pad: 0,
        syscall_bitmap: [0; SYSCALL_BITMAP_WORDS],
        compat_syscall_bitmap: [0; SYSCALL_BITMAP_WORDS],
    };
    if let Some((native, compat)) = opts.syscall_filter {
        config.flags |= FLAG_SYSCALL_FILTER;
        config.syscall_bitmap = native;
        config.compat_syscall_bitmap = compat;
    }
    if opts.cgroup_filter {
        config.flags |= FLAG_CGROUP_FILTER;
    }
    let kvm_fields = if opts.kvm_exits {
        let f = crate::vm::kvm::read_fields();
        if f.is_none() {
            eprintln!("note: --kvm-exits: this kernel has no kvm:kvm_exit or kvm:kvm_userspace_exit tracepoint (is the kvm module loaded?); KVM exits are not counted");
        }
        f
    } else {
        None
    };
    let btf = Btf::from_sys_fs().context("read kernel BTF from /sys/kernel/btf/vmlinux")?;
    #[expect(
        deprecated,
        reason = "override_global is the same call under its new name; kept for aya 0.13 readers"
    )]
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .set_global(GLOBAL_OFFSETS, &offsets, true)
        .set_global(GLOBAL_CONFIG, &config, true)
        // aya-log's levels: 3 is info and above; 0 keeps every log site to
        // one load of this global.
        .set_global(
            GLOBAL_LOG_LEVEL,
            &(if opts.verbose { 3u8 } else { 0u8 }),
            true,
        )
        .set_global(
            GLOBAL_KVM_FIELDS,
            &kvm_fields.unwrap_or(KvmFields {
                exit_reason: KVM_FIELD_ABSENT,
                isa: KVM_FIELD_ABSENT,
                userspace_reason: KVM_FIELD_ABSENT,
                userspace_errno: KVM_FIELD_ABSENT,
            }),
            true,
        )
        .set_global(
            GLOBAL_CLAIM_OFFSETS,
            &claim_offsets.unwrap_or_default(),
            true,
        )
        .set_max_entries(MAP_EVENT_RINGS, cpu_slots())
        .load(OBJECT)
        .context("load the eBPF object into the kernel")?;
    // Before any program is attached: an empty slot would lose records.
    let events = event_rings(&mut ebpf, opts)?;

    if opts.floor_only && opts.floor_classic {
        ensure_tracefs().context("classic tracepoints need tracefs")?;
        let p: &mut aya::programs::TracePoint = ebpf
            .program_mut(PROG_FLOOR_CLASSIC)
            .context("floor program missing")?
            .try_into()?;
        p.load().context("load raw_syscalls:sys_enter")?;
        p.attach("raw_syscalls", "sys_enter")
            .context("attach raw_syscalls:sys_enter")?;
    } else if opts.floor_only {
        attach(&mut ebpf, &btf, TaskAccess::Btf, PROG_FLOOR, "sys_enter")?;
    } else {
        let a = access;
        attach(&mut ebpf, &btf, a, PROG_SYS_ENTER, "sys_enter")?;
        if opts.sys_exit {
            attach(&mut ebpf, &btf, a, PROG_SYS_EXIT, "sys_exit")?;
        }
        if opts.lifecycle {
            attach(&mut ebpf, &btf, a, PROG_FORK, "sched_process_fork")?;
            attach(&mut ebpf, &btf, a, PROG_EXEC, "sched_process_exec")?;
            attach(&mut ebpf, &btf, a, PROG_EXIT, "sched_process_exit")?;
        }
        attach(&mut ebpf, &btf, a, PROG_SWITCH, "sched_switch")?;
        attach(&mut ebpf, &btf, a, PROG_CGROUP_MKDIR, "cgroup_mkdir")?;
        attach(&mut ebpf, &btf, a, PROG_CGROUP_RMDIR, "cgroup_rmdir")?;
        if opts.claims {
            attach_claims(
                &mut ebpf,
                &btf,
                access,
                claim_offsets.is_some(),
                exit_ret.is_some(),
            );
        }
    }
    let mut kvm_attached = false;
    if kvm_fields.is_some() {
        for (prog, tp) in [
            (PROG_KVM_EXIT, "kvm_exit"),
            (PROG_KVM_USERSPACE_EXIT, "kvm_userspace_exit"),
        ] {
            if !crate::vm::kvm::has_tracepoint(tp) {
                continue;
            }
            let attached = (|| -> Result<()> {
                let p: &mut aya::programs::TracePoint = ebpf
                    .program_mut(prog)
                    .with_context(|| format!("program {prog} missing from the eBPF object"))?
                    .try_into()?;
                p.load().with_context(|| format!("load kvm:{tp}"))?;
                p.attach("kvm", tp)
                    .with_context(|| format!("attach kvm:{tp}"))?;
                Ok(())
            })();
            // Counting exits adds to the lesson; failing to never stops it.
            match attached {
                Ok(()) => kvm_attached = true,
                Err(e) => eprintln!("warning: --kvm-exits: {e:#}; those exits are not counted"),
            }
        }
    }

    let log = if opts.verbose {
        Some(
            aya_log::EbpfLogger::init_with_logger(&mut ebpf, Stderr)
                .context("read the kernel programs' log (--verbose)")?,
        )
    } else {
        None
    };
    Ok(Loaded {
        log,
        access,
        events,
        cgroup_events: take(&mut ebpf, MAP_CGROUP_EVENTS)?,
        count_slots: take(&mut ebpf, MAP_COUNT_SLOTS)?,
        counts: take(&mut ebpf, MAP_COUNTS)?,
        count_retired: take(&mut ebpf, MAP_COUNT_RETIRED)?,
        loss: take(&mut ebpf, MAP_LOSS)?,
        oncpu: take(&mut ebpf, MAP_ONCPU)?,
        stats: take(&mut ebpf, MAP_STATS)?,
        cgroup_filter: take(&mut ebpf, MAP_CGROUP_FILTER)?,
        kvm_exits: if kvm_attached {
            Some(take(&mut ebpf, MAP_KVM_EXITS)?)
        } else {
            None
        },
        ebpf,
    })
}

/// Number of BPF programs and maps loaded on the host (for leak checks).
pub fn loaded_counts() -> (usize, usize) {
    let progs = aya::programs::loaded_programs()
        .filter(Result::is_ok)
        .count();
    let maps = aya::maps::loaded_maps().filter(Result::is_ok).count();
    (progs, maps)
}

/// Whether the running kernel has what the observer needs; one line each.
pub fn kernel_has_btf() -> bool {
    fs::metadata(crate::btf::VMLINUX_BTF).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_kernels_older_than_the_verified_range_in_one_line() {
        assert_eq!(kernel_version("5.10.0-32-amd64"), Some((5, 10)));
        assert_eq!(kernel_version("6.18.44-fc-v595"), Some((6, 18)));
        assert!(check_kernel_version("5.10.0-32-amd64").is_ok());
        assert!(check_kernel_version("6.1.0-40-amd64").is_ok());
        let err = check_kernel_version("4.19.0-27-amd64").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("needs Linux 5.10 or newer"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn tells_whether_tracefs_is_mounted() {
        let with = "22 29 0:20 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:12 - tracefs tracefs rw\n";
        let debugfs_only = "23 29 0:21 / /sys/kernel/debug rw,relatime - debugfs debugfs rw\n";
        assert!(tracefs_mounted(with));
        assert!(!tracefs_mounted(debugfs_only));
        assert!(!tracefs_mounted(""));
    }

    /// Linux 6.18's `events/syscalls/sys_exit_clone/format`.
    #[test]
    fn reads_a_field_offset_from_a_tracepoint_format() {
        let format = "name: sys_exit_clone\nID: 176\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n\nprint fmt: \"0x%lx\", REC->ret\n";
        assert_eq!(format_field_offset(format, "ret"), Some(16));
        assert_eq!(format_field_offset(format, "__syscall_nr"), Some(8));
        assert_eq!(format_field_offset(format, "common_pid"), Some(4));
        assert_eq!(format_field_offset(format, "nope"), None);
        assert_eq!(format_field_offset("", "ret"), None);
    }
}
