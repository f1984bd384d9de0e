//! `sync_tensorboard` throughput: a generated tfevents log of `steps` ×
//! ten scalar tags (one value per event, as `add_scalar` writes them)
//! announced to a service through the real SDK, the run finished at once;
//! the time from the announcement to `finish()` returning, the service's
//! CPU and peak RSS, and every row checked in the transaction log.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use prost::Message;
use wandb_tensorboard::proto::{Event, Kind, Summary, SummaryValue};

use crate::Bench;
use crate::process::{Service, Usage};
use crate::report::{self, Series, row, table_header};

/// The SDK announces the log directory (as its TensorBoard patch does for
/// each writer) and finishes: all the reading happens in between.
const WORKLOAD: &str = r#"
import os, time, wandb
run = wandb.init(project="bench-tb", settings=wandb.Settings(x_disable_stats=True))
t0 = time.perf_counter()
run._tensorboard_callback(os.environ["BENCH_LOGDIR"], True, os.environ["BENCH_LOGDIR"])
run.finish()
print(time.perf_counter() - t0)
"#;

const TAGS: usize = 10;

/// One run's figures.
#[derive(Debug, Clone)]
pub struct TbRun {
    pub events: u64,
    pub bytes: u64,
    pub wall: Duration,
    pub usage: Usage,
}

impl TbRun {
    fn events_per_s(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.wall.as_secs_f64()
    }
    fn cpu_per_100k(&self) -> f64 {
        self.usage.cpu_s * 100_000.0 / self.events as f64
    }
}

