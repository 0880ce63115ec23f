//! `--web`: a live page for the room, served by the observer itself.
//!
//! The pipeline owns a [`Feed`]: it renders the room's state once per
//! interval into a `watch` channel (every reader gets the latest value, a
//! slow one skips ahead). Lifecycle events come from the pipeline's taps, a
//! bounded `broadcast` (a reader that lags loses old ones, never the
//! pipeline's time). The HTTP server runs on its own thread and runtime, so
//! that the readers' work never competes with the ring-buffer reader's loop.

pub mod server;
pub mod state;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::Result;
use tokio::sync::{broadcast, watch};

pub use self::server::Server;
use self::state::{Active, Room, Sample};
use crate::{
    aggregate::Loss,
    attribute::Lifecycle,
    kernel_info::{HostNamespaces, KernelInfo},
    roster::Roster,
};

/// One interval's rendered state, shared by every reader.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The kernel object (with the uptime at render time).
    pub kernel: String,
    /// The `/api/state` document.
    pub state: String,
    /// Sparkline histories and ticker samples.
    pub live: String,
}

/// The reading side, for the server.
#[derive(Clone)]
pub struct Hub {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// The pipeline's lifecycle tap.
    pub lifecycle: broadcast::Sender<Lifecycle>,
    /// Boot-time ns -> Unix ns, for the lifecycle records' `ts`.
    pub clock: i64,
}

/// The writing side, owned by the pipeline.
pub struct Feed {
    room: Room,
    snapshot: watch::Sender<Arc<Snapshot>>,
}

impl Feed {
    /// The feed, and the readers' side of it with the pipeline's lifecycle
    /// tap (`Taps::lifecycle`).
    pub fn new(
        kernel: KernelInfo,
        host_ns: HostNamespaces,
        clock: i64,
        lifecycle: broadcast::Sender<Lifecycle>,
    ) -> (Feed, Hub) {
        let room = Room::new(kernel, host_ns, clock);
        let first = render(&room, &Roster::default());
        let (snapshot, rx) = watch::channel(Arc::new(first));
        let hub = Hub {
            snapshot: rx,
            lifecycle,
            clock,
        };
        (Feed { room, snapshot }, hub)
    }

    pub fn sample(&mut self, cg: u64, s: Sample) {
        self.room.sample(cg, s);
    }

    /// The end of an interval: render once for every reader.
    pub fn interval(
        &mut self,
        roster: &Roster,
        active: &[Active],
        loss: &Loss,
        decode_errors: u64,
        interval_s: f64,
    ) {
        self.room
            .interval(roster, active, loss, decode_errors, interval_s);
        let s = render(&self.room, roster);
        self.snapshot.send_replace(Arc::new(s));
    }
}

/// The demo's VM as the page shows it. The pipeline knows a VM only as its
/// VMM, one host process; the demo, which boots it, publishes what it knows
/// (booting, then its `vm` record), and each state rendered after carries it
/// as `"vm"`.
static VM: Mutex<Option<serde_json::Value>> = Mutex::new(None);

/// Publishes the demo's VM for the page (from the next rendered state on).
pub fn publish_vm(vm: serde_json::Value) {
    *VM.lock().unwrap_or_else(|e| e.into_inner()) = Some(vm);
}

fn render(room: &Room, roster: &Roster) -> Snapshot {
    let uptime = uptime_s();
    let mut r = room.render(roster, uptime);
    let vm = VM.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(vm) = vm {
        if let Ok(serde_json::Value::Object(mut state)) = serde_json::from_str(&r.state) {
            state.insert("vm".into(), vm);
            r.state = serde_json::Value::Object(state).to_string();
        }
    }
    Snapshot {
        kernel: room.kernel_json(uptime).to_string(),
        state: r.state,
        live: r.live,
    }
}

/// A lifecycle event as the JSON stream's `container` record.
pub fn lifecycle_json(l: &Lifecycle, clock: i64) -> String {
    let container =
        |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap_or_default();
    match l {
        Lifecycle::Start {
            ts,
            json,
            cgroup_id,
            ..
        } => serde_json::json!({
            "type": "container",
            "event": "start",
            "ts": clock.saturating_add_unsigned(*ts),
            "container": container(json),
            "cgroup_id": cgroup_id,
        }),
        Lifecycle::Exit {
            ts,
            json,
            cgroup_id,
            lifetime_ns,
            ..
        } => serde_json::json!({
            "type": "container",
            "event": "exit",
            "ts": clock.saturating_add_unsigned(*ts),
            "container": container(json),
            "cgroup_id": cgroup_id,
            "lifetime_ms": (*lifetime_ns as f64 / 1e3).round() / 1000.0,
        }),
    }
    .to_string()
}

/// Seconds since boot, from `/proc/uptime`.
fn uptime_s() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Starts the page's server on `addr` for the feed's readers; the one-line
/// warning when the address is reachable from other machines.
pub fn start(addr: SocketAddr, hub: Hub) -> Result<Server> {
    if !addr.ip().is_loopback() {
        eprintln!("warning: --web {addr} is reachable from the network: anyone who can connect sees process names, PIDs and syscalls of every container");
    }
    let server = Server::start(addr, hub)?;
    eprintln!("observer: the room's page is at http://{}/", server.addr);
    Ok(server)
}
