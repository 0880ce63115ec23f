//! The kernel matrix: the same static observer, booted in QEMU guests on
//! Debian's own kernels 5.10 (bullseye), 6.1 (bookworm) and 6.12 (trixie),
//! against the exact workload: getppid counted exactly for a process on the
//! host and one in a cgroup and PID namespace of its own (`ns_pid` 1),
//! fork/exec/exit with both PID views, count mode's exact counts, compat
//! (ia32) getppid through `int 0x80` named and counted apart from the
//! native ones in both modes (or said to be unavailable), and the
//! program flavour the kernel needs (the probe-read fallback on 5.10), and
//! every program of each flavour the kernel can load, and `ts` following a
//! step of the guest's wall clock; this machine's kernel
//! too. Also prints what each flavour costs per call there. Needs `cargo xtask test`
//! (guest kernels, static binaries, QEMU).

mod common;

use std::time::{Duration, Instant};

use observer::vm::{
    initramfs::Entry,
    matrix::{CLOCK_STEP_NS, COMPAT_INT80_CALLS, COMPAT_NATIVE_CALLS, CONTAINER_CALLS, HOST_CALLS},
    qemu::{json_of_type, Vm, VmSpec},
};
use serde_json::Value;

/// (Debian suite, kernel release prefix, program flavour it must load).
const KERNELS: [(&str, &str, &str); 3] = [
    ("bullseye", "5.10.", "probe_read"),
    ("bookworm", "6.1.", "btf"),
    ("trixie", "6.12.", "btf"),
];

/// Boot, load (several seconds under TCG per observer start), workloads.
const LIMIT: Duration = Duration::from_secs(600);

/// The workload's calls inside the exec'd child (its default).
const CHILD_CALLS: u64 = 1000;

struct Run {
    lines: Vec<Value>,
}

impl Run {
    fn of(&self, kind: &str) -> impl Iterator<Item = &Value> {
        let kind = kind.to_owned();
        self.lines
            .iter()
            .filter(move |l| l["type"] == kind.as_str())
    }

    fn records(&self, phase: &str, kind: &str) -> Vec<&Value> {
        self.of("matrix_record")
            .filter(|l| l["phase"] == phase && l["record"]["type"] == kind)
            .map(|l| &l["record"])
            .collect()
    }

    fn workload(&self, phase: &str, role: &str) -> &Value {
        &self
            .of("matrix_workload")
            .find(|l| l["phase"] == phase && l["role"] == role)
            .unwrap_or_else(|| panic!("no {role} workload in {phase}"))["report"]
    }

    fn calls(&self, phase: &str, pid: &Value) -> Vec<&Value> {
        self.of("matrix_calls")
            .filter(|l| l["phase"] == phase && &l["pid"] == pid)
            .collect()
    }
}

