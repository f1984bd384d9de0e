//! The end of a run: the last row and summary, the exit record, the run
//! files made final, and the exit answered once all of it is durable (and,
//! online, on the backend). Also what describes the run's process (the
//! environment record) and what an unfinished offline run prints.

use bytes::Bytes;
use prost::Message;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;

use super::{Ending, Handler};
use crate::online::OnlineCtl;
use crate::respond::Reply;
use crate::stream::runfiles::FilesMsg;
use crate::stream::writer::WriterMsg;

impl Handler {
    /// The environment record of `probe_system_info`: what the settings
    /// say about the process (the system monitor adds hardware after it).
    pub(super) fn environment(&mut self) {
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
            code_path_local: s.code_path_local.clone().unwrap_or_default(),
            git,
            colab: s.colab_url.clone().unwrap_or_default(),
            slurm,
            os: s.os.clone().unwrap_or_default(),
            python: s.python.clone().unwrap_or_default(),
            started_at: Some(match self.start {
                Some(t) => wandb_proto::time::from_secs(t),
                None => wandb_proto::time::now(),
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
        self.config.add_environment(&env);
        self.emit(RecordType::Environment(env));
    }

    /// Where the run lives on the server (online, once created), for the
    /// footer printed when the service finishes the run itself.
    pub(crate) fn run_place(&self) -> Option<crate::stream::footer::RunPlace> {
        let run = self.run.as_ref().filter(|_| self.online.is_some())?;
        Some(crate::stream::footer::RunPlace {
            entity: run.entity.clone(),
            project: run.project.clone(),
            run_id: run.run_id.clone(),
        })
    }

    /// Online, the exit is answered once the run is complete on the
    /// backend; returns the reply if the run files writer should answer it.
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
    /// answers the exit (from the run files writer, after all of that).
    pub fn finish(&mut self, ending: Ending) {
        if self.exited {
            // A second exit (or a teardown after the exit): answer, write nothing.
            if let Ending::Exit(_, Some(reply)) = ending {
                let reply = self.online_exit(reply);
                self.queue(WriterMsg::Sync(FilesMsg::Exit { reply }));
            }
            return;
        }
        self.clock.stop();
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
        self.forward(FilesMsg::Config(self.config.to_yaml(&self.history.metrics)));
        self.forward(FilesMsg::Summary(self.history.summary_file()));
        let reply = match reply {
            Some(reply) => self.online_exit(reply),
            None => None,
        };
        self.queue(WriterMsg::Sync(FilesMsg::Exit { reply }));
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
