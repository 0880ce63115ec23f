//! The kernel-sharing observer: every container's syscalls, tagged in the
//! kernel with cgroup and namespaces, grouped per container, streamed live.
//!
//! Stages, in the order data flows:
//! `loader` (programs in, offsets from `btf`) -> `daemon` (ring buffer reader)
//! -> `pipeline`, which composes: `decode` -> `identity` (each syscall joined
//! to who its thread is) -> `attribute` (cgroup ->
//! container with `container`, lifecycle) -> `account` (received, lost,
//! per-interval groups with `aggregate`) -> `summary` (the interval as data)
//! -> `render` (lines and table into `output`), and `metrics`; `web` (the
//! page for the room) reads the `roster` of running and recently exited
//! containers.

pub mod account;
pub mod aggregate;
pub mod attribute;
pub mod btf;
pub mod claims;
pub mod cli;
pub mod cluster;
pub mod container;
pub mod daemon;
pub mod decode;
pub mod demo;
pub mod errno;
pub mod identity;
pub mod kernel_info;
pub mod limits;
pub mod loader;
pub mod memory;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod privilege;
pub mod render;
pub mod ring;
pub mod rings;
pub mod roster;
pub mod selfid;
pub mod summary;
pub mod syscalls;
pub mod vm;
pub mod web;
