//! Privileged: the observer's Prometheus metrics against real workloads,
//! scraped directly and by a real Prometheus (Debian's `prometheus`, started
//! here on loopback with its own config and data directory).

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{prometheus::Prometheus, *};
use serde_json::Value;

/// One sample's value: the series `name` whose labels include `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The sum of every `name` sample whose labels include `labels`.
fn sample_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `f` until it returns Some, up to `limit`.
fn until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_owned()
}

/// The summaries written so far: (the container's getppid, its total).
fn stream_counts(out: &std::path::Path, cgroup: u64) -> (u64, u64) {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut counts = (0, 0);
    // Only whole lines: the observer may be writing the last one.
    for l in text.lines().filter(|l| l.ends_with('}')) {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        if v["type"] != "summary" {
            continue;
        }
        for c in v["containers"].as_array().into_iter().flatten() {
            if c["cgroup_id"] == cgroup {
                counts.0 += c["syscalls"]["getppid"].as_u64().unwrap_or(0);
                counts.1 += c["total"].as_u64().unwrap_or(0);
            }
        }
    }
    counts
}

/// In both modes: a container's counters at /metrics are exactly the
/// workload's 1000 getppid calls, and every counter equals the JSON
/// stream's count over the same period; in count mode with one syscall
/// place (`top:1`), which the busiest syscall takes.
#[test]
fn metrics_count_exactly_what_the_stream_counts() {
    if !privileged() {
        return;
    }
    for mode in ["stream", "count"] {
        let id = fake_id();
        let cg = TestCgroup::new(&format!("/docker/{id}"));
        let addr = free_addr();
        // In count mode, one syscall place only: the busiest (getppid) must
        // take it from the syscalls of the workload's start, and the rest
        // still adds up exactly in `other`.
        let places = if mode == "count" { "top:1" } else { "top:32" };
        let obs = Observer::start(&[
            "--mode",
            mode,
            "--interval",
            "0.3",
            "--metrics",
            &addr.to_string(),
            "--node",
            "node-under-test",
            "--metrics-syscalls",
            places,
        ]);
        let cgroup = cg.path.to_string_lossy().into_owned();
        workload(&["--cgroup", &cgroup, "--unshare", "--calls", "1000"]);
        let labels = [("container_id", id.as_str()), ("node", "node-under-test")];
        let (getppid, total) = until(Duration::from_secs(20), "getppid at /metrics", || {
            let (status, text) = http_get(addr, "/metrics")?;
            assert_eq!(status, 200);
            let getppid = sample(
                &text,
                "observer_syscalls_total",
                &[
                    labels[0],
                    labels[1],
                    ("syscall", "getppid"),
                    ("runtime", "docker"),
                ],
            )?;
            let total = sample_sum(&text, "observer_syscalls_total", &labels);
            // The same period: the metrics and the summaries written so far.
            let stream = stream_counts(&obs.out, cg.id);
            (getppid == 1000.0 && (getppid as u64, total as u64) == stream)
                .then_some((getppid, total))
        });
        let (_, text) = http_get(addr, "/metrics").unwrap();
        assert_eq!(
            sample(
                &text,
                "observer_kernel_info",
                &[("node", "node-under-test"), ("boot_id", &boot_id())]
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "observer_container_info", &labels),
            Some(1.0),
            "{text}"
        );
        assert!(text.contains("# TYPE observer_events_lost_total counter"));
        if places == "top:1" {
            // getppid's series, `other`, and at most one frozen series (a
            // start-up syscall that held the place in an earlier interval).
            let series: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("observer_syscalls_total{") && l.contains(&id))
                .collect();
            assert!(
                series.len() <= 3 && series.iter().any(|l| l.contains("syscall=\"other\"")),
                "one place, one frozen, and other: {series:?}"
            );
        }
        let rec = obs.stop();
        assert_eq!(rec.summary_count(cg.id, "getppid"), 1000, "{mode}");
        let stream_total: u64 = rec
            .summary_entries(cg.id)
            .iter()
            .map(|e| e["total"].as_u64().unwrap())
            .sum();
        assert_eq!(
            (getppid as u64, total as u64),
            (1000, stream_total),
            "{mode}: metrics and stream agree"
        );
        eprintln!("{mode} ({places}): getppid 1000, container total {total} in both");
    }
}

/// A child process killed (and reaped) on drop, on every path.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus scrapes the observer in the fleet setting (count mode),
/// a PromQL query returns the workload's exact count, and `observer
/// cluster` shows the kernel with the container inside, from Prometheus.
#[test]
fn prometheus_scrapes_exact_counts() {
    if !privileged() {
        return;
    }
    let id = fake_id();
    let cg = TestCgroup::new(&format!("/docker/{id}"));
    let addr = free_addr();
    let obs = Observer::start(&[
        "--mode",
        "count",
        "--interval",
        "0.5",
        "--metrics",
        &addr.to_string(),
    ]);
    let Some(prom) = Prometheus::start(&[addr]) else {
        return;
    };
    let cgroup = cg.path.to_string_lossy().into_owned();
    workload(&["--cgroup", &cgroup, "--unshare", "--calls", "1000"]);
    let promql =
        format!("sum(observer_syscalls_total{{container_id=\"{id}\",syscall=\"getppid\"}})");
    let value = until(Duration::from_secs(30), "the count in Prometheus", || {
        let r = prom.query(&promql);
        let v = r.first()?["value"][1].as_str()?.to_owned();
        (v == "1000").then_some(v)
    });
    eprintln!("PromQL {promql} = {value}");
    let kernels = prom.query("count by (boot_id, release) (observer_kernel_info)");
    assert_eq!(kernels.len(), 1, "{kernels:?} {}", prom.stderr());
    assert_eq!(kernels[0]["metric"]["boot_id"], boot_id());
    let up = prom.query("up{job=\"observer\"}");
    assert_eq!(up[0]["value"][1], "1");

    // The cluster view, from Prometheus alone: this kernel's box holds the
    // container, with at least its 1000 getppid calls.
    let url = format!("http://{}", prom.addr);
    let out = Command::new(OBSERVER)
        .args(["cluster", "--prometheus", &url, "--format", "json"])
        .output()
        .expect("run observer cluster");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kernels = view["kernels"].as_array().unwrap();
    assert_eq!(kernels.len(), 1, "{view}");
    assert_eq!(kernels[0]["boot_id"], boot_id());
    let c = kernels[0]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["container_id"] == id.as_str())
        .unwrap_or_else(|| panic!("the container in its kernel's box: {view}"));
    assert!(c["syscalls_total"].as_f64().unwrap() >= 1000.0, "{c}");
    // And as a page.
    let web = free_addr();
    let page = Owned(
        Command::new(OBSERVER)
            .args(["cluster", "--prometheus", &url, "--web", &web.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .expect("start observer cluster --web"),
    );
    let html = until(Duration::from_secs(20), "the cluster page", || {
        http_get(web, "/").filter(|(s, _)| *s == 200).map(|r| r.1)
    });
    drop(page);
    assert_eq!(
        html.matches("<header class=\"kernel\">").count(),
        1,
        "one kernel box, in the room page's look: {html}"
    );
    assert!(html.contains(&format!("data-boot-id=\"{}\"", boot_id())));
    assert!(html.contains(&format!("data-container-id=\"{id}\"")));

    let rec = obs.stop();
    assert_eq!(rec.summary_count(cg.id, "getppid"), 1000);
}
