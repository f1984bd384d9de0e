//! The online sender: everything a run sends to the W&B backend.
//!
//! A peer of [`crate::stream`]: a live run's stream starts it beside its
//! pipeline, and `sync` runs it over a finished log ([`replay`]). It
//! follows the run's transaction log as the writer commits it (the log is
//! the queue: memory stays bounded however slow the network, and the same
//! records drive a later `sync`) and turns records into backend traffic
//! ([`follow`]): history rows, events, the summary and console lines into
//! the file stream ([`filestream`], lines built in [`lines`]); run files
//! and media into uploads ([`uploads`]); run parameters and config into
//! debounced UpsertBuckets ([`upsert`]); artifacts into save and link
//! jobs ([`requests`], [`artifacts`]). The handler asks it for the
//! blocking part of `wandb.init` (resume status and the first
//! UpsertBucket) and hands it the exit answer, which goes out once every
//! upload is done and the file stream is complete. It talks back only
//! through [`events`]: warnings for the user, and that it is done.

pub(crate) mod artifacts;
pub(crate) mod checksums;
pub(crate) mod events;
mod exits;
mod filestream;
mod follow;
mod lines;
mod replay;
mod requests;
mod syncstate;
pub(crate) mod uploads;
mod upsert;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use wandb_proto::pb;

pub(crate) use self::events::{Event, Events};
pub(crate) use self::replay::{Replay, ReplayOutcome, ReplayProgress, replay};
use self::requests::{answer_exit, refuse_artifacts};
use self::uploads::UploadStats;
use self::upsert::{config_json, upsert_vars};
use crate::backend::graphql::ResumeState;
use crate::backend::{Backend, BackendConfig, BackendError};
use crate::respond::Reply;
use crate::runlog::RunLog;
use crate::runstate::config::RunConfig;
use crate::runstate::metrics::Metrics;
use crate::settings::RunSettings;

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
    /// The step the run's next row gets: the resumed run's next, else the
    /// run record's; fixed by the first upload of this log (`syncstate`).
    pub starting_step: i64,
}

/// The handler's handle on the online sender.
pub struct OnlineHandle {
    pub ctl: mpsc::Sender<OnlineCtl>,
    /// The server stopped the run (from the UI).
    pub stopped: Arc<AtomicBool>,
    pub backend: Backend,
    pub stats: Arc<UploadStats>,
}

/// Starts the online sender of a run; it tells the run what it must know
/// through `events`.
pub(crate) fn spawn(
    settings: Arc<RunSettings>,
    log: RunLog,
    committed: watch::Receiver<u64>,
    files_done: watch::Receiver<bool>,
    events: Events,
) -> Result<(OnlineHandle, tokio::task::JoinHandle<bool>), BackendError> {
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
        events,
        stopped: stopped.clone(),
        progress: None,
        unfinished_if_no_exit: false,
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

/// One run's sender (live or replaying).
struct Sender {
    settings: Arc<RunSettings>,
    backend: Backend,
    log: RunLog,
    committed: watch::Receiver<u64>,
    files_done: watch::Receiver<bool>,
    events: Events,
    stopped: Arc<AtomicBool>,
    stats: Arc<UploadStats>,
    /// Set when replaying a finished log (sync): how far it has been read.
    progress: Option<Arc<ReplayProgress>>,
    /// A replay that ends because its writer was judged gone (`sync
    /// --watch`) leaves a run without an exit record unfinished (W&B shows
    /// it crashed), so that the writer may still come back, instead of
    /// failing it as a plain sync of a crashed log does.
    unfinished_if_no_exit: bool,
}

impl Sender {
    /// Init first (records wait in the log meanwhile), then follow.
    /// Returns whether the run is finished on the server with everything
    /// in its log (else the log is what `wandb sync` sends).
    async fn run(mut self, mut ctl: mpsc::Receiver<OnlineCtl>) -> bool {
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
                Some(other) => {
                    refuse_artifacts(other, "the run is not created yet");
                }
                None => {
                    // The run never started; nothing to send.
                    let _ = self.files_done.wait_for(|d| *d).await;
                    exit_replies.into_iter().for_each(answer_exit);
                    return true;
                }
            }
        };
        let Some((init, run)) = init else {
            // Nothing to send; exits are answered once the files are done.
            self.events.finished();
            exit_replies.into_iter().for_each(answer_exit);
            while let Some(msg) = ctl.recv().await {
                if let Some(OnlineCtl::Exit { reply }) =
                    refuse_artifacts(msg, "the run was not created on the server")
                {
                    let _ = self.files_done.wait_for(|d| *d).await;
                    answer_exit(reply);
                }
            }
            // wandb.init failed: the log holds no more than its run record.
            return true;
        };
        self.follow(init, run, ctl, exit_replies).await.sent
    }

    /// Resume status (if asked) and the first UpsertBucket, within
    /// `init_timeout`.
    async fn init(&self, run: &pb::RunRecord) -> Result<InitResult, BackendError> {
        let _op = self
            .backend
            .operations
            .start(format!("setting up run {}", self.settings.run_id));
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
                // wandb-core 0.31's words: the SDK shows them as they are.
                ("must", None) => {
                    return Err(BackendError::Usage(format!(
                        "Run ({}) does not exist or has not been initialized, but your `resume` \
                         setting requires an existing run to resume. Verify the run ID is \
                         correct. If you are starting a new run, omit `resume` in wandb.init() \
                         or set `resume` or `WANDB_RESUME` to `allow` or `never`.",
                        run.run_id
                    )));
                }
                ("never", Some(_)) => {
                    return Err(BackendError::Usage(format!(
                        "Run ({}) already exists, but your `resume` setting does not allow \
                         resuming an existing run. Verify the run ID is correct. To resume this \
                         run, set `resume` in wandb.init() or `WANDB_RESUME` to `allow` or \
                         `must`. To start a new run, use a different run ID.",
                        run.run_id
                    )));
                }
                _ => {}
            }
            resumed = state;
        }
        let starting_step = self.starting_step(run, resumed.as_ref()).await;
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
            starting_step,
        })
    }

    /// Where the run's rows start, as the log's sync state has it (stored
    /// now if this is the log's first upload; none is kept when the user
    /// asked for no transaction log, as with wandb-core).
    async fn starting_step(&self, run: &pb::RunRecord, resumed: Option<&ResumeState>) -> i64 {
        let mut start = syncstate::Start {
            step: run.starting_step,
            runtime_ms: 0,
        };
        if let Some(r) = resumed {
            if let Some(step) = r.last_step {
                start.step = step + 1;
            }
            start.runtime_ms = (r.runtime.max(0.0) * 1000.0) as i64;
        }
        if self.settings.skip_transaction_log {
            return start.step;
        }
        let log = self.settings.sync_file.clone();
        match tokio::task::spawn_blocking(move || syncstate::get_or_init(&log, start)).await {
            Ok(Ok(stored)) => stored.step,
            Ok(Err(e)) => {
                self.log.warn(&format!("sync state not kept: {e}"));
                start.step
            }
            Err(_) => start.step,
        }
    }
}
