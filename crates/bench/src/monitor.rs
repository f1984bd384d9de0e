//! What system monitoring costs: the same idle offline run (the SDK
//! attached through `WANDB_SERVICE`, sleeping) with stats sampled every
//! `interval` and with `x_disable_stats`; the difference in CPU time of the
//! service and everything it started (wandb-core runs a sidecar,
//! `wandb-symon`), divided by the samples written, is the cost of a sample;
//! the difference in their peak resident memory, the monitor's memory.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use prost::Message;
use wandb_proto::pb;
use wandb_store::txlog::LogReader;

use crate::Bench;
use crate::process::Service;
use crate::report::{self, Series, row, table_header};
use std::fmt::Write as _;

const CLIENT: &str = r#"
import os, time, wandb
interval = float(os.environ["BENCH_INTERVAL"])
stats = os.environ["BENCH_STATS"] == "1"
run = wandb.init(project="bench", mode="offline", settings=wandb.Settings(
    x_stats_sampling_interval=interval, x_disable_stats=not stats))
time.sleep(float(os.environ["BENCH_SECONDS"]))
run.finish()
"#;

#[derive(Debug, Clone, Copy)]
pub struct MonitorRun {
    /// CPU seconds of the service and its descendants.
    pub cpu_s: f64,
    /// Peak of their summed resident memory, MiB.
    pub peak_rss_mib: f64,
    /// `stats` records in the run's log.
    pub samples: u64,
}

/// The service's process tree: pid → (CPU ticks, RSS KiB).
fn tree(root: u32) -> HashMap<u32, (u64, u64)> {
    let mut out = HashMap::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let rss = crate::process::proc_status_kib(pid, "VmRSS:");
        out.insert(pid, (ticks, rss));
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                if let Ok(children) = std::fs::read_to_string(t.path().join("children")) {
                    queue.extend(
                        children
                            .split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
        }
    }
    out
}

pub fn run(
    binary: &Path,
    python: &Path,
    dir: &Path,
    seconds: f64,
    interval: f64,
    stats: bool,
) -> anyhow::Result<MonitorRun> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let service = Service::start(binary, dir, &[], &[], None)?;
    let root = service.pid();
    // Poll the tree: the last CPU reading of every process, the peak of
    // the summed RSS.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut last: HashMap<u32, u64> = HashMap::new();
            let mut peak_kib = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = tree(root);
                peak_kib = peak_kib.max(t.values().map(|(_, rss)| rss).sum());
                for (pid, (ticks, _)) in t {
                    last.insert(pid, ticks);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (last.values().sum::<u64>(), peak_kib)
        })
    };
    let out = Command::new(python)
        .args(["-c", CLIENT])
        .current_dir(dir)
        .env("WANDB_SERVICE", service.token())
        .env("WANDB_DIR", dir)
        .env("WANDB_SILENT", "true")
        .env("HOME", dir)
        .env("BENCH_INTERVAL", interval.to_string())
        .env("BENCH_STATS", if stats { "1" } else { "0" })
        .env("BENCH_SECONDS", seconds.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("run the Python client")?;
    if !out.status.success() {
        bail!("client failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Let the poller see the tree once more before the service goes.
    std::thread::sleep(Duration::from_millis(30));
    stop.store(true, Ordering::Relaxed);
    let (ticks, peak_kib) = poller.join().expect("poller");
    service.teardown()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(MonitorRun {
        cpu_s: ticks as f64 / hz,
        peak_rss_mib: peak_kib as f64 / 1024.0,
        samples: count_stats(dir)?,
    })
}

/// `stats` records in the one run log under `dir/wandb`.
fn count_stats(dir: &Path) -> anyhow::Result<u64> {
    let runs = dir.join("wandb");
    for entry in std::fs::read_dir(&runs)?.flatten() {
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.path().extension().is_some_and(|e| e == "wandb") {
                let mut n = 0;
                for rec in LogReader::open(f.path())? {
                    let (_, bytes) = rec?;
                    if let Ok(pb::Record {
                        record_type: Some(pb::record::RecordType::Stats(_)),
                        ..
                    }) = pb::Record::decode(&bytes[..])
                    {
                        n += 1;
                    }
                }
                return Ok(n);
            }
        }
    }
    bail!("no run log under {}", runs.display())
}

/// The system monitor's cost per sample and in memory, ours and theirs.
pub fn report(bench: &Bench) -> anyhow::Result<()> {
    let (seconds, interval) = if bench.args.quick {
        (2.0, 0.2)
    } else {
        (10.0, 0.1)
    };
    let mut per_sample_ms = [Series::default(), Series::default()];
    let mut rss_cost = [Series::default(), Series::default()];
    let mut samples = [Series::default(), Series::default()];
    for r in 0..bench.args.repeat {
        for (i, (name, bin)) in bench.binaries.iter().enumerate() {
            eprintln!("system monitor, {name}, run {}…", r + 1);
            let dir = bench.scratch.join(format!("monitor-{name}"));
            let on = run(bin, &bench.args.python, &dir, seconds, interval, true)?;
            let off = run(bin, &bench.args.python, &dir, seconds, interval, false)?;
            if on.samples == 0 {
                bail!("{name}: no stats records written");
            }
            per_sample_ms[i].push((on.cpu_s - off.cpu_s).max(0.0) * 1000.0 / on.samples as f64);
            rss_cost[i].push(on.peak_rss_mib - off.peak_rss_mib);
            samples[i].push(on.samples as f64);
        }
    }
    let mut md = report::heading("System monitor cost, wandb-core-rs beside wandb-core 0.31.0");
    let _ = writeln!(
        md,
        "- an idle offline run of {seconds} s sampled every {interval} s, and the same with `x_disable_stats`; \
         CPU and memory of the service and every process it started (wandb-core's includes its `wandb-symon` sidecar); \
         median [min–max] of {} run(s)\n",
        bench.args.repeat
    );
    table_header(&mut md, "figure");
    row(
        &mut md,
        "CPU per sample (ms)",
        &per_sample_ms[0],
        &per_sample_ms[1],
        3,
    );
    row(
        &mut md,
        "memory for monitoring (MiB, peak RSS difference)",
        &rss_cost[0],
        &rss_cost[1],
        1,
    );
    row(&mut md, "samples written", &samples[0], &samples[1], 0);
    std::fs::write(bench.out_dir.join("monitor.md"), &md)?;
    print!("{md}");
    Ok(())
}
