//! Booting a real VM beside the containers: a guest kernel of its own, our
//! static workload as its `/init`, QEMU owned and time-boxed (TCG on hosts
//! where nested KVM hangs). Needs `cargo xtask test` (guest kernel, static
//! binaries, QEMU).

mod common;

use std::time::{Duration, Instant};

use observer::{
    kernel_info::KernelInfo,
    vm::{
        initramfs::Entry,
        qemu::{json_of_type, Accel, Vm, VmError, VmSpec},
    },
};

/// A TCG boot of Debian's kernel takes ~10 s here; leave room for a busy
/// machine.
const BOOT: Duration = Duration::from_secs(180);

#[test]
fn a_guest_boots_its_own_kernel_and_reports_from_inside() {
    let Some(g) = common::vm::guest(None) else {
        return;
    };
    let initrd = common::vm::initramfs("boot", &g, &[]);
    let mut spec = VmSpec::new(g.kernel.clone(), initrd.clone());
    spec.append = "observer.calls=321 observer.syscall=getpid".into();
    let host = KernelInfo::read();
    common::vm::runtime().block_on(async {
        let t = Instant::now();
        let mut vm = Vm::start(&spec).await.expect("start QEMU");
        let facts = vm
            .wait_json("workload_facts", BOOT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let boot = t.elapsed();
        let (rss, hwm) = vm.memory().expect("QEMU runs while the guest reports");
        assert_eq!(facts["calls"], 321);
        assert_eq!(facts["syscall"], "getpid");
        assert_eq!(facts["pid"], 1, "the workload is the guest's init");
        assert_ne!(
            facts["boot_id"], host.boot_id,
            "the guest booted a kernel of its own"
        );
        assert!(facts["release"].as_str().is_some_and(|r| !r.is_empty()));
        vm.wait_json("init_done", Duration::from_secs(30))
            .await
            .unwrap();
        let status = vm.wait_exit(Duration::from_secs(30)).await.unwrap();
        assert!(status.success(), "QEMU ends cleanly on power-off: {status}");
        eprintln!(
            "guest {} booted to /init in {boot:?} with {} ({}); QEMU RSS {} MiB, peak {} MiB",
            facts["release"],
            vm.accel.accel,
            vm.accel.why,
            rss >> 20,
            hwm >> 20
        );
    });
    let _ = std::fs::remove_file(initrd);
}

#[test]
fn a_kvm_guest_that_shows_no_progress_falls_back_to_tcg() {
    let Some(g) = common::vm::guest(None) else {
        return;
    };
    if observer::vm::qemu::kvm_opens().is_err() {
        eprintln!(
            "no usable /dev/kvm here: the fallback is the only path, covered by the boot test"
        );
        return;
    }
    // The guest also follows a whole plan: NIC modules, an interface up on
    // QEMU's user network, and a program run with arguments.
    let modules: Vec<Entry> = ["e1000"]
        .iter()
        .map(|m| {
            let host = common::vm::find_module(&g.modules, m)
                .unwrap_or_else(|| panic!("{m}.ko in {}", g.modules.display()));
            Entry::file(&format!("/lib/modules/{m}.ko"), host, 0o644)
        })
        .collect();
    let initrd = common::vm::initramfs("fallback", &g, &modules);
    let mut spec = VmSpec::new(g.kernel.clone(), initrd.clone());
    spec.accel = Accel::Auto;
    // No guest prints its first kernel line this fast, even on working KVM.
    spec.kvm_progress = Duration::from_millis(1);
    spec.hostfwd = vec![(40000 + (std::process::id() % 20000) as u16, 9)];
    spec.append = "observer.calls=7 \
        observer.insmod=/lib/modules/e1000.ko \
        observer.ifup=eth0:10.0.2.15/24 observer.run=\"/init --facts --calls 11 --syscall gettid\" observer.timeout=60"
        .into();
    common::vm::runtime().block_on(async {
        let mut vm = Vm::start(&spec).await.expect("start QEMU");
        assert_eq!(vm.accel.accel, "tcg", "{:?}", vm.accel);
        assert!(vm.accel.why.contains("KVM"), "{}", vm.accel.why);
        let mut lines = Vec::new();
        loop {
            let l = vm
                .next_line(BOOT)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("console closed early:\n{}", vm.console_tail()));
            let done = l.contains("\"init_done\"");
            lines.push(l);
            if done {
                break;
            }
        }
        let console = lines.join("\n");
        let facts: Vec<serde_json::Value> = lines
            .iter()
            .filter_map(|l| json_of_type(l, "workload_facts"))
            .collect();
        assert_eq!(facts.len(), 2, "init's own and the program's:\n{console}");
        assert_eq!(
            (facts[0]["calls"].as_u64(), facts[0]["pid"].as_u64()),
            (Some(7), Some(1))
        );
        assert_eq!(facts[1]["calls"], 11, "observer.run passed its arguments");
        assert_eq!(facts[1]["syscall"], "gettid");
        assert_ne!(facts[1]["pid"], 1);
        assert!(
            lines
                .iter()
                .any(|l| json_of_type(l, "init_run").is_some_and(|r| r["status"] == 0)),
            "{console}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| json_of_type(l, "init_error").is_some()),
            "modules load and eth0 comes up:\n{console}"
        );
        vm.wait_exit(Duration::from_secs(30)).await.unwrap();
        // Forced KVM with the same time box is an error, not a fallback.
        spec.accel = Accel::Kvm;
        let err = Vm::start(&spec).await.unwrap_err();
        assert!(matches!(err, VmError::Timeout { .. }), "{err}");
    });
    let _ = std::fs::remove_file(initrd);
}

