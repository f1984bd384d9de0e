//! The online path, end to end: what a run costs and what reaches the
//! backend, ours beside wandb-core from the same bench run.
//!
//! Most W&B users run online, so this is the figure that matters most:
//! a run of N rows × 10 scalars with system metrics on and a console line
//! every 100 rows, through the real SDK and through the raw protocol, to
//! the stand-in answering every request after a realistic delay. For each
//! service it reports the service's CPU per 100k rows and peak RSS, the
//! requests by kind and the bytes sent (as sent and decompressed), how
//! late rows reach the backend, how long `finish()` keeps the user's
//! process alive, and checks that the backend stored every row, the
//! console lines and system metrics, and a finished run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use wandb_standin::{RunKey, StandIn};

use crate::Bench;
use crate::ingest::{self, Shape};
use crate::process::{Service, Usage};
use crate::report::{self, Series};

const KEY: &str = "benchbenchbenchbenchbenchbenchbenchbench";
const SDK_RUN: &str = "online-suite";
/// A console line every this many rows.
const CONSOLE_EVERY: u64 = 100;

/// The training loop: ten scalars a row (one of them the wall time it was
/// logged at, for the lag), a console line every 100 rows, system metrics
/// on (the SDK's default). Writes the wall time at which `finish()` was
/// called, so the bench can tell how long the process lived after it.
const WORKLOAD: &str = r#"
import os, sys, time, wandb
rows, every = int(os.environ["BENCH_ROWS"]), int(os.environ["BENCH_CONSOLE_EVERY"])
run = wandb.init(project="bench", id=os.environ["BENCH_ID"])
t1 = time.perf_counter()
for i in range(rows):
    row = {f"m{k}": i * 0.001 + k for k in range(9)}
    row["t"] = time.time()
    run.log(row)
    if i % every == 0:
        print(f"step {i} loss {1.0 / (i + 1):.5f}")
t2 = time.perf_counter()
with open(os.environ["BENCH_OUT"], "w") as f:
    f.write(f"{rows / (t2 - t1)} {time.time()}")
run.finish()
"#;

/// One measured run.
struct Outcome {
    /// What the user's loop got: `run.log` calls/s (SDK), or rows/s the
    /// service took off the socket (raw).
    rate: f64,
    usage: Usage,
    rows: u64,
    /// SDK: from `finish()` called to the process gone. Raw: from the
    /// last frame sent to the exit answered.
    finish_s: f64,
    requests: BTreeMap<String, u64>,
    bytes_sent: u64,
    bytes_decoded: u64,
    /// Per row, seconds from `run.log` to the backend (SDK only).
    lag: Option<Series>,
}

impl Outcome {
    fn cpu_per_100k(&self) -> f64 {
        self.usage.cpu_s * 100_000.0 / self.rows as f64
    }
}

/// What the backend got: every row, the console, system metrics, a
/// finished run; then the requests it answered, by kind, and their bytes.
fn check_backend(
    standin: &StandIn,
    run: &str,
    rows: u64,
    stats: bool,
) -> anyhow::Result<(BTreeMap<String, u64>, u64, u64)> {
    let key = RunKey::new(wandb_standin::DEFAULT_ENTITY, "bench", run);
    let stored = standin.store.line_count(&key, "wandb-history.jsonl");
    ensure!(
        stored == rows as i64,
        "{run}: the backend got {stored} of {rows} rows"
    );
    let console = standin.store.line_count(&key, "output.log");
    let expected_console = rows.div_ceil(CONSOLE_EVERY) as i64;
    ensure!(
        console >= expected_console,
        "{run}: {console} of {expected_console} console lines"
    );
    if stats {
        ensure!(
            standin.store.line_count(&key, "wandb-events.jsonl") > 0,
            "{run}: no system metrics"
        );
    }
    ensure!(
        standin.store.run(&key).is_some_and(|r| r.complete),
        "{run}: not finished on the backend"
    );
    let mut by_kind = BTreeMap::new();
    let (mut sent, mut decoded) = (0, 0);
    for r in standin.store.requests() {
        let kind = r.operation.unwrap_or(r.path);
        *by_kind.entry(kind).or_insert(0) += 1;
        sent += r.body_len as u64;
        decoded += r.decoded_len as u64;
    }
    Ok((by_kind, sent, decoded))
}

