//! The room's state: one card per container, built from the same interval
//! summaries and lifecycle events as the JSON stream, rendered once per
//! interval for every reader. Pure: tests drive it with synthetic intervals.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::{json, Value};

use crate::{
    aggregate::{named_counts, Group, Loss},
    kernel_info::{HostNamespaces, KernelInfo},
    roster::Roster,
};

/// PIDs shown per container, at most.
const MAX_PIDS: usize = 16;
/// Sampled recent syscalls kept per container, for the ticker.
pub const RECENT: usize = 6;
/// Top syscalls per container.
const TOP: usize = 5;
/// Seconds of rate history (the sparkline).
const HISTORY_S: f64 = 60.0;

/// One sampled syscall for the ticker.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sample {
    pub ts: i64,
    pub pid: u32,
    pub ns_pid: u32,
    pub comm: String,
    pub syscall: String,
}

/// A container cgroup's activity in the interval that just ended.
pub struct Active<'a> {
    pub cgroup_id: u64,
    pub group: &'a Group,
    pub cpu: &'a BTreeMap<u32, u64>,
}

#[derive(Debug, Default)]
struct Card {
    host_pids: Vec<u32>,
    inside_pids: Vec<u32>,
    ns: Option<[u32; 4]>,
    total: u64,
    per_s: f64,
    /// Cumulative per syscall name.
    counts: FxHashMap<String, u64>,
    /// Cumulative on-CPU ns per CPU.
    cpu: BTreeMap<u32, u64>,
    first_seen: u64,
    last_seen: u64,
    history: VecDeque<f64>,
    recent: VecDeque<Sample>,
}

/// What every reader gets: rendered once, shared by all.
#[derive(Debug, Default)]
pub struct Rendered {
    /// `/api/state`.
    pub state: String,
    /// The sparkline histories and ticker samples, per cgroup ID.
    pub live: String,
}

pub struct Room {
    kernel: KernelInfo,
    host_ns: HostNamespaces,
    /// Boot-time ns -> Unix ns.
    clock: i64,
    cards: BTreeMap<u64, Card>,
    loss: Loss,
    decode_errors: u64,
}

const NS_NAMES: [&str; 4] = ["pid", "mnt", "uts", "net"];

impl Room {
    pub fn new(kernel: KernelInfo, host_ns: HostNamespaces, clock: i64) -> Self {
        Room {
            kernel,
            host_ns,
            clock,
            cards: BTreeMap::new(),
            loss: Loss::default(),
            decode_errors: 0,
        }
    }

    /// The kernel, as the first event of every page's stream.
    pub fn kernel_json(&self, uptime_s: f64) -> Value {
        let k = &self.kernel;
        json!({
            "release": k.release,
            "version": k.version,
            "machine": k.machine,
            "boot_id": k.boot_id,
            "hostname": k.hostname,
            "host_namespaces": self.host_ns,
            "uptime_s": (uptime_s * 10.0).round() / 10.0,
        })
    }

    /// A sampled syscall of a container cgroup.
    pub fn sample(&mut self, cg: u64, s: Sample) {
        let r = &mut self.cards.entry(cg).or_default().recent;
        if r.len() == RECENT {
            r.pop_front();
        }
        r.push_back(s);
    }

    /// The end of an interval: the active cgroups' numbers are added, every
    /// roster member gets a point on its sparkline (0 when idle), and cards
    /// of members the roster forgot go.
    pub fn interval(
        &mut self,
        roster: &Roster,
        active: &[Active],
        loss: &Loss,
        decode_errors: u64,
        interval_s: f64,
    ) {
        let points = (HISTORY_S / interval_s).ceil().max(2.0) as usize;
        let mut rates: FxHashMap<u64, f64> = FxHashMap::default();
        for a in active {
            if roster.get(a.cgroup_id).is_none() {
                continue;
            }
            let c = self.cards.entry(a.cgroup_id).or_default();
            let g = a.group;
            c.total += g.total;
            for (name, n) in named_counts(g) {
                *c.counts.entry(name).or_default() += n;
            }
            for (cpu, ns) in a.cpu {
                *c.cpu.entry(*cpu).or_default() += ns;
            }
            if !g.pids.is_empty() {
                let pids: Vec<(u32, u32)> = g
                    .pids
                    .iter()
                    .rev()
                    .take(MAX_PIDS)
                    .rev()
                    .map(|p| (*p, g.ns_pids.get(p).copied().unwrap_or(0)))
                    .collect();
                c.host_pids = pids.iter().map(|p| p.0).collect();
                c.inside_pids = pids.iter().map(|p| p.1).collect();
            }
            if let (Some(p), Some(m), Some(u), Some(n)) = (g.pidns, g.mntns, g.utsns, g.netns) {
                c.ns = Some([p, m, u, n]);
            }
            if g.first_seen > 0 && (c.first_seen == 0 || g.first_seen < c.first_seen) {
                c.first_seen = g.first_seen;
            }
            c.last_seen = c.last_seen.max(g.last_seen);
            *rates.entry(a.cgroup_id).or_default() += g.total as f64 / interval_s;
        }
        self.cards.retain(|cg, _| roster.get(*cg).is_some());
        for (cg, m) in roster.iter() {
            let c = self.cards.entry(cg).or_default();
            let rate = rates.get(&cg).copied().unwrap_or(0.0);
            c.per_s = rate;
            // An exited container's line stops where it exited.
            if m.exit.is_none() || rate > 0.0 {
                if c.history.len() >= points {
                    c.history.pop_front();
                }
                c.history.push_back((rate * 10.0).round() / 10.0);
            }
        }
        self.loss = loss.clone();
        self.decode_errors = decode_errors;
    }

