//! `wandb-core export` of a long run: how long it takes, how big the files
//! are beside the log, and that memory stays flat as the run grows.
//!
//! The run is the raw-ingest one (ingest.rs: `wandb.init`, N × `run.log`
//! of ten scalars, a config and a summary update every 10k rows), written
//! by our service so the log is what a user's would be. It is exported to
//! Parquet, CSV and JSON Lines, each a fresh process timed from spawn to
//! exit, its CPU from `wait4`, its peak RSS from the kernel's high-water
//! mark (`VmHWM`) sampled while it runs. The same at N/10 shows whether
//! peak RSS depends on the number of rows (it should not).

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::Bench;
use crate::ingest::{self, RUN_ID};
use crate::process::proc_status_kib;
use crate::report::{self, Series};

struct Export {
    elapsed: Duration,
    cpu_s: f64,
    peak_rss_mib: f64,
    /// The history file and the runs table.
    bytes: u64,
}

/// Runs `binary export log --out out --force` and measures it.
fn export_once(binary: &Path, log: &Path, out: &Path, rows: u64) -> anyhow::Result<Export> {
    let t0 = Instant::now();
    let mut child = Command::new(binary)
        .arg("export")
        .arg(log)
        .arg("--out")
        .arg(out)
        .arg("--force")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let pid = child.id() as libc::pid_t;
    // Peak RSS from the kernel's high-water mark of the export's own
    // memory, sampled while it runs: `wait4`'s ru_maxrss would count this
    // process's memory (the child starts as a copy of it, and exec keeps
    // the larger figure).
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(proc_status_kib(pid as u32, "VmHWM:"));
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid out-pointers. Its output
    // (two lines) fits the pipes, so it never waits for us to read.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak_kib = sampler.join().unwrap_or(0);
    if rc != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut stdout)?;
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut stderr)?;
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("export to {} failed ({status}): {stderr}", out.display());
    }
    // "FILE: N rows × C columns from 1 run": every row must be there.
    let want = format!(": {rows} rows ");
    if !stdout.lines().next().is_some_and(|l| l.contains(&want)) {
        bail!(
            "export to {} wrote other than {rows} rows: {stdout}",
            out.display()
        );
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let runs = runs_table(out);
    let bytes = std::fs::metadata(out)?.len() + std::fs::metadata(&runs)?.len();
    Ok(Export {
        elapsed,
        cpu_s: secs(usage.ru_utime) + secs(usage.ru_stime),
        peak_rss_mib: peak_kib as f64 / 1024.0,
        bytes,
    })
}

fn runs_table(out: &Path) -> PathBuf {
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    out.with_file_name(format!("{stem}.runs.{ext}"))
}

/// A run of `rows` rows logged through our service into `dir`.
fn make_log(ours: &Path, dir: &Path, rows: u64) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let frames = ingest::encode_run(dir, rows);
    ingest::run(ours, dir, &frames, rows)?;
    Ok(dir.join(format!("run-{RUN_ID}.wandb")))
}

pub fn report(b: &Bench<'_>) -> anyhow::Result<()> {
    let n = b.args.export.unwrap_or(1_000_000);
    let ours = b.binaries[0].1;
    let sizes = if n >= 100 { vec![n / 10, n] } else { vec![n] };
    let mut md = report::heading("`wandb-core export`: a long run to Parquet, CSV and JSON Lines");
    let _ = writeln!(
        md,
        "- command: `target/release/wandb-bench --export {n}` (release build), \
         which runs `wandb-core export run-{RUN_ID}.wandb --out FILE --force` per format\n\
         - the run: N rows of 10 float metrics plus `_step`, `_runtime`, `_timestamp`, \
         a config and a summary update every 10k rows, written by our service (raw-protocol ingest)\n\
         - each figure: median [min–max] of {} run(s); time from spawn to exit, CPU of the export \
         process from `wait4`, its peak RSS from `VmHWM` sampled every 2 ms; every export checked to report all N rows\n\
         - size: the history file plus its runs table, beside the `.wandb` log\n",
        b.args.repeat
    );
    let _ = writeln!(
        md,
        "| N | format | time (s) | rows/s | CPU (s) | peak RSS (MiB) | output (MB) | log (MB) | output / log |"
    );
    let _ = writeln!(
        md,
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for &rows in &sizes {
        eprintln!("export: logging {rows} rows through our service…");
        let dir = b.scratch.join(format!("export-{rows}"));
        let _ = std::fs::remove_dir_all(&dir);
        let log = make_log(ours, &dir, rows)?;
        let log_mb = std::fs::metadata(&log)?.len() as f64 / 1e6;
        for ext in ["parquet", "csv", "jsonl"] {
            eprintln!("export: {rows} rows to {ext}…");
            let out = dir.join(format!("history.{ext}"));
            let (mut time, mut cpu, mut rss) =
                (Series::default(), Series::default(), Series::default());
            let mut bytes = 0;
            for _ in 0..b.args.repeat {
                let e = export_once(ours, &log, &out, rows)?;
                time.push(e.elapsed.as_secs_f64());
                cpu.push(e.cpu_s);
                rss.push(e.peak_rss_mib);
                bytes = e.bytes;
            }
            let out_mb = bytes as f64 / 1e6;
            let _ = writeln!(
                md,
                "| {rows} | {ext} | {} | {:.0} | {} | {} | {out_mb:.1} | {log_mb:.1} | {:.2} |",
                time.show(2),
                rows as f64 / time.median(),
                cpu.show(2),
                rss.show(1),
                out_mb / log_mb
            );
            let _ = std::fs::remove_file(&out);
            let _ = std::fs::remove_file(runs_table(&out));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(b.scratch);
    report::save(b, "export.md", &md)
}
