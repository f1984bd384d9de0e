//! Syncing offline runs to the backend stand-in: W&B's `wandb sync` through
//! our service and through W&B's, and `wandb-core sync`, on the same logs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use wandb::{Mode, Settings, Transport};
use wandb_standin::RunKey;

use crate::process::Service;

const KEY: &str = "bench-sync-key-0123456789012345678901234567890";

/// What one sync cost.
#[derive(Debug, Clone, Copy)]
pub struct SyncRun {
    pub wall_s: f64,
    /// CPU of the service (SDK path) or of `wandb-core sync`.
    pub cpu_s: f64,
}

/// `runs` offline runs of `rows` rows of 10 scalars under `root/wandb/`,
/// written with the Rust SDK (our service in-process); returns their IDs.
pub fn make_logs(root: &Path, runs: usize, rows: u64) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let keys: Vec<String> = (0..10).map(|k| format!("m{k}")).collect();
    for _ in 0..runs {
        let run = wandb::init(
            Settings::new()
                .mode(Mode::Offline)
                .dir(root)
                .project("bench-sync")
                .transport(Transport::InProcess)
                .disable_stats(true),
        )?;
        for i in 0..rows {
            run.log(
                keys.iter()
                    .enumerate()
                    .map(|(k, key)| (key.as_str(), i as f64 * 0.001 + k as f64)),
            )?;
        }
        ids.push(run.id().to_string());
        run.finish(0)?;
    }
    Ok(ids)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)?.flatten() {
        let (p, t) = (e.path(), to.join(e.file_name()));
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            copy_dir(&p, &t)?;
        } else {
            std::fs::copy(&p, &t)?;
        }
    }
    Ok(())
}

/// How a sync is run.
pub enum Via<'a> {
    /// `wandb sync` (the Python CLI) talking to this service binary.
    Sdk { python: &'a Path, service: &'a Path },
    /// `wandb-core sync`.
    Cli { binary: &'a Path },
}

pub fn run(
    via: Via<'_>,
    logs: &Path,
    scratch: &Path,
    ids: &[String],
    rows: u64,
) -> anyhow::Result<SyncRun> {
    // A fresh copy (sync writes markers) and a fresh stand-in each time.
    let _ = std::fs::remove_dir_all(scratch);
    copy_dir(&logs.join("wandb"), &scratch.join("wandb"))?;
    let standin = crate::standin::fresh(KEY, std::time::Duration::ZERO)?;
    let (wall_s, cpu_s) = match via {
        Via::Sdk { python, service } => {
            let svc = Service::start(service, scratch, &[], &[], None)?;
            let wandb = python.parent().context("python's bin/")?.join("wandb");
            let t0 = Instant::now();
            let out = Command::new(wandb)
                .arg("sync")
                .arg("wandb")
                .current_dir(scratch)
                .env("WANDB_SERVICE", svc.token())
                .env("WANDB_BASE_URL", &standin.base_url)
                .env("WANDB_API_KEY", KEY)
                .env("WANDB_ERROR_REPORTING", "false")
                .env("HOME", scratch)
                .env("WANDB_CONFIG_DIR", scratch.join(".config"))
                .stdin(Stdio::null())
                .output()?;
            let wall = t0.elapsed().as_secs_f64();
            if !out.status.success() {
                bail!("wandb sync: {}", String::from_utf8_lossy(&out.stderr));
            }
            let (usage, _) = svc.teardown()?;
            (wall, usage.cpu_s)
        }
        Via::Cli { binary } => {
            let t0 = Instant::now();
            let child = Command::new(binary)
                .args(["sync", "-j", "5", "wandb"])
                .current_dir(scratch)
                .env("WANDB_BASE_URL", &standin.base_url)
                .env("WANDB_API_KEY", KEY)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let pid = child.id() as libc::pid_t;
            let mut status = 0;
            // SAFETY: an all-zero rusage is valid to be overwritten.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: waits for our own child with valid out-pointers.
            if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
                bail!("wait4: {}", std::io::Error::last_os_error());
            }
            let wall = t0.elapsed().as_secs_f64();
            if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                bail!("wandb-core sync failed (status {status})");
            }
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            (wall, secs(usage.ru_utime) + secs(usage.ru_stime))
        }
    };
    for id in ids {
        let key = RunKey::new("standin", "bench-sync", id);
        let n = standin.store.line_count(&key, "wandb-history.jsonl");
        if n != rows as i64 {
            bail!("run {id}: {n} history rows on the stand-in, want {rows}");
        }
        if !standin.store.run(&key).is_some_and(|r| r.complete) {
            bail!("run {id} not complete on the stand-in");
        }
    }
    Ok(SyncRun { wall_s, cpu_s })
}

/// Where a workload's logs live.
pub fn logs_dir(scratch: &Path, name: &str) -> PathBuf {
    scratch.join(format!("sync-logs-{name}"))
}
