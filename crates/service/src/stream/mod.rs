//! One run: handler → writer → run files, connected by bounded channels.
//!
//! * [`handler`] (an async task) owns the run's state: history rows
//!   ([`rows`], [`history`]), summary, config, metric definitions (in
//!   [`crate::runstate`]); it answers requests about them.
//! * [`writer`] (a thread) appends records to the transaction log.
//! * [`runfiles`] (a thread) finishes the run's files and answers what
//!   must wait for everything before it.
//! * [`monitor`] (a thread) samples the machine into `stats` records.
//! * [`crate::online`] (tasks, online runs only) follows the log as it is
//!   written and sends the run to the W&B backend; it tells the run what
//!   it must know through its events (warnings, done).
//!
//! Every channel is bounded, so a slow stage slows the one before it, back
//! to the client's socket, instead of growing memory; clients' waits are
//! counted and reported ([`backpressure`]). The online sender is not such
//! a stage: it reads the log back, so a slow backend never holds a client.
//! The stream ends when its input closes (`inform_finish`) or it is told
//! to finish (teardown); each stage drains what it has, closes its files
//! and hangs up on the next.

pub(crate) mod backpressure;
mod code;
mod footer;
pub(crate) mod handler;
mod history;
pub(crate) mod monitor;
mod rows;
pub(crate) mod runfiles;
mod sampled_history;
mod tensorboard;
pub(crate) mod writer;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wandb_store::txlog::{FlushPolicy, LogWriter};

use self::handler::{Ending, Handler, SUMMARY_INTERVAL};
use crate::online;
use crate::respond::Reply;
use crate::runlog::RunLog;
use crate::settings::{ConsoleCapture, Durability, RunSettings};

/// Batches of records (up to 256 each) waiting for the handler, per run:
/// enough to keep it busy, few enough that memory stays small whatever the
/// client's pace.
const INPUT_QUEUE: usize = 4;
/// Batches of work waiting for the writer.
const WRITER_QUEUE: usize = 8;
/// Inputs the handler takes in one go before handing work to the writer.
const HANDLER_BATCH: usize = 256;
/// Records not urgent for anyone wait at most this long for company on
/// their way to the writer thread.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);
/// Work waiting for the run files writer.
const FILES_QUEUE: usize = 1024;

/// What a stream is asked to do.
#[derive(Debug)]
pub enum StreamInput {
    /// Records from a client (the bytes as sent), each with where to answer.
    Records(Vec<(Bytes, Option<Reply>)>),
    /// Finish the run if it has not exited (with this exit code), then close.
    Teardown { exit_code: i32 },
    /// A sample or the machine's description from the system monitor.
    Monitor(monitor::MonitorOutput),
    /// Files the service saved itself ([`code`]).
    SavedFiles(wandb_proto::pb::FilesRecord),
}

/// The mux's handle on a running stream.
#[derive(Debug, Clone)]
pub struct StreamHandle {
    tx: mpsc::Sender<StreamInput>,
    pub settings: Arc<RunSettings>,
    backpressure: Arc<backpressure::Backpressure>,
}

impl StreamHandle {
    /// Queues a record; waits while the stream is busy (backpressure, timed
    /// and counted). Returns false if the stream is gone.
    pub async fn send(&self, input: StreamInput) -> bool {
        match self.tx.try_send(input) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(input)) => {
                let t0 = std::time::Instant::now();
                let sent = self.tx.send(input).await.is_ok();
                self.backpressure.record(t0.elapsed());
                sent
            }
        }
    }
}

