//! A run: what a training loop logs to.
//!
//! Every method encodes a record and hands it to the connection's queue;
//! none waits for the service except `finish` (and `init` before it), so a
//! slow disk or network never slows training.
//!
//! Long for one file, but one concept: the `Run` type and its methods
//! (the SDK's public surface), each small.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::server_request::ServerRequestType;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::metric::Metric;
use crate::rowframe::RowFrame;
use crate::rundir::RunDir;
use crate::service::Service;
use crate::settings::{Mode, Resolved, config_items};
use crate::value::Value;

/// Options of one [`Run::log_with`] call, as `run.log(..., step=, commit=)`
/// in Python.
///
/// ```
/// use wandb::LogOptions;
/// let at_step_10 = LogOptions::new().step(10);
/// let partial = LogOptions::new().commit(false);
/// # let _ = (at_step_10, partial);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    step: Option<u64>,
    commit: Option<bool>,
}

impl LogOptions {
    /// No step, default commit: each `log` is a new row.
    ///
    /// ```
    /// let o = wandb::LogOptions::new();
    /// # let _ = o;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Log into this step. A row for an earlier step is dropped by W&B
    /// (steps only increase); rows for the same step merge until a later
    /// step arrives.
    ///
    /// ```
    /// let o = wandb::LogOptions::new().step(3);
    /// # let _ = o;
    /// ```
    pub fn step(mut self, step: u64) -> Self {
        self.step = Some(step);
        self
    }

    /// `false`: add to the current row without ending it (the next
    /// committing `log` ends it).
    ///
    /// ```
    /// let o = wandb::LogOptions::new().commit(false);
    /// # let _ = o;
    /// ```
    pub fn commit(mut self, commit: bool) -> Self {
        self.commit = Some(commit);
        self
    }
}

/// How serious an [`Run::alert`] is.
///
/// ```
/// let level = wandb::AlertLevel::Warn;
/// # let _ = level;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertLevel {
    Info,
    Warn,
    Error,
}

/// A TensorBoard log directory for [`Run::tensorboard`].
///
/// ```
/// let train = wandb::TensorboardDir::new("logs/train").root("logs");
/// // Logs written before the run, or on other machines (an import):
/// let old = wandb::TensorboardDir::new("old/run3").existing();
/// # let _ = (train, old);
/// ```
#[derive(Debug, Clone)]
pub struct TensorboardDir {
    log_dir: PathBuf,
    root_dir: Option<PathBuf>,
    existing: bool,
}

impl TensorboardDir {
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        TensorboardDir {
            log_dir: log_dir.into(),
            root_dir: None,
            existing: false,
        }
    }

    /// Keys are prefixed by the log directory relative to `root` (none
    /// when it is the log directory itself).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root_dir = Some(root.into());
        self
    }

    /// Read every tfevents file of the directory, also those started before
    /// the run or on another host (by default only this run's own, as the
    /// Python SDK's patch reads them).
    pub fn existing(mut self) -> Self {
        self.existing = true;
        self
    }
}

/// When a file given to [`Run::save`] is uploaded (online).
///
/// ```
/// let policy = wandb::SavePolicy::Live;
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavePolicy {
    /// Now, and again at the end if it changed.
    Now,
    /// When the run finishes.
    End,
    /// Whenever it changes.
    Live,
}

/// What happened to the records of a run, so far.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
/// let wandb::RunStats { sent, dropped, undelivered } = run.stats();
/// # let _ = (sent, dropped, undelivered);
/// # Ok::<(), wandb::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Records written to the service.
    pub sent: u64,
    /// Records dropped because the queue was full
    /// ([`QueuePolicy::Drop`](crate::QueuePolicy::Drop)).
    pub dropped: u64,
    /// Records that could not be delivered (the service went away).
    pub undelivered: u64,
}

/// What [`Run::finish`] reports.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
/// let report = run.finish(0)?;
/// assert_eq!(report.exit_code, 0);
/// assert!(report.dir.unwrap().join(format!("run-{}.wandb", run.id())).is_file());
/// # Ok::<(), wandb::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishReport {
    pub exit_code: i32,
    pub stats: RunStats,
    /// The run's directory (`wandb/offline-run-…`); `None` when disabled.
    pub dir: Option<PathBuf>,
}

