//! The writer stage: appends records to the run's transaction log.
//!
//! A dedicated thread, since file I/O blocks. It numbers records as it
//! writes them, flushes on the log's policy and whenever it has caught up
//! with its queue, fsyncs when asked, and passes work for the run files
//! writer along in order, so it only ever acts on what is already in the
//! log.

use std::time::Duration;

use bytes::Bytes;
use wandb_store::txlog::{FlushPolicy, LogWriter, WriteError};

use super::runfiles::FilesMsg;
use crate::runlog::RunLog;
use crate::runlog::error_chain;

/// Work for the writer.
#[derive(Debug)]
pub enum WriterMsg {
    /// An encoded `Record` (its `num` is set here).
    Append(Bytes),
    /// Pass along to the run files writer once everything before it is written.
    Forward(FilesMsg),
    /// Flush and fsync everything before it, then pass `then` along.
    Sync(FilesMsg),
    /// Hand everything before it to the OS (and fsync it with `fsync`),
    /// then say so: the handler waits for this under a strict
    /// [`Durability`](crate::settings::Durability).
    Settle {
        fsync: bool,
        done: tokio::sync::oneshot::Sender<()>,
    },
}

pub struct Writer {
    /// The log, created before the run was accepted; `None` when the run
    /// keeps none (`x_skip_transaction_log`) or it could not be created.
    pub file: Option<LogWriter>,
    pub policy: FlushPolicy,
    pub rx: flume::Receiver<Vec<WriterMsg>>,
    pub to_files: flume::Sender<FilesMsg>,
    /// Online runs: how much of the log is in the file, for the online
    /// sender that follows it.
    pub committed: Option<tokio::sync::watch::Sender<u64>>,
    pub log: RunLog,
    /// Where the user hears that the log can no longer be written.
    pub events: crate::online::Events,
    /// Offline runs: beaten while the log is open (see `crate::heartbeat`).
    pub heartbeat: Option<crate::heartbeat::Heartbeat>,
}

impl Writer {
    /// Runs until the handler hangs up; then flushes, fsyncs and closes the
    /// log. Write errors are logged once and the stream goes on without a
    /// log (the SDK must still get its answers).
    pub fn run(mut self) {
        let mut log = self.file.take();
        let idle = self.policy.interval.max(Duration::from_millis(10));
        loop {
            let batch = match self.rx.recv_timeout(idle) {
                Ok(batch) => batch,
                Err(flume::RecvTimeoutError::Timeout) => {
                    if let Some(w) = &mut log {
                        self.check(w.flush_if_due().map(|_| ()), &mut log);
                    }
                    self.publish(&log);
                    self.beat(&log);
                    continue;
                }
                Err(flume::RecvTimeoutError::Disconnected) => break,
            };
            for msg in batch {
                match msg {
                    WriterMsg::Append(record) => {
                        if let Some(w) = &mut log {
                            let result = w.append(&record).map(|_| ());
                            self.check(result, &mut log);
                        }
                    }
                    WriterMsg::Forward(then) => self.forward(then),
                    WriterMsg::Sync(then) => {
                        if let Some(w) = &mut log {
                            let result = w.sync();
                            self.check(result, &mut log);
                        }
                        self.publish(&log);
                        self.forward(then);
                    }
                    WriterMsg::Settle { fsync, done } => {
                        if let Some(w) = &mut log {
                            let result = if fsync { w.sync() } else { w.flush() };
                            self.check(result, &mut log);
                        }
                        self.publish(&log);
                        // A handler that stopped waiting has nothing to learn.
                        let _ = done.send(());
                    }
                }
            }
            // Caught up: hand what we hold to the OS now. Under load the
            // queue is never empty and records go out in the policy's big
            // writes; once the writer keeps up, a kill -9 of the service
            // loses only what it had not yet received (the policy's
            // 500 ms / 256 KiB alone lost over 1,000 rows of a burst).
            if self.rx.is_empty()
                && let Some(w) = &mut log
            {
                self.check(w.flush(), &mut log);
            }
            self.publish(&log);
            self.beat(&log);
        }
        if let Some(hb) = self.heartbeat.take() {
            hb.stop();
        }
        if let Some(w) = log {
            match w.close() {
                Ok(len) => self
                    .log
                    .info(&format!("transaction log closed ({len} bytes)")),
                Err(e) => self
                    .log
                    .error(&format!("closing the transaction log: {}", error_chain(&e))),
            }
        }
    }

    /// The heartbeat, while there is a log to vouch for (the writer wakes at
    /// least every flush interval, so it is never late by more than that).
    fn beat(&mut self, log: &Option<LogWriter>) {
        if let (Some(hb), Some(_)) = (&mut self.heartbeat, log) {
            hb.beat_if_due();
        }
    }

    /// Tells the online sender how far the file goes.
    fn publish(&self, log: &Option<LogWriter>) {
        if let (Some(tx), Some(w)) = (&self.committed, log) {
            let len = w.flushed_len();
            tx.send_if_modified(|v| {
                let changed = *v != len;
                *v = len;
                changed
            });
        }
    }

    fn forward(&self, msg: FilesMsg) {
        // The sender outlives the writer; a send fails only if it crashed.
        let _ = self.to_files.send(msg);
    }

    fn check(&self, result: Result<(), WriteError>, log: &mut Option<LogWriter>) {
        if let Err(e) = result {
            match e {
                // A malformed record is that record's problem only.
                WriteError::Record { .. } => self
                    .log
                    .warn(&format!("record not written: {}", error_chain(&e))),
                WriteError::Io { .. } => {
                    // The disk is full or gone: the run goes on (answers,
                    // other runs), and the user is told what is not kept.
                    let message = format!(
                        "transaction log write failed, no more records will be written: {}",
                        error_chain(&e)
                    );
                    self.log.error(&message);
                    self.events.warn(message);
                    *log = None;
                }
            }
        }
    }
}
