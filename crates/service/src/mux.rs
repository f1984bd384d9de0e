//! The stream mux: the service's runs, keyed by stream ID (the run ID).
//!
//! Runs live here, not in connections: several connections may address one
//! run (a multiprocessing child attaches to its parent's run), and a
//! connection closing does not end its runs. `inform_finish` closes a run;
//! shutdown finishes them all.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::task::JoinHandle;
use wandb_proto::pb;
use wandb_proto::pb::server_response::ServerResponseType;

use crate::respond::Reply;
use crate::settings::RunSettings;
use crate::stream::{self, StreamHandle, StreamInput};

#[derive(Default)]
pub struct Mux {
    streams: Mutex<HashMap<String, StreamHandle>>,
    /// Stream tasks, finished or not, so shutdown can wait for all of them.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    closing: std::sync::atomic::AtomicBool,
    /// Cancelled when the service stops: runs still sending get a grace
    /// period, not forever.
    stopping: tokio_util::sync::CancellationToken,
    core_log: Option<std::path::PathBuf>,
    durability: crate::settings::Durability,
}

impl Mux {
    /// `core_log`: the process-wide log, linked from each run's logs.
    pub fn new(
        core_log: Option<std::path::PathBuf>,
        durability: crate::settings::Durability,
    ) -> Self {
        Self {
            core_log,
            durability,
            ..Self::default()
        }
    }

    pub fn get(&self, stream_id: &str) -> Option<StreamHandle> {
        self.streams.lock().unwrap().get(stream_id).cloned()
    }

    /// `inform_init`: starts a stream for the run, answered with an empty
    /// response (or an error the SDK raises).
    pub fn inform_init(
        &self,
        stream_id: &str,
        settings: Option<pb::Settings>,
        reply: Option<Reply>,
    ) {
        let result = self.init(stream_id, settings.unwrap_or_default());
        if let Some(reply) = reply {
            match result {
                Ok(()) => reply.empty(),
                Err(message) => reply.error(message),
            }
        } else if let Err(message) = result {
            tracing::warn!("inform_init without request id failed: {message}");
        }
    }

    fn init(&self, stream_id: &str, settings: pb::Settings) -> Result<(), String> {
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("the wandb-core service is shutting down".into());
        }
        let mut settings = RunSettings::from_proto(settings, stream_id)
            .map_err(|e| format!("invalid settings: {e}"))?;
        settings.durability = self.durability;
        let id = if stream_id.is_empty() {
            settings.run_id.clone()
        } else {
            stream_id.to_string()
        };
        let mut streams = self.streams.lock().unwrap();
        if streams.contains_key(&id) {
            return Err(format!("run ID {id} is in use"));
        }
        let (handle, task) =
            stream::spawn(settings, self.stopping.clone(), self.core_log.as_deref());
        streams.insert(id, handle);
        let mut tasks = self.tasks.lock().unwrap();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        Ok(())
    }

    /// `inform_attach`: the run's init settings, for a process joining it.
    pub fn inform_attach(&self, stream_id: &str, reply: Option<Reply>) {
        let Some(reply) = reply else { return };
        match self.get(stream_id) {
            Some(handle) => reply.server(ServerResponseType::InformAttachResponse(
                pb::ServerInformAttachResponse {
                    settings: Some(handle.settings.raw.clone()),
                    ..Default::default()
                },
            )),
            None => reply.error(format!("no run with ID {stream_id:?} in this service")),
        }
    }

    /// `inform_finish`: the client is done with the run; it drains and closes.
    pub fn inform_finish(&self, stream_id: &str) {
        if self.streams.lock().unwrap().remove(stream_id).is_none() {
            tracing::debug!(run = stream_id, "inform_finish for a run that is not open");
        }
    }

    /// Stops taking new runs and ends every open one: with `Some(code)`, a
    /// run that did not exit gets an exit record with that code (teardown,
    /// idle timeout); with `None` runs are closed as they are, everything
    /// accepted written but no exit invented (signals, parent gone), so the
    /// log shows the run as crashed. Waits until every log is closed.
    pub async fn finish_all(&self, exit_code: Option<i32>) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.stopping.cancel();
        let streams: Vec<StreamHandle> = self
            .streams
            .lock()
            .unwrap()
            .drain()
            .map(|(_, h)| h)
            .collect();
        if let Some(exit_code) = exit_code {
            for handle in &streams {
                handle.send(StreamInput::Teardown { exit_code }).await;
            }
        }
        drop(streams);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock().unwrap());
        for task in tasks {
            let _ = task.await;
        }
    }
}
