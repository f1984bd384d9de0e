//! The online sender: everything a run sends to the W&B backend.
//!
//! It follows the run's transaction log as the writer commits it (the log
//! is the queue: memory stays bounded however slow the network, and the
//! same records drive a later `sync`), and turns records into backend
//! traffic: history rows, events, the summary and console lines into the
//! file stream ([`filestream`]); run files and media into uploads
//! ([`uploads`]); run parameters and config into debounced UpsertBuckets.
//! The handler asks it for the blocking part of `wandb.init` (resume status
//! and the first UpsertBucket) and hands it the exit answer, which goes out
//! once every upload is done and the file stream is complete.

pub mod artifacts;
pub mod checksums;
pub mod filestream;
pub mod uploads;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use prost::Message;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use wandb_proto::json::Value as JValue;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_store::txlog::{LogReader, ReadError};

use self::filestream::{FileStreamConfig, FsMsg};
use self::uploads::{Policy, RunPath, UpMsg, UploadStats};
use super::config::RunConfig;
use super::console::Console;
use super::metrics::Metrics;
use super::summary::insert_path;
use crate::backend::graphql::ResumeState;
use crate::backend::{Backend, BackendConfig, BackendError};
use crate::respond::Reply;
use crate::runlog::RunLog;
use crate::settings::RunSettings;

/// Reports a failure to the user (the SDK prints it as a warning).
pub type Warn = Arc<dyn Fn(String) + Send + Sync>;

/// Changes to the run wait this long for company before an UpsertBucket.
const UPSERT_DEBOUNCE: Duration = Duration::from_secs(5);

/// What the handler asks of the online sender.
#[derive(Debug)]
pub enum OnlineCtl {
    /// The run record of `wandb.init`: create (or resume) the run.
    Init {
        run: Box<pb::RunRecord>,
        done: oneshot::Sender<Result<InitResult, BackendError>>,
    },
    /// Answer this exit once the run is complete on the server.
    Exit { reply: Option<Reply> },
    /// Save an artifact (`run.log_artifact`); answer with its ID.
    LogArtifact {
        request: Box<pb::LogArtifactRequest>,
        reply: Option<Reply>,
    },
    /// Link a saved artifact into a portfolio (a registry collection).
    LinkArtifact {
        request: Box<pb::LinkArtifactRequest>,
        reply: Option<Reply>,
    },
}

/// The run as the server has it after init.
#[derive(Debug, Clone)]
pub struct InitResult {
    pub entity: String,
    pub project: String,
    pub name: String,
    pub display_name: String,
    pub storage_id: String,
    pub sweep_name: String,
    pub resumed: Option<ResumeState>,
}

/// The handler's handle on the online sender.
pub struct OnlineHandle {
    pub ctl: mpsc::Sender<OnlineCtl>,
    /// The server stopped the run (from the UI).
    pub stopped: Arc<AtomicBool>,
    pub backend: Backend,
    pub stats: Arc<UploadStats>,
}

/// Starts the online sender of a run.
pub fn spawn(
    settings: Arc<RunSettings>,
    log: RunLog,
    committed: watch::Receiver<u64>,
    files_done: watch::Receiver<bool>,
    warn: mpsc::WeakSender<super::StreamInput>,
) -> Result<(OnlineHandle, tokio::task::JoinHandle<()>), BackendError> {
    let backend = Backend::new(BackendConfig::from_settings(&settings.raw)?)?;
    // Room for many artifacts logged at once.
    let (ctl, ctl_rx) = mpsc::channel(256);
    let stopped = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(UploadStats::default());
    let sender = Sender {
        stats: stats.clone(),
        settings,
        backend: backend.clone(),
        log,
        committed,
        files_done,
        warn,
        stopped: stopped.clone(),
        progress: None,
    };
    let task = tokio::spawn(sender.run(ctl_rx));
    Ok((
        OnlineHandle {
            ctl,
            stopped,
            backend,
            stats,
        },
        task,
    ))
}

struct Sender {
    settings: Arc<RunSettings>,
    backend: Backend,
    log: RunLog,
    committed: watch::Receiver<u64>,
    files_done: watch::Receiver<bool>,
    warn: mpsc::WeakSender<super::StreamInput>,
    stopped: Arc<AtomicBool>,
    stats: Arc<UploadStats>,
    /// Set when replaying a finished log (sync): how far it has been read.
    progress: Option<Arc<ReplayProgress>>,
}

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
    pub display_name: String,
    /// The exit code the run was finished with.
    pub exit_code: Option<i32>,
    /// The log has no exit record (its process crashed): the run was
    /// finished with exit code 1, as wandb-core's sync does.
    pub exit_synthesized: bool,
    /// The log ends in the middle of a record.
    pub torn: bool,
    /// Every file stream request went through.
    pub file_stream_ok: bool,
}

