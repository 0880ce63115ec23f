//! Property-based fuzzing of everything that reads untrusted bytes: ring
//! buffer records (`decode`, and the whole pipeline behind it), cgroup paths
//! (from the kernel's `cgroup_mkdir` tracepoint and the cgroup tree, where a
//! container may name its own sub-cgroups) and `/proc/PID/cgroup` lines. No
//! BPF needed: everything here is pure.

use std::mem::size_of;

use clap::Parser;
use observer::{
    container::{
        parse::parse_proc_cgroup_line, parse_cgroup_path, ContainerRef, Registry, Runtime,
    },
    decode::{decode, DecodeError, Event},
    output::Sink,
    pipeline::{KernelCounters, Pipeline},
};
use observer_common::{
    CgroupRecord, EnforcedRecord, ExecRecord, ExitRecord, ForkRecord, Header, PrivilegeRecord,
    SyscallEvent, SyscallExitEvent, TaskGoneRecord, CGROUP_PATH_LEN, COMM_LEN, FILENAME_LEN,
    KIND_CGROUP_MKDIR, KIND_CGROUP_RMDIR, KIND_ENFORCED, KIND_EXEC, KIND_EXIT, KIND_FORK,
    KIND_PRIVILEGE, KIND_SYSCALL, KIND_SYSCALL_EXIT, KIND_TASK, KIND_TASK_GONE, NODENAME_LEN,
};
use proptest::prelude::*;

/// Cases per property: enough to hit the interesting lengths and segment
/// combinations many times over, while the whole binary stays in seconds.
const CASES: u32 = 2000;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported with their minimal input; no files written
        // next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The record size each kind needs.
fn need(kind: u32) -> usize {
    match kind {
        KIND_SYSCALL => size_of::<SyscallEvent>(),
        KIND_SYSCALL_EXIT => size_of::<SyscallExitEvent>(),
        KIND_TASK => size_of::<Header>(),
        KIND_TASK_GONE => size_of::<TaskGoneRecord>(),
        KIND_FORK => size_of::<ForkRecord>(),
        KIND_EXEC => size_of::<ExecRecord>(),
        KIND_EXIT => size_of::<ExitRecord>(),
        KIND_CGROUP_MKDIR | KIND_CGROUP_RMDIR => size_of::<CgroupRecord>(),
        KIND_ENFORCED => size_of::<EnforcedRecord>(),
        KIND_PRIVILEGE => size_of::<PrivilegeRecord>(),
        _ => unreachable!("not a kind"),
    }
}

fn kind_of(ev: &Event) -> u32 {
    match ev {
        Event::Syscall(_) => KIND_SYSCALL,
        Event::SyscallExit(_) => KIND_SYSCALL_EXIT,
        Event::Fork(_) => KIND_FORK,
        Event::Exec(_) => KIND_EXEC,
        Event::Exit(_) => KIND_EXIT,
        Event::CgroupMkdir(_) => KIND_CGROUP_MKDIR,
        Event::CgroupRmdir(_) => KIND_CGROUP_RMDIR,
        Event::Task(_) => KIND_TASK,
        Event::TaskGone(_) => KIND_TASK_GONE,
        Event::Enforced(_) => KIND_ENFORCED,
        Event::Privilege(_) => KIND_PRIVILEGE,
    }
}