#[test]
fn a_file_that_is_not_a_kernel_is_one_clear_error() {
    let Some(g) = common::vm::guest(None) else {
        return;
    };
    let initrd = common::vm::initramfs("badkernel", &g, &[]);
    let spec = VmSpec::new(g.workload.clone(), initrd.clone());
    let err = common::vm::runtime()
        .block_on(Vm::start(&spec))
        .unwrap_err();
    assert!(matches!(err, VmError::BadKernel { .. }), "{err}");
    assert!(
        err.to_string().contains("not a bootable image") || err.to_string().contains("bzImage"),
        "{err}"
    );
    let _ = std::fs::remove_file(initrd);
}

/// `observer demo --vm` with the test's guest pieces; returns the child.
fn demo(g: &common::vm::Guest, extra: &[&str], stream: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(common::OBSERVER);
    c.args(["demo", "--vm", "--vm-kernel"])
        .arg(&g.kernel)
        .arg("--workload")
        .arg(&g.workload)
        .arg("--stream-file")
        .arg(stream)
        .args(extra)
        .stdin(std::process::Stdio::null());
    c
}

#[test]
fn the_demo_sets_a_container_and_a_vm_side_by_side() {
    let Some(image) = common::docker_image() else {
        return;
    };
    let Some(g) = common::vm::guest(None) else {
        return;
    };
    let stream = std::env::temp_dir().join(format!(
        "observer-test-vm-demo-{}.jsonl",
        std::process::id()
    ));
    // With --web: the room's page shows the VM beside the containers.
    let addr = common::free_addr();
    let mut child = demo(
        &g,
        &[
            "--image",
            &image,
            "--calls",
            "500",
            "--web",
            &addr.to_string(),
        ],
        &stream,
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::inherit())
    .spawn()
    .expect("start observer demo --vm");
    let pid = child.id();
    // A time box around the whole demo: kill it past 6 minutes.
    let guard = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(360));
        // SAFETY: kill(2) on the demo we started (a no-op once reaped and
        // the PID not reused within the test).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    while let Ok(l) = rx.recv() {
        let done = l.contains("The page stays live at");
        printed.push(l);
        if done {
            break;
        }
    }
    // The page renders once per interval: the VM's card follows within one.
    let deadline = Instant::now() + Duration::from_secs(15);
    let page = loop {
        let (status, body) = common::http_get(addr, "/api/state").unwrap_or_else(|| {
            panic!(
                "the page does not answer after the verdict:\n{}",
                printed.join("\n")
            )
        });
        assert_eq!(status, 200);
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        if page["vm"]["state"] != "booting" || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // SAFETY: kill(2) on the demo we started.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let st = common::wait_for(&mut child, Duration::from_secs(60), "the demo after Ctrl-C");
    drop(guard);
    printed.extend(rx.try_iter());
    let stdout = printed.join("\n");
    assert!(st.success(), "demo failed ({st}):\n{stdout}");
    let records = common::json_lines(&stream);
    let host = KernelInfo::read();
    // The page's VM card holds the VM's own kernel and the host's zero.
    let shown = &page["vm"];
    assert_eq!(shown["state"], "reported", "{page}");
    assert_eq!(shown["guest_reported"], 500, "{shown}");
    assert_eq!(shown["host_saw"], 0, "{shown}");
    assert_ne!(shown["boot_id"], host.boot_id.as_str(), "{shown}");
    let vm = records
        .iter()
        .find(|r| r["type"] == "vm")
        .unwrap_or_else(|| panic!("no vm record:\n{stdout}"));
    let contrast = records.iter().find(|r| r["type"] == "contrast").unwrap();
    let c = &contrast["container"];
    // The container's workload ran on this kernel; the VM's on its own.
    assert_eq!(c["boot_id"], host.boot_id.as_str());
    assert_eq!(c["release"], host.release.as_str());
    assert_ne!(vm["boot_id"], host.boot_id.as_str(), "{vm}");
    // Exactly N of the container's calls reached this kernel, none of the VM's.
    assert_eq!(c["guest_reported"], 500);
    assert_eq!(c["host_saw"], 500, "{c}");
    assert_eq!(vm["guest_reported"], 500);
    assert_eq!(vm["host_saw"], 0, "{vm}");
    // Only the VMM is what the host sees of the VM.
    let vmm = vm["vmm_pid"].as_u64().unwrap();
    assert!(
        vm["vmm_pids_seen"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| *p == vmm),
        "{vm}"
    );
    assert!(vm["vmm_syscalls"].as_u64().unwrap() > 0, "{vm}");
    assert!(vm["boot_ms"].as_f64().unwrap() > 0.0);
    assert!(vm["hwm_bytes"].as_u64().unwrap() > 0);
    assert_eq!(contrast["vm"], *vm);
    assert!(stdout.contains("side by side"), "{stdout}");
    assert!(stdout.contains("0 of 500 getppid"), "{stdout}");
    assert!(stdout.contains("500 of 500 getppid"), "{stdout}");
    eprintln!("{stdout}");
    let _ = std::fs::remove_file(&stream);
}

