//! One sync: its runs, their progress, and the messages for the user.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prost::Message as _;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_store::txlog::{HeaderError, LogReader, ReadError};

use super::paths::RunTarget;
use crate::online::{InitResult, Replay, ReplayOutcome, ReplayProgress, replay};
use crate::runlog::RunLog;
use crate::settings::RunSettings;

/// How bad a message is (the SDK's `ServerSyncMessage.Severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// A line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub severity: Severity,
    pub content: String,
}

/// What a sync is asked to do.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Backend address and key, and other settings runs are sent with.
    pub settings: pb::Settings,
    pub new_entity: Option<String>,
    pub new_project: Option<String>,
    pub new_run_id: Option<String>,
    pub new_job_type: Option<String>,
    pub tag_replacements: HashMap<String, String>,
    /// Follow logs still being written until their exit record.
    pub live: bool,
    /// Live: a run whose writer shows no sign of life (heartbeat, log
    /// growth) for this long is left unfinished on the server (crashed)
    /// and not marked synced, so it resumes if the writer comes back
    /// (`sync --watch`). `None`: wait for the exit record forever.
    pub stale_after: Option<std::time::Duration>,
    pub skip_synced: bool,
    /// Only say what would be synced.
    pub dry_run: bool,
    pub parallelism: usize,
}

/// Where one run is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    Waiting,
    Syncing,
    /// Sent; the run's path on the server, and whether it had an exit
    /// record (runs without one stay unfinished there: they crashed).
    Done {
        path: String,
        finished: bool,
    },
    Skipped(String),
    Failed(String),
}

/// One run of a sync.
pub struct RunEntry {
    pub target: RunTarget,
    /// How messages name the run: its directory, relative when shorter.
    pub display: String,
    /// `entity/project/id` once the run record is read (empty parts left
    /// out), as wandb-core labels a run's messages and progress.
    pub label: Mutex<String>,
    pub total_bytes: u64,
    pub progress: Arc<ReplayProgress>,
    pub status: Mutex<RunStatus>,
    pub started: Mutex<Option<Instant>>,
}

impl RunEntry {
    pub fn status(&self) -> RunStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, s: RunStatus) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// A short name: the run directory's name.
    pub fn name(&self) -> String {
        self.target
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.target.log.display().to_string())
    }
}

/// A new `debug-sync.<date>.<time>.log` (UTC) in `dir`, numbered
/// (`….1.log`) when one of that second exists, as wandb-core names the log
/// of a `wandb sync`. `None` (logged) when it cannot be created.
fn create_debug_sync_log(dir: &Path) -> Option<std::path::PathBuf> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    // 2026-12-05T23:53:43Z → 20261205.235343
    let stamp = stamp
        .trim_end_matches('Z')
        .replace(['-', ':'], "")
        .replace('T', ".");
    let created = std::fs::create_dir_all(dir).and_then(|()| {
        let mut n = 0;
        loop {
            let name = match n {
                0 => format!("debug-sync.{stamp}.log"),
                n => format!("debug-sync.{stamp}.{n}.log"),
            };
            let path = dir.join(name);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(e),
            }
        }
    });
    created
        .map_err(|e| tracing::warn!("no debug-sync log in {}: {e}", dir.display()))
        .ok()
}

/// A sync in progress (or done).
pub struct SyncSession {
    pub runs: Vec<Arc<RunEntry>>,
    /// Shared with the replays, which add their warnings.
    messages: Arc<Mutex<Vec<Message>>>,
    /// How many messages `take_new_messages` has handed out.
    taken: Mutex<usize>,
    options: SyncOptions,
    /// `<wandb_dir>/logs/debug-sync.<date>.<time>.log`, the runs' log lines.
    log_file: Option<std::path::PathBuf>,
}

impl SyncSession {
    pub fn new(
        targets: Vec<RunTarget>,
        problems: Vec<String>,
        options: SyncOptions,
        cwd: &Path,
    ) -> Self {
        let runs = targets
            .into_iter()
            .map(|target| {
                let total_bytes = std::fs::metadata(&target.log).map_or(0, |m| m.len());
                let display = display_path(&target, cwd);
                Arc::new(RunEntry {
                    label: Mutex::new(display.clone()),
                    display,
                    target,
                    total_bytes,
                    progress: Arc::default(),
                    status: Mutex::new(RunStatus::Waiting),
                    started: Mutex::new(None),
                })
            })
            .collect();
        let log_file = options
            .settings
            .wandb_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .and_then(|dir| create_debug_sync_log(&Path::new(dir).join("logs")));
        let session = Self {
            runs,
            messages: Arc::default(),
            taken: Mutex::new(0),
            options,
            log_file,
        };
        for p in problems {
            session.say(Severity::Error, p);
        }
        session
    }

