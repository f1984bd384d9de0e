//! The handler stage: owns the run's state and answers what needs it.
//!
//! Records arrive as the bytes the client sent. Most are written to the log
//! as they are (so fields we do not model survive); `partial_history`
//! requests become history rows and summary records; requests are answered
//! here when the answer depends on the run's state (run, history step,
//! summary, sampled history), or passed down the pipeline when it must
//! wait for what came before (exit, poll_exit, shutdown). Every request that
//! carries a `request_id` gets an answer.
//!
//! Summary records are coalesced: wandb-core writes two per logged row,
//! which more than doubles the log; we write the changed leaves at most
//! every [`SUMMARY_INTERVAL`], and always at exit.
//!
//! `Handler` is synchronous (records in; work for the writer and answers
//! out), so each part is tested without a socket or a runtime:
//! [`init`] (the run record and `wandb.init`'s answer), [`requests`] (one
//! method per request kind), [`rows`] (`run.log` and the summary records),
//! [`finish`] (exit, environment, the offline footer).

mod clock;
mod finish;
mod init;
mod requests;
mod rows;
mod tensorboard;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::response::ResponseType;

use wandb_proto::view::PartialHistoryView;

use self::init::PendingInit;
use super::code::CodeSaver;
use super::history::History;
use super::monitor::{Monitor, MonitorOutput};
use super::runfiles::FilesMsg;
use super::writer::WriterMsg;
use crate::online::OnlineHandle;
use crate::respond::Reply;
use crate::runlog::RunLog;
use crate::runstate::config::RunConfig;
use crate::runstate::keys::KeyId;
use crate::settings::RunSettings;

/// Longest a reader of the log waits for a summary that reflects the rows
/// before it.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// Records the handler collects before waking the writer.
const OUTPUT_BATCH: usize = 256;

/// What goes into the header record's `version_info` beside
/// [`crate::PRODUCER`].
const MIN_CONSUMER: &str = "0.70.0";

/// How a run ends.
#[derive(Debug)]
pub enum Ending {
    /// The SDK sent its exit record (decoded), maybe waiting for the answer.
    Exit(Box<pb::Record>, Option<Reply>),
    /// The service is shutting down: write an exit record with this code.
    Synthesized(i32),
}

pub struct Handler {
    settings: Arc<RunSettings>,
    log: RunLog,
    /// Work for the writer, sent in batches by the stream's task.
    out: Vec<WriterMsg>,

    /// The run as the SDK described it (run record, then run_start).
    run: Option<pb::RunRecord>,
    /// Wall-clock start of the run, in seconds since the epoch.
    start: Option<f64>,
    /// `_runtime`: from run start (plus a resumed run's), paused with it.
    clock: clock::RunClock,

    /// Steps, the pending row, summary, metric definitions, samples.
    history: History,
    /// `_wandb.runtime` and `_runtime` in the summary.
    k_wandb_runtime: KeyId,
    k_runtime: KeyId,
    config: RunConfig,
    last_summary_emit: Instant,
    /// When `wandb-summary.json` may be rebuilt next (see `emit_summary`).
    summary_file_due: Instant,

    warnings: Vec<String>,
    pending_messages: Option<Reply>,
    exited: bool,

    /// Online runs: the sender that talks to the backend.
    online: Option<OnlineHandle>,
    /// Why the run cannot start (no transaction log; online asked for but
    /// impossible: no API key, bad base URL): `wandb.init` fails with it.
    refusal: Option<pb::ErrorInfo>,
    /// The run record waiting for the backend (answered by
    /// [`init_done`](Self::init_done)).
    pending_init: Option<PendingInit>,
    /// The online sender finished (the run is complete on the backend, or
    /// will never be).
    online_done: bool,

    /// The system monitor (stopped at exit).
    monitor: Option<Monitor>,
    /// TensorBoard log directories followed (`sync_tensorboard`).
    tensorboard: Option<super::tensorboard::Tensorboard>,
    /// Saves the code and git patches at run start (taken then).
    code: Option<CodeSaver>,
    /// This stream's writer id, in its environment records.
    writer_id: String,
    /// Recent samples per metric for `get_system_metrics`.
    system_metrics:
        std::collections::HashMap<String, std::collections::VecDeque<pb::SystemMetricSample>>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A summary item for a key: `key` for one-element paths, `nested_key` for
/// deeper ones (how the SDK reads summaries), or always `nested_key` (how
/// wandb-core writes summary records).
fn summary_item(path: &[String], value_json: String, prefer_key: bool) -> pb::SummaryItem {
    if prefer_key && path.len() == 1 {
        pb::SummaryItem {
            key: path[0].clone(),
            value_json,
            ..Default::default()
        }
    } else {
        pb::SummaryItem {
            nested_key: path.to_vec(),
            value_json,
            ..Default::default()
        }
    }
}

impl Handler {
    pub fn new(settings: Arc<RunSettings>, log: RunLog) -> Self {
        let mut history = History::new(settings.shared, settings.server_side_derived_summary);
        let k_wandb_runtime = history.keys.path_id(&["_wandb", "runtime"]);
        let k_runtime = history.keys.top("_runtime");
        Self {
            start: settings.start_time,
            settings,
            log,
            out: Vec::new(),
            run: None,
            clock: clock::RunClock::default(),
            history,
            k_wandb_runtime,
            k_runtime,
            config: RunConfig::default(),
            last_summary_emit: Instant::now(),
            summary_file_due: Instant::now(),
            warnings: Vec::new(),
            pending_messages: None,
            exited: false,
            online: None,
            refusal: None,
            pending_init: None,
            online_done: false,
            monitor: None,
            tensorboard: None,
            code: None,
            writer_id: uuid::Uuid::now_v7().to_string(),
            system_metrics: Default::default(),
        }
    }

