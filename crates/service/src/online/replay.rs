//! Sending a run from an existing transaction log (`wandb sync`), with the
//! same follower that sends live runs: from the log's first run record,
//! continuing where the server's data ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use wandb_proto::pb;

use super::events::{Event, Events};
use super::uploads::UploadStats;
use super::{InitResult, Sender};
use crate::backend::{Backend, BackendConfig, BackendError};
use crate::runlog::RunLog;
use crate::settings::RunSettings;

/// Reports a failure to the user (sync prints it).
pub type Warn = Arc<dyn Fn(String) + Send + Sync>;

/// How far a replay has read its log (for progress bars).
#[derive(Debug, Default)]
pub struct ReplayProgress {
    pub bytes_read: std::sync::atomic::AtomicU64,
    pub records: std::sync::atomic::AtomicU64,
    pub history_sent: std::sync::atomic::AtomicU64,
    /// History rows the server already had (a continued sync).
    pub history_skipped: std::sync::atomic::AtomicU64,
}

/// A run to send from an existing transaction log (`sync`).
pub struct Replay {
    /// Settings with `sync_file`/`sync_dir` of the run and the backend's
    /// address and key.
    pub settings: Arc<RunSettings>,
    /// The log's first run record, with any overrides applied.
    pub run: pb::RunRecord,
    /// Follow the log while it grows, until its exit record.
    pub live: bool,
    /// Live: give up on the writer once it has shown no sign of life (its
    /// heartbeat, the log's growth) for this long; the run is then left
    /// unfinished on the server, which shows it crashed.
    pub stale_after: Option<Duration>,
    pub progress: Arc<ReplayProgress>,
    pub log: RunLog,
    /// Warnings for the user.
    pub warn: Warn,
    /// Called once the run exists on the server.
    pub ready: Box<dyn FnOnce(&InitResult) + Send>,
}

/// How a replay ended.
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    pub entity: String,
    pub project: String,
    pub name: String,
    /// The log has no exit record (its process crashed): the run was
    /// finished with exit code 1, as wandb-core's sync does.
    pub exit_synthesized: bool,
    /// The log ends in the middle of a record.
    pub torn: bool,
    /// Every file stream request went through.
    pub file_stream_ok: bool,
    /// The writer was judged gone ([`Replay::stale_after`]) before an
    /// exit record: the run is left unfinished (crashed).
    pub writer_gone: bool,
}

/// Sends a run from its transaction log, with the same code that sends live
/// runs. Continues where the server's data ends: history, events and
/// console lines the server already has are skipped, so a sync interrupted
/// at any point and run again neither loses nor duplicates rows.
pub async fn replay(r: Replay) -> Result<ReplayOutcome, BackendError> {
    let backend = Backend::new(BackendConfig::from_settings(&r.settings.raw)?)?;
    let (committed_tx, committed) = watch::channel(0u64);
    let (_files_tx, files_done) = watch::channel(true);
    // Warnings go to the caller as they come, until the sender is done.
    let events = Events::new(r.log.clone());
    let forward = {
        let (warn, events) = (r.warn.clone(), events.clone());
        tokio::spawn(async move {
            while let Event::Warn(m) = events.next().await {
                warn(m);
            }
        })
    };
    // Live: tell the follower whenever the log grows; otherwise the log is
    // complete as it is (the sender dropped = "writer gone").
    let writer_gone = Arc::new(AtomicBool::new(false));
    let poller = if r.live {
        let path = r.settings.log_file.clone();
        let (stale_after, gone) = (r.stale_after, writer_gone.clone());
        Some(tokio::spawn(async move {
            let mut last = 0;
            loop {
                let len = tokio::fs::metadata(&path)
                    .await
                    .map(|m| m.len())
                    .unwrap_or(0);
                if len != last {
                    last = len;
                    if committed_tx.send(len).is_err() {
                        return;
                    }
                } else if stale_after.is_some_and(|limit| crate::heartbeat::is_quiet(&path, limit))
                {
                    // Dropping the sender tells the follower the writer
                    // is gone: it sends what the log holds and stops.
                    gone.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }))
    } else {
        drop(committed_tx);
        None
    };
    let sender = Sender {
        stats: Arc::new(UploadStats::default()),
        settings: r.settings.clone(),
        backend,
        log: r.log.clone(),
        committed,
        files_done,
        events: events.clone(),
        stopped: Arc::new(AtomicBool::new(false)),
        progress: Some(r.progress.clone()),
        unfinished_if_no_exit: r.stale_after.is_some(),
    };
    let result = match sender.init(&r.run).await {
        Ok(init) => {
            (r.ready)(&init);
            // No handler: nobody sends control messages.
            let (ctl_tx, ctl_rx) = mpsc::channel(1);
            drop(ctl_tx);
            let (entity, project, name) =
                (init.entity.clone(), init.project.clone(), init.name.clone());
            let followed = sender.follow(init, r.run, ctl_rx, Vec::new()).await;
            Ok(ReplayOutcome {
                entity,
                project,
                name,
                exit_synthesized: followed.exit_synthesized,
                torn: followed.torn,
                file_stream_ok: followed.file_stream_ok,
                // No exit record was sent (a follower that read one sends it).
                writer_gone: writer_gone.load(Ordering::SeqCst)
                    && !followed.sent
                    && followed.file_stream_ok,
            })
        }
        Err(e) => Err(e),
    };
    if let Some(p) = poller {
        p.abort();
    }
    // A failed init never announced it: the forwarder ends either way.
    events.finished();
    let _ = forward.await;
    result
}
