//! `--output FILE`: a regular file written behind.
//!
//! At a million lines a second the daemon writes about 330 MB/s into the
//! page cache. Left to itself, the kernel lets dirty pages pile up to
//! `vm.dirty_ratio` (2.3 GB on a 24 GiB machine) and then throttles the
//! writer in `balance_dirty_pages`, with pauses of up to 200 ms: longer
//! than the writer's queue lasts, so lines are dropped although the disk
//! keeps up on average. Instead, the file starts the writeback of each
//! `WINDOW` as soon as it is written (`sync_file_range(WRITE)`), waits for
//! the window before it (long done, at any disk's rate close to ours), and
//! drops that one from the page cache (`POSIX_FADV_DONTNEED`): at most two
//! windows are ever dirty, the kernel never has a reason to throttle, and
//! the output does not crowd everything else out of memory.

use std::{
    fs::File,
    io::{self, Write},
    os::fd::AsRawFd,
};

/// Bytes written between two writeback starts.
pub const WINDOW: u64 = 16 << 20;

pub struct WriteBehind {
    file: File,
    /// Bytes written so far (the file is written from 0, in order).
    written: u64,
    /// Where the window not yet handed to writeback starts.
    started: u64,
}

impl WriteBehind {
    pub fn new(file: File) -> Self {
        WriteBehind {
            file,
            written: 0,
            started: 0,
        }
    }

    /// Starts the writeback of every whole window written, and finishes
    /// and forgets the one before each.
    fn write_behind(&mut self) {
        let fd = self.file.as_raw_fd();
        while self.written - self.started >= WINDOW {
            let start = self.started;
            // SAFETY: plain syscalls on our own fd; errors (a file system
            // without them) only lose the optimisation.
            unsafe {
                libc::sync_file_range(fd, start as i64, WINDOW as i64, libc::SYNC_FILE_RANGE_WRITE);
                if let Some(prev) = start.checked_sub(WINDOW) {
                    libc::sync_file_range(
                        fd,
                        prev as i64,
                        WINDOW as i64,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    );
                    libc::posix_fadvise(fd, prev as i64, WINDOW as i64, libc::POSIX_FADV_DONTNEED);
                }
            }
            self.started += WINDOW;
        }
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WINDOW {
            self.write_behind();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Three windows and a bit, in chunks that straddle the windows' ends:
    /// every byte arrives, in order.
    #[test]
    fn everything_written_behind_is_in_the_file() {
        let path = std::env::temp_dir().join(format!("observer-wb-{}", std::process::id()));
        let mut w = WriteBehind::new(File::create(&path).unwrap());
        let chunk: Vec<u8> = (0..65_521u32).map(|i| (i % 251) as u8).collect();
        let mut total = 0u64;
        while total < 3 * WINDOW + 12_345 {
            w.write_all(&chunk).unwrap();
            total += chunk.len() as u64;
        }
        w.flush().unwrap();
        assert_eq!(w.started, 3 * WINDOW, "each whole window handed over");
        drop(w);
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back.len() as u64, total);
        assert!(back.chunks(chunk.len()).all(|c| c == &chunk[..c.len()]));
    }
}
