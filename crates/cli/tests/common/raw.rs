//! A raw protocol client of a service process the test starts: frames
//! written by hand, answers read back, for what the SDK would never send.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use testkit::scratch_dir;
use wandb_proto::frame::encode_frame;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::server_request::ServerRequestType;
use wandb_proto::pb::server_response::ServerResponseType;
use wandb_proto::wire::scan_record;
use wandb_store::txlog::LogReader;

/// The service binary the raw-protocol tests start: ours, or the one
/// named by `WANDB_TEST_SERVICE` (W&B's wandb-core, to see what it does
/// with the same input; docs/reliability.md has the command).
pub fn service() -> Command {
    match std::env::var_os("WANDB_TEST_SERVICE") {
        Some(bin) => Command::new(bin),
        None => Command::new(env!("CARGO_BIN_EXE_wandb-core")),
    }
}

/// Waits for a complete port file; returns the socket path.
pub fn wait_port_file(path: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Some(socket) = text
                .strip_suffix("\nEOF")
                .and_then(|l| l.strip_prefix("unix="))
        {
            return PathBuf::from(socket);
        }
        assert!(
            Instant::now() < deadline,
            "no port file at {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("service did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process a test started (a service, an SDK script, a server): killed
/// and reaped when dropped, so that a failing test leaves nothing running.
pub struct ServiceChild(pub Child);

impl std::ops::Deref for ServiceChild {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ServiceChild {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ServiceChild {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            // Killed: reaped at once, but never waited for without end.
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

pub fn start(args: &[&str]) -> (ServiceChild, PathBuf, PathBuf) {
    let dir = scratch_dir("lifecycle");
    let port_file = dir.join("port.txt");
    let child = service()
        .arg("--port-filename")
        .arg(&port_file)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let child = ServiceChild(child);
    let socket = wait_port_file(&port_file);
    (child, socket, dir)
}

/// A raw protocol client.
pub struct Client(pub UnixStream);

impl Client {
    pub fn connect(socket: &Path) -> Self {
        let s = UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client(s)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, req: &pb::ServerRequest) {
        let mut frame = Vec::new();
        encode_frame(&req.encode_to_vec(), &mut frame);
        self.send_raw(&frame);
    }

    /// The next response, or `None` at EOF.
    pub fn recv(&mut self) -> Option<pb::ServerResponse> {
        let mut header = [0u8; 5];
        match self.0.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) => panic!("read: {e}"),
        }
        assert_eq!(header[0], b'W');
        let len = u32::from_le_bytes(header[1..].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; len];
        self.0.read_exact(&mut payload).unwrap();
        Some(pb::ServerResponse::decode(&payload[..]).unwrap())
    }

    /// The next response, or `None` at EOF or on any read failure (a
    /// service that died or stopped answering).
    pub fn try_recv(&mut self) -> Option<pb::ServerResponse> {
        let mut header = [0u8; 5];
        self.0.read_exact(&mut header).ok()?;
        if header[0] != b'W' {
            return None;
        }
        let len = u32::from_le_bytes(header[1..].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; len];
        self.0.read_exact(&mut payload).ok()?;
        pb::ServerResponse::decode(&payload[..]).ok()
    }

    /// The answer to `request_id`, skipping the others (answers of
    /// different requests come in any order).
    pub fn answer(&mut self, request_id: &str) -> Option<ServerResponseType> {
        loop {
            let resp = self.recv().expect("an answer before the connection closes");
            if resp.request_id == request_id {
                return resp.server_response_type;
            }
        }
    }

    pub fn expect_error(&mut self, request_id: &str, contains: &str) {
        let resp = self.recv().expect("an answer before the connection closes");
        assert_eq!(resp.request_id, request_id);
        match resp.server_response_type {
            Some(ServerResponseType::ErrorResponse(e)) => {
                assert!(
                    e.message.contains(contains),
                    "{:?} does not mention {contains:?}",
                    e.message
                )
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

pub fn record(stream_id: &str, request_id: &str, record_type: RecordType) -> pb::ServerRequest {
    pb::ServerRequest {
        request_id: request_id.into(),
        server_request_type: Some(ServerRequestType::RecordPublish(pb::Record {
            record_type: Some(record_type),
            control: (!request_id.is_empty()).then(|| pb::Control {
                mailbox_slot: request_id.into(),
                ..Default::default()
            }),
            info: Some(pb::RecordInfo {
                stream_id: stream_id.into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

pub fn request(stream_id: &str, request_id: &str, kind: RequestType) -> pb::ServerRequest {
    record(
        stream_id,
        request_id,
        RecordType::Request(pb::Request {
            request_type: Some(kind),
        }),
    )
}

pub fn inform_init(run_id: &str, dir: &Path) -> pb::ServerRequest {
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
                ..Default::default()
            }),
            info: Some(pb::RecordInfo {
                stream_id: run_id.into(),
                ..Default::default()
            }),
        })),
    }
}

/// `inform_init` for an online run of `project` against `base_url`, without
/// the system monitor or git.
pub fn online_init(
    run_id: &str,
    dir: &Path,
    base_url: &str,
    api_key: &str,
    project: &str,
) -> pb::ServerRequest {
    let mut req = inform_init(run_id, dir);
    if let Some(ServerRequestType::InformInit(init)) = &mut req.server_request_type {
        let s = init.settings.as_mut().unwrap();
        s.mode = Some("online".into());
        s.base_url = Some(base_url.into());
        s.api_key = Some(api_key.into());
        s.entity = Some(wandb_standin::DEFAULT_ENTITY.into());
        s.project = Some(project.into());
        s.x_disable_stats = Some(true);
        s.disable_git = Some(true);
    }
    req
}

pub fn teardown() -> pb::ServerRequest {
    pb::ServerRequest {
        server_request_type: Some(ServerRequestType::InformTeardown(Default::default())),
        ..Default::default()
    }
}

/// Record types in a log, in order.
pub fn log_types(path: &Path) -> Vec<String> {
    LogReader::open(path)
        .unwrap()
        .map(|r| {
            let (_, bytes) = r.unwrap();
            scan_record(&bytes)
                .unwrap()
                .record_type_name()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// History records in a log, read as far as it is valid: a log still being
/// written counts a record once it is whole, and a log that is not there
/// (yet) has none.
pub fn history_rows(path: &Path) -> usize {
    let Ok(reader) = LogReader::open(path) else {
        return 0;
    };
    reader
        .map_while(Result::ok)
        .filter(|(_, bytes)| {
            scan_record(bytes).ok().and_then(|r| r.record_type_name()) == Some("history")
        })
        .count()
}

/// A `run` record for `id`.
pub fn run_record(id: &str, request_id: &str) -> pb::ServerRequest {
    record(
        id,
        request_id,
        RecordType::Run(pb::RunRecord {
            run_id: id.into(),
            ..Default::default()
        }),
    )
}

/// One history item.
pub fn item(key: &str, value_json: &str) -> pb::HistoryItem {
    pb::HistoryItem {
        key: key.into(),
        value_json: value_json.into(),
        ..Default::default()
    }
}

/// A `partial_history` request (`run.log`) with these items.
pub fn row(stream_id: &str, request_id: &str, items: Vec<pb::HistoryItem>) -> pb::ServerRequest {
    request(
        stream_id,
        request_id,
        RequestType::PartialHistory(pb::PartialHistoryRequest {
            item: items,
            ..Default::default()
        }),
    )
}