/// A record of a valid kind: its kind word, then any bytes. Lengths are
/// biased towards each record size, where off-by-ones live.
fn record_of_valid_kind() -> impl Strategy<Value = Vec<u8>> {
    (1u32..=9)
        .prop_flat_map(|kind| {
            let n = need(kind);
            let len = prop_oneof![
                0usize..2000,
                n.saturating_sub(8)..n + 8,
                Just(n - 1),
                Just(n),
            ];
            (Just(kind), len)
        })
        .prop_flat_map(|(kind, len)| {
            let rest = len.saturating_sub(4);
            (
                Just(kind),
                Just(len),
                prop::collection::vec(any::<u8>(), rest),
            )
        })
        .prop_map(|(kind, len, rest)| {
            let mut b = kind.to_le_bytes().to_vec();
            b.extend(rest);
            // Lengths below 4 cut into the kind word itself.
            b.truncate(len);
            b
        })
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Any bytes: a typed result, never a panic, and the error says why.
    #[test]
    fn decode_never_panics_on_arbitrary_bytes(buf in prop::collection::vec(any::<u8>(), 0..2000)) {
        match decode(&buf) {
            Err(DecodeError::Empty) => prop_assert!(buf.len() < 4),
            Err(DecodeError::UnknownKind(k)) => {
                prop_assert!(!(1..=9).contains(&k));
                prop_assert_eq!(&k.to_le_bytes()[..], &buf[..4]);
            }
            Err(DecodeError::Short { kind, len, need: n }) => {
                prop_assert_eq!(len, buf.len());
                prop_assert_eq!(n, need(kind));
                prop_assert!(len < n);
            }
            Ok(ev) => prop_assert!(buf.len() >= need(kind_of(&ev))),
        }
    }

    /// A valid kind word: decodes exactly when the record is long enough,
    /// into that kind, and is a `Short` error naming the need otherwise.
    #[test]
    fn decode_of_each_kind_is_ok_exactly_when_long_enough(buf in record_of_valid_kind()) {
        let r = decode(&buf);
        if buf.len() < 4 {
            prop_assert_eq!(r, Err(DecodeError::Empty));
            return Ok(());
        }
        let kind = u32::from_le_bytes(buf[..4].try_into().unwrap());
        let n = need(kind);
        if buf.len() >= n {
            let ev = r.map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(kind_of(&ev), kind);
            // The header (when there is one) is the record's first bytes.
            if let Some(h) = ev.header() {
                prop_assert_eq!(h.kind, kind);
            }
        } else {
            prop_assert_eq!(r, Err(DecodeError::Short { kind, len: buf.len(), need: n }));
        }
    }
}

// --- cgroup paths ----------------------------------------------------------

const FRAGMENTS: &[&str] = &[
    "/",
    "/",
    "/",
    "docker",
    "docker-",
    ".scope",
    ".slice",
    ".service",
    "kubepods",
    "kubepods-",
    "burstable",
    "besteffort",
    "pod",
    "crio-",
    "crio-conmon-",
    "cri-containerd-",
    "nerdctl-",
    "libpod-",
    "libpod-conmon-",
    "libpod-payload-",
    "lxc.payload.",
    "lxc.payload",
    "lxc",
    "lxc.monitor",
    "machine-",
    "qemu-",
    "lxc-",
    "systemd-nspawn@",
    "supervisor",
    "payload",
    "default",
    "k8s.io",
    "actions_job",
    "system.slice",
    "user.slice",
    ":",
    "-",
    "_",
    ".",
    "..",
    "\\x2d",
    "\\x2f",
    "\\x",
    "\\xzz",
    "\\",
    " (deleted)",
    "12",
    "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
    "0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0",
    "0123456789abcdef0123456789abcdef",
    "é",
    "\u{fffd}",
    "\0",
];

fn hex64() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}"
}

/// One piece of a path: a runtime keyword, a 64-hex id (valid, uppercase,
/// or one short), or a short arbitrary string.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
        2 => hex64(),
        1 => "[0-9A-F]{64}",
        1 => "[0-9a-f]{63}",
        1 => ".{0,8}",
    ]
}

const PREFIXES: &[&str] = &[
    "",
    "docker-",
    "crio-",
    "crio-conmon-",
    "cri-containerd-",
    "nerdctl-",
    "libpod-",
    "libpod-conmon-",
    "libpod-payload-",
    "lxc.payload.",
    "machine-",
    "machine-lxc\\x2d12\\x2d",
    "machine-qemu\\x2d3\\x2d",
    "systemd-nspawn@",
    "pod",
    "kubepods-pod",
    "kubepods-burstable-pod",
    "kubelet-kubepods-besteffort-pod",
];
const SUFFIXES: &[&str] = &["", "", ".scope", ".slice", ".service"];

/// The variable part of a segment: an ID, a pod UID (either spelling) or a
/// name.
fn id_part() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => hex64(),
        1 => "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        1 => "[0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12}",
        1 => "[0-9a-f]{32}",
        1 => "[a-z0-9.\\\\-]{0,10}",
        1 => Just(String::new()),
    ]
}

