//! Online runs through the real Python SDK, the backend fast and slow.
//!
//! What a user feels online: the training loop's `run.log` rate, how long
//! `finish()` takes, and what the service costs meanwhile (CPU, peak RSS).
//! The backend is the stand-in, in this process on loopback, fresh for
//! every run and answering each request after a set latency; every run is
//! checked to have reached it whole (all rows, complete).
//!
//! Where the client runs matters as much as the service: the SDK hands
//! every `run.log` from the training thread to its asyncio thread and
//! waits, and on a machine whose other CPUs sleep each hand-off pays to
//! wake one. So runs are measured unpinned on an idle machine, unpinned on
//! a busy one ([`BusyMachine`]: the CPUs kept awake by work of the lowest
//! priority, as data loaders and other jobs keep a training node), and
//! with client and service pinned to CPUs of their own.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::bail;
use wandb_standin::RunKey;

use crate::sdk::{self, SdkRun};

/// Any key of the right length: the stand-in takes what it is given.
const KEY: &str = "benchbenchbenchbenchbenchbenchbenchbench";

/// One online run of `rows` rows by one client; the backend answers each
/// request `latency` after it arrived.
pub fn run(
    binary: &Path,
    python: &Path,
    dir: &Path,
    rows: u64,
    latency: Duration,
    pinned: bool,
) -> anyhow::Result<SdkRun> {
    let standin = crate::standin::fresh(KEY, latency)?;
    let _ = std::fs::remove_dir_all(dir);
    let online = sdk::Online {
        base_url: &standin.base_url,
        api_key: KEY,
    };
    let result = sdk::run(binary, python, dir, rows, 1, pinned, Some(&online))?;
    let key = RunKey::new(wandb_standin::DEFAULT_ENTITY, "bench", "bench-0");
    let stored = standin.store.line_count(&key, "wandb-history.jsonl");
    if stored != rows as i64 {
        bail!("the backend got {stored} of {rows} rows");
    }
    if !standin.store.run(&key).is_some_and(|r| r.complete) {
        bail!("the run was not marked complete on the backend");
    }
    Ok(result)
}

/// A busy loop of the lowest priority (nice 19) on every CPU, while it
/// lives: any other thread that wants a CPU gets it at once, but no CPU
/// goes idle.
pub struct BusyMachine {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyMachine {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (0..cpus)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    // SAFETY: lowers this thread's own priority (Linux
                    // applies the nice value per thread).
                    unsafe {
                        let tid = libc::gettid() as libc::id_t;
                        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
                    }
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for BusyMachine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
