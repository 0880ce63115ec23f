//! The kernel-sharing observer: every container's syscalls, tagged in the
//! kernel with cgroup and namespaces, grouped per container, streamed live.
//!
//! Stages, in the order data flows:
//! `loader` (programs in, offsets from `btf`) -> `daemon` (ring buffer reader)
//! -> `decode` -> `pipeline` (attribution with `container`, grouping with
//! `aggregate`) -> `output` and `metrics`.

pub mod aggregate;
pub mod btf;
pub mod cli;
pub mod container;
pub mod daemon;
pub mod decode;
pub mod demo;
pub mod kernel_info;
pub mod loader;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod privilege;
pub mod syscalls;
