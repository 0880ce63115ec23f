//! Where records go: JSON lines (the default, and the interface scripts use)
//! or a live table for the room.

pub mod json;
pub mod table;

use std::{
    fs::OpenOptions,
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use anyhow::{Context, Result};

/// Version of the JSON schema, in the first (`kernel`) record.
pub const SCHEMA_VERSION: u32 = 1;

/// Opens `--output FILE`: created or truncated, never through a symlink (so
/// a planted link can't make the observer overwrite another file), mode 0644.
pub fn open_output(path: Option<&Path>) -> Result<Box<dyn Write + Send>> {
    Ok(match path {
        None => Box::new(io::stdout()),
        Some(p) if p == Path::new("-") => Box::new(io::stdout()),
        Some(p) => Box::new(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(p)
                .with_context(|| {
                    format!(
                        "open --output {} (a symlink there is refused on purpose)",
                        p.display()
                    )
                })?,
        ),
    })
}

/// Buffered sink for whole lines; a closed reader (`| head`) is reported as
/// `Closed` so that the daemon can stop quietly.
pub struct Sink {
    out: Box<dyn Write + Send>,
    pub buf: Vec<u8>,
    pub closed: bool,
    /// The first write error other than a closed reader: the daemon stops
    /// with it (a full disk must not lose lines silently).
    pub error: Option<io::Error>,
}

impl Sink {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Sink {
            out,
            buf: Vec::with_capacity(1 << 16),
            closed: false,
            error: None,
        }
    }

    /// Writes out what is buffered once it is large enough.
    pub fn maybe_flush(&mut self) -> io::Result<()> {
        if self.buf.len() >= 1 << 16 {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            self.buf.clear();
            return Ok(());
        }
        let r = self.out.write_all(&self.buf).and_then(|_| self.out.flush());
        self.buf.clear();
        // Keep the buffer's usual size, not the size of a past burst.
        if self.buf.capacity() > 4 << 20 {
            self.buf.shrink_to(1 << 16);
        }
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
}

#[cfg(test)]
mod tests {
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
}
