//! The whole service, fed a client's byte stream.
//!
//! Seeds are real sessions: the frames the SDK sent our service while
//! running the test scenarios (recorded by `fuzz/record_sessions.py`).
//! Each input gets a fresh service bound in this process, is written to
//! it through a socket, and must leave it serving: every request with a
//! request id answered within [`ANSWER_WITHIN`] (or the connection closed
//! with an error naming why), another client's run going on beside it
//! untouched and complete, and the service stopping in bounded time with
//! its runs closed.
//!
//! Only `inform_init` is rewritten before it is sent, so that a run writes
//! inside this input's temporary directory, offline, with no system
//! monitor and no git; requests that would reach the network or read
//! other directories (API calls, sync) and the teardown (the harness ends
//! the service itself) are left out. Everything else goes as the fuzzer
//! made it.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use prost::Message;
use tokio_util::codec::Decoder;
use wandb_proto::frame::{FrameCodec, encode_frame};
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::server_request::ServerRequestType as T;
use wandb_proto::pb::server_response::ServerResponseType as R;
use wandb_proto::token::ServiceAddr;
use wandb_service::{Service, ServiceOptions};
use wandb_store::txlog::LogReader;

/// How long any answer may take.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

pub fn session(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rt = runtime();
    let service = rt
        .block_on(Service::bind(ServiceOptions {
            handle_signals: false,
            ..Default::default()
        }))
        .expect("the service binds");
    let ServiceAddr::Unix(socket) = service.token().addr else {
        panic!("a Unix socket by default");
    };
    let running = rt.spawn(service.run());

    let canary = {
        let (socket, dir) = (socket.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || canary_run(&socket, &dir))
    };
    let (bytes, awaited) = prepare(data, dir.path());
    let mut client = UnixStream::connect(&socket).expect("connect");
    client.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    let mut writer = client.try_clone().unwrap();
    let sent = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
        writer // kept open: closing would drop the answers still due
    });
    expect_answers(&mut client, awaited, "the fuzzed client");
    let writer = sent.join().expect("the writer thread");
    let canary_log = canary.join().expect("the canary run");

    let mut control = UnixStream::connect(&socket).expect("connect");
    let mut frame = Vec::new();
    encode_frame(
        &pb::ServerRequest {
            server_request_type: Some(T::InformTeardown(Default::default())),
            ..Default::default()
        }
        .encode_to_vec(),
        &mut frame,
    );
    control.write_all(&frame).unwrap();
    let stopped =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), running).await });
    assert!(
        matches!(stopped, Ok(Ok(_))),
        "the service did not stop within 30 s"
    );
    drop((client, writer, control));
    let rows = LogReader::open(&canary_log)
        .expect("the canary's log")
        .filter_map(Result::ok)
        .filter(|(_, r)| {
            matches!(
                pb::Record::decode(&r[..]).map(|r| r.record_type),
                Ok(Some(RecordType::History(_)))
            )
        })
        .count();
    assert_eq!(rows, 1, "the canary run's row is in its log");
}

/// The bytes to send, and the request ids that must be answered.
fn prepare(data: &[u8], dir: &Path) -> (Vec<u8>, HashSet<String>) {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::from(data);
    let (mut out, mut awaited, mut inits) = (Vec::new(), HashSet::new(), 0);
    while let Ok(Some(payload)) = codec.decode(&mut buf) {
        let Ok(mut req) = pb::ServerRequest::decode(payload.clone()) else {
            encode_frame(&payload, &mut out);
            continue;
        };
        match &mut req.server_request_type {
            Some(T::InformInit(init)) => {
                inits += 1;
                contain(
                    init.settings.get_or_insert_default(),
                    &dir.join(format!("run{inits}")),
                );
            }
            Some(
                T::InformTeardown(_)
                | T::ApiRequest(_)
                | T::Authenticate(_)
                | T::InitSync(_)
                | T::Sync(_)
                | T::SyncStatus(_),
            ) => continue,
            _ => {}
        }
        if !req.request_id.is_empty() && !long_poll(&req) {
            awaited.insert(req.request_id.clone());
        }
        encode_frame(&req.encode_to_vec(), &mut out);
    }
    // What follows the last whole frame (a bad header, a cut frame) too.
    out.extend_from_slice(&buf);
    (out, awaited)
}

