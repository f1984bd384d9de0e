//! The real Python SDK (wandb 0.31.0, unmodified) on our service, both ways
//! it finds a service: launching it itself (our binary installed in place
//! of the package's `bin/wandb-core`) and through `WANDB_SERVICE`. Every
//! scenario of testkit's `scenarios.py` is compared with the same script
//! run through W&B's own wandb-core: the same kinds of records, equal
//! history rows, final summary, config, console output and exit codes.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::scenarios::{compare, runs_of};
use common::{install_ours, ours};
use testkit::CommandExt as _;
use testkit::{reference_manifest, reference_python, run_scenarios, scratch_dir};

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
