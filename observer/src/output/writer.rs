//! The writer thread: output leaves the reader's path. The reader hands over
//! whole-line chunks (`Bytes`, no copy) and never waits for a write; a
//! stalled reader of our output (`| less` paused, a full pipe, a slow disk)
//! stalls only this thread. Beyond `MAX_QUEUED` bytes waiting, chunks are
//! dropped and counted, so the ring buffer keeps being drained, and signals
//! and `--duration` keep working.

use std::{
    io::{self, Write},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use bytes::Bytes;

/// Bytes waiting for the writer, at most.
pub const MAX_QUEUED: usize = 8 << 20;

#[derive(Default)]
struct Shared {
    queued: AtomicUsize,
    /// The reader of our output went away.
    closed: AtomicBool,
    /// The first write error other than a closed reader.
    error: Mutex<Option<io::Error>>,
}

pub struct Writer {
    tx: Option<mpsc::Sender<Bytes>>,
    shared: Arc<Shared>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn spawn(mut out: Box<dyn Write + Send>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Bytes>();
        let (done_tx, done) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("observer-writer".into())
            .spawn(move || {
                while let Ok(chunk) = rx.recv() {
                    let mut r = out.write_all(&chunk);
                    s.queued.fetch_sub(chunk.len(), Ordering::Relaxed);
                    drop(chunk);
                    // Large writes while busy; a flush whenever the queue
                    // is empty, so that a live reader sees lines at once.
                    if r.is_ok() && s.queued.load(Ordering::Relaxed) == 0 {
                        r = out.flush();
                    }
                    match r {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                            s.closed.store(true, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            s.error.lock().expect("not poisoned").get_or_insert(e);
                            break;
                        }
                    }
                }
                let _ = out.flush();
                let _ = done_tx.send(());
            })?;
        Ok(Writer {
            tx: Some(tx),
            shared,
            done,
            thread: Some(thread),
        })
    }

    /// Queues a chunk of whole lines; hands it back when it is dropped (too
    /// much is waiting, or the writer has stopped).
    pub fn send(&self, chunk: Bytes) -> Result<(), Bytes> {
        let len = chunk.len();
        if self.shared.queued.load(Ordering::Relaxed) + len > MAX_QUEUED {
            return Err(chunk);
        }
        let Some(tx) = &self.tx else {
            return Err(chunk);
        };
        self.shared.queued.fetch_add(len, Ordering::Relaxed);
        tx.send(chunk).map_err(|e| {
            self.shared.queued.fetch_sub(len, Ordering::Relaxed);
            e.0
        })
    }

    pub fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    pub fn take_error(&self) -> Option<io::Error> {
        self.shared.error.lock().expect("not poisoned").take()
    }

    /// Lets the writer finish what is queued, waiting at most `limit` (a
    /// stalled output is left behind: the process is ending).
    pub fn finish(&mut self, limit: Duration) {
        if self.tx.take().is_none() {
            // Finished before (or given up on): no second wait.
            return;
        }
        if self.done.recv_timeout(limit).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.finish(Duration::from_secs(3));
    }
}
