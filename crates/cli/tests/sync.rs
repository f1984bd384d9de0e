//! Sync of offline runs against the backend stand-in: the real SDK's
//! `wandb sync` through our service, compared with W&B's service syncing
//! the same logs; `wandb-core sync` with several runs at once, a live run,
//! a torn log, a corrupt block, bad input, an interrupted sync continued,
//! and a backend that fails now and then.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{install_ours, log_in, ours, python_script, standin, text};
use serde_json::Value;
use testkit::CommandExt as _;
use testkit::{reference_python, scratch_dir};
use wandb_standin::{RunKey, StandIn};

const KEY: &str = "sync-test-key-0123456789012345678901234567890";

/// An offline run made by `python` (its package's service): returns its
/// run directory.
fn offline_run(python: &Path, rows: usize, what: &str, extra_env: &[(&str, &str)]) -> PathBuf {
    let work = scratch_dir(what);
    let script = format!(
        r#"
import sys, wandb, numpy as np
run = wandb.init(project="syncp", tags=["t1", "t2"], config={{"lr": 0.1, "arch": {{"layers": 2}}}})
for i in range({rows}):
    run.log({{"a": i, "b": i * 0.5}})
run.log({{"img": wandb.Image(np.full((4, 4, 3), 128, dtype=np.uint8))}})
print("hello stdout")
print("oops", file=sys.stderr)
open("extra.txt", "w").write("saved\n")
run.save("extra.txt", policy="end")
run.summary["best"] = 7
run.finish()
"#
    );
    let mut cmd = python_script(python, &script, &work);
    cmd.env("WANDB_MODE", "offline")
        .env("WANDB_DISABLE_GIT", "true");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output_limited().unwrap();
    assert!(out.status.success(), "{what}: {}", text(&out));
    run_dir_in(&work.join("wandb"))
}

fn run_dir_in(wandb_dir: &Path) -> PathBuf {
    std::fs::read_dir(wandb_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("offline-run-"))
        })
        .expect("a run directory")
}

fn run_id(dir: &Path) -> String {
    let name = dir.file_name().unwrap().to_str().unwrap();
    name.rsplit('-').next().unwrap().to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        // Follow links: `run.save` links files into files/.
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            copy_dir(&p, &t);
        } else if meta.is_file() {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

/// A copy of a run directory, under a `wandb/` of its own.
fn copy_run(dir: &Path, what: &str) -> PathBuf {
    let to = scratch_dir(what)
        .join("wandb")
        .join(dir.file_name().unwrap());
    copy_dir(dir, &to);
    to
}

/// `wandb sync <dir>` with `python`'s package (its service).
fn wandb_sync(python: &Path, standin: &StandIn, dir: &Path, args: &[&str]) -> Output {
    let wandb = python.parent().unwrap().join("wandb");
    let cwd = dir.parent().unwrap().parent().unwrap();
    Command::new(wandb)
        .arg("sync")
        .args(args)
        .arg(dir)
        .current_dir(cwd)
        .env_remove("WANDB_SERVICE")
        .env("WANDB_BASE_URL", &standin.base_url)
        .env("WANDB_API_KEY", KEY)
        .env("WANDB_ERROR_REPORTING", "false")
        .env("HOME", cwd)
        .env("WANDB_CONFIG_DIR", cwd.join(".config"))
        .output_limited()
        .unwrap()
}

fn core_sync(standin: &StandIn, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(ours());
    cmd.arg("sync")
        .args(args)
        .env("WANDB_BASE_URL", &standin.base_url)
        .env("WANDB_API_KEY", KEY);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output_limited().unwrap()
}

/// What the backend has of a run, for comparing two syncs.
#[derive(Debug, PartialEq)]
struct Backend {
    history: Vec<Value>,
    events: usize,
    summary: Value,
    console: Vec<String>,
    files: Vec<String>,
    config_keys: Vec<String>,
    tags: Vec<String>,
    complete: bool,
    exitcode: Option<i64>,
}

/// Numbers as floats (to 12 digits): W&B's service re-serialises values (`1.0` → `1`),
/// ours sends them as recorded; the same numbers either way.
fn numeric(v: Value) -> Value {
    match v {
        // 12 significant digits: JSON parsers may differ in the last bit.
        Value::Number(n) => n
            .as_f64()
            .and_then(|f| format!("{f:.11e}").parse::<f64>().ok())
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(a) => Value::Array(a.into_iter().map(numeric).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, numeric(v))).collect()),
        other => other,
    }
}