/// Sends a run from its transaction log, with the same code that sends live
/// runs. Continues where the server's data ends: history, events and
/// console lines the server already has are skipped, so a sync interrupted
/// at any point and run again neither loses nor duplicates rows.
pub async fn replay(r: Replay) -> Result<ReplayOutcome, BackendError> {
    let backend = Backend::new(BackendConfig::from_settings(&r.settings.raw)?)?;
    let (committed_tx, committed) = watch::channel(0u64);
    let (_files_tx, files_done) = watch::channel(true);
    // Warnings arrive as stream inputs; forward them to the caller.
    let (warn_tx, mut warn_rx) = mpsc::channel::<super::StreamInput>(64);
    let forward = {
        let warn = r.warn.clone();
        tokio::spawn(async move {
            while let Some(input) = warn_rx.recv().await {
                if let super::StreamInput::Warn(m) = input {
                    warn(m);
                }
            }
        })
    };
    // Live: tell the follower whenever the log grows; otherwise the log is
    // complete as it is (the sender dropped = "writer gone").
    let poller = if r.live {
        let path = r.settings.sync_file.clone();
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
        warn: warn_tx.downgrade(),
        stopped: Arc::new(AtomicBool::new(false)),
        progress: Some(r.progress.clone()),
    };
    let result = match sender.init(&r.run).await {
        Ok(init) => {
            (r.ready)(&init);
            // No handler: nobody sends control messages.
            let (ctl_tx, ctl_rx) = mpsc::channel(1);
            drop(ctl_tx);
            let (entity, project, name, display_name) = (
                init.entity.clone(),
                init.project.clone(),
                init.name.clone(),
                init.display_name.clone(),
            );
            let followed = sender.follow(init, r.run, ctl_rx, Vec::new()).await;
            Ok(ReplayOutcome {
                entity,
                project,
                name,
                display_name,
                exit_code: followed.exit_code,
                exit_synthesized: followed.exit_synthesized,
                torn: followed.torn,
                file_stream_ok: followed.file_stream_ok,
            })
        }
        Err(e) => Err(e),
    };
    if let Some(p) = poller {
        p.abort();
    }
    drop(warn_tx);
    let _ = forward.await;
    result
}

impl Sender {
    /// Starts saving an artifact; `reply` gets its ID (or the error).
    fn start_save(
        &self,
        s: &mut FollowState,
        path: &RunPath,
        artifact: pb::ArtifactRecord,
        history_step: i64,
        staging_dir: String,
        reply: Option<Reply>,
    ) {
        let lock = s
            .artifact_locks
            .entry(format!("{}:{}", artifact.r#type, artifact.name))
            .or_default()
            .clone();
        let backend = self.backend.clone();
        let log = self.log.clone();
        let warn = self.warn.clone();
        let job = artifacts::SaveJob {
            artifact,
            history_step,
            staging_dir,
            run: path.clone(),
        };
        s.saves.spawn(async move {
            let _one_at_a_time = lock.lock().await;
            let name = job.artifact.name.clone();
            let result = artifacts::save(&backend, job).await;
            match &result {
                Ok(id) => log.info(&format!("artifact {name} saved ({id})")),
                Err(e) => {
                    log.error(&format!("artifact {name} not saved: {e}"));
                    if reply.is_none() {
                        warn_user(&warn, format!("artifact {name} was not saved: {e}"));
                    }
                }
            }
            answer_artifact(reply, result);
        });
    }
}

impl Sender {
    /// Links an artifact once the saves logged before it are done (a draft
    /// is known to the server by its client ID only after its commit).
    fn start_link(
        &self,
        s: &mut FollowState,
        path: &RunPath,
        request: pb::LinkArtifactRequest,
        reply: Option<Reply>,
    ) {
        let earlier: Vec<_> = s.artifact_locks.values().cloned().collect();
        let backend = self.backend.clone();
        let path = path.clone();
        s.saves.spawn(async move {
            for lock in earlier {
                drop(lock.lock().await);
            }
            answer_link(reply, artifacts::link(&backend, &path, &request).await);
        });
    }
}

fn answer_link(reply: Option<Reply>, result: Result<i32, String>) {
    if let Some(reply) = reply {
        let (version_index, error_message) = match result {
            Ok(n) => (Some(n), String::new()),
            Err(e) => (None, e),
        };
        reply.response(Some(pb::response::ResponseType::LinkArtifactResponse(
            pb::LinkArtifactResponse {
                error_message,
                version_index,
            },
        )));
    }
}

fn answer_artifact(reply: Option<Reply>, result: Result<String, String>) {
    if let Some(reply) = reply {
        let (artifact_id, error_message) = match result {
            Ok(id) => (id, String::new()),
            Err(e) => (String::new(), e),
        };
        reply.response(Some(pb::response::ResponseType::LogArtifactResponse(
            pb::LogArtifactResponse {
                artifact_id,
                error_message,
            },
        )));
    }
}

/// What following a log ended with.
struct Followed {
    exit_code: Option<i32>,
    exit_synthesized: bool,
    torn: bool,
    file_stream_ok: bool,
}

fn warn_user(warn: &mpsc::WeakSender<super::StreamInput>, message: String) {
    if let Some(tx) = warn.upgrade() {
        let _ = tx.try_send(super::StreamInput::Warn(message));
    }
}

/// UpsertBucket variables for the run record (`None` = null).
fn upsert_vars(
    settings: &RunSettings,
    run: &pb::RunRecord,
    path: Option<&RunPath>,
    storage_id: &str,
    config: Option<String>,
    params: bool,
) -> Value {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut v = json!({
        "name": path.map(|p| p.name.clone()).or_else(|| opt(&run.run_id)),
        "project": path.map(|p| p.project.clone()).or_else(|| opt(&run.project)).or_else(|| settings.raw.project.clone().filter(|p| !p.is_empty())),
        "entity": path.map(|p| p.entity.clone()).or_else(|| opt(&run.entity)).or_else(|| settings.raw.entity.clone().filter(|e| !e.is_empty())),
        "config": config,
    });
    if params {
        let git = run.git.clone().unwrap_or_default();
        let obj = v.as_object_mut().expect("object");
        obj.insert("id".into(), json!(opt(storage_id)));
        obj.insert("groupName".into(), json!(opt(&run.run_group)));
        obj.insert("displayName".into(), json!(opt(&run.display_name)));
        obj.insert("notes".into(), json!(opt(&run.notes)));
        obj.insert("commit".into(), json!(opt(&git.commit)));
        obj.insert("host".into(), json!(opt(&run.host)));
        obj.insert(
            "program".into(),
            json!(
                settings
                    .raw
                    .program
                    .clone()
                    .or_else(|| settings.raw.program_relpath.clone())
            ),
        );
        obj.insert("repo".into(), json!(opt(&git.remote_url)));
        obj.insert("jobType".into(), json!(opt(&run.job_type)));
        obj.insert("sweep".into(), json!(opt(&run.sweep_id)));
        obj.insert(
            "tags".into(),
            if run.tags.is_empty() {
                Value::Null
            } else {
                json!(run.tags)
            },
        );
    }
    v
}

/// The config as UpsertBucket wants it: `{key: {"value": v}}` as a string.
fn config_json(config: &RunConfig, metrics: &Metrics) -> String {
    let mut out = String::from("{");
    for (i, item) in config.wrapped_items(metrics).iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        wandb_proto::json::write_str(&item.key, &mut out);
        out.push(':');
        out.push_str(&item.value_json);
    }
    out.push('}');
    out
}

/// A history row as a JSON line: leaves under their paths, nested objects
/// rebuilt; values as recorded.
fn history_line(items: &[pb::HistoryItem]) -> String {
    enum Node<'a> {
        Leaf(&'a str),
        Obj(Vec<(&'a str, Node<'a>)>),
    }
    fn insert<'a>(node: &mut Vec<(&'a str, Node<'a>)>, path: &[&'a str], value: &'a str) {
        let Some((head, rest)) = path.split_first() else {
            return;
        };
        let pos = node.iter().position(|(k, _)| k == head);
        if rest.is_empty() {
            match pos {
                Some(i) => node[i].1 = Node::Leaf(value),
                None => node.push((head, Node::Leaf(value))),
            }
            return;
        }
        let i = match pos {
            Some(i) => i,
            None => {
                node.push((head, Node::Obj(Vec::new())));
                node.len() - 1
            }
        };
        if let Node::Leaf(_) = node[i].1 {
            node[i].1 = Node::Obj(Vec::new());
        }
        if let Node::Obj(children) = &mut node[i].1 {
            insert(children, rest, value);
        }
    }
    fn write(node: &[(&str, Node<'_>)], out: &mut String) {
        out.push('{');
        for (i, (k, v)) in node.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            wandb_proto::json::write_str(k, out);
            out.push(':');
            match v {
                Node::Leaf(text) => out.push_str(text),
                Node::Obj(children) => write(children, out),
            }
        }
        out.push('}');
    }
    let mut root = Vec::new();
    for item in items {
        let path: Vec<&str> = if item.nested_key.is_empty() {
            vec![item.key.as_str()]
        } else {
            item.nested_key.iter().map(String::as_str).collect()
        };
        let value = if item.value_json.is_empty() {
            "null"
        } else {
            item.value_json.as_str()
        };
        insert(&mut root, &path, value);
    }
    let mut out = String::new();
    write(&root, &mut out);
    out
}

