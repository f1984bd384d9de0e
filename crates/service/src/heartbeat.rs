//! The heartbeat of an offline run: `run-<id>.wandb.heartbeat` beside the
//! log, rewritten every few seconds while a service holds the log open
//! (the stream's writer beats it) and removed when the log is closed.
//!
//! Why: on a cluster the run is written on a compute node and uploaded
//! from a login node (`wandb-core sync --watch`) that only sees the shared
//! filesystem. A log that stops growing may be a quiet run or a dead one;
//! a heartbeat that stops says which. Its content (host, pid, time) tells
//! a person which process it was.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The heartbeat file's suffix, after the log's name.
pub const SUFFIX: &str = ".heartbeat";

/// How often a live run's heartbeat is rewritten, unless
/// `WANDB_CORE_HEARTBEAT_INTERVAL` (a duration: `5s`, `500ms`) says
/// otherwise where the service starts.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// `run-<id>.wandb.heartbeat` for `log`.
pub fn path_for(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(SUFFIX);
    PathBuf::from(name)
}

/// How long ago the writer of `log` was last seen alive: the newer of its
/// heartbeat's and the log's modification times (a service without
/// heartbeats, W&B's or an older one, still grows the log). `None` if
/// neither can be read.
pub fn last_sign_of_life(log: &Path) -> Option<Duration> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest = [modified(&path_for(log)), modified(log)]
        .into_iter()
        .flatten()
        .max()?;
    Some(
        SystemTime::now()
            .duration_since(newest)
            .unwrap_or(Duration::ZERO),
    )
}

/// Whether the writer of `log` has shown no sign of life for longer than
/// `limit` (or none can be read): the one test of a dead writer, for the
/// live follower, the wait for a run record and the watcher.
pub fn is_quiet(log: &Path, limit: Duration) -> bool {
    last_sign_of_life(log).is_none_or(|quiet| quiet > limit)
}

/// The interval from the environment, else [`DEFAULT_INTERVAL`].
fn interval() -> Duration {
    std::env::var("WANDB_CORE_HEARTBEAT_INTERVAL")
        .ok()
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL)
}

/// A run's heartbeat, beaten by the thread that writes its log.
pub(crate) struct Heartbeat {
    path: PathBuf,
    every: Duration,
    last: Option<Instant>,
    host: String,
}

impl Heartbeat {
    pub(crate) fn for_log(log: &Path, host: Option<&str>) -> Self {
        let host = host
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_default();
        Self {
            path: path_for(log),
            every: interval(),
            last: None,
            host,
        }
    }

    /// Rewrites the file if the interval has passed. A failure is not the
    /// run's: the log is what matters, and a watcher falls back on its
    /// modification time.
    pub(crate) fn beat_if_due(&mut self) {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        self.last = Some(Instant::now());
        let time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let body = serde_json::json!({
            "host": self.host,
            "pid": std::process::id(),
            "time": time,
            "interval_seconds": self.every.as_secs_f64(),
        });
        if let Err(e) = wandb_store::write_atomically(&self.path, body.to_string().as_bytes()) {
            tracing::debug!("heartbeat {}: {e}", self.path.display());
        }
    }

    /// The log is closed: no more heartbeats, and none left to look alive.
    pub(crate) fn stop(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_then_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run-a.wandb");
        std::fs::write(&log, b"").unwrap();
        let mut hb = Heartbeat::for_log(&log, Some("node7"));
        hb.beat_if_due();
        let text = std::fs::read_to_string(path_for(&log)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["host"], "node7");
        assert_eq!(v["pid"], std::process::id());
        assert!(last_sign_of_life(&log).unwrap() < Duration::from_secs(5));
        hb.stop();
        assert!(!path_for(&log).exists());
        assert!(last_sign_of_life(&dir.path().join("run-b.wandb")).is_none());
    }
}