fn backend(s: &StandIn, project: &str, id: &str) -> Backend {
    let key = RunKey::new("standin", project, id);
    let run = s
        .store
        .run(&key)
        .unwrap_or_else(|| panic!("no run {project}/{id}"));
    let mut summary = run.summary.clone();
    if let Some(o) = summary.as_object_mut() {
        o.retain(|k, _| !k.starts_with("_wandb") && k != "_runtime");
    }
    let mut files: Vec<String> = s.store.file_paths(&key).into_iter().collect();
    files.sort();
    let mut config_keys: Vec<String> = run
        .config
        .as_object()
        .map(|o| o.keys().filter(|k| *k != "_wandb").cloned().collect())
        .unwrap_or_default();
    config_keys.sort();
    Backend {
        history: s.store.history(&key).into_iter().map(numeric).collect(),
        events: s.store.events(&key).len(),
        summary: numeric(summary),
        // Times are the sync's: compare the text after them.
        console: s
            .store
            .console(&key)
            .iter()
            .map(|l| {
                let (prefix, rest) = l
                    .strip_prefix("ERROR ")
                    .map_or(("", l.as_str()), |r| ("ERROR ", r));
                format!("{prefix}{}", rest.split_once(' ').map_or(rest, |(_, t)| t))
            })
            .collect(),
        files,
        config_keys,
        tags: run.tags.clone(),
        complete: run.complete,
        exitcode: run.exitcode,
    }
}