/// A system-metrics sample as an events line (`_runtime` counts from the
/// run's start).
fn events_line(stats: &pb::StatsRecord, start: Option<&prost_types::Timestamp>) -> String {
    let secs = |t: &prost_types::Timestamp| t.seconds as f64 + f64::from(t.nanos) / 1e9;
    let mut out = String::from("{\"_wandb\":true");
    if let Some(ts) = &stats.timestamp {
        out.push_str(",\"_timestamp\":");
        wandb_proto::json::write_float(secs(ts), &mut out);
        if let Some(start) = start {
            out.push_str(",\"_runtime\":");
            wandb_proto::json::write_float((secs(ts) - secs(start)).max(0.0), &mut out);
        }
    }
    for item in &stats.item {
        out.push(',');
        wandb_proto::json::write_str(&format!("system.{}", item.key), &mut out);
        out.push(':');
        out.push_str(if item.value_json.is_empty() {
            "null"
        } else {
            &item.value_json
        });
    }
    out.push('}');
    out
}

/// The console as the file stream wants it: lines with their first-seen
/// time, `ERROR ` before stderr lines.
struct ConsoleLines {
    console: Console,
    finished: u64,
    /// Line number → (time first seen, text last sent).
    sent: std::collections::BTreeMap<u64, (String, String)>,
    label: Option<String>,
}

fn console_time() -> String {
    let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    now.trim_end_matches('Z').to_string()
}

impl ConsoleLines {
    fn changed(&mut self) -> Vec<(u64, String)> {
        if !self.console.take_dirty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let finished = self.console.drain_finished_with_stream();
        let tail = self.console.tail_with_stream();
        let lines = finished
            .iter()
            .map(|l| (l, true))
            .chain(tail.iter().map(|l| (l, false)));
        for (n, ((text, stderr), is_final)) in (self.finished..).zip(lines) {
            let (ts, last) = self
                .sent
                .entry(n)
                .or_insert_with(|| (console_time(), String::new()));
            let prefix = if *stderr { "ERROR " } else { "" };
            let label = self
                .label
                .as_ref()
                .map(|l| format!("[{l}] "))
                .unwrap_or_default();
            let line = format!("{prefix}{ts} {label}{text}");
            if *last != line {
                *last = line.clone();
                out.push((n, line));
            }
            if is_final {
                self.sent.remove(&n);
            }
        }
        self.finished += finished.len() as u64;
        out
    }
}