    /// A message about one run: `[entity/project/id] …`.
    fn say_for(&self, entry: &RunEntry, severity: Severity, content: String) {
        let label = entry
            .label
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.say(severity, format!("[{label}] {content}"));
    }

    pub fn say(&self, severity: Severity, content: String) {
        push(&self.messages, severity, content);
    }

    /// Every message so far.
    pub fn messages(&self) -> Vec<Message> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Messages not handed out before.
    pub fn take_new_messages(&self) -> Vec<Message> {
        let all = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let new = all[*taken..].to_vec();
        *taken = all.len();
        new
    }

    /// Syncs every run, `parallelism` at a time; returns when all are done.
    pub async fn run(self: &Arc<Self>) {
        // Several logs sent as one run (`--id`, resumed fragments) go one
        // after another, oldest first (directories are named by time, and
        // the runs are sorted by path), as wandb-core does.
        let parallelism = if self.options.new_run_id.is_some() {
            1
        } else {
            self.options.parallelism.max(1)
        };
        let limit = Arc::new(tokio::sync::Semaphore::new(parallelism));
        let mut tasks = Vec::new();
        for entry in &self.runs {
            if self.options.skip_synced && entry.target.is_synced() {
                entry.set(RunStatus::Skipped("already synced".into()));
                self.say(
                    Severity::Info,
                    format!("Skipping {} (already synced)", entry.display),
                );
                continue;
            }
            if self.options.dry_run {
                entry.set(RunStatus::Skipped("dry run".into()));
                self.say(Severity::Info, format!("Would sync {}", entry.display));
                continue;
            }
            let session = self.clone();
            let entry = entry.clone();
            let limit = limit.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire().await;
                session.sync_one(&entry).await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn sync_one(self: &Arc<Self>, entry: &Arc<RunEntry>) {
        entry.set(RunStatus::Syncing);
        *entry.started.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        // Live: a run just started may not have its run record on disk yet.
        if self.options.live {
            let mut waited = false;
            while let Err(FirstRun::NotYet(_)) = first_run_record(&entry.target.log) {
                if let Some(limit) = self.options.stale_after
                    && crate::heartbeat::is_quiet(&entry.target.log, limit)
                {
                    let e = format!(
                        "its writer stopped before the run record (no sign of life for {})",
                        humantime::format_duration(limit)
                    );
                    self.say_for(entry, Severity::Warning, e.clone());
                    entry.set(RunStatus::Failed(e));
                    return;
                }
                if !waited {
                    self.say_for(entry, Severity::Info, "waiting for the run record".into());
                    waited = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        let job = match self.prepare(entry) {
            Ok(r) => r,
            Err(e) => {
                self.say(
                    Severity::Error,
                    format!("Failed to read \"{}\": {e}", entry.display),
                );
                entry.set(RunStatus::Failed(e));
                return;
            }
        };
        match replay(job).await {
            Ok(outcome) => self.finished(entry, outcome),
            Err(e) => {
                let e = e.to_string();
                self.say(
                    Severity::Error,
                    format!("Failed to sync \"{}\": {e}", entry.display),
                );
                entry.set(RunStatus::Failed(e));
            }
        }
    }

    fn finished(&self, entry: &RunEntry, o: ReplayOutcome) {
        let path = format!("{}/{}/{}", o.entity, o.project, o.name);
        let skipped = entry.progress.history_skipped.load(Relaxed);
        if skipped > 0 {
            self.say_for(
                entry,
                Severity::Info,
                format!("the server already had {skipped} history rows; sent the rest"),
            );
        }
        if !o.file_stream_ok {
            let e = "some data did not reach the server; run sync again to send the rest";
            self.say_for(entry, Severity::Error, e.into());
            entry.set(RunStatus::Failed(e.into()));
            return;
        }
        if o.writer_gone {
            // Not marked synced: if the writer comes back (a stalled node,
            // a healed filesystem), the run resumes where it stopped.
            let quiet = self
                .options
                .stale_after
                .map(|d| humantime::format_duration(d).to_string())
                .unwrap_or_default();
            self.say_for(
                entry,
                Severity::Warning,
                format!(
                    "no exit record and no sign of its writer for {quiet}: the run is left \
                     unfinished on the server (crashed); it resumes if the writer comes back"
                ),
            );
            entry.set(RunStatus::Done {
                path,
                finished: false,
            });
            return;
        }
        if o.torn {
            // Not marked synced: the rest may still come (a live run).
            self.say(
                Severity::Error,
                format!(
                    "Failed to sync all data from \"{}\": the file ends with an incomplete record. \
                     If the run is still running, retry after it finishes or use `wandb beta sync --live`.",
                    entry.display
                ),
            );
        } else {
            if o.exit_synthesized {
                self.say_for(
                    entry,
                    Severity::Warning,
                    "the log has no exit record (the process crashed): the run is marked failed (exit code 1)".into(),
                );
            }
            if let Err(e) = std::fs::write(entry.target.marker(), b"") {
                self.say_for(
                    entry,
                    Severity::Warning,
                    format!("synced, but cannot mark it synced: {e}"),
                );
            }
            self.say_for(
                entry,
                Severity::Info,
                format!("Finished syncing {}", entry.display),
            );
        }
        entry.set(RunStatus::Done {
            path,
            finished: !o.exit_synthesized,
        });
    }

    /// Progress for `sync_status`: one `OperationStats` per run.
    pub fn operation_stats(&self) -> Vec<pb::OperationStats> {
        self.runs
            .iter()
            .map(|entry| {
                let label = entry
                    .label
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let mut operations = Vec::new();
                if entry.status() == RunStatus::Syncing {
                    let p = &entry.progress;
                    let read = p.bytes_read.load(Relaxed);
                    let runtime = entry
                        .started
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .map_or(0.0, |t| t.elapsed().as_secs_f64());
                    operations.push(pb::Operation {
                        desc: format!(
                            "sending {} records ({} history rows)",
                            p.records.load(Relaxed),
                            p.history_sent.load(Relaxed)
                        ),
                        runtime_seconds: runtime,
                        progress: format!("{}/{}", bytes(read), bytes(entry.total_bytes)),
                        ..Default::default()
                    });
                }
                pb::OperationStats {
                    label,
                    total_operations: operations.len() as i64,
                    operations,
                }
            })
            .collect()
    }

    /// The replay of one run: its first run record with the overrides, and
    /// settings pointing at its files.
    fn prepare(&self, entry: &RunEntry) -> Result<Replay, String> {
        let log = &entry.target.log;
        let mut run = first_run_record(log).map_err(|e| match e {
            FirstRun::NotYet(e) | FirstRun::Bad(e) => e,
        })?;
        let o = &self.options;
        if let Some(v) = o.new_entity.clone().filter(|v| !v.is_empty()) {
            run.entity = v;
        }
        if let Some(v) = o.new_project.clone().filter(|v| !v.is_empty()) {
            run.project = v;
        }
        if let Some(v) = o.new_run_id.clone().filter(|v| !v.is_empty()) {
            run.run_id = v;
        }
        if let Some(v) = o.new_job_type.clone().filter(|v| !v.is_empty()) {
            run.job_type = v;
        }
        if !o.tag_replacements.is_empty() {
            for t in &mut run.tags {
                if let Some(new) = o.tag_replacements.get(t.as_str()) {
                    *t = new.clone();
                }
            }
            run.tags.retain(|t| !t.is_empty());
        }
        // As wandb-core's sync: the run says it was synced (telemetry).
        run.telemetry
            .get_or_insert_with(Default::default)
            .feature
            .get_or_insert_with(Default::default)
            .sync2 = true;
        *entry.label.lock().unwrap_or_else(|e| e.into_inner()) =
            [&run.entity, &run.project, &run.run_id]
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join("/");
        let mut s = o.settings.clone();
        s.run_id = Some(run.run_id.clone());
        s.sync_file = Some(log.to_string_lossy().into_owned());
        s.sync_dir = Some(entry.target.dir.to_string_lossy().into_owned());
        s.offline = Some(false);
        s.mode = Some("online".into());
        // Continue where the server's data ends.
        s.resume = Some("allow".into());
        if !run.project.is_empty() {
            s.project = Some(run.project.clone());
        }
        if !run.entity.is_empty() {
            s.entity = Some(run.entity.clone());
        }
        s.log_internal = None;
        let settings =
            RunSettings::from_proto(s, &run.run_id).map_err(|e| format!("settings: {e}"))?;
        let label = entry
            .label
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(Replay {
            settings: Arc::new(settings),
            run,
            live: o.live,
            stale_after: o.stale_after.filter(|_| o.live),
            progress: entry.progress.clone(),
            log: RunLog::open(&entry.name(), self.log_file.as_deref()),
            warn: {
                let (messages, label) = (self.messages.clone(), label.clone());
                Arc::new(move |m: String| {
                    push(&messages, Severity::Warning, format!("[{label}] {m}"));
                })
            },
            ready: {
                let messages = self.messages.clone();
                let settings = self.options.settings.clone();
                Box::new(move |init: &InitResult| {
                    let url = run_url(&settings, &init.entity, &init.project, &init.name);
                    let content = if init.display_name.is_empty() {
                        format!("[{label}] View run at {url}")
                    } else {
                        format!("[{label}] View run {} at {url}", init.display_name)
                    };
                    push(&messages, Severity::Info, content);
                })
            },
        })
    }
}

fn push(messages: &Mutex<Vec<Message>>, severity: Severity, content: String) {
    messages
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Message { severity, content });
}

/// The run directory if its name has the run ID of `run-<id>.wandb`, else
/// the file; relative to `cwd` when that is shorter (as wandb-core shows it).
fn display_path(target: &RunTarget, cwd: &Path) -> String {
    let id = target
        .log
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("run-"))
        .and_then(|n| n.strip_suffix(".wandb"));
    let dir_has_id = id.is_some_and(|id| {
        target
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|d| d.contains(id))
    });
    let p = if dir_has_id { &target.dir } else { &target.log };
    let full = p.display().to_string();
    match p.strip_prefix(cwd) {
        Ok(rel) if rel.as_os_str().len() < full.len() && !rel.as_os_str().is_empty() => {
            rel.display().to_string()
        }
        _ => full,
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1}GB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1}MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1}KB", n as f64 / 1024.0),
        n => format!("{n}B"),
    }
}

