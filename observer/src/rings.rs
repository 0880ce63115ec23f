//! The event rings read as one stream: one ring (`--rings shared`), or one
//! per CPU (`--rings per-cpu`) merged by time stamp.
//!
//! Per-CPU rings are each in order, but not with each other: a thread that
//! sent its identity from CPU 0 and then made a syscall on CPU 1 has the
//! two records in two rings. The merge hands records out in rounds. A round
//! starts by reading the clock (`CLOCK_BOOTTIME`, the kernel's
//! `bpf_ktime_get_boot_ns`), and hands out, oldest first, the records
//! stamped before that instant. A record stamped before the round started
//! was taken after every record its thread had committed before it, each
//! of which was in its ring before the round began, so it is seen and,
//! being older, handed out first: a thread's records keep their order
//! across CPUs. Records stamped later wait for the next round, which the
//! caller starts at once. The stream as a whole is in time order, but for
//! a record still being written on one CPU when a round starts: it comes
//! in the next round, after the round's younger records of other threads.
//! (So is a record behind one reserved and not yet committed: a ring is
//! read in order.)
//!
//! One epoll set holds every ring's fd, so that the daemon waits on one
//! descriptor whichever ring the kernel wakes.

use std::{
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::Instant,
};

use crate::{decode::record_ts, ring::RingReader};
use anyhow::{Context, Result};
use aya::maps::MapData;

/// No record in this ring for the round (empty, or its next record not
/// committed yet).
const NONE: u64 = u64::MAX;

pub struct EventRings {
    rings: Vec<RingReader>,
    /// Each ring's next record's time stamp, or `NONE`.
    heads: Vec<u64>,
    /// The ring whose record was handed out last; it moves past it on the
    /// next call (the slice lives until then).
    current: Option<usize>,
    /// The round's instant: records stamped before it are handed out.
    watermark: u64,
    /// The same instant on the daemon's clock.
    round: Instant,
    epoll: OwnedFd,
}

impl EventRings {
    pub fn new(maps: &[MapData], commit_bytes: usize) -> Result<Self> {
        let rings = maps
            .iter()
            .map(|m| RingReader::new(m, commit_bytes))
            .collect::<Result<Vec<_>>>()?;
        // SAFETY: no pointer arguments.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("epoll_create1 for the event rings");
        }
        // SAFETY: a fresh fd that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
        for (i, r) in rings.iter().enumerate() {
            // Level-triggered: the set stays readable while any ring has
            // records, whatever the daemon's own poller does with the set.
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: both fds are open; `ev` is a valid event.
            if unsafe {
                libc::epoll_ctl(
                    epoll.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    r.as_raw_fd(),
                    &mut ev,
                )
            } != 0
            {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("epoll_ctl: watch event ring {i}"));
            }
        }
        let n = rings.len();
        Ok(EventRings {
            rings,
            heads: vec![NONE; n],
            current: None,
            watermark: 0,
            round: Instant::now(),
            epoll,
        })
    }

    pub fn len(&self) -> usize {
        self.rings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    /// Starts a round: the records committed so far and stamped before now
    /// are handed out by `next`, oldest first. A single ring needs no
    /// rounds: it is in order by itself.
    pub fn begin_round(&mut self) {
        if self.rings.len() == 1 {
            return;
        }
        self.finish_current();
        self.round = Instant::now();
        self.watermark = crate::pipeline::boot_ns();
        for i in 0..self.rings.len() {
            self.heads[i] = self.rings[i].peek().map_or(NONE, record_ts);
        }
    }

    /// The next record of the round, oldest first; None when the round has
    /// handed out everything stamped before its start (or, with one ring,
    /// when the ring is empty). The slice stays valid until the next call.
    #[expect(
        clippy::should_implement_trait,
        reason = "each record borrows the reader: not an Iterator"
    )]
    pub fn next(&mut self) -> Option<&[u8]> {
        if self.rings.len() == 1 {
            return self.rings[0].next();
        }
        self.finish_current();
        let best = oldest(&self.heads, self.watermark)?;
        self.current = Some(best);
        self.rings[best].peek()
    }

    /// Moves past the record handed out last, and looks at that ring's next.
    fn finish_current(&mut self) {
        if let Some(i) = self.current.take() {
            self.rings[i].consume();
            self.heads[i] = self.rings[i].peek().map_or(NONE, record_ts);
        }
    }

    /// Once `next` has said None: every record committed before this
    /// instant has been handed out (one ring: every record so far; rings
    /// merged: those committed before the round began).
    pub fn handed_out_before(&self) -> Instant {
        if self.rings.len() == 1 {
            Instant::now()
        } else {
            self.round
        }
    }

    /// Whether records stamped after the round's start are waiting: the
    /// caller starts another round rather than waiting for a wakeup.
    pub fn more(&self) -> bool {
        self.rings.len() > 1 && self.heads.iter().any(|&h| h != NONE)
    }
}

/// The ring whose next record is the oldest, if it was stamped before
/// `watermark` (the first such ring on a tie: a stable order).
fn oldest(heads: &[u64], watermark: u64) -> Option<usize> {
    let mut best = 0;
    for (i, &h) in heads.iter().enumerate().skip(1) {
        if h < heads[best] {
            best = i;
        }
    }
    (*heads.get(best)? < watermark).then_some(best)
}

impl AsRawFd for EventRings {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_head_below_the_watermark_goes_first() {
        let table: [(&[u64], u64, Option<usize>); 7] = [
            (&[], 10, None),
            (&[NONE, NONE], 10, None),
            (&[5, 3], 10, Some(1)),
            (&[3, 5], 10, Some(0)),
            (&[4, 4], 10, Some(0)),
            (&[NONE, 7], 10, Some(1)),
            // Stamped at or after the round's start: the next round's.
            (&[10, 12], 10, None),
        ];
        for (heads, watermark, want) in table {
            assert_eq!(
                oldest(heads, watermark),
                want,
                "{heads:?} below {watermark}"
            );
        }
    }
}
