//! Command-line interface. The flag names are an interface: scripts use them.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "observer",
    version,
    about = "Watch every container's syscalls land in the one shared host kernel",
    long_about = "Tags every syscall and process event in the kernel with its cgroup, namespaces and \
                  both PID views, groups them per container (Docker, containerd, CRI-O, Podman, \
                  Kubernetes, nspawn, LXC) and streams them as JSON lines."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub watch: WatchArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the workshop lesson in one command: two containers, their view
    /// and the observer's, and a verdict for the room.
    Demo(DemoArgs),
    /// Many kernels in one view, from the Prometheus that scrapes every
    /// node's observer: one box per kernel and the containers sharing it.
    /// Needs no eBPF and no privileges.
    Cluster(ClusterArgs),
    /// Attach only an empty program on sys_enter (the benchmark's floor).
    #[command(hide = true)]
    Floor {
        #[arg(long)]
        duration: Option<f64>,
        /// On the classic raw_syscalls:sys_enter tracepoint.
        #[arg(long)]
        classic: bool,
    },
}

/// `--kernel-split`: see `observer_common::SPLIT_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelSplit {
    #[default]
    Full,
    Timestamp,
    Identity,
}

impl KernelSplit {
    pub fn value(self) -> u32 {
        match self {
            KernelSplit::Full => observer_common::SPLIT_FULL,
            KernelSplit::Timestamp => observer_common::SPLIT_TIMESTAMP,
            KernelSplit::Identity => observer_common::SPLIT_IDENTITY,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every event through the ring buffer, as JSON lines.
    Stream,
    /// Count syscalls in the kernel; only periodic summaries reach user space.
    Count,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Table,
}

#[derive(Clone, Debug, Args)]
pub struct WatchArgs {
    /// stream: every event; count: in-kernel counts, summaries only.
    #[arg(long, value_enum, default_value_t = Mode::Stream)]
    pub mode: Mode,
    /// json: JSON lines; table: a live table redrawn every interval.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Seconds between summaries.
    #[arg(long, default_value_t = 1.0, value_parser = positive_secs)]
    pub interval: f64,
    /// Stop by itself after this many seconds.
    #[arg(long, value_parser = positive_secs)]
    pub duration: Option<f64>,
    /// Write records to FILE instead of stdout (never through a symlink).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Also show the host's own processes (by default only containers).
    #[arg(long)]
    pub host: bool,
    /// Only this container, by name, ID or ID prefix (repeatable).
    #[arg(long = "container", value_name = "NAME|ID")]
    pub containers: Vec<String>,
    /// Only this syscall, by name (repeatable); filtered in the kernel.
    #[arg(long = "syscall", value_name = "NAME", value_parser = syscall_name)]
    pub syscalls: Vec<String>,
    /// Also record syscall exits with their return values.
    #[arg(long)]
    pub sys_exit: bool,
    /// Only summaries and lifecycle records, no per-event lines.
    #[arg(long)]
    pub summary_only: bool,
    /// Ring buffer size in KiB, all rings together (each ring rounded up to
    /// a power of two).
    #[arg(long, default_value_t = 8192)]
    pub ring_buffer_kb: u32,
    /// per-cpu: a ring buffer for each CPU, merged by time stamp (no two
    /// CPUs share a ring's lock); shared: one ring buffer for all CPUs.
    #[arg(long, value_enum, default_value_t = crate::loader::RingLayout::default())]
    pub rings: crate::loader::RingLayout,
    /// Wake the reader once every N records per CPU (a power of two).
    #[arg(long, default_value_t = 512, hide = true)]
    pub wakeup_every: u32,
    /// Hand read ring-buffer space back to the kernel once every N bytes
    /// (0: after every record).
    #[arg(long, default_value_t = crate::ring::DEFAULT_COMMIT_BYTES, hide = true)]
    pub ring_commit_bytes: usize,
    /// How far a streamed syscall goes in the kernel (the benchmark's cost
    /// split): full, timestamp (stop after the time stamp) or identity (stop
    /// after the identity check). Anything but full emits no records.
    #[arg(long, value_enum, default_value_t = KernelSplit::Full, hide = true)]
    pub kernel_split: KernelSplit,
    /// How the kernel programs read task fields: `auto` picks `btf` where
    /// the kernel has `bpf_get_current_task_btf` (5.11+) and `probe-read`
    /// before; forcing `probe-read` measures the 5.10 fallback anywhere.
    #[arg(long, value_enum, default_value_t = crate::loader::TaskAccess::Auto)]
    pub task_access: crate::loader::TaskAccess,
    /// Also show the kernel programs' rare conditions on stderr (a full
    /// count table, PID namespaces nested deeper than 8 levels, a refused
    /// identity-map update), each at its 1st, 2nd, 4th… occurrence per CPU.
    #[arg(long)]
    pub verbose: bool,
    /// Attribute containers from their v1 cgroups (/proc/PID/cgroup), as on
    /// a host without cgroup2 (the default there).
    #[arg(long, hide = true)]
    pub cgroup_v1: bool,
    /// Also show the processes of this host cgroup (a cgroup2 directory),
    /// without --host: the demo's VMM (repeatable).
    #[arg(long = "host-cgroup", value_name = "PATH", hide = true)]
    pub host_cgroups: Vec<PathBuf>,
    /// Count KVM exits per process (kvm:kvm_exit, kvm:kvm_userspace_exit)
    /// and write them as `kvm_exits` records: the demo's VM under KVM.
    #[arg(long, hide = true)]
    pub kvm_exits: bool,
    /// Don't attach the OOM, refused-fork and exec-privilege programs (the
    /// benchmark compares with and without them).
    #[arg(long, hide = true)]
    pub no_claims: bool,
    /// Name the task behind each refused fork: `pid` and `comm` of the
    /// `pids_limit` records, from a kernel program on the exits of clone,
    /// clone3, fork and vfork instead of the pids controller's counter.
    /// Costs about +10 ns on every syscall (count mode; +18 ns in stream
    /// mode): a classic `syscalls:sys_exit_*` tracepoint turns on the
    /// kernel's syscall-exit tracepoint for all of them.
    #[arg(long, conflicts_with = "no_claims")]
    pub refused_fork_tasks: bool,
    /// Docker Engine API socket, for container names.
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,
    /// Serve a live page for the room at ADDR (default 127.0.0.1:7777):
    /// the one kernel, every container, updated every interval.
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = DEFAULT_WEB
    )]
    pub web: Option<SocketAddr>,
    /// Podman API socket, for container names.
    #[arg(long, default_value = "/run/podman/podman.sock")]
    pub podman_socket: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics (loopback unless an
    /// address says otherwise).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::metrics::DEFAULT_ADDR)]
    pub metrics: Option<SocketAddr>,
    /// Node name in the metrics (default: $NODE_NAME, else the hostname).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Syscall label values per container in the metrics: `all`, or `top:N`
    /// (the N busiest by recent rate; the rest summed as `other`).
    #[arg(long, default_value = "top:32", value_parser = crate::metrics::SyscallLimit::parse)]
    pub metrics_syscalls: crate::metrics::SyscallLimit,
    /// Seconds a gone container's series stay in the metrics.
    #[arg(long, default_value_t = 300.0, value_parser = positive_secs)]
    pub metrics_retention: f64,
    /// containerd API socket, for container names and Kubernetes pods
    /// (labels set by the kubelet's CRI).
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    pub containerd_socket: PathBuf,
}

/// Where `--web` listens unless told: loopback only.
pub const DEFAULT_WEB: &str = "127.0.0.1:7777";

fn positive_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("`{s}` must be a positive number of seconds"))
    }
}

