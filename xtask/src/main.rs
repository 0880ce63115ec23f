//! `cargo xtask …`: provisioning, building, running, testing, benchmarks.
//! Build orchestration only: no observer logic lives here.

mod bench;
mod build;
mod doctor;
mod engine;
mod fleet;
mod guest;
mod provision;
mod runtimes;
mod smaps;
mod soak;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run and test the kernel-sharing observer"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing, build the eBPF object and the daemon.
    Build,
    /// Build, then run the observer as root: `cargo xtask run -- --duration 3`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then run every test: unit, privileged kernel tests, end-to-end
    /// tests with a real Docker engine.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build everything and install the observer as PREFIX/bin/observer
    /// (then `sudo observer …`, or grant it CAP_BPF and CAP_PERFMON).
    Install {
        #[arg(long, default_value = "/usr/local")]
        prefix: std::path::PathBuf,
    },
    /// Check every prerequisite; one line each, with the fix.
    Doctor,
    /// Build the observer's container image from its static binary: `docker
    /// import`ed as observer:VERSION, and an OCI archive under target/image/
    /// for `ctr images import`.
    Image,
    /// Measure the observer's overhead, throughput, CPU and memory against
    /// the floor and bpftrace; writes target/bench/report.{json,md}.
    Bench {
        /// A few seconds per phase: checks the harness, not the machine.
        #[arg(long)]
        quick: bool,
        /// Only the page's cost: the same load with 0 and with N readers
        /// of `/events`, interleaved; writes target/bench/web.{json,md}.
        #[arg(long, value_name = "N")]
        web_clients: Option<usize>,
        /// Only the 5.10 fallback's cost: count and stream phases with the
        /// BTF and the probe-read programs, interleaved; writes
        /// target/bench/fallback.{json,md}.
        #[arg(long, conflicts_with = "web_clients")]
        fallback: bool,
        /// Only the per-syscall cost of these phases (comma-separated, e.g.
        /// count_no_claims,count), each between two `off` phases.
        #[arg(long, value_delimiter = ',')]
        phases: Vec<String>,
        /// Only the daemon's memory: sustained steps streaming JSON to a
        /// file, resident memory by holder (ring buffers, text, heap,
        /// arenas, stacks…) at rest, at the load's peak and after it;
        /// writes target/bench/memory.{json,md}.
        #[arg(long, conflicts_with_all = ["web_clients", "fallback"])]
        memory: bool,
        /// With --memory: the same steps with this observer binary too,
        /// interleaved (e.g. a copy of main's build).
        #[arg(long, value_name = "PATH", requires = "memory")]
        baseline: Option<std::path::PathBuf>,
        /// With --memory: the rates (events/s) of the steps.
        #[arg(long, value_delimiter = ',', default_values_t = [500_000u64, 1_000_000])]
        rates: Vec<u64>,
        /// With --memory: seconds per step.
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// With --memory: each step with each of these event ring layouts
        /// (`shared`, `per-cpu`), interleaved.
        #[arg(long, value_delimiter = ',', default_values_t = ["shared".to_owned()], requires = "memory")]
        rings: Vec<String>,
        /// With --memory: the two workers on CPUs 0 and 1 (the observer's
        /// CPU) instead of both on CPU 0, so that two CPUs produce.
        #[arg(long, requires = "memory")]
        spread: bool,
        /// Rounds for --phases and --kernel-split (default 5) or --memory
        /// (default 1).
        #[arg(long)]
        rounds: Option<usize>,
        /// With --phases: each call's cost as the workload thread's CPU
        /// time instead of the wall clock (steadier on a busy machine).
        #[arg(long)]
        cpu_time: bool,
        /// Only the `sys_enter` program's own time per run (bpf_stats) for
        /// each step of the stream path; writes
        /// target/bench/kernel_split.{json,md}.
        #[arg(long, conflicts_with_all = ["web_clients", "fallback", "memory"])]
        kernel_split: bool,
    },
    /// Containers created and destroyed every second for N minutes while the
    /// observer runs; prints its memory over time.
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
    },
    /// Fetch a Debian guest kernel (unpacked under target/guest, never
    /// installed) and print its paths as JSON.
    GuestKernel {
        /// bookworm (6.1), bullseye (5.10), trixie (6.12), bookworm-backports.
        #[arg(default_value = "bookworm")]
        suite: String,
    },
    /// Build the observer and observer-workload as static executables for
    /// guests and print their paths as JSON.
    GuestBins,
    /// Run the workshop demo (starts a Docker engine when needed).
    #[command(after_help = include_str!("demo_help.txt"))]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let r: Result<()> = match cli.cmd {
        Cmd::Build => build::build_all(true).map(|_| ()),
        Cmd::Run { args } => build::run_observer(&args),
        Cmd::Test { args } => build::test(&args),
        Cmd::Install { prefix } => build::install(&prefix).map(|_| ()),
        Cmd::Doctor => doctor::doctor(),
        Cmd::Image => fleet::image().map(|i| println!("{} {}", i.name, i.oci_archive.display())),
        Cmd::Demo { args } => build::demo(&args),
        Cmd::GuestKernel { suite } => {
            guest::fetch_kernel(&suite).map(|k| println!("{}", k.to_json()))
        }
        Cmd::GuestBins => guest::build_static().map(|b| {
            println!(
                "{}",
                serde_json::json!({"observer": b.observer, "workload": b.workload})
            )
        }),
        Cmd::Soak { minutes } => build::build_all(true).and_then(|observer| {
            let engine = engine::ensure_engine()?;
            soak::soak(minutes, &observer, &engine.image)
        }),
        Cmd::Bench {
            quick,
            web_clients,
            fallback,
            phases,
            memory,
            baseline,
            rates,
            seconds,
            rings,
            spread,
            rounds,
            cpu_time,
            kernel_split,
        } => build::build_all(true).and_then(|observer| {
            let workload = observer.with_file_name("observer-workload");
            match web_clients {
                None if kernel_split => {
                    bench::run_kernel_split(observer, workload, rounds.unwrap_or(5))
                }
                Some(n) => bench::run_web(observer, workload, n, quick),
                None if fallback => bench::run_fallback(observer, workload, quick),
                None if memory => bench::run_memory(
                    observer,
                    workload,
                    bench::MemoryRun {
                        baseline,
                        rates,
                        secs: seconds,
                        rounds: rounds.unwrap_or(1),
                        rings,
                        spread,
                    },
                ),
                None if !phases.is_empty() => {
                    bench::run_phases(observer, workload, &phases, rounds.unwrap_or(5), cpu_time)
                }
                None => bench::run(observer, workload, quick),
            }
        }),
    };
    if let Err(e) = r {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}
