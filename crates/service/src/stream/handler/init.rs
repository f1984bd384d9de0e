//! The run record and `wandb.init`'s answer: at once offline; online once
//! the backend has the run (resumed runs bring back their config, step and
//! runtime); refused when the run cannot start (no transaction log, no
//! way to reach the backend).

use bytes::Bytes;
use wandb_proto::pb;

use super::Handler;
use crate::online::{InitResult, OnlineCtl, OnlineHandle};
use crate::respond::Reply;
use crate::runstate::config::RunConfig;
use crate::stream::runfiles::FilesMsg;

/// `wandb.init` waiting for the run to be created on the backend.
pub(crate) struct PendingInit {
    pub(super) reply: Option<Reply>,
    pub(super) answer: pb::RunRecord,
    /// Taken by the stream's task, which awaits it.
    pub wait:
        Option<tokio::sync::oneshot::Receiver<Result<InitResult, crate::backend::BackendError>>>,
}

impl Handler {
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
                answer.starting_step = init.starting_step;
                if let Some(resumed) = init.resumed {
                    answer.resumed = true;
                    answer.runtime = resumed.runtime as i32;
                    // The run keeps its tags unless this session gives some,
                    // as with wandb-core.
                    if answer.tags.is_empty() {
                        answer.tags = resumed.tags.clone();
                    }
                    if answer.notes.is_empty() {
                        answer.notes = resumed.notes.clone();
                    }
                    self.clock = super::clock::RunClock::with_offset(resumed.runtime);
                    // The server's config, under what this session sets.
                    let mut merged = RunConfig::default();
                    merged.apply(&resumed.config_record());
                    merged.merge_from(&self.config);
                    self.config = merged;
                }
                if let Some(run) = &mut self.run {
                    run.entity = answer.entity.clone();
                    run.project = answer.project.clone();
                    run.display_name = answer.display_name.clone();
                    run.storage_id = answer.storage_id.clone();
                    run.starting_step = answer.starting_step;
                    run.resumed = answer.resumed;
                    run.tags = answer.tags.clone();
                    run.notes = answer.notes.clone();
                    run.runtime = answer.runtime;
                }
                answer.config = Some(pb::ConfigRecord {
                    update: self.config.wrapped_items(&self.history.metrics),
                    ..Default::default()
                });
                self.forward(FilesMsg::Config(self.config.to_yaml(&self.history.metrics)));
                if let Some(reply) = pending.reply {
                    reply.result(pb::result::ResultType::RunResult(pb::RunUpdateResult {
                        run: Some(answer),
                        ..Default::default()
                    }));
                }
            }
            Err(e) => {
                self.log.error(&format!("wandb.init failed: {e}"));
                let code = match &e {
                    crate::backend::BackendError::Usage(_) => pb::error_info::ErrorCode::Usage,
                    _ => pb::error_info::ErrorCode::Communication,
                };
                if let Some(reply) = pending.reply {
                    reply.result(pb::result::ResultType::RunResult(init_error_with(
                        &init_failure_text(&e),
                        code,
                    )));
                }
            }
        }
    }

    pub(super) fn run_record(&mut self, mut run: pb::RunRecord, raw: Bytes, reply: Option<Reply>) {
        let first = self.run.is_none();
        if first
            && self
                .settings
                .raw
                .resume
                .as_deref()
                .unwrap_or_default()
                .is_empty()
        {
            match branch_start(&run, !self.settings.offline) {
                Ok(Some(step)) => {
                    run.starting_step = step;
                    run.forked = true;
                }
                Ok(None) => {}
                Err(error) => self.refuse_init(error),
            }
        }
        if let Some(config) = &run.config {
            self.config.apply(config);
        }
        if let Some(t) = &run.telemetry {
            self.config.merge_telemetry(t);
        }
        if self.run.is_none() {
            if let Some(t) = &run.start_time {
                self.start = Some(wandb_proto::time::secs(t));
            }
            self.clock = super::clock::RunClock::with_offset(f64::from(run.runtime));
        } else if run.start_time.is_none() {
            run.start_time = self.run.as_ref().and_then(|r| r.start_time);
        }
        self.persist(raw);
        self.forward(FilesMsg::Config(self.config.to_yaml(&self.history.metrics)));
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
}

/// A failed `wandb.init`, as the SDK raises it (`CommError`).
/// What the user reads when `wandb.init` fails on the backend. A timeout
/// names the last failure retried and how to wait longer, in wandb-core's
/// words (the SDK shows them as they are).
fn init_failure_text(e: &crate::backend::BackendError) -> String {
    use crate::backend::BackendError;
    match e {
        BackendError::TimedOut(last) => {
            let last = match last.as_ref() {
                BackendError::Http {
                    status, message, ..
                } => format!("HTTP {status}: {message}"),
                BackendError::Transport { message, .. } | BackendError::GraphQL { message, .. } => {
                    message.clone()
                }
                other => other.to_string(),
            };
            format!(
                "Timed out while retrying: {last}\nConsider increasing the init_timeout \
                 setting:\n  wandb.init(settings=wandb.Settings(init_timeout=...))"
            )
        }
        other => other.to_string(),
    }
}

fn init_error(message: &str) -> pb::RunUpdateResult {
    init_error_with(message, pb::error_info::ErrorCode::Communication)
}

/// A failed `wandb.init` whose kind the SDK raises as `code` says.
fn init_error_with(message: &str, code: pb::error_info::ErrorCode) -> pb::RunUpdateResult {
    pb::RunUpdateResult {
        error: Some(pb::ErrorInfo {
            message: message.to_string(),
            code: code as i32,
        }),
        ..Default::default()
    }
}

/// A run branched from another (`fork_from`) or from an earlier point of
/// itself (`resume_from`, a rewind): its rows start one step past the
/// branch point, as wandb-core numbers them; `None` for a run that does
/// not branch. Only `_step` branch points exist (wandb-core refuses
/// others as unsupported). Online, a rewind needs the server's RewindRun,
/// which ours does not send yet: refused rather than run without it.
fn branch_start(run: &pb::RunRecord, online: bool) -> Result<Option<i64>, pb::ErrorInfo> {
    let Some(branch) = run.branch_point.as_ref().filter(|b| !b.run.is_empty()) else {
        return Ok(None);
    };
    let error = |code: pb::error_info::ErrorCode, message: String| pb::ErrorInfo {
        message,
        code: code as i32,
    };
    let rewind = branch.run == run.run_id;
    if branch.metric != "_step" {
        let what = if rewind { "rewind" } else { "fork_from" };
        return Err(error(
            pb::error_info::ErrorCode::Unsupported,
            format!("{what} only supports `_step` metric name currently"),
        ));
    }
    if rewind && online {
        return Err(error(
            pb::error_info::ErrorCode::Unsupported,
            "resume_from (rewinding a run online) is not supported by wandb-core-rs yet".into(),
        ));
    }
    Ok(Some(branch.value as i64 + 1))
}
