//! The service process on its own: port file and socket permissions, flags
//! in Go syntax, the lifetime rules (parent pid, idle timeout, signals,
//! teardown), and bad input, which costs only the connection that sent it
//! while a real SDK run on the same service completes with nothing lost.

mod common;

use common::raw::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use prost::Message;
use testkit::CommandExt as _;
use testkit::{reference_python, scratch_dir};
use wandb_proto::frame::encode_frame;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::server_request::ServerRequestType;
use wandb_proto::pb::server_response::ServerResponseType;
use wandb_store::txlog::LogReader;

#[test]
fn port_file_and_a_private_socket() {
    let (mut child, socket, dir) = start(&["--pid", &std::process::id().to_string()]);
    let text = std::fs::read_to_string(dir.join("port.txt")).unwrap();
    assert_eq!(text, format!("unix={}\nEOF", socket.display()));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);

    Client::connect(&socket).send(&teardown());
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    assert!(
        !socket.exists() && !socket.parent().unwrap().exists(),
        "socket directory removed"
    );
}

/// Whether a process running as user and group `nobody` (65534) can
/// connect to the Unix socket at `path`: `Ok(())`, or the errno it got.
///
/// The check runs in the forked child before `exec` (`pre_exec`), which
/// allows only async-signal-safe calls: setgroups, setgid, setuid, socket,
/// connect and `_exit` are; the address is built before the fork.
fn connect_as_nobody(path: &Path) -> Result<(), i32> {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::process::CommandExt as _;
    // SAFETY: an all-zero sockaddr_un is valid; the path is copied in below.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    assert!(bytes.len() < addr.sun_path.len(), "socket path too long");
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let mut cmd = Command::new("/bin/true");
    // SAFETY: only async-signal-safe calls, on memory prepared before the
    // fork; the child never returns from the closure.
    unsafe {
        cmd.pre_exec(move || {
            let code = if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                100
            } else {
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                if fd < 0 {
                    101
                } else if libc::connect(
                    fd,
                    &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                ) == 0
                {
                    0
                } else {
                    // errno is thread-local, and this thread is the child's only one.
                    *libc::__errno_location()
                }
            };
            libc::_exit(code);
        });
    }
    let status = cmd.output_within(Duration::from_secs(10)).unwrap().status;
    match status.code() {
        Some(0) => Ok(()),
        Some(100) => panic!("could not become user nobody"),
        Some(101) => panic!("could not create a socket as nobody"),
        Some(errno) => Err(errno),
        None => panic!("the child died: {status:?}"),
    }
}

