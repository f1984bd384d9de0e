//! A cluster's login node uploading runs written on compute nodes:
//!
//! - the lag from `run.log` on the "compute node" (an offline run of the
//!   real SDK, a row every 100 ms carrying `time.time()`) to the row on the
//!   stand-in, through ours (`wandb-core sync --watch`, the run written by
//!   our service) beside W&B's (`wandb beta sync --live` on the run
//!   directory, the run written by its wandb-core);
//! - what watching costs ours: the watcher's CPU and peak RSS over a
//!   minute with 1,000 synced runs to scan past and 100 live ones to
//!   follow (W&B has no watcher to compare: its live sync takes named
//!   runs, one process each).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use prost::Message as _;
use wandb_proto::pb;
use wandb_standin::RunKey;
use wandb_store::txlog::{FlushPolicy, LogWriter};

use crate::Bench;
use crate::process::{Service, proc_status_kib};
use crate::report::{self, Series};

const KEY: &str = "watch-bench-key-0123456789abcdef0123456789abcdef012345";

const NODE: &str = r#"
import os, time, wandb
run = wandb.init(project="lag", id=os.environ["BENCH_ID"], settings=wandb.Settings(x_disable_stats=True))
for i in range(int(os.environ["BENCH_ROWS"])):
    run.log({"t": time.time(), "i": i})
    time.sleep(0.1)
run.finish()
"#;

