//! Who each thread is: the kernel sends a thread's identity (`KIND_TASK`:
//! both PID views, namespaces, comm, cgroup) once, and again only when it
//! changes; each syscall record then carries only its time, thread, cgroup
//! and number. This stage joins the two, so that every syscall line still
//! says who made the call, as it was when the call was made: the ring
//! delivers a thread's new identity before its next syscall.

use observer_common::Header;
use rustc_hash::FxHashMap;

#[derive(Default)]
pub struct Identities {
    by_tid: FxHashMap<u32, Header>,
    /// Syscall records whose thread had no identity (none should: a record
    /// goes out only after its identity did).
    pub misses: u64,
}

impl Identities {
    /// A thread's identity, from now on.
    pub fn learn(&mut self, h: Header) {
        self.by_tid.insert(h.tid, h);
    }

    /// A thread that has exited.
    pub fn forget(&mut self, tid: u32) {
        self.by_tid.remove(&tid);
    }

    /// Fills in who made a syscall: everything but the record's own kind,
    /// CPU, time and cgroup (the cgroup the kernel read with the call; the
    /// identity's is the same, or a new identity would have come first).
    /// False when the thread's identity never came.
    pub fn join(&mut self, h: &mut Header) -> bool {
        match self.by_tid.get(&h.tid) {
            Some(id) => {
                *h = Header {
                    kind: h.kind,
                    cpu: h.cpu,
                    ts: h.ts,
                    cgroup_id: h.cgroup_id,
                    ..*id
                };
                true
            }
            None => {
                self.misses += 1;
                false
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_tid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use observer_common::{KIND_SYSCALL, KIND_TASK};

    use super::*;

    fn identity(tid: u32, pidns: u32, comm: &[u8]) -> Header {
        let mut h = Header {
            kind: KIND_TASK,
            ts: 1,
            cgroup_id: 9,
            pid: 100,
            tid,
            ns_pid: 1,
            ns_tid: tid - 99,
            pidns,
            mntns: 2,
            utsns: 3,
            netns: 4,
            ..Header::default()
        };
        h.comm[..comm.len()].copy_from_slice(comm);
        h
    }

    fn syscall(tid: u32, ts: u64) -> Header {
        Header {
            kind: KIND_SYSCALL,
            cpu: 1,
            ts,
            cgroup_id: 9,
            tid,
            ..Header::default()
        }
    }

    #[test]
    fn each_syscall_gets_its_threads_latest_identity() {
        let mut ids = Identities::default();
        ids.learn(identity(100, 7, b"sh"));
        ids.learn(identity(101, 7, b"worker"));
        let mut a = syscall(100, 5);
        ids.join(&mut a);
        assert_eq!(
            (a.kind, a.cpu, a.ts, a.pid, a.pidns),
            (KIND_SYSCALL, 1, 5, 100, 7)
        );
        assert_eq!(&a.comm[..2], b"sh");
        let mut b = syscall(101, 6);
        ids.join(&mut b);
        assert_eq!((b.ns_tid, &b.comm[..6]), (2, &b"worker"[..]));
        // A new identity (a new comm, say) holds from its arrival on.
        ids.learn(identity(100, 7, b"renamed"));
        let mut c = syscall(100, 8);
        ids.join(&mut c);
        assert_eq!((&c.comm[..7], c.ts), (&b"renamed"[..], 8));
        ids.forget(100);
        let mut d = syscall(100, 9);
        ids.join(&mut d);
        assert_eq!((d.pid, ids.misses, ids.len()), (0, 1, 1));
    }
}