fn run_url(settings: &pb::Settings, entity: &str, project: &str, name: &str) -> String {
    let app = settings
        .app_url
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let base = settings
                .base_url
                .clone()
                .unwrap_or_else(|| "https://api.wandb.ai".into());
            base.replace("//api.", "//")
        });
    format!(
        "{}/{entity}/{project}/runs/{name}",
        app.trim_end_matches('/')
    )
}

/// Why a log's run record could not be had.
pub enum FirstRun {
    /// The log ends before one (it may still come, if the run is live).
    NotYet(String),
    Bad(String),
}

/// The log's first run record (written at `wandb.init`).
pub fn first_run_record(log: &Path) -> Result<pb::RunRecord, FirstRun> {
    let mut reader = LogReader::open(log).map_err(|e| match e {
        ReadError::Io(e) => FirstRun::Bad(format!("cannot read {}: {e}", log.display())),
        ReadError::Header(HeaderError::TooShort { .. }) | ReadError::Truncated { .. } => {
            FirstRun::NotYet(format!("{} is empty", log.display()))
        }
        ReadError::Header(h) => FirstRun::Bad(format!(
            "{} is not a W&B transaction log (bad header: {h})",
            log.display()
        )),
        other => FirstRun::Bad(format!("cannot read {}: {other}", log.display())),
    })?;
    let mut buf = Vec::new();
    loop {
        match reader.next_into(&mut buf) {
            Ok(Some(_)) => {
                if let Ok(pb::Record {
                    record_type: Some(RecordType::Run(run)),
                    ..
                }) = pb::Record::decode(&buf[..])
                {
                    if run.run_id.is_empty() {
                        return Err(FirstRun::Bad("its run record has no run ID".into()));
                    }
                    return Ok(run);
                }
            }
            Ok(None) | Err(ReadError::Truncated { .. }) => {
                return Err(FirstRun::NotYet(format!(
                    "{} has no run record",
                    log.display()
                )));
            }
            Err(ReadError::Corrupt { offset, .. }) => {
                return Err(FirstRun::Bad(format!(
                    "{} is corrupt at byte {offset}, before its run record",
                    log.display()
                )));
            }
            Err(e) => return Err(FirstRun::Bad(format!("cannot read {}: {e}", log.display()))),
        }
    }
}
