//! A ring buffer reader that hands records back to the kernel in batches.
//!
//! aya's `RingBuf::next` publishes the consumer position after every record
//! (its `RingBufItem` does it on drop). The kernel reads that position on
//! every `bpf_ringbuf_reserve` to know the free space, so each store makes
//! the producing CPU fetch the cache line again from the reader's CPU: one
//! cross-CPU miss per event on the traced task's path. This reader maps the
//! same pages (the layout of
//! <https://elixir.bootlin.com/linux/v6.1/source/kernel/bpf/ringbuf.c#L77>:
//! one consumer page, read-write; one producer page and the data pages twice
//! over, read-only) and publishes its position once every `commit_bytes`
//! bytes, and whenever it has caught up with the producer. The kernel then
//! sees the space of up to `commit_bytes` read records a little later: the
//! ring's usable size shrinks by that much, nothing else changes.

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    sync::atomic::{fence, AtomicU32, AtomicUsize, Ordering},
};

use anyhow::{Context, Result};
use aya::maps::MapData;

/// `BPF_RINGBUF_BUSY_BIT`, `BPF_RINGBUF_DISCARD_BIT`, `BPF_RINGBUF_HDR_SZ`
/// from the kernel's uapi `bpf.h`.
const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HDR_SZ: usize = 8;

/// The default batch: a few hundred compact records, a fraction of a
/// percent of the default ring.
pub const DEFAULT_COMMIT_BYTES: usize = 16 * 1024;

/// One shared mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize, prot: libc::c_int, offset: usize) -> Result<Self> {
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks
        // the length and protection against the ring's layout.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mmap {len} bytes of the ring buffer at {offset}"));
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length, and no reference into it
        // outlives the reader.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// SAFETY: the mappings are only touched through `&mut RingReader` (records)
// or atomics (positions).
unsafe impl Send for Mapping {}

pub struct RingReader {
    consumer: Mapping,
    producer: Mapping,
    page: usize,
    mask: usize,
    /// Where the next record starts.
    pos: usize,
    /// What the kernel was last told.
    published: usize,
    /// The producer position last read.
    producer_cache: usize,
    /// Where the record `peek` returned ends, until `consume`.
    peeked_end: Option<usize>,
    commit_bytes: usize,
    /// The map's fd, which keeps the ring alive.
    fd: OwnedFd,
}