/// Kills what it holds when dropped (a measurement that fails midway
/// leaves nothing running).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Lags (s) of every row of one run, ours or theirs.
fn lag(
    b: &Bench,
    side: &str,
    binary: &Path,
    rows: u64,
    interval: Option<&str>,
) -> anyhow::Result<Series> {
    let standin = crate::standin::fresh(KEY, Duration::ZERO)?;
    let dir = b.scratch.join(format!("watch-lag-{side}"));
    let _ = std::fs::remove_dir_all(&dir);
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared)?;
    let service = Service::start(binary, &dir, &[], &[], None)?;
    let id = format!("lag-{side}");
    let ours = side == "ours";
    // Ours watches the whole shared directory from the start.
    let mut uploader = if ours {
        Some(Reaped(
            Command::new(b.binaries[0].1)
                .args(["sync", "--watch", "--discover", "poll", "--poll", "1s"])
                .arg(&shared)
                .envs(interval.map(|i| ("WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL", i)))
                .env("WANDB_BASE_URL", &standin.base_url)
                .env("WANDB_API_KEY", KEY)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        ))
    } else {
        None
    };
    let node = Reaped(
        Command::new(&b.args.python)
            .args(["-c", NODE])
            .current_dir(&shared)
            .env("WANDB_SERVICE", service.token())
            .env("WANDB_MODE", "offline")
            .env("WANDB_DIR", &shared)
            .env("WANDB_SILENT", "true")
            .env("HOME", &dir)
            .env("BENCH_ID", &id)
            .env("BENCH_ROWS", rows.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("node.log"))?)
            .spawn()?,
    );
    if !ours {
        // W&B's live sync takes a run that exists: wait for its directory.
        let t0 = Instant::now();
        let run_dir = loop {
            if let Some(d) = std::fs::read_dir(shared.join("wandb"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(&id))
            {
                break d;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("{side}: the node wrote no run directory");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let wandb = b.args.python.parent().unwrap().join("wandb");
        uploader = Some(Reaped(
            Command::new(wandb)
                .args(["beta", "sync", "--live"])
                .arg(&run_dir)
                .current_dir(&dir)
                .envs(interval.map(|i| ("WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL", i)))
                .env("WANDB_BASE_URL", &standin.base_url)
                .env("WANDB_API_KEY", KEY)
                .env("HOME", &dir)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("uploader.log"))?)
                .spawn()?,
        ));
    }
    let key = RunKey::new("standin", "lag", &id);
    let mut lags = Series::default();
    let mut seen = 0usize;
    let deadline = Instant::now() + Duration::from_secs(rows / 10 + 120);
    while seen < rows as usize {
        if Instant::now() > deadline {
            bail!("{side}: {seen} of {rows} rows reached the stand-in");
        }
        let lines = standin.store.lines(&key, "wandb-history.jsonl");
        let now = report::unix_now();
        for (_, line) in lines.iter().skip(seen) {
            let row: serde_json::Value = serde_json::from_str(line)?;
            if let Some(t) = row["t"].as_f64() {
                lags.push(now - t);
            }
        }
        seen = seen.max(lines.len());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(node);
    drop(uploader);
    drop(service);
    Ok(lags)
}

/// A log with a run record and nothing else: a run just started.
fn live_log(dir: &Path, id: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("files"))?;
    let log = dir.join(format!("run-{id}.wandb"));
    let mut w = LogWriter::create(&log, FlushPolicy::default())?;
    let record = pb::Record {
        record_type: Some(pb::record::RecordType::Run(pb::RunRecord {
            run_id: id.into(),
            project: "watch".into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    w.append(&record.encode_to_vec())?;
    w.close()?;
    Ok(log)
}

/// The watcher's CPU seconds so far (user + system, from /proc).
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

struct Cost {
    cpu_per_min: f64,
    peak_rss_mib: f64,
}

fn watch_cost(
    b: &Bench,
    discover: &str,
    synced: usize,
    live: usize,
    window: Duration,
) -> anyhow::Result<Cost> {
    let standin = crate::standin::fresh(KEY, Duration::ZERO)?;
    let shared = b.scratch.join("watch-cost");
    let _ = std::fs::remove_dir_all(&shared);
    for i in 0..synced {
        let dir = shared.join(format!("job{}/wandb/offline-run-x-done{i}", i % 50));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("run-done{i}.wandb")), b"")?;
        std::fs::write(dir.join(format!("run-done{i}.wandb.synced")), b"")?;
    }
    let mut logs = Vec::new();
    for i in 0..live {
        let dir = shared.join(format!("live/wandb/offline-run-x-live{i}"));
        logs.push(live_log(&dir, &format!("live{i}"))?);
    }
    let beat = |logs: &[PathBuf]| {
        for log in logs {
            let mut hb = log.as_os_str().to_owned();
            hb.push(".heartbeat");
            let _ = std::fs::write(PathBuf::from(hb), b"{}");
        }
    };
    beat(&logs);
    let watcher = Reaped(
        Command::new(b.binaries[0].1)
            .args(["sync", "--watch", "--discover", discover])
            .arg(&shared)
            .env("WANDB_BASE_URL", &standin.base_url)
            .env("WANDB_API_KEY", KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let pid = watcher.0.id();
    // Every live run on the server first: then the steady state.
    let t0 = Instant::now();
    while standin.store.runs().len() < live {
        if t0.elapsed() > Duration::from_secs(300) {
            bail!(
                "{} of {live} live runs reached the stand-in",
                standin.store.runs().len()
            );
        }
        beat(&logs);
        std::thread::sleep(Duration::from_millis(500));
    }
    let (cpu0, start) = (cpu_s(pid), Instant::now());
    let mut peak = 0;
    while start.elapsed() < window {
        beat(&logs);
        peak = peak.max(proc_status_kib(pid, "VmHWM:"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu = cpu_s(pid) - cpu0;
    drop(watcher);
    Ok(Cost {
        cpu_per_min: cpu * 60.0 / start.elapsed().as_secs_f64(),
        peak_rss_mib: peak as f64 / 1024.0,
    })
}

pub fn report(b: &Bench) -> anyhow::Result<()> {
    let rows: u64 = if b.args.quick { 30 } else { 300 };
    let mut md = report::heading("sync --watch: a login node uploading a compute node's runs");
    let _ = writeln!(
        md,
        "- a compute node (the real SDK, offline) logs a row every 100 ms carrying `time.time()`, \
         {rows} rows; the lag is the time from that to the row on the stand-in (loopback, no \
         added latency), sampled every 20 ms\n\
         - ours: the run written by our service, uploaded by `wandb-core sync --watch --discover poll --poll 1s` \
         (started before the run); theirs: written by W&B's wandb-core, uploaded by \
         `wandb beta sync --live <run dir>` (0.31.0, which needs the run to exist)\n"
    );
    for (title, interval) in [
        ("the file stream's default interval (15 s)", None),
        (
            "a 1 s file stream interval (`WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL=1`)",
            Some("1"),
        ),
    ] {
        let ours = lag(b, "ours", b.binaries[0].1, rows, interval).context("ours")?;
        let theirs = lag(b, "theirs", b.binaries[1].1, rows, interval).context("theirs")?;
        let _ = writeln!(md, "\nWith {title}:\n");
        let _ = writeln!(md, "| lag, s | ours | theirs | ours/theirs |");
        let _ = writeln!(md, "|---|---|---|---|");
        for (label, p) in [("median", 0.5), ("p95", 0.95), ("max", 1.0)] {
            let (o, t) = (ours.percentile(p), theirs.percentile(p));
            let _ = writeln!(md, "| {label} | {o:.2} | {t:.2} | {:.2} |", o / t);
        }
    }
    let (synced, live) = if b.args.quick { (100, 10) } else { (1000, 100) };
    let window = Duration::from_secs(if b.args.quick { 5 } else { 60 });
    let _ = writeln!(
        md,
        "\nWhat watching costs ours (W&B has no watcher: its live sync takes named runs, a \
         process each), over {}s of steady state: new runs found by scanning the paths every \
         2 s (`--discover poll`, as on NFS) or through inotify (`--discover inotify`, the \
         default on local filesystems: the directories above the runs watched, a full scan \
         every minute); each live run's log polled every 200 ms and its heartbeat checked, its \
         file stream open.\n\n\
         | runs watched | discovery | CPU-seconds per minute | peak RSS, MiB |\n|---|---|---|---|",
        window.as_secs()
    );
    for (synced, live) in [(synced, 0), (synced, live)] {
        for discover in ["poll", "inotify"] {
            let cost = watch_cost(b, discover, synced, live, window)?;
            let _ = writeln!(
                md,
                "| {synced} synced, {live} live | {discover} | {:.2} | {:.1} |",
                cost.cpu_per_min, cost.peak_rss_mib
            );
        }
    }
    let _ = writeln!(md, "\n{}", report::machine());
    report::save(b, "watch.md", &md)
}
