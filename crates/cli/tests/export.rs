//! `wandb-core export` on runs the real SDK logged offline (wandb 0.31.0
//! with W&B's own service): the files read back with pyarrow, Python's csv
//! and json, every row and column checked against what was logged
//! (`export/log_runs.py` logs and says what it logged, `export/check.py`
//! reads and compares); then damaged, torn and wrong input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use testkit::CommandExt as _;
use wandb_store::txlog::LogReader;

const LOG_RUNS_PY: &str = include_str!("export/log_runs.py");
const CHECK_PY: &str = include_str!("export/check.py");

/// Two runs logged once for all tests: the work directory (its `wandb/`
/// holds them) and `expected.json`.
struct Logged {
    work: PathBuf,
    expected: PathBuf,
    first_id: String,
}

fn logged() -> &'static Logged {
    static LOGGED: OnceLock<Logged> = OnceLock::new();
    LOGGED.get_or_init(|| {
        let work = testkit::scratch_dir("export-runs");
        std::fs::create_dir_all(&work).unwrap();
        let script = work.join("log_runs.py");
        std::fs::write(&script, LOG_RUNS_PY).unwrap();
        let expected = work.join("expected.json");
        let out = Command::new(testkit::reference_python())
            .arg(&script)
            .arg(&expected)
            .current_dir(&work)
            .env_remove("WANDB_SERVICE")
            .env("WANDB_MODE", "offline")
            .env("WANDB_DIR", &work)
            .env("WANDB_SILENT", "true")
            .env("WANDB_DISABLE_GIT", "true")
            .env("WANDB_CONFIG_DIR", work.join("config"))
            .env("WANDB_CACHE_DIR", work.join("cache"))
            .env("WANDB_DATA_DIR", work.join("data"))
            .env("HOME", &work)
            .output_limited()
            .unwrap();
        assert!(out.status.success(), "log_runs.py: {}", text(&out));
        // Python's json, with NaN: wandb's dialect reads it.
        let manifest =
            wandb_proto::json::Value::parse(&std::fs::read_to_string(&expected).unwrap()).unwrap();
        let wandb_proto::json::Value::Array(runs) = manifest.get("runs").unwrap() else {
            panic!("runs is a list")
        };
        let first_id = runs[0]
            .get("id")
            .and_then(|id| id.as_str())
            .unwrap()
            .to_string();
        Logged {
            work,
            expected,
            first_id,
        }
    })
}

/// The run directory of the run with this ID.
fn run_dir(wandb: &Path, id: &str) -> PathBuf {
    std::fs::read_dir(wandb)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with(&format!("-{id}"))
        })
        .unwrap_or_else(|| panic!("no run directory for {id} in {}", wandb.display()))
}

/// The tools environment's Python, which has pyarrow (`scripts/setup-reference`).
fn tools_python() -> PathBuf {
    let python = testkit::workspace_root().join(".venv-tools/bin/python");
    let out = Command::new(&python)
        .args(["-c", "import pyarrow; print(pyarrow.__version__)"])
        .output_limited();
    match out {
        Ok(out) if out.status.success() => python,
        other => panic!(
            "the export tests read Parquet with pyarrow from {}: run scripts/setup-reference ({other:?})",
            python.display()
        ),
    }
}

