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

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::response::ResponseType;

use wandb_proto::view::PartialHistoryView;

use super::config::RunConfig;
use super::keys::KeyId;
use super::monitor::{Monitor, MonitorOutput};
use super::online::{InitResult, OnlineCtl, OnlineHandle};
use super::sender::{Answer, SenderMsg};
use super::steps::{History, Rejected};
use super::writer::WriterMsg;
use crate::respond::Reply;
use crate::runlog::RunLog;
use crate::settings::RunSettings;

/// Longest a reader of the log waits for a summary that reflects the rows
/// before it.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// Records the handler collects before waking the writer.
const OUTPUT_BATCH: usize = 256;

/// What goes into the header record's `version_info`.
pub const PRODUCER: &str = concat!("0.31.0+wandb-core-rs.", env!("CARGO_PKG_VERSION"));
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
    resumed_runtime: f64,

    /// Steps, the pending row, summary, metric definitions, samples.
    history: History,
    /// `_wandb.runtime` and `_runtime` in the summary.
    k_wandb_runtime: KeyId,
    k_runtime: KeyId,
    config: RunConfig,
    last_summary_emit: Instant,

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
    /// This stream's writer id, in its environment records.
    writer_id: String,
    /// Recent samples per metric for `get_system_metrics`.
    system_metrics:
        std::collections::HashMap<String, std::collections::VecDeque<pb::SystemMetricSample>>,
}