/// `--syscall NAME`: a name (or number) this architecture has, checked
/// while parsing so that a typo is a usage error (exit 2), like any other
/// bad value.
fn syscall_name(s: &str) -> Result<String, String> {
    let nr = crate::syscalls::number(s)
        .or_else(|| s.parse().ok())
        .or_else(|| crate::syscalls::compat_number(s));
    match nr {
        Some(nr) if (nr as usize) < observer_common::SYSCALL_BITMAP_WORDS * 64 => Ok(s.to_owned()),
        Some(nr) => Err(format!("syscall number {nr} is beyond the filter's range")),
        None => {
            let close = crate::syscalls::closest(s)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            Err(format!("no syscall `{s}` on this architecture{close}"))
        }
    }
}

/// Warnings about `--container` selectors that can hardly be what was
/// meant: an ID prefix needs 4 characters, so a shorter selector that looks
/// like one matches only a container of exactly that name or ID.
pub fn selector_warnings(selectors: &[String]) -> Vec<String> {
    selectors
        .iter()
        .filter(|s| s.len() < 4)
        .map(|s| {
            format!(
                "warning: --container {s}: too short for an ID prefix (4+ characters); \
                 it matches only a container named `{s}`"
            )
        })
        .collect()
}

#[derive(Clone, Debug, Args)]
pub struct ClusterArgs {
    /// The Prometheus server, e.g. http://127.0.0.1:9090
    #[arg(long, value_name = "URL")]
    pub prometheus: String,
    /// Serve the view as a page at http://ADDR/ instead of printing it once
    /// (loopback unless an address says otherwise).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9465")]
    pub web: Option<SocketAddr>,
    /// Window of the syscall rates (a PromQL duration).
    #[arg(long, default_value = "1m")]
    pub window: String,
    /// table: one box per kernel; json: the same as one JSON object.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// Image to run; default: alpine when the engine has it, else a locally
    /// built busybox image.
    #[arg(long)]
    pub image: Option<String>,
    /// Where the full JSON stream goes (default: a fresh
    /// observer-demo-<time>.jsonl in the current directory).
    #[arg(long)]
    pub stream_file: Option<PathBuf>,
    /// Use namespaces made with unshare instead of Docker.
    #[arg(long)]
    pub unshare: bool,
    /// Image to use when alpine is neither present nor pullable (`cargo
    /// xtask demo` passes the one it builds locally).
    #[arg(long)]
    pub fallback_image: Option<String>,
    /// Also boot a small VM running the same workload as its /init, with a
    /// kernel of its own, and set it beside the container.
    #[arg(long)]
    pub vm: bool,
    /// No VM (overrides --vm; `cargo xtask demo` turns the VM on by default).
    #[arg(long)]
    pub no_vm: bool,
    /// The VM's kernel: a bzImage (`cargo xtask demo` fetches Debian's).
    #[arg(long, value_name = "PATH")]
    pub vm_kernel: Option<PathBuf>,
    /// The VM's CPU: KVM when it works, else TCG (auto); or force one.
    #[arg(long, value_enum, default_value_t = crate::vm::qemu::Accel::Auto)]
    pub accel: crate::vm::qemu::Accel,
    /// The static observer-workload run in the container and as the VM's
    /// /init; default: the one beside this binary, if it is static.
    #[arg(long, value_name = "PATH")]
    pub workload: Option<PathBuf>,
    /// How many calls of the workload's syscall (getppid) each world makes.
    #[arg(long, default_value_t = 500)]
    pub calls: u64,
    /// Time box for the VM's boot, in seconds.
    #[arg(long, default_value_t = 240.0, value_parser = positive_secs)]
    pub vm_timeout: f64,
    /// How long KVM gets to show the guest's first kernel line before the
    /// fallback to TCG, in seconds.
    #[arg(long, default_value_t = 8.0, value_parser = positive_secs, hide = true)]
    pub kvm_timeout: f64,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent_and_parses_the_documented_flags() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "observer",
            "--mode",
            "count",
            "--interval",
            "0.5",
            "--duration",
            "3",
            "--host",
            "--container",
            "web",
            "--container",
            "db",
            "--syscall",
            "getppid",
            "--format",
            "table",
            "--metrics",
            "--node",
            "n1",
            "--metrics-syscalls",
            "top:5",
        ])
        .unwrap();
        assert_eq!(c.watch.mode, Mode::Count);
        assert_eq!(c.watch.containers, ["web", "db"]);
        assert_eq!(c.watch.format, Format::Table);
        assert_eq!(c.watch.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(
            c.watch.metrics_syscalls,
            crate::metrics::SyscallLimit::Top(5)
        );
        let c = Cli::try_parse_from(["observer", "--metrics", "0.0.0.0:9100"]).unwrap();
        assert_eq!(c.watch.metrics, Some("0.0.0.0:9100".parse().unwrap()));
        assert_eq!(
            Cli::try_parse_from(["observer"]).unwrap().watch.metrics,
            None
        );
        assert!(Cli::try_parse_from(["observer", "--metrics-syscalls", "top:x"]).is_err());
        assert_eq!(c.watch.web, None);
        let web = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.watch.web);
        assert_eq!(
            web(&["observer", "--web"]).unwrap(),
            Some(DEFAULT_WEB.parse().unwrap())
        );
        assert_eq!(
            web(&["observer", "--web", "0.0.0.0:8080"]).unwrap(),
            Some("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            web(&["observer", "demo", "--web"]).unwrap(),
            Some(DEFAULT_WEB.parse().unwrap())
        );
        assert!(web(&["observer", "--web", "nowhere"]).is_err());
        assert!(Cli::try_parse_from(["observer", "--interval", "0"]).is_err());
        assert!(Cli::try_parse_from(["observer", "--bogus"]).is_err());
        assert!(Cli::try_parse_from(["observer", "--mode", "fast"]).is_err());
        let e = Cli::try_parse_from(["observer", "--syscall", "unamee"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("did you mean `uname`"), "{e}");
        assert!(Cli::try_parse_from(["observer", "--syscall", "39"]).is_ok());
        assert!(Cli::try_parse_from(["observer", "--syscall", "99999"]).is_err());
    }

    /// `cargo xtask demo --help` lists the options it passes through.
    #[test]
    fn xtask_demo_help_lists_every_demo_option() {
        let help = include_str!("../../xtask/src/demo_help.txt");
        let cmd = Cli::command();
        let demo = cmd.find_subcommand("demo").expect("a demo subcommand");
        for a in demo.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(l) = a.get_long().filter(|l| *l != "help") {
                assert!(
                    help.contains(&format!("--{l}")),
                    "--{l} missing from demo_help.txt"
                );
            }
        }
    }

    #[test]
    fn short_selectors_are_warned_about() {
        let w = selector_warnings(&["6c6".into(), "web-frontend".into(), "3f4e".into()]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("--container 6c6") && w[0].contains("4+ characters"));
    }
}