/// How long the online sender may go on once the service is stopping (its
/// launcher gone, a signal, a teardown before the run finished). A backend
/// that is down is retried for days; past this, what is unsent stays in
/// the transaction log for `wandb sync`, and the service exits.
const ONLINE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Creates the run's transaction log. In shared mode several writers of
/// one run may start in one directory within the same second (torchrun's
/// ranks on one node), so their run directories and log names are the
/// same: a writer that finds the log taken writes its own,
/// `run-<id>-<label>.wandb`, beside it. (wandb-core truncates the other
/// writer's log there.)
fn create_log(
    settings: &mut RunSettings,
    policy: FlushPolicy,
    log: &RunLog,
) -> Result<LogWriter, wandb_store::txlog::WriteError> {
    let taken = |r: &Result<LogWriter, wandb_store::txlog::WriteError>| {
        matches!(r, Err(wandb_store::txlog::WriteError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists)
    };
    let mut result = LogWriter::create(&settings.log_file, policy);
    if !(settings.shared && taken(&result)) {
        return result;
    }
    let (sync_file, log_file) = (settings.sync_file.clone(), settings.log_file.clone());
    let label = settings.writer_label();
    // The label, then (two writers given one label) the label and a random tail.
    for suffix in [label.clone(), format!("{label}-{:08x}", fastrand::u32(..))] {
        settings.sync_file = with_suffix(&sync_file, &suffix);
        settings.log_file = with_suffix(&log_file, &suffix);
        result = LogWriter::create(&settings.log_file, policy);
        if !taken(&result) {
            break;
        }
    }
    log.info(&format!(
        "stream: another writer of this shared run has its log in this directory; \
         this one writes {}",
        settings.log_file.display()
    ));
    result
}

/// `run-<id>.wandb` (or its hidden queue name) with `-<suffix>` after the run ID.
fn with_suffix(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let name = match name.split_once(".wandb") {
        Some((stem, rest)) => format!("{stem}-{suffix}.wandb{rest}"),
        None => format!("{name}-{suffix}"),
    };
    path.with_file_name(name)
}

/// Starts a stream; the returned task completes once every stage has
/// finished and the log is closed. `stopping` is cancelled when the service
/// stops; `core_log` is the process-wide log the run's logs link to.
pub fn spawn(
    mut settings: RunSettings,
    stopping: tokio_util::sync::CancellationToken,
    core_log: Option<&std::path::Path>,
) -> (StreamHandle, JoinHandle<()>) {
    let log = RunLog::open(&settings.run_id, settings.log_internal.as_deref());
    log.info(&format!(
        "stream: starting (wandb-core-rs {})",
        env!("CARGO_PKG_VERSION")
    ));
    link_core_log(&settings, core_log);

    let mut policy = FlushPolicy::default();
    if let Some(interval) = settings.flush_interval {
        policy.interval = policy.interval.min(interval);
    }
    // The log exists before anything is accepted: a run that cannot have
    // one is refused at its run record (wandb.init raises), as wandb-core
    // refuses it, instead of being accepted and never sent. Online, the
    // log is the online sender's queue: kept while the run is sent even when
    // asked to skip it (under a hidden name, see `RunSettings::log_file`).
    let skip = settings.skip_transaction_log && settings.offline;
    let (file, log_error) = if skip {
        (None, None)
    } else {
        match create_log(&mut settings, policy, &log) {
            Ok(w) => (Some(w), None),
            Err(e) => {
                let message = format!(
                    "cannot create the transaction log: {}",
                    crate::runlog::error_chain(&e)
                );
                log.error(&message);
                (None, Some(message))
            }
        }
    };
    let settings = Arc::new(settings);

    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let (to_writer, writer_rx) = flume::bounded(WRITER_QUEUE);
    // Online runs: the online sender follows what the writer commits and
    // finishes once the run files writer has written the final run files.
    let (committed_tx, committed_rx) = tokio::sync::watch::channel(0u64);
    let (files_done_tx, files_done_rx) = tokio::sync::watch::channel(false);
    let events = online::Events::new(log.clone());
    let online = (!settings.offline).then(|| {
        online::spawn(
            settings.clone(),
            log.clone(),
            committed_rx,
            files_done_rx,
            events.clone(),
        )
    });
    let (to_files, files_rx) = flume::bounded(FILES_QUEUE);

    let heartbeat = (settings.offline && file.is_some()).then(|| {
        crate::heartbeat::Heartbeat::for_log(&settings.log_file, settings.raw.host.as_deref())
    });
    let writer = writer::Writer {
        heartbeat,
        file,
        policy,
        rx: writer_rx,
        to_files,
        committed: online.is_some().then_some(committed_tx),
        log: log.clone(),
        events: events.clone(),
    };
    let run_files = runfiles::RunFiles {
        files_dir: settings.files_dir(),
        output_name: (settings.console == ConsoleCapture::On)
            .then(|| settings.output_file_name.clone()),
        chunking: settings
            .raw
            .console_multipart
            .unwrap_or(false)
            .then(|| runfiles::Chunking {
                max_bytes: settings.raw.console_chunk_max_bytes.unwrap_or(0).max(0) as u64,
                max_age: settings
                    .raw
                    .console_chunk_max_seconds
                    .filter(|s| *s > 0)
                    .map(|s| std::time::Duration::from_secs(s as u64)),
            }),
        primary: settings.primary,
        rx: files_rx,
        done: files_done_tx,
        log: log.clone(),
    };
    let run_id = settings.run_id.clone();
    let writer_thread = std::thread::Builder::new()
        .name(format!("writer-{run_id}"))
        .spawn(move || writer.run())
        .expect("spawn writer thread");
    let files_thread = std::thread::Builder::new()
        .name(format!("files-{run_id}"))
        .spawn(move || run_files.run())
        .expect("spawn run files thread");

    let mut handler = Handler::new(settings.clone(), log.clone());
    let (tb_tx, tb_rx) = flume::bounded(tensorboard::OUTPUT_QUEUE);
    handler.set_tensorboard(tensorboard::Tensorboard::new(settings.clone(), tb_tx));
    if let Some(message) = log_error {
        handler.refuse_without_log(&message);
    }
    handler.set_monitor(monitor::Monitor::spawn(&settings, tx.downgrade()));
    handler.set_code_saver(code::CodeSaver {
        settings: settings.clone(),
        log: log.clone(),
        to: tx.downgrade(),
    });
    let mut online_task = None;
    match online {
        Some(Ok((handle, task))) => {
            handler.set_online(Ok(handle));
            online_task = Some(task);
        }
        Some(Err(e)) => {
            log.error(&format!("online mode unavailable: {e}"));
            handler.set_online(Err(e.to_string()));
        }
        None => {}
    }
    let stream_settings = settings.clone();
    let backpressure = Arc::new(backpressure::Backpressure::default());
    let waits = backpressure.clone();
    let task = tokio::spawn(async move {
        let settings = stream_settings;
        // A run its client left open is finished here, and the user told
        // where it is once it is sent.
        let footer = run_handler(
            handler,
            rx,
            tb_rx,
            to_writer,
            &waits,
            &events,
            settings.durability,
        )
        .await;
        let waited = waits.total();
        if waited.waits > 0 {
            log.info(&format!(
                "stream: clients waited for room {} times, {:.3} s in all",
                waited.waits,
                waited.total.as_secs_f64()
            ));
        }
        // The handler dropped its writer channel: the writer drains and
        // closes the log, then the run files writer finishes the files.
        let _ = tokio::task::spawn_blocking(move || {
            let _ = writer_thread.join();
            let _ = files_thread.join();
        })
        .await;
        // The online sender sends what is left in the log.
        if let Some(mut task) = online_task {
            let hurry = async {
                stopping.cancelled().await;
                tokio::time::sleep(ONLINE_GRACE).await;
            };
            let sent = tokio::select! {
                sent = &mut task => sent.unwrap_or(false),
                _ = hurry => {
                    task.abort();
                    log.warn(&format!(
                        "stream: the service is stopping and the backend has not taken the whole \
                         run within {}s; the rest stays in {} for `wandb sync`",
                        ONLINE_GRACE.as_secs(),
                        settings.sync_file.display()
                    ));
                    false
                }
            };
            // The log is the only copy of what was not sent: kept, under
            // the name `wandb sync` looks for.
            if settings.log_file != settings.sync_file {
                let kept = if sent {
                    std::fs::remove_file(&settings.log_file)
                } else {
                    std::fs::rename(&settings.log_file, &settings.sync_file)
                };
                if let Err(e) = kept {
                    log.warn(&format!("stream: {}: {e}", settings.log_file.display()));
                }
            }
        }
        if let Some(due) = footer {
            footer::print(&settings, due.place.as_ref());
        }
        log.info("stream: finished");
    });
    (
        StreamHandle {
            tx,
            settings,
            backpressure,
        },
        task,
    )
}

/// The handler's task: takes what is queued (up to a batch), then hands the
/// writer what it produced in one message. Plain records linger a few
/// milliseconds to share a wake-up of the writer thread; anything someone
/// waits for goes at once. Under a strict [`Durability`], what a batch
/// produced is in the file before the next batch is taken, and what came
/// before a request is in the file before the request is answered.
async fn run_handler(
    mut handler: Handler,
    mut rx: mpsc::Receiver<StreamInput>,
    tb_rx: flume::Receiver<tensorboard::TbOutput>,
    to_writer: flume::Sender<Vec<writer::WriterMsg>>,
    waits: &backpressure::Backpressure,
    events: &online::Events,
    durability: Durability,
) -> Option<footer::Due> {
    let settle_fsync = match durability {
        Durability::Buffered => None,
        Durability::Written => Some(false),
        Durability::Synced => Some(true),
    };
    let mut footer = None;
    let mut reporter = backpressure::Reporter::default();
    let mut tick = tokio::time::interval(SUMMARY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut linger_until: Option<tokio::time::Instant> = None;
    let mut init_wait = None;
    let mut done = false;
    while !done {
        if init_wait.is_none() {
            init_wait = handler.take_init_wait();
        }
        let first = tokio::select! {
            input = rx.recv() => input,
            event = events.next() => {
                match event {
                    online::Event::Warn(message) => handler.warn_user(message),
                    online::Event::Finished => handler.online_finished(),
                }
                send(&mut handler, &to_writer).await;
                continue;
            }
            out = tb_rx.recv_async() => {
                if let Ok(out) = out {
                    handler.tensorboard_output(out);
                }
                send(&mut handler, &to_writer).await;
                continue;
            }
            result = wait_init(&mut init_wait), if init_wait.is_some() => {
                init_wait = None;
                handler.init_done(result);
                send(&mut handler, &to_writer).await;
                continue;
            }
            _ = tick.tick() => {
                if let Some(warning) = reporter.warning(waits.total()) {
                    handler.warn_user(warning);
                }
                handler.emit_summary();
                send(&mut handler, &to_writer).await;
                continue;
            }
            _ = sleep_until(linger_until) => {
                linger_until = None;
                send(&mut handler, &to_writer).await;
                continue;
            }
        };
        let mut next = first;
        let mut taken = 0;
        loop {
            match next {
                Some(StreamInput::Records(records)) => {
                    for (raw, reply) in records {
                        if handler.tensorboard_count() > 0 && is_exit(&raw) {
                            drain_tensorboard(&mut handler, &tb_rx).await;
                        }
                        if let Some(fsync) = settle_fsync
                            && reply.is_some()
                            && handler.has_output()
                        {
                            settle(&mut handler, &to_writer, fsync).await;
                        }
                        handler.record(raw, reply);
                    }
                }
                Some(StreamInput::Monitor(out)) => handler.monitor_output(out),
                Some(StreamInput::SavedFiles(files)) => handler.saved_files(files),
                Some(StreamInput::Teardown { exit_code }) => {
                    if !handler.exited() && handler.tensorboard_count() > 0 {
                        drain_tensorboard(&mut handler, &tb_rx).await;
                    }
                    if !handler.exited() {
                        footer = Some(footer::Due {
                            place: handler.run_place(),
                        });
                    }
                    handler.finish(Ending::Synthesized(exit_code));
                    done = true;
                    break;
                }
                // inform_finish: the client is done with the run.
                None => {
                    done = true;
                    break;
                }
            }
            taken += 1;
            // Hand the writer bounded batches: memory stays small however
            // much is queued behind.
            if taken >= HANDLER_BATCH || handler.output_urgent() {
                break;
            }
            match rx.try_recv() {
                Ok(input) => next = Some(input),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => next = None,
            }
        }
        if let Some(fsync) = settle_fsync
            && handler.has_output()
        {
            linger_until = None;
            settle(&mut handler, &to_writer, fsync).await;
        } else if done || handler.output_urgent() {
            linger_until = None;
            send(&mut handler, &to_writer).await;
        } else if handler.has_output() && linger_until.is_none() {
            linger_until = Some(tokio::time::Instant::now() + LINGER);
        }
    }
    footer
}

fn is_exit(raw: &[u8]) -> bool {
    wandb_proto::wire::scan_record(raw).is_ok_and(|scan| scan.record_type_name() == Some("exit"))
}

/// Before the exit: every TensorBoard directory read to its end, its last
/// rows handled.
async fn drain_tensorboard(handler: &mut Handler, tb_rx: &flume::Receiver<tensorboard::TbOutput>) {
    handler.tensorboard_closing();
    // One directory after another, in the order they were announced, as
    // wandb-core finishes them: their last rows come in a fixed order.
    let n = handler.tensorboard_count();
    let mut done = vec![false; n];
    for i in 0..n {
        handler.tensorboard_stop(i);
        while !done[i] {
            match tb_rx.recv_async().await {
                Ok(tensorboard::TbOutput::Done(j)) => {
                    if let Some(d) = done.get_mut(j) {
                        *d = true;
                    }
                }
                Ok(out) => handler.tensorboard_output(out),
                Err(_) => return,
            }
        }
    }
    handler.tensorboard_clear();
}

/// The backend's answer to `wandb.init` (a lost sender is an error).
async fn wait_init(
    wait: &mut Option<
        tokio::sync::oneshot::Receiver<Result<online::InitResult, crate::backend::BackendError>>,
    >,
) -> Result<online::InitResult, crate::backend::BackendError> {
    match wait {
        Some(rx) => rx.await.unwrap_or_else(|_| {
            Err(crate::backend::BackendError::Config(
                "the online sender stopped before the run was created".into(),
            ))
        }),
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn send(handler: &mut Handler, to_writer: &flume::Sender<Vec<writer::WriterMsg>>) {
    let batch = handler.take_output();
    if !batch.is_empty() && to_writer.send_async(batch).await.is_err() {
        tracing::error!("writer stage is gone; records dropped");
    }
}

/// Hands the writer what the handler produced and waits until it is in the
/// file (and fsynced with `fsync`).
async fn settle(
    handler: &mut Handler,
    to_writer: &flume::Sender<Vec<writer::WriterMsg>>,
    fsync: bool,
) {
    let (done, settled) = tokio::sync::oneshot::channel();
    let mut batch = handler.take_output();
    batch.push(writer::WriterMsg::Settle { fsync, done });
    if to_writer.send_async(batch).await.is_err() {
        tracing::error!("writer stage is gone; records dropped");
        return;
    }
    // An error means the writer is gone, and waiting is over either way.
    let _ = settled.await;
}

/// `logs/debug-core.log` in the run directory points at the service's
/// process-wide log, as wandb-core does.
fn link_core_log(settings: &RunSettings, core_log: Option<&std::path::Path>) {
    let (Some(dir), Some(target)) = (&settings.log_dir, core_log) else {
        return;
    };
    let link = dir.join("debug-core.log");
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(target, &link) {
        tracing::debug!(run = %settings.run_id, "cannot link {}: {e}", link.display());
    }
}

#[cfg(test)]
mod tests {
    use super::with_suffix;
    use std::path::Path;

    #[test]
    fn a_second_writers_log_is_named_after_it() {
        assert_eq!(
            with_suffix(Path::new("/w/run-x/run-abc.wandb"), "node-1"),
            Path::new("/w/run-x/run-abc-node-1.wandb")
        );
        assert_eq!(
            with_suffix(Path::new("/w/.run-abc.wandb.queue"), "n"),
            Path::new("/w/.run-abc-n.wandb.queue")
        );
    }
}
