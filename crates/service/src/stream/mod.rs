//! One run: handler → writer → sender, connected by bounded channels.
//!
//! * [`handler`] (an async task) owns the run's state: history rows,
//!   summary, config, metric definitions; it answers requests about them.
//! * [`writer`] (a thread) appends records to the transaction log.
//! * [`sender`] (a thread) finishes the run's files offline and answers what
//!   must wait for everything before it.
//!
//! Every channel is bounded, so a slow stage slows the one before it, back
//! to the client's socket, instead of growing memory. The stream ends when
//! its input closes (`inform_finish`) or it is told to finish (teardown);
//! each stage drains what it has, closes its files and hangs up on the next.

pub mod config;
pub mod console;
pub mod handler;
pub mod history;
pub mod metrics;
pub mod sampler;
pub mod sender;
pub mod summary;
pub mod writer;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wandb_store::txlog::FlushPolicy;

use self::handler::{Ending, Handler, SUMMARY_INTERVAL};
use crate::respond::Reply;
use crate::runlog::RunLog;
use crate::settings::{Console, RunSettings};

/// Records waiting for the handler, per run.
const INPUT_QUEUE: usize = 1024;
/// Records waiting for the writer.
const WRITER_QUEUE: usize = 4096;
/// Work waiting for the sender.
const SENDER_QUEUE: usize = 1024;

/// What a stream is asked to do.
#[derive(Debug)]
pub enum StreamInput {
    /// A record from a client (the bytes as sent), and where to answer.
    Record { raw: Bytes, reply: Option<Reply> },
    /// Finish the run if it has not exited (with this exit code), then close.
    Teardown { exit_code: i32 },
}

/// The mux's handle on a running stream.
#[derive(Debug, Clone)]
pub struct StreamHandle {
    tx: mpsc::Sender<StreamInput>,
    pub settings: Arc<RunSettings>,
}

impl StreamHandle {
    /// Queues a record; waits while the stream is busy (backpressure).
    /// Returns false if the stream is gone.
    pub async fn send(&self, input: StreamInput) -> bool {
        self.tx.send(input).await.is_ok()
    }
}

/// Starts a stream; the returned task completes once every stage has
/// finished and the log is closed.
pub fn spawn(settings: RunSettings) -> (StreamHandle, JoinHandle<()>) {
    let settings = Arc::new(settings);
    let log = RunLog::open(&settings.run_id, settings.log_internal.as_deref());
    log.info(&format!(
        "stream: starting (wandb-core-rs {})",
        env!("CARGO_PKG_VERSION")
    ));
    link_core_log(&settings);

    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let (to_writer, writer_rx) = flume::bounded(WRITER_QUEUE);
    let (to_sender, sender_rx) = flume::bounded(SENDER_QUEUE);

    let mut policy = FlushPolicy::default();
    if let Some(interval) = settings.flush_interval {
        policy.interval = policy.interval.min(interval);
    }
    let writer = writer::Writer {
        path: settings.sync_file.clone(),
        policy,
        skip: settings.skip_transaction_log,
        rx: writer_rx,
        to_sender,
        log: log.clone(),
    };
    let sender = sender::Sender {
        files_dir: settings.files_dir(),
        output_name: (settings.console == Console::On).then(|| settings.output_file_name.clone()),
        rx: sender_rx,
        log: log.clone(),
    };
    let run_id = settings.run_id.clone();
    let writer_thread = std::thread::Builder::new()
        .name(format!("writer-{run_id}"))
        .spawn(move || writer.run())
        .expect("spawn writer thread");
    let sender_thread = std::thread::Builder::new()
        .name(format!("sender-{run_id}"))
        .spawn(move || sender.run())
        .expect("spawn sender thread");

    let handler = Handler::new(settings.clone(), log.clone(), to_writer);
    let task = tokio::spawn(async move {
        run_handler(handler, rx).await;
        // The handler dropped its writer channel: the writer drains and
        // closes the log, then the sender finishes the files.
        let _ = tokio::task::spawn_blocking(move || {
            let _ = writer_thread.join();
            let _ = sender_thread.join();
        })
        .await;
        log.info("stream: finished");
    });
    (StreamHandle { tx, settings }, task)
}

async fn run_handler(mut handler: Handler, mut rx: mpsc::Receiver<StreamInput>) {
    let mut tick = tokio::time::interval(SUMMARY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            input = rx.recv() => match input {
                Some(StreamInput::Record { raw, reply }) => handler.record(raw, reply).await,
                Some(StreamInput::Teardown { exit_code }) => {
                    let print_footer = !handler.exited();
                    handler.finish(Ending::Synthesized(exit_code)).await;
                    if print_footer {
                        handler.print_offline_footer();
                    }
                    break;
                }
                // inform_finish: the client is done with the run.
                None => break,
            },
            _ = tick.tick() => handler.emit_summary().await,
        }
    }
}

/// `logs/debug-core.log` in the run directory points at the service's
/// process-wide log, as wandb-core does.
fn link_core_log(settings: &RunSettings) {
    let (Some(dir), Some(target)) = (&settings.log_dir, crate::logging::core_log_path()) else {
        return;
    };
    let link = dir.join("debug-core.log");
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(target, &link) {
        tracing::debug!(run = %settings.run_id, "cannot link {}: {e}", link.display());
    }
}
