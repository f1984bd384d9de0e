//! Requests: one method per kind that needs more than an empty or fixed
//! answer, so each is read (and tested) on its own. Requests that must wait
//! for what came before them (poll_exit offline, shutdown) are answered by
//! the run files writer, after it; artifacts by the online sender.

use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::response::ResponseType;

use super::{Handler, now_secs, summary_item};
use crate::online::OnlineCtl;
use crate::respond::Reply;
use crate::stream::runfiles::{Answer, FilesMsg};

impl Handler {
    /// Answers one request, or passes it to the stage that answers it.
    pub(super) fn request(&mut self, req: pb::Request, reply: Option<Reply>) {
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
            RequestType::RunStart(start) => self.run_start(start, reply),
            RequestType::ProbeSystemInfo(_) => self.probe_system_info(reply),
            RequestType::Pause(_) => {
                self.clock.stop();
                if let Some(m) = &self.monitor {
                    m.pause();
                }
                self.ack_response(reply, None);
            }
            RequestType::Resume(_) => {
                self.clock.start();
                if let Some(m) = &self.monitor {
                    m.resume();
                }
                self.ack_response(reply, None);
            }
            RequestType::PythonPackages(p) => self.python_packages(p, reply),
            RequestType::InternalMessages(_) => self.internal_messages(reply),
            RequestType::Operations(_) => self.ack_response(
                reply,
                Some(ResponseType::OperationsResponse(
                    pb::OperationStatsResponse {
                        operation_stats: Some(
                            self.online
                                .as_ref()
                                .map(|o| o.backend.operations.stats())
                                .unwrap_or_default(),
                        ),
                    },
                )),
            ),
            RequestType::HistoryStep(_) => self.history_step(reply),
            RequestType::GetSummary(_) => self.get_summary(reply),
            RequestType::SampledHistory(_) => self.sampled_history(reply),
            RequestType::PollExit(_) => self.poll_exit(reply),
            RequestType::Shutdown(_) => {
                if let Some(reply) = reply {
                    self.forward(FilesMsg::Answer(reply, Answer::Shutdown));
                }
            }
            RequestType::Attach(_) => self.attach(reply),
            // Empty answers, as wandb-core gives (the SDK reads defaults).
            RequestType::Status(_) | RequestType::RunStatus(_) => self.ack_response(reply, None),
            RequestType::StopStatus(_) => self.stop_status(reply),
            RequestType::NetworkStatus(_) => self.network_status(reply),
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
            RequestType::GetSystemMetrics(_) => self.get_system_metrics(reply),
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
            RequestType::LogArtifact(request) => self.log_artifact(request, reply),
            RequestType::DownloadArtifact(_) => self.ack_response(
                reply,
                Some(ResponseType::DownloadArtifactResponse(
                    pb::DownloadArtifactResponse {
                        error_message: "download_artifact is not supported by wandb-core-rs yet"
                            .into(),
                    },
                )),
            ),
            RequestType::LinkArtifact(request) => self.link_artifact(request, reply),
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

    /// The run starts its clock and its system monitor.
    fn run_start(&mut self, start: pb::RunStartRequest, reply: Option<Reply>) {
        if let Some(run) = start.run {
            if let Some(t) = &run.start_time {
                self.start = Some(wandb_proto::time::secs(t));
            }
            // A resumed or forked run's earlier runtime, as the SDK got it
            // from the run update.
            if run.runtime > 0 {
                self.clock = super::clock::RunClock::with_offset(f64::from(run.runtime));
            }
            self.run = Some(run);
        }
        if self.start.is_none() {
            self.start = Some(now_secs());
        }
        self.clock.start();
        if let Some(m) = &self.monitor {
            m.start();
        }
        if let Some(saver) = self.code.take() {
            saver.start();
        }
        if let Some(reply) = reply {
            reply.response(None);
        }
    }

    /// The primary writer describes the process (and, through the monitor, the machine).
    fn probe_system_info(&mut self, reply: Option<Reply>) {
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

    /// `requirements.txt` (primary writer only).
    fn python_packages(&mut self, p: pb::PythonPackagesRequest, reply: Option<Reply>) {
        if self.settings.save_requirements && self.settings.primary {
            let lines = p
                .package
                .iter()
                .map(|p| format!("{}=={}", p.name, p.version))
                .collect();
            self.forward(FilesMsg::Requirements(lines));
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

    /// Warnings for the user; held until there is one, or until the run's messages are over.
    fn internal_messages(&mut self, reply: Option<Reply>) {
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

    /// The step the next row gets.
    fn history_step(&mut self, reply: Option<Reply>) {
        // Shared mode: the backend orders the rows of all writers, so no
        // writer knows the step (the SDK raises this in `run.step`).
        if self.settings.shared {
            if let Some(reply) = reply {
                reply.error("Cannot read the W&B step in shared mode.");
            }
            return;
        }
        let step = self.history.step(self.starting_step());
        self.ack_response(
            reply,
            Some(ResponseType::HistoryStepResponse(pb::HistoryStepResponse {
                step,
            })),
        );
    }

    /// The summary as it is now.
    fn get_summary(&mut self, reply: Option<Reply>) {
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

    /// Sampled values per numeric key, for the end-of-run sparklines.
    fn sampled_history(&mut self, reply: Option<Reply>) {
        let item = self
            .history
            .sampled
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

    /// Offline: done once the exit is written; online: once the backend has everything, with upload figures.
    fn poll_exit(&mut self, reply: Option<Reply>) {
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
            self.forward(FilesMsg::Answer(reply, Answer::PollExit { done }));
        }
    }

    /// The run record, for a process that attaches to this run.
    fn attach(&mut self, reply: Option<Reply>) {
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

    /// Whether the run was stopped from the UI.
    fn stop_status(&mut self, reply: Option<Reply>) {
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

    /// Failed requests being retried, for the SDK to print.
    fn network_status(&mut self, reply: Option<Reply>) {
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

    /// The buffered system metric samples.
    fn get_system_metrics(&mut self, reply: Option<Reply>) {
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

    /// Saved by the online sender, which answers when committed.
    fn log_artifact(&mut self, request: pb::LogArtifactRequest, reply: Option<Reply>) {
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

    /// Linked by the online sender after the saves before it.
    fn link_artifact(&mut self, request: pb::LinkArtifactRequest, reply: Option<Reply>) {
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
}
