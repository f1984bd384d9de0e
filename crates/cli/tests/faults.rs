//! Faults, through the real SDK: the service killed with SIGKILL in the
//! middle of a run, and the training process killed the same way. What
//! must hold: the SDK fails at once with an error (never hangs), the log
//! on disk is a valid prefix holding what was accepted, and `wandb-core
//! sync` brings exactly that to the backend. docs/reliability.md gives
//! the figures (the reference's too: the first test runs both services).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::raw::{
    Client, ServiceChild, inform_init, item, record, request, row, run_record, teardown, wait_exit,
    wait_port_file,
};
use common::{install_ours, log_in, ours, python_script, standin, text};
use prost::Message;
use testkit::CommandExt as _;
use testkit::{reference_python, scratch_dir};
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::pb::request::RequestType;
use wandb_proto::pb::response::ResponseType;
use wandb_proto::pb::server_response::ServerResponseType;
use wandb_standin::RunKey;
use wandb_store::txlog::{LogReader, ReadError};

const KEY: &str = "faultsfaultsfaultsfaultsfaultsfaultsfaul";

/// Finds the service the SDK launched (a `wandb-core` child of this
/// process) and kills it with SIGKILL.
const KILL_SERVICE: &str = r#"
def kill_service():
    import os, signal
    me = str(os.getpid())
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            stat = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        if "(wandb-core)" in stat and stat.rsplit(") ", 1)[1].split()[1] == me:
            os.kill(int(p), signal.SIGKILL)
            return int(p)
    raise SystemExit("no service process found")
"#;

/// Rows (their `_step`s) in a log, read as far as it is valid; whether an
/// exit record is there.
fn log_rows(path: &Path) -> (Vec<i64>, bool) {
    let mut reader = LogReader::open(path).expect("the log has a valid header");
    let (mut steps, mut exit) = (Vec::new(), false);
    loop {
        match reader.next_record() {
            Ok(Some((_, bytes))) => match pb::Record::decode(&bytes[..]).unwrap().record_type {
                Some(RecordType::History(h)) => steps.push(h.step.map_or(-1, |s| s.num)),
                Some(RecordType::Exit(_)) => exit = true,
                _ => {}
            },
            Ok(None) => break,
            // A kill may cut the last record: the prefix before it stands.
            Err(ReadError::Truncated { .. }) => break,
            Err(e) => panic!("{}: not a valid prefix: {e}", path.display()),
        }
    }
    (steps, exit)
}

fn run_dir(work: &Path) -> PathBuf {
    std::fs::read_dir(work.join("wandb"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            (n.starts_with("offline-run-") || n.starts_with("run-")) && p.is_dir()
        })
        .expect("a run directory")
}

/// Logs `rows`, kills the service, then keeps logging: returns the
/// script's output, and the run directory.
fn kill_service_mid_run(python: &Path, what: &str, rows: usize) -> (String, PathBuf) {
    let work = scratch_dir(what);
    let script = format!(
        r#"
import time, wandb
{KILL_SERVICE}
run = wandb.init(project="faults", mode="offline")
for i in range({rows}):
    run.log({{"x": i}})
kill_service()
t, n = time.time(), {rows}
try:
    for i in range(10**6):
        run.log({{"x": i}})
        n += 1
    print("NO ERROR")
except Exception as e:
    print(f"LOG FAILED after {{n}} rows in {{time.time() - t:.2f}}s: {{type(e).__name__}}: {{e}}")
t = time.time()
try:
    run.finish()
    print("FINISH RETURNED")
except Exception as e:
    print(f"FINISH FAILED in {{time.time() - t:.2f}}s: {{type(e).__name__}}")
"#
    );
    let out = python_script(python, &script, &work)
        .env("WANDB_DISABLE_GIT", "true")
        .output_within(Duration::from_secs(180))
        .unwrap();
    (text(&out), run_dir(&work))
}