impl Sender {
    async fn run(mut self, mut ctl: mpsc::Receiver<OnlineCtl>) {
        // Init first; records wait in the log meanwhile.
        let mut exit_replies = Vec::new();
        let init = loop {
            match ctl.recv().await {
                Some(OnlineCtl::Init { run, done }) => {
                    let result = self.init(&run).await;
                    let _ = done.send(result.clone());
                    match result {
                        Ok(init) => break Some((init, *run)),
                        Err(e) => {
                            self.log
                                .error(&format!("run not created on the server: {e}"));
                            break None;
                        }
                    }
                }
                Some(OnlineCtl::Exit { reply }) => exit_replies.push(reply),
                Some(OnlineCtl::LogArtifact { reply, .. }) => {
                    answer_artifact(reply, Err("the run is not created yet".into()));
                }
                Some(OnlineCtl::LinkArtifact { reply, .. }) => {
                    answer_link(reply, Err("the run is not created yet".into()));
                }
                None => {
                    // The run never started; nothing to send.
                    let _ = self.files_done.wait_for(|d| *d).await;
                    exit_replies.into_iter().for_each(answer_exit);
                    return;
                }
            }
        };
        let Some((init, run)) = init else {
            // Nothing to send; exits are answered once the files are done.
            self.announce_finished().await;
            for reply in exit_replies {
                answer_exit(reply);
            }
            while let Some(msg) = ctl.recv().await {
                match msg {
                    OnlineCtl::Exit { reply } => {
                        let _ = self.files_done.wait_for(|d| *d).await;
                        answer_exit(reply);
                    }
                    OnlineCtl::LogArtifact { reply, .. } => {
                        answer_artifact(reply, Err("the run was not created on the server".into()));
                    }
                    OnlineCtl::LinkArtifact { reply, .. } => {
                        answer_link(reply, Err("the run was not created on the server".into()));
                    }
                    OnlineCtl::Init { .. } => {}
                }
            }
            return;
        };
        self.follow(init, run, ctl, exit_replies).await;
    }

    /// Tells the handler that nothing more will be sent (so it can end the
    /// SDK's message loop after any last warnings).
    async fn announce_finished(&self) {
        if let Some(tx) = self.warn.upgrade() {
            let _ = tx.send(super::StreamInput::OnlineFinished).await;
        }
    }

    /// Resume status (if asked) and the first UpsertBucket, within
    /// `init_timeout`.
    async fn init(&self, run: &pb::RunRecord) -> Result<InitResult, BackendError> {
        let timeout = self
            .settings
            .raw
            .init_timeout
            .filter(|t| *t > 0.0)
            .unwrap_or(90.0);
        let deadline = Some(Instant::now() + Duration::from_secs_f64(timeout));
        let resume_mode = self.settings.raw.resume.clone().unwrap_or_default();
        let mut resumed = None;
        if !resume_mode.is_empty() {
            let entity = if run.entity.is_empty() {
                self.settings.raw.entity.clone().unwrap_or_default()
            } else {
                run.entity.clone()
            };
            let project = if run.project.is_empty() {
                self.settings.raw.project.clone().unwrap_or_default()
            } else {
                run.project.clone()
            };
            let state = self
                .backend
                .run_resume_status(&entity, &project, &run.run_id, deadline)
                .await?;
            match (resume_mode.as_str(), &state) {
                ("must", None) => {
                    return Err(BackendError::Config(format!(
                        "You provided an invalid value for the `resume` argument. The value 'must' requires run {} to exist",
                        run.run_id
                    )));
                }
                ("never", Some(_)) => {
                    return Err(BackendError::Config(format!(
                        "resume='never' but run {} already exists; use a different run ID",
                        run.run_id
                    )));
                }
                _ => {}
            }
            resumed = state;
        }
        let mut config = RunConfig::default();
        if let Some(c) = &run.config {
            config.apply(c);
        }
        if let Some(t) = &run.telemetry {
            config.merge_telemetry(t);
        }
        let storage_id = resumed
            .as_ref()
            .map(|r| r.storage_id.clone())
            .unwrap_or_default();
        let vars = upsert_vars(
            &self.settings,
            run,
            None,
            &storage_id,
            Some(config_json(&config, &Metrics::default())),
            true,
        );
        let bucket = self.backend.upsert_bucket(vars, deadline).await?;
        self.log.info(&format!(
            "run created on the server: {}/{}/{}",
            bucket.entity, bucket.project, bucket.name
        ));
        Ok(InitResult {
            entity: bucket.entity,
            project: bucket.project,
            name: if bucket.name.is_empty() {
                run.run_id.clone()
            } else {
                bucket.name
            },
            display_name: bucket.display_name,
            storage_id: bucket.storage_id,
            sweep_name: bucket.sweep_name,
            resumed,
        })
    }

