//! Helpers shared by the integration tests: our binary, installed into the
//! `.venv-ours` wandb package; a backend stand-in; command output.

#![allow(dead_code)] // each test file uses some of these

pub mod proxy;
pub mod raw;
pub mod scenarios;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::CommandExt as _;
use wandb_standin::{Config, Inject, StandIn, Store};

/// The `wandb-core` binary under test.
pub fn ours() -> &'static str {
    env!("CARGO_BIN_EXE_wandb-core")
}

/// Puts the binary under test into the `.venv-ours` wandb package, once;
/// returns that environment's python.
pub fn install_ours() -> &'static Path {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let python = testkit::ours_python();
        let out = Command::new(ours())
            .args(["install", "--python"])
            .arg(python)
            .output_limited()
            .unwrap();
        assert!(
            out.status.success(),
            "install: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        python.to_path_buf()
    })
}

/// A backend stand-in on loopback that takes `key`, serving the given
/// failures (`op:status[:times[:retry_after]]`).
/// A stand-in reporting the server features `WANDB_STANDIN_FEATURES` names
/// (`all`, the default, as the W&B cloud; `none`; or a list): the online
/// suite runs both ways (`scripts/test`).
pub fn standin(key: &str, inject: &[&str]) -> StandIn {
    StandIn::spawn(standin_config(key, inject), 0, Store::open(None).unwrap()).unwrap()
}

/// The configuration [`standin`] starts a stand-in with.
pub fn standin_config(key: &str, inject: &[&str]) -> Config {
    let spec = std::env::var("WANDB_STANDIN_FEATURES").unwrap_or_else(|_| "all".into());
    Config {
        api_key: Some(key.into()),
        features: wandb_standin::features(&spec),
        inject: inject
            .iter()
            .map(|i| i.parse::<Inject>().unwrap())
            .collect(),
        ..Default::default()
    }
}

/// A command's stdout and stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `python -c <script>` in `work`, isolated from the user's wandb setup
/// (no shared service, no error reporting, home and run directory in
/// `work`).
pub fn python_script(python: &Path, script: &str, work: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.args(["-c", script])
        .current_dir(work)
        .env_remove("WANDB_SERVICE")
        .env("WANDB_ERROR_REPORTING", "false")
        .env("HOME", work)
        .env("WANDB_DIR", work)
        .env("WANDB_CONFIG_DIR", work.join(".config"));
    cmd
}

/// `v` without the keys `volatile` names, numbers as floats: wandb-core
/// re-formats values (`1.0` → `1`), we keep the SDK's text; the values
/// must be the same, not their spelling.
pub fn stable(v: &Value, volatile: &dyn Fn(&str) -> bool) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !volatile(k))
                .map(|(k, v)| (k.clone(), stable(v, volatile)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|x| stable(x, volatile)).collect()),
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| v.clone(), Value::Number),
        other => other.clone(),
    }
}

/// Our service, started by the test with its own pid as `--pid`, killed
/// when dropped.
pub struct OurService {
    pub child: raw::ServiceChild,
    /// Its `WANDB_SERVICE` token.
    pub token: String,
}

pub fn start_service(scratch: &Path) -> OurService {
    let port_file = scratch.join("port.txt");
    let mut service = OurService {
        child: raw::ServiceChild(
            Command::new(ours())
                .arg("--port-filename")
                .arg(&port_file)
                .arg("--pid")
                .arg(std::process::id().to_string())
                .spawn()
                .unwrap(),
        ),
        token: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Ok(Some(pf)) = wandb_proto::token::PortFile::parse(&text)
        {
            service.token = wandb_proto::token::ServiceToken {
                parent_pid: std::process::id(),
                addr: wandb_proto::token::ServiceAddr::Unix(pf.unix.unwrap()),
            }
            .to_string();
            return service;
        }
        assert!(Instant::now() < deadline, "the service wrote no port file");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The transaction log (`*.wandb`) in a run directory.
pub fn log_in(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "wandb"))
        .expect("a .wandb log")
}

/// Every record of a transaction log, decoded.
pub fn records(log: &Path) -> Vec<wandb_proto::pb::Record> {
    use prost::Message;
    let mut reader = wandb_store::txlog::reader::LogReader::open(log).unwrap();
    let mut out = Vec::new();
    while let Some((_, bytes)) = reader.next_record().unwrap() {
        out.push(wandb_proto::pb::Record::decode(bytes.as_slice()).unwrap());
    }
    out
}

/// `wandb-core sync --watch` with `args` (paths last), uploading to
/// `standin` with `key`, from `cwd`; what it says is appended to `log`.
/// Killed and reaped when dropped.
pub fn watcher(
    cwd: &Path,
    args: &[&std::ffi::OsStr],
    standin: &StandIn,
    key: &str,
    log: &Path,
) -> raw::ServiceChild {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    raw::ServiceChild(
        Command::new(ours())
            .args(["sync", "--watch", "--poll", "300ms"])
            .args(args)
            .current_dir(cwd)
            .env("WANDB_BASE_URL", &standin.base_url)
            .env("WANDB_API_KEY", key)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    )
}

/// Every entry under `dir` that is not a directory (files and links),
/// without following links (`latest-run`).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(walk(&entry.path()));
        } else {
            found.push(entry.path());
        }
    }
    found
}

/// `python -c script args…` run online in `work` against `base_url` with
/// `key`, as a user's training script: its own service, no git, its files
/// and config under `work`.
pub fn online_script(
    python: &Path,
    script: &str,
    args: &[&str],
    work: &Path,
    base_url: &str,
    key: &str,
) -> Command {
    let mut cmd = Command::new(python);
    cmd.args(["-c", script])
        .args(args)
        .current_dir(work)
        .env_remove("WANDB_SERVICE")
        .env("WANDB_BASE_URL", base_url)
        .env("WANDB_API_KEY", key)
        .env("WANDB_MODE", "online")
        .env("WANDB_ERROR_REPORTING", "false")
        .env("WANDB_DISABLE_GIT", "true")
        .env("HOME", work)
        .env("WANDB_DIR", work)
        .env("WANDB_CONFIG_DIR", work.join(".config"));
    cmd
}
