//! Test support: the reference implementation as an oracle.
//!
//! Compatibility tests compare us with what W&B's own software does, so they
//! need the real `wandb==0.31.0` Python package (which ships W&B's Go
//! `wandb-core`). It is found at `$WANDB_REF_PYTHON`, else at
//! `<workspace>/.venv-ref/bin/python` (made by `scripts/setup-reference`).
//! Without it these tests fail with instructions; they are never skipped.
//!
//! Reference runs are generated once per content of `python/scenarios.py`
//! and cached under the target directory, because several test binaries (and
//! nextest processes) use them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

pub mod process;
pub mod pty;
pub use process::{CommandExt, finished_within, within};

/// The wandb version whose wire format and service we reproduce.
pub const WANDB_VERSION: &str = "0.31.0";

const SCENARIOS_PY: &str = include_str!("../python/scenarios.py");
const DESCRIPTORS_PY: &str = include_str!("../python/descriptors.py");

/// The workspace root (where `Cargo.lock` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// The Cargo target directory of the running test binary
/// (`<target>/<profile>/deps/<test>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The profile directory of the running test binary (`<target>/<profile>`),
/// where the workspace's binaries are.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(2)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// A Python interpreter with `wandb==0.31.0`, checked once.
pub fn reference_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let python = std::env::var_os("WANDB_REF_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".venv-ref/bin/python"));
        check_wandb(&python);
        python
    })
}

/// A second environment with `wandb==0.31.0` whose `bin/wandb-core` the
/// tests replace with ours (`wandb-core install`), so the unmodified SDK
/// launches our service itself: `$WANDB_OURS_PYTHON`, else
/// `<workspace>/.venv-ours/bin/python` (made by `scripts/setup-reference`).
pub fn ours_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let python = std::env::var_os("WANDB_OURS_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".venv-ours/bin/python"));
        check_wandb(&python);
        python
    })
}

fn check_wandb(python: &Path) {
    let out = Command::new(python)
        .args(["-c", "import wandb; print(wandb.__version__)"])
        .output_limited();
    match out {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(
                version,
                WANDB_VERSION,
                "{} has wandb {version}; the compatibility tests need wandb=={WANDB_VERSION}",
                python.display()
            );
        }
        other => panic!(
            "compatibility tests need a Python with wandb=={WANDB_VERSION}: run scripts/setup-reference \
             (or set WANDB_REF_PYTHON / WANDB_OURS_PYTHON). Tried {}: {other:?}",
            python.display()
        ),
    }
}

/// Runs `scenarios.py` (see its docstring) with the given arguments after
/// the output directory; returns the parsed manifest (or `None` for
/// `--phase run`).
pub fn run_scenarios(out: &Path, args: &[&str]) -> Option<serde_json::Value> {
    run_scenarios_with(out, args, &[])
}

