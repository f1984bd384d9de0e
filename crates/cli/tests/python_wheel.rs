//! The Python wheel (`pyproject.toml`, `python/wandb_core_rs`) as a user
//! gets it: built by maturin, installed with wandb into a fresh venv,
//! switched on and off, surviving an upgrade of wandb, and leaving wandb's
//! files as they were when uninstalled. Then the offline scenarios through
//! older wandb releases, each compared with that release's own wandb-core:
//! the wheel's switch (`WANDB_CORE_RS=0/1`) picks the service, so one venv
//! per release serves both runs.
//!
//! The wheel comes from `$WANDB_CORE_RS_WHEEL` (scripts/test builds it
//! before the tests, sharing their build) or is built here with maturin
//! (`.venv-tools`, made by scripts/setup-reference) into a target
//! directory of its own, so the binary the other tests run is not relinked
//! under them.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use common::scenarios::compare;
use common::walk;
use testkit::CommandExt as _;
use testkit::{run_scenarios_with, scratch_dir, target_dir, workspace_root};

/// pip installs from the package registry (or its cache): a fresh venv
/// with wandb and its dependencies takes a minute on a slow machine.
const PIP_LIMIT: Duration = Duration::from_secs(600);

/// The releases the matrix runs besides 0.31.0 (which sdk_dropin.rs runs
/// on every test run): the last 0.22 (autumn 2025, the oldest line the
/// wheel accepts: its service launch flags are today's) and 0.26.1 (spring
/// 2026, `--detached` services). `WANDB_MATRIX_VERSIONS` overrides.
const MATRIX: &[&str] = &["0.22.3", "0.26.1"];

fn wheel() -> &'static Path {
    static WHEEL: OnceLock<PathBuf> = OnceLock::new();
    WHEEL.get_or_init(|| {
        if let Some(path) = std::env::var_os("WANDB_CORE_RS_WHEEL") {
            // Relative to the workspace, as scripts/test names it.
            let path = workspace_root().join(path);
            assert!(path.is_file(), "WANDB_CORE_RS_WHEEL={}", path.display());
            return path;
        }
        let maturin = std::env::var_os("MATURIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".venv-tools/bin/maturin"));
        let out_dir = scratch_dir("wheels");
        let out = Command::new(&maturin)
            .current_dir(workspace_root())
            .args(["build", "--profile", "dev", "--out"])
            .arg(&out_dir)
            .env("CARGO_TARGET_DIR", target_dir().join("wheel-build"))
            .output_within(Duration::from_secs(1200))
            .unwrap_or_else(|e| {
                panic!(
                    "run {} (scripts/setup-reference installs it): {e}",
                    maturin.display()
                )
            });
        assert_ok("maturin build", &out);
        fs::read_dir(&out_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .expect("maturin wrote a wheel")
    })
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh venv at `dir` with `packages` (pip requirement strings).
fn venv(dir: &Path, packages: &[&str]) -> PathBuf {
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .output_limited()
        .unwrap();
    assert_ok("python3 -m venv", &out);
    let python = dir.join("bin/python");
    pip(&python, &[&["install"], packages].concat());
    python
}

fn pip(python: &Path, args: &[&str]) {
    let out = Command::new(python)
        .args(["-m", "pip", "--disable-pip-version-check", "--quiet"])
        .args(args)
        .output_within(PIP_LIMIT)
        .unwrap();
    assert_ok(&format!("pip {args:?}"), &out);
}

fn python(python: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(python)
        .args(args)
        .env_remove("WANDB_SERVICE")
        .env_remove("WANDB_CORE_RS")
        .envs(env.iter().copied())
        .output_limited()
        .unwrap()
}

/// Runs a small offline script in `work`; returns its debug-core.log (the
/// service's own log, which the SDK links into the run directory) and the
/// wandb version that ran.
fn offline_run(py: &Path, work: &Path, env: &[(&str, &str)]) -> (String, String) {
    let _ = fs::remove_dir_all(work);
    fs::create_dir_all(work).unwrap();
    let script = "import wandb\n\
        run = wandb.init(project='wheel', mode='offline')\n\
        for i in range(10): run.log({'x': i})\n\
        run.finish()\n\
        print(wandb.__version__)\n";
    let out = Command::new(py)
        .current_dir(work)
        .args(["-c", script])
        .env_remove("WANDB_SERVICE")
        .env_remove("WANDB_CORE_RS")
        .envs(env.iter().copied())
        .env("WANDB_DIR", work)
        .output_limited()
        .unwrap();
    assert_ok("the offline script", &out);
    let logs: Vec<PathBuf> = walk(work)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "debug-core.log"))
        .collect();
    assert_eq!(logs.len(), 1, "one run's debug-core.log: {logs:?}");
    let log = fs::read_to_string(&logs[0]).unwrap();
    let version = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    (log, version)
}

