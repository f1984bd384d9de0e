//! `wandb-core leet inspect` against W&B's own binary: the same arguments
//! on the same logs must print the same thing.
//!
//! Logs come from the real SDK with W&B's service (a run with every kind
//! of value, console output and progress bars, a table and an image; a
//! run killed mid-write; every reference scenario), then damaged copies of
//! them. For each, `--json` must match W&B's byte for byte, the text dump
//! up to the runs of spaces Go's text printer varies on purpose,
//! `--summary` and `--summary --json` exactly (but for how long ago the
//! log was written, which depends on when each binary looks), and stderr
//! and exit codes too. `--follow` runs both binaries on a log the test is
//! still writing. The last test goes through the real wandb CLI.
//!
//! Every process runs under a deadline and is killed past it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use prost::Message as _;
use testkit::CommandExt as _;
use wandb_proto::pb;
use wandb_store::txlog::{FlushPolicy, LogWriter};

/// Longest one inspect (or one SDK script) may take.
const LIMIT: Duration = Duration::from_secs(180);

/// The modes compared, as arguments.
const MODES: [&[&str]; 4] = [&["--json"], &[], &["--summary"], &["--summary", "--json"]];

/// An environment both binaries see alike: a scratch home (W&B's LEET
/// keeps a debug log beside its config), a time zone away from UTC (the
/// summary prints local times).
fn isolate(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("TZ", "America/New_York")
        .env_remove("WANDB_SERVICE");
}

fn inspect(binary: &Path, home: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(binary);
    cmd.args(["leet", "inspect", "--no-observability"])
        .args(args);
    isolate(&mut cmd, home);
    cmd.output_within(LIMIT).expect("run leet inspect")
}

fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wandb-core"))
}

