//! A cluster without internet, simulated on one machine: "compute node"
//! processes write offline runs (the real SDK on our service) into a shared
//! directory while `wandb-core sync --watch` uploads them from the "login
//! node". One node dies (kill -9: its run becomes crashed once its
//! heartbeat is stale), one stalls (SIGSTOP past the stale limit: crashed,
//! then resumed when it comes back), and the watcher itself is killed and
//! restarted mid-way (the first watcher hears of new runs through inotify,
//! the second scans, as on NFS). At the end the stand-in holds every row of every run
//! exactly once.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::raw::ServiceChild;
use common::{install_ours, standin, walk};
use testkit::scratch_dir;
use wandb_standin::{RunKey, StandIn};

const KEY: &str = "cluster-key-0123456789abcdef0123456789abcdef";
/// Heartbeats every 300 ms; a writer quiet for 4 s is crashed.
const HEARTBEAT: &str = "300ms";
const STALE: &str = "4s";

/// Logs `rows` rows, `pause` seconds apart, then finishes.
const NODE: &str = r#"
import sys, time, wandb
run_id, rows, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
run = wandb.init(project="cluster", id=run_id)
for i in range(rows):
    run.log({"loss": 1.0 / (i + 1), "i": i})
    time.sleep(pause)
run.finish()
"#;

fn node(shared: &Path, id: &str, rows: u32, pause: f64) -> ServiceChild {
    let dir = shared.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let log = File::create(dir.join("node.log")).unwrap();
    ServiceChild(
        Command::new(install_ours())
            .args(["-c", NODE, id, &rows.to_string(), &pause.to_string()])
            .current_dir(&dir)
            .env_remove("WANDB_SERVICE")
            .env("WANDB_MODE", "offline")
            .env("WANDB_DIR", &dir)
            .env("HOME", &dir)
            .env("WANDB_CORE_HEARTBEAT_INTERVAL", HEARTBEAT)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// A watcher finding runs by `discover` (inotify or poll).
fn watcher(shared: &Path, standin: &StandIn, log: &Path, discover: &str) -> ServiceChild {
    common::watcher(
        shared,
        &[
            "--stale".as_ref(),
            STALE.as_ref(),
            "--discover".as_ref(),
            discover.as_ref(),
            shared.as_os_str(),
        ],
        standin,
        KEY,
        log,
    )
}

/// The service a node's run is written by, from the heartbeat beside its
/// log (which says host and pid).
fn service_pid(shared: &Path, id: &str, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(hb) = walk(&shared.join(id))
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with(".wandb.heartbeat"))
            && let Ok(text) = std::fs::read_to_string(&hb)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            return v["pid"].as_i64().unwrap() as i32;
        }
        assert!(Instant::now() < deadline, "{id}: no heartbeat");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: signalling a process this test started (through the SDK).
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A stopped service is continued whatever happens to the test.
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

/// Kills a service the test did not start itself (the SDK did).
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        signal(self.0, libc::SIGKILL);
    }
}

fn history_rows_of(shared: &Path, id: &str) -> usize {
    let log = walk(&shared.join(id))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "wandb"))
        .expect("the node's log");
    common::raw::history_rows(&log)
}

