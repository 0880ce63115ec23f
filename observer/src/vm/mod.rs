//! Booting a small guest beside the containers: the other half of the
//! lesson (a VM brings a kernel of its own), and the plumbing the tests that
//! run the observer inside guests reuse.
//!
//! - `initramfs`: a `newc` cpio from a list of (guest path, bytes or host
//!   file, mode).
//! - `qemu`: a QEMU guest we own (serial console lines, time-boxed waits,
//!   KVM with a TCG fallback, killed on every path).
//! - `init`: the guest's `/init` (a mode of the static `observer-workload`):
//!   mounts, the workload, programs to run from the kernel command line,
//!   power off.
//! - `lesson`: the demo's VM half and the side-by-side verdict.
//! - `kvm`: KVM exits per VMM process, counted in the kernel.
//!
//! The guest kernel and the static binaries come from xtask
//! (`xtask/src/guest.rs`).

pub mod init;
pub mod initramfs;
pub mod kvm;
pub mod lesson;
pub mod matrix;
pub mod qemu;