#[test]
fn wandb_sync_through_our_service_matches_wandb_core() {
    let ours_py = install_ours();
    let runs = [
        (
            "written by ours",
            offline_run(ours_py, 300, "sync-src-ours", &[]),
        ),
        (
            "written by W&B's",
            offline_run(reference_python(), 300, "sync-src-ref", &[]),
        ),
    ];
    for (what, dir) in runs {
        let id = run_id(&dir);
        // The real SDK's `wandb sync`, through our service and through
        // W&B's, each to a stand-in of its own.
        let (mine, theirs) = (standin(KEY, &[]), standin(KEY, &[]));
        let d1 = copy_run(&dir, "sync-ours");
        let out = wandb_sync(ours_py, &mine, &d1, &[]);
        assert!(out.status.success(), "{what}: {}", text(&out));
        assert!(
            text(&out).contains("Finished syncing"),
            "{what}: {}",
            text(&out)
        );
        assert!(
            log_in(&d1).with_extension("wandb.synced").exists(),
            "{what}: marker"
        );
        let d2 = copy_run(&dir, "sync-ref");
        let out = wandb_sync(reference_python(), &theirs, &d2, &[]);
        assert!(out.status.success(), "{what}: {}", text(&out));
        let (a, b) = (backend(&mine, "syncp", &id), backend(&theirs, "syncp", &id));
        assert_eq!(a.history.len(), 301, "{what}");
        assert_eq!(a.history[299]["a"], 299.0, "{what}");
        assert!(
            a.console.iter().any(|l| l == "hello stdout"),
            "{what}: {:?}",
            a.console
        );
        assert!(
            a.console.iter().any(|l| l == "ERROR oops"),
            "{what}: {:?}",
            a.console
        );
        assert!(
            a.files.iter().any(|f| f == "extra.txt"),
            "{what}: {:?}",
            a.files
        );
        assert!(
            a.files.iter().any(|f| f.starts_with("media/images/img_")),
            "{what}: {:?}",
            a.files
        );
        assert_eq!(a.summary["best"], 7.0, "{what}");
        assert!(a.complete && a.exitcode == Some(0), "{what}: {a:?}");
        assert_eq!(a.history.len(), b.history.len(), "{what}: history rows");
        if let Some(i) = (0..a.history.len()).find(|i| a.history[*i] != b.history[*i]) {
            panic!(
                "{what}: history row {i}, ours vs W&B's sync: {} vs {}",
                a.history[i], b.history[i]
            );
        }
        assert_eq!(a.events, b.events, "{what}: events");
        assert_eq!(a.summary, b.summary, "{what}: summary");
        assert_eq!(a.console, b.console, "{what}: console");
        assert_eq!(a.files, b.files, "{what}: files");
        assert_eq!(a.config_keys, b.config_keys, "{what}: config");
        assert_eq!(a.tags, b.tags, "{what}: tags");
        assert_eq!((a.complete, a.exitcode), (b.complete, b.exitcode), "{what}");

        // `wandb-core sync`: the same result.
        let d3 = copy_run(&dir, "sync-cli");
        let cli = standin(KEY, &[]);
        let out = core_sync(&cli, &[d3.to_str().unwrap()], &[]);
        assert!(out.status.success(), "{what}: {}", text(&out));
        assert_eq!(
            backend(&cli, "syncp", &id),
            a,
            "{what}: wandb-core sync vs wandb sync"
        );

        // Synced again (without skipping): nothing duplicated.
        let out = wandb_sync(ours_py, &mine, &d1, &["--no-skip-synced"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            mine.store
                .history(&RunKey::new("standin", "syncp", &id))
                .len(),
            301
        );
    }
}

#[test]
fn several_runs_at_once_bad_input_a_corrupt_block_and_a_torn_log() {
    let py = install_ours();
    let root = scratch_dir("sync-many").join("wandb");
    let mut ids = Vec::new();
    for i in 0..3 {
        let dir = offline_run(py, 100 + i, &format!("sync-many-{i}"), &[]);
        ids.push((run_id(&dir), 100 + i));
        copy_dir(&dir, &root.join(dir.file_name().unwrap()));
    }
    // Not a log, under a log's name.
    let bad = root.join("offline-run-20260101_000000-badlog");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("run-badlog.wandb"), "hello, not a log").unwrap();
    let s = standin(KEY, &[]);
    let out = core_sync(&s, &["-j", "3", root.to_str().unwrap()], &[]);
    let t = text(&out);
    assert!(!out.status.success(), "a bad log fails the command: {t}");
    assert!(
        t.contains("badlog") && t.contains("not a W&B transaction log"),
        "{t}"
    );
    assert!(t.contains("3 run(s) synced"), "{t}");
    for (id, rows) in &ids {
        let b = backend(&s, "syncp", id);
        assert_eq!(b.history.len(), rows + 1, "{id}");
        assert!(b.complete, "{id}");
    }
    // --skip-synced: nothing to do the second time.
    let out = core_sync(&s, &["--skip-synced", root.to_str().unwrap()], &[]);
    assert!(
        text(&out).contains("0 run(s) synced, 3 skipped"),
        "{}",
        text(&out)
    );

    // A corrupt block in the middle: the rest is sent, and where the damage
    // is gets said.
    let dir = offline_run(py, 3000, "sync-corrupt", &[]);
    let log = log_in(&dir);
    let mut bytes = std::fs::read(&log).unwrap();
    assert!(bytes.len() > 3 * 32768, "{}", bytes.len());
    bytes[32768 + 100] ^= 0xff;
    std::fs::write(&log, &bytes).unwrap();
    let s = standin(KEY, &[]);
    let out = core_sync(&s, &[dir.to_str().unwrap()], &[]);
    let t = text(&out);
    assert!(t.contains("corrupt at byte"), "{t}");
    let b = backend(&s, "syncp", &run_id(&dir));
    assert!(
        b.history.len() > 2000 && b.history.len() < 3001,
        "{}",
        b.history.len()
    );
    assert!(b.complete && b.exitcode == Some(0));

    // A torn log (the process died mid-write): everything before the tear
    // arrives, the run is finished as failed, and it is not marked synced.
    let dir = offline_run(py, 500, "sync-torn", &[]);
    let log = log_in(&dir);
    // Cut in the middle of a record about two thirds in.
    let len = std::fs::metadata(&log).unwrap().len();
    let mut reader = wandb_store::txlog::LogReader::open(&log).unwrap();
    let cut = loop {
        let (pos, _) = reader.next_record().unwrap().expect("a record past 2/3");
        if pos.offset > len * 2 / 3 {
            break pos.offset + (pos.end - pos.offset) / 2;
        }
    };
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(cut).unwrap();
    drop(f);
    let s = standin(KEY, &[]);
    let out = core_sync(&s, &[dir.to_str().unwrap()], &[]);
    let t = text(&out);
    assert!(t.contains("incomplete record"), "{t}");
    let b = backend(&s, "syncp", &run_id(&dir));
    assert!(
        b.history.len() > 100 && b.history.len() < 500,
        "{}",
        b.history.len()
    );
    let steps: Vec<i64> = b
        .history
        .iter()
        .map(|h| h["_step"].as_f64().unwrap() as i64)
        .collect();
    assert!(steps.iter().enumerate().all(|(i, s)| *s == i as i64));
    assert_eq!((b.complete, b.exitcode), (true, Some(1)));
    assert!(!log.with_extension("wandb.synced").exists());
}