/// [`run_scenarios`] with extra environment for the driver and the
/// scripts it runs.
pub fn run_scenarios_with(
    out: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Option<serde_json::Value> {
    // One stable copy per script version: tracebacks in the runs' output
    // name it, and both phases of a run must agree.
    let dir = target_dir()
        .join("testkit")
        .join(format!("scenarios-{:016x}", fnv1a(SCENARIOS_PY.as_bytes())));
    let script = dir.join("scenarios.py");
    if fs::read_to_string(&script).ok().as_deref() != Some(SCENARIOS_PY) {
        let tmp = write_script(
            &dir,
            &format!("scenarios.py.{}", std::process::id()),
            SCENARIOS_PY,
        );
        fs::rename(tmp, &script).expect("put scenarios.py in place");
    }
    let output = Command::new(reference_python())
        .arg(&script)
        .arg(out)
        .args(args)
        .envs(env.iter().copied())
        .output_limited()
        .expect("run scenarios.py");
    assert!(
        output.status.success(),
        "scenarios.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = out.join("manifest.json");
    manifest.exists().then(|| {
        serde_json::from_str(&fs::read_to_string(manifest).expect("read manifest"))
            .expect("parse manifest")
    })
}

/// The reference's description of every scenario run (`manifest.json` as
/// `scenarios.py` writes it), generated with [`reference_runs`].
pub fn reference_manifest() -> serde_json::Value {
    let _ = reference_runs();
    let path = target_dir()
        .join("reference-runs")
        .join(runs_key())
        .join("manifest.json");
    serde_json::from_str(&fs::read_to_string(path).expect("read manifest")).expect("parse manifest")
}

/// A fresh scratch directory under the target directory.
pub fn scratch_dir(what: &str) -> PathBuf {
    tempdir(what)
}

/// Writes `script` to a file named `name` in `dir` and returns its path.
fn write_script(dir: &Path, name: &str, script: &str) -> PathBuf {
    fs::create_dir_all(dir).expect("create script dir");
    let path = dir.join(name);
    fs::write(&path, script).expect("write script");
    path
}

/// The encoded `FileDescriptorSet` of every wandb proto file in the
/// installed reference package.
pub fn installed_descriptor_set() -> Vec<u8> {
    let dir = tempdir("descriptors");
    let script = write_script(&dir, "descriptors.py", DESCRIPTORS_PY);
    let out_file = dir.join("wandb.fds");
    let status = Command::new(reference_python())
        .arg(&script)
        .arg(&out_file)
        .status_limited()
        .expect("run descriptors.py");
    assert!(status.success(), "descriptors.py failed");
    let bytes = fs::read(&out_file).expect("descriptor set written");
    let _ = fs::remove_dir_all(&dir);
    bytes
}

fn tempdir(what: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = target_dir()
        .join("testkit")
        .join(format!("{what}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Counts of chunk kinds in a log, as the independent reader saw them.
#[derive(Debug, Clone, Deserialize)]
pub struct ChunkCounts {
    pub full: u64,
    pub first: u64,
    pub middle: u64,
    pub last: u64,
}

/// One `.wandb` file written by W&B's wandb-core, with what an independent
/// Python reader (zlib CRC, the package's protobuf classes) found in it.
#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceRun {
    pub scenario: String,
    pub path: PathBuf,
    pub size: u64,
    pub records: u64,
    /// Records per `record_type` case name.
    pub counts: BTreeMap<String, u64>,
    pub chunks: ChunkCounts,
    pub nums_consecutive: bool,
}

#[derive(Deserialize)]
struct Manifest {
    wandb_version: String,
    runs: Vec<ReferenceRun>,
}

/// FNV-1a, to key the cache by the scenario script's content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Transaction logs written by the reference service for every scenario of
/// `python/scenarios.py` (basic, step/commit, records larger than a block,
/// thousands of rows, console, crash without finish, two runs).
pub fn reference_runs() -> &'static [ReferenceRun] {
    static RUNS: OnceLock<Vec<ReferenceRun>> = OnceLock::new();
    RUNS.get_or_init(|| {
        let key = runs_key();
        let root = target_dir().join("reference-runs");
        let done = root.join(key);
        let manifest = done.join("manifest.json");
        if !manifest.exists() {
            generate(&root, key);
        }
        let text = fs::read_to_string(&manifest).expect("read manifest");
        let manifest: Manifest = serde_json::from_str(&text).expect("parse manifest");
        assert_eq!(manifest.wandb_version, WANDB_VERSION);
        assert!(!manifest.runs.is_empty());
        let mut runs = manifest.runs;
        for run in &mut runs {
            run.path = done.join(&run.path);
        }
        runs
    })
}

/// The cache key of the reference runs: the scenarios, and the installed
/// packages, which the runs record (their requirements.txt).
fn runs_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut keyed = SCENARIOS_PY.as_bytes().to_vec();
        keyed.extend(installed_packages(reference_python()).into_bytes());
        format!("{:016x}", fnv1a(&keyed))
    })
}

/// The distributions installed beside `python` (its venv's
/// `*.dist-info` names, sorted).
fn installed_packages(python: &Path) -> String {
    let venv = python.parent().and_then(Path::parent);
    let mut names: Vec<String> = venv
        .and_then(|v| fs::read_dir(v.join("lib")).ok())
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|py| {
            fs::read_dir(py.path().join("site-packages"))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dist-info"))
        .collect();
    names.sort();
    names.join("\n")
}

/// Runs the scenarios into a scratch directory and renames it into place,
/// with a lock file so that concurrent test processes generate only once.
fn generate(root: &Path, key: &str) {
    fs::create_dir_all(root).expect("create cache root");
    let done = root.join(key);
    let lock = root.join(format!("{key}.lock"));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => break,
            Err(_) if done.join("manifest.json").exists() => return,
            Err(_) => {
                let stale = fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .map(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(600))
                    .unwrap_or(true);
                if stale {
                    let _ = fs::remove_file(&lock);
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {}",
                    lock.display()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let result = std::panic::catch_unwind(|| {
        if done.join("manifest.json").exists() {
            return;
        }
        let scratch = root.join(format!("{key}.tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        let script = write_script(&scratch, "scenarios.py", SCENARIOS_PY);
        let out = Command::new(reference_python())
            .arg(&script)
            .arg(scratch.join("out"))
            .output_limited()
            .expect("run scenarios.py");
        assert!(
            out.status.success(),
            "reference scenarios failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = fs::remove_dir_all(&done);
        fs::rename(scratch.join("out"), &done).expect("move runs into place");
        let _ = fs::remove_dir_all(&scratch);
    });
    let _ = fs::remove_file(&lock);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// W&B's own `wandb-core` binary from the reference environment.
pub fn reference_core() -> &'static Path {
    static CORE: OnceLock<PathBuf> = OnceLock::new();
    CORE.get_or_init(|| {
        let out = Command::new(reference_python())
            .args(["-c", "import wandb.util as u; print(u.get_core_path())"])
            .output_limited()
            .expect("run the reference python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// The artifacts scenario (`python/artifacts.py`), shared by the stand-in's
/// proof against W&B's service and the comparison of ours with it.
pub const ARTIFACTS_SCRIPT: &str = include_str!("../python/artifacts.py");
