//! `run-<id>.wandb.syncstate`: where a run's uploads start, kept beside its
//! transaction log, as wandb-core keeps it (online runs and syncs).
//!
//! A resumed or forked run starts at a step (and runtime) learned from the
//! server at its first upload. Stored once, it is what every later upload
//! of the same log uses (a `wandb sync` of it, or several at once), even
//! though the server's answer has moved on by then. The read-check-write
//! happens under an exclusive lock on the file so that concurrent syncs
//! agree.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The starting point of a run's uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Start {
    pub step: i64,
    pub runtime_ms: i64,
}

/// The sync state file of the log at `log`.
pub(super) fn path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".syncstate");
    PathBuf::from(name)
}

/// The start stored for the log at `log`; stores `start` first if none is.
pub(super) fn get_or_init(log: &Path, start: Start) -> std::io::Result<Start> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path(log))?;
    // std's file lock (Rust 1.89); the declared MSRV predates it, and the
    // toolchain that builds the project is newer.
    #[allow(clippy::incompatible_msrv)]
    file.lock()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    if !text.trim().is_empty() {
        let stored: Value = serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path(log).display()),
            )
        })?;
        if let Some(step) = stored.get("starting_step").and_then(Value::as_i64) {
            return Ok(Start {
                step,
                runtime_ms: stored
                    .get("starting_runtime")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            });
        }
    }
    // wandb-core's field names, in its order.
    let body = format!(
        "{{\"starting_step\":{},\"starting_runtime\":{}}}",
        start.step, start.runtime_ms
    );
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(body.as_bytes())?;
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_stored_is_the_one_every_later_upload_uses() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run-x.wandb");
        let first = Start {
            step: 7,
            runtime_ms: 547,
        };
        assert_eq!(get_or_init(&log, first).unwrap(), first);
        assert_eq!(
            std::fs::read_to_string(path(&log)).unwrap(),
            r#"{"starting_step":7,"starting_runtime":547}"#
        );
        let later = Start {
            step: 100,
            runtime_ms: 9000,
        };
        assert_eq!(get_or_init(&log, later).unwrap(), first);
        // A file that cannot be read is an error, not a silent restart.
        std::fs::write(path(&log), "not json").unwrap();
        assert!(get_or_init(&log, later).is_err());
    }
}