#[test]
fn another_local_user_cannot_connect() {
    let (mut child, socket, _dir) = start(&["--pid", &std::process::id().to_string()]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Switching users needs root; the kernel's rule is then shown by
        // the modes and owner: only this user may enter the directory.
        let meta = std::fs::metadata(socket.parent().unwrap()).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        // SAFETY: getuid has no preconditions.
        assert_eq!(meta.uid(), unsafe { libc::getuid() });
        assert_eq!(meta.mode() & 0o077, 0, "no access for group or others");
        eprintln!("not root: checked the socket directory's owner and mode only");
    } else {
        // The control: nobody can connect to a socket it may reach, so a
        // refusal below is the service's permissions, not the harness.
        // In /tmp, which every user may search (the project's scratch
        // directories may sit under a private one).
        let open_dir = tempfile::Builder::new()
            .prefix("open-socket")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(open_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let open_socket = open_dir.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&open_socket).unwrap();
        std::fs::set_permissions(&open_socket, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(connect_as_nobody(&open_socket), Ok(()));

        assert_eq!(
            connect_as_nobody(&socket),
            Err(libc::EACCES),
            "another user reached the service's socket"
        );
    }
    // The owner still can.
    Client::connect(&socket).send(&teardown());
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[test]
fn flags_in_go_syntax_and_loopback_tcp() {
    let dir = scratch_dir("goflags");
    let port_file = dir.join("port.txt");
    let mut child = service()
        .arg(format!("-port-filename={}", port_file.display()))
        .args([
            "-pid",
            &std::process::id().to_string(),
            "--log-level",
            "-4",
            "-no-observability",
        ])
        .args([
            "-detached=false",
            "--listen-on-localhost",
            "-os-pid-shutdown",
            "--enable-dcgm-profiling",
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        if let Ok(t) = std::fs::read_to_string(&port_file)
            && t.ends_with("EOF")
        {
            break t;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    };
    let port: u16 = text
        .lines()
        .find_map(|l| l.strip_prefix("sock="))
        .expect("a sock= line")
        .parse()
        .unwrap();
    assert!(text.starts_with("unix="));
    // The TCP listener is bound to loopback only (127.0.0.1 in the kernel's
    // table, never 0.0.0.0), and speaks the same protocol.
    let tcp_table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let listening: Vec<&str> = tcp_table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|local| local.ends_with(&format!(":{port:04X}")))
        .collect();
    assert_eq!(listening, [format!("0100007F:{port:04X}")], "{tcp_table}");
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut frame = Vec::new();
    encode_frame(&teardown().encode_to_vec(), &mut frame);
    tcp.write_all(&frame).unwrap();
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());

    let bad = service()
        .arg("--idle-timeout")
        .arg("10 minutes")
        .output_limited()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid duration"));
}

#[test]
fn exits_when_pid_is_not_its_parent() {
    let (mut child, _, _) = start(&["--pid", "1"]);
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
}

#[test]
fn exits_when_its_launcher_is_gone() {
    let dir = scratch_dir("orphan");
    let port_file = dir.join("port.txt");
    // The shell launches the service with its own pid and exits.
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" --port-filename "$1" --pid $$ >/dev/null 2>&1 & sleep 0.5"#)
        .arg(env!("CARGO_BIN_EXE_wandb-core"))
        .arg(&port_file)
        .status_limited()
        .unwrap();
    assert!(status.success());
    let socket = wait_port_file(&port_file);
    let deadline = Instant::now() + Duration::from_secs(10);
    while socket.exists() {
        assert!(Instant::now() < deadline, "orphaned service still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn detached_service_exits_after_idle_timeout_but_not_while_connected() {
    let (mut child, socket, _) = start(&["--detached", "--idle-timeout", "300ms"]);
    let client = Client::connect(&socket);
    std::thread::sleep(Duration::from_millis(900));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a connected client keeps it alive"
    );
    drop(client);
    let started = Instant::now();
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn sigterm_keeps_everything_accepted_and_invents_no_exit() {
    let (mut child, socket, dir) = start(&["--detached", "--idle-timeout", "0"]);
    let mut c = Client::connect(&socket);
    c.send(&inform_init("sigterm1", &dir));
    assert_eq!(c.recv().unwrap().request_id, "init-sigterm1");
    c.send(&record(
        "sigterm1",
        "",
        RecordType::Header(Default::default()),
    ));
    c.send(&request(
        "sigterm1",
        "",
        RequestType::RunStart(Default::default()),
    ));
    for i in 0..100 {
        c.send(&request(
            "sigterm1",
            "",
            RequestType::PartialHistory(pb::PartialHistoryRequest {
                item: vec![pb::HistoryItem {
                    key: "i".into(),
                    value_json: i.to_string(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ));
    }
    // Once this is answered, everything before it was accepted.
    c.send(&request(
        "sigterm1",
        "step?",
        RequestType::HistoryStep(Default::default()),
    ));
    let resp = c.recv().unwrap();
    assert_eq!(resp.request_id, "step?");
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(128 + 15));
    let types = log_types(&dir.join("run-sigterm1.wandb"));
    assert_eq!(types.iter().filter(|t| *t == "history").count(), 100);
    assert!(
        !types.contains(&"exit".to_string()),
        "a killed run has no exit record"
    );
}

#[test]
fn teardown_finishes_open_runs_with_its_exit_code() {
    let (mut child, socket, dir) = start(&["--detached", "--idle-timeout", "0"]);
    let mut c = Client::connect(&socket);
    for id in ["open1", "open2"] {
        c.send(&inform_init(id, &dir));
        assert_eq!(c.recv().unwrap().request_id, format!("init-{id}"));
        c.send(&request(id, "", RequestType::RunStart(Default::default())));
    }
    // A second init of a live run gets wandb-core's answer.
    c.send(&inform_init("open1", &dir));
    c.expect_error("init-open1", "run ID open1 is in use");
    c.send(&pb::ServerRequest {
        server_request_type: Some(ServerRequestType::InformTeardown(
            pb::ServerInformTeardownRequest {
                exit_code: 3,
                ..Default::default()
            },
        )),
        ..Default::default()
    });
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    for id in ["open1", "open2"] {
        let path = dir.join(format!("run-{id}.wandb"));
        let exit = LogReader::open(&path)
            .unwrap()
            .map(|r| pb::Record::decode(&r.unwrap().1[..]).unwrap())
            .find_map(|r| match r.record_type {
                Some(RecordType::Exit(e)) => Some(e),
                _ => None,
            })
            .expect("a synthesised exit record");
        assert_eq!(exit.exit_code, 3);
    }
}

#[test]
fn a_run_without_a_transaction_log_is_refused_at_wandb_init() {
    // A log that cannot be created (here: its directory does not exist;
    // a relative WANDB_DIR does this) would leave the run accepted but
    // never written, and online, finish() waiting forever. wandb.init
    // raises instead, with wandb-core's prefix.
    let (mut child, socket, dir) = start(&["--detached", "--idle-timeout", "0"]);
    let mut c = Client::connect(&socket);
    c.send(&inform_init("nolog", &dir.join("missing")));
    assert_eq!(c.recv().unwrap().request_id, "init-nolog");
    c.send(&record(
        "nolog",
        "run-nolog",
        RecordType::Run(pb::RunRecord {
            run_id: "nolog".into(),
            ..Default::default()
        }),
    ));
    let answer = c.recv().expect("an answer to the run record");
    let Some(ServerResponseType::ResultCommunicate(result)) = answer.server_response_type else {
        panic!("expected a result, got {answer:?}");
    };
    let Some(pb::result::ResultType::RunResult(run)) = result.result_type else {
        panic!("expected a run result, got {result:?}");
    };
    let error = run.error.expect("the run is refused");
    assert!(
        error.message.starts_with("Error initializing run: ")
            && error.message.contains("run-nolog.wandb"),
        "{error:?}"
    );
    assert_eq!(error.code, pb::error_info::ErrorCode::Unknown as i32);
    // The service goes on serving other runs.
    c.send(&inform_init("haslog", &dir));
    assert_eq!(c.recv().unwrap().request_id, "init-haslog");
    c.send(&teardown());
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    assert!(dir.join("run-haslog.wandb").exists());
}

#[test]
fn bad_input_costs_only_its_connection_while_a_real_run_completes() {
    let (mut service, socket, dir) = start(&["--detached", "--idle-timeout", "0"]);
    let token = format!("3-{}-unix-{}", std::process::id(), socket.display());
    let work = dir.join("healthy");
    std::fs::create_dir_all(&work).unwrap();
    let script = r#"
import time, wandb
run = wandb.init(project="healthy")
for i in range(1000):
    run.log({"i": i})
    if i % 100 == 0:
        time.sleep(0.05)
run.finish()
"#;
    let mut healthy = Command::new(reference_python())
        .args(["-c", script])
        .current_dir(&work)
        .env("WANDB_SERVICE", &token)
        .env("WANDB_MODE", "offline")
        .env("WANDB_DIR", &work)
        .env("WANDB_RUN_ID", "healthy01")
        .env("WANDB_SILENT", "true")
        .env("HOME", &work)
        .spawn()
        .unwrap();
    // Wait until the SDK's run exists, so our own init below cannot take
    // its ID first.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_dir(work.join("wandb"))
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("offline-run"))
        })
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "the SDK run did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));

    // Garbage and a wrong magic byte.
    let mut c = Client::connect(&socket);
    c.send_raw(b"hello, world");
    c.expect_error("", "magic");
    assert!(c.recv().is_none(), "connection closed");

    // A hostile length.
    let mut c = Client::connect(&socket);
    c.send_raw(&[b'W', 0xff, 0xff, 0xff, 0xff]);
    c.expect_error("", "exceeds the limit");
    assert!(c.recv().is_none());

    // A well-formed frame whose payload is not a ServerRequest.
    let mut c = Client::connect(&socket);
    let mut frame = Vec::new();
    encode_frame(&[0xff; 16], &mut frame);
    c.send_raw(&frame);
    c.expect_error("", "not a ServerRequest");
    assert!(c.recv().is_none());

    // Records for a run this service does not have: answered, and the
    // connection stays usable.
    let mut c = Client::connect(&socket);
    c.send(&request(
        "nosuchrun",
        "q1",
        RequestType::HistoryStep(Default::default()),
    ));
    c.expect_error("q1", "no run with ID \"nosuchrun\"");
    c.send(&request(
        "nosuchrun",
        "q2",
        RequestType::GetSummary(Default::default()),
    ));
    c.expect_error("q2", "nosuchrun");
    // A second init of the live run.
    c.send(&inform_init("healthy01", &dir));
    c.expect_error("init-healthy01", "run ID healthy01 is in use");
    drop(c);

    let status = wait_exit(&mut healthy, Duration::from_secs(120));
    assert!(status.success(), "the healthy run failed: {status}");
    Client::connect(&socket).send(&teardown());
    assert!(wait_exit(&mut service, Duration::from_secs(20)).success());

    let log = std::fs::read_dir(work.join("wandb"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("offline-run"))
        .unwrap()
        .path()
        .join("run-healthy01.wandb");
    let types = log_types(&log);
    assert_eq!(
        types.iter().filter(|t| *t == "history").count(),
        1000,
        "every row arrived"
    );
    assert_eq!(types.last().map(String::as_str), Some("exit"));
}

#[test]
fn a_launched_service_exits_once_every_client_hung_up_without_a_teardown() {
    // A client whose connection broke cannot tear the service down and
    // would wait for its exit forever (the SDK's teardown joins it): once
    // no client is left, the service closes its runs and exits by itself.
    let (mut child, socket, dir) = start(&["--pid", &std::process::id().to_string()]);
    let mut owner = Client::connect(&socket);
    owner.send(&inform_init("orphan", &dir));
    assert_eq!(owner.recv().unwrap().request_id, "init-orphan");
    owner.send(&run_record("orphan", ""));
    // A second client (a child process of the user's): the service stays
    // while either is connected.
    let other = Client::connect(&socket);
    drop(owner);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a client is still connected"
    );
    drop(other);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    // The run was closed as when its process dies: everything accepted is
    // in the log, and no exit was invented.
    let types = log_types(&dir.join("run-orphan.wandb"));
    assert!(types.contains(&"run".to_string()), "{types:?}");
    assert!(!types.contains(&"exit".to_string()), "{types:?}");
    assert!(!socket.exists(), "socket removed");
}

#[test]
fn a_teardown_right_before_a_reset_is_still_honoured() {
    // The SDK's teardown publishes `inform_teardown` and closes its socket
    // at once. With an answer it never read still queued, that close is a
    // reset, and the read that brings the teardown's bytes is followed by
    // ECONNRESET: the service must act on the bytes, not drop them with
    // the error (it then never exited, and the SDK waited for it forever).
    let (mut child, socket, dir) = start(&["--pid", &std::process::id().to_string()]);
    let mut c = Client::connect(&socket);
    c.send(&inform_init("reset", &dir));
    assert_eq!(c.recv().unwrap().request_id, "init-reset");
    c.send(&request(
        "reset",
        "",
        RequestType::RunStart(Default::default()),
    ));
    // An answer left unread: a second init of the live run is refused.
    c.send(&inform_init("reset", &dir));
    std::thread::sleep(Duration::from_millis(300));
    c.send(&pb::ServerRequest {
        server_request_type: Some(ServerRequestType::InformTeardown(
            pb::ServerInformTeardownRequest {
                exit_code: 3,
                ..Default::default()
            },
        )),
        ..Default::default()
    });
    drop(c);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    let exit = LogReader::open(dir.join("run-reset.wandb"))
        .unwrap()
        .map(|r| pb::Record::decode(&r.unwrap().1[..]).unwrap())
        .find_map(|r| match r.record_type {
            Some(RecordType::Exit(e)) => Some(e),
            _ => None,
        })
        .expect("the teardown's exit record: the teardown was lost");
    assert_eq!(exit.exit_code, 3);
}
