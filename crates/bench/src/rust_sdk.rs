//! The Rust SDK's `log()`: per-call latency and sustained rows/s for
//! 10-scalar rows, with our service in-process (a channel straight into
//! the run's stream), through the socket to our binary and to W&B's,
//! beside the Python SDK's `run.log` against W&B's service, all on the
//! same machine in the same run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::Bench;
use crate::report::{self, Series};
use anyhow::{Context, bail};
use std::fmt::Write as _;
use wandb::{Mode, Settings, Transport};

/// One measured run.
#[derive(Debug, Clone, Copy)]
pub struct LogRun {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// `log()` calls per second while logging.
    pub calls_per_s: f64,
    /// Rows per second from the first `log()` to `finish()` returning
    /// (everything written by the service).
    pub sustained_per_s: f64,
}

fn percentiles(mut ns: Vec<u64>, rows: u64, log_s: f64, total_s: f64) -> LogRun {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    LogRun {
        p50_us: at(0.5),
        p99_us: at(0.99),
        max_us: at(1.0),
        calls_per_s: rows as f64 / log_s,
        sustained_per_s: rows as f64 / total_s,
    }
}

pub fn rust(transport: Transport, dir: &Path, rows: u64) -> anyhow::Result<LogRun> {
    std::fs::create_dir_all(dir)?;
    let run = wandb::init(
        Settings::new()
            .mode(Mode::Offline)
            .dir(dir)
            .project("bench")
            .transport(transport)
            .disable_stats(true),
    )?;
    let keys: Vec<String> = (0..10).map(|k| format!("m{k}")).collect();
    let mut ns = Vec::with_capacity(rows as usize);
    let start = Instant::now();
    for i in 0..rows {
        let row: Vec<(&str, f64)> = keys
            .iter()
            .enumerate()
            .map(|(k, key)| (key.as_str(), i as f64 * 0.001 + k as f64))
            .collect();
        let t = Instant::now();
        run.log(row)?;
        ns.push(t.elapsed().as_nanos() as u64);
    }
    let log_s = start.elapsed().as_secs_f64();
    let report = run.finish(0)?;
    let total_s = start.elapsed().as_secs_f64();
    if report.stats.dropped + report.stats.undelivered > 0 {
        bail!("records lost: {:?}", report.stats);
    }
    Ok(percentiles(ns, rows, log_s, total_s))
}

const PYTHON: &str = r#"
import os, time, wandb
rows = int(os.environ["BENCH_ROWS"])
run = wandb.init(project="bench", mode="offline", settings=wandb.Settings(x_disable_stats=True))
ns = []
clock = time.perf_counter_ns
start = clock()
for i in range(rows):
    row = {f"m{k}": i * 0.001 + k for k in range(10)}
    t = clock()
    run.log(row)
    ns.append(clock() - t)
log_end = clock()
run.finish()
end = clock()
print("NS", (log_end - start), (end - start))
with open(os.environ["BENCH_OUT"], "w") as f:
    f.write("\n".join(map(str, ns)))
"#;

/// The Python SDK launching W&B's service from its own package.
pub fn python(python: &Path, dir: &Path, rows: u64) -> anyhow::Result<LogRun> {
    std::fs::create_dir_all(dir)?;
    let samples = dir.join("latencies.txt");
    let out = Command::new(python)
        .args(["-c", PYTHON])
        .current_dir(dir)
        .env("BENCH_ROWS", rows.to_string())
        .env("BENCH_OUT", &samples)
        .env("WANDB_DIR", dir)
        .env("WANDB_SILENT", "true")
        .env("WANDB_CACHE_DIR", dir.join("cache"))
        .env_remove("WANDB_SERVICE")
        .output()
        .context("run python")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("python: {}\n{}", text, String::from_utf8_lossy(&out.stderr));
    }
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("NS "))
        .context("no timing line")?;
    let mut parts = line.split_whitespace().map(|x| x.parse::<f64>());
    let (Some(Ok(log_ns)), Some(Ok(total_ns))) = (parts.next(), parts.next()) else {
        bail!("bad timing line {line:?}");
    };
    let ns: Vec<u64> = std::fs::read_to_string(&samples)?
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    Ok(percentiles(ns, rows, log_ns / 1e9, total_ns / 1e9))
}

/// The Rust SDK's log() beside the Python SDK's run.log.
pub fn report(bench: &Bench) -> anyhow::Result<()> {
    use wandb::Transport;
    let rows = bench.args.sdk_rows;
    let setups: [(&str, Option<Transport>); 4] = [
        (
            "Rust SDK, our service in-process (channel)",
            Some(Transport::InProcess),
        ),
        (
            "Rust SDK → our wandb-core (socket)",
            Some(Transport::Launch(bench.binaries[0].1.to_path_buf())),
        ),
        (
            "Rust SDK → W&B's wandb-core (socket)",
            Some(Transport::Launch(bench.binaries[1].1.to_path_buf())),
        ),
        ("Python SDK → W&B's wandb-core", None),
    ];
    let mut figures: Vec<[Series; 5]> = (0..setups.len()).map(|_| Default::default()).collect();
    for r in 0..bench.args.repeat {
        for (i, (name, transport)) in setups.iter().enumerate() {
            eprintln!("{name}, run {}…", r + 1);
            let dir = bench.scratch.join(format!("rust-sdk-{i}-{r}"));
            let run = match transport {
                Some(t) => rust(t.clone(), &dir, rows)?,
                None => python(&bench.args.python, &dir, rows)?,
            };
            let _ = std::fs::remove_dir_all(&dir);
            for (s, x) in figures[i].iter_mut().zip([
                run.p50_us,
                run.p99_us,
                run.max_us / 1000.0,
                run.calls_per_s,
                run.sustained_per_s,
            ]) {
                s.push(x);
            }
        }
    }
    let mut md = report::heading("The Rust SDK's log(), beside the Python SDK's run.log");
    let _ = writeln!(
        md,
        "- {rows} rows of 10 float scalars, offline, system metrics off; latency of each call \
         from the caller's side; sustained = rows / (first log → finish() returned, everything \
         written by the service); median [min–max] of {} run(s)\n",
        bench.args.repeat
    );
    let _ = writeln!(
        md,
        "| setup | log() p50 (µs) | p99 (µs) | max (ms) | log() calls/s | sustained rows/s | sustained vs Python |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let python = figures[setups.len() - 1][4].median();
    for ((name, _), f) in setups.iter().zip(&figures) {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {:.2}× |",
            f[0].show(2),
            f[1].show(2),
            f[2].show(2),
            f[3].show(0),
            f[4].show(0),
            f[4].median() / python
        );
    }
    std::fs::write(bench.out_dir.join("rust-sdk.md"), &md)?;
    print!("{md}");
    Ok(())
}