/// Through the real SDK, attached to a service the bench started (so its
/// process is the one measured).
fn sdk_run(
    binary: &Path,
    python: &Path,
    dir: &Path,
    rows: u64,
    latency: Duration,
) -> anyhow::Result<Outcome> {
    let standin = crate::standin::fresh(KEY, latency)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let cache = dir.join("cache");
    let service = Service::start(binary, dir, &[], &[("WANDB_CACHE_DIR", &cache)], None)?;
    let out_file = dir.join("client.out");
    let child = Command::new(python)
        .args(["-c", WORKLOAD])
        .current_dir(dir)
        .env("WANDB_SERVICE", service.token())
        .env("WANDB_MODE", "online")
        .env("WANDB_BASE_URL", &standin.base_url)
        .env("WANDB_API_KEY", KEY)
        .env("WANDB_DIR", dir)
        .env("WANDB_SILENT", "true")
        .env("WANDB_CACHE_DIR", &cache)
        .env("HOME", dir)
        .env("BENCH_ROWS", rows.to_string())
        .env("BENCH_CONSOLE_EVERY", CONSOLE_EVERY.to_string())
        .env("BENCH_ID", SDK_RUN)
        .env("BENCH_OUT", &out_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start the Python client")?;
    let out = child.wait_with_output()?;
    let exited = report::unix_now();
    if !out.status.success() {
        bail!("client failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (usage, _) = service.teardown()?;
    let said = std::fs::read_to_string(&out_file)?;
    let figures: Vec<f64> = said
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    ensure!(figures.len() == 2, "client wrote {said:?}");
    let (requests, bytes_sent, bytes_decoded) = check_backend(&standin, SDK_RUN, rows, true)?;
    let key = RunKey::new(wandb_standin::DEFAULT_ENTITY, "bench", SDK_RUN);
    let mut lag = Series::default();
    for (line, received_ms) in standin.store.lines_received(&key, "wandb-history.jsonl") {
        let row: serde_json::Value = serde_json::from_str(&line)?;
        let logged = row["t"].as_f64().context("a row without t")?;
        lag.push(received_ms as f64 / 1000.0 - logged);
    }
    Ok(Outcome {
        rate: figures[0],
        usage,
        rows,
        finish_s: exited - figures[1],
        requests,
        bytes_sent,
        bytes_decoded,
        lag: Some(lag),
    })
}

/// Through the raw protocol: the frames of the whole run written as fast
/// as the service takes them.
fn raw_run(binary: &Path, dir: &Path, rows: u64, latency: Duration) -> anyhow::Result<Outcome> {
    let standin = crate::standin::fresh(KEY, latency)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::create_dir_all(dir.join("files"))?;
    let shape = Shape {
        online: Some((standin.base_url.clone(), KEY.into())),
        stats: true,
        console_every: Some(CONSOLE_EVERY),
    };
    let frames = ingest::encode_shaped(dir, rows, &shape);
    let r = ingest::replay(binary, dir, &frames)?;
    let (requests, bytes_sent, bytes_decoded) =
        check_backend(&standin, ingest::RUN_ID, rows, true)?;
    Ok(Outcome {
        rate: rows as f64 / r.sending.as_secs_f64(),
        usage: r.usage,
        rows,
        finish_s: (r.elapsed - r.sending).as_secs_f64(),
        requests,
        bytes_sent,
        bytes_decoded,
        lag: None,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / (1024.0 * 1024.0))
}

/// A table row: ours, theirs, ours/theirs.
fn line(md: &mut String, label: &str, ours: f64, theirs: f64, digits: usize) {
    let ratio = if theirs != 0.0 {
        format!("{:.3}", ours / theirs)
    } else {
        "–".into()
    };
    let _ = writeln!(
        md,
        "| {label} | {ours:.digits$} | {theirs:.digits$} | {ratio} |"
    );
}

pub fn report(b: &Bench) -> anyhow::Result<()> {
    let sizes: Vec<u64> = if b.args.quick {
        vec![2_000]
    } else {
        b.args.online_suite_rows.clone()
    };
    let latencies: &[u64] = if b.args.quick { &[100] } else { &[100, 500] };
    let mut md = report::heading(
        "The online path: a run's cost and what reaches the backend, ours beside wandb-core",
    );
    let _ = writeln!(
        md,
        "- N rows × 10 scalars (one is the wall time it was logged at), a console line every \
         {CONSOLE_EVERY} rows, system metrics on (sampled every 15 s, the default); online to \
         the stand-in (loopback, in the bench process, fresh each run) answering every request \
         after the latency shown\n\
         - SDK: the real Python SDK (wandb 0.31.0) attached to the service the bench started; \
         raw: the same run's frames written to the socket as fast as the service takes them\n\
         - checked each run: every row, every console line, system metrics and a finished run \
         on the backend\n\
         - one run each, the services alternating\n"
    );
    let mut bars = Vec::new();
    for &rows in &sizes {
        for &latency_ms in latencies {
            for transport in ["SDK", "raw"] {
                eprintln!("online suite: {transport}, {rows} rows, {latency_ms} ms…");
                let latency = Duration::from_millis(latency_ms);
                let mut outcomes = Vec::new();
                for (name, bin) in &b.binaries {
                    let dir = b.scratch.join(format!("online-suite-{name}"));
                    let o = match transport {
                        "SDK" => sdk_run(bin, &b.args.python, &dir, rows, latency),
                        _ => raw_run(bin, &dir, rows, latency),
                    }
                    .with_context(|| format!("{name}: {transport}, {rows} rows"))?;
                    let _ = std::fs::remove_dir_all(&dir);
                    outcomes.push(o);
                }
                let (o, t) = (&outcomes[0], &outcomes[1]);
                let _ = writeln!(
                    md,
                    "## {transport}, {rows} rows, backend latency {latency_ms} ms\n\n\
                     | figure | ours | theirs | ours/theirs |\n|---|---:|---:|---:|"
                );
                let rate = if transport == "SDK" {
                    "`run.log` calls/s"
                } else {
                    "rows/s taken off the socket"
                };
                line(&mut md, rate, o.rate, t.rate, 0);
                line(
                    &mut md,
                    "service CPU per 100k rows (s)",
                    o.cpu_per_100k(),
                    t.cpu_per_100k(),
                    3,
                );
                line(
                    &mut md,
                    "service peak RSS (MiB)",
                    o.usage.peak_rss_mib,
                    t.usage.peak_rss_mib,
                    1,
                );
                let finish = if transport == "SDK" {
                    "`finish()` called → process gone (s)"
                } else {
                    "last frame sent → exit answered (s)"
                };
                line(&mut md, finish, o.finish_s, t.finish_s, 2);
                let total = |x: &Outcome| x.requests.values().sum::<u64>() as f64;
                line(&mut md, "requests, all", total(o), total(t), 0);
                let kinds: std::collections::BTreeSet<&String> =
                    o.requests.keys().chain(t.requests.keys()).collect();
                for k in kinds {
                    let n = |x: &Outcome| x.requests.get(k).copied().unwrap_or(0) as f64;
                    line(&mut md, &format!("requests: {k}"), n(o), n(t), 0);
                }
                let _ = writeln!(
                    md,
                    "| bytes sent, MiB (decompressed) | {} ({}) | {} ({}) | {:.3} |",
                    mib(o.bytes_sent),
                    mib(o.bytes_decoded),
                    mib(t.bytes_sent),
                    mib(t.bytes_decoded),
                    o.bytes_sent as f64 / t.bytes_sent.max(1) as f64
                );
                if let (Some(ol), Some(tl)) = (&o.lag, &t.lag) {
                    for (label, p) in [("median", 0.5), ("p95", 0.95), ("max", 1.0)] {
                        line(
                            &mut md,
                            &format!("`run.log` → row on the backend, {label} (s)"),
                            ol.percentile(p),
                            tl.percentile(p),
                            2,
                        );
                    }
                }
                let _ = writeln!(md);
                bars.push(format!(
                    "| {transport}, {rows} rows, {latency_ms} ms | {:.3} | {:.3} | {:.2} | {:.2} |",
                    o.cpu_per_100k() / t.cpu_per_100k(),
                    o.usage.peak_rss_mib / t.usage.peak_rss_mib,
                    total(o) / total(t),
                    o.finish_s / t.finish_s,
                ));
            }
        }
    }
    let _ = writeln!(
        md,
        "## Against the bars (CPU ≤ 0.1, peak RSS ≤ 0.25, requests ≤ 1, finish ≤ 1)\n\n\
         | case | CPU | peak RSS | requests | finish |\n|---|---:|---:|---:|---:|"
    );
    for b in bars {
        let _ = writeln!(md, "{b}");
    }
    let _ = writeln!(md, "\n{}", report::machine());
    report::save(b, "online-suite.md", &md)
}