/// `wandb.init` waiting for the run to be created on the backend.
pub struct PendingInit {
    reply: Option<Reply>,
    answer: pb::RunRecord,
    /// Taken by the stream's task, which awaits it.
    pub wait:
        Option<tokio::sync::oneshot::Receiver<Result<InitResult, crate::backend::BackendError>>>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn timestamp_secs(t: &prost_types::Timestamp) -> f64 {
    t.seconds as f64 + f64::from(t.nanos) / 1e9
}

fn timestamp_now() -> prost_types::Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
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
            resumed_runtime: 0.0,
            history,
            k_wandb_runtime,
            k_runtime,
            config: RunConfig::default(),
            last_summary_emit: Instant::now(),
            warnings: Vec::new(),
            pending_messages: None,
            exited: false,
            online: None,
            refusal: None,
            pending_init: None,
            online_done: false,
            monitor: None,
            writer_id: uuid::Uuid::now_v7().to_string(),
            system_metrics: Default::default(),
        }
    }

    /// Gives the handler its system monitor.
    pub fn set_monitor(&mut self, monitor: Monitor) {
        self.monitor = Some(monitor);
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
            MonitorOutput::Environment(env) => self.emit(RecordType::Environment(*env)),
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

    /// The run cannot start: its run record is answered with this error,
    /// which wandb.init raises.
    pub fn refuse_init(&mut self, error: pb::ErrorInfo) {
        self.refusal.get_or_insert(error);
    }

    /// No transaction log: refused as wandb-core refuses it (a plain
    /// `wandb.Error`, "Error initializing run: …").
    pub fn refuse_without_log(&mut self, why: &str) {
        self.refuse_init(pb::ErrorInfo {
            message: format!("Error initializing run: {why}"),
            code: pb::error_info::ErrorCode::Unknown as i32,
        });
    }

    /// Makes this an online run: the run record goes to the backend first.
    pub fn set_online(&mut self, online: Result<OnlineHandle, String>) {
        match online {
            Ok(handle) => self.online = Some(handle),
            Err(e) => self.refuse_init(init_error(&e).error.unwrap_or_default()),
        }
    }

    /// The backend's answer to the run record, for the stream's task to
    /// await.
    pub fn take_init_wait(
        &mut self,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<InitResult, crate::backend::BackendError>>>
    {
        self.pending_init.as_mut().and_then(|p| p.wait.take())
    }

    /// The run exists on the backend (or could not be created): answers
    /// `wandb.init`.
    pub fn init_done(&mut self, result: Result<InitResult, crate::backend::BackendError>) {
        let Some(pending) = self.pending_init.take() else {
            return;
        };
        let mut answer = pending.answer;
        match result {
            Ok(init) => {
                answer.entity = init.entity;
                answer.project = init.project;
                answer.run_id = init.name;
                if !init.display_name.is_empty() {
                    answer.display_name = init.display_name;
                }
                answer.storage_id = init.storage_id;
                if !init.sweep_name.is_empty() {
                    answer.sweep_id = init.sweep_name;
                }
                if let Some(resumed) = init.resumed {
                    answer.resumed = true;
                    if let Some(step) = resumed.last_step {
                        answer.starting_step = step + 1;
                    }
                    answer.runtime = resumed.runtime as i32;
                    self.resumed_runtime = resumed.runtime.max(0.0);
                    // The server's config, under what this session sets.
                    let mut merged = RunConfig::default();
                    merged.apply(&resumed.config_record());
                    merged.merge_from(&self.config);
                    self.config = merged;
                    if let Some(sum) = resumed.summary.get("_step").and_then(|v| v.as_i64()) {
                        answer.starting_step = answer.starting_step.max(sum + 1);
                    }
                }
                if let Some(run) = &mut self.run {
                    run.entity = answer.entity.clone();
                    run.project = answer.project.clone();
                    run.display_name = answer.display_name.clone();
                    run.storage_id = answer.storage_id.clone();
                    run.starting_step = answer.starting_step;
                    run.resumed = answer.resumed;
                    run.runtime = answer.runtime;
                }
                answer.config = Some(pb::ConfigRecord {
                    update: self.config.wrapped_items(&self.history.metrics),
                    ..Default::default()
                });
                self.forward(SenderMsg::Config(
                    self.config.to_yaml(&self.history.metrics),
                ));
                if let Some(reply) = pending.reply {
                    reply.result(pb::result::ResultType::RunResult(pb::RunUpdateResult {
                        run: Some(answer),
                        ..Default::default()
                    }));
                }
            }
            Err(e) => {
                self.log.error(&format!("wandb.init failed: {e}"));
                if let Some(reply) = pending.reply {
                    reply.result(pb::result::ResultType::RunResult(init_error(
                        &e.to_string(),
                    )));
                }
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

    fn forward(&mut self, msg: SenderMsg) {
        self.queue(WriterMsg::Forward(msg));
    }

    fn runtime(&self) -> f64 {
        let start = self.start.unwrap_or_else(now_secs);
        (now_secs() - start).max(0.0) + self.resumed_runtime
    }

    /// Handles one record from a client.
    pub fn record(&mut self, raw: Bytes, reply: Option<Reply>) {
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
                    producer: PRODUCER.to_string(),
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
                self.forward(SenderMsg::Config(
                    self.config.to_yaml(&self.history.metrics),
                ));
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
                self.forward(SenderMsg::Console {
                    stderr,
                    text: o.line,
                });
                self.ack(reply);
            }
            RecordType::Output(o) => {
                let stderr = o.output_type() == pb::output_record::OutputType::Stderr;
                self.persist(raw);
                self.forward(SenderMsg::Console {
                    stderr,
                    text: o.line,
                });
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

    fn run_record(&mut self, mut run: pb::RunRecord, raw: Bytes, reply: Option<Reply>) {
        let first = self.run.is_none();
        if let Some(config) = &run.config {
            self.config.apply(config);
        }
        if let Some(t) = &run.telemetry {
            self.config.merge_telemetry(t);
        }
        if self.run.is_none() {
            if let Some(t) = &run.start_time {
                self.start = Some(timestamp_secs(t));
            }
            self.resumed_runtime = f64::from(run.runtime.max(0));
        } else if run.start_time.is_none() {
            run.start_time = self.run.as_ref().and_then(|r| r.start_time);
        }
        self.persist(raw);
        self.forward(SenderMsg::Config(
            self.config.to_yaml(&self.history.metrics),
        ));
        if first && let Some(error) = &self.refusal {
            if let Some(reply) = reply {
                reply.result(pb::result::ResultType::RunResult(pb::RunUpdateResult {
                    error: Some(error.clone()),
                    ..Default::default()
                }));
            }
            self.run = Some(run);
            return;
        }
        if first && let Some(online) = &self.online {
            // Online: answer once the backend has the run.
            let (done, wait) = tokio::sync::oneshot::channel();
            let ctl = OnlineCtl::Init {
                run: Box::new(run.clone()),
                done,
            };
            if online.ctl.try_send(ctl).is_err() {
                if let Some(reply) = reply {
                    reply.result(pb::result::ResultType::RunResult(init_error(
                        "the online sender is not running",
                    )));
                }
            } else {
                let mut answer = run.clone();
                answer.summary = Some(pb::SummaryRecord::default());
                answer.git.get_or_insert_with(Default::default);
                self.pending_init = Some(PendingInit {
                    reply,
                    answer,
                    wait: Some(wait),
                });
            }
            self.run = Some(run);
            return;
        }
        if let Some(reply) = &reply {
            let mut answer = run.clone();
            answer.config = Some(pb::ConfigRecord {
                update: self.config.wrapped_items(&self.history.metrics),
                ..Default::default()
            });
            // The SDK would re-publish summary items it finds here.
            answer.summary = Some(pb::SummaryRecord::default());
            answer.git.get_or_insert_with(Default::default);
            reply.result(pb::result::ResultType::RunResult(pb::RunUpdateResult {
                run: Some(answer),
                ..Default::default()
            }));
        }
        self.run = Some(run);
    }

    fn request(&mut self, req: pb::Request, reply: Option<Reply>) {
        let Some(kind) = req.request_type else {
            if let Some(reply) = reply {
                reply.error("request has no type (unknown to wandb-core-rs, or empty)");
            }
            return;
        };
        match kind {
            // Reached only if the fast path could not read it; the full
            // decode worked, so this is a shape the view does not expect.
            RequestType::PartialHistory(_) => {
                self.log
                    .warn("partial_history request in an unexpected encoding, dropped");
                self.ack_response(reply, None);
            }
            RequestType::RunStart(start) => {
                if let Some(run) = start.run {
                    if let Some(t) = &run.start_time {
                        self.start = Some(timestamp_secs(t));
                    }
                    self.run = Some(run);
                }
                if self.start.is_none() {
                    self.start = Some(now_secs());
                }
                if let Some(m) = &self.monitor {
                    m.start();
                }
                if let Some(reply) = reply {
                    reply.response(None);
                }
            }
            RequestType::ProbeSystemInfo(_) => {
                let s = &self.settings.raw;
                let describe = self.settings.primary
                    && !s.x_disable_meta.unwrap_or(false)
                    && !s.x_disable_machine_info.unwrap_or(false);
                if describe {
                    self.environment();
                    if let Some(m) = &self.monitor {
                        m.probe(self.writer_id.clone());
                    }
                }
                self.ack_response(reply, None);
            }
            RequestType::Pause(_) => {
                if let Some(m) = &self.monitor {
                    m.pause();
                }
                self.ack_response(reply, None);
            }
            RequestType::Resume(_) => {
                if let Some(m) = &self.monitor {
                    m.resume();
                }
                self.ack_response(reply, None);
            }
            RequestType::PythonPackages(p) => {
                if self.settings.save_requirements && self.settings.primary {
                    let lines = p
                        .package
                        .iter()
                        .map(|p| format!("{}=={}", p.name, p.version))
                        .collect();
                    self.forward(SenderMsg::Requirements(lines));
                    self.emit(RecordType::Files(pb::FilesRecord {
                        files: vec![pb::FilesItem {
                            path: "requirements.txt".into(),
                            r#type: pb::files_item::FileType::Wandb as i32,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }));
                }
                self.ack_response(reply, None);
            }
            RequestType::InternalMessages(_) => {
                if let Some(reply) = reply {
                    if !self.warnings.is_empty() || self.messages_closed() {
                        self.answer_messages(&reply);
                    } else if let Some(old) = self.pending_messages.replace(reply) {
                        old.response(Some(ResponseType::InternalMessagesResponse(
                            Default::default(),
                        )));
                    }
                }
            }
            RequestType::Operations(_) => self.ack_response(
                reply,
                Some(ResponseType::OperationsResponse(
                    pb::OperationStatsResponse {
                        operation_stats: Some(Default::default()),
                    },
                )),
            ),
            RequestType::HistoryStep(_) => {
                let step = self.history.step(self.starting_step());
                self.ack_response(
                    reply,
                    Some(ResponseType::HistoryStepResponse(pb::HistoryStepResponse {
                        step,
                    })),
                );
            }
            RequestType::GetSummary(_) => {
                let h = &self.history;
                let item = h
                    .summary
                    .items(&h.keys, &h.metrics)
                    .into_iter()
                    .map(|(id, v)| summary_item(h.keys.path(id), v, true))
                    .collect();
                self.ack_response(
                    reply,
                    Some(ResponseType::GetSummaryResponse(pb::GetSummaryResponse {
                        item,
                    })),
                );
            }
            RequestType::SampledHistory(_) => {
                let item = self
                    .history
                    .sampler
                    .sampled(&self.history.keys)
                    .into_iter()
                    .map(|(key, values_float)| pb::SampledHistoryItem {
                        key,
                        values_float,
                        ..Default::default()
                    })
                    .collect();
                self.ack_response(
                    reply,
                    Some(ResponseType::SampledHistoryResponse(
                        pb::SampledHistoryResponse { item },
                    )),
                );
            }
            RequestType::PollExit(_) => {
                if let (Some(reply), Some(online)) = (&reply, &self.online) {
                    // Online: done once the backend has everything.
                    reply.response(Some(ResponseType::PollExitResponse(pb::PollExitResponse {
                        done: self.exited && self.online_done,
                        pusher_stats: Some(online.stats.pusher_stats()),
                        file_counts: Some(online.stats.file_counts()),
                        operation_stats: Some(Default::default()),
                        ..Default::default()
                    })));
                } else if let Some(reply) = reply {
                    let done = self.exited;
                    self.forward(SenderMsg::Answer(reply, Answer::PollExit { done }));
                }
            }
            RequestType::Shutdown(_) => {
                if let Some(reply) = reply {
                    self.forward(SenderMsg::Answer(reply, Answer::Shutdown));
                }
            }
            RequestType::Attach(_) => {
                let response = match &self.run {
                    Some(run) => pb::AttachResponse {
                        run: Some(run.clone()),
                        error: None,
                    },
                    None => pb::AttachResponse {
                        run: None,
                        error: Some(pb::ErrorInfo {
                            message: "the run has not started yet".into(),
                            ..Default::default()
                        }),
                    },
                };
                self.ack_response(reply, Some(ResponseType::AttachResponse(response)));
            }
            RequestType::Status(_) => self.ack_response(
                reply,
                Some(ResponseType::StatusResponse(Default::default())),
            ),
            RequestType::StopStatus(_) => {
                let run_should_stop = self
                    .online
                    .as_ref()
                    .is_some_and(|o| o.stopped.load(std::sync::atomic::Ordering::SeqCst));
                self.ack_response(
                    reply,
                    Some(ResponseType::StopStatusResponse(pb::StopStatusResponse {
                        run_should_stop,
                    })),
                )
            }
            RequestType::NetworkStatus(_) => {
                // Failed requests being retried, for the SDK to print.
                let network_responses = self
                    .online
                    .as_ref()
                    .map(|o| o.backend.events.take())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(status, text)| pb::HttpResponse {
                        http_status_code: i32::from(status),
                        http_response_text: text,
                    })
                    .collect();
                self.ack_response(
                    reply,
                    Some(ResponseType::NetworkStatusResponse(
                        pb::NetworkStatusResponse { network_responses },
                    )),
                )
            }
            RequestType::RunStatus(_) => self.ack_response(
                reply,
                Some(ResponseType::RunStatusResponse(Default::default())),
            ),
            RequestType::Keepalive(_) => self.ack_response(
                reply,
                Some(ResponseType::KeepaliveResponse(Default::default())),
            ),
            RequestType::CheckVersion(_) => self.ack_response(
                reply,
                Some(ResponseType::CheckVersionResponse(Default::default())),
            ),
            RequestType::ServerInfo(_) => self.ack_response(
                reply,
                Some(ResponseType::ServerInfoResponse(Default::default())),
            ),
            RequestType::GetSystemMetrics(_) => {
                let system_metrics = self
                    .system_metrics
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            pb::SystemMetricsBuffer {
                                record: v.iter().cloned().collect(),
                            },
                        )
                    })
                    .collect();
                self.ack_response(
                    reply,
                    Some(ResponseType::GetSystemMetricsResponse(
                        pb::GetSystemMetricsResponse { system_metrics },
                    )),
                )
            }
            RequestType::JobInfo(_) => self.ack_response(
                reply,
                Some(ResponseType::JobInfoResponse(Default::default())),
            ),
            RequestType::Cancel(_) => self.ack_response(
                reply,
                Some(ResponseType::CancelResponse(Default::default())),
            ),
            RequestType::Login(_) => {
                self.ack_response(reply, Some(ResponseType::LoginResponse(Default::default())))
            }
            RequestType::SyncFinish(_) => {
                self.ack_response(reply, Some(ResponseType::SyncResponse(Default::default())))
            }
            RequestType::TestInject(_) => self.ack_response(
                reply,
                Some(ResponseType::TestInjectResponse(Default::default())),
            ),
            RequestType::LogArtifact(request) => {
                // Saved by the online sender, which answers when committed.
                let refused = match &self.online {
                    Some(online) => online
                        .ctl
                        .try_send(OnlineCtl::LogArtifact {
                            request: Box::new(request),
                            reply: reply.clone(),
                        })
                        .err()
                        .map(|_| "the online sender is not running or is overloaded"),
                    None => Some(
                        "log_artifact needs an online run (offline runs write artifact records, uploaded by sync)",
                    ),
                };
                if let Some(message) = refused {
                    self.ack_response(
                        reply,
                        Some(ResponseType::LogArtifactResponse(pb::LogArtifactResponse {
                            error_message: message.into(),
                            ..Default::default()
                        })),
                    );
                }
            }
            RequestType::DownloadArtifact(_) => self.ack_response(
                reply,
                Some(ResponseType::DownloadArtifactResponse(
                    pb::DownloadArtifactResponse {
                        error_message: "download_artifact is not supported by wandb-core-rs yet"
                            .into(),
                    },
                )),
            ),
            RequestType::LinkArtifact(request) => {
                let refused = match &self.online {
                    Some(online) => online
                        .ctl
                        .try_send(OnlineCtl::LinkArtifact {
                            request: Box::new(request),
                            reply: reply.clone(),
                        })
                        .err()
                        .map(|_| "the online sender is not running or is overloaded"),
                    None => Some("link_artifact needs an online run"),
                };
                if let Some(message) = refused {
                    self.ack_response(
                        reply,
                        Some(ResponseType::LinkArtifactResponse(
                            pb::LinkArtifactResponse {
                                error_message: message.into(),
                                ..Default::default()
                            },
                        )),
                    );
                }
            }
            // Requests that change nothing offline (pause/resume the system
            // monitor, legacy flow-control and job requests): acknowledged.
            RequestType::Defer(_)
            | RequestType::SenderMark(_)
            | RequestType::SenderRead(_)
            | RequestType::StatusReport(_)
            | RequestType::SummaryRecord(_)
            | RequestType::TelemetryRecord(_)
            | RequestType::JobInput(_) => self.ack_response(reply, None),
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

    /// `run.log()`: the hot path, read straight from the received bytes.
    fn partial_history(&mut self, view: &PartialHistoryView<'_>) {
        let mut rows = Vec::new();
        let runtime = self.runtime();
        let result = self
            .history
            .partial(view, self.starting_step(), runtime, &mut rows);
        for row in rows {
            self.persist(row);
        }
        match result {
            Ok(()) => {}
            Err(Rejected::StepBackwards { step, current }) => self.warn_user(format!(
                "Tried to log to step {step} that is less than the current step {current}. Steps must be \
                 monotonically increasing, so this data will be ignored. See \
                 https://wandb.me/define-metric to log data out of order."
            )),
            Err(Rejected::BadValue(message)) => self.log.warn(&message),
        }
        if self.last_summary_emit.elapsed() >= SUMMARY_INTERVAL {
            self.emit_summary();
        }
    }

    /// Emits the pending row (at exit).
    fn flush_row(&mut self) {
        let mut rows = Vec::new();
        let runtime = self.runtime();
        self.history.flush_row(runtime, &mut rows);
        for row in rows {
            self.persist(row);
        }
    }

    /// Writes the summary leaves that changed, with the run time; called on
    /// the coalescing interval and at exit.
    pub fn emit_summary(&mut self) {
        self.last_summary_emit = Instant::now();
        if !self.history.summary.has_dirty() || self.exited {
            return;
        }
        let runtime = (self.runtime() as i64).to_string();
        self.history
            .summary
            .set_plain_value(self.k_wandb_runtime, &runtime);
        let h = &mut self.history;
        let mut update = Vec::new();
        let mut remove = Vec::new();
        for (id, value) in h.summary.take_dirty(&h.keys, &h.metrics) {
            let path = h.keys.path(id);
            match value {
                Some(v) => update.push(summary_item(path, v, false)),
                None => remove.push(summary_item(path, String::new(), false)),
            }
        }
        let tree = h.summary.to_tree(&h.keys, &h.metrics).to_json();
        self.emit(RecordType::Summary(pb::SummaryRecord {
            update,
            remove,
            ..Default::default()
        }));
        self.forward(SenderMsg::Summary(tree));
    }

    /// The environment record of `probe_system_info`: what the settings
    /// say about the process (the system monitor adds hardware after it).
    fn environment(&mut self) {
        let s = &self.settings.raw;
        let git = self
            .run
            .as_ref()
            .and_then(|r| r.git.clone())
            .filter(|g| !g.remote_url.is_empty() || !g.commit.is_empty());
        let slurm = std::env::vars()
            .filter_map(|(k, v)| Some((k.strip_prefix("SLURM_")?.to_lowercase(), v)))
            .collect();
        let env = pb::EnvironmentRecord {
            docker: s.docker.clone().unwrap_or_default(),
            code_path: s.program_relpath.clone().unwrap_or_default(),
            code_path_local: s.program_relpath.clone().unwrap_or_default(),
            git,
            colab: s.colab_url.clone().unwrap_or_default(),
            slurm,
            os: s.os.clone().unwrap_or_default(),
            python: s.python.clone().unwrap_or_default(),
            started_at: Some(match self.start {
                Some(t) => prost_types::Timestamp {
                    seconds: t.trunc() as i64,
                    nanos: (t.fract() * 1e9) as i32,
                },
                None => timestamp_now(),
            }),
            args: s.args.as_ref().map(|a| a.value.clone()).unwrap_or_default(),
            program: s.program.clone().unwrap_or_default(),
            root: s.root_dir.clone().unwrap_or_default(),
            host: s.host.clone().unwrap_or_default(),
            username: s.username.clone().unwrap_or_default(),
            email: s.email.clone().unwrap_or_default(),
            executable: s.x_executable.clone().unwrap_or_default(),
            writer_id: self.writer_id.clone(),
            ..Default::default()
        };
        self.emit(RecordType::Environment(env));
    }

    /// What wandb-core prints when it finishes an offline run the SDK did
    /// not finish itself (the SDK prints it otherwise). The service's stdout
    /// is the user's terminal.
    pub fn print_offline_footer(&self) {
        if self.settings.silent || !self.settings.offline {
            return;
        }
        let mut out = String::from("wandb: You can sync this run to the cloud by running:\n");
        out.push_str(&format!(
            "wandb: wandb sync {}\n",
            self.settings.sync_dir.display()
        ));
        if let Some(dir) = &self.settings.log_dir {
            out.push_str(&format!("wandb: Find logs at: {}\n", dir.display()));
        }
        use std::io::Write;
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    }

    /// Online, the exit is answered once the run is complete on the
    /// backend; returns the reply if the files sender should answer it.
    fn online_exit(&mut self, reply: Reply) -> Option<Reply> {
        let Some(online) = &self.online else {
            return Some(reply);
        };
        match online.ctl.try_send(OnlineCtl::Exit { reply: Some(reply) }) {
            Ok(()) => None,
            Err(tokio::sync::mpsc::error::TrySendError::Full(OnlineCtl::Exit { reply }))
            | Err(tokio::sync::mpsc::error::TrySendError::Closed(OnlineCtl::Exit { reply })) => {
                reply
            }
            Err(_) => None,
        }
    }

    /// Ends the run: flushes the pending row, writes the final summary and
    /// the exit record, makes the log durable, finalises the run files, then
    /// answers the exit (from the sender, after all of that).
    pub fn finish(&mut self, ending: Ending) {
        if self.exited {
            // A second exit (or a teardown after the exit): answer, write nothing.
            if let Ending::Exit(_, Some(reply)) = ending {
                let reply = self.online_exit(reply);
                self.queue(WriterMsg::Sync(SenderMsg::Exit { reply }));
            }
            return;
        }
        let runtime = self.runtime() as i64;
        let text = runtime.to_string();
        self.history
            .summary
            .set_plain_value(self.k_wandb_runtime, &text);
        self.history.summary.set_plain_value(self.k_runtime, &text);
        if self.history.has_pending_row() {
            self.flush_row();
        }
        self.emit_summary();
        self.exited = true;
        // No samples after the exit record.
        self.monitor = None;

        let (mut record, reply) = match ending {
            Ending::Exit(record, reply) => (*record, reply),
            Ending::Synthesized(code) => (
                pb::Record {
                    record_type: Some(RecordType::Exit(pb::RunExitRecord {
                        exit_code: code,
                        ..Default::default()
                    })),
                    ..Default::default()
                },
                None,
            ),
        };
        let exit_code = match &mut record.record_type {
            Some(RecordType::Exit(exit)) => {
                exit.runtime = i32::try_from(runtime).unwrap_or(i32::MAX);
                exit.exit_code
            }
            _ => 0,
        };
        self.persist(Bytes::from(record.encode_to_vec()));
        self.forward(SenderMsg::Config(
            self.config.to_yaml(&self.history.metrics),
        ));
        let h = &self.history;
        let tree = h.summary.to_tree(&h.keys, &h.metrics).to_json();
        self.forward(SenderMsg::Summary(tree));
        let reply = match reply {
            Some(reply) => self.online_exit(reply),
            None => None,
        };
        self.queue(WriterMsg::Sync(SenderMsg::Exit { reply }));
        self.log.info(&format!(
            "run exited with code {exit_code} after {runtime}s"
        ));

        if self.messages_closed()
            && let Some(pending) = self.pending_messages.take()
        {
            self.answer_messages(&pending);
        }
    }
}

/// A failed `wandb.init`, as the SDK raises it (`CommError`).
fn init_error(message: &str) -> pb::RunUpdateResult {
    pb::RunUpdateResult {
        error: Some(pb::ErrorInfo {
            message: message.to_string(),
            code: pb::error_info::ErrorCode::Communication as i32,
        }),
        ..Default::default()
    }
}