impl RingReader {
    /// Reads the ring `map` (a `BPF_MAP_TYPE_RINGBUF`) through a mapping of
    /// its own. `commit_bytes` 0: publish after every record, as aya's
    /// reader does.
    pub fn new(map: &MapData, commit_bytes: usize) -> Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // Our own copy of the fd, which keeps the ring alive.
        let fd = map
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicate the ring buffer's fd")?;
        let size = map_size(fd.as_fd()).context("read the ring buffer's size")?;
        let consumer = Mapping::new(fd.as_fd(), page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = Mapping::new(fd.as_fd(), page + 2 * size, libc::PROT_READ, page)?;
        let mut r = RingReader {
            consumer,
            producer,
            page,
            mask: size - 1,
            pos: 0,
            published: 0,
            producer_cache: 0,
            peeked_end: None,
            // A small ring (`--ring-buffer-kb 16`) must not wait for a
            // batch as large as itself before it gets space back.
            commit_bytes: commit_bytes.min(size / 16),
            fd,
        };
        r.pos = r.consumer_pos().load(Ordering::Acquire);
        r.published = r.pos;
        r.producer_cache = r.producer_pos();
        Ok(r)
    }

    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: the first word of the consumer page, page-aligned.
        unsafe { &*self.consumer.ptr.cast::<AtomicUsize>() }
    }

    fn producer_pos(&self) -> usize {
        // SAFETY: the first word of the producer page; the kernel writes it
        // with release semantics after the record's header.
        unsafe { &*self.producer.ptr.cast::<AtomicUsize>() }.load(Ordering::Acquire)
    }

    /// Tells the kernel that everything before `pos` is read.
    fn publish(&mut self) {
        if self.published != self.pos {
            self.consumer_pos().store(self.pos, Ordering::Release);
            self.published = self.pos;
        }
    }

    /// The next committed record, or None when there is none yet. The
    /// slice stays valid until the next call: its space is handed back no
    /// earlier.
    #[expect(
        clippy::should_implement_trait,
        reason = "each record borrows the reader: not an Iterator"
    )]
    pub fn next(&mut self) -> Option<&[u8]> {
        let (off, len, next) = self.find()?;
        self.pos = next;
        self.peeked_end = None;
        // SAFETY: see `record`.
        Some(unsafe { self.record(off, len) })
    }

    /// The next committed record, left in the ring: the same one again
    /// until `consume`. None when there is none yet, or when the next one
    /// is reserved and not committed yet.
    pub fn peek(&mut self) -> Option<&[u8]> {
        let (off, len, next) = self.find()?;
        self.peeked_end = Some(next);
        // SAFETY: see `record`.
        Some(unsafe { self.record(off, len) })
    }

    /// Moves past the record `peek` returned (nothing, without one).
    pub fn consume(&mut self) {
        if let Some(end) = self.peeked_end.take() {
            self.pos = end;
        }
    }

    /// The record at data offset `off`.
    ///
    /// # Safety
    /// `off` and `len` from `find`: inside the first copy of the data pages;
    /// the pages are mapped twice in a row, so a record that wraps is
    /// contiguous, and its length is below the ring's size.
    unsafe fn record(&self, off: usize, len: usize) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.producer.ptr.add(off), len) }
    }

    /// The next committed record's data offset and length, and where the
    /// one after it starts. Skips discarded records; publishes the consumer
    /// position every `commit_bytes` and when caught up.
    fn find(&mut self) -> Option<(usize, usize, usize)> {
        if self.pos - self.published >= self.commit_bytes {
            self.publish();
        }
        loop {
            if self.pos == self.producer_cache {
                self.producer_cache = self.producer_pos();
                if self.pos == self.producer_cache {
                    // Caught up: hand everything back, then look once more,
                    // so that either this sees a record committed meanwhile
                    // or its producer sees the new position (and wakes us
                    // if it asked to).
                    self.publish();
                    fence(Ordering::SeqCst);
                    self.producer_cache = self.producer_pos();
                    if self.pos == self.producer_cache {
                        return None;
                    }
                }
            }
            let off = self.page + (self.pos & self.mask);
            // SAFETY: `off` is inside the first copy of the data pages, and
            // the header is 8-byte aligned.
            let header_at = unsafe { &*self.producer.ptr.add(off).cast::<AtomicU32>() };
            let mut header = header_at.load(Ordering::Acquire);
            if header & BUSY_BIT != 0 {
                // Reserved, not committed yet. Its commit wakes the reader
                // only if it finds the consumer position at this record: hand
                // everything back, then look once more, so that either the
                // commit sees the new position or this sees the commit.
                self.publish();
                fence(Ordering::SeqCst);
                header = header_at.load(Ordering::Acquire);
                if header & BUSY_BIT != 0 {
                    return None;
                }
            }
            let len = (header & !(BUSY_BIT | DISCARD_BIT)) as usize;
            let next = self.pos + (HDR_SZ + len).next_multiple_of(8);
            if header & DISCARD_BIT != 0 {
                self.pos = next;
                continue;
            }
            return Some((off + HDR_SZ, len, next));
        }
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        self.publish();
    }
}

impl AsRawFd for RingReader {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The ring's data size (`max_entries`), from the kernel
/// (`BPF_OBJ_GET_INFO_BY_FD`; aya keeps its own copy private).
fn map_size(fd: BorrowedFd<'_>) -> Result<usize> {
    // The leading fields of `struct bpf_map_info`: type, id, key_size,
    // value_size, max_entries; the kernel writes at most `info_len` bytes.
    let mut info = [0u32; 5];
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // SAFETY: `attr` points at `info`, which outlives the call and is as
    // long as `info_len` says.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &attr as *const InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_OBJ_GET_INFO_BY_FD");
    }
    let size = info[4] as usize;
    anyhow::ensure!(
        size.is_power_of_two(),
        "ring buffer size {size} is not a power of two"
    );
    Ok(size)
}