#[test]
fn a_killed_service_leaves_a_valid_log_the_sdk_fails_at_once_and_sync_uploads_it() {
    const ROWS: usize = 20_000;
    let mut figures = Vec::new();
    for (who, python) in [("ours", install_ours()), ("reference", reference_python())] {
        let (out, dir) = kill_service_mid_run(python, &format!("kill-service-{who}"), ROWS);
        // The SDK's next call raises (the connection is gone); nothing waits.
        assert!(out.contains("LOG FAILED after"), "{who}: {out}");
        assert!(out.contains("FINISH FAILED"), "{who}: {out}");
        let (steps, exit) = log_rows(&log_in(&dir));
        assert!(!exit, "{who}: no exit was invented");
        assert_eq!(
            steps,
            (0..steps.len() as i64).collect::<Vec<_>>(),
            "{who}: rows in order, none missing in between"
        );
        figures.push(format!("{who}: {} of {ROWS} rows in the log", steps.len()));
        if who == "ours" {
            // Writing caught up with a burst of rows before the kill: with the
            // SDK's buffers drained, nothing it accepted is lost.
            assert!(steps.len() + 100 >= ROWS, "{figures:?}");
            // sync brings exactly the log's rows to the backend.
            let s = standin(KEY, &[]);
            let synced = std::process::Command::new(ours())
                .arg("sync")
                .arg(&dir)
                .env("WANDB_BASE_URL", &s.base_url)
                .env("WANDB_API_KEY", KEY)
                .output_limited()
                .unwrap();
            assert!(synced.status.success(), "{}", text(&synced));
            let id = log_in(&dir)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("run-")
                .to_string();
            let history = s.store.history(&RunKey::new("standin", "faults", &id));
            assert_eq!(history.len(), steps.len(), "every row of the log uploaded");
            for (i, row) in history.iter().enumerate() {
                assert_eq!(row["_step"], i, "row {i}: no gap, no duplicate");
            }
        }
    }
    eprintln!("{}", figures.join("; "));
}