fn ours_in(log: &str) -> bool {
    log.contains("wandb-core-rs starting")
}

/// Every file of the installed wandb distribution (its RECORD) with its
/// contents' hash: what "wandb exactly as it was" means.
fn wandb_files(py: &Path) -> BTreeMap<String, String> {
    let probe = "import hashlib, importlib.metadata as m\n\
        d = m.distribution('wandb')\n\
        for f in d.files:\n\
        \x20   p = d.locate_file(f)\n\
        \x20   h = hashlib.sha256(open(p, 'rb').read()).hexdigest() if p.is_file() else '-'\n\
        \x20   print(f'{f}\\t{h}')\n";
    let out = python(py, &["-c", probe], &[]);
    assert_ok("hash wandb's files", &out);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // Byte code the interpreter writes as it imports is not wandb's.
        .filter(|l| !l.contains("__pycache__"))
        .filter_map(|l| l.split_once('\t'))
        .map(|(f, h)| (f.to_string(), h.to_string()))
        .collect()
}

#[test]
fn the_wheel_switches_wandb_and_survives_its_upgrade_and_uninstall() {
    let wheel = wheel().to_str().unwrap().to_string();
    let dir = scratch_dir("wheel-venv");
    let py = venv(&dir.join("venv"), &["wandb==0.26.1", &wheel]);
    let work = dir.join("work");
    let before = wandb_files(&py);

    // Installed but not switched on: W&B's service.
    let (log, version) = offline_run(&py, &work, &[]);
    assert_eq!(version, "0.26.1");
    assert!(!ours_in(&log), "not switched on yet, yet ours ran:\n{log}");

    let on = python(&py, &["-m", "wandb_core_rs", "enable"], &[]);
    assert_ok("enable", &on);
    let said = String::from_utf8_lossy(&on.stdout);
    assert!(
        said.contains("(wandb-core-rs)") && said.contains("wandb 0.26.1 launches"),
        "enable says what wandb launches now: {said}"
    );
    let (log, _) = offline_run(&py, &work, &[]);
    assert!(ours_in(&log), "switched on, yet W&B's ran:\n{log}");
    // One process may still ask for W&B's.
    let (log, _) = offline_run(&py, &work, &[("WANDB_CORE_RS", "0")]);
    assert!(!ours_in(&log), "WANDB_CORE_RS=0, yet ours ran:\n{log}");
    assert_eq!(wandb_files(&py), before, "enable left wandb's files alone");

    // `pip install -U wandb` replaces every file of wandb's: ours stays.
    pip(&py, &["install", "-U", "wandb==0.31.0"]);
    let upgraded = wandb_files(&py);
    let (log, version) = offline_run(&py, &work, &[]);
    assert_eq!(version, "0.31.0");
    assert!(ours_in(&log), "after upgrading wandb, W&B's ran:\n{log}");
    // `wandb leet` (W&B's terminal UI, run as `wandb-core leet …`) still
    // works: ours hands it to W&B's binary. `inspect --json` prints the
    // run; the same with W&B's service chosen outright.
    let leet = |switch: &str| {
        let out = Command::new(dir.join("venv/bin/wandb"))
            .current_dir(&work)
            .args(["leet", "inspect", "--json"])
            .arg(work.join("wandb"))
            .env_remove("WANDB_SERVICE")
            .env("WANDB_CORE_RS", switch)
            .output_limited()
            .unwrap();
        assert_ok(
            &format!("wandb leet inspect (WANDB_CORE_RS={switch})"),
            &out,
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let through_ours = leet("1");
    assert!(
        through_ours.contains("\"x\""),
        "leet shows the run: {through_ours}"
    );
    assert_eq!(through_ours, leet("0"));

    let status = python(&py, &["-m", "wandb_core_rs", "status"], &[]);
    assert_ok("status", &status);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("is enabled"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // Switched off: W&B's again, without uninstalling.
    assert_ok(
        "disable",
        &python(&py, &["-m", "wandb_core_rs", "disable"], &[]),
    );
    let (log, _) = offline_run(&py, &work, &[]);
    assert!(!ours_in(&log), "switched off, yet ours ran:\n{log}");
    assert_ok(
        "enable",
        &python(&py, &["-m", "wandb_core_rs", "enable"], &[]),
    );

    // Uninstalled while switched on: W&B's, with wandb's files untouched
    // and nothing of ours left on the start-up path.
    pip(&py, &["uninstall", "-y", "wandb-core-rs"]);
    let (log, _) = offline_run(&py, &work, &[]);
    assert!(!ours_in(&log), "uninstalled, yet ours ran:\n{log}");
    assert_eq!(wandb_files(&py), upgraded, "wandb exactly as it was");
    let site = python(
        &py,
        &[
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        &[],
    );
    let site = PathBuf::from(String::from_utf8(site.stdout).unwrap().trim());
    assert!(!site.join("wandb_core_rs.pth").exists());
    assert!(!site.join("wandb_core_rs").exists());
    assert!(!dir.join("venv/bin/wandb-core").exists());
    let _ = fs::remove_dir_all(&dir);
}

/// A venv with wandb `version`, the scenarios' packages and the wheel,
/// reused across test runs (only the wheel is reinstalled).
fn matrix_venv(version: &str) -> PathBuf {
    let dir = target_dir()
        .join("python-wheel")
        .join(format!("wandb-{version}"));
    let py = dir.join("bin/python");
    let probe =
        format!("import wandb, numpy, PIL, sys; sys.exit(wandb.__version__ != '{version}')");
    let ready = py.exists() && python(&py, &["-c", &probe], &[]).status.success();
    if !ready {
        let _ = fs::remove_dir_all(&dir);
        venv(&dir, &[&format!("wandb=={version}"), "numpy", "pillow"]);
    }
    pip(
        &py,
        &[
            "install",
            "--force-reinstall",
            "--no-deps",
            wheel().to_str().unwrap(),
        ],
    );
    py
}

/// W&B's service before 0.27 writes no `files/output.log` offline (the
/// console lines are only in the log's output records); ours writes it for
/// every release, as 0.31's does, which `wandb sync` and people reading the
/// run directory want. Where theirs has none, ours is not compared: the
/// console itself is (sdk_dropin.rs compares ours with 0.31's file).
fn older_cores_write_no_output_log(theirs: &serde_json::Value, ours: &mut serde_json::Value) {
    let theirs = theirs["runs"].as_array().unwrap();
    for (t, m) in theirs.iter().zip(ours["runs"].as_array_mut().unwrap()) {
        if t["output_log"].is_null() && t["scenario"] == m["scenario"] {
            m["output_log"] = serde_json::Value::Null;
        }
    }
}

#[test]
fn older_sdk_releases_get_their_own_services_results_from_ours() {
    let versions: Vec<String> = match std::env::var("WANDB_MATRIX_VERSIONS") {
        Ok(v) => v.split_whitespace().map(String::from).collect(),
        Err(_) => MATRIX.iter().map(|v| v.to_string()).collect(),
    };
    let mut problems = Vec::new();
    for version in &versions {
        let py = matrix_venv(version);
        let run = |switch: &str| {
            let out = scratch_dir(&format!("matrix-{version}-{switch}"));
            run_scenarios_with(
                &out,
                &["--python", py.to_str().unwrap()],
                &[("WANDB_CORE_RS", switch)],
            )
            .unwrap()
        };
        let theirs = run("0");
        let mut ours = run("1");
        older_cores_write_no_output_log(&theirs, &mut ours);
        for r in theirs["runs"].as_array().unwrap() {
            assert!(
                !r["header_producer"]
                    .as_str()
                    .unwrap()
                    .contains("wandb-core-rs"),
                "wandb {version} with WANDB_CORE_RS=0 ran ours: {r}"
            );
        }
        problems.extend(
            compare(&theirs, &ours, &[])
                .into_iter()
                .map(|p| format!("wandb {version}: {p}")),
        );
    }
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