fn theirs() -> PathBuf {
    testkit::reference_core().to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs of spaces as one, no-break spaces as spaces: Go's protobuf
/// library puts one or two spaces after a colon in the text format, and a
/// space or a no-break space after `proto:` in its errors (chosen per
/// build, so that no one parses them); ours always writes one space.
fn squeeze(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last_space = false;
    for c in s.chars() {
        let c = if c == '\u{a0}' { ' ' } else { c };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
    }
    out
}

/// "(last write 3s ago)" depends on when each binary looked.
fn timeless(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("last write ") {
        out.push_str(&rest[..i + "last write ".len()]);
        rest = &rest[i + "last write ".len()..];
        let end = rest.find(" ago").unwrap_or(0);
        out.push('…');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Both binaries on one log, every mode: the same output, stderr and exit
/// code. Returns W&B's `--summary` text (for further checks).
fn assert_same(what: &str, home: &Path, args: &[&str]) -> String {
    let mut summary = String::new();
    for mode in MODES {
        let all: Vec<&str> = mode.iter().chain(args).copied().collect();
        let w = inspect(&theirs(), home, &all);
        let o = inspect(&ours(), home, &all);
        let label = format!("{what}: leet inspect {}", all.join(" "));
        assert_eq!(
            o.status.code(),
            w.status.code(),
            "{label}: exit code\n--- W&B ---\n{}\n--- ours ---\n{}",
            text(&w.stderr),
            text(&o.stderr)
        );
        let (wo, oo) = (text(&w.stdout), text(&o.stdout));
        match mode {
            [] => {
                let (wo, oo) = (squeeze(&wo), squeeze(&oo));
                if wo != oo {
                    let line = wo
                        .lines()
                        .zip(oo.lines())
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                    panic!(
                        "{label}: text differs from line {}\n--- W&B ---\n{}\n--- ours ---\n{}",
                        line + 1,
                        wo.lines()
                            .skip(line.saturating_sub(3))
                            .take(8)
                            .collect::<Vec<_>>()
                            .join("\n"),
                        oo.lines()
                            .skip(line.saturating_sub(3))
                            .take(8)
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
                }
            }
            ["--summary"] => {
                assert_eq!(timeless(&oo), timeless(&wo), "{label}");
                summary = wo;
            }
            _ => {
                if wo != oo {
                    let line = wo
                        .lines()
                        .zip(oo.lines())
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                    panic!(
                        "{label}: differs at line {}\nW&B:  {}\nours: {}",
                        line + 1,
                        wo.lines().nth(line).unwrap_or("(end)"),
                        oo.lines().nth(line).unwrap_or("(end)")
                    );
                }
            }
        }
        if w.status.success() {
            assert_eq!(
                squeeze(&text(&o.stderr)),
                squeeze(&text(&w.stderr)),
                "{label}: stderr"
            );
        } else {
            // Both say why; ours also names the file.
            assert!(o.stdout.is_empty(), "{label}: {}", text(&o.stdout));
            assert!(!o.stderr.is_empty(), "{label}: no reason given");
        }
    }
    summary
}

/// A script run offline by the reference SDK (W&B's service) in `work`;
/// returns its exit code.
fn reference_sdk(work: &Path, script: &str) -> i32 {
    let out = common::python_script(testkit::reference_python(), script, work)
        .env("WANDB_MODE", "offline")
        .output_within(LIMIT)
        .expect("run the reference SDK");
    out.status.code().unwrap_or(-1)
}

/// The one run directory's log in `work/wandb`.
fn only_log(work: &Path) -> PathBuf {
    let wandb = work.join("wandb");
    let run = fs::read_dir(&wandb)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("run-"))
        })
        .expect("a run directory");
    common::log_in(&run)
}

/// Everything a run can put in its log that `inspect` shows differently:
/// nested config with None and big integers, tags, multi-line notes,
/// metrics with NaN/±inf/strings/nested dicts, a table, an image, a
/// histogram, summary updates and a deletion, an artifact, an alert,
/// stdout, stderr, carriage-return progress bars, unicode.
const RICH: &str = r#"
import sys, wandb, numpy as np
run = wandb.init(project="leet-inspect", name="rich", notes="notes\nline 2", tags=["x", "y"],
                 config={"lr": 1e-4, "opt": {"name": "adam", "betas": [0.9, 0.999]}, "none": None,
                         "big": 2**62, "s": "<&>"})
run.define_metric("loss", summary="min")
print("starting", flush=True)
print("warning: to stderr", file=sys.stderr, flush=True)
for i in range(5):
    sys.stderr.write(f"\r{i*25:3d}%|{'#'*i:<4}|"); sys.stderr.flush()
sys.stderr.write("\n")
for step in range(10):
    run.log({"loss": 1.0/(step+1), "acc": step/10, "nested": {"a": step, "b": {"c": float("nan")}},
             "inf": float("inf"), "ninf": -float("inf"), "text": f"s{step}", "big": 2**53 + step,
             "tiny": 1e-9, "million": 1e6, "list": [1, 2.5, None, "x"]})
run.log({"table": wandb.Table(columns=["a", "b"], data=[[1, 2], [3, 4]])})
run.log({"image": wandb.Image(np.zeros((8, 8, 3), dtype=np.uint8), caption="zeros")})
run.log({"hist": wandb.Histogram([1, 2, 3, 4, 5])})
run.summary["final"] = {"score": 0.5, "ok": True}
run.summary.update({"best": 0.1})
del run.summary["acc"]
run.config.update({"late": {"k": 1}})
art = wandb.Artifact("ds", type="dataset", metadata={"rows": 3})
with art.new_file("a.txt") as f:
    f.write("hello")
run.log_artifact(art)
run.alert(title="done", text="rich run")
print("tqdm-like:", end=" ")
for i in range(3):
    print(f"\rbar {i}", end="", flush=True)
print()
print("unicode: é 漢字 😀 \x1b[32mgreen\x1b[0m")
run.finish()
"#;

/// A run whose process dies without finishing while its log is being
/// written (W&B's service writes whole blocks: the log ends in a torn
/// record).
const KILLED: &str = r#"
import os, sys, time, wandb
run = wandb.init(project="leet-inspect", config={"a": {"b": 1}})
for i in range(25):
    print(f"line {i}")
sys.stderr.write("oops\n")
for i in range(1500):
    run.log({"x": i, "pad": "y" * 20, "neg": -float("inf")})
sys.stdout.flush()
time.sleep(3)
os._exit(3)
"#;

fn set_modified(path: &Path, when: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .expect("set the log's modification time");
}

#[test]
fn sdk_logs_read_the_same_as_with_w_and_b() {
    let scratch = testkit::scratch_dir("leet-inspect-sdk");
    let home = scratch.join("home");
    fs::create_dir_all(&home).unwrap();

    let rich = scratch.join("rich");
    fs::create_dir_all(&rich).unwrap();
    assert_eq!(reference_sdk(&rich, RICH), 0);
    let wandb = rich.join("wandb");
    // Found through latest-run, as `wandb leet inspect` passes it.
    let summary = assert_same("rich run", &home, &[wandb.to_str().unwrap()]);
    for expected in [
        "state    finished (exit code 0)",
        "started  ",
        "  table        table-file media/table/",
        "  hist         histogram",
        "  [stderr] 100%|####|",
        "  bar 2like:",
        "opt.betas  [0.9,0.999]",
    ] {
        assert!(summary.contains(expected), "no {expected:?} in\n{summary}");
    }

    let killed = scratch.join("killed");
    fs::create_dir_all(&killed).unwrap();
    assert_eq!(reference_sdk(&killed, KILLED), 3);
    // W&B's service may still be going down: read a copy once the log
    // stops changing.
    let log = only_log(&killed);
    let mut size = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while size != fs::metadata(&log).ok().map(|m| m.len()) && Instant::now() < deadline {
        size = fs::metadata(&log).ok().map(|m| m.len());
        std::thread::sleep(Duration::from_secs(1));
    }
    let fresh = scratch.join("fresh.wandb");
    fs::copy(&log, &fresh).unwrap();
    // Just written: running; an hour later: crashed.
    set_modified(&fresh, SystemTime::now());
    let summary = assert_same(
        "killed run",
        &home,
        &["--run-file", fresh.to_str().unwrap(), "x"],
    );
    assert!(
        summary.contains("state    running (last write "),
        "{summary}"
    );
    let old = scratch.join("old.wandb");
    fs::copy(&log, &old).unwrap();
    set_modified(&old, SystemTime::now() - Duration::from_secs(3600));
    let summary = assert_same(
        "killed run, an hour ago",
        &home,
        &["--run-file", old.to_str().unwrap(), "x"],
    );
    assert!(
        summary.contains("state    crashed (no exit record, last write 1h0m"),
        "{summary}"
    );
}

#[test]
fn reference_scenario_logs_read_the_same() {
    let home = testkit::scratch_dir("leet-inspect-home");
    for run in testkit::reference_runs() {
        let path = run.path.to_str().unwrap();
        assert_same(&run.scenario, &home, &["--run-file", path, "unused"]);
    }
}

/// Bytes of a log with `edit` applied, as a new file in `dir`.
fn damaged(dir: &Path, name: &str, log: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = log.to_vec();
    edit(&mut bytes);
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn damaged_logs_read_the_same() {
    let scratch = testkit::scratch_dir("leet-inspect-damage");
    let home = scratch.join("home");
    fs::create_dir_all(&home).unwrap();
    // A log of several blocks (32 KiB each) from W&B's service.
    let run = testkit::reference_runs()
        .iter()
        .filter(|r| r.scenario != "large")
        .max_by_key(|r| r.size)
        .expect("reference runs");
    assert!(
        run.size > 3 * 32 * 1024,
        "{} is {} bytes",
        run.scenario,
        run.size
    );
    let log = fs::read(&run.path).unwrap();
    let block = 32 * 1024;
    let cases = [
        damaged(&scratch, "torn.wandb", &log, |b| b.truncate(b.len() - 10)),
        damaged(&scratch, "short-header.wandb", &log, |b| b.truncate(3)),
        damaged(&scratch, "header-only.wandb", &log, |b| b.truncate(7)),
        damaged(&scratch, "empty.wandb", &log, |b| b.clear()),
        // A flipped byte inside a chunk of the second block.
        damaged(&scratch, "bit-flip.wandb", &log, |b| {
            b[block + 5000] ^= 0x40
        }),
        // The first chunk header of the third block: a record continued
        // across blocks, or the next one's start.
        damaged(&scratch, "block-start.wandb", &log, |b| {
            b[2 * block + 1] ^= 0x01
        }),
        damaged(&scratch, "not-a-log.wandb", &log, |b| {
            *b = b"this is not a transaction log".to_vec();
        }),
        damaged(&scratch, "newer-version.wandb", &log, |b| b[6] = 1),
    ];
    for path in &cases {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_same(
            &name,
            &home,
            &["--run-file", path.to_str().unwrap(), "unused"],
        );
    }

    // Records that are not records: bytes that do not parse, a string
    // that is not UTF-8, and fields this schema does not know.
    let path = scratch.join("bad-records.wandb");
    let mut writer = LogWriter::create(&path, FlushPolicy::default()).unwrap();
    let history = pb::Record {
        num: 1,
        record_type: Some(pb::record::RecordType::History(pb::HistoryRecord {
            item: vec![pb::HistoryItem {
                key: "x".into(),
                value_json: "NaN".into(),
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    }
    .encode_to_vec();
    writer.append_raw(&history).unwrap();
    writer.append_raw(b"\x10\x01\xff\xff").unwrap();
    // run { run_id: "\xff\xfe" }
    writer.append_raw(b"\x8a\x01\x04\x0a\x02\xff\xfe").unwrap();
    // Unknown fields: fixed32, fixed64, bytes, a large varint, a group.
    writer
        .append_raw(&[
            0xe5, 0x12, 0xef, 0xbe, 0xad, 0xde, 0xe9, 0x12, 5, 0, 0, 0, 0, 0, 0, 0, 0xf2, 0x12, 4,
            b'a', 0, 0xff, b'b', 0xf8, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x01, 0x83, 0x19, 0x08, 0x01, 0x84, 0x19,
        ])
        .unwrap();
    writer.append_raw(&history).unwrap();
    writer.close().unwrap();
    assert_same(
        "bad records",
        &home,
        &["--run-file", path.to_str().unwrap(), "unused"],
    );
}

#[test]
fn errors_are_errors_for_both() {
    let scratch = testkit::scratch_dir("leet-inspect-errors");
    let home = scratch.join("home");
    let empty = scratch.join("empty");
    fs::create_dir_all(&empty).unwrap();
    fs::create_dir_all(&home).unwrap();
    let (empty, nowhere) = (empty.to_str().unwrap(), scratch.join("nowhere"));
    let missing = scratch.join("missing.wandb");
    for args in [
        vec![empty],
        vec![nowhere.to_str().unwrap()],
        vec!["--run-file", missing.to_str().unwrap(), empty],
        vec!["--summary", "--follow", empty],
    ] {
        let w = inspect(&theirs(), &home, &args);
        let o = inspect(&ours(), &home, &args);
        assert!(!w.status.success() && !o.status.success(), "{args:?}");
        assert!(o.stdout.is_empty() && w.stdout.is_empty(), "{args:?}");
        assert!(!o.stderr.is_empty(), "{args:?}: ours says nothing");
    }
    // Ours names the file it could not read.
    let not_a_log = scratch.join("not-a-log.wandb");
    fs::write(&not_a_log, b"hello world").unwrap();
    let o = inspect(
        &ours(),
        &home,
        &["--run-file", not_a_log.to_str().unwrap(), "x"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("not-a-log.wandb") && err.contains("invalid W&B identifier"),
        "{err}"
    );
}

fn row(step: i64) -> Vec<u8> {
    pb::Record {
        num: step + 2,
        record_type: Some(pb::record::RecordType::History(pb::HistoryRecord {
            item: vec![pb::HistoryItem {
                key: "loss".into(),
                value_json: format!("{}", 1.0 / (step as f64 + 1.0)),
                ..Default::default()
            }],
            step: Some(pb::HistoryStep { num: step }),
            ..Default::default()
        })),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Both binaries following `log` with `args`, on threads; each thread
/// returns the output and when the process ended.
fn follow_both(home: &Path, args: &[&str]) -> Vec<std::thread::JoinHandle<(Output, Instant)>> {
    [ours(), theirs()]
        .into_iter()
        .map(|binary| {
            let home = home.to_path_buf();
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = inspect(&binary, &home, &args);
                (out, Instant::now())
            })
        })
        .collect()
}

#[test]
fn follow_prints_records_as_they_are_written_until_idle_or_exit() {
    let scratch = testkit::scratch_dir("leet-inspect-follow");
    let home = scratch.join("home");
    fs::create_dir_all(&home).unwrap();

    // A run that stops writing: both print every record, the ones
    // written after they started too, then end on the idle timeout.
    let path = scratch.join("run-idle.wandb");
    let mut writer = LogWriter::create(&path, FlushPolicy::default()).unwrap();
    let run = pb::Record {
        num: 1,
        record_type: Some(pb::record::RecordType::Run(pb::RunRecord {
            run_id: "idle".into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    writer.append_raw(&run.encode_to_vec()).unwrap();
    writer.append_raw(&row(0)).unwrap();
    writer.flush().unwrap();
    let args = [
        "--follow",
        "--json",
        "--idle-timeout",
        "3s",
        "--run-file",
        path.to_str().unwrap(),
        "x",
    ];
    let followers = follow_both(&home, &args);
    std::thread::sleep(Duration::from_millis(1500));
    for step in 1..5 {
        writer.append_raw(&row(step)).unwrap();
        writer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let last_write = Instant::now();
    writer.close().unwrap();
    let results: Vec<(Output, Instant)> =
        followers.into_iter().map(|t| t.join().unwrap()).collect();
    let (ours_out, ours_end) = &results[0];
    let (w_out, _) = &results[1];
    let printed = text(&ours_out.stdout);
    assert_eq!(printed.lines().count(), 6, "{printed}");
    assert!(
        printed
            .lines()
            .last()
            .unwrap()
            .contains("\"step\":{\"num\":4}"),
        "{printed}"
    );
    assert_eq!(printed, text(&w_out.stdout));
    for out in [ours_out, w_out] {
        assert!(out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.starts_with("wandb leet inspect: no writes for ")
                && err.ends_with("s; the run may have crashed\n"),
            "{err}"
        );
    }
    let waited = ours_end.duration_since(last_write);
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(10),
        "ended {waited:?} after the last write"
    );

    // A run that exits: both end at its exit record, long before the idle
    // timeout, and the text form says the same.
    let path = scratch.join("run-exits.wandb");
    let mut writer = LogWriter::create(&path, FlushPolicy::default()).unwrap();
    writer.append_raw(&run.encode_to_vec()).unwrap();
    writer.flush().unwrap();
    let args = [
        "--follow",
        "--idle-timeout",
        "60s",
        "--run-file",
        path.to_str().unwrap(),
        "x",
    ];
    let followers = follow_both(&home, &args);
    std::thread::sleep(Duration::from_millis(1500));
    for step in 0..3 {
        writer.append_raw(&row(step)).unwrap();
        writer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let exit = pb::Record {
        num: 5,
        record_type: Some(pb::record::RecordType::Exit(pb::RunExitRecord {
            exit_code: 0,
            runtime: 3,
            ..Default::default()
        })),
        ..Default::default()
    };
    writer.append_raw(&exit.encode_to_vec()).unwrap();
    writer.flush().unwrap();
    let exited = Instant::now();
    let results: Vec<(Output, Instant)> =
        followers.into_iter().map(|t| t.join().unwrap()).collect();
    let (ours_out, ours_end) = &results[0];
    let (w_out, _) = &results[1];
    assert!(ours_end.duration_since(exited) < Duration::from_secs(10));
    let printed = squeeze(&text(&ours_out.stdout));
    assert!(
        printed.contains("# record 5: exit\nnum: 5\nexit: {\n runtime: 3\n}\n"),
        "{printed}"
    );
    assert_eq!(printed, squeeze(&text(&w_out.stdout)));
    assert_eq!(text(&ours_out.stderr), text(&w_out.stderr));
    writer.close().unwrap();
}

/// `wandb leet inspect` through the real wandb CLI (0.31.0): with ours
/// installed in `.venv-ours` it prints what W&B's prints in `.venv-ref`.
#[test]
fn wandb_cli_runs_ours_for_leet_inspect() {
    let scratch = testkit::scratch_dir("leet-inspect-cli");
    let work = scratch.join("run");
    fs::create_dir_all(&work).unwrap();
    let script = r#"
import sys, wandb
run = wandb.init(project="leet-inspect", config={"a": 1, "nested": {"b": [1, 2]}}, tags=["cli"])
print("hello from the cli test")
for i in range(3):
    run.log({"loss": 1.0 / (i + 1), "nan": float("nan")})
run.finish()
"#;
    assert_eq!(reference_sdk(&work, script), 0);
    let wandb_dir = work.join("wandb");
    let ours_python = common::install_ours();
    let cli = |python: &Path, args: &[&str]| {
        let mut cmd = Command::new(python);
        cmd.args(["-m", "wandb", "leet", "inspect"])
            .args(args)
            .arg(&wandb_dir)
            .current_dir(&work)
            .env("WANDB_MODE", "offline")
            .env("WANDB_ERROR_REPORTING", "false")
            .env("WANDB_CONFIG_DIR", scratch.join("config"));
        isolate(&mut cmd, &scratch);
        cmd.output_within(LIMIT).expect("run the wandb CLI")
    };
    for args in [&["--summary", "--json"][..], &["--json"], &["--summary"]] {
        let o = cli(ours_python, args);
        let w = cli(testkit::reference_python(), args);
        assert!(o.status.success(), "{args:?}: {}", common::text(&o));
        assert!(w.status.success(), "{args:?}: {}", common::text(&w));
        assert_eq!(
            timeless(&text(&o.stdout)),
            timeless(&text(&w.stdout)),
            "wandb leet inspect {args:?}"
        );
    }
    let o = cli(ours_python, &["--summary", "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["state"], "finished");
    assert_eq!(summary["tags"], serde_json::json!(["cli"]));
    assert_eq!(summary["summary"]["nan"], "NaN");
    assert_eq!(summary["console"][0]["line"], "hello from the cli test");
}
