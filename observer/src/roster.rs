//! The containers the room should see: every running one, busy or idle, and
//! the exited ones for a while after they exit, with how long they lived.
//! Pure bookkeeping fed by the pipeline's lifecycle events; the table and
//! the web page read it, the JSON stream does not need it.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::container::Container;

/// How long an exited container stays listed.
pub const EXITED_KEPT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Member {
    pub container: Arc<Container>,
    /// The rendered `container` value of the JSON stream.
    pub json: Arc<str>,
    /// Boot-time ns of its first event; 0 when it was only found running
    /// (started before the observer, and quiet since).
    pub first_ts: u64,
    pub exit: Option<Exit>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exit {
    /// Boot-time ns of the cgroup's removal.
    pub ts: u64,
    /// From its first event; unknown when it was never seen starting.
    pub lifetime_ms: Option<f64>,
    pub at: Instant,
}

/// Per cgroup, in cgroup-ID order.
#[derive(Debug, Default)]
pub struct Roster {
    members: BTreeMap<u64, Member>,
}

impl Roster {
    /// A container cgroup's first event (or found running when quiet).
    pub fn start(&mut self, cg: u64, container: &Arc<Container>, json: &Arc<str>, ts: u64) {
        let m = self.members.entry(cg).or_insert_with(|| Member {
            container: container.clone(),
            json: json.clone(),
            first_ts: ts,
            exit: None,
        });
        if m.first_ts == 0 {
            m.first_ts = ts;
        }
    }

    /// The cgroup is gone: the container exited. Returns its lifetime in ms
    /// (from its first event), when it is a member seen starting.
    pub fn exit(&mut self, cg: u64, ts: u64, now: Instant) -> Option<f64> {
        let m = self.members.get_mut(&cg)?;
        let lifetime_ms = (m.first_ts > 0).then(|| ts.saturating_sub(m.first_ts) as f64 / 1e6);
        m.exit
            .get_or_insert(Exit {
                ts,
                lifetime_ms,
                at: now,
            })
            .lifetime_ms
    }

    /// A name (and image) learnt after the start.
    pub fn rename(&mut self, cg: u64, container: &Arc<Container>, json: &Arc<str>) {
        if let Some(m) = self.members.get_mut(&cg) {
            if !Arc::ptr_eq(&m.json, json) {
                m.container = container.clone();
                m.json = json.clone();
            }
        }
    }

    /// Whether a running member is this container (by ID), in any cgroup.
    pub fn has_container(&self, id: &str) -> bool {
        self.members
            .values()
            .any(|m| m.exit.is_none() && m.container.id == id)
    }

    /// Forgets the exited members listed longer than `EXITED_KEPT`.
    pub fn expire(&mut self, now: Instant) {
        self.members.retain(|_, m| {
            m.exit
                .is_none_or(|e| now.duration_since(e.at) < EXITED_KEPT)
        });
    }

    pub fn get(&self, cg: u64) -> Option<&Member> {
        self.members.get(&cg)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &Member)> {
        self.members.iter().map(|(cg, m)| (*cg, m))
    }

    pub fn running(&self) -> usize {
        self.members.values().filter(|m| m.exit.is_none()).count()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str) -> Arc<Container> {
        Arc::new(Container {
            id: id.into(),
            name: Some(format!("name-{id}")),
            runtime: "docker",
            image: None,
            cgroup: format!("/docker/{id}"),
            pod_uid: None,
            kubernetes: None,
        })
    }

    #[test]
    fn keeps_exited_members_for_a_while_with_their_lifetime() {
        let mut r = Roster::default();
        let json: Arc<str> = Arc::from("{}");
        let t0 = Instant::now();
        r.start(7, &container("a"), &json, 1_000_000_000);
        r.start(8, &container("b"), &json, 0);
        r.start(7, &container("a"), &json, 5_000_000_000);
        assert_eq!(r.get(7).unwrap().first_ts, 1_000_000_000, "the first event");
        assert_eq!(r.exit(7, 1_212_000_000, t0), Some(212.0));
        assert_eq!(r.exit(9, 1, t0), None, "never seen: nothing to say");
        assert_eq!(r.exit(8, 1, t0), None, "found running: lifetime unknown");
        assert_eq!(r.running(), 0);
        r.members.get_mut(&8).unwrap().exit = None;
        assert_eq!(r.running(), 1);
        assert!(r.has_container("b") && !r.has_container("a"));
        r.expire(t0 + EXITED_KEPT / 2);
        assert_eq!(r.len(), 2, "kept for a while");
        r.expire(t0 + EXITED_KEPT);
        assert_eq!(r.len(), 1, "then forgotten");
        assert!(r.get(8).unwrap().exit.is_none(), "running ones stay");
    }
}
