//! Prometheus metrics: the summaries' counts as counters, per node, kernel
//! and container, for a fleet's Prometheus to scrape.
//!
//! The counters are fed from the same per-interval summaries as the JSON
//! stream, so a container's counter equals the sum of its summary counts
//! over the same period. Cardinality is bounded: a container's syscall
//! label values are capped to its busiest (`--metrics-syscalls`, see
//! [`top`]), and the series of a container gone for longer than the
//! retention are dropped.

pub mod server;
pub mod top;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{atomic::AtomicU64, Arc},
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    aggregate::{named_counts, Group},
    container::Container,
    kernel_info::KernelInfo,
};

/// Where `--metrics` listens when given no address: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// The label value that sums the syscalls beyond the per-container cap.
pub const OTHER: &str = "other";

/// `--metrics-syscalls`: how many syscall label values a container gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallLimit {
    All,
    Top(usize),
}

impl SyscallLimit {
    /// The number of syscalls with their own series (`None`: all).
    pub fn cap(self) -> Option<usize> {
        match self {
            SyscallLimit::All => None,
            SyscallLimit::Top(n) => Some(n),
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(SyscallLimit::All);
        }
        s.strip_prefix("top:")
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .map(SyscallLimit::Top)
            .ok_or_else(|| format!("`{s}`: expected `all` or `top:N` with N > 0"))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KernelLabels {
    node: String,
    release: String,
    version: String,
    boot_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyscallLabels {
    node: String,
    container: String,
    container_id: String,
    runtime: String,
    pod: String,
    namespace: String,
    syscall: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CpuLabels {
    node: String,
    container: String,
    container_id: String,
    cpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    node: String,
    container: String,
    container_id: String,
    runtime: String,
    image: String,
    pidns: String,
    mntns: String,
    utsns: String,
    netns: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    node: String,
    container: String,
    container_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LossLabels {
    node: String,
    cpu: String,
}

/// The identity labels of one container (or of the host, all empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The name, else the short ID; empty for the host.
    pub container: String,
    pub container_id: String,
    pub runtime: String,
    pub image: String,
    pub pod: String,
    pub namespace: String,
}

impl Identity {
    pub fn of(c: Option<&Container>) -> Self {
        let Some(c) = c else {
            return Identity::default();
        };
        let name = c.name.clone().unwrap_or_else(|| {
            if c.id.is_empty() {
                format!("pod:{}", c.pod_uid.as_deref().unwrap_or_default())
            } else {
                c.id.chars().take(12).collect()
            }
        });
        let (pod, namespace) = c
            .name
            .as_deref()
            .and_then(kubelet_docker_name)
            .unwrap_or_default();
        // Named through containerd's CRI labels: the container's own name in
        // its pod, beside the pod and its namespace.
        if let Some(k) = &c.kubernetes {
            return Identity {
                container: k.container.clone().unwrap_or(name),
                container_id: c.id.clone(),
                runtime: c.runtime.to_owned(),
                image: c.image.clone().unwrap_or_default(),
                pod: k.pod.clone(),
                namespace: k.namespace.clone().unwrap_or_default(),
            };
        }
        Identity {
            container: name,
            container_id: c.id.clone(),
            runtime: c.runtime.to_owned(),
            image: c.image.clone().unwrap_or_default(),
            pod,
            namespace,
        }
    }

    /// The key of a container's series: its ID (a pod-level cgroup: the
    /// pod), empty for the host.
    fn key(&self) -> String {
        if self.container_id.is_empty() {
            self.container.clone()
        } else {
            self.container_id.clone()
        }
    }
}

/// The pod and namespace in the name the kubelet gives Docker containers:
/// `k8s_<container>_<pod>_<namespace>_<pod uid>_<attempt>`.
pub fn kubelet_docker_name(name: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = name.strip_prefix("k8s_")?.split('_').collect();
    (parts.len() == 5).then(|| (parts[1].to_owned(), parts[2].to_owned()))
}

/// One container's (or the host's) interval, as the summary has it.
pub struct IntervalEntry<'a> {
    pub container: Option<&'a Container>,
    pub group: &'a Group,
    /// On-CPU ns in the interval, per CPU.
    pub cpu: &'a BTreeMap<u32, u64>,
}

/// What a container has in the metrics, to update and drop its series.
#[derive(Debug)]
struct Tracked {
    id: Identity,
    /// Which syscalls have their own series (at most the limit, plus
    /// `other`).
    syscalls: top::TopSet,
    cpus: BTreeSet<u32>,
    info: Option<InfoLabels>,
    gone: Option<Instant>,
}

pub struct Metrics {
    node: String,
    limit: SyscallLimit,
    retention: Duration,
    registry: Arc<Registry>,
    syscalls: Family<SyscallLabels, Counter>,
    cpu: Family<CpuLabels, Counter<f64, AtomicU64>>,
    info: Family<InfoLabels, Gauge>,
    processes: Family<ContainerLabels, Gauge>,
    lost: Family<LossLabels, Counter>,
    tracked: HashMap<String, Tracked>,
}

impl Metrics {
    pub fn new(
        node: String,
        kernel: &KernelInfo,
        limit: SyscallLimit,
        retention: Duration,
        ncpus: usize,
    ) -> Self {
        let mut registry = Registry::default();
        let kernel_info = Family::<KernelLabels, Gauge>::default();
        kernel_info
            .get_or_create(&KernelLabels {
                node: node.clone(),
                release: kernel.release.clone(),
                version: kernel.version.clone(),
                boot_id: kernel.boot_id.clone(),
            })
            .set(1);
        registry.register(
            "observer_kernel_info",
            "The kernel this observer's containers share (value 1)",
            kernel_info,
        );
        let syscalls = Family::<SyscallLabels, Counter>::default();
        registry.register(
            "observer_syscalls",
            "Syscalls entered, per container and syscall",
            syscalls.clone(),
        );
        let cpu = Family::<CpuLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "observer_container_cpu_seconds",
            "Time on CPU, per container and CPU",
            cpu.clone(),
        );
        let info = Family::<InfoLabels, Gauge>::default();
        registry.register(
            "observer_container_info",
            "A container's runtime, image and namespaces (value 1)",
            info.clone(),
        );
        let processes = Family::<ContainerLabels, Gauge>::default();
        registry.register(
            "observer_container_processes",
            "Processes seen in the container in the last interval",
            processes.clone(),
        );
        let lost = Family::<LossLabels, Counter>::default();
        for c in 0..ncpus {
            // Every CPU's series from the start: no loss reads as 0.
            lost.get_or_create(&LossLabels {
                node: node.clone(),
                cpu: c.to_string(),
            })
            .inc_by(0);
        }
        registry.register(
            "observer_events_lost",
            "Records lost to a full ring buffer, per CPU",
            lost.clone(),
        );
        Metrics {
            node,
            limit,
            retention,
            registry: Arc::new(registry),
            syscalls,
            cpu,
            info,
            processes,
            lost,
            tracked: HashMap::new(),
        }
    }

    /// The registry the endpoint encodes on each scrape.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Adds one summary interval.
    pub fn interval(
        &mut self,
        entries: &[IntervalEntry<'_>],
        lost_by_cpu: &BTreeMap<u32, u64>,
        now: Instant,
    ) {
        for e in entries {
            self.entry(e, now);
        }
        for (cpu, n) in lost_by_cpu {
            self.lost
                .get_or_create(&LossLabels {
                    node: self.node.clone(),
                    cpu: cpu.to_string(),
                })
                .inc_by(*n);
        }
        self.expire(now);
    }

    fn entry(&mut self, e: &IntervalEntry<'_>, now: Instant) {
        let id = Identity::of(e.container);
        let key = id.key();
        let t = self.tracked.entry(key).or_insert_with(|| Tracked {
            id: id.clone(),
            syscalls: top::TopSet::new(self.limit.cap()),
            cpus: BTreeSet::new(),
            info: None,
            gone: None,
        });
        // A name or image learnt later keeps the first identity: counters
        // never move to other label values.
        let id = t.id.clone();
        let labels = |syscall: &str| SyscallLabels {
            node: self.node.clone(),
            container: id.container.clone(),
            container_id: id.container_id.clone(),
            runtime: id.runtime.clone(),
            pod: id.pod.clone(),
            namespace: id.namespace.clone(),
            syscall: syscall.to_owned(),
        };
        for step in t.syscalls.interval(&named_counts(e.group), now) {
            match step {
                top::Step::Add(s, n) => {
                    self.syscalls.get_or_create(&labels(&s)).inc_by(n);
                }
                // A series shown again resumes from its last value: never
                // lower, so Prometheus sees no reset.
                top::Step::Show(s, v) => {
                    self.syscalls.get_or_create(&labels(&s)).inc_by(v);
                }
                top::Step::Hide(s) => {
                    self.syscalls.remove(&labels(&s));
                }
            }
        }
        for (cpu, ns) in e.cpu {
            self.cpu
                .get_or_create(&CpuLabels {
                    node: self.node.clone(),
                    container: id.container.clone(),
                    container_id: id.container_id.clone(),
                    cpu: cpu.to_string(),
                })
                .inc_by(*ns as f64 / 1e9);
            t.cpus.insert(*cpu);
        }
        let ns = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
        let g = e.group;
        let info = InfoLabels {
            node: self.node.clone(),
            container: id.container.clone(),
            container_id: id.container_id.clone(),
            runtime: id.runtime.clone(),
            image: id.image.clone(),
            pidns: ns(g.pidns),
            mntns: ns(g.mntns),
            utsns: ns(g.utsns),
            netns: ns(g.netns),
        };
        // Namespaces seen in this interval (count mode sees only the PID
        // namespace); the last known ones stay otherwise.
        let info = match &t.info {
            Some(old) if g.pidns.is_none() && g.mntns.is_none() => old.clone(),
            Some(old) if g.mntns.is_none() => InfoLabels {
                mntns: old.mntns.clone(),
                utsns: old.utsns.clone(),
                netns: old.netns.clone(),
                ..info
            },
            _ => info,
        };
        if t.info.as_ref() != Some(&info) {
            if let Some(old) = t.info.replace(info.clone()) {
                self.info.remove(&old);
            }
            self.info.get_or_create(&info).set(1);
        }
        self.processes
            .get_or_create(&ContainerLabels {
                node: self.node.clone(),
                container: id.container,
                container_id: id.container_id,
            })
            .set(g.pids.len() as i64);
    }

    /// A container (re)started: a restarted one keeps its series.
    pub fn container_started(&mut self, c: &Container) {
        if let Some(t) = self.tracked.get_mut(&Identity::of(Some(c)).key()) {
            t.gone = None;
        }
    }

    /// A container's last cgroup is gone: its series stay for the retention.
    pub fn container_gone(&mut self, c: &Container, now: Instant) {
        if let Some(t) = self.tracked.get_mut(&Identity::of(Some(c)).key()) {
            t.gone.get_or_insert(now);
        }
    }

    /// Drops the series of containers gone for longer than the retention.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, t)| {
                t.gone
                    .is_some_and(|g| now.duration_since(g) >= self.retention)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            let t = self.tracked.remove(&k).expect("listed above");
            let id = &t.id;
            for s in t.syscalls.shown() {
                self.syscalls.remove(&SyscallLabels {
                    node: self.node.clone(),
                    container: id.container.clone(),
                    container_id: id.container_id.clone(),
                    runtime: id.runtime.clone(),
                    pod: id.pod.clone(),
                    namespace: id.namespace.clone(),
                    syscall: s.to_owned(),
                });
            }
            for cpu in &t.cpus {
                self.cpu.remove(&CpuLabels {
                    node: self.node.clone(),
                    container: id.container.clone(),
                    container_id: id.container_id.clone(),
                    cpu: cpu.to_string(),
                });
            }
            if let Some(info) = &t.info {
                self.info.remove(info);
            }
            self.processes.remove(&ContainerLabels {
                node: self.node.clone(),
                container: id.container.clone(),
                container_id: id.container_id.clone(),
            });
        }
    }

    /// The text exposition format, as served at `/metrics`.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

/// Prometheus' text exposition format (0.0.4) of a registry.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// The node name: `--node`, else `$NODE_NAME` (the DaemonSet sets it from
/// the downward API), else the hostname.
pub fn node_name(flag: Option<&str>, env: Option<String>, hostname: &str) -> String {
    flag.map(str::to_owned)
        .or(env.filter(|s| !s.is_empty()))
        .unwrap_or_else(|| hostname.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> KernelInfo {
        KernelInfo {
            release: "6.18.0".into(),
            version: "#1 SMP".into(),
            machine: "x86_64".into(),
            boot_id: "b00t".into(),
            hostname: "h".into(),
        }
    }

    fn container(id: &str, name: Option<&str>) -> Container {
        Container {
            id: id.into(),
            name: name.map(str::to_owned),
            runtime: "docker",
            image: Some("busybox".into()),
            cgroup: format!("/docker/{id}"),
            pod_uid: None,
            kubernetes: None,
        }
    }

    fn group(calls: &[(i64, u64)]) -> Group {
        let mut g = Group::default();
        for &(nr, n) in calls {
            g.syscalls.insert(nr, n);
            g.total += n;
        }
        g.pids.insert(42);
        g.pidns = Some(4026532000);
        g
    }

    /// The value of the one line that has every `needle`.
    fn value(text: &str, needles: &[&str]) -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    }

    #[test]
    fn counters_add_up_the_intervals_with_the_documented_names() {
        let mut m = Metrics::new(
            "n1".into(),
            &kernel(),
            SyscallLimit::Top(32),
            Duration::from_secs(300),
            2,
        );
        let c = container("abcdef0123456789", Some("web"));
        let getppid = crate::syscalls::number("getppid").unwrap() as i64;
        let cpu = BTreeMap::from([(1, 1_500_000_000)]);
        let now = Instant::now();
        for _ in 0..3 {
            let g = group(&[(getppid, 1000)]);
            let e = IntervalEntry {
                container: Some(&c),
                group: &g,
                cpu: &cpu,
            };
            m.interval(&[e], &BTreeMap::from([(0, 2)]), now);
        }
        let t = m.encode();
        assert_eq!(
            value(
                &t,
                &["observer_kernel_info{", "node=\"n1\"", "boot_id=\"b00t\""]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &t,
                &[
                    "observer_syscalls_total{",
                    "container=\"web\"",
                    "container_id=\"abcdef0123456789\"",
                    "runtime=\"docker\"",
                    "pod=\"\"",
                    "syscall=\"getppid\""
                ]
            ),
            Some(3000.0)
        );
        assert_eq!(
            value(&t, &["observer_container_cpu_seconds_total{", "cpu=\"1\""]),
            Some(4.5)
        );
        assert_eq!(
            value(
                &t,
                &[
                    "observer_container_info{",
                    "image=\"busybox\"",
                    "pidns=\"4026532000\""
                ]
            ),
            Some(1.0)
        );
        assert_eq!(value(&t, &["observer_container_processes{"]), Some(1.0));
        assert_eq!(
            value(&t, &["observer_events_lost_total{", "cpu=\"0\""]),
            Some(6.0)
        );
        assert_eq!(
            value(&t, &["observer_events_lost_total{", "cpu=\"1\""]),
            Some(0.0)
        );
        assert!(t.contains("# TYPE observer_syscalls_total counter"));
    }

    #[test]
    fn syscall_labels_are_capped_and_the_rest_is_other() {
        let mut m = Metrics::new(
            "n".into(),
            &kernel(),
            SyscallLimit::Top(2),
            Duration::from_secs(300),
            1,
        );
        let c = container("c1", None);
        let none = BTreeMap::new();
        let now = Instant::now();
        // read (0) most, then write (1), then getppid (110), getpid (39).
        let g = group(&[(0, 50), (1, 40), (110, 5), (39, 1)]);
        m.interval(
            &[IntervalEntry {
                container: Some(&c),
                group: &g,
                cpu: &none,
            }],
            &none,
            now,
        );
        // Later, getppid is the busiest: it takes the place of write (the
        // slower member), whose series stays, frozen at 40; getppid's 5
        // earlier calls stay in `other`.
        let g = group(&[(110, 100), (0, 1)]);
        m.interval(
            &[IntervalEntry {
                container: Some(&c),
                group: &g,
                cpu: &none,
            }],
            &none,
            now,
        );
        let t = m.encode();
        let series: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("observer_syscalls_total{"))
            .collect();
        assert_eq!(series.len(), 4, "{t}");
        assert_eq!(value(&t, &["syscall=\"read\""]), Some(51.0));
        assert_eq!(value(&t, &["syscall=\"getppid\""]), Some(100.0));
        assert_eq!(value(&t, &["syscall=\"other\""]), Some(6.0));
        assert_eq!(value(&t, &["syscall=\"write\""]), Some(40.0));
        // write busiest again: it counts on from 40; read leaves the set,
        // frozen at 51.
        let g = group(&[(1, 1000)]);
        m.interval(
            &[IntervalEntry {
                container: Some(&c),
                group: &g,
                cpu: &none,
            }],
            &none,
            now,
        );
        let t = m.encode();
        assert_eq!(value(&t, &["syscall=\"write\""]), Some(1040.0));
        assert_eq!(value(&t, &["syscall=\"read\""]), Some(51.0));
        assert_eq!(value(&t, &["syscall=\"getppid\""]), Some(100.0));
        assert_eq!(value(&t, &["syscall=\"other\""]), Some(6.0));
        assert!(t.contains("container=\"c1\""), "the short ID when unnamed");
    }

    #[test]
    fn gone_containers_are_dropped_after_the_retention() {
        let mut m = Metrics::new(
            "n".into(),
            &kernel(),
            SyscallLimit::All,
            Duration::from_secs(300),
            1,
        );
        let (a, b) = (container("aaaa", None), container("bbbb", None));
        let g = group(&[(110, 1)]);
        let cpu = BTreeMap::from([(0, 10)]);
        let none = BTreeMap::new();
        let t0 = Instant::now();
        let entries = [
            IntervalEntry {
                container: Some(&a),
                group: &g,
                cpu: &cpu,
            },
            IntervalEntry {
                container: None,
                group: &g,
                cpu: &cpu,
            },
        ];
        m.interval(&entries, &none, t0);
        m.interval(
            &[IntervalEntry {
                container: Some(&b),
                group: &g,
                cpu: &cpu,
            }],
            &none,
            t0,
        );
        m.container_gone(&a, t0);
        m.interval(&[], &none, t0 + Duration::from_secs(299));
        assert!(
            m.encode().contains("container_id=\"aaaa\""),
            "kept within the retention"
        );
        m.interval(&[], &none, t0 + Duration::from_secs(300));
        let t = m.encode();
        assert!(!t.contains("aaaa"), "every series of a dropped: {t}");
        assert!(t.contains("container_id=\"bbbb\""), "b still there");
        assert_eq!(
            value(
                &t,
                &[
                    "observer_syscalls_total{",
                    "container=\"\"",
                    "container_id=\"\""
                ]
            ),
            Some(1.0),
            "the host is one set with empty container labels"
        );
    }

    #[test]
    fn parses_limits_node_names_and_kubelet_names() {
        assert_eq!(SyscallLimit::parse("all"), Ok(SyscallLimit::All));
        assert_eq!(SyscallLimit::parse("top:32"), Ok(SyscallLimit::Top(32)));
        assert!(SyscallLimit::parse("top:0").is_err());
        assert!(SyscallLimit::parse("32").is_err());
        assert_eq!(node_name(Some("a"), Some("b".into()), "h"), "a");
        assert_eq!(node_name(None, Some("b".into()), "h"), "b");
        assert_eq!(node_name(None, Some(String::new()), "h"), "h");
        assert_eq!(
            kubelet_docker_name("k8s_nginx_web-7d9f_default_0f1e2d3c-aaaa_0"),
            Some(("web-7d9f".into(), "default".into()))
        );
        assert_eq!(
            kubelet_docker_name("k8s_POD_web_default_uid_0").map(|p| p.1),
            Some("default".into())
        );
        assert_eq!(kubelet_docker_name("web"), None);
    }

    #[test]
    fn a_pod_named_through_containerd_is_labelled_by_pod_namespace_and_container() {
        let mut c = container(&"ab".repeat(32), Some("web-0"));
        c.runtime = "kubernetes";
        c.kubernetes = Some(crate::container::Kubernetes {
            pod: "web-0".into(),
            namespace: Some("shop".into()),
            container: Some("nginx".into()),
        });
        let id = Identity::of(Some(&c));
        assert_eq!(id.container, "nginx");
        assert_eq!(id.pod, "web-0");
        assert_eq!(id.namespace, "shop");
        assert_eq!(id.runtime, "kubernetes");
    }
}