/// Host processes whose parent is `ppid` and whose name starts with `comm`.
fn children_named(ppid: u32, comm: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((name, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") "))
        else {
            continue;
        };
        let parent: Option<u32> = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if name.starts_with(comm) && parent == Some(ppid) {
            found.push(pid);
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

#[test]
fn no_qemu_remains_after_a_ctrl_c_in_the_middle_of_the_boot() {
    if !common::privileged() {
        return;
    }
    let Some(g) = common::vm::guest(None) else {
        return;
    };
    let stream =
        std::env::temp_dir().join(format!("observer-test-vm-int-{}.jsonl", std::process::id()));
    let mut child = demo(&g, &["--unshare", "--accel", "tcg"], &stream)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start observer demo --vm");
    let deadline = Instant::now() + Duration::from_secs(180);
    let qemu = loop {
        if let Some(q) = children_named(child.id(), "qemu-system").first() {
            break *q;
        }
        if let Some(s) = child.try_wait().unwrap() {
            panic!("the demo ended ({s}) before QEMU started");
        }
        assert!(Instant::now() < deadline, "no QEMU within 180 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    // In the middle of the boot: QEMU runs, the guest has not reported yet.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = common::wait_for(&mut child, Duration::from_secs(60), "demo after SIGINT");
    assert!(!status.success(), "an interrupted demo says so");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(qemu) {
        assert!(Instant::now() < deadline, "QEMU {qemu} outlived the demo");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&stream);
}

#[test]
fn a_bad_vm_kernel_is_one_clear_error() {
    let Some(g) = common::vm::guest(None) else {
        return;
    };
    let stream =
        std::env::temp_dir().join(format!("observer-test-vm-bad-{}.jsonl", std::process::id()));
    let mut c = std::process::Command::new(common::OBSERVER);
    c.args([
        "demo",
        "--unshare",
        "--vm",
        "--vm-kernel",
        "/etc/hostname",
        "--workload",
    ])
    .arg(&g.workload)
    .arg("--stream-file")
    .arg(&stream);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--vm-kernel") && err.contains("/etc/hostname"),
        "{err}"
    );
    assert!(
        err.contains("kernel image") || err.contains("too short"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}
