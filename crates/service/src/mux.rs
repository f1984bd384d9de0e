//! The stream mux: the service's runs, keyed by stream ID (the run ID).
//!
//! Runs live here, not in connections: several connections may address one
//! run (a multiprocessing child attaches to its parent's run), and a
//! connection closing does not end its runs. `inform_finish` closes a run;
//! shutdown finishes them all.
//!
//! Shared mode (`mode="shared"`) lets several processes write one run, each
//! with its own stream. wandb-core refuses a second writer of a run in one
//! service ("run ID is in use"); here a further shared-mode writer gets a
//! stream of its own, bound to the connection that started it, so the
//! ranks of one node can share a service.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::task::JoinHandle;
use wandb_proto::pb;
use wandb_proto::pb::server_response::ServerResponseType;

use crate::respond::Reply;
use crate::settings::RunSettings;
use crate::stream::{self, StreamHandle, StreamInput};

/// The open runs, in one place.
#[derive(Default)]
struct Streams {
    /// By stream ID: the run's first (or only) writer in this service.
    by_id: HashMap<String, StreamHandle>,
    /// Shared mode's further writers of a run, by stream ID and the
    /// connection that started each.
    by_conn: HashMap<(String, u64), StreamHandle>,
}

impl Streams {
    fn get(&self, stream_id: &str, conn: u64) -> Option<&StreamHandle> {
        self.by_conn
            .get(&(stream_id.to_string(), conn))
            .or_else(|| self.by_id.get(stream_id))
    }
}

#[derive(Default)]
pub struct Mux {
    streams: Mutex<Streams>,
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

    /// The stream that records for `stream_id` from connection `conn` go to.
    pub fn get(&self, stream_id: &str, conn: u64) -> Option<StreamHandle> {
        self.streams.lock().unwrap().get(stream_id, conn).cloned()
    }

    /// `inform_init`: starts a stream for the run, answered with an empty
    /// response (or an error the SDK raises).
    pub fn inform_init(
        &self,
        stream_id: &str,
        conn: u64,
        settings: Option<pb::Settings>,
        reply: Option<Reply>,
    ) {
        let result = self.init(stream_id, conn, settings.unwrap_or_default());
        if let Some(reply) = reply {
            match result {
                Ok(()) => reply.empty(),
                Err(message) => reply.error(message),
            }
        } else if let Err(message) = result {
            tracing::warn!("inform_init without request id failed: {message}");
        }
    }

    fn init(&self, stream_id: &str, conn: u64, settings: pb::Settings) -> Result<(), String> {
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
        let key = match streams.by_id.get(&id) {
            None => None,
            Some(first)
                if settings.shared
                    && first.settings.shared
                    && !streams.by_conn.contains_key(&(id.clone(), conn)) =>
            {
                Some((id.clone(), conn))
            }
            Some(_) => return Err(format!("run ID {id} is in use")),
        };
        let (handle, task) =
            stream::spawn(settings, self.stopping.clone(), self.core_log.as_deref());
        match key {
            Some(key) => streams.by_conn.insert(key, handle),
            None => streams.by_id.insert(id, handle),
        };
        let mut tasks = self.tasks.lock().unwrap();
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        Ok(())
    }

    /// `inform_attach`: the run's init settings, for a process joining it.
    pub fn inform_attach(&self, stream_id: &str, conn: u64, reply: Option<Reply>) {
        let Some(reply) = reply else { return };
        match self.get(stream_id, conn) {
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
    pub fn inform_finish(&self, stream_id: &str, conn: u64) {
        let mut streams = self.streams.lock().unwrap();
        let removed = match streams.by_conn.remove(&(stream_id.to_string(), conn)) {
            Some(h) => Some(h),
            None => streams.by_id.remove(stream_id),
        };
        if removed.is_none() {
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
        let streams: Vec<StreamHandle> = {
            let mut all = self.streams.lock().unwrap();
            let Streams { by_id, by_conn } = &mut *all;
            by_id
                .drain()
                .map(|(_, h)| h)
                .chain(by_conn.drain().map(|(_, h)| h))
                .collect()
        };
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