/// Requests answered only when something happens: `cancel` never, and
/// `internal_messages` once there is a message or the run ends (the SDK
/// keeps one waiting for the whole run).
fn long_poll(req: &pb::ServerRequest) -> bool {
    use pb::request::RequestType as Q;
    match &req.server_request_type {
        Some(T::Cancel(_)) => true,
        Some(T::RecordPublish(r) | T::RecordCommunicate(r)) => matches!(
            &r.record_type,
            Some(RecordType::Request(pb::Request {
                request_type: Some(Q::InternalMessages(_))
            }))
        ),
        _ => false,
    }
}

/// Points a run's every path into `dir` (made, as the SDK makes it),
/// offline, without the system monitor, git or the network.
fn contain(s: &mut pb::Settings, dir: &Path) {
    std::fs::create_dir_all(dir.join("logs")).expect("the run's directory");
    let at = |p: &str| Some(dir.join(p).display().to_string());
    s.mode = Some("offline".into());
    s.offline = Some(true);
    s.base_url = None;
    s.root_dir = at("");
    s.wandb_dir = at("");
    s.sync_dir = at("");
    s.sync_file = at("run.wandb");
    s.log_dir = at("logs");
    s.log_internal = at("logs/debug-internal.log");
    s.log_user = at("logs/debug.log");
    s.tmp_dir = at("tmp");
    s.program_abspath = None;
    s.disable_git = Some(true);
    s.x_disable_stats = Some(true);
    s.x_disable_machine_info = Some(true);
}

/// Reads answers until every awaited id has one; an EOF is fine once the
/// service said why it closed the connection.
fn expect_answers(conn: &mut UnixStream, mut awaited: HashSet<String>, who: &str) {
    let deadline = Instant::now() + ANSWER_WITHIN;
    let mut closed_with_reason = false;
    while !awaited.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{who}: {} request(s) unanswered after {ANSWER_WITHIN:?}: {awaited:?}",
            awaited.len()
        );
        let mut header = [0u8; 5];
        match conn.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                assert!(
                    closed_with_reason,
                    "{who}: connection closed with {awaited:?} unanswered and no reason given"
                );
                return;
            }
            Err(e) => panic!("{who}: reading answers failed: {e} ({awaited:?} unanswered)"),
        }
        assert_eq!(header[0], b'W', "{who}: an answer is not a frame");
        let len = u32::from_le_bytes(header[1..].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).expect("a whole answer");
        let answer = pb::ServerResponse::decode(&payload[..]).expect("an answer decodes");
        if answer.request_id.is_empty() {
            closed_with_reason |= matches!(answer.server_response_type, Some(R::ErrorResponse(_)));
        }
        awaited.remove(&answer.request_id);
    }
}

/// A well-behaved client beside the fuzzed one: a run with a row and an
/// exit, every answer on time. Returns its log's path.
fn canary_run(socket: &Path, dir: &Path) -> std::path::PathBuf {
    let dir = dir.join("canary");
    let log = dir.join("run.wandb");
    let mut conn = UnixStream::connect(socket).expect("connect");
    conn.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    let info = || {
        Some(pb::RecordInfo {
            stream_id: "canary".into(),
            ..Default::default()
        })
    };
    let mut settings = pb::Settings {
        run_id: Some("canary".into()),
        ..Default::default()
    };
    contain(&mut settings, &dir);
    let record = |id: &str, record_type| pb::ServerRequest {
        request_id: id.into(),
        server_request_type: Some(T::RecordPublish(pb::Record {
            record_type: Some(record_type),
            control: Some(pb::Control {
                mailbox_slot: id.into(),
                ..Default::default()
            }),
            info: info(),
            ..Default::default()
        })),
    };
    let requests = [
        pb::ServerRequest {
            request_id: "c-init".into(),
            server_request_type: Some(T::InformInit(pb::ServerInformInitRequest {
                settings: Some(settings),
                info: info(),
            })),
        },
        record(
            "c-run",
            RecordType::Run(pb::RunRecord {
                run_id: "canary".into(),
                ..Default::default()
            }),
        ),
        record(
            "",
            RecordType::History(pb::HistoryRecord {
                item: vec![pb::HistoryItem {
                    key: "loss".into(),
                    value_json: "0.5".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ),
        record("c-exit", RecordType::Exit(Default::default())),
        pb::ServerRequest {
            request_id: "c-finish".into(),
            server_request_type: Some(T::InformFinish(pb::ServerInformFinishRequest {
                info: info(),
            })),
        },
    ];
    for req in requests {
        let id = req.request_id.clone();
        let mut frame = Vec::new();
        encode_frame(&req.encode_to_vec(), &mut frame);
        conn.write_all(&frame).expect("the canary writes");
        if !id.is_empty() {
            expect_answers(&mut conn, HashSet::from([id]), "the canary");
        }
    }
    log
}