async fn boot(suite: &str) -> Option<(Run, Duration)> {
    let g = common::vm::guest(Some(suite))?;
    let initrd = common::vm::initramfs(
        &format!("matrix-{suite}"),
        &g,
        &[Entry::file("/bin/observer", &g.observer, 0o755)],
    );
    let mut spec = VmSpec::new(g.kernel.clone(), initrd.clone());
    spec.memory_mib = 768;
    // no_timer_check: a TCG guest on a busy host can miss the kernel's
    // IO-APIC timer check and panic at boot.
    spec.append =
        "no_timer_check observer.facts=0 observer.run=\"/init --matrix\" observer.timeout=560"
            .into();
    let t = Instant::now();
    let mut vm = Vm::start(&spec).await.expect("start QEMU");
    let mut lines = Vec::new();
    loop {
        let l = vm
            .next_line(LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{suite}: {e}"))
            .unwrap_or_else(|| panic!("{suite}: console closed early:\n{}", vm.console_tail()));
        if let Some(e) = json_of_type(&l, "matrix_error") {
            panic!("{suite}: {e}\n{}", vm.console_tail());
        }
        if json_of_type(&l, "init_done").is_some() {
            break;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&l) {
            if v["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("matrix_") || t == "init_run")
            {
                lines.push(v);
            }
        }
    }
    let took = t.elapsed();
    let _ = vm.wait_exit(Duration::from_secs(60)).await;
    let _ = std::fs::remove_file(initrd);
    Some((Run { lines }, took))
}

fn check(suite: &str, release: &str, access: &str, run: &Run) {
    assert!(
        run.of("init_run").any(|r| r["status"] == 0),
        "{suite}: the guest driver failed"
    );
    // Stream mode.
    let kernel = run.records("stream", "kernel");
    let kernel = kernel
        .first()
        .unwrap_or_else(|| panic!("{suite}: no kernel record"));
    assert!(
        kernel["release"]
            .as_str()
            .is_some_and(|r| r.starts_with(release)),
        "{suite}: {kernel}"
    );
    assert_eq!(kernel["task_access"], access, "{suite}");
    let host_pidns = &kernel["host_namespaces"]["pidns"];
    let cgroup_id = &run.of("matrix_cgroup").next().expect("the test cgroup")["cgroup_id"];

    let host = run.workload("stream", "host");
    let calls = run.calls("stream", &host["host_pid"]);
    assert_eq!(calls.len(), 1, "{suite}: {calls:?}");
    assert_eq!(calls[0]["count"], HOST_CALLS, "{suite}: host getppid");
    assert_eq!(
        calls[0]["ns_pid"], host["host_pid"],
        "{suite}: the host's own view"
    );
    assert_eq!(&calls[0]["pidns"], host_pidns, "{suite}");

    let inside = run.workload("stream", "container");
    let calls = run.calls("stream", &inside["host_pid"]);
    assert_eq!(calls.len(), 1, "{suite}: {calls:?}");
    assert_eq!(
        calls[0]["count"], CONTAINER_CALLS,
        "{suite}: container getppid"
    );
    assert_eq!(calls[0]["ns_pid"], 1, "{suite}: PID 1 in its namespace");
    assert_eq!(calls[0]["pidns"], inside["pidns"], "{suite}");
    assert_ne!(
        &calls[0]["pidns"], host_pidns,
        "{suite}: a PID namespace of its own"
    );
    assert_eq!(&calls[0]["cgroup_id"], cgroup_id, "{suite}");

    // Compat (ia32) calls: getppid through int 0x80 named from the i386
    // table and marked, apart from the same process's native getppid.
    let compat = run.workload("stream", "compat");
    let int80 = compat_int80(suite, compat);
    let calls = run.calls("stream", &compat["host_pid"]);
    let of = |abi: Option<&str>| -> u64 {
        calls
            .iter()
            .filter(|c| c["abi"].as_str() == abi)
            .map(|c| c["count"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(
        (of(None), of(Some("ia32"))),
        (COMPAT_NATIVE_CALLS, int80),
        "{suite}: native and ia32 getppid: {calls:?}"
    );

    // fork -> exec -> exit inside, with both PID views.
    let forks = run.records("stream", "fork");
    let outer = forks
        .iter()
        .find(|f| f["child_pid"] == inside["host_pid"])
        .unwrap_or_else(|| panic!("{suite}: the fork of the namespace's PID 1"));
    assert_eq!(outer["child_ns_pid"], 1, "{suite}");
    let fork = forks
        .iter()
        .find(|f| f["pid"] == inside["host_pid"])
        .unwrap_or_else(|| panic!("{suite}: a fork inside"));
    assert_eq!(fork["ns_pid"], 1, "{suite}");
    assert_eq!(fork["child_ns_pid"], 2, "{suite}: PID 2 inside");
    assert_ne!(fork["child_pid"], 2, "{suite}: and something else outside");
    let exec = run
        .records("stream", "exec")
        .into_iter()
        .find(|e| e["pid"] == fork["child_pid"])
        .unwrap_or_else(|| panic!("{suite}: the exec inside"));
    assert_eq!(exec["ns_pid"], 2, "{suite}");
    assert_eq!(exec["filename"], "/init", "{suite}");
    assert_eq!(exec["pidns"], inside["pidns"], "{suite}");
    let exits: Vec<_> = run
        .records("stream", "exit")
        .into_iter()
        .filter(|e| e["pid"] == fork["child_pid"])
        .collect();
    assert_eq!(exits.len(), 1, "{suite}: one exit: {exits:?}");
    assert_eq!(exits[0]["exit_code"], 0, "{suite}");
    assert_eq!(exits[0]["ns_pid"], 2, "{suite}");
    let child_calls = run.calls("stream", &fork["child_pid"]);
    assert_eq!(child_calls.len(), 1, "{suite}: {child_calls:?}");
    assert_eq!(child_calls[0]["count"], CHILD_CALLS, "{suite}");

    // A step of the wall clock: the `ts` of later events follows it (the
    // boot-to-Unix offset is taken again, not kept from the start).
    let clock = run.of("matrix_clock").next().expect("the clock phase");
    for side in ["before", "after"] {
        let w = &clock[side];
        let n = |k: &str| {
            w[k].as_i64()
                .unwrap_or_else(|| panic!("{suite}: {side}: {w}"))
        };
        assert_eq!(w["n"], 10, "{suite}: {side}: {w}");
        // A second of slack for the guest clock's own reads.
        let (from, to) = (n("from") - 1_000_000_000, n("to") + 1_000_000_000);
        assert!(
            (from..=to).contains(&n("first_ts")) && (from..=to).contains(&n("last_ts")),
            "{suite}: the ts of the calls {side} a {} s step of the wall clock are outside the wall-clock window they ran in: {w}",
            CLOCK_STEP_NS / 1_000_000_000
        );
    }

    // Every program of each flavour loads where the kernel has what the
    // flavour needs (`bpf_get_current_task_btf` for btf: 5.11+).
    let loads: Vec<_> = run.of("matrix_load").collect();
    assert_eq!(loads.len(), 4, "{suite}: {loads:?}");
    for l in loads {
        let expected = match l["access"].as_str() {
            Some("probe-read") => Some("probe_read"),
            Some("btf") if access == "btf" => Some("btf"),
            _ => None,
        };
        match expected {
            Some(e) => assert_eq!(l["loaded"], e, "{suite}: {l}"),
            None => assert!(l["loaded"].is_null(), "{suite}: btf loads on 5.10? {l}"),
        }
    }

    // Count mode: exact, from the kernel's maps.
    let summaries = run.records("count", "summary");
    let count = |cgroup: Option<&Value>| -> u64 {
        summaries
            .iter()
            .flat_map(|s| s["containers"].as_array().cloned().unwrap_or_default())
            .filter(|c| match cgroup {
                Some(id) => &c["cgroup_id"] == id,
                None => c["container"].is_null(),
            })
            .map(|c| c["syscalls"]["getppid"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(
        count(Some(cgroup_id)),
        CONTAINER_CALLS + CHILD_CALLS,
        "{suite}: count mode, the container"
    );
    assert_eq!(
        count(None),
        HOST_CALLS + COMPAT_NATIVE_CALLS,
        "{suite}: count mode, the host"
    );
    let int80 = compat_int80(suite, run.workload("count", "compat"));
    let ia32: u64 = summaries
        .iter()
        .flat_map(|s| s["containers"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["container"].is_null())
        .map(|c| c["syscalls"]["getppid (ia32)"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(ia32, int80, "{suite}: count mode, the host's ia32 getppid");
}

/// The int 0x80 calls the compat workload made: all of them where the
/// kernel takes int 0x80 from a 64-bit process; none, said here, where it
/// has no IA32 emulation or has it off (`ia32_emulation=0`).
fn compat_int80(suite: &str, report: &Value) -> u64 {
    let int80 = &report["int80"];
    if int80["available"] == true {
        assert_eq!(
            int80["returned_ppid"], COMPAT_INT80_CALLS,
            "{suite}: {int80}"
        );
        COMPAT_INT80_CALLS
    } else {
        eprintln!(
            "matrix: {suite}: no ia32 calls to check, int 0x80 is unavailable there: {}",
            int80["why"]
        );
        0
    }
}

#[test]
fn the_observer_is_exact_on_every_kernel_of_the_matrix() {
    let rt = common::vm::runtime();
    let t = Instant::now();
    for (suite, release, access) in KERNELS {
        let Some((run, took)) = rt.block_on(boot(suite)) else {
            return;
        };
        let costs: Vec<String> = run
            .of("matrix_cost")
            .map(
                |c| match (c["ns_per_call"].as_f64(), c["prog_ns_per_run"].as_f64()) {
                    (Some(ns), Some(run)) => {
                        format!(
                            "{} {ns:.0} ns/call ({run:.0} ns per program run)",
                            c["access"]
                        )
                    }
                    (Some(ns), None) => format!("{} {ns:.0} ns/call", c["access"]),
                    _ => format!("{} unavailable", c["access"]),
                },
            )
            .collect();
        eprintln!(
            "matrix: {suite} ({release}x) in {took:.1?}: {}",
            costs.join(", ")
        );
        check(suite, release, access, &run);
    }
    eprintln!("matrix: every kernel in {:.1?}", t.elapsed());
}

/// This machine's kernel, the matrix's fourth: every program of both
/// flavours loads and attaches, in both modes (with `--sys-exit`).
#[test]
fn every_program_of_each_flavour_loads_on_this_kernel() {
    if !common::privileged() {
        return;
    }
    let rows = observer::vm::matrix::loads(common::OBSERVER);
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (access, mode, row) in rows {
        assert_eq!(
            row,
            Ok(access.replace('-', "_")),
            "{access} in {mode} mode on this kernel"
        );
    }
}

/// What the probe-read fallback costs on this machine's kernel against the
/// BTF flavour: ns per getppid with each, and ns per run of the
/// `sys_enter` program as the kernel's BPF statistics time it (which a busy
/// machine disturbs far less than the call's wall time). Printed for the
/// README; asserted only to be there.
#[test]
fn the_fallbacks_cost_on_this_kernel() {
    if !common::privileged() {
        return;
    }
    let rows = observer::vm::matrix::cost(common::OBSERVER, common::WORKLOAD, 1_000_000);
    for (access, per_call, per_run) in &rows {
        eprintln!(
            "matrix: this kernel, {access}: {} ns/call, {} ns per sys_enter run",
            per_call.map_or("–".into(), |v| format!("{v:.0}")),
            per_run.map_or("–".into(), |v| format!("{v:.0}"))
        );
    }
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (access, per_call, per_run) in &rows[1..] {
        assert!(
            per_call.is_some() && per_run.is_some(),
            "{access}: {rows:?}"
        );
    }
}