#[test]
fn a_killed_training_process_leaves_its_run_written_and_uploaded() {
    // Online: the client dies with SIGKILL mid-run. The service sees its
    // launcher gone, writes and uploads everything it accepted, and does
    // not mark the run finished (W&B then shows it crashed).
    let python = install_ours();
    let s = standin(KEY, &[]);
    let work = scratch_dir("kill-client");
    let script = r#"
import os, signal, wandb
run = wandb.init(project="faults", id="killedclient")
for i in range(5000):
    run.log({"x": i})
print("PID", os.getpid(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"#;
    let out = python_script(python, script, &work)
        .env("WANDB_BASE_URL", &s.base_url)
        .env("WANDB_API_KEY", KEY)
        .env("WANDB_DISABLE_GIT", "true")
        .output_within(Duration::from_secs(180))
        .unwrap();
    assert!(text(&out).contains("PID"), "{}", text(&out));
    let key = RunKey::new("standin", "faults", "killedclient");
    let log = log_in(&run_dir(&work));
    // The service outlives its launcher only to finish: within a bound, the
    // log is closed and everything in it is on the backend.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let (steps, exit) = log_rows(&log);
        assert!(!exit, "no exit invented for a killed process");
        let uploaded = s.store.history(&key).len();
        if uploaded == steps.len() && !steps.is_empty() && service_gone(&work) {
            break steps.len();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{uploaded} of {} rows uploaded after 60 s",
            steps.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(rows >= 4000, "{rows} of 5000 rows accepted before the kill");
    let run = s.store.run(&key).expect("the run on the backend");
    assert!(!run.complete, "a killed run is not marked complete");
}

/// Whether no `wandb-core` process still has `work` as its working
/// directory's ancestor (the killed script's service has exited).
fn service_gone(work: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    !dir.filter_map(Result::ok).any(|e| {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        comm.trim() == "wandb-core"
            && std::fs::read_link(p.join("cwd")).is_ok_and(|cwd| cwd.starts_with(work))
    })
}

#[test]
fn a_full_disk_costs_its_run_its_log_not_the_service() {
    testkit::within(testkit::process::LIMIT, a_full_disk_body);
}

fn a_full_disk_body() {
    // The service runs in a mount namespace of its own in which one run's
    // directory is a 1 MiB tmpfs (made by the test, no root needed where
    // user namespaces are allowed); the other run's is on the real disk.
    let scratch = scratch_dir("diskfull");
    let small = scratch.join("small");
    let other = scratch.join("other");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let port_file = scratch.join("port.txt");
    let mut child = ServiceChild(
        std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=1m tmpfs "$0" && exec "$1" --port-filename "$2" --pid "$3""#)
        .arg(&small)
        .arg(ours())
        .arg(&port_file)
        .arg(std::process::id().to_string())
        .spawn()
        .expect("unshare (util-linux)"),
    );
    let socket = wait_port_file(&port_file);
    let mut c = Client::connect(&socket);
    c.0.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    for (id, dir) in [("full", &small), ("other", &other)] {
        c.send(&inform_init(id, dir));
        assert_eq!(c.recv().unwrap().request_id, format!("init-{id}"));
        c.send(&run_record(id, &format!("run-{id}")));
    }
    let text = |id: &str, i: usize, size: usize| {
        row(id, "", vec![item("text", &format!("\"{i:0size$}\""))])
    };
    // 3 MB for the 1 MiB disk, 100 small rows for the other run.
    for i in 0..3000 {
        c.send(&text("full", i, 1000));
        if i % 30 == 0 {
            c.send(&text("other", i / 30, 10));
        }
    }
    // The user is told (the SDK shows internal messages as warnings).
    c.send(&request(
        "full",
        "msgs",
        RequestType::InternalMessages(Default::default()),
    ));
    let Some(ServerResponseType::ResultCommunicate(pb::Result {
        result_type:
            Some(pb::result::ResultType::Response(pb::Response {
                response_type: Some(ResponseType::InternalMessagesResponse(m)),
            })),
        ..
    })) = c.answer("msgs")
    else {
        panic!("not an internal messages answer");
    };
    let warnings = m.messages.unwrap_or_default().warning;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("No space left on device")),
        "{warnings:?}"
    );
    for id in ["full", "other"] {
        c.send(&record(
            id,
            &format!("exit-{id}"),
            RecordType::Exit(Default::default()),
        ));
    }
    let mut exits = 0;
    while exits < 2 {
        let resp = c.recv().expect("both runs answer their exit");
        exits += usize::from(resp.request_id.starts_with("exit-"));
    }
    // The full run's log, seen inside the service's namespace: a valid
    // prefix of its rows up to the failure.
    let full_log = PathBuf::from(format!("/proc/{}/root", child.id()))
        .join(small.strip_prefix("/").unwrap())
        .join("run-full.wandb");
    let (steps, _) = log_rows(&full_log);
    let kept = steps.len();
    assert!(
        steps.len() > 100 && steps.len() < 3000,
        "{} rows kept",
        steps.len()
    );
    assert_eq!(steps, (0..steps.len() as i64).collect::<Vec<_>>());
    c.send(&teardown());
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    // The other run lost nothing.
    let (steps, exit) = log_rows(&other.join("run-other.wandb"));
    assert_eq!(steps.len(), 100);
    assert!(exit);
    eprintln!("disk full: {kept} of 3000 rows kept in a 1 MiB log");
}

/// `WANDB_CORE_DURABILITY=written` (and `synced`): once a request is
/// answered, every record sent before it is in the log, so a SIGKILL right
/// after the answer loses none of them. Rounds of rows, each closed by a
/// request; the service is killed the moment the last answer arrives.
#[test]
fn a_strict_durability_loses_nothing_the_service_answered_after() {
    testkit::within(testkit::process::LIMIT, || {
        for mode in ["written", "synced"] {
            let dir = scratch_dir("durability");
            let port_file = dir.join("port.txt");
            let mut child = ServiceChild(
                std::process::Command::new(ours())
                    .arg("--port-filename")
                    .arg(&port_file)
                    .args(["--pid", &std::process::id().to_string()])
                    .env("WANDB_CORE_DURABILITY", mode)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let mut c = Client::connect(&wait_port_file(&port_file));
            c.send(&inform_init("durable", &dir));
            assert_eq!(c.recv().unwrap().request_id, "init-durable");
            c.send(&run_record("durable", "run"));
            c.answer("run");
            let mut sent = 0;
            for round in 0..5 {
                for _ in 0..2000 {
                    let mut r = row("durable", "", vec![item("loss", &format!("{sent}"))]);
                    if let Some(pb::server_request::ServerRequestType::RecordPublish(rec)) =
                        &mut r.server_request_type
                        && let Some(RecordType::Request(pb::Request {
                            request_type: Some(RequestType::PartialHistory(p)),
                        })) = &mut rec.record_type
                    {
                        p.action = Some(pb::HistoryAction { flush: true });
                    }
                    c.send(&r);
                    sent += 1;
                }
                let id = format!("step-{round}");
                c.send(&request(
                    "durable",
                    &id,
                    RequestType::HistoryStep(Default::default()),
                ));
                c.answer(&id);
            }
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            wait_exit(&mut child, Duration::from_secs(10));
            let (steps, _) = log_rows(&dir.join("run-durable.wandb"));
            // (Buffered, about 250 of these 10,000 rows were still queued.)
            assert_eq!(
                steps.len(),
                sent,
                "{mode}: every row sent before the last answer is in the log"
            );
            assert!(
                steps.iter().zip(0..).all(|(s, i)| *s == i),
                "{mode}: rows out of order"
            );
        }
    });
}
