//! One run's log, read on a thread of its own.
//!
//! A million-row log takes a moment to read; the UI must draw its first
//! frame and answer keys meanwhile, so the reading happens here, in slices,
//! under a lock the UI takes only to draw. Once caught up, the loader keeps
//! following the log (a run still being written), looking for new records
//! every [`FOLLOW_EVERY`], and wakes the UI when something arrived.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Event;
use crate::runlog::{LoadError, Progress, RunLog};

/// How often a caught-up loader looks for new records: a new row shows
/// within this (plus a frame), and an idle run costs a read() per period.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Records read per slice: the lock is held for about a millisecond.
const SLICE: usize = 5_000;

struct Shared {
    log: Mutex<RunLog>,
    /// Draws waiting for the lock. A mutex is not fair: a loader that
    /// re-locks at once would keep the UI from its first frame until the
    /// whole log is read, so it steps aside while a draw waits.
    waiting: AtomicUsize,
    caught_up: AtomicBool,
    stop: AtomicBool,
}

pub struct Loader {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Loader {
    /// Opens the log and starts reading it; `wake` is told when there is
    /// more to draw.
    pub fn start(path: &Path, wake: SyncSender<Event>) -> Result<Self, LoadError> {
        let shared = Arc::new(Shared {
            log: Mutex::new(RunLog::open(path)?),
            waiting: AtomicUsize::new(0),
            caught_up: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let reader = shared.clone();
        let name = format!(
            "leet-load-{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || follow(&reader, &wake))
            .ok();
        Ok(Self { shared, thread })
    }

    /// The run as read so far (the lock is held while the guard lives).
    pub fn log(&self) -> MutexGuard<'_, RunLog> {
        self.shared.waiting.fetch_add(1, Ordering::AcqRel);
        let guard = self.shared.log.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
        guard
    }

    /// Whether everything written when it was opened has been read.
    pub fn caught_up(&self) -> bool {
        self.shared.caught_up.load(Ordering::Acquire)
    }

    pub fn path(&self) -> PathBuf {
        self.log().path().to_path_buf()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // The thread ends within a slice; not joined, so closing a run
            // never waits on a read.
        }
    }
}

fn follow(shared: &Shared, wake: &SyncSender<Event>) {
    while !shared.stop.load(Ordering::Acquire) {
        let (progress, records) = {
            let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
            let before = log.data().records;
            let progress = log.poll(SLICE);
            (progress, log.data().records - before)
        };
        if records > 0
            || progress == Progress::CaughtUp && !shared.caught_up.load(Ordering::Acquire)
        {
            if progress == Progress::CaughtUp {
                shared.caught_up.store(true, Ordering::Release);
            }
            // A full channel already holds a wake-up: nothing is lost.
            if let Err(TrySendError::Disconnected(_)) = wake.try_send(Event::Data) {
                return;
            }
        }
        if progress == Progress::CaughtUp {
            std::thread::park_timeout(FOLLOW_EVERY);
        }
        while shared.waiting.load(Ordering::Acquire) > 0 && !shared.stop.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
    }
}
