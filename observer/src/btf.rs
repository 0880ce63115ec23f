//! Offsets of the kernel fields the programs read, resolved from the running
//! kernel's BTF, so that one built binary works on kernels whose layouts
//! differ (`struct ns_common`, for one, changed in 6.18).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use btf_rs::{Btf, Type};
use observer_common::{ClaimOffsets, KernelOffsets};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// A field that could not be found, named as `struct.path.to.field`.
#[derive(Debug, thiserror::Error)]
#[error("the kernel's BTF has no field `{0}`: this kernel's layout is not supported")]
pub struct MissingField(pub String);

pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn load() -> Result<Self> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let btf = Btf::from_file(path).with_context(|| {
            format!(
                "read kernel BTF from {}: the kernel must be built with CONFIG_DEBUG_INFO_BTF=y",
                path.display()
            )
        })?;
        Ok(Self { btf })
    }

    fn named_struct(&self, name: &str) -> Result<btf_rs::Struct> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|_| MissingField(name.to_owned()))?;
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s),
                _ => None,
            })
            .ok_or_else(|| MissingField(name.to_owned()).into())
    }

    /// Size of `struct name`.
    pub fn struct_size(&self, name: &str) -> Result<u32> {
        Ok(self.named_struct(name)?.size() as u32)
    }

    /// Byte offset of `struct name` . `path`, where each path element names a
    /// member of the struct reached so far; members of anonymous structs and
    /// unions are found as if they were the parent's own, as in C.
    pub fn offset(&self, name: &str, path: &[&str]) -> Result<u32> {
        let mut current = self.named_struct(name)?;
        let mut bits = 0u32;
        for (i, field) in path.iter().enumerate() {
            let (member_bits, member) = self
                .find_member(&current, field)?
                .ok_or_else(|| MissingField(format!("{name}.{}", path[..=i].join("."))))?;
            bits += member_bits;
            if i + 1 < path.len() {
                current = self.struct_of(&member).ok_or_else(|| {
                    MissingField(format!("{name}.{} (not a struct)", path[..=i].join(".")))
                })?;
            }
        }
        if !bits.is_multiple_of(8) {
            return Err(anyhow!("{name}.{} is a bitfield", path.join(".")));
        }
        Ok(bits / 8)
    }

    /// Depth-first search through anonymous members. Returns the member's bit
    /// offset from the start of `s` and the member itself.
    fn find_member(
        &self,
        s: &btf_rs::Struct,
        field: &str,
    ) -> Result<Option<(u32, btf_rs::Member)>> {
        for m in &s.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            if name == field {
                return Ok(Some((m.bit_offset(), m.clone())));
            }
            if name.is_empty() {
                if let Some(inner) = self.struct_of(m) {
                    if let Some((off, found)) = self.find_member(&inner, field)? {
                        return Ok(Some((m.bit_offset() + off, found)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The struct or union a member is (through typedefs and qualifiers).
    fn struct_of(&self, m: &btf_rs::Member) -> Option<btf_rs::Struct> {
        let mut t = self.btf.resolve_chained_type(m).ok()?;
        loop {
            t = match t {
                Type::Struct(s) | Type::Union(s) => return Some(s),
                Type::Typedef(ref x) => self.btf.resolve_chained_type(x).ok()?,
                Type::Const(ref x) => self.btf.resolve_chained_type(x).ok()?,
                Type::Volatile(ref x) => self.btf.resolve_chained_type(x).ok()?,
                _ => return None,
            }
        }
    }

    /// Whether the kernel knows the BPF helper `bpf_<name>`: its
    /// `enum bpf_func_id` holds `BPF_FUNC_<name>` exactly when the helper
    /// exists in this build.
    pub fn has_helper(&self, name: &str) -> bool {
        let wanted = format!("BPF_FUNC_{name}");
        self.btf
            .resolve_types_by_name("bpf_func_id")
            .unwrap_or_default()
            .iter()
            .any(|t| match t {
                Type::Enum(e) => e
                    .members
                    .iter()
                    .any(|m| self.btf.resolve_name(m).is_ok_and(|n| n == wanted)),
                _ => false,
            })
    }

    /// Every offset the programs need.
    pub fn kernel_offsets(&self) -> Result<KernelOffsets> {
        let o = |s: &str, p: &[&str]| self.offset(s, p);
        Ok(KernelOffsets {
            task_pid: o("task_struct", &["pid"])?,
            task_tgid: o("task_struct", &["tgid"])?,
            task_group_leader: o("task_struct", &["group_leader"])?,
            task_thread_pid: o("task_struct", &["thread_pid"])?,
            task_nsproxy: o("task_struct", &["nsproxy"])?,
            task_cgroups: o("task_struct", &["cgroups"])?,
            task_comm: o("task_struct", &["comm"])?,
            task_exit_code: o("task_struct", &["exit_code"])?,
            pid_level: o("pid", &["level"])?,
            pid_numbers: o("pid", &["numbers"])?,
            upid_size: self.struct_size("upid")?,
            upid_nr: o("upid", &["nr"])?,
            upid_ns: o("upid", &["ns"])?,
            pidns_inum: o("pid_namespace", &["ns", "inum"])?,
            nsproxy_uts: o("nsproxy", &["uts_ns"])?,
            nsproxy_mnt: o("nsproxy", &["mnt_ns"])?,
            nsproxy_net: o("nsproxy", &["net_ns"])?,
            utsns_inum: o("uts_namespace", &["ns", "inum"])?,
            utsns_nodename: o("uts_namespace", &["name", "nodename"])?,
            mntns_inum: o("mnt_namespace", &["ns", "inum"])?,
            netns_inum: o("net", &["ns", "inum"])?,
            css_set_dfl_cgrp: o("css_set", &["dfl_cgrp"])?,
            cgroup_kn: o("cgroup", &["kn"])?,
            cgroup_root: o("cgroup", &["root"])?,
            cgroup_level: o("cgroup", &["level"])?,
            kernfs_node_id: o("kernfs_node", &["id"])?,
            cgroup_root_hierarchy_id: o("cgroup_root", &["hierarchy_id"])?,
            bprm_filename: o("linux_binprm", &["filename"])?,
            task_signal: o("task_struct", &["signal"])?,
            signal_live: o("signal_struct", &["live"])?,
            task_ti_status: ti_status(self)?,
            _pad: 0,
        })
    }
}

/// `task_struct.thread_info.status`, where x86 keeps `TS_COMPAT`
/// (`thread_info` is the task's first member with
/// `CONFIG_THREAD_INFO_IN_TASK`). Other architectures have no `status`:
/// their programs don't read it.
fn ti_status(k: &KernelBtf) -> Result<u32> {
    if cfg!(target_arch = "x86_64") {
        k.offset("task_struct", &["thread_info", "status"])
    } else {
        Ok(0)
    }
}

impl KernelBtf {
    /// The offsets of the enforcement and privilege programs; `sys_exit_ret`
    /// comes from the tracepoint's format file, not from BTF.
    pub fn claim_offsets(&self, sys_exit_ret: u32) -> Result<ClaimOffsets> {
        let o = |s: &str, p: &[&str]| self.offset(s, p);
        Ok(ClaimOffsets {
            task_cred: o("task_struct", &["cred"])?,
            cred_cap_effective: o("cred", &["cap_effective"])?,
            task_seccomp_mode: o("task_struct", &["seccomp", "mode"])?,
            task_atomic_flags: o("task_struct", &["atomic_flags"])?,
            sys_exit_ret,
            _pad: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> Option<KernelBtf> {
        if !Path::new(VMLINUX_BTF).exists() {
            crate::privilege::skip_or_fail("no kernel BTF at /sys/kernel/btf/vmlinux");
            return None;
        }
        Some(KernelBtf::load().expect("parse kernel BTF"))
    }

    /// Every offset resolves on the running kernel, and the ones user space
    /// can cross-check agree with what the kernel reports elsewhere.
    #[test]
    fn resolves_every_offset_on_the_running_kernel() {
        let Some(k) = kernel() else { return };
        let o = k.kernel_offsets().expect("all offsets resolve");
        // `struct upid { int nr; struct pid_namespace *ns; }` on every kernel.
        assert_eq!(o.upid_nr, 0);
        assert_eq!(o.upid_size, 16);
        assert_eq!(o.upid_ns, 8);
        assert!(
            o.task_comm > o.task_pid,
            "comm comes after pid in task_struct"
        );
        assert_ne!(o.task_thread_pid, 0);
        // x86's `struct thread_info { unsigned long flags; [unsigned long
        // syscall_work;] u32 status; … }`, first in task_struct.
        if cfg!(target_arch = "x86_64") {
            assert!([8, 16].contains(&o.task_ti_status), "{}", o.task_ti_status);
        }
        // Nested through an embedded struct: name.nodename is 65 bytes in.
        let name = k.offset("uts_namespace", &["name"]).unwrap();
        assert_eq!(o.utsns_nodename, name + 65);
    }

    #[test]
    fn finds_helpers_in_the_kernels_enum() {
        let Some(k) = kernel() else { return };
        // 5.8 and 5.11 helpers; this machine's kernel is newer than both.
        assert!(k.has_helper("ringbuf_reserve"));
        assert!(k.has_helper("get_current_task_btf"));
        assert!(!k.has_helper("no_such_helper"));
    }

    #[test]
    fn resolves_the_credential_offsets() {
        let Some(k) = kernel() else { return };
        let o = k.claim_offsets(16).expect("credential offsets resolve");
        // `struct seccomp` starts with `int mode`.
        assert_eq!(
            o.task_seccomp_mode,
            k.offset("task_struct", &["seccomp"]).unwrap()
        );
        assert_ne!(o.task_cred, o.task_atomic_flags);
        // cap_effective follows cap_inheritable and cap_permitted, 8 bytes each.
        let inh = k.offset("cred", &["cap_inheritable"]).unwrap();
        assert_eq!(o.cred_cap_effective, inh + 16);
    }

    #[test]
    fn a_kernel_without_btf_is_named_with_the_fix() {
        let err = KernelBtf::from_file(Path::new("/nonexistent/vmlinux"))
            .err()
            .expect("no BTF there");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("/nonexistent/vmlinux") && msg.contains("CONFIG_DEBUG_INFO_BTF"),
            "{msg}"
        );
    }

    #[test]
    fn names_the_missing_field() {
        let Some(k) = kernel() else { return };
        let err = k.offset("task_struct", &["no_such_field"]).unwrap_err();
        assert!(
            err.to_string().contains("task_struct.no_such_field"),
            "{err}"
        );
        let err = k.offset("no_such_struct", &["x"]).unwrap_err();
        assert!(err.to_string().contains("no_such_struct"), "{err}");
    }

    #[test]
    fn finds_members_of_anonymous_unions() {
        let Some(k) = kernel() else { return };
        // `struct ns_common` keeps `inum` inside anonymous members on some
        // kernels and at the top on others: either way it resolves.
        let direct = k.offset("ns_common", &["inum"]).unwrap();
        let via_pidns = k.offset("pid_namespace", &["ns", "inum"]).unwrap();
        let ns = k.offset("pid_namespace", &["ns"]).unwrap();
        assert_eq!(via_pidns, ns + direct);
    }
}