/// The tfevents bytes of `steps` steps × [`TAGS`] scalars.
fn tfevents(steps: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for step in 0..steps {
        for t in 0..TAGS {
            let event = Event {
                wall_time: 1.7e9 + step as f64 * 0.01,
                step: step as i64,
                summary: Some(Summary {
                    value: vec![SummaryValue {
                        tag: format!("m{t}"),
                        metadata: None,
                        kind: Some(Kind::SimpleValue(step as f32 * 0.001 + t as f32)),
                    }],
                }),
            };
            out.extend(wandb_tensorboard::record::frame(&event.encode_to_vec()));
        }
    }
    out
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// `script` run offline in `dir` by `python`, on `service`.
fn client(python: &Path, script: &str, dir: &Path, service: &Service) -> Command {
    let mut cmd = Command::new(python);
    cmd.args(["-c", script])
        .current_dir(dir)
        .env("WANDB_SERVICE", service.token())
        .env("WANDB_MODE", "offline")
        .env("WANDB_DIR", dir)
        .env("WANDB_SILENT", "true")
        .env("HOME", dir)
        .stdin(Stdio::null());
    cmd
}

fn run_once(
    binary: &Path,
    python: &Path,
    dir: &Path,
    log: &[u8],
    steps: u64,
) -> anyhow::Result<TbRun> {
    let _ = std::fs::remove_dir_all(dir);
    let logdir = dir.join("logs");
    std::fs::create_dir_all(&logdir)?;
    // Named as a writer on this host after the run started would name it
    // (W&B's service reads only those).
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    std::fs::write(
        logdir.join(format!("events.out.tfevents.{secs}.{}", hostname())),
        log,
    )?;
    let service = Service::start(binary, dir, &[], &[], None)?;
    let out = client(python, WORKLOAD, dir, &service)
        .env("BENCH_LOGDIR", &logdir)
        .output()
        .context("run the Python client")?;
    if !out.status.success() {
        bail!("client failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let wall: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("the client's time")?;
    let (usage, _) = service.teardown()?;
    // Every row, in order, and the exit record.
    let latest = dir.join("wandb/latest-run");
    let run_log = std::fs::read_dir(&latest)
        .with_context(|| format!("{}", latest.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "wandb"))
        .context("the run's log")?;
    crate::ingest::verify(&run_log, steps)?;
    Ok(TbRun {
        events: steps * TAGS as u64,
        bytes: log.len() as u64,
        wall: Duration::from_secs_f64(wall),
        usage,
    })
}

/// `--tensorboard`: writes tensorboard.md.
pub fn report(bench: &Bench<'_>) -> anyhow::Result<()> {
    let steps = bench.args.tb_steps;
    let log = tfevents(steps);
    let mut results: [Vec<TbRun>; 2] = [Vec::new(), Vec::new()];
    for rep in 0..bench.args.repeat {
        for (i, (name, bin)) in bench.binaries.iter().enumerate() {
            eprintln!("tensorboard, {name}, run {}…", rep + 1);
            let dir = bench.scratch.join(format!("tb-{name}"));
            results[i].push(run_once(bin, &bench.args.python, &dir, &log, steps)?);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let mut md =
        report::heading("TensorBoard logs into a run, wandb-core-rs beside wandb-core 0.31.0");
    let _ = writeln!(
        md,
        "- a tfevents file of {steps} steps × {TAGS} scalars ({} events, one value each, {:.1} MB) \
         announced through the SDK (`run._tensorboard_callback`, what `sync_tensorboard=True` sends per \
         writer), then `finish()`; time from the announcement to `finish()` returning; every \
         row checked in the log; median [min–max] of {} run(s), the services alternating\n",
        steps * TAGS as u64,
        log.len() as f64 / 1e6,
        bench.args.repeat
    );
    let figures: [report::Figure<TbRun>; 5] = [
        ("events/s", TbRun::events_per_s, 0),
        ("MB/s of tfevents", TbRun::mb_per_s, 2),
        ("announce to finish() (s)", |r| r.wall.as_secs_f64(), 2),
        ("service CPU s per 100k events", TbRun::cpu_per_100k, 3),
        ("peak RSS (MiB)", |r| r.usage.peak_rss_mib, 1),
    ];
    table_header(&mut md, &format!("{} events", steps * TAGS as u64));
    for (label, f, digits) in figures {
        let series = |v: &[TbRun]| Series(v.iter().map(f).collect());
        row(
            &mut md,
            label,
            &series(&results[0]),
            &series(&results[1]),
            digits,
        );
    }
    // Lag while training runs.
    let mut lag: [(Series, usize); 2] = Default::default();
    for (i, (name, bin)) in bench.binaries.iter().enumerate() {
        eprintln!("tensorboard lag, {name}…");
        let dir = bench.scratch.join(format!("tb-lag-{name}"));
        lag[i] = lag_once(bin, &bench.args.python, &dir)?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = writeln!(
        md,
        "\nWhile training runs: tensorboardX writes a scalar every {LAG_INTERVAL_S} s ({LAG_STEPS} \
         steps, flushed each) under `wandb.tensorboard.patch(root_logdir=…)`; the time from each write to its row \
         in the run's log, less one step interval (a step's row is complete when the next step \
         begins); median [min–max] over the steps\n"
    );
    table_header(&mut md, "lag");
    row(
        &mut md,
        "add_scalar to row in the log (s)",
        &lag[0].0,
        &lag[1].0,
        2,
    );
    let _ = writeln!(
        md,
        "\nrows not in the log before `finish()`: ours {}, theirs {}",
        lag[0].1, lag[1].1
    );
    let path = bench.out_dir.join("tensorboard.md");
    std::fs::write(&path, &md)?;
    eprintln!("{md}");
    eprintln!("written to {}", path.display());
    Ok(())
}

/// The lag figure: a training loop writes a scalar every 200 ms with
/// tensorboardX under `wandb.tensorboard.patch(root_logdir=…)` (flushing
/// each), and the
/// bench watches the run's log for each step's row. A row is complete only
/// once the next step begins (events of one step make one row), so the
/// step interval is taken off; what is left is the service's delay.
const LAG_WORKLOAD: &str = r#"
import os, sys, time, wandb
from tensorboardX import SummaryWriter
# The root given: without it a single directory waits 10 s for a second
# before its keys are known (both services), which is not what is measured.
wandb.tensorboard.patch(root_logdir=os.environ["BENCH_LOGDIR"])
run = wandb.init(project="bench-tb", sync_tensorboard=True,
                 settings=wandb.Settings(x_disable_stats=True))
w = SummaryWriter(os.path.join(os.environ["BENCH_LOGDIR"], "train"))
steps = int(os.environ["BENCH_STEPS"])
for i in range(steps):
    w.add_scalar("x", float(i), i)
    w.flush()
    print(f"{i} {time.time()}", flush=True)
    time.sleep(0.2)
time.sleep(float(os.environ["BENCH_TAIL_S"]))
w.close()
run.finish()
"#;

const LAG_STEPS: u64 = 40;
const LAG_INTERVAL_S: f64 = 0.2;

/// Seconds from each step's write to its row in the log, less one step
/// interval; rows first seen only at `finish()` count as not live.
fn lag_once(binary: &Path, python: &Path, dir: &Path) -> anyhow::Result<(Series, usize)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let service = Service::start(binary, dir, &[], &[], None)?;
    // Long enough after the last write for the slower service's poll.
    let tail_s = 12.0;
    let mut child = client(python, LAG_WORKLOAD, dir, &service)
        .env("BENCH_LOGDIR", dir.join("logs"))
        .env("BENCH_STEPS", LAG_STEPS.to_string())
        .env("BENCH_TAIL_S", tail_s.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("run the Python client")?;
    let mut seen: std::collections::BTreeMap<i64, f64> = Default::default();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let finished = loop {
        if let Some(log) = run_log(dir) {
            for step in global_steps(&log) {
                seen.entry(step).or_insert_with(now);
            }
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("the lag client did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read as _;
        stdout.read_to_string(&mut out)?;
    }
    let _ = service.teardown()?;
    if !finished.success() {
        bail!("the lag client failed");
    }
    let mut lags = Series::default();
    let mut late = 0;
    for line in out.lines() {
        let mut parts = line.split_whitespace();
        let (Some(step), Some(at)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (step, at): (i64, f64) = (step.parse()?, at.parse()?);
        match seen.get(&step) {
            // The last step's row waits for the end of the stream.
            Some(t) if (step as u64) < LAG_STEPS - 1 => {
                lags.push((t - at - LAG_INTERVAL_S).max(0.0))
            }
            Some(_) => {}
            None => late += 1,
        }
    }
    Ok((lags, late))
}

fn run_log(dir: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir.join("wandb/latest-run"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "wandb"))
}

/// The `global_step` of every history row the log holds so far.
fn global_steps(log: &Path) -> Vec<i64> {
    let Ok(mut reader) = wandb_store::txlog::LogReader::open(log) else {
        return Vec::new();
    };
    let mut steps = Vec::new();
    while let Ok(Some((_, bytes))) = reader.next_record() {
        let Ok(record) = wandb_proto::pb::Record::decode(bytes.as_slice()) else {
            continue;
        };
        if let Some(wandb_proto::pb::record::RecordType::History(h)) = record.record_type
            && let Some(item) = h
                .item
                .iter()
                .find(|i| i.key == "global_step" || i.nested_key == ["global_step"])
            && let Ok(step) = item.value_json.parse::<i64>()
        {
            steps.push(step);
        }
    }
    steps
}
