//! A real Prometheus for the metrics tests, started on loopback and
//! stopped (its data removed) on drop.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{fake_id, free_addr, http_get};

/// A Prometheus we start, stopped (and its data removed) on drop.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Scrapes `targets` every second; returns once it is ready.
    pub fn start(targets: &[SocketAddr]) -> Option<Self> {
        let bin = std::env::var("OBSERVER_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        if Command::new(&bin).arg("--version").output().is_err() {
            observer::privilege::skip_or_fail(
                "no prometheus binary (apt-get install prometheus; `cargo xtask test` does)",
            );
            return None;
        }
        let dir = std::env::temp_dir().join(format!("observer-prom-{}", fake_id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: observer\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let addr = free_addr();
        let child = Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(addr, "/-/ready").is_none_or(|(s, _)| s != 200) {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready in 60 s: {}",
                p.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(p)
    }

    /// An instant PromQL query: the result vector.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) =
            http_get(self.addr, &format!("/api/v1/query?query={q}")).expect("prometheus answers");
        assert_eq!(status, 200, "{promql}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
