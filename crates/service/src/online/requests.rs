//! The handler's requests that the online sender answers: exits (once the
//! run is complete on the server), artifact saves and links (jobs that run
//! beside the follower; the run finishes after them), and the refusal of
//! artifact requests when there is no run to serve them.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::task::JoinSet;
use wandb_proto::pb;

use super::OnlineCtl;
use super::artifacts;
use super::events::Events;
use super::uploads::RunPath;
use crate::backend::Backend;
use crate::respond::Reply;
use crate::runlog::RunLog;

pub(super) fn answer_exit(reply: Option<Reply>) {
    if let Some(reply) = reply {
        reply.result(pb::result::ResultType::ExitResult(
            pb::RunExitResult::default(),
        ));
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

/// Answers an artifact request that cannot be served with `why`; hands
/// back any other request (exits and inits are the caller's to answer).
pub(super) fn refuse_artifacts(msg: OnlineCtl, why: &str) -> Option<OnlineCtl> {
    match msg {
        OnlineCtl::LogArtifact { reply, .. } => {
            answer_artifact(reply, Err(why.to_string()));
            None
        }
        OnlineCtl::LinkArtifact { reply, .. } => {
            answer_link(reply, Err(why.to_string()));
            None
        }
        other => Some(other),
    }
}

/// Artifact saves and links of one run, in flight.
#[derive(Default)]
pub(super) struct ArtifactJobs {
    jobs: JoinSet<()>,
    /// Saves of one artifact name go one after another (version numbers
    /// then follow the order they were logged in).
    locks: HashMap<String, Arc<Mutex<()>>>,
}

/// What a job needs of its run.
pub(super) struct JobContext<'a> {
    pub backend: &'a Backend,
    pub log: &'a RunLog,
    pub events: &'a Events,
    pub run: &'a RunPath,
}

impl ArtifactJobs {
    /// Starts saving an artifact; `reply` gets its ID (or the error). A
    /// save nobody waits for (a synced `artifact` record) warns the user
    /// when it fails.
    pub(super) fn save(
        &mut self,
        cx: JobContext<'_>,
        artifact: pb::ArtifactRecord,
        history_step: i64,
        staging_dir: String,
        reply: Option<Reply>,
    ) {
        let lock = self
            .locks
            .entry(format!("{}:{}", artifact.r#type, artifact.name))
            .or_default()
            .clone();
        let backend = cx.backend.clone();
        let log = cx.log.clone();
        let events = cx.events.clone();
        let job = artifacts::SaveJob {
            artifact,
            history_step,
            staging_dir,
            run: cx.run.clone(),
        };
        self.jobs.spawn(async move {
            let _one_at_a_time = lock.lock().await;
            let name = job.artifact.name.clone();
            let result = artifacts::save(&backend, job).await;
            match &result {
                Ok(id) => log.info(&format!("artifact {name} saved ({id})")),
                Err(e) => {
                    log.error(&format!("artifact {name} not saved: {e}"));
                    if reply.is_none() {
                        events.warn(format!("artifact {name} was not saved: {e}"));
                    }
                }
            }
            answer_artifact(reply, result.map_err(|e| e.to_string()));
        });
    }

    /// Links an artifact once the saves started before it are done (a draft
    /// is known to the server by its client ID only after its commit).
    pub(super) fn link(
        &mut self,
        cx: JobContext<'_>,
        request: pb::LinkArtifactRequest,
        reply: Option<Reply>,
    ) {
        let earlier: Vec<_> = self.locks.values().cloned().collect();
        let backend = cx.backend.clone();
        let run = cx.run.clone();
        self.jobs.spawn(async move {
            for lock in earlier {
                drop(lock.lock().await);
            }
            answer_link(
                reply,
                artifacts::link(&backend, &run, &request)
                    .await
                    .map_err(|e| e.to_string()),
            );
        });
    }

    /// Waits for every job started so far.
    pub(super) async fn wait(&mut self) {
        while self.jobs.join_next().await.is_some() {}
    }
}
