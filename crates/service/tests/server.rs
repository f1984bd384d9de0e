//! The service through its socket, with no Python and no subprocess: a
//! service bound in this process, clients writing frames to its Unix socket
//! and reading the answers, the run's transaction log read back after.
//!
//! These run in milliseconds, so they are where a request's answer, a
//! record's way to the log, and bad input's cost are pinned down; the
//! tests against the real SDK (crates/cli/tests) prove the same holds for
//! W&B's client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use wandb_proto::frame::encode_frame;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::response::ResponseType;
use wandb_proto::pb::server_request::ServerRequestType;
use wandb_proto::pb::server_response::ServerResponseType;
use wandb_proto::token::ServiceAddr;
use wandb_service::{
    Connector, Incoming, LocalConnection, Service, ServiceOptions, ShutdownReason,
};
use wandb_store::txlog::LogReader;

/// No test here may take longer; a hang fails its test instead of CI.
const LIMIT: Duration = Duration::from_secs(30);

/// A service running on this test's runtime.
struct Harness {
    socket: PathBuf,
    /// In-process connections, as the Rust SDK's own service makes them.
    connector: Connector,
    service: tokio::task::JoinHandle<ShutdownReason>,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        let options = ServiceOptions {
            handle_signals: false,
            ..Default::default()
        };
        let service = Service::bind(options).await.expect("the service binds");
        let ServiceAddr::Unix(socket) = service.token().addr else {
            panic!("a Unix socket by default");
        };
        Harness {
            socket,
            connector: service.connector(),
            service: tokio::spawn(service.run()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn client(&self) -> Client {
        Client(UnixStream::connect(&self.socket).await.unwrap())
    }

    /// Tears the service down (exit code 0) and waits for it to stop.
    async fn stop(self, client: &mut Client) -> tempfile::TempDir {
        client
            .send(&pb::ServerRequest {
                server_request_type: Some(ServerRequestType::InformTeardown(Default::default())),
                ..Default::default()
            })
            .await;
        let reason = tokio::time::timeout(LIMIT, self.service)
            .await
            .expect("the service stops within the limit after a teardown")
            .unwrap();
        assert_eq!(reason, ShutdownReason::Teardown(0));
        self.dir
    }
}

struct Client(UnixStream);

impl Client {
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, request: &pb::ServerRequest) {
        let mut frame = Vec::new();
        encode_frame(&request.encode_to_vec(), &mut frame);
        self.send_raw(&frame).await;
    }

    /// The next answer, or `None` once the service closed the connection.
    async fn recv(&mut self) -> Option<pb::ServerResponse> {
        let mut header = [0u8; 5];
        self.0.read_exact(&mut header).await.ok()?;
        assert_eq!(header[0], b'W');
        let len = u32::from_le_bytes(header[1..].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; len];
        self.0.read_exact(&mut payload).await.unwrap();
        Some(pb::ServerResponse::decode(&payload[..]).unwrap())
    }

    /// Sends and waits for the answer to this request ID.
    async fn call(&mut self, request: &pb::ServerRequest) -> pb::ServerResponse {
        self.send(request).await;
        loop {
            let answer = self
                .recv()
                .await
                .expect("an answer before the connection closed");
            if answer.request_id == request.request_id {
                return answer;
            }
        }
    }

    /// Opens an offline run in `dir` (answered with an empty response, as
    /// the SDK expects; an error would say why not).
    async fn init(&mut self, run_id: &str, dir: &Path) {
        let answer = self.call(&inform_init(run_id, dir)).await;
        assert_eq!(answer.server_response_type, None, "{answer:?}");
    }
}

fn inform_init(run_id: &str, dir: &Path) -> pb::ServerRequest {
    pb::ServerRequest {
        request_id: format!("init-{run_id}"),
        server_request_type: Some(ServerRequestType::InformInit(pb::ServerInformInitRequest {
            settings: Some(pb::Settings {
                run_id: Some(run_id.into()),
                sync_file: Some(
                    dir.join(format!("run-{run_id}.wandb"))
                        .display()
                        .to_string(),
                ),
                sync_dir: Some(dir.display().to_string()),
                mode: Some("offline".into()),
                x_disable_stats: Some(true),
                ..Default::default()
            }),
            info: Some(pb::RecordInfo {
                stream_id: run_id.into(),
                ..Default::default()
            }),
        })),
    }
}

/// A record for run `run_id`; answered under `request_id` unless empty.
fn record(run_id: &str, request_id: &str, record_type: RecordType) -> pb::ServerRequest {
    pb::ServerRequest {
        request_id: request_id.into(),
        server_request_type: Some(ServerRequestType::RecordPublish(pb::Record {
            record_type: Some(record_type),
            control: (!request_id.is_empty()).then(|| pb::Control {
                mailbox_slot: request_id.into(),
                ..Default::default()
            }),
            info: Some(pb::RecordInfo {
                stream_id: run_id.into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

fn request(run_id: &str, request_id: &str, kind: RequestType) -> pb::ServerRequest {
    record(
        run_id,
        request_id,
        RecordType::Request(pb::Request {
            request_type: Some(kind),
        }),
    )
}

fn log_row(run_id: &str, items: &[(&str, &str)], step: Option<i64>) -> pb::ServerRequest {
    request(
        run_id,
        "",
        RequestType::PartialHistory(pb::PartialHistoryRequest {
            item: items
                .iter()
                .map(|(k, v)| pb::HistoryItem {
                    key: k.to_string(),
                    value_json: v.to_string(),
                    ..Default::default()
                })
                .collect(),
            step: step.map(|num| pb::HistoryStep { num }),
            ..Default::default()
        }),
    )
}

fn response(answer: pb::ServerResponse) -> Option<ResponseType> {
    match answer.server_response_type {
        Some(ServerResponseType::ResultCommunicate(pb::Result {
            result_type: Some(pb::result::ResultType::Response(r)),
            ..
        })) => r.response_type,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// The records of a log, decoded.
fn read_log(path: &Path) -> Vec<pb::Record> {
    LogReader::open(path)
        .unwrap()
        .map(|r| pb::Record::decode(&r.unwrap().1[..]).unwrap())
        .collect()
}

/// A history record's items as `(key, value_json)`.
fn row(h: &pb::HistoryRecord) -> Vec<(String, String)> {
    h.item
        .iter()
        .map(|i| {
            let key = if i.nested_key.is_empty() {
                i.key.clone()
            } else {
                i.nested_key.join(".")
            };
            (key, i.value_json.clone())
        })
        .collect()
}

async fn with_limit<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("the test finished within its limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_logged_through_the_socket_reach_the_log_with_their_steps() {
    with_limit(async {
        let h = Harness::start().await;
        let dir = h.dir.path().to_path_buf();
        let mut c = h.client().await;
        c.init("rows", &dir).await;
        // The SDK opens a run's log with a header record.
        c.send(&record(
            "rows",
            "",
            RecordType::Header(pb::HeaderRecord::default()),
        ))
        .await;
        let run = c
            .call(&record(
                "rows",
                "run",
                RecordType::Run(pb::RunRecord {
                    run_id: "rows".into(),
                    ..Default::default()
                }),
            ))
            .await;
        assert!(
            matches!(
                run.server_response_type,
                Some(ServerResponseType::ResultCommunicate(pb::Result {
                    result_type: Some(pb::result::ResultType::RunResult(pb::RunUpdateResult {
                        error: None,
                        ..
                    })),
                    ..
                }))
            ),
            "{run:?}"
        );
        c.send(&log_row("rows", &[("loss", "0.5"), ("acc", "0.1")], None))
            .await;
        c.send(&log_row("rows", &[("loss", "0.25")], None)).await;
        // A step ahead flushes what is pending and moves the step on.
        c.send(&log_row(
            "rows",
            &[("loss", "0.125"), ("nested", r#"{"a":1}"#)],
            Some(5),
        ))
        .await;
        c.send(&log_row("rows", &[], Some(6))).await;

        let step = response(
            c.call(&request(
                "rows",
                "step",
                RequestType::HistoryStep(Default::default()),
            ))
            .await,
        );
        assert_eq!(
            step,
            Some(ResponseType::HistoryStepResponse(pb::HistoryStepResponse {
                step: 6
            }))
        );
        let Some(ResponseType::GetSummaryResponse(summary)) = response(
            c.call(&request(
                "rows",
                "summary",
                RequestType::GetSummary(Default::default()),
            ))
            .await,
        ) else {
            panic!("a summary");
        };
        let loss = summary
            .item
            .iter()
            .find(|i| i.key == "loss")
            .expect("loss in the summary");
        assert_eq!(loss.value_json, "0.125");

        let exit = c
            .call(&record(
                "rows",
                "exit",
                RecordType::Exit(pb::RunExitRecord {
                    exit_code: 0,
                    ..Default::default()
                }),
            ))
            .await;
        assert!(
            matches!(
                exit.server_response_type,
                Some(ServerResponseType::ResultCommunicate(pb::Result {
                    result_type: Some(pb::result::ResultType::ExitResult(_)),
                    ..
                }))
            ),
            "{exit:?}"
        );
        let dir = h.stop(&mut c).await;

        let records = read_log(&dir.path().join("run-rows.wandb"));
        let rows: Vec<_> = records
            .iter()
            .filter_map(|r| match &r.record_type {
                Some(RecordType::History(h)) => Some(row(h)),
                _ => None,
            })
            .collect();
        assert_eq!(rows.len(), 3, "{rows:?}");
        let get = |row: &[(String, String)], k: &str| {
            row.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
        };
        assert_eq!(get(&rows[0], "loss").as_deref(), Some("0.5"));
        assert_eq!(get(&rows[0], "acc").as_deref(), Some("0.1"));
        assert_eq!(get(&rows[0], "_step").as_deref(), Some("0"));
        assert_eq!(get(&rows[1], "_step").as_deref(), Some("1"));
        assert_eq!(get(&rows[2], "_step").as_deref(), Some("5"));
        assert_eq!(get(&rows[2], "nested.a").as_deref(), Some("1"));
        // The header says who wrote the log.
        let Some(RecordType::Header(header)) = records.first().and_then(|r| r.record_type.as_ref())
        else {
            panic!("the log opens with its header: {:?}", records.first());
        };
        let producer = &header.version_info.as_ref().unwrap().producer;
        assert!(producer.contains("wandb-core-rs"), "{producer}");
        assert!(
            records
                .iter()
                .any(|r| matches!(r.record_type, Some(RecordType::Exit(_)))),
            "the exit is in the log"
        );
        // Records are numbered in order.
        let nums: Vec<i64> = records.iter().map(|r| r.num).filter(|n| *n > 0).collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "{nums:?}");
    })
    .await;
}

/// An in-process connection's answer to `request_id` (others skipped), or
/// `None` once the service is done with the connection.
async fn local_answer(c: &LocalConnection, request_id: &str) -> Option<pb::ServerResponse> {
    loop {
        let bytes = tokio::time::timeout(LIMIT, c.answers.recv_async())
            .await
            .unwrap_or_else(|_| panic!("no answer to {request_id:?} within {LIMIT:?}"))
            .ok()?;
        let answer = pb::ServerResponse::decode(&bytes[..]).unwrap();
        if answer.request_id == request_id {
            return Some(answer);
        }
    }
}

fn local_frame(request: &pb::ServerRequest) -> Incoming {
    Incoming::Frame(request.encode_to_vec().into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_connections_carry_rows_files_and_answers() {
    with_limit(async {
        let h = Harness::start().await;
        let dir = h.dir.path().to_path_buf();
        let c = h.connector.connect(16).unwrap();
        let send = |item: Incoming| c.frames.send_async(item);
        send(local_frame(&inform_init("local", &dir)))
            .await
            .unwrap();
        let init = local_answer(&c, "init-local")
            .await
            .expect("an answer to init");
        assert_eq!(init.server_response_type, None, "{init:?}");
        for i in 0..100 {
            send(local_frame(&log_row(
                "local",
                &[("x", &i.to_string())],
                None,
            )))
            .await
            .unwrap();
        }
        // A file travels in order: written before the frames after it.
        let media = dir.join("files/media/images/m.png");
        send(Incoming::File {
            path: media.clone(),
            bytes: std::sync::Arc::new(b"png".to_vec()),
        })
        .await
        .unwrap();
        send(local_frame(&request(
            "local",
            "step",
            RequestType::HistoryStep(Default::default()),
        )))
        .await
        .unwrap();
        let step = local_answer(&c, "step")
            .await
            .expect("an answer to the step");
        assert!(media.is_file(), "the file is written before later frames");
        assert_eq!(
            response(step),
            Some(ResponseType::HistoryStepResponse(pb::HistoryStepResponse {
                step: 100
            }))
        );

        // Bad input closes only its own connection, with an error first.
        let bad = h.connector.connect(4).unwrap();
        bad.frames
            .send_async(Incoming::Frame(vec![0xff, 0xff, 0xff, 0xff, 0x0f].into()))
            .await
            .unwrap();
        let error = local_answer(&bad, "").await.expect("an error answer");
        assert!(
            matches!(
                error.server_response_type,
                Some(ServerResponseType::ErrorResponse(_))
            ),
            "{error:?}"
        );
        assert!(
            local_answer(&bad, "never").await.is_none(),
            "closed after it"
        );

        // Ending the client's stream ends the connection; the rows stay.
        drop(c);
        let mut client = h.client().await;
        let connector = h.connector.clone();
        let dir = h.stop(&mut client).await;
        assert!(connector.connect(1).is_err(), "a stopped service refuses");
        let rows = read_log(&dir.path().join("run-local.wandb"))
            .into_iter()
            .filter(|r| matches!(r.record_type, Some(RecordType::History(_))))
            .count();
        assert_eq!(rows, 100);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_with_an_id_gets_an_answer() {
    with_limit(async {
        let h = Harness::start().await;
        let dir = h.dir.path().to_path_buf();
        let mut c = h.client().await;
        c.init("asks", &dir).await;
        let kinds = [
            RequestType::Keepalive(Default::default()),
            RequestType::Status(Default::default()),
            RequestType::ServerInfo(Default::default()),
            RequestType::SampledHistory(Default::default()),
            RequestType::GetSystemMetrics(Default::default()),
            RequestType::StopStatus(Default::default()),
            RequestType::NetworkStatus(Default::default()),
            RequestType::RunStatus(Default::default()),
            RequestType::Operations(Default::default()),
            RequestType::CheckVersion(Default::default()),
            RequestType::JobInfo(Default::default()),
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let name = format!("{kind:?}");
            let id = format!("ask-{i}");
            let answer =
                tokio::time::timeout(Duration::from_secs(5), c.call(&request("asks", &id, kind)))
                    .await
                    .unwrap_or_else(|_| panic!("no answer to {name}"));
            assert_eq!(answer.request_id, id, "{name}");
        }
        h.stop(&mut c).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_costs_only_its_own_connection_and_run() {
    with_limit(async {
        let h = Harness::start().await;
        let dir = h.dir.path().to_path_buf();
        let mut good = h.client().await;
        good.init("good", &dir).await;

        // A well-framed message that is not a ServerRequest.
        let mut bad = h.client().await;
        let mut frame = Vec::new();
        encode_frame(&[0xff, 0xff, 0xff, 0xff, 0x0f], &mut frame);
        bad.send_raw(&frame).await;
        while bad.recv().await.is_some() {}

        // A record for a run nobody opened is refused, not left hanging.
        let mut stray = h.client().await;
        let answer = stray
            .call(&request(
                "nobody",
                "stray",
                RequestType::HistoryStep(Default::default()),
            ))
            .await;
        match answer.server_response_type {
            Some(ServerResponseType::ErrorResponse(e)) => {
                assert!(e.message.contains("nobody"), "{e:?}")
            }
            other => panic!("expected an error, got {other:?}"),
        }

        // A byte that is not a frame start: that connection is closed.
        let mut garbage = h.client().await;
        garbage.send_raw(b"GET / HTTP/1.1\r\n\r\n").await;
        while garbage.recv().await.is_some() {}

        // The good client's run goes on.
        good.send(&log_row("good", &[("x", "1")], None)).await;
        let step = response(
            good.call(&request(
                "good",
                "step",
                RequestType::HistoryStep(Default::default()),
            ))
            .await,
        );
        assert_eq!(
            step,
            Some(ResponseType::HistoryStepResponse(pb::HistoryStepResponse {
                step: 1
            }))
        );
        let dir = h.stop(&mut good).await;
        let rows = read_log(&dir.path().join("run-good.wandb"))
            .into_iter()
            .filter(|r| matches!(r.record_type, Some(RecordType::History(_))))
            .count();
        assert_eq!(rows, 1);
    })
    .await;
}