    /// Gives the handler its system monitor.
    pub fn set_monitor(&mut self, monitor: Monitor) {
        self.monitor = Some(monitor);
    }

    pub(crate) fn set_code_saver(&mut self, saver: CodeSaver) {
        self.code = Some(saver);
    }

    /// Files the service saved itself (code, git patches): announced in
    /// the log, so they are uploaded (and synced) like the SDK's own.
    pub fn saved_files(&mut self, files: pb::FilesRecord) {
        if !self.exited {
            self.emit(RecordType::Files(files));
        }
    }

    /// A sample or the machine's description from the monitor.
    pub fn monitor_output(&mut self, out: MonitorOutput) {
        if self.exited {
            return; // nothing is written after the exit record
        }
        match out {
            MonitorOutput::Stats(stats) => {
                self.buffer_system_metrics(&stats);
                self.emit(RecordType::Stats(stats));
            }
            MonitorOutput::Environment(env) => {
                // `_wandb.e` of config.yaml, as wandb-core keeps it.
                self.config.add_environment(&env);
                self.emit(RecordType::Environment(*env));
            }
        }
    }

    /// Keeps the last `x_stats_buffer_size` samples of each metric (none
    /// for 0, all for a negative size), under keys without the label.
    fn buffer_system_metrics(&mut self, stats: &pb::StatsRecord) {
        let size = self.settings.raw.x_stats_buffer_size.unwrap_or(0);
        if size == 0 {
            return;
        }
        let suffix = self
            .settings
            .raw
            .x_label
            .as_ref()
            .filter(|l| !l.is_empty())
            .map(|l| format!("/l:{l}"));
        for item in &stats.item {
            let Ok(value) = item.value_json.parse::<f64>() else {
                continue;
            };
            let key = match &suffix {
                Some(s) => item.key.strip_suffix(s.as_str()).unwrap_or(&item.key),
                None => &item.key,
            };
            let samples = self.system_metrics.entry(key.to_string()).or_default();
            samples.push_back(pb::SystemMetricSample {
                timestamp: stats.timestamp,
                value: value as f32,
            });
            if size > 0 && samples.len() > size as usize {
                samples.pop_front();
            }
        }
    }

    pub fn exited(&self) -> bool {
        self.exited
    }

    /// Queues work for the writer; [`take_output`](Self::take_output) hands
    /// it over in one batch per wake-up, so the writer thread is woken once
    /// per batch rather than once per record.
    fn queue(&mut self, msg: WriterMsg) {
        self.out.push(msg);
    }

    /// The writer's work produced since the last call.
    pub fn take_output(&mut self) -> Vec<WriterMsg> {
        std::mem::take(&mut self.out)
    }

