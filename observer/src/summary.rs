//! The interval's summary as plain data: one entry per shown container (and
//! one for the host with `--host`), and the loss account. Built before
//! anything is rendered, so that every view (JSON lines, the table, and
//! whatever else subscribes) reads the same values.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use crate::{
    account::Interval,
    aggregate::{Group, Loss},
    attribute::Attributor,
    container::Container,
};

/// One interval's summary.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Unix ns when it was made.
    pub ts: i64,
    pub interval_s: f64,
    pub entries: Vec<Entry>,
    pub loss: Loss,
    /// Records that did not decode, since the start.
    pub decode_errors: u64,
}

/// One summary entry: a container's (or the host's) interval.
#[derive(Clone, Debug)]
pub struct Entry {
    /// None: the host (every cgroup outside containers, merged).
    pub container: Option<Arc<Container>>,
    /// The rendered `container` value (`null` for the host).
    pub json: Arc<str>,
    /// None for the host's merged entry.
    pub cgroup_id: Option<u64>,
    pub group: Group,
    /// On-CPU ns in the interval, per CPU.
    pub cpu: BTreeMap<u32, u64>,
    /// Limits, usage, enforcement, start and privilege (containers only).
    pub claims: Option<crate::claims::EntryClaims>,
}

/// The entries of an interval: shown cgroups only, sorted by cgroup ID, the
/// host's cgroups merged into one entry at the end (`--host`). In stream
/// mode a container with on-CPU time but no event yet is left out.
pub fn entries(iv: Interval, attr: &mut Attributor, host: bool, stream: bool) -> Vec<Entry> {
    let Interval { groups, oncpu } = iv;
    let mut entries = Vec::new();
    let mut host_group = Group::default();
    let mut host_cpu: BTreeMap<u32, u64> = BTreeMap::new();
    let mut host_cgroups = 0u64;
    let mut ids: Vec<u64> = groups
        .keys()
        .chain(oncpu.keys())
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    ids.sort_unstable();
    for cg in ids {
        let Some((container, json)) = attr.wanted(cg) else {
            continue;
        };
        let g = groups.get(&cg).cloned().unwrap_or_default();
        let cpu = oncpu.get(&cg).cloned().unwrap_or_default();
        if container.is_none() {
            host_cgroups += 1;
            merge(&mut host_group, &g);
            for (c, ns) in cpu {
                *host_cpu.entry(c).or_default() += ns;
            }
            continue;
        }
        if g.total == 0 && g.pids.is_empty() && stream && !attr.is_started(cg) {
            // CPU time only, from a container that made no event yet.
            continue;
        }
        entries.push(Entry {
            container,
            json,
            cgroup_id: Some(cg),
            group: g,
            cpu,
            claims: None,
        });
    }
    if host && host_cgroups > 0 {
        entries.push(Entry {
            container: None,
            json: Arc::from("null"),
            cgroup_id: None,
            group: host_group,
            cpu: host_cpu,
            claims: None,
        });
    }
    entries
}

fn merge(into: &mut Group, g: &Group) {
    for (nr, n) in &g.syscalls {
        *into.syscalls.entry(*nr).or_default() += n;
    }
    into.total += g.total;
    into.pids.extend(&g.pids);
    into.forks += g.forks;
    into.threads += g.threads;
    into.execs += g.execs;
    into.exits += g.exits;
    into.pidns = into.pidns.or(g.pidns);
    into.pidns_seen.extend(&g.pidns_seen);
    into.mntns = into.mntns.or(g.mntns);
    into.utsns = into.utsns.or(g.utsns);
    into.netns = into.netns.or(g.netns);
    if g.first_seen > 0 && (into.first_seen == 0 || g.first_seen < into.first_seen) {
        into.first_seen = g.first_seen;
    }
    into.last_seen = into.last_seen.max(g.last_seen);
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use observer_common::Header;

    use super::*;
    use crate::{aggregate::Activity, cli::Cli, container::Registry};

    /// Host cgroups merge into one entry at the end; containers come one
    /// entry each, by cgroup ID.
    #[test]
    fn one_entry_per_container_and_the_host_merged() {
        let args = Cli::parse_from(["observer", "--host"]).watch;
        let mut registry = Registry::new(None);
        registry.learn(
            42,
            "/docker/3f4e8c2a1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f",
        );
        registry.learn(7, "/user.slice");
        registry.learn(8, "/system.slice");
        let mut attr = Attributor::new(&args, registry);
        let mut acc = crate::account::Account::default();
        for (cg, pid) in [(42, 1), (7, 2), (8, 3), (8, 3)] {
            let h = Header {
                cgroup_id: cg,
                pid,
                ts: 5,
                ..Default::default()
            };
            acc.agg.add(&h, Activity::Syscall(0));
        }
        let iv = acc.interval(&Default::default(), false);
        let e = entries(iv, &mut attr, true, true);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].cgroup_id, Some(42));
        assert_eq!(e[0].group.total, 1);
        assert!(e[1].container.is_none() && e[1].cgroup_id.is_none());
        assert_eq!(e[1].group.total, 3);
        assert_eq!(e[1].group.pids.len(), 2);
    }
}
