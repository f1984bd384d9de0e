//! The real Python SDK (wandb 0.31.0, unmodified) on our service, both ways
//! it finds a service: launching it itself (our binary installed in place
//! of the package's `bin/wandb-core`) and through `WANDB_SERVICE`. Every
//! scenario of testkit's `scenarios.py` is compared with the same script
//! run through W&B's own wandb-core: the same kinds of records, equal
//! history rows, final summary, config, console output and exit codes.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{install_ours, ours, stable};
use serde_json::Value;
use testkit::CommandExt as _;
use testkit::{reference_manifest, reference_python, run_scenarios, scratch_dir};

/// Keys whose values differ between any two runs of the same script.
fn volatile(key: &str) -> bool {
    key == "_runtime"
        || key == "_timestamp"
        || key.starts_with("_wandb")
        || key.ends_with("artifact_path")
}

fn runs_of<'a>(manifest: &'a Value, scenario: &str) -> Vec<&'a Value> {
    manifest["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["scenario"] == scenario)
        .collect()
}

/// Compares our runs of every scenario with the reference's; returns the
/// differences found.
fn compare(reference: &Value, ours: &Value, exit_codes_from_teardown: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let scenarios: Vec<String> = {
        let mut s: Vec<String> = reference["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["scenario"].as_str().unwrap().to_string())
            .collect();
        s.dedup();
        s
    };
    for scenario in &scenarios {
        let (theirs, mine) = (runs_of(reference, scenario), runs_of(ours, scenario));
        if theirs.len() != mine.len() {
            problems.push(format!(
                "{scenario}: {} runs, reference {}",
                mine.len(),
                theirs.len()
            ));
            continue;
        }
        for (i, (t, m)) in theirs.iter().zip(&mine).enumerate() {
            let at = format!("{scenario}[{i}]");
            let mut check = |what: &str, a: Value, b: Value| {
                if a != b {
                    problems.push(format!(
                        "{at}: {what} differs\n  reference: {a}\n  ours:      {b}"
                    ));
                }
            };
            // Whether a short run gets a stats sample depends on timing (the
            // monitor is compared in tests/system_metrics.rs).
            let kinds = |r: &Value| {
                let mut k: Vec<String> = r["counts"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| *k != "stats")
                    .cloned()
                    .collect();
                k.sort();
                Value::from(k)
            };
            check("record kinds", kinds(t), kinds(m));
            let rows = |r: &Value| {
                Value::from(
                    r["history"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| stable(v, &volatile))
                        .collect::<Vec<_>>(),
                )
            };
            check("history rows", rows(t), rows(m));
            check(
                "final summary",
                stable(&t["summary"], &volatile),
                stable(&m["summary"], &volatile),
            );
            check(
                "config",
                stable(&t["config"], &volatile),
                stable(&m["config"], &volatile),
            );
            check(
                "output.log",
                t["output_log"].clone(),
                m["output_log"].clone(),
            );
            check(
                "requirements.txt",
                t["requirements"].clone(),
                m["requirements"].clone(),
            );
            check("script exit code", t["rc"].clone(), m["rc"].clone());
            // W&B's service writes no config.yaml offline; ours does, and
            // PyYAML must read back exactly the config.
            if let Some(yaml) = m["config_yaml"].as_object() {
                for (key, value) in m["config"].as_object().unwrap() {
                    let read = match key.strip_prefix("_wandb.") {
                        Some(inner) => &yaml["_wandb"]["value"][inner],
                        None if volatile(key) => continue,
                        None => &yaml[key.as_str()]["value"],
                    };
                    check(
                        &format!("config.yaml read back, {key}"),
                        value.clone(),
                        read.clone(),
                    );
                }
            }
            if exit_codes_from_teardown.contains(&scenario.as_str()) {
                check(
                    "exit records",
                    Value::from(1),
                    Value::from(m["exit_codes"].as_array().unwrap().len()),
                );
            } else {
                check(
                    "exit codes",
                    t["exit_codes"].clone(),
                    m["exit_codes"].clone(),
                );
            }
            check(
                "nums 1..N",
                Value::from(true),
                m["nums_consecutive"].clone(),
            );
            if !m["header_producer"]
                .as_str()
                .unwrap()
                .contains("wandb-core-rs")
            {
                problems.push(format!("{at}: the log was not written by wandb-core-rs"));
            }
        }
    }
    problems
}

#[test]
fn the_sdk_launches_our_service_and_gets_the_reference_results() {
    let python = install_ours();
    let out = scratch_dir("owned");
    let manifest = run_scenarios(&out, &["--python", python.to_str().unwrap()]).unwrap();
    let problems = compare(&reference_manifest(), &manifest, &[]);
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_sdk_attaches_through_wandb_service_and_gets_the_reference_results() {
    // A shared service, as users start one.
    let started = Command::new(ours())
        .args(["start", "--idle-timeout", "0"])
        .env_remove("WANDB_SERVICE")
        .output_limited()
        .unwrap();
    assert!(
        started.status.success(),
        "start: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let token = String::from_utf8(started.stdout)
        .unwrap()
        .trim()
        .to_string();
    let socket = PathBuf::from(token.split_once("-unix-").expect("a unix token").1);
    assert!(socket.exists());

    let out = scratch_dir("env");
    let python = reference_python().to_str().unwrap();
    run_scenarios(
        &out,
        &["--python", python, "--service", &token, "--phase", "run"],
    );

    // Runs the SDK did not finish (crash, exception, no finish()) are
    // finished by the teardown that `stop` sends; `stop` returns once the
    // service has removed its socket, after every log is closed.
    let stop = Command::new(ours())
        .args(["stop", &token])
        .output_limited()
        .unwrap();
    assert!(
        stop.status.success(),
        "stop: {}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert!(!socket.exists(), "the socket is removed on exit");

    let manifest = run_scenarios(&out, &["--phase", "read"]).unwrap();
    // Without an owning SDK nobody sends the script's exit code: those runs
    // get `stop`'s exit code (0).
    let problems = compare(&reference_manifest(), &manifest, &["crash", "exception"]);
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
    for run in runs_of(&manifest, "crash")
        .into_iter()
        .chain(runs_of(&manifest, "exception"))
    {
        assert_eq!(run["exit_codes"], serde_json::json!([0]));
    }
}

#[test]
fn uninstall_restores_the_original_binary() {
    // On a throwaway copy of a package layout, not the shared venv.
    let dir = scratch_dir("install");
    let pkg = dir.join("wandb");
    std::fs::create_dir_all(pkg.join("bin")).unwrap();
    std::fs::write(pkg.join("__init__.py"), "__version__ = '0.31.0'\n").unwrap();
    std::fs::write(pkg.join("bin/wandb-core"), "original").unwrap();
    let python = reference_python();
    let run = |cmd: &str| {
        Command::new(ours())
            .args([cmd, "--python"])
            .arg(python)
            .env("PYTHONPATH", &dir)
            .output_limited()
            .unwrap()
    };
    let out = run("install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(pkg.join("bin/wandb-core")).unwrap(),
        std::fs::read(ours()).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(pkg.join("bin/wandb-core.orig")).unwrap(),
        "original"
    );
    // Installing again keeps the original, not our copy, as the backup.
    assert!(run("install").status.success());
    assert_eq!(
        std::fs::read_to_string(pkg.join("bin/wandb-core.orig")).unwrap(),
        "original"
    );
    assert!(run("uninstall").status.success());
    assert_eq!(
        std::fs::read_to_string(pkg.join("bin/wandb-core")).unwrap(),
        "original"
    );
    assert!(!pkg.join("bin/wandb-core.orig").exists());
    let again = run("uninstall");
    assert!(
        !again.status.success(),
        "uninstall without install is an error"
    );

    std::fs::write(pkg.join("__init__.py"), "__version__ = '0.20.0'\n").unwrap();
    let old = run("install");
    assert!(!old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("not supported"));
}

/// What one offline run left in its logs: where `logs/debug-core.log`
/// points, and whether it and `logs/debug-internal.log` hold DEBUG lines.
struct Logs {
    core_log: PathBuf,
    core_debug: bool,
    internal_debug: bool,
}

fn offline_run_logs(python: &std::path::Path, work: &std::path::Path, debug: bool) -> Logs {
    let script =
        "import wandb\nr = wandb.init(mode='offline', project='p')\nr.log({'a': 1})\nr.finish()\n";
    let mut cmd = common::python_script(python, script, work);
    cmd.env("WANDB_CACHE_DIR", work.join("cache"))
        .env_remove("WANDB_DEBUG")
        .env_remove("WANDB_CORE_DEBUG");
    if debug {
        cmd.env("WANDB_DEBUG", "true");
    }
    let out = cmd.output_limited().unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    let run_dir = std::fs::read_dir(work.join("wandb"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("offline-run-")
        })
        .expect("an offline run directory");
    let link = run_dir.join("logs/debug-core.log");
    let core_log = std::fs::read_link(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    let has_debug = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("\"level\":\"DEBUG\""))
    };
    Logs {
        core_debug: has_debug(&core_log),
        internal_debug: has_debug(&run_dir.join("logs/debug-internal.log")),
        core_log,
    }
}

#[test]
fn debug_logging_as_the_sdk_asks_for_it() {
    // WANDB_DEBUG makes the SDK start its service with `--log-level -4`.
    for debug in [false, true] {
        for (who, python) in [("reference", reference_python()), ("ours", install_ours())] {
            let work = scratch_dir(&format!("debuglog-{who}-{debug}"));
            let logs = offline_run_logs(python, &work, debug);
            let dir = work.join("cache/wandb/logs");
            assert_eq!(
                logs.core_log.parent(),
                Some(dir.as_path()),
                "{who}: the process log is in <WANDB_CACHE_DIR>/wandb/logs"
            );
            let name = logs.core_log.file_name().unwrap().to_string_lossy();
            assert!(
                name.starts_with("core-debug-") && name.ends_with(".log"),
                "{who}: {name}"
            );
            assert_eq!(
                logs.core_debug, debug,
                "{who}: DEBUG lines in the process log"
            );
            assert_eq!(
                logs.internal_debug, debug,
                "{who}: DEBUG lines in debug-internal.log"
            );
        }
    }
}
