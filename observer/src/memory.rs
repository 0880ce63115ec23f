//! The daemon's own heap: returned to the kernel once it is free.
//!
//! Loading parses the kernel's BTF twice (several MiB each) and the eBPF
//! object; under load the writer thread's queue holds up to
//! `output::writer::MAX_QUEUED` bytes of lines. Both are freed, but glibc's
//! malloc keeps freed memory mapped: its mmap threshold rises to the size
//! of the largest block freed (so the next big blocks come from the heap),
//! and free pages below the heap's top are never returned by itself.
//! Measured with `cargo xtask bench --memory`: 8.9 MiB of heap at rest of
//! which 1.2 MiB was in use, and the heap at its load peak ever after.

/// Blocks of this size or more are mappings of their own, unmapped when
/// freed: above the output's chunks (64 KiB buffers that may grow to 128
/// KiB by their last line), which come and go at every flush.
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD: libc::c_int = 512 << 10;

/// A free heap top beyond this goes back to the kernel at once; below it,
/// at the next `release`. Not smaller: the writer's queue grows and shrinks
/// by megabytes under load, and each return is refaulted page by page.
#[cfg(target_env = "gnu")]
const TRIM_THRESHOLD: libc::c_int = 4 << 20;

/// Fixes malloc's thresholds, so that they no longer grow with the blocks
/// freed. Call it first thing, before the large blocks of loading.
pub fn tune() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets malloc's parameters; called before any
    // other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Gives the heap's free pages back to the kernel, wherever they are in
/// it (glibc's `malloc_trim`, which advises away every free page, not only
/// the top). Cheap next to an interval: a walk of malloc's free lists.
pub fn release() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes malloc's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
