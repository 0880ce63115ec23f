//! Where records go: JSON lines (the default, and the interface scripts use)
//! or a live table for the room.

pub mod file;
pub mod json;
pub mod table;
pub mod writer;

use std::{
    fs::{self, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use anyhow::{Context, Result};
use bytes::Bytes;

use self::writer::Writer;

/// Version of the JSON schema, in the first (`kernel`) record.
pub const SCHEMA_VERSION: u32 = 2;

/// Opens `--output FILE`: created or truncated, never through a symlink (so
/// a planted link can't make the observer overwrite another file), mode 0644.
pub fn open_output(path: Option<&Path>) -> Result<Box<dyn Write + Send>> {
    Ok(match path {
        None => Box::new(io::stdout()),
        Some(p) if p == Path::new("-") => Box::new(io::stdout()),
        Some(p) => {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(p)
                .map_err(|e| open_error(p, e))?;
            // A regular file is written behind; a FIFO or a device
            // (`-o /dev/null`) as it is.
            if f.metadata().is_ok_and(|m| m.file_type().is_file()) {
                Box::new(file::WriteBehind::new(f))
            } else {
                Box::new(f)
            }
        }
    })
}

/// Why `--output FILE` could not be opened, in the user's terms: a missing
/// directory, a refused symlink (`O_NOFOLLOW` gives `ELOOP`), or the error.
fn open_error(p: &Path, e: io::Error) -> anyhow::Error {
    let dir = match p.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => Path::new("/"),
    };
    if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() {
        return anyhow::anyhow!(
            "open --output {}: the directory {} does not exist (create it first: mkdir -p {})",
            p.display(),
            dir.display(),
            dir.display()
        );
    }
    if e.raw_os_error() == Some(libc::ELOOP)
        || fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
    {
        return anyhow::anyhow!(
            "open --output {}: it is a symlink, refused on purpose (a planted link must not make \
             the observer overwrite another file): {e}",
            p.display()
        );
    }
    anyhow::Error::new(e).context(format!("open --output {}", p.display()))
}

/// Bytes a sink gathers before they go out (`maybe_flush`): a buffer that
/// stays in cache, and few hand-overs to the writer thread.
pub const CHUNK: usize = 1 << 16;

/// Room beyond `CHUNK` for the line that crosses it. Without it, that line
/// made every buffer grow to twice its size (a 128 KiB block and a copy of
/// the whole chunk) just before it went out: twice the memory for each
/// chunk queued for the writer.
const LINE_ROOM: usize = 4 << 10;

/// Where a sink's chunks go: written in place (tests, tools), or handed to
/// the writer thread (the daemon).
enum Out {
    Direct(Box<dyn Write + Send>),
    Thread(Writer),
}

/// Buffered sink for whole lines; a closed reader (`| head`) is reported as
/// `closed` so that the daemon can stop quietly.
pub struct Sink {
    out: Out,
    pub buf: Vec<u8>,
    pub closed: bool,
    /// The first write error other than a closed reader: the daemon stops
    /// with it (a full disk must not lose lines silently).
    pub error: Option<io::Error>,
    /// Lines dropped because the output did not take them in time (the
    /// writer thread's queue was full), since the start.
    pub dropped_lines: u64,
}

impl Sink {
    /// Writes in place: a flush returns once the bytes are written.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self::with(Out::Direct(out))
    }

    /// Writes on a thread of its own: a flush never waits for the output.
    pub fn threaded(out: Box<dyn Write + Send>) -> Result<Self> {
        Ok(Self::with(Out::Thread(
            Writer::spawn(out).context("start the output writer thread")?,
        )))
    }

    fn with(out: Out) -> Self {
        Sink {
            out,
            buf: Vec::with_capacity(CHUNK + LINE_ROOM),
            closed: false,
            error: None,
            dropped_lines: 0,
        }
    }

    /// Writes out what is buffered once it is large enough.
    pub fn maybe_flush(&mut self) -> io::Result<()> {
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            self.buf.clear();
            return Ok(());
        }
        let r = match &mut self.out {
            Out::Direct(out) => {
                let r = out.write_all(&self.buf).and_then(|_| out.flush());
                self.buf.clear();
                // Keep the buffer's usual size, not the size of a past burst.
                if self.buf.capacity() > 4 << 20 {
                    self.buf.shrink_to(CHUNK + LINE_ROOM);
                }
                r
            }
            Out::Thread(w) => {
                if !self.buf.is_empty() {
                    // A filled buffer goes as it is (no copy) and the next
                    // one starts at the usual size; a few lines are copied
                    // instead, so that a queue of small chunks does not
                    // hold a whole buffer each.
                    let chunk = if self.buf.len() >= 1 << 14 {
                        Bytes::from(std::mem::replace(
                            &mut self.buf,
                            Vec::with_capacity(CHUNK + LINE_ROOM),
                        ))
                    } else {
                        let c = Bytes::copy_from_slice(&self.buf);
                        self.buf.clear();
                        c
                    };
                    if let Err(chunk) = w.send(chunk) {
                        self.dropped_lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                    }
                }
                if w.closed() {
                    Err(io::Error::from(io::ErrorKind::BrokenPipe))
                } else {
                    w.take_error().map_or(Ok(()), Err)
                }
            }
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => {
                let kind = e.kind();
                self.error.get_or_insert(e);
                Err(io::Error::from(kind))
            }
            Ok(()) => Ok(()),
        }
    }

    /// At the end: what is buffered goes out, and the writer thread gets
    /// up to `limit` to write what it holds.
    pub fn finish(&mut self, limit: std::time::Duration) -> io::Result<()> {
        let r = self.flush();
        if let Out::Thread(w) = &mut self.out {
            w.finish(limit);
            if let Some(e) = w.take_error() {
                self.error.get_or_insert(e);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Condvar, Mutex},
        time::{Duration, Instant},
    };

    use super::*;

    struct Failing(io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(self.0))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_missing_directory_is_named() {
        let e = open_output(Some(Path::new("/nonexistent-observer-dir/x.jsonl")))
            .err()
            .expect("refused");
        let m = format!("{e:#}");
        assert!(
            m.contains("the directory /nonexistent-observer-dir does not exist"),
            "{m}"
        );
        assert!(!m.contains("symlink"), "{m}");
    }

    /// A closed reader stops quietly; any other write error is kept for the
    /// daemon to stop with, whichever write met it.
    #[test]
    fn remembers_why_writing_stopped() {
        let mut s = Sink::new(Box::new(Failing(io::ErrorKind::BrokenPipe)));
        s.buf.extend_from_slice(b"{}\n");
        assert!(s.flush().is_ok());
        assert!(s.closed && s.error.is_none());
        let mut s = Sink::new(Box::new(Failing(io::ErrorKind::StorageFull)));
        s.buf.resize(1 << 16, b' ');
        let _ = s.maybe_flush();
        assert!(!s.closed);
        assert_eq!(
            s.error.as_ref().map(io::Error::kind),
            Some(io::ErrorKind::StorageFull)
        );
    }

    /// Lines of a few hundred bytes fill a chunk without the buffer ever
    /// growing: the chunk that goes out is the block first allocated.
    #[test]
    fn a_chunk_goes_out_without_growing() {
        let mut s = Sink::new(Box::new(io::sink()));
        let cap = s.buf.capacity();
        let line = [b'x'; 330];
        for _ in 0..3 * CHUNK / line.len() {
            s.buf.extend_from_slice(&line);
            assert_eq!(s.buf.capacity(), cap, "at {} bytes", s.buf.len());
            s.maybe_flush().unwrap();
        }
        assert!(s.buf.len() < CHUNK);
    }

    /// Holds every write until opened, and keeps what was written.
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let (lock, cv) = &*self.open;
            let _open = cv.wait_while(lock.lock().unwrap(), |open| !*open).unwrap();
            self.written.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// An output that takes nothing (a paused `| less`) never holds up the
    /// one filling the sink; what could not wait is counted, and every line
    /// is either written or counted.
    #[test]
    fn a_stalled_output_never_stalls_the_reader() {
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let mut s = Sink::threaded(Box::new(Gate {
            open: open.clone(),
            written: written.clone(),
        }))
        .unwrap();
        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        let lines = 2 * writer::MAX_QUEUED / line.len();
        let start = Instant::now();
        for _ in 0..lines {
            s.buf.extend_from_slice(&line);
            s.maybe_flush().unwrap();
        }
        s.flush().unwrap();
        assert!(start.elapsed() < Duration::from_secs(5), "never waited");
        assert!(s.dropped_lines > 0, "what did not fit is counted");
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        s.finish(Duration::from_secs(30)).unwrap();
        let written = written.lock().unwrap();
        let out = written.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(out + s.dropped_lines, lines as u64);
        assert!(written.len() >= writer::MAX_QUEUED - (1 << 17));
    }
}