    fn unix(&self, boot_ns: u64) -> Option<i64> {
        (boot_ns > 0).then(|| self.clock.saturating_add_unsigned(boot_ns))
    }

    /// `/api/state` and the live extras, for the roster as it is now.
    pub fn render(&self, roster: &Roster, uptime_s: f64) -> Rendered {
        let host = [
            self.host_ns.pidns,
            self.host_ns.mntns,
            self.host_ns.utsns,
            self.host_ns.netns,
        ];
        let empty = Card::default();
        let mut containers = Vec::new();
        let mut history = serde_json::Map::new();
        let mut recent = serde_json::Map::new();
        for (cg, m) in roster.iter() {
            let c = self.cards.get(&cg).unwrap_or(&empty);
            let mut top: Vec<(&String, &u64)> = c.counts.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let top: Vec<Value> = top
                .into_iter()
                .take(TOP)
                .map(|(name, count)| json!({"name": name, "count": count}))
                .collect();
            let namespaces = c.ns.map(|ns| {
                NS_NAMES
                    .iter()
                    .zip(ns)
                    .map(|(k, v)| (k.to_string(), Value::from(v)))
                    .collect::<serde_json::Map<_, _>>()
            });
            let own: Vec<&str> =
                c.ns.map(|ns| {
                    NS_NAMES
                        .iter()
                        .zip(ns.iter().zip(host))
                        .filter(|(_, (a, b))| **a != *b)
                        .map(|(k, _)| *k)
                        .collect()
                })
                .unwrap_or_default();
            let first_ts = if c.first_seen > 0 {
                c.first_seen
            } else {
                m.first_ts
            };
            let last_ts = match m.exit {
                Some(e) => e.ts.max(c.last_seen),
                None => c.last_seen,
            };
            let cpu: BTreeMap<String, u64> =
                c.cpu.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            containers.push(json!({
                "container": serde_json::from_str::<Value>(&m.json).unwrap_or(Value::Null),
                "cgroup_id": cg,
                "state": if m.exit.is_some() { "exited" } else { "running" },
                "pids": {"host": c.host_pids, "inside": c.inside_pids},
                "namespaces": namespaces,
                "own_namespaces": own,
                "syscalls_total": c.total,
                "syscalls_per_s": (c.per_s * 10.0).round() / 10.0,
                "top_syscalls": top,
                "cpu_ns_by_cpu": cpu,
                "first_seen": self.unix(first_ts),
                "last_seen": self.unix(last_ts),
                "lifetime_ms": m.exit.and_then(|e| e.lifetime_ms).map(|ms| (ms * 1000.0).round() / 1000.0),
            }));
            history.insert(cg.to_string(), json!(c.history));
            recent.insert(cg.to_string(), json!(c.recent));
        }
        let mut loss = serde_json::to_value(&self.loss).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut loss {
            o.insert("decode_errors".into(), self.decode_errors.into());
        }
        let state = json!({
            "kernel": self.kernel_json(uptime_s),
            "containers": containers,
            "loss": loss,
        });
        let live = json!({"history": history, "recent": recent});
        Rendered {
            state: state.to_string(),
            live: live.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Instant};

    use super::*;
    use crate::container::Container;

    fn member(r: &mut Roster, cg: u64, name: &str, ts: u64) {
        let c = Arc::new(Container {
            id: format!("{name}-id"),
            name: Some(name.into()),
            runtime: "docker",
            image: Some("busybox".into()),
            cgroup: format!("/docker/{name}"),
            pod_uid: None,
            kubernetes: None,
        });
        let json: Arc<str> = Arc::from(serde_json::to_string(c.as_ref()).unwrap());
        r.start(cg, &c, &json, ts);
    }

    fn kernel() -> KernelInfo {
        KernelInfo {
            release: "6.18.0".into(),
            version: "#1 SMP".into(),
            machine: "x86_64".into(),
            boot_id: "b007".into(),
            hostname: "host".into(),
        }
    }

    #[test]
    fn cards_for_busy_idle_and_exited_containers() {
        let host = HostNamespaces {
            pidns: 1,
            mntns: 2,
            utsns: 3,
            netns: 4,
        };
        let mut room = Room::new(kernel(), host, 1_000);
        let mut roster = Roster::default();
        member(&mut roster, 10, "busy", 5_000_000);
        member(&mut roster, 11, "idle", 0);
        member(&mut roster, 12, "brief", 7_000_000);
        let mut g = Group::default();
        g.syscalls.insert(110, 1000);
        g.syscalls.insert(0, 5);
        g.total = 1005;
        g.pids.insert(4242);
        g.ns_pids.insert(4242, 1);
        (g.pidns, g.mntns, g.utsns, g.netns) = (Some(9), Some(2), Some(8), Some(4));
        g.first_seen = 5_000_000;
        g.last_seen = 6_000_000;
        let cpu = BTreeMap::from([(1u32, 300u64)]);
        let mut brief = Group::default();
        brief.syscalls.insert(110, 7);
        brief.total = 7;
        brief.first_seen = 7_000_000;
        brief.last_seen = 7_100_000;
        // Starts and exits between two updates: still shown, as exited.
        roster.exit(12, 7_212_000, Instant::now());
        let active = [
            Active {
                cgroup_id: 10,
                group: &g,
                cpu: &cpu,
            },
            Active {
                cgroup_id: 12,
                group: &brief,
                cpu: &BTreeMap::new(),
            },
        ];
        room.sample(
            10,
            Sample {
                ts: 1,
                pid: 4242,
                ns_pid: 1,
                comm: "sh".into(),
                syscall: "getppid".into(),
            },
        );
        room.interval(&roster, &active, &Loss::default(), 0, 0.5);
        room.interval(&roster, &active, &Loss::default(), 0, 0.5);
        let r = room.render(&roster, 12.34);
        let v: Value = serde_json::from_str(&r.state).unwrap();
        assert_eq!(v["kernel"]["release"], "6.18.0");
        assert_eq!(v["kernel"]["uptime_s"], 12.3);
        let cs = v["containers"].as_array().unwrap();
        assert_eq!(cs.len(), 3);
        let busy = &cs[0];
        assert_eq!(busy["container"]["name"], "busy");
        assert_eq!(busy["state"], "running");
        assert_eq!(busy["syscalls_total"], 2010, "cumulative");
        assert_eq!(busy["syscalls_per_s"], 2010.0);
        assert_eq!(busy["top_syscalls"][0]["name"], "getppid");
        assert_eq!(busy["top_syscalls"][0]["count"], 2000);
        assert_eq!(busy["pids"]["host"], json!([4242]));
        assert_eq!(busy["pids"]["inside"], json!([1]));
        assert_eq!(busy["own_namespaces"], json!(["pid", "uts"]));
        assert_eq!(busy["cpu_ns_by_cpu"]["1"], 600);
        assert_eq!(busy["first_seen"], 5_001_000);
        assert!(busy["lifetime_ms"].is_null());
        let idle = &cs[1];
        assert_eq!(
            (idle["state"].as_str(), idle["syscalls_per_s"].as_f64()),
            (Some("running"), Some(0.0))
        );
        assert!(
            idle["first_seen"].is_null(),
            "found running, never seen starting"
        );
        let brief = &cs[2];
        assert_eq!(brief["state"], "exited");
        assert_eq!(brief["lifetime_ms"], 0.212);
        assert_eq!(brief["syscalls_total"], 14);
        let keys: Vec<&String> = busy.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 13, "exactly the documented fields: {keys:?}");
        let live: Value = serde_json::from_str(&r.live).unwrap();
        assert_eq!(live["history"]["10"], json!([2010.0, 2010.0]));
        assert_eq!(live["history"]["11"], json!([0.0, 0.0]));
        assert_eq!(live["recent"]["10"][0]["syscall"], "getppid");
    }
}