    /// Follows the log until the exit record, then finishes the run.
    async fn follow(
        mut self,
        init: InitResult,
        first_run: pb::RunRecord,
        mut ctl: mpsc::Receiver<OnlineCtl>,
        mut exit_replies: Vec<Option<Reply>>,
    ) -> Followed {
        let path = RunPath {
            entity: init.entity.clone(),
            project: init.project.clone(),
            name: init.name.clone(),
        };
        // Asked only when it matters (one request fewer per run otherwise).
        let gzip = !self.settings.raw.x_file_stream_no_gzip.unwrap_or(true)
            && self
                .backend
                .server_features()
                .await
                .iter()
                .any(|f| f == "FILESTREAM_GZIP");
        let resumed = init.resumed.clone().unwrap_or_default();
        let (fs_tx, fs_rx) = mpsc::channel(1024);
        let fs_cfg = FileStreamConfig {
            path: format!(
                "/files/{}/{}/{}/file_stream",
                uploads_enc(&path.entity),
                uploads_enc(&path.project),
                uploads_enc(&path.name)
            ),
            history_offset: resumed.history_line_count,
            events_offset: resumed.events_line_count,
            // Replaying skips the console lines the server has instead.
            console_offset: if self.progress.is_some() {
                0
            } else {
                resumed.log_line_count.max(0) as u64
            },
            transmit_interval: Duration::from_secs_f64(
                self.settings
                    .raw
                    .x_file_stream_transmit_interval
                    .filter(|t| *t > 0.0)
                    .unwrap_or(15.0),
            ),
            heartbeat: Duration::from_secs(30),
            max_bytes: self
                .settings
                .raw
                .x_file_stream_max_bytes
                .filter(|b| *b > 0)
                .map_or(10 << 20, |b| b as usize),
            buffer_bytes: filestream::BUFFER_BYTES,
            gzip,
        };
        let warn = self.warn.clone();
        let fs_task = tokio::spawn(filestream::run(
            self.backend.clone(),
            fs_cfg,
            fs_rx,
            self.stopped.clone(),
            move |m| warn_user(&warn, m),
        ));
        let (up_tx, up_rx) = mpsc::channel(1024);
        let warn = self.warn.clone();
        let uploader = uploads::Uploader::new(
            self.backend.clone(),
            path.clone(),
            self.settings.files_dir(),
            fs_tx.clone(),
            self.log.clone(),
            self.stats.clone(),
            Arc::new(move |m| warn_user(&warn, m)),
        );
        let up_task = tokio::spawn(uploads::run(uploader, up_rx));

        let mut state = FollowState {
            run: first_run,
            storage_id: init.storage_id.clone(),
            config: RunConfig::default(),
            metrics: Metrics::default(),
            summary: JValue::Object(Vec::new()),
            summary_dirty: false,
            console: ConsoleLines {
                console: Console::default(),
                finished: 0,
                sent: Default::default(),
                label: self.settings.raw.x_label.clone().filter(|l| !l.is_empty()),
            },
            params_dirty: false,
            config_dirty: false,
            upsert_due: None,
            environment: Vec::new(),
            seen_run: false,
            exit_code: None,
            exit_synthesized: false,
            torn: false,
            skip: Skip::default(),
            saves: tokio::task::JoinSet::new(),
            artifact_locks: Default::default(),
        };
        if self.progress.is_some() {
            // Replaying: what the server has is already sent.
            state.skip = Skip {
                history: resumed.history_line_count.max(0),
                events: resumed.events_line_count.max(0),
                console: resumed.log_line_count.max(0) as u64,
            };
        }
        // A resumed run keeps the server's config under what is set now.
        state.config.apply(&resumed.config_record());
        if let Some(c) = &state.run.config {
            state.config.apply(c);
        }
        for (k, v) in &resumed.summary {
            insert_path(&mut state.summary, std::slice::from_ref(k), to_jvalue(v));
        }

        let mut reader: Option<LogReader<std::fs::File>> = None;
        let mut buf = Vec::new();
        let mut ctl_open = true;
        loop {
            // Read everything committed so far.
            if reader.is_none() {
                reader = LogReader::open(&self.settings.sync_file).ok();
            }
            if let Some(r) = &mut reader {
                loop {
                    match r.next_into(&mut buf) {
                        Ok(Some(pos)) => {
                            if let Some(p) = &self.progress {
                                use std::sync::atomic::Ordering::Relaxed;
                                p.bytes_read.store(pos.end, Relaxed);
                                p.records.fetch_add(1, Relaxed);
                            }
                            let record = match pb::Record::decode(&buf[..]) {
                                Ok(rec) => rec,
                                Err(e) => {
                                    self.log
                                        .warn(&format!("record in the log does not decode: {e}"));
                                    continue;
                                }
                            };
                            self.on_record(record, &mut state, &fs_tx, &up_tx, &path)
                                .await;
                        }
                        Ok(None) => {
                            state.torn = false;
                            break;
                        }
                        Err(ReadError::Truncated { .. }) => {
                            state.torn = true;
                            break;
                        }
                        Err(ReadError::Corrupt { offset, kind }) => {
                            let message = format!(
                                "transaction log corrupt at byte {offset} ({kind}); skipped to the next good block"
                            );
                            self.log.error(&message);
                            warn_user(&self.warn, message);
                            r.recover();
                        }
                        Err(e) => {
                            self.log
                                .error(&format!("cannot read the transaction log: {e}"));
                            break;
                        }
                    }
                }
            }
            self.flush_batch(&mut state, &fs_tx).await;
            if let Some(code) = state.exit_code {
                self.finish(code, &mut state, &path, &fs_tx, &up_tx).await;
                drop(up_tx);
                let _ = up_task.await;
                let (done_tx, done_rx) = oneshot::channel();
                let _ = fs_tx.send(FsMsg::Complete(code, done_tx)).await;
                let healthy = done_rx.await.unwrap_or(false);
                drop(fs_tx);
                let _ = fs_task.await;
                self.log.info(&format!(
                    "run finished on the server (file stream {})",
                    if healthy { "complete" } else { "failed" }
                ));
                self.announce_finished().await;
                for reply in exit_replies.drain(..) {
                    answer_exit(reply);
                }
                // Exits asked later (a second finish) are answered at once.
                while let Some(msg) = ctl.recv().await {
                    match msg {
                        OnlineCtl::Exit { reply } => answer_exit(reply),
                        OnlineCtl::LogArtifact { reply, .. } => {
                            answer_artifact(reply, Err("the run is finished".into()));
                        }
                        OnlineCtl::LinkArtifact { reply, .. } => {
                            answer_link(reply, Err("the run is finished".into()));
                        }
                        OnlineCtl::Init { .. } => {}
                    }
                }
                return Followed {
                    exit_code: Some(code),
                    exit_synthesized: state.exit_synthesized,
                    torn: state.torn,
                    file_stream_ok: healthy,
                };
            }
            // Wait for more of the log, an exit answer to hold, or a
            // debounced upsert.
            let upsert_wait = state
                .upsert_due
                .map(|d| d.saturating_duration_since(Instant::now()));
            tokio::select! {
                changed = self.committed.changed() => {
                    if changed.is_err() {
                        // The writer is gone: read what is left, then stop.
                        if let Some(r) = &mut reader {
                            while let Ok(Some(_)) = r.next_into(&mut buf) {
                                if let Ok(record) = pb::Record::decode(&buf[..]) {
                                    self.on_record(record, &mut state, &fs_tx, &up_tx, &path).await;
                                }
                            }
                        }
                        if state.exit_code.is_none() && self.progress.is_some() {
                            // A replayed log without an exit record: its
                            // process crashed. Finish the run as failed
                            // (exit code 1), as wandb-core's sync does.
                            state.exit_code = Some(1);
                            state.exit_synthesized = true;
                            continue;
                        }
                        if state.exit_code.is_none() {
                            // Closed without an exit (the service stopped):
                            // send what there is; the run stays unfinished.
                            self.flush_batch(&mut state, &fs_tx).await;
                            drop(up_tx);
                            let _ = up_task.await;
                            let (done_tx, done_rx) = oneshot::channel();
                            let _ = fs_tx.send(FsMsg::Flush(done_tx)).await;
                            let healthy = done_rx.await.unwrap_or(false);
                            drop(fs_tx);
                            let _ = fs_task.await;
                            self.announce_finished().await;
                            for reply in exit_replies.drain(..) {
                                answer_exit(reply);
                            }
                            return Followed {
                                exit_code: None,
                                exit_synthesized: false,
                                torn: state.torn,
                                file_stream_ok: healthy,
                            };
                        }
                    }
                }
                msg = ctl.recv(), if ctl_open => match msg {
                    Some(OnlineCtl::Exit { reply }) => exit_replies.push(reply),
                    Some(OnlineCtl::LinkArtifact { request, reply }) => {
                        self.start_link(&mut state, &path, *request, reply);
                    }
                    Some(OnlineCtl::LogArtifact { request, reply }) => {
                        let request = *request;
                        self.start_save(&mut state, &path, request.artifact.unwrap_or_default(),
                            request.history_step, request.staging_dir, reply);
                    }
                    Some(OnlineCtl::Init { done, .. }) => {
                        let _ = done.send(Err(BackendError::Config("the run was already initialised".into())));
                    }
                    None => ctl_open = false,
                },
                _ = sleep_opt(upsert_wait) => {
                    state.upsert_due = None;
                    self.upsert(&mut state, &path).await;
                }
            }
        }
    }