fn export(args: &[&std::ffi::OsStr], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wandb-core"))
        .arg("export")
        .args(args)
        .current_dir(cwd)
        .output_limited()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The row count `export` printed for the history (`FILE: N rows × …`).
fn rows_printed(out: &Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap_or_default();
    line.split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row count in {line:?}"))
}

#[test]
fn parquet_csv_and_jsonl_hold_every_logged_value() {
    let logged = logged();
    let python = tools_python();
    let out_dir = testkit::scratch_dir("export-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let wandb = logged.work.join("wandb");
    for name in ["h.parquet", "h.csv", "h.jsonl"] {
        let out = export(
            &[
                wandb.as_os_str(),
                "--out".as_ref(),
                out_dir.join(name).as_os_str(),
            ],
            &out_dir,
        );
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert_eq!(rows_printed(&out), 91, "{}", text(&out));
    }
    // One run, by its directory, with the default name in the current
    // directory and the format given.
    let run = run_dir(&wandb, &logged.first_id);
    let out = export(
        &[run.as_os_str(), "--format".as_ref(), "parquet".as_ref()],
        &out_dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    std::fs::rename(
        out_dir.join(format!("{}.parquet", logged.first_id)),
        out_dir.join("one.parquet"),
    )
    .unwrap();
    assert!(
        out_dir
            .join(format!("{}.runs.parquet", logged.first_id))
            .exists()
    );

    let script = out_dir.join("check.py");
    std::fs::write(&script, CHECK_PY).unwrap();
    let out = Command::new(&python)
        .arg(&script)
        .arg(&logged.expected)
        .arg(&out_dir)
        .output_limited()
        .unwrap();
    assert!(
        out.status.success(),
        "check.py found mismatches:\n{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok: 91 rows"),
        "{}",
        text(&out)
    );
}

#[test]
fn refuses_to_overwrite_without_force() {
    let logged = logged();
    let dir = testkit::scratch_dir("export-force");
    std::fs::create_dir_all(&dir).unwrap();
    let wandb = logged.work.join("wandb");
    let out = export(
        &[wandb.as_os_str(), "--format".as_ref(), "csv".as_ref()],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    let first = std::fs::read(dir.join("history.csv")).unwrap();
    assert!(dir.join("history.runs.csv").exists());

    let out = export(
        &[wandb.as_os_str(), "--format".as_ref(), "csv".as_ref()],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("history.csv exists (--force overwrites it)"),
        "{stderr}"
    );

    let out = export(
        &[
            wandb.as_os_str(),
            "--format".as_ref(),
            "csv".as_ref(),
            "--force".as_ref(),
        ],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(dir.join("history.csv")).unwrap(), first);
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["history.csv", "history.runs.csv"],
        "no temporary files left"
    );
}

/// A byte flipped inside a record: the rows before it are exported, the
/// user is told, and the exit status is 3. A log cut inside its last
/// record (a crash) exports all before it, with a note and status 0.
#[test]
fn damaged_and_torn_logs() {
    let logged = logged();
    let dir = testkit::scratch_dir("export-damage");
    std::fs::create_dir_all(&dir).unwrap();
    let run = run_dir(&logged.work.join("wandb"), &logged.first_id);
    let log = run.join(format!("run-{}.wandb", logged.first_id));
    let bytes = std::fs::read(&log).unwrap();

    // Where the 40th record starts: every history row before it survives.
    let mut reader = LogReader::open(&log).unwrap();
    let mut buf = Vec::new();
    let mut rows_before = 0u64;
    let mut offset = 0;
    for i in 0..40 {
        let pos = reader.next_into(&mut buf).unwrap().unwrap();
        offset = pos.offset;
        let is_row = wandb_proto::view::HistoryView::from_record(&buf)
            .unwrap()
            .is_some();
        if is_row && i < 39 {
            rows_before += 1;
        }
    }
    assert!(rows_before > 0);
    let mut damaged = bytes.clone();
    damaged[offset as usize + 12] ^= 0x5a;
    let damaged_log = dir.join(format!("run-{}.wandb", logged.first_id));
    std::fs::write(&damaged_log, &damaged).unwrap();
    let out = export(&[damaged_log.as_os_str()], &dir);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("damaged (corrupt chunk at byte")
            && stderr.contains(&format!(
                "exported the {rows_before} rows before the damage"
            )),
        "{stderr}"
    );
    assert_eq!(rows_printed(&out), rows_before);
    assert!(dir.join(format!("{}.parquet", logged.first_id)).exists());

    let torn_log = dir.join("run-torn.wandb");
    std::fs::write(&torn_log, &bytes[..bytes.len() - 5]).unwrap();
    let out = export(
        &[torn_log.as_os_str(), "-o".as_ref(), "torn.jsonl".as_ref()],
        &dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("note:") && stderr.contains("incomplete record"),
        "{stderr}"
    );
    assert_eq!(
        rows_printed(&out),
        66,
        "only the last record (no row) was cut"
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = testkit::scratch_dir("export-bad");
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("notes.wandb"), "not a log at all").unwrap();
    for (input, message) in [
        ("missing.wandb", "missing.wandb: no such file or directory"),
        ("empty", "empty: no run found (give a run-<id>.wandb file"),
        (
            "notes.wandb",
            "notes.wandb: not a readable wandb transaction log: bad transaction log header: not a wandb transaction log",
        ),
    ] {
        let out = export(&[input.as_ref()], &dir);
        assert_eq!(out.status.code(), Some(1), "{input}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{input}: {stderr}");
    }
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["empty", "notes.wandb"], "nothing written");
}
