//! Two real kernels in one view: the host's, and a QEMU guest's with the
//! observer itself running inside the guest (static binary in the
//! initramfs, its metrics port forwarded to loopback by QEMU's user
//! network). One Prometheus scrapes both; PromQL and `observer cluster` must
//! show two boot IDs, each kernel with its own container, and none of the
//! guest's syscalls counted under the host's kernel.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use observer::vm::{
    initramfs::Entry,
    qemu::{Vm, VmSpec},
};
use serde_json::Value;

/// A child killed (and reaped) on drop, on every path.
struct Owned(Child, PathBuf);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(bin))
        .find(|f| f.is_file())
}

/// A TCG boot plus the observer loading under TCG: generous on a busy host.
const GUEST_READY: Duration = Duration::from_secs(300);

#[test]
fn two_kernels_side_by_side_in_prometheus_and_the_cluster_view() {
    if !privileged() {
        return;
    }
    let Some(g) = common::vm::guest(None) else {
        return;
    };
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        observer::privilege::skip_or_fail(
            "no static /bin/busybox (busybox-static) for the guest's script",
        );
        return;
    }
    let e1000 = common::vm::find_module(&g.modules, "e1000")
        .unwrap_or_else(|| panic!("e1000.ko in {}", g.modules.display()));

    // The guest: its own observer on its port 9464, then once that answers,
    // exactly 1000 getppid calls in a Docker-shaped cgroup of its own (a
    // shell joins the cgroup, then becomes the workload).
    let guest_id = fake_id();
    let script = format!(
        "mkdir -p /sys/fs/cgroup/docker/{guest_id}\n\
         /bin/observer --mode count --interval 0.5 --metrics 0.0.0.0:9464 --node guest-kernel --output /dev/null &\n\
         until /bin/busybox wget -q -O /dev/null http://127.0.0.1:9464/metrics; do /bin/busybox sleep 1; done\n\
         echo '{{\"type\":\"guest_observer_ready\"}}'\n\
         /bin/busybox sh -c 'echo $$ > /sys/fs/cgroup/docker/{guest_id}/cgroup.procs; exec /init --facts --calls 1000'\n\
         /bin/busybox sleep 600\n"
    );
    let initrd = common::vm::initramfs(
        "kernels",
        &g,
        &[
            Entry::file("/bin/observer", &g.observer, 0o755),
            Entry::file("/bin/busybox", busybox, 0o755),
            Entry::bytes("/fleet.sh", script.into_bytes(), 0o755),
            Entry::file("/lib/modules/e1000.ko", &e1000, 0o644),
        ],
    );
    let guest_metrics = free_addr();
    let mut spec = VmSpec::new(g.kernel.clone(), initrd.clone());
    spec.memory_mib = 1024;
    spec.hostfwd = vec![(guest_metrics.port(), 9464)];
    spec.append = "observer.facts=0 observer.insmod=/lib/modules/e1000.ko \
                   observer.ifup=eth0:10.0.2.15/24 \
                   observer.run=\"/bin/busybox sh /fleet.sh\" observer.timeout=900"
        .into();

    // The host: its observer, and its own container's 1000 getppid calls.
    let host_id = fake_id();
    let cg = TestCgroup::new(&format!("/docker/{host_id}"));
    let host_metrics = free_addr();
    let obs = Observer::start(&[
        "--mode",
        "count",
        "--interval",
        "0.5",
        "--metrics",
        &host_metrics.to_string(),
        "--node",
        "host-kernel",
    ]);
    let Some(prometheus) = prometheus::Prometheus::start(&[host_metrics, guest_metrics]) else {
        return;
    };
    let prom = prometheus.addr;

    common::vm::runtime().block_on(async {
        let t = Instant::now();
        let mut vm = Vm::start(&spec).await.expect("start QEMU");
        let facts = vm
            .wait_json("workload_facts", GUEST_READY)
            .await
            .unwrap_or_else(|e| panic!("the guest's workload: {e}\n{}", vm.console_tail()));
        eprintln!(
            "guest {} ran its workload after {:?} ({})",
            facts["release"],
            t.elapsed(),
            vm.accel.accel
        );
        assert_eq!(facts["calls"], 1000);
        let guest_boot = facts["boot_id"].as_str().unwrap().to_owned();

        let cgroup = cg.path.to_string_lossy().into_owned();
        workload(&["--cgroup", &cgroup, "--calls", "1000"]);
        let host_boot = observer::kernel_info::KernelInfo::read().boot_id;
        assert_ne!(host_boot, guest_boot);

        // Each kernel's container counted exactly, under its own node only.
        let by_node = |id: &str| {
            prometheus.query(
                &format!(
                    "sum by (node) (observer_syscalls_total{{container_id=\"{id}\",syscall=\"getppid\"}})"
                ),
            )
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (h, gst) = (by_node(&host_id), by_node(&guest_id));
            let one = |r: &[Value], node: &str| {
                r.len() == 1 && r[0]["metric"]["node"] == node && r[0]["value"][1] == "1000"
            };
            if one(&h, "host-kernel") && one(&gst, "guest-kernel") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "exact counts per kernel: host {h:?} guest {gst:?}\n{}",
                vm.console_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let kernels = prometheus.query("count by (boot_id, node, release) (observer_kernel_info)");
        let boots: std::collections::BTreeMap<String, String> = kernels
            .iter()
            .map(|k| {
                (
                    k["metric"]["node"].as_str().unwrap().to_owned(),
                    k["metric"]["boot_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(boots.len(), 2, "{kernels:?}");
        assert_eq!(boots["host-kernel"], host_boot);
        assert_eq!(boots["guest-kernel"], guest_boot);
        // None of the guest's syscalls under the host's kernel: the host's
        // observer has no series of the guest's container at all.
        let leaked = prometheus.query(
            &format!("observer_syscalls_total{{node=\"host-kernel\",container_id=\"{guest_id}\"}}"),
        );
        assert!(leaked.is_empty(), "{leaked:?}");

        // The cluster view from Prometheus: two boxes, each with its own.
        let out = Command::new(OBSERVER)
            .args(["cluster", "--prometheus", &format!("http://{prom}"), "--format", "json"])
            .output()
            .expect("run observer cluster");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let view: Value = serde_json::from_slice(&out.stdout).unwrap();
        let boxes = view["kernels"].as_array().unwrap();
        assert_eq!(boxes.len(), 2, "{view}");
        for (node, boot, mine, other) in [
            ("host-kernel", &host_boot, &host_id, &guest_id),
            ("guest-kernel", &guest_boot, &guest_id, &host_id),
        ] {
            let b = boxes.iter().find(|b| b["node"] == node).expect("a box per node");
            assert_eq!(b["boot_id"], boot.as_str());
            let ids: Vec<&str> = b["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["container_id"].as_str().unwrap())
                .collect();
            assert!(ids.contains(&mine.as_str()), "{node}: {ids:?}");
            assert!(!ids.contains(&other.as_str()), "{node}: {ids:?}");
        }
        let table = Command::new(OBSERVER)
            .args(["cluster", "--prometheus", &format!("http://{prom}")])
            .output()
            .unwrap();
        eprintln!("{}", String::from_utf8_lossy(&table.stdout));

        // The same view as a page, in the room page's look: a kernel box per
        // node, each holding only its own container's card; then as a real
        // browser renders it.
        let web = free_addr();
        let dir = std::env::temp_dir().join(format!("observer-cluster-web-{}", fake_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let page = Owned(
            Command::new(OBSERVER)
                .args(["cluster", "--prometheus", &format!("http://{prom}")])
                .args(["--web", &web.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run observer cluster --web"),
            dir.clone(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let html = loop {
            if let Some((200, body)) = http_get(web, "/") {
                break body;
            }
            assert!(Instant::now() < deadline, "observer cluster --web: no page in 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let boxes_ok = |html: &str| {
            for (node, boot, mine, other) in [
                ("host-kernel", &host_boot, &host_id, &guest_id),
                ("guest-kernel", &guest_boot, &guest_id, &host_id),
            ] {
                let section = html
                    .split("<section class=\"node\"")
                    .find(|s| s.contains(&format!("data-node=\"{node}\"")))
                    .unwrap_or_else(|| panic!("no box for {node}: {html}"));
                assert!(section.contains(&format!("data-boot-id=\"{boot}\"")), "{section}");
                assert!(section.contains(&format!("data-container-id=\"{mine}\"")), "{section}");
                assert!(!section.contains(other.as_str()), "{section}");
            }
            assert_eq!(html.matches("<header class=\"kernel\">").count(), 2, "{html}");
        };
        boxes_ok(&html);
        let css = http_get(web, "/style.css").expect("the room page's stylesheet");
        assert_eq!(css.0, 200);
        assert!(css.1.contains(".kernel"), "the room page's look");
        match which("chromium") {
            None => observer::privilege::skip_or_fail(
                "no chromium for the cluster page (`cargo xtask test` installs it)",
            ),
            Some(chromium) => {
                let dom = dir.join("dom.html");
                let mut b = Command::new(chromium)
                    .args([
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--virtual-time-budget=3000",
                    ])
                    .arg(format!("--user-data-dir={}", dir.join("profile").display()))
                    .arg("--dump-dom")
                    .arg(format!("http://{web}/"))
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(&dom).unwrap())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("run chromium");
                let status = wait_for(&mut b, Duration::from_secs(120), "chromium --dump-dom");
                assert!(status.success(), "chromium: {status}");
                boxes_ok(&std::fs::read_to_string(&dom).unwrap());
            }
        }
        drop(page);
        vm.kill().await;
    });
    drop(obs);
    let _ = std::fs::remove_file(initrd);
}
