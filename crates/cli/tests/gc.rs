//! Local data that cleans itself: `wandb-core gc` removes a run's local
//! copy only when the stand-in provably has all of it (rows, files, a
//! finished state), and `sync --watch --delete-synced` does it as it goes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{install_ours, ours, standin, text};
use testkit::CommandExt as _;
use testkit::scratch_dir;
use wandb_standin::{RunKey, StandIn};

const KEY: &str = "gc-key-0123456789abcdef0123456789abcdef0123";

const SCRIPT: &str = r#"
import sys, wandb
run = wandb.init(project="gc", id=sys.argv[1])
for i in range(20):
    run.log({"x": i})
run.finish()
"#;

/// An offline run `id` under `work/wandb`; its directory.
fn offline_run(work: &Path, id: &str) -> PathBuf {
    let out = Command::new(install_ours())
        .args(["-c", SCRIPT, id])
        .current_dir(work)
        .env_remove("WANDB_SERVICE")
        .env("WANDB_MODE", "offline")
        .env("WANDB_DIR", work)
        .env("HOME", work)
        .output_limited()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::read_dir(work.join("wandb"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(&format!("-{id}")))
        .expect("the run directory")
}

fn wandb_core(work: &Path, standin: &StandIn, args: &[&str]) -> Output {
    let out = Command::new(ours())
        .args(args)
        .current_dir(work)
        .env("WANDB_BASE_URL", &standin.base_url)
        .env("WANDB_API_KEY", KEY)
        .output_limited()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    out
}

/// Bytes of the files under `dir` (links are not what removing frees:
/// `logs/debug-core.log` points at the service's log).
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            total += du(&e.path());
        } else if m.is_file() {
            total += m.len();
        }
    }
    total
}

#[test]
fn gc_removes_only_what_the_server_has_in_full() {
    let standin = standin(KEY, &[]);
    let work = scratch_dir("gc");
    let complete = offline_run(&work, "complete");
    let short = offline_run(&work, "short");
    let unsynced = offline_run(&work, "unsynced");
    for dir in [&complete, &short] {
        wandb_core(&work, &standin, &["sync", dir.to_str().unwrap()]);
    }
    // The server lost the end of one run's history.
    standin.store.drop_lines_from(
        &RunKey::new("standin", "gc", "short"),
        "wandb-history.jsonl",
        15,
    );
    let size = du(&complete);

    let dry = text(&wandb_core(
        &work,
        &standin,
        &["gc", "wandb", "--older-than", "0s", "--dry-run"],
    ));
    assert!(dry.contains("would remove wandb/"), "{dry}");
    assert!(
        dry.contains("the server has 15 of its 20 history rows"),
        "{dry}"
    );
    assert!(
        dry.contains("standin/gc/unsynced is not on the server"),
        "{dry}"
    );
    assert!(dry.contains("would free"), "{dry}");
    for dir in [&complete, &short, &unsynced] {
        assert!(dir.exists(), "a dry run removes nothing");
    }

    let fresh = text(&wandb_core(&work, &standin, &["gc", "wandb"]));
    assert!(fresh.contains("less than --older-than"), "{fresh}");
    assert!(complete.exists(), "written within the hour: kept");

    let done = text(&wandb_core(
        &work,
        &standin,
        &["gc", "wandb", "--older-than", "0s"],
    ));
    assert!(!complete.exists(), "{done}");
    assert!(short.exists() && unsynced.exists(), "{done}");
    assert!(
        done.contains(&format!("freed {}", human(size))),
        "the bytes freed ({size}): {done}"
    );
    // No link left pointing at a removed run.
    let latest = work.join("wandb/latest-run");
    assert!(std::fs::read_link(&latest).is_err() || latest.exists());
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

#[test]
fn the_watcher_deletes_what_it_synced() {
    let standin = standin(KEY, &[]);
    let work = scratch_dir("gc-watch");
    let run = offline_run(&work, "watched");
    let said = work.join("watcher.log");
    let mut watcher = common::watcher(
        &work,
        &["--delete-synced".as_ref(), "wandb".as_ref()],
        &standin,
        KEY,
        &said,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while run.exists() {
        assert!(
            Instant::now() < deadline,
            "not removed: {}",
            std::fs::read_to_string(&said).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let key = RunKey::new("standin", "gc", "watched");
    assert_eq!(standin.store.line_count(&key, "wandb-history.jsonl"), 20);
    assert!(standin.store.run(&key).unwrap().complete);
    // SAFETY: signalling the watcher this test started.
    unsafe {
        libc::kill(watcher.id() as i32, libc::SIGTERM);
    }
    let status = common::raw::wait_exit(&mut watcher, Duration::from_secs(30));
    assert!(status.success());
    let said = std::fs::read_to_string(&said).unwrap();
    assert!(said.contains("the server has all of it"), "{said}");
}