/// One path segment: runtime-shaped (prefix, id, suffix), containerd's
/// `slice:prefix:id` form, or a few fragments glued together.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::sample::select(PREFIXES), id_part(), prop::sample::select(SUFFIXES))
            .prop_map(|(p, id, s)| format!("{p}{id}{s}")),
        1 => (id_part(), prop::sample::select(&["cri-containerd", "crio", "docker", "libpod", "x"][..]), hex64())
            .prop_map(|(uid, p, id)| format!("kubepods-pod{}.slice:{p}:{id}", uid.replace('-', "_"))),
        3 => prop::collection::vec(fragment(), 1..4).prop_map(|v| v.concat()),
    ]
}

/// Paths made of runtime keywords, IDs and separators: mostly well-formed
/// layouts with the odd piece out of place, plus free concatenations.
fn built_path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (prop::collection::vec(segment(), 0..8), prop::sample::select(&["", "/", "//"][..]))
            .prop_map(|(segs, end)| format!("/{}{end}", segs.join("/"))),
        1 => prop::collection::vec(fragment(), 0..16).prop_map(|v| v.concat()),
    ]
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The documented invariants of a match ("IDs are validated").
fn check_ref(path: &str, r: &ContainerRef) -> Result<(), TestCaseError> {
    match r.runtime {
        Runtime::Docker | Runtime::Containerd | Runtime::Crio | Runtime::Podman => {
            prop_assert!(is_hex64(&r.id), "{path:?} -> {r:?}: id not 64 hex");
            prop_assert!(
                r.pod_uid.is_none() && r.engine.is_none(),
                "{path:?} -> {r:?}"
            );
        }
        Runtime::Kubernetes => {
            prop_assert!(r.pod_uid.is_some(), "{path:?} -> {r:?}: no pod");
            prop_assert!(
                r.id.is_empty() || is_hex64(&r.id),
                "{path:?} -> {r:?}: bad container id"
            );
        }
        Runtime::Nspawn | Runtime::Lxc => {
            prop_assert!(
                !r.id.is_empty() && r.id != "." && r.id != ".." && !r.id.contains('/'),
                "{path:?} -> {r:?}: bad name"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn parse_cgroup_path_never_panics_on_arbitrary_strings(s in any::<String>()) {
        if let Some(r) = parse_cgroup_path(&s) {
            check_ref(&s, &r)?;
        }
    }

    #[test]
    fn parse_cgroup_path_never_panics_on_runtime_shaped_paths(s in built_path()) {
        if let Some(r) = parse_cgroup_path(&s) {
            check_ref(&s, &r)?;
        }
    }

    /// The cgroupfs driver's layout, whatever encloses it as long as no
    /// other container does, and the systemd driver's scope.
    #[test]
    fn any_docker_id_is_recognised(id in hex64()) {
        let want = Some(ContainerRef {
            runtime: Runtime::Docker,
            id: id.clone(),
            pod_uid: None,
            engine: None,
        });
        prop_assert_eq!(parse_cgroup_path(&format!("/docker/{id}")), want.clone());
        prop_assert_eq!(parse_cgroup_path(&format!("/system.slice/docker-{id}.scope")), want.clone());
        // Sub-cgroups a container makes for itself still belong to it.
        prop_assert_eq!(parse_cgroup_path(&format!("/docker/{id}/init.scope")), want);
    }

    /// IDs are validated: uppercase hex is not a docker ID.
    #[test]
    fn uppercase_ids_are_the_host(id in "[0-9A-F]{64}") {
        prop_assume!(id.bytes().any(|b| b.is_ascii_alphabetic()));
        prop_assert_eq!(parse_cgroup_path(&format!("/docker/{id}")), None);
    }

    /// Nesting: the innermost container wins.
    #[test]
    fn innermost_docker_container_wins(outer in hex64(), inner in hex64()) {
        let r = parse_cgroup_path(&format!("/docker/{outer}/docker/{inner}")).unwrap();
        prop_assert_eq!(r.runtime, Runtime::Docker);
        prop_assert_eq!(r.id, inner);
    }

    #[test]
    fn parse_proc_cgroup_line_never_panics_on_arbitrary_strings(s in any::<String>()) {
        check_line(&s)?;
    }

    #[test]
    fn parse_proc_cgroup_line_never_panics_on_cgroup_shaped_lines(
        id in prop_oneof!["[0-9]{1,12}", ".{0,3}"],
        controllers in prop_oneof![Just(String::new()), "[a-z_=,]{0,20}", ".{0,5}"],
        path in built_path(),
        tail in prop::sample::select(&["", "\n", "\r\n", " (deleted)", " (deleted)\n", ":", "\n\n"][..]),
    ) {
        let line = format!("{id}:{controllers}:{path}{tail}");
        check_line(&line)?;
        if let Some((_, _, p)) = parse_proc_cgroup_line(&line) {
            // What the line holds goes on to the path parser.
            if let Some(r) = parse_cgroup_path(p) {
                check_ref(p, &r)?;
            }
        }
    }
}

fn check_line(s: &str) -> Result<(), TestCaseError> {
    if let Some((id, controllers, path)) = parse_proc_cgroup_line(s) {
        prop_assert!(path.starts_with('/'), "{s:?}: path {path:?}");
        prop_assert!(
            !controllers.contains(':'),
            "{s:?}: controllers {controllers:?}"
        );
        let digits = s.split(':').next().unwrap();
        prop_assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
        prop_assert_eq!(Some(id), digits.parse::<u32>().ok());
        // Nothing but the line ending and one ` (deleted)` marker is cut.
        let line = s.trim_end_matches(['\n', '\r']);
        let rebuilt = format!("{digits}:{controllers}:{path}");
        prop_assert!(
            line == rebuilt || line == format!("{rebuilt} (deleted)"),
            "{s:?} -> ({id}, {controllers:?}, {path:?})"
        );
    }
    Ok(())
}

// --- the whole pipeline ----------------------------------------------------

/// Bytes of a plain `#[repr(C)]` record.
fn bytes_of<T>(v: &T) -> Vec<u8> {
    // SAFETY: observer-common's records are plain integers and byte arrays
    // without padding (their layout test checks the sizes).
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// Nasty C strings for comm, filename and nodename fields.
fn c_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=max),
        Just(b"quo\"te\\back\x01\x1b[2J\xff\xfe\xc3".to_vec()),
        Just(vec![b'x'; max]),
    ]
}

fn fill(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
}

/// A well-formed record of any kind with hostile contents: arbitrary
/// comms, filenames and cgroup paths, a handful of cgroup IDs so that
/// mkdir, events and rmdir meet, and any numbers.
fn pipeline_record() -> impl Strategy<Value = Vec<u8>> {
    (
        1u32..=9,
        0u64..6,
        // Boot-time ns as the kernel gives them (below ~36 years of uptime).
        // Not any u64: `clock + h.ts as i64` (output/json.rs, and the
        // container/summary timestamps in pipeline.rs) overflows for
        // ts >= 2^63 - clock, a panic in debug builds. The kernel never
        // sends such a stamp; reported as hardening (saturating_add).
        0u64..(1 << 60),
        any::<[u32; 10]>(),
        any::<i64>(),
        c_bytes(COMM_LEN),
        c_bytes(FILENAME_LEN),
        c_bytes(NODENAME_LEN),
        prop_oneof![
            built_path().prop_map(String::into_bytes),
            hex64().prop_map(|id| format!("/docker/{id}").into_bytes()),
            c_bytes(CGROUP_PATH_LEN),
        ],
        0u32..3,
    )
        .prop_map(
            |(kind, cg, ts, n, num, comm, filename, nodename, path, hier)| {
                let mut h = observer_common::Header {
                    kind,
                    cpu: n[0] % 64,
                    ts,
                    cgroup_id: cg,
                    pid: n[1],
                    tid: n[2],
                    ns_pid: n[3],
                    ns_tid: n[4],
                    pidns: n[5],
                    mntns: n[6],
                    utsns: n[7],
                    netns: n[8],
                    comm: [0; COMM_LEN],
                };
                fill(&mut h.comm, &comm);
                match kind {
                    KIND_SYSCALL | KIND_SYSCALL_EXIT => {
                        let event = SyscallEvent {
                            kind,
                            tid: n[2] % 4,
                            ts,
                            cgroup_id: cg,
                            nr: num as i32,
                            cpu: (n[0] % 64) as u16,
                            flags: (n[1] % 2) as u16,
                        };
                        if kind == KIND_SYSCALL {
                            bytes_of(&event)
                        } else {
                            bytes_of(&SyscallExitEvent {
                                event,
                                ret: num.rotate_left(7),
                            })
                        }
                    }
                    // A few tids, so that identities and syscalls meet.
                    KIND_TASK => bytes_of(&Header { tid: n[2] % 4, ..h }),
                    KIND_TASK_GONE => bytes_of(&TaskGoneRecord {
                        kind,
                        tid: n[2] % 4,
                        ts: h.ts,
                    }),
                    KIND_FORK => bytes_of(&ForkRecord {
                        header: h,
                        child_pid: n[9],
                        child_tid: n[9],
                        child_ns_pid: n[1],
                        child_ns_tid: n[2],
                    }),
                    KIND_EXEC => {
                        let mut r = ExecRecord {
                            header: h,
                            filename: [0; FILENAME_LEN],
                            nodename: [0; NODENAME_LEN],
                        };
                        fill(&mut r.filename, &filename);
                        fill(&mut r.nodename, &nodename);
                        bytes_of(&r)
                    }
                    KIND_EXIT => bytes_of(&ExitRecord {
                        header: h,
                        exit_code: n[9],
                        _pad: 0,
                    }),
                    KIND_ENFORCED => bytes_of(&EnforcedRecord {
                        header: h,
                        what: n[9] % 4,
                        nr: n[0],
                        ret: num,
                    }),
                    KIND_PRIVILEGE => bytes_of(&PrivilegeRecord {
                        header: h,
                        cap_effective: num as u64,
                        seccomp_mode: n[9] % 4,
                        no_new_privs: n[0] % 2,
                    }),
                    _ => {
                        let mut r = CgroupRecord {
                            kind,
                            hierarchy_id: hier,
                            ts,
                            cgroup_id: cg,
                            level: n[0],
                            _pad: 0,
                            path: [0; CGROUP_PATH_LEN],
                        };
                        fill(&mut r.path, &path);
                        bytes_of(&r)
                    }
                }
            },
        )
}

proptest! {
    #![proptest_config(config(300))]

    /// Hostile records through the whole pipeline (decode, attribution,
    /// aggregation, summary, final loss account): no panic, and every line
    /// that comes out is one valid JSON object.
    #[test]
    fn pipeline_turns_any_records_into_valid_json_lines(
        records in prop::collection::vec(
            prop_oneof![
                8 => pipeline_record(),
                1 => prop::collection::vec(any::<u8>(), 0..600),
            ],
            1..40,
        ),
        host in any::<bool>(),
        sys_exit in any::<bool>(),
    ) {
        let mut argv = vec!["observer"];
        if host {
            argv.push("--host");
        }
        if sys_exit {
            argv.push("--sys-exit");
        }
        let args = observer::cli::Cli::try_parse_from(&argv).unwrap().watch;
        let mut p = Pipeline::new(
            args,
            Registry::new(None),
            Sink::new(Box::new(std::io::sink())),
            1_700_000_000_000_000_000,
        );
        p.kernel_record();
        for r in &records {
            p.record(r);
        }
        p.housekeeping();
        p.summary(&KernelCounters::default(), 1.0);
        p.release_all();
        p.summary(&KernelCounters::default(), 1.0);
        p.final_loss(&KernelCounters::default());
        let text = std::mem::take(&mut p.sink().buf);
        prop_assert_eq!(text.last(), Some(&b'\n'));
        let mut types = Vec::new();
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                TestCaseError::fail(format!("invalid JSON ({e}): {}", String::from_utf8_lossy(line)))
            })?;
            prop_assert!(v.is_object());
            types.push(v["type"].as_str().unwrap_or_default().to_owned());
        }
        prop_assert_eq!(types.first().map(String::as_str), Some("kernel"));
        prop_assert_eq!(types.last().map(String::as_str), Some("loss"));
    }
}