/// A run. Cheap to clone (`Arc`), `Send + Sync`: several threads can log
/// to it. Dropping the last clone finishes it (exit code 1 if the thread
/// is panicking, else 0).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
/// for step in 0..3 {
///     run.log(wandb::row! {"loss" => 1.0 / (step + 1) as f64, "epoch" => step})?;
/// }
/// let report = run.finish(0)?;
/// assert_eq!(report.stats.dropped, 0);
/// # Ok::<(), wandb::Error>(())
/// ```
#[derive(Clone)]
pub struct Run {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    dir: Option<RunDir>,
    conn: Option<Connection>,
    service: Mutex<Option<Arc<Service>>>,
    finished: AtomicBool,
    /// Our idea of the current step, only for naming media files.
    step: AtomicU64,
    finish_timeout: Duration,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.inner.id)
            .field("dir", &self.dir())
            .finish()
    }
}

impl Run {
    pub(crate) fn disabled(settings: &Resolved) -> Run {
        Run {
            inner: Arc::new(Inner {
                id: settings.run_id.clone(),
                dir: None,
                conn: None,
                service: Mutex::new(None),
                finished: AtomicBool::new(false),
                step: AtomicU64::new(0),
                finish_timeout: settings.finish_timeout,
            }),
        }
    }

    /// Creates the run directory, finds a service and starts the run there.
    pub(crate) fn start(settings: Resolved) -> Result<Run> {
        let dir = RunDir::create(&settings)?;
        let service = Service::get(&settings.transport)?;
        let conn = service.connect(settings.queue_capacity, settings.queue_policy)?;
        let id = settings.run_id.clone();
        // Handshake before a Run owns the connection, so a failure here
        // drops it without a finish.
        let wait = settings.init_timeout;
        let init = pb::ServerRequest {
            server_request_type: Some(ServerRequestType::InformInit(pb::ServerInformInitRequest {
                settings: Some(dir.settings(&settings)),
                info: Some(info(&id)),
            })),
            ..Default::default()
        };
        conn.request(init, "inform_init", wait)?;
        conn.publish_reliably(
            &record(&id, RecordType::Header(Default::default()), false),
            true,
        )?;
        let run_record = run_record(&settings, &dir);
        let answer = conn.request(
            record(&id, RecordType::Run(run_record.clone()), false),
            "the run record",
            wait + Duration::from_secs(10),
        )?;
        let result = match answer.server_response_type {
            Some(pb::server_response::ServerResponseType::ResultCommunicate(pb::Result {
                result_type: Some(pb::result::ResultType::RunResult(r)),
                ..
            })) => r,
            _ => return Err(Error::Refused("no run_result for the run record".into())),
        };
        if let Some(e) = result.error.filter(|e| !e.message.is_empty()) {
            return Err(Error::Refused(e.message));
        }
        let started = result.run.unwrap_or(run_record);
        let start = request(
            &id,
            RequestType::RunStart(pb::RunStartRequest {
                run: Some(started.clone()),
                info: None,
            }),
        );
        // The Python SDK ignores a late answer here too.
        match conn.request(start, "run_start", Duration::from_secs(30)) {
            Ok(_) | Err(Error::Timeout { .. }) => {}
            Err(e) => return Err(e),
        }
        conn.publish_reliably(
            &request(&id, RequestType::ProbeSystemInfo(Default::default())),
            true,
        )?;
        Ok(Run {
            inner: Arc::new(Inner {
                id,
                dir: Some(dir),
                conn: Some(conn),
                service: Mutex::new(Some(service)),
                finished: AtomicBool::new(false),
                step: AtomicU64::new(started.starting_step.max(0) as u64),
                finish_timeout: settings.finish_timeout,
            }),
        })
    }

    /// The run ID.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()).run_id("abc"))?;
    /// assert_eq!(run.id(), "abc");
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The run's directory (`<dir>/wandb/offline-run-<time>-<id>`), where
    /// its transaction log `run-<id>.wandb` and `files/` are; `None` when
    /// disabled.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// assert!(run.dir().unwrap().join("files").is_dir());
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn dir(&self) -> Option<&Path> {
        self.inner.dir.as_ref().map(|d| d.sync_dir.as_path())
    }

