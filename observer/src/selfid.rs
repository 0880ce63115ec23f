//! Who the observer is in the kernel's eyes: the programs skip the daemon's
//! own syscalls by its host tgid (`task->tgid`), which is what `getpid()`
//! returns only in the host's PID namespace. Inside a container's PID
//! namespace `getpid()` is a namespace PID (often 1), which would filter out
//! some unrelated host process and leave the observer watching itself, and
//! its own namespaces would be reported as the host's: refuse there, saying
//! how to run it instead.

use anyhow::{bail, Result};

use crate::kernel_info::ns_inode;

/// `init_pid_ns.ns.inum`, fixed for the host's PID namespace on every kernel
/// (`PROC_PID_INIT_INO`,
/// <https://elixir.bootlin.com/linux/v6.1/source/include/linux/proc_ns.h#L47>).
pub const HOST_PIDNS_INODE: u32 = 0xEFFF_FFFC;

/// Pure: the host tgid to filter, from our PID namespace and `getpid()`.
pub fn host_tgid_in(pidns: Option<u32>, pid: u32) -> Result<u32> {
    match pidns {
        Some(HOST_PIDNS_INODE) | None => Ok(pid),
        Some(ns) => bail!(
            "the observer runs in a PID namespace other than the host's (pid:[{ns}]), where it can't tell its own host PID nor the host's namespaces: run it in the host's PID namespace (docker run --pid=host, podman run --pid=host, Kubernetes hostPID: true)"
        ),
    }
}

/// The tgid the kernel programs know the observer by.
pub fn host_tgid() -> Result<u32> {
    host_tgid_in(ns_inode("self", "pid"), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_pid_namespace_gives_getpid() {
        assert_eq!(host_tgid_in(Some(4026531836), 4242).unwrap(), 4242);
        // No /proc to ask: nothing better than getpid().
        assert_eq!(host_tgid_in(None, 7).unwrap(), 7);
    }

    #[test]
    fn a_container_pid_namespace_is_refused_with_the_fix() {
        let err = host_tgid_in(Some(4026532180), 1).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("pid:[4026532180]"), "{msg}");
        assert!(
            msg.contains("--pid=host") && msg.contains("hostPID"),
            "{msg}"
        );
    }
}