#[test]
fn an_interrupted_sync_continues_without_duplicates_despite_failures() {
    let py = install_ours();
    const ROWS: usize = 20_000;
    let dir = offline_run(py, ROWS, "sync-interrupted", &[]);
    let id = run_id(&dir);
    let key = RunKey::new("standin", "syncp", &id);
    // Small file stream requests, so the kill lands mid-way; a backend
    // that fails now and then (500s, a 429 with Retry-After).
    let s = standin(KEY, &["file_stream:500:2", "UpsertBucket:429:1:1"]);
    let env = [("WANDB_X_FILE_STREAM_MAX_BYTES", "2000")];
    let mut child = Command::new(ours())
        .args(["sync", dir.to_str().unwrap()])
        .env("WANDB_BASE_URL", &s.base_url)
        .env("WANDB_API_KEY", KEY)
        .env(env[0].0, env[0].1)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = s.store.line_count(&key, "wandb-history.jsonl");
        if n >= 1000 {
            child.kill().unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "no progress");
        if child.try_wait().unwrap().is_some() {
            panic!("the sync ended before it could be interrupted ({n} rows)");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    common::raw::wait_exit(&mut child, Duration::from_secs(10));
    let partial = s.store.line_count(&key, "wandb-history.jsonl");
    assert!((partial as usize) < ROWS, "{partial}");
    let out = core_sync(&s, &[dir.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", text(&out));
    let history = s.store.history(&key);
    assert_eq!(history.len(), ROWS + 1);
    for (i, row) in history.iter().enumerate() {
        assert_eq!(row["_step"], i, "row {i}: no gap, no duplicate");
    }
    let b = backend(&s, "syncp", &id);
    assert!(b.complete && b.exitcode == Some(0));
    assert!(text(&out).contains("already had"), "{}", text(&out));
}

#[test]
fn live_sync_follows_a_run_being_written() {
    let py = install_ours();
    let work = scratch_dir("sync-live");
    let script = r#"
import time, wandb
run = wandb.init(project="syncp", settings=wandb.Settings(x_transaction_log_flush_interval=0.1))
for i in range(40):
    run.log({"a": i})
    time.sleep(0.05)
run.finish()
"#;
    let mut writer = python_script(py, script, &work)
        .env("WANDB_MODE", "offline")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let dir = loop {
        let w = work.join("wandb");
        if w.is_dir()
            && let Some(d) = std::fs::read_dir(&w)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .starts_with("offline-run-")
                        && std::fs::read_dir(p)
                            .unwrap()
                            .flatten()
                            .any(|e| e.path().extension().is_some_and(|x| x == "wandb"))
                })
        {
            break d;
        }
        assert!(Instant::now() < deadline, "no run directory");
        std::thread::sleep(Duration::from_millis(20));
    };
    let s = standin(KEY, &[]);
    let out = core_sync(&s, &["--live", dir.to_str().unwrap()], &[]);
    // The writer's own run is 2 s of logging; a hang fails here.
    assert!(common::raw::wait_exit(&mut writer, Duration::from_secs(120)).success());
    assert!(out.status.success(), "{}", text(&out));
    let b = backend(&s, "syncp", &run_id(&dir));
    assert_eq!(b.history.len(), 40);
    assert_eq!((b.complete, b.exitcode), (true, Some(0)));
}