fn wait_for(what: &str, within: Duration, log: &Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; watcher said:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_login_node_uploads_every_run_of_a_shared_directory() {
    let standin = standin(KEY, &[]);
    let work = scratch_dir("cluster");
    let shared = work.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let said = work.join("watcher.log");
    let key = |id: &str| RunKey::new("standin", "cluster", id);
    let stored = |id: &str| standin.store.line_count(&key(id), "wandb-history.jsonl");

    // One node before the watcher starts, the others after.
    let mut early = node(&shared, "early", 40, 0.01);
    // The first watcher is told of new runs by inotify, the restarted one
    // scans (as on NFS): each finds the runs started after it.
    let mut watch = watcher(&shared, &standin, &said, "inotify");
    let mut steady = node(&shared, "steady", 150, 0.04);
    let mut doomed = node(&shared, "doomed", 400, 0.05);
    let mut stalled = node(&shared, "stalled", 300, 0.05);

    let doomed_service = service_pid(&shared, "doomed", Duration::from_secs(60));
    let _reap_doomed = KillOnDrop(doomed_service);
    let stalled_service = service_pid(&shared, "stalled", Duration::from_secs(60));
    let _reap_stalled = KillOnDrop(stalled_service);

    // The doomed node dies with its service, mid-run.
    wait_for(
        "doomed's first rows upload",
        Duration::from_secs(60),
        &said,
        || stored("doomed") >= 10,
    );
    doomed.kill().unwrap();
    signal(doomed_service, libc::SIGKILL);

    // The stalled node's service stops past the stale limit, then goes on.
    wait_for(
        "stalled's first rows upload",
        Duration::from_secs(60),
        &said,
        || stored("stalled") >= 10,
    );
    signal(stalled_service, libc::SIGSTOP);
    let resume = Continue(stalled_service);

    // The watcher dies too, and comes back.
    std::thread::sleep(Duration::from_secs(1));
    watch.kill().unwrap();
    common::raw::wait_exit(&mut watch, Duration::from_secs(10));
    let mut watch = watcher(&shared, &standin, &said, "poll");
    let mut late = node(&shared, "late", 20, 0.01);

    wait_for(
        "the stalled run left crashed",
        Duration::from_secs(60),
        &said,
        || {
            std::fs::read_to_string(&said)
                .unwrap_or_default()
                .contains("cluster/stalled] no exit record and no sign of its writer")
        },
    );
    drop(resume);

    for (id, child) in [
        ("early", &mut early),
        ("steady", &mut steady),
        ("stalled", &mut stalled),
        ("late", &mut late),
    ] {
        let status = common::raw::wait_exit(child, Duration::from_secs(120));
        assert!(status.success(), "{id}'s script failed");
    }
    let expected = |id: &'static str| (id, history_rows_of(&shared, id));
    let runs = [
        expected("early"),
        expected("steady"),
        expected("stalled"),
        expected("late"),
        expected("doomed"),
    ];
    assert_eq!(runs[0].1, 40);
    assert_eq!(runs[1].1, 150);
    assert_eq!(runs[2].1, 300);
    assert_eq!(runs[3].1, 20);
    wait_for(
        "every run finished",
        Duration::from_secs(120),
        &said,
        || {
            runs[..4].iter().all(|(id, _)| {
                standin
                    .store
                    .run(&key(id))
                    .is_some_and(|r| r.complete && r.exitcode == Some(0))
            })
        },
    );
    wait_for(
        "the doomed run crashed",
        Duration::from_secs(60),
        &said,
        || {
            std::fs::read_to_string(&said)
                .unwrap_or_default()
                .contains("cluster/doomed] no exit record and no sign of its writer")
        },
    );
    for (id, rows) in runs {
        assert_eq!(
            stored(id) as usize,
            rows,
            "{id}: every row of its log, once; watcher said:\n{}",
            std::fs::read_to_string(&said).unwrap_or_default()
        );
        let steps: Vec<i64> = standin
            .store
            .history(&key(id))
            .iter()
            .map(|r| r["_step"].as_i64().unwrap())
            .collect();
        assert_eq!(steps, (0..rows as i64).collect::<Vec<_>>(), "{id}: steps");
    }
    let doomed = standin.store.run(&key("doomed")).unwrap();
    assert!(
        !doomed.complete,
        "a dead writer's run is left unfinished (crashed), not marked finished"
    );
    assert!(doomed.finishes == 0);
    // Synced runs carry their marker; the crashed one does not.
    for id in ["early", "steady", "stalled", "late"] {
        assert!(
            walk(&shared.join(id))
                .iter()
                .any(|p| p.to_string_lossy().ends_with(".wandb.synced")),
            "{id} marked synced"
        );
    }
    // Both services exited with their scripts: their pids are no longer
    // ours to signal.
    std::mem::forget(_reap_doomed);
    std::mem::forget(_reap_stalled);
    signal(watch.id() as i32, libc::SIGTERM);
    let status = common::raw::wait_exit(&mut watch, Duration::from_secs(30));
    assert!(status.success(), "the watcher stops cleanly on SIGTERM");
    let said = std::fs::read_to_string(&said).unwrap();
    assert!(said.contains("its writer is back; resuming"), "{said}");
    assert!(said.contains("new runs seen through inotify"), "{said}");
    assert!(said.contains("a scan every 300ms"), "{said}");
}