    /// The service's `WANDB_SERVICE` token, for child processes (Python
    /// ones too) that should log through the same service.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// assert!(run.service_token().unwrap().starts_with("3-"));
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn service_token(&self) -> Option<String> {
        self.service().map(|s| s.token())
    }

    /// The process ID of the service, when this run launched it
    /// ([`Transport::Launch`](crate::Transport::Launch)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// assert_eq!(run.service_pid(), None); // in-process
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn service_pid(&self) -> Option<u32> {
        self.service().and_then(|s| s.pid())
    }

    fn service(&self) -> Option<Arc<Service>> {
        self.inner
            .service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Logs a row of metrics: each call is a new step. Returns at once; the
    /// record is written by a background thread.
    ///
    /// Keys may contain `/` (W&B groups charts by the prefix) and `.`; nested
    /// maps become `outer.inner` keys. `NaN` and infinities are kept.
    /// `_timestamp` is added.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// run.log(wandb::row! {"train/loss" => 0.5, "train/acc" => 0.8})?;
    /// run.log([("lr", 0.001)])?;
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn log<I, K, V>(&self, row: I) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Value>,
    {
        self.log_with(row, LogOptions::default())
    }

    /// [`log`](Self::log) with an explicit step or commit.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// use wandb::LogOptions;
    /// run.log_with(wandb::row! {"loss" => 0.9}, LogOptions::new().step(0).commit(false))?;
    /// run.log_with(wandb::row! {"acc" => 0.1}, LogOptions::new().step(0))?;
    /// run.log_with(wandb::row! {"loss" => 0.7}, LogOptions::new().step(1))?;
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn log_with<I, K, V>(&self, row: I, options: LogOptions) -> Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Value>,
    {
        let Some(conn) = self.live()? else {
            return Ok(());
        };
        let step = options
            .step
            .unwrap_or_else(|| self.inner.step.load(Ordering::Relaxed));
        let mut frame = RowFrame::new();
        let mut has_timestamp = false;
        for (key, value) in row {
            let key = key.into();
            check_key(&key)?;
            has_timestamp |= key == "_timestamp";
            let mut value = value.into();
            if value.has_media() {
                self.store_media(conn, &key, step, &mut value)?;
            }
            frame.item(&key, &value);
        }
        if !has_timestamp {
            frame.item("_timestamp", &Value::Float(now()));
        }
        conn.publish_frame(frame.finish(&self.inner.id, options.step, options.commit))?;
        if let Some(s) = options.step {
            self.inner.step.fetch_max(s, Ordering::Relaxed);
        }
        if options.commit.unwrap_or(options.step.is_none()) {
            self.inner.step.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes media values into `files/media/` (on the writer thread) and
    /// announces them, before the row that refers to them.
    fn store_media(
        &self,
        conn: &Connection,
        key: &str,
        step: u64,
        value: &mut Value,
    ) -> Result<()> {
        let files_dir = &self
            .inner
            .dir
            .as_ref()
            .expect("a live run has a directory")
            .files_dir;
        match value {
            Value::Image(img) => {
                let rel = format!("media/images/{}", img.file_name(key, step));
                conn.write_file(files_dir.join(&rel), img.png().clone())?;
                img.path = Some(rel.clone());
                let files = pb::FilesRecord {
                    files: vec![pb::FilesItem {
                        path: rel,
                        ..Default::default()
                    }],
                    info: None,
                };
                conn.publish_reliably(
                    &record(&self.inner.id, RecordType::Files(files), false),
                    true,
                )
            }
            Value::List(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    self.store_media(conn, &format!("{key}_{i}"), step, v)?;
                }
                Ok(())
            }
            Value::Map(items) => {
                for (k, v) in items.iter_mut() {
                    self.store_media(conn, &format!("{key}.{k}"), step, v)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Sets one config value.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// run.config_set("optimizer", "adam")?;
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn config_set(&self, key: impl Into<String>, value: impl Into<Value>) -> Result<()> {
        self.config_items(vec![(key.into(), value.into())])
    }

    /// Adds or changes config values from anything that serialises to a map.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// run.config_update(&serde_json::json!({"epochs": 10, "model": {"layers": 4}}))?;
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn config_update<T: Serialize + ?Sized>(&self, config: &T) -> Result<()> {
        self.config_items(config_items(config)?)
    }

    fn config_items(&self, items: Vec<(String, Value)>) -> Result<()> {
        let Some(conn) = self.live()? else {
            return Ok(());
        };
        let mut update = Vec::with_capacity(items.len());
        for (key, value) in items {
            check_key(&key)?;
            update.push(pb::ConfigItem {
                value_json: value.to_json(),
                key,
                ..Default::default()
            });
        }
        let config = pb::ConfigRecord {
            update,
            ..Default::default()
        };
        conn.publish_reliably(
            &record(&self.inner.id, RecordType::Config(config), false),
            true,
        )
    }

    /// Sets a summary value (what the runs table shows), replacing the
    /// automatic last-value summary of that key.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// run.summary_set("best_acc", 0.97)?;
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn summary_set(&self, key: impl Into<String>, value: impl Into<Value>) -> Result<()> {
        let Some(conn) = self.live()? else {
            return Ok(());
        };
        let key = key.into();
        check_key(&key)?;
        let summary = pb::SummaryRecord {
            update: vec![pb::SummaryItem {
                value_json: value.into().to_json(),
                key,
                ..Default::default()
            }],
            ..Default::default()
        };
        conn.publish_reliably(
            &record(&self.inner.id, RecordType::Summary(summary), false),
            true,
        )
    }

    /// Defines how a metric is charted and summarised.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// use wandb::{Metric, Summary};
    /// run.define_metric(Metric::new("epoch").hidden(true))?;
    /// run.define_metric(Metric::new("val/*").step_metric("epoch").summary([Summary::Max]))?;
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn define_metric(&self, metric: Metric) -> Result<()> {
        let Some(conn) = self.live()? else {
            return Ok(());
        };
        if metric.name().is_empty() || metric.name() == "*" {
            return Err(Error::InvalidKey {
                key: metric.name().into(),
                reason: "a metric needs a name or a prefix before '*'",
            });
        }
        conn.publish_reliably(
            &record(
                &self.inner.id,
                RecordType::Metric(metric.to_record()),
                false,
            ),
            true,
        )
    }

    /// Sends an alert (by e-mail or Slack, as the user's W&B settings say;
    /// online only, kept in the log offline). Alerts with the same title
    /// within `wait` are sent once.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// use std::time::Duration;
    /// run.alert("loss diverged", "loss is NaN at step 120", wandb::AlertLevel::Error, Duration::from_secs(300))?;
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn alert(
        &self,
        title: impl Into<String>,
        text: impl Into<String>,
        level: AlertLevel,
        wait: Duration,
    ) -> Result<()> {
        let Some(conn) = self.live()? else {
            return Ok(());
        };
        let alert = pb::AlertRecord {
            title: title.into(),
            text: text.into(),
            level: match level {
                AlertLevel::Info => "INFO",
                AlertLevel::Warn => "WARN",
                AlertLevel::Error => "ERROR",
            }
            .into(),
            wait_duration: wait.as_secs() as i64,
            info: None,
        };
        conn.publish_reliably(
            &record(&self.inner.id, RecordType::Alert(alert), false),
            true,
        )
    }

    /// Mirrors a TensorBoard log directory into the run, as the Python
    /// SDK's `sync_tensorboard=True` does for each summary writer: the
    /// service follows the directory's tfevents files and logs their
    /// scalars, histograms, images and PR curves as rows (keys prefixed by
    /// the directory relative to the root: the given one, or the common
    /// path of the run's directories; the TensorBoard step as
    /// `global_step`), and saves the tfevents files in the run.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// run.tensorboard(wandb::TensorboardDir::new(dir.path().join("logs/train")))?;
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn tensorboard(&self, dir: TensorboardDir) -> Result<()> {
        let Some(conn) = self.live()? else {
            return Ok(());
        };
        // Absolute: the service resolves relative paths against the run's
        // root directory, which need not be this process's.
        // Bucket URLs (`s3://…`, `gs://…`) as given.
        let abs = |p: &Path| {
            if wandb_tensorboard::cloud::is_cloud(&p.to_string_lossy()) {
                return Ok(p.to_path_buf());
            }
            std::path::absolute(p).map_err(|e| Error::io(p, e))
        };
        let log_dir = abs(&dir.log_dir)?;
        let root_dir = dir.root_dir.as_deref().map(abs).transpose()?;
        let tb = pb::TbRecord {
            log_dir: log_dir.to_string_lossy().into_owned(),
            save: true,
            root_dir: root_dir
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ignore_timestamp: dir.existing,
            ignore_hostname: dir.existing,
            ..Default::default()
        };
        conn.publish_reliably(
            &record(&self.inner.id, RecordType::Tbrecord(tb), false),
            true,
        )
    }

    /// Copies a file into the run's `files/` (under its file name) and
    /// uploads it as `policy` says. Returns its name in the run.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// # let model = dir.path().join("model.bin");
    /// # std::fs::write(&model, b"weights")?;
    /// let name = run.save(&model, wandb::SavePolicy::End)?;
    /// assert_eq!(name, "model.bin");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>, policy: SavePolicy) -> Result<String> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::InvalidValue {
                key: path.display().to_string(),
                reason: "not a file name".into(),
            })?;
        let Some(conn) = self.live()? else {
            return Ok(name);
        };
        let target = self
            .inner
            .dir
            .as_ref()
            .expect("a live run has a directory")
            .files_dir
            .join(&name);
        std::fs::copy(path, &target).map_err(|e| Error::io(path, e))?;
        let files = pb::FilesRecord {
            files: vec![pb::FilesItem {
                path: name.clone(),
                policy: match policy {
                    SavePolicy::Now => pb::files_item::PolicyType::Now,
                    SavePolicy::End => pb::files_item::PolicyType::End,
                    SavePolicy::Live => pb::files_item::PolicyType::Live,
                } as i32,
                ..Default::default()
            }],
            info: None,
        };
        conn.publish_reliably(
            &record(&self.inner.id, RecordType::Files(files), false),
            true,
        )?;
        Ok(name)
    }

    /// Tells W&B the run is about to be preempted (so it shows as preempted,
    /// not crashed, if the process dies now).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// run.mark_preempting()?;
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn mark_preempting(&self) -> Result<()> {
        let Some(conn) = self.live()? else {
            return Ok(());
        };
        conn.publish_reliably(
            &record(
                &self.inner.id,
                RecordType::Preempting(Default::default()),
                false,
            ),
            true,
        )
    }

    /// Records sent, dropped and undelivered so far.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// assert_eq!(run.stats().dropped, 0);
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn stats(&self) -> RunStats {
        // The counters stay readable after finish (nothing changes them).
        self.inner
            .conn
            .as_ref()
            .map_or_else(RunStats::default, |c| c.counters().snapshot())
    }

    /// Finishes the run: everything queued is delivered, the service writes
    /// the exit record and (online) uploads what is left, within the
    /// finish timeout. Later calls on the run return [`Error::Finished`].
    ///
    /// Returns [`Error::Incomplete`] if records were dropped or not
    /// delivered, with the counts.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let run = wandb::init(wandb::Settings::new().mode(wandb::Mode::Offline).dir(dir.path()))?;
    /// run.log([("x", 1)])?;
    /// let report = run.finish(0)?;
    /// println!("run written to {}", report.dir.unwrap().display());
    /// assert!(matches!(run.log([("x", 2)]), Err(wandb::Error::Finished)));
    /// # Ok::<(), wandb::Error>(())
    /// ```
    pub fn finish(&self, exit_code: i32) -> Result<FinishReport> {
        self.inner.finish(exit_code)
    }

    /// The connection, or `None` when disabled; `Finished` after finish.
    fn live(&self) -> Result<Option<&Connection>> {
        if self.inner.finished.load(Ordering::Acquire) {
            return Err(Error::Finished);
        }
        Ok(self.inner.conn.as_ref())
    }
}

impl Inner {
    fn finish(&self, exit_code: i32) -> Result<FinishReport> {
        if self.finished.swap(true, Ordering::AcqRel) {
            return Err(Error::Finished);
        }
        let dir = self.dir.as_ref().map(|d| d.sync_dir.clone());
        let Some(conn) = &self.conn else {
            return Ok(FinishReport {
                exit_code,
                stats: RunStats::default(),
                dir,
            });
        };
        let exit = record(
            &self.id,
            RecordType::Exit(pb::RunExitRecord {
                exit_code,
                ..Default::default()
            }),
            false,
        );
        let mut failure = conn
            .request(exit, "the exit record", self.finish_timeout)
            .err();
        if failure.is_none() {
            let shutdown = request(&self.id, RequestType::Shutdown(Default::default()));
            if let Err(e) = conn.request(shutdown, "shutdown", Duration::from_secs(30)) {
                failure = Some(e);
            }
            let done = pb::ServerRequest {
                server_request_type: Some(ServerRequestType::InformFinish(
                    pb::ServerInformFinishRequest {
                        info: Some(info(&self.id)),
                    },
                )),
                ..Default::default()
            };
            let _ = conn.publish_reliably(&done, false);
        }
        conn.close();
        let stats = conn.counters().snapshot();
        // A service we started stops with its last run (like the Python
        // SDK's teardown at exit), so the run's files are complete now.
        drop(
            self.service
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let report = FinishReport {
            exit_code,
            stats,
            dir,
        };
        if let Some(e) = failure {
            return Err(Error::Incomplete {
                reason: e.to_string(),
                report: Box::new(report),
            });
        }
        if stats.dropped > 0 || stats.undelivered > 0 {
            tracing::warn!(
                "wandb: run {} finished with {} records dropped and {} undelivered",
                self.id,
                stats.dropped,
                stats.undelivered
            );
            if stats.undelivered > 0 {
                return Err(Error::Incomplete {
                    reason: conn
                        .closed_reason()
                        .unwrap_or_else(|| "records were not delivered".into()),
                    report: Box::new(report),
                });
            }
        }
        Ok(report)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.finished.load(Ordering::Acquire) {
            return;
        }
        let code = if std::thread::panicking() { 1 } else { 0 };
        if let Err(e) = self.finish(code) {
            tracing::warn!("wandb: finishing run {} on drop: {e}", self.id);
        }
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidKey {
            key: key.into(),
            reason: "keys cannot be empty",
        });
    }
    if key == "_step" || key == "_runtime" {
        return Err(Error::InvalidKey {
            key: key.into(),
            reason: "set by W&B (use LogOptions::step for the step)",
        });
    }
    Ok(())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn info(id: &str) -> pb::RecordInfo {
    pb::RecordInfo {
        stream_id: id.into(),
        ..Default::default()
    }
}

fn record(id: &str, record_type: RecordType, local: bool) -> pb::ServerRequest {
    pb::ServerRequest {
        server_request_type: Some(ServerRequestType::RecordPublish(pb::Record {
            record_type: Some(record_type),
            control: local.then(|| pb::Control {
                local: true,
                ..Default::default()
            }),
            info: Some(info(id)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn request(id: &str, request_type: RequestType) -> pb::ServerRequest {
    record(
        id,
        RecordType::Request(pb::Request {
            request_type: Some(request_type),
        }),
        true,
    )
}

fn run_record(s: &Resolved, dir: &RunDir) -> pb::RunRecord {
    // `_wandb` first, as the Python SDK sends it; the service fills it in.
    let mut update = vec![pb::ConfigItem {
        key: "_wandb".into(),
        value_json: "{}".into(),
        ..Default::default()
    }];
    update.extend(s.config.iter().map(|(k, v)| pb::ConfigItem {
        key: k.clone(),
        value_json: v.to_json(),
        ..Default::default()
    }));
    let secs = dir.start_time.trunc();
    pb::RunRecord {
        run_id: s.run_id.clone(),
        entity: s.entity.clone().unwrap_or_default(),
        project: s.project.clone().unwrap_or_default(),
        config: Some(pb::ConfigRecord {
            update,
            ..Default::default()
        }),
        run_group: s.group.clone().unwrap_or_default(),
        job_type: s.job_type.clone().unwrap_or_default(),
        display_name: s.name.clone().unwrap_or_default(),
        notes: s.notes.clone().unwrap_or_default(),
        tags: s.tags.clone(),
        host: crate::rundir::hostname(),
        start_time: Some(prost_types::Timestamp {
            seconds: secs as i64,
            nanos: ((dir.start_time - secs) * 1e9) as i32,
        }),
        telemetry: Some(pb::TelemetryRecord {
            feature: Some(pb::Feature {
                offline: s.mode != Mode::Online,
                set_init_config: !s.config.is_empty(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
