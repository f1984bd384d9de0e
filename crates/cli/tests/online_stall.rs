//! A stalled backend never stalls the training loop.
//!
//! The online sender reads the run back from its transaction log, so while
//! the backend answers nothing the service must keep reading its client,
//! writing every record to the log, with memory bounded whatever the
//! amount logged; once the backend answers again, the run reaches it whole.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wandb::{Mode, QueuePolicy, Settings, Transport};
use wandb_standin::RunKey;

const KEY: &str = "stallkeystallkeystallkeystallkeystallkey";
/// About 80 MB of transaction log: far more than any buffer on the way
/// (socket, the SDK's queue, the run's queues, the file stream's buffer).
const ROWS: u64 = 200_000;

fn find_log(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_log(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

/// Answers held requests again when dropped: declared after the run, it
/// goes first when a failed assertion unwinds, so the run's finish on drop
/// does not wait forever for a held backend.
struct ReleaseOnDrop<'a>(&'a wandb_standin::StandIn, &'static str);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

fn peak_rss_bytes(pid: u32) -> u64 {
    testkit::process::memory_kib(pid).0 * 1024
}

#[test]
fn the_service_keeps_reading_while_the_backend_stalls() {
    testkit::within(testkit::process::LIMIT, || {
        let scratch = testkit::scratch_dir("online-stall");
        let standin = common::standin(KEY, &[]);
        // Runs are created, but no file stream request is answered.
        standin.hold("file_stream");
        let service = common::start_service(&scratch);
        let run = wandb::init(
            Settings::new()
                .mode(Mode::Online)
                .api_key(KEY)
                .base_url(standin.base_url.clone())
                .project("stall")
                .run_id("stall1")
                .dir(&scratch)
                .transport(Transport::Attach(service.token.clone()))
                .disable_stats(true)
                // A client the service stopped reading would fail here.
                .queue_policy(QueuePolicy::Block(Duration::from_secs(60))),
        )
        .unwrap();
        let _release = ReleaseOnDrop(&standin, "file_stream");
        let log_rows = |from: u64, to: u64| {
            for i in from..to {
                let x = i as f64;
                run.log(wandb::row! {
                    "loss" => 1.0 / (x + 1.0), "acc" => x / 1e6, "lr" => 0.001,
                    "m3" => x * 3.0, "m4" => x * 4.0, "m5" => x * 5.0, "m6" => x * 6.0,
                    "m7" => x * 7.0, "m8" => x * 8.0, "m9" => x * 9.0,
                })
                .unwrap();
            }
        };
        // Every row is read from the socket and written to the log while the
        // backend still answers nothing.
        let wait_for_log = |rows: u64| {
            let log = find_log(&scratch, "run-stall1.wandb").expect("the run's log");
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut written = 0;
            while written < rows {
                assert!(
                    Instant::now() < deadline,
                    "only {written} of {rows} rows reached the log while the backend stalled"
                );
                std::thread::sleep(Duration::from_millis(200));
                written = common::raw::history_rows(&log) as u64;
            }
            log
        };
        log_rows(0, ROWS / 4);
        wait_for_log(ROWS / 4);
        let peak_at_quarter = peak_rss_bytes(service.child.id());
        log_rows(ROWS / 4, ROWS);
        let log = wait_for_log(ROWS);
        let key = RunKey::new(wandb_standin::DEFAULT_ENTITY, "stall", "stall1");
        assert_eq!(
            standin.store.line_count(&key, "wandb-history.jsonl"),
            0,
            "the file stream was held"
        );
        assert_eq!(run.stats().dropped, 0);
        // Memory stayed bounded: three times as much logged after the first
        // quarter hardly moved the service's peak, which stays under a fixed
        // bound. (Not a share of the log: the debug binary now carries LEET
        // and export too, and the pages of it the service touches moved its
        // baseline to about 41 MiB, three quarters of this log.)
        let through = std::fs::metadata(&log).unwrap().len();
        let peak = peak_rss_bytes(service.child.id());
        assert!(
            peak < peak_at_quarter + (8 << 20) && peak < (48 << 20),
            "service peak RSS {} MiB ({} MiB after a quarter) for {} MiB of log",
            peak >> 20,
            peak_at_quarter >> 20,
            through >> 20
        );

        // The backend answers again: the run arrives whole.
        standin.release("file_stream");
        let report = run.finish(0).unwrap();
        assert_eq!(report.stats.dropped, 0);
        assert_eq!(
            standin.store.line_count(&key, "wandb-history.jsonl"),
            ROWS as i64
        );
        let stored = standin.store.run(&key).expect("the run on the backend");
        assert!(stored.complete, "the run was finished on the backend");
    });
}

#[test]
fn a_stopping_service_does_not_wait_forever_for_a_dead_backend() {
    testkit::within(testkit::process::LIMIT, || {
        // The backend retried for days must not keep a stopping service alive:
        // after a grace period it exits, the run left in its log for sync.
        let scratch = testkit::scratch_dir("online-stall-stop");
        let standin = common::standin(KEY, &[]);
        standin.hold("file_stream");
        let mut service = common::start_service(&scratch);
        let run = wandb::init(
            Settings::new()
                .mode(Mode::Online)
                .api_key(KEY)
                .base_url(standin.base_url.clone())
                .project("stall")
                .run_id("stall2")
                .dir(&scratch)
                .transport(Transport::Attach(service.token.clone()))
                .disable_stats(true),
        )
        .unwrap();
        let _release = ReleaseOnDrop(&standin, "file_stream");
        for i in 0..1000 {
            run.log(wandb::row! {"i" => i}).unwrap();
        }
        let log = find_log(&scratch, "run-stall2.wandb").expect("the run's log");
        let deadline = Instant::now() + Duration::from_secs(60);
        while common::raw::history_rows(&log) < 1000 {
            assert!(Instant::now() < deadline, "rows did not reach the log");
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(service.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = service.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the service still waits for the backend a minute after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
        assert_eq!(
            common::raw::history_rows(&log) as u64,
            1000,
            "everything accepted is in the log"
        );
        drop(run);
    });
}