    /// Whether queued work must reach the writer now: something waits on it
    /// (an answer, run files), or enough has accumulated. Plain records may
    /// wait a few milliseconds to share a wake-up of the writer thread.
    pub fn output_urgent(&self) -> bool {
        self.out.len() >= OUTPUT_BATCH
            || self.out.iter().any(|m| !matches!(m, WriterMsg::Append(_)))
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    fn persist(&mut self, raw: Bytes) {
        self.queue(WriterMsg::Append(raw));
    }

    fn emit(&mut self, record_type: RecordType) {
        let record = pb::Record {
            record_type: Some(record_type),
            ..Default::default()
        };
        self.persist(Bytes::from(record.encode_to_vec()));
    }

    fn forward(&mut self, msg: FilesMsg) {
        self.queue(WriterMsg::Forward(msg));
    }

    fn runtime(&self) -> f64 {
        self.clock.elapsed()
    }

    /// Handles one record from a client.
    pub fn record(&mut self, raw: Bytes, reply: Option<Reply>) {
        self.log.debug(|| {
            let scan = wandb_proto::wire::scan_record(&raw).unwrap_or_default();
            format!(
                "handling record: {} (num {})",
                scan.record_type_name().unwrap_or("unknown"),
                scan.num.unwrap_or_default()
            )
        });
        // `run.log()` skips the full decode.
        if let Ok(Some(view)) = PartialHistoryView::from_record(&raw) {
            self.partial_history(&view);
            if let Some(reply) = reply {
                reply.response(None);
            }
            return;
        }
        let record = match pb::Record::decode(raw.clone()) {
            Ok(r) => r,
            Err(e) => {
                self.log
                    .warn(&format!("record does not decode, dropped: {e}"));
                if let Some(reply) = reply {
                    reply.error(format!("malformed record: {e}"));
                }
                return;
            }
        };
        let Some(record_type) = record.record_type else {
            if let Some(reply) = reply {
                reply.error("record has no type (unknown to wandb-core-rs, or empty)");
            }
            return;
        };
        match record_type {
            RecordType::Request(req) => self.request(req, reply),
            RecordType::Header(mut header) => {
                header.version_info = Some(pb::VersionInfo {
                    producer: crate::PRODUCER.to_string(),
                    min_consumer: MIN_CONSUMER.to_string(),
                    ..Default::default()
                });
                let rec = pb::Record {
                    record_type: Some(RecordType::Header(header)),
                    ..record
                };
                self.persist(Bytes::from(rec.encode_to_vec()));
                if let Some(reply) = reply {
                    reply.result(pb::result::ResultType::Response(pb::Response::default()));
                }
            }
            RecordType::Run(run) => self.run_record(run, raw, reply),
            RecordType::Tbrecord(tb) => {
                self.persist(raw);
                self.ack(reply);
                self.tbrecord(tb);
            }
            RecordType::Exit(_) => {
                let rec = pb::Record::decode(raw).expect("decoded above");
                self.finish(Ending::Exit(Box::new(rec), reply));
            }
            RecordType::Summary(s) => {
                self.history.summary.apply_user(&mut self.history.keys, &s);
                self.persist(raw);
                self.ack(reply);
            }
            RecordType::Config(c) => {
                self.config.apply(&c);
                self.persist(raw);
                self.forward(FilesMsg::Config(self.config.to_yaml(&self.history.metrics)));
                self.ack(reply);
            }
            RecordType::Metric(m) => {
                self.history.define_metric(&m);
                // 0.31.0 does not persist glob expansions.
                if !m.expanded_from_glob {
                    self.persist(raw);
                }
                self.ack(reply);
            }
            RecordType::Telemetry(t) => {
                self.config.merge_telemetry(&t);
                self.persist(raw);
                self.ack(reply);
            }
            RecordType::OutputRaw(o) => {
                let stderr = o.output_type() == pb::output_raw_record::OutputType::Stderr;
                self.persist(raw);
                self.forward(FilesMsg::Console {
                    stderr,
                    text: o.line,
                });
                self.ack(reply);
            }
            RecordType::Output(o) => {
                let stderr = o.output_type() == pb::output_record::OutputType::Stderr;
                self.persist(raw);
                self.forward(FilesMsg::Console {
                    stderr,
                    text: o.line,
                });
                self.ack(reply);
            }
            RecordType::OutputLogger(o) => {
                self.persist(raw);
                self.forward(FilesMsg::LoggerLines(o.line));
                self.ack(reply);
            }
            // Never written by wandb-core either.
            RecordType::Final(_) | RecordType::Footer(_) | RecordType::NoopLinkArtifact(_) => {
                self.ack(reply)
            }
            // Everything else goes to the log as sent.
            _ => {
                self.persist(raw);
                self.ack(reply);
            }
        }
    }

    /// Records that the SDK publishes do not expect answers; if one carries
    /// a request id anyway, it gets an empty result rather than silence.
    fn ack(&self, reply: Option<Reply>) {
        if let Some(reply) = reply {
            reply.result(pb::result::ResultType::Response(pb::Response::default()));
        }
    }

    fn ack_response(&self, reply: Option<Reply>, response: Option<ResponseType>) {
        if let Some(reply) = reply {
            reply.response(response);
        }
    }

    fn answer_messages(&mut self, reply: &Reply) {
        let warning = std::mem::take(&mut self.warnings);
        reply.response(Some(ResponseType::InternalMessagesResponse(
            pb::InternalMessagesResponse {
                messages: Some(pb::InternalMessages { warning }),
            },
        )));
    }

    /// The SDK's message loop ends (an empty answer) once the run exited and
    /// nothing more can go wrong on its way to the backend.
    fn messages_closed(&self) -> bool {
        self.exited && (self.online.is_none() || self.online_done)
    }

    /// The online sender is done: answers a waiting message request.
    pub fn online_finished(&mut self) {
        self.online_done = true;
        if self.messages_closed()
            && let Some(pending) = self.pending_messages.take()
        {
            self.answer_messages(&pending);
        }
    }

    /// Tells the user something went wrong (printed by the SDK).
    pub fn warn_user(&mut self, message: String) {
        self.log.warn(&message);
        self.warnings.push(message);
        if let Some(reply) = self.pending_messages.take() {
            self.answer_messages(&reply);
        }
    }

    fn starting_step(&self) -> i64 {
        self.run.as_ref().map_or(0, |r| r.starting_step)
    }
}
