//! Syncing offline runs to the backend stand-in: W&B's `wandb sync` through
//! our service and through W&B's, and `wandb-core sync`, on the same logs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use wandb::{Mode, Settings, Transport};
use wandb_standin::RunKey;

use crate::Bench;
use crate::process::Service;
use crate::report;
use std::fmt::Write as _;

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

/// Syncing offline runs: ours (through `wandb sync` and `wandb-core sync`)
/// beside W&B's `wandb sync`, on the same logs, one run each.
pub fn report(bench: &Bench) -> anyhow::Result<()> {
    let workloads: [(&str, usize, u64); 2] = if bench.args.quick {
        [("one run", 1, 10_000), ("several runs", 3, 2_000)]
    } else {
        [("one run", 1, 1_000_000), ("several runs", 20, 50_000)]
    };
    let mut md = report::heading("Syncing offline runs, wandb-core-rs beside wandb-core 0.31.0");
    let _ = writeln!(
        md,
        "- offline runs of 10-scalar rows (written by the Rust SDK), synced to a fresh backend stand-in \
         (in the bench process) each time; every run checked complete with all its rows; \
         parallelism 5 (the `wandb sync` default); wall time of the sync command; \
         CPU of the service (SDK path) or of `wandb-core sync`; one run per figure\n"
    );
    let _ = writeln!(
        md,
        "| workload | W&B `wandb sync` → wandb-core (s) | `wandb sync` → ours (s) | `wandb-core sync` (s) | ours/theirs (SDK path) | ours/theirs (wandb-core sync) | service CPU theirs / ours / wandb-core sync (s) |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, runs, rows) in workloads {
        let logs = logs_dir(bench.scratch, &name.replace(' ', "-"));
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs)?;
        eprintln!("sync, {name}: writing {runs} × {rows} rows…");
        let ids = make_logs(&logs, runs, rows)?;
        let target = bench.scratch.join("sync-target");
        let sync_via = |label: &str, via: Via| {
            eprintln!("sync, {name}: {label}…");
            run(via, &logs, &target, &ids, rows)
        };
        let sdk = |service| Via::Sdk {
            python: &bench.args.python,
            service,
        };
        let theirs = sync_via("W&B's", sdk(bench.binaries[1].1))?;
        let ours_sdk = sync_via("ours through wandb sync", sdk(bench.binaries[0].1))?;
        let ours_cli = sync_via(
            "wandb-core sync",
            Via::Cli {
                binary: bench.binaries[0].1,
            },
        )?;
        let _ = std::fs::remove_dir_all(&target);
        // BENCH_KEEP_LOGS=1 keeps the logs, to sync them again by hand.
        if std::env::var_os("BENCH_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&logs);
        }
        let _ = writeln!(
            md,
            "| {name}: {runs} × {rows} rows | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {:.2} / {:.2} / {:.2} |",
            theirs.wall_s,
            ours_sdk.wall_s,
            ours_cli.wall_s,
            ours_sdk.wall_s / theirs.wall_s,
            ours_cli.wall_s / theirs.wall_s,
            theirs.cpu_s,
            ours_sdk.cpu_s,
            ours_cli.cpu_s,
        );
    }
    std::fs::write(bench.out_dir.join("sync.md"), &md)?;
    print!("{md}");
    Ok(())
}