    async fn on_record(
        &mut self,
        record: pb::Record,
        s: &mut FollowState,
        fs: &mpsc::Sender<FsMsg>,
        up: &mpsc::Sender<UpMsg>,
        path: &RunPath,
    ) {
        let Some(kind) = record.record_type else {
            return;
        };
        match kind {
            RecordType::History(h) => {
                if s.skip.history > 0 {
                    s.skip.history -= 1;
                    if let Some(p) = &self.progress {
                        p.history_skipped
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return;
                }
                let _ = fs.send(FsMsg::History(history_line(&h.item))).await;
                if let Some(p) = &self.progress {
                    p.history_sent
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            RecordType::Summary(sum) => {
                for item in &sum.update {
                    let p = item_path(&item.key, &item.nested_key);
                    let v = JValue::parse(&item.value_json).unwrap_or(JValue::Null);
                    insert_path(&mut s.summary, &p, v);
                }
                for item in &sum.remove {
                    remove_path(&mut s.summary, &item_path(&item.key, &item.nested_key));
                }
                s.summary_dirty = true;
            }
            RecordType::OutputRaw(o) => {
                let stderr = o.output_type() == pb::output_raw_record::OutputType::Stderr;
                s.console.console.write(stderr, &o.line);
            }
            RecordType::Output(o) => {
                let stderr = o.output_type() == pb::output_record::OutputType::Stderr;
                s.console.console.write(stderr, &o.line);
            }
            RecordType::Run(run) => {
                if !s.seen_run {
                    // The init record: already upserted.
                    s.seen_run = true;
                    return;
                }
                if let Some(c) = &run.config {
                    s.config.apply(c);
                    s.config_dirty = true;
                }
                s.run = run;
                s.params_dirty = true;
                s.schedule_upsert();
            }
            RecordType::Config(c) => {
                s.config.apply(&c);
                s.config_dirty = true;
                s.schedule_upsert();
            }
            RecordType::Telemetry(t) => {
                s.config.merge_telemetry(&t);
                s.config_dirty = true;
                s.schedule_upsert();
            }
            RecordType::Metric(m) => {
                s.metrics.define(&m);
                s.config_dirty = true;
                s.schedule_upsert();
            }
            RecordType::Environment(env) => {
                s.environment.push(env);
                self.write_metadata(s);
                let _ = up
                    .send(UpMsg::File {
                        path: "wandb-metadata.json".into(),
                        policy: Policy::Now,
                    })
                    .await;
                s.config_dirty = true;
                s.schedule_upsert();
            }
            RecordType::Files(files) => {
                for f in files.files {
                    let policy = match pb::files_item::PolicyType::try_from(f.policy) {
                        Ok(pb::files_item::PolicyType::End) => Policy::End,
                        Ok(pb::files_item::PolicyType::Live) => Policy::Live,
                        _ => Policy::Now,
                    };
                    let _ = up
                        .send(UpMsg::File {
                            path: f.path,
                            policy,
                        })
                        .await;
                }
            }
            RecordType::Stats(stats) => {
                if s.skip.events > 0 {
                    s.skip.events -= 1;
                    return;
                }
                let line = events_line(&stats, s.run.start_time.as_ref());
                let _ = fs.send(FsMsg::Events(line)).await;
            }
            RecordType::Alert(a) => {
                let severity = match a.level.to_uppercase().as_str() {
                    "WARN" | "WARNING" => "WARN",
                    "ERROR" => "ERROR",
                    _ => "INFO",
                };
                let vars = json!({
                    "entityName": path.entity, "projectName": path.project, "runName": path.name,
                    "title": a.title, "text": a.text, "severity": severity,
                    "waitDuration": a.wait_duration * 1000,
                });
                let backend = self.backend.clone();
                let log = self.log.clone();
                tokio::spawn(async move {
                    if let Err(e) = backend.notify_alert(vars).await {
                        log.error(&format!("alert not sent: {e}"));
                    }
                });
            }
            RecordType::Preempting(_) => {
                let _ = fs.send(FsMsg::Preempting).await;
            }
            RecordType::Exit(exit) => s.exit_code = Some(exit.exit_code),
            // Offline runs record artifacts in the log; sent when synced.
            RecordType::Artifact(a) => self.start_save(s, path, a, 0, String::new(), None),
            _ => {}
        }
    }

    /// After a batch of records: the summary and console lines that changed.
    async fn flush_batch(&mut self, s: &mut FollowState, fs: &mpsc::Sender<FsMsg>) {
        if std::mem::take(&mut s.summary_dirty) {
            let _ = fs.send(FsMsg::Summary(s.summary.to_json())).await;
        }
        for (n, line) in s.console.changed() {
            if n < s.skip.console {
                continue;
            }
            let _ = fs.send(FsMsg::Console(n, line)).await;
        }
    }

    async fn upsert(&self, s: &mut FollowState, path: &RunPath) {
        if !s.params_dirty && !s.config_dirty {
            return;
        }
        let config = s.config_dirty.then(|| {
            let mut cfg = config_json(&s.config, &s.metrics);
            if !s.environment.is_empty() {
                // `_wandb.e`: the environment per writer.
                cfg = add_environment(&cfg, &s.environment);
            }
            cfg
        });
        let vars = upsert_vars(
            &self.settings,
            &s.run,
            Some(path),
            &s.storage_id,
            config,
            s.params_dirty,
        );
        s.params_dirty = false;
        s.config_dirty = false;
        if let Err(e) = self.backend.upsert_bucket(vars, None).await {
            let message = format!("run update not sent: {e}");
            self.log.error(&message);
            warn_user(&self.warn, message);
        }
    }

    /// `wandb-metadata.json`: the environment records, merged.
    fn write_metadata(&self, s: &FollowState) {
        let mut merged = pb::EnvironmentRecord::default();
        for env in &s.environment {
            let _ = merged.merge(env.encode_to_vec().as_slice());
        }
        merged.info = None;
        let json = environment_json(&merged);
        let path = self.settings.files_dir().join("wandb-metadata.json");
        if let Err(e) = crate::stream::sender::write_atomically(&path, json.as_bytes()) {
            self.log.error(&format!("writing wandb-metadata.json: {e}"));
        }
    }

    /// Run files are final, the config is sent, every upload is done.
    async fn finish(
        &mut self,
        _code: i32,
        s: &mut FollowState,
        path: &RunPath,
        fs: &mpsc::Sender<FsMsg>,
        up: &mpsc::Sender<UpMsg>,
    ) {
        self.flush_batch(s, fs).await;
        let _ = self.files_done.wait_for(|d| *d).await;
        // Artifacts logged during the run are committed before it ends.
        while s.saves.join_next().await.is_some() {}
        if self.progress.is_some() {
            // Replaying: no run-files sender wrote these (W&B's service
            // writes none offline); make them from the log, as it does.
            let dir = self.settings.files_dir();
            let files = [
                ("config.yaml", s.config.to_yaml(&s.metrics)),
                ("wandb-summary.json", s.summary.to_json()),
            ];
            for (name, content) in files {
                if let Err(e) =
                    crate::stream::sender::write_atomically(&dir.join(name), content.as_bytes())
                {
                    self.log.error(&format!("writing {name}: {e}"));
                }
            }
        }
        if s.params_dirty || s.config_dirty {
            self.upsert(s, path).await;
        }
        let mut also = vec![
            "wandb-metadata.json".to_string(),
            "requirements.txt".to_string(),
            "config.yaml".to_string(),
            "wandb-summary.json".to_string(),
        ];
        if self.settings.console == crate::settings::Console::On {
            also.push(self.settings.output_file_name.clone());
        }
        let (done, wait) = oneshot::channel();
        if up.send(UpMsg::Finish { also, done }).await.is_ok() {
            let _ = wait.await;
        }
    }
}

struct FollowState {
    run: pb::RunRecord,
    storage_id: String,
    config: RunConfig,
    metrics: Metrics,
    summary: JValue,
    summary_dirty: bool,
    console: ConsoleLines,
    params_dirty: bool,
    config_dirty: bool,
    upsert_due: Option<Instant>,
    environment: Vec<pb::EnvironmentRecord>,
    seen_run: bool,
    exit_code: Option<i32>,
    exit_synthesized: bool,
    torn: bool,
    skip: Skip,
    /// Artifact saves in flight; the run finishes after them.
    saves: tokio::task::JoinSet<()>,
    /// Saves of one artifact name go one after another (version numbers
    /// then follow the order they were logged in).
    artifact_locks: std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// Lines the server already has (a continued sync): not sent again.
#[derive(Debug, Default)]
struct Skip {
    history: i64,
    events: i64,
    console: u64,
}

impl FollowState {
    fn schedule_upsert(&mut self) {
        self.upsert_due
            .get_or_insert_with(|| Instant::now() + UPSERT_DEBOUNCE);
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

fn answer_exit(reply: Option<Reply>) {
    if let Some(reply) = reply {
        reply.result(pb::result::ResultType::ExitResult(
            pb::RunExitResult::default(),
        ));
    }
}

fn item_path(key: &str, nested: &[String]) -> Vec<String> {
    if nested.is_empty() {
        vec![key.to_string()]
    } else {
        nested.to_vec()
    }
}

fn remove_path(root: &mut JValue, path: &[String]) {
    let JValue::Object(members) = root else {
        return;
    };
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        members.retain(|(k, _)| k != head);
    } else if let Some((_, child)) = members.iter_mut().find(|(k, _)| k == head) {
        remove_path(child, rest);
    }
}

fn to_jvalue(v: &Value) -> JValue {
    match v {
        Value::Null => JValue::Null,
        Value::Bool(b) => JValue::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(JValue::Int)
            .unwrap_or_else(|| JValue::Float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => JValue::Str(s.clone()),
        Value::Array(a) => JValue::Array(a.iter().map(to_jvalue).collect()),
        Value::Object(o) => {
            JValue::Object(o.iter().map(|(k, v)| (k.clone(), to_jvalue(v))).collect())
        }
    }
}

/// An environment record in the protobuf JSON mapping (camelCase), as
/// `wandb-metadata.json` holds it.
pub fn environment_json(env: &pb::EnvironmentRecord) -> String {
    let pool = wandb_proto::descriptor_pool();
    let Some(desc) = pool.get_message_by_name("wandb_internal.EnvironmentRecord") else {
        return "{}".into();
    };
    match prost_reflect::DynamicMessage::decode(desc, env.encode_to_vec().as_slice()) {
        Ok(msg) => {
            let mut out = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(
                &mut out,
                serde_json::ser::PrettyFormatter::with_indent(b"  "),
            );
            let _ = msg.serialize_with_options(&mut ser, &prost_reflect::SerializeOptions::new());
            String::from_utf8(out).unwrap_or_else(|_| "{}".into())
        }
        Err(_) => "{}".into(),
    }
}

/// Adds `_wandb.value.e = {writer_id: environment}` to an encoded config.
fn add_environment(config: &str, envs: &[pb::EnvironmentRecord]) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(config) else {
        return config.to_string();
    };
    let mut e = serde_json::Map::new();
    for env in envs {
        let writer = if env.writer_id.is_empty() {
            "default".to_string()
        } else {
            env.writer_id.clone()
        };
        let json: Value = serde_json::from_str(&environment_json(env)).unwrap_or(Value::Null);
        let slot = e.entry(writer).or_insert_with(|| json!({}));
        if let (Some(slot), Some(new)) = (slot.as_object_mut(), json.as_object()) {
            for (k, v) in new {
                slot.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(w) = v
        .get_mut("_wandb")
        .and_then(|w| w.get_mut("value"))
        .and_then(Value::as_object_mut)
    {
        w.insert("e".into(), Value::Object(e));
    }
    v.to_string()
}

fn uploads_enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// For tests of the pieces above.
pub fn files_dir_of(settings: &RunSettings) -> PathBuf {
    settings.files_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lines_rebuild_nested_objects() {
        let item = |path: &[&str], v: &str| pb::HistoryItem {
            nested_key: path.iter().map(|s| s.to_string()).collect(),
            value_json: v.into(),
            ..Default::default()
        };
        let line = history_line(&[
            item(&["loss"], "0.5"),
            item(&["img", "_type"], "\"image-file\""),
            item(&["img", "size"], "3"),
            item(&["_step"], "0"),
        ]);
        assert_eq!(
            line,
            r#"{"loss":0.5,"img":{"_type":"image-file","size":3},"_step":0}"#
        );
    }
}
