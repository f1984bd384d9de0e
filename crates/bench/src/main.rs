//! `wandb-bench`: wandb-core-rs beside W&B's wandb-core, in one run, on the
//! same inputs, alternating between the two.
//!
//!     cargo run --release -p wandb-bench -- [--quick] [--out DIR]
//!
//! Measures raw-protocol ingest for several N, runs through the Python SDK
//! (one process, and four sharing a service), start-up and idle cost, and
//! the machine's limits for the same bytes; writes `report.md` and SVG plots
//! to the output directory (default `bench/results/<date>`).

mod artifacts;
mod export;
mod ingest;
mod leet;
mod limits;
mod load;
mod monitor;
mod online;
mod online_suite;
mod process;
mod report;
mod rust_sdk;
mod scaling;
mod sdk;
mod standin;
mod startup;
mod sync;
mod tensorboard;
mod watch;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};
use clap::Parser;

use report::{Series, row, table_header};

/// What every report is given: the options, the two binaries (ours first),
/// where the report goes and a scratch directory for the runs.
struct Bench<'a> {
    args: &'a Args,
    binaries: [(&'a str, &'a Path); 2],
    out_dir: &'a Path,
    scratch: &'a Path,
}

#[derive(Parser)]
#[command(about = "Benchmark wandb-core-rs against W&B's wandb-core")]
struct Args {
    /// Our service binary.
    #[arg(long, default_value = "target/release/wandb-core")]
    ours: PathBuf,
    /// W&B's binary (default: the one in the wandb package of --python).
    #[arg(long)]
    theirs: Option<PathBuf>,
    /// Python with wandb==0.31.0, for the SDK runs.
    #[arg(long, default_value = ".venv-ref/bin/python")]
    python: PathBuf,
    /// Where the report goes (default: bench/results/<date>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Row counts for raw ingest.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<u64>,
    /// Rows logged through the SDK by one process.
    #[arg(long, default_value_t = 100_000)]
    sdk_rows: u64,
    /// Repetitions of every measurement (each alternating ours, theirs).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// A smoke run: N = 1000, one repetition.
    #[arg(long)]
    quick: bool,
    /// Only the system-monitor cost (writes monitor.md).
    #[arg(long)]
    monitor: bool,
    /// Only the Rust SDK's log() latency and rate beside the Python SDK's
    /// (writes rust-sdk.md).
    #[arg(long)]
    rust_sdk: bool,
    /// Only syncing offline runs to the stand-in (writes sync.md).
    #[arg(long)]
    sync: bool,
    /// Only logging a 1 GB directory as an artifact, twice (writes
    /// artifacts.md).
    #[arg(long)]
    artifacts: bool,
    /// Only online runs through the Python SDK, the backend answering at
    /// once, after 100 ms and after 1 s (writes online.md).
    #[arg(long)]
    online: bool,
    /// Only many SDK processes logging into one shared service at once
    /// (writes load.md).
    #[arg(long)]
    load: bool,
    /// Only raw-protocol ingest for --sizes (writes ingest.md): quick,
    /// e.g. to see what `WANDB_CORE_DURABILITY` costs.
    #[arg(long)]
    ingest_only: bool,
    /// Only TensorBoard logs read into a run (writes tensorboard.md).
    #[arg(long)]
    tensorboard: bool,
    /// Only sync --watch: a compute node's rows to the server, and what
    /// watching 1,000 runs costs (writes watch.md).
    #[arg(long)]
    watch: bool,
    /// Steps of the generated TensorBoard log (ten scalars each).
    #[arg(long, default_value_t = 100_000)]
    tb_steps: u64,
    /// SDK processes of --load.
    #[arg(long, default_value_t = 64)]
    load_processes: usize,
    /// Rows each --load process logs.
    #[arg(long, default_value_t = 10_000)]
    load_rows: u64,
    /// Rows logged by the online runs.
    #[arg(long, default_value_t = 50_000)]
    online_rows: u64,
    /// Backend latencies (ms) of the online runs (default 0, 100, 1000).
    #[arg(long, value_delimiter = ',')]
    online_latencies: Vec<u64>,
    /// Only the online suite: SDK and raw protocol, 100 and 500 ms
    /// backends, CPU, memory, requests, bytes, lag, finish (writes
    /// online-suite.md).
    #[arg(long)]
    online_suite: bool,
    /// Only scaling: 1 to 32 SDK processes into one service, --load-rows
    /// each (writes scaling.md and plots).
    #[arg(long)]
    scaling: bool,
    /// Client process counts of --scaling.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    scaling_counts: Vec<usize>,
    /// Only LEET (`wandb-core leet`) opening a big run: first frame, whole
    /// run read, peak RSS, key to frame, idle CPU (writes leet.md).
    #[arg(long)]
    leet: bool,
    /// Rows of the --leet run (10 metrics each).
    #[arg(long, default_value_t = 1_000_000)]
    leet_rows: u64,
    /// Only `wandb-core export` of an N-row run (10 metrics a row; default
    /// 1,000,000) to Parquet, CSV and JSON Lines, and of N/10: time, output
    /// size beside the log, peak RSS (writes export.md).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1000000")]
    export: Option<u64>,
    /// Rows of the online suite's runs.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    online_suite_rows: Vec<u64>,
}

/// W&B's binary from the wandb package (`bin/wandb-core`, or the original
/// kept by `wandb-core install`).
fn find_theirs(python: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new(python)
        .args(["-c", "import wandb.util as u; print(u.get_core_path())"])
        .output()
        .with_context(|| format!("run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} cannot import wandb: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let orig = PathBuf::from(format!("{}.orig", path.display()));
    Ok(if orig.exists() { orig } else { path })
}

/// One table of raw-ingest figures for `n` rows, ours beside theirs.
fn ingest_table(md: &mut String, n: u64, ours: &[ingest::Ingest], theirs: &[ingest::Ingest]) {
    let figures: [report::Figure<ingest::Ingest>; 6] = [
        ("rows/s", |r| r.rows_per_s(), 0),
        ("MB/s received", |r| r.mb_per_s(), 1),
        ("service CPU s per 100k rows", |r| r.cpu_per_100k(), 3),
        ("peak RSS (MiB)", |r| r.usage.peak_rss_mib, 1),
        (
            "last frame to exit (ms)",
            |r| r.exit_after_last_frame.as_secs_f64() * 1e3,
            1,
        ),
        ("log size (MB)", |r| r.log_bytes as f64 / 1e6, 1),
    ];
    let series =
        |v: &[ingest::Ingest], f: fn(&ingest::Ingest) -> f64| Series(v.iter().map(f).collect());
    table_header(md, &format!("N = {n}"));
    for (label, f, digits) in figures {
        row(md, label, &series(ours, f), &series(theirs, f), digits);
    }
    let _ = writeln!(md);
}

/// `--ingest-only`: the raw-ingest figures alone.
fn ingest_report(
    ingest_rows: &[(u64, [Vec<ingest::Ingest>; 2])],
    out_dir: &Path,
    repeat: usize,
) -> anyhow::Result<()> {
    let mut md = report::heading("Raw-protocol ingest, wandb-core-rs beside wandb-core 0.31.0");
    let durability = std::env::var("WANDB_CORE_DURABILITY").unwrap_or_else(|_| "buffered".into());
    let _ = writeln!(
        md,
        "- ours with `WANDB_CORE_DURABILITY={durability}`; median [min–max] of {repeat} run(s), \
         the two services alternating; every log checked to hold all rows\n"
    );
    for (n, [o, t]) in ingest_rows {
        ingest_table(&mut md, *n, o, t);
    }
    let path = out_dir.join("ingest.md");
    std::fs::write(&path, &md)?;
    eprintln!("{md}");
    eprintln!("written to {}", path.display());
    Ok(())
}

fn today() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()[..10].to_string()
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.sizes = vec![1000];
        args.sdk_rows = 1000;
        args.tb_steps = 1000;
        args.repeat = 1;
    }
    // Absolute, but not resolved: a venv's python is a symlink that must
    // stay one.
    args.python = std::path::absolute(&args.python)?;
    let theirs = match &args.theirs {
        Some(p) => p.clone(),
        None => find_theirs(&args.python)?,
    };
    let ours = args.ours.canonicalize().with_context(|| {
        format!(
            "{} (build it with cargo build --release)",
            args.ours.display()
        )
    })?;
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("bench/results").join(today()));
    std::fs::create_dir_all(&out_dir)?;
    // Clients run in directories of their own and pass paths to the
    // service, which has another working directory.
    let out_dir = std::path::absolute(&out_dir)?;
    let scratch = out_dir.join("scratch");
    let binaries = [("ours", ours.as_path()), ("theirs", theirs.as_path())];
    let bench = Bench {
        args: &args,
        binaries,
        out_dir: &out_dir,
        scratch: &scratch,
    };
    if args.monitor {
        return monitor::report(&bench);
    }
    if args.rust_sdk {
        return rust_sdk::report(&bench);
    }
    if args.sync {
        return sync::report(&bench);
    }
    if args.artifacts {
        return artifacts::report(&bench);
    }
    if args.online {
        return online::report(&bench);
    }
    if args.load {
        return load::report(&bench);
    }
    if args.tensorboard {
        return tensorboard::report(&bench);
    }
    if args.watch {
        return watch::report(&bench);
    }
    if args.scaling {
        return scaling::report(&bench);
    }
    if args.online_suite {
        return online_suite::report(&bench);
    }
    if args.export.is_some() {
        return export::report(&bench);
    }
    if args.leet {
        return leet::report(&bench);
    }

    let mut md = report::heading("wandb-core-rs beside wandb-core 0.31.0");
    let _ = writeln!(
        md,
        "- ours: `{}` ({:.1} MB); theirs: `{}` ({:.1} MB)",
        ours.display(),
        startup::binary_size_mb(&ours),
        theirs.display(),
        startup::binary_size_mb(&theirs)
    );
    let _ = writeln!(
        md,
        "- every figure: median [min–max] of {} run(s), the two services alternating\n",
        args.repeat
    );

    // Start-up and idle.
    eprintln!("start-up and idle…");
    let (mut spawn, mut idle) = (
        [Series::default(), Series::default()],
        [Series::default(), Series::default()],
    );
    let startup_rounds = if args.ingest_only {
        0
    } else {
        args.repeat.max(5)
    };
    for _ in 0..startup_rounds {
        for (i, (name, bin)) in binaries.iter().enumerate() {
            let s = startup::run(bin, &scratch.join(format!("startup-{name}")))?;
            spawn[i].push(s.spawn_to_port_file.as_secs_f64() * 1e3);
            idle[i].push(s.idle_rss_mib);
        }
    }

    // Raw ingest.
    let mut ingest_rows = Vec::new();
    let mut stream_for_limits = Vec::new();
    for &n in &args.sizes {
        eprintln!("raw ingest, N = {n}…");
        let dir = scratch.join(format!("ingest-{n}"));
        std::fs::create_dir_all(&dir)?;
        let frames = ingest::encode_run(&dir, n);
        let mut results: [Vec<ingest::Ingest>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..args.repeat {
            for (i, (_, bin)) in binaries.iter().enumerate() {
                results[i].push(ingest::run(bin, &dir, &frames, n)?);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        ingest_rows.push((n, results));
        if frames.len() > stream_for_limits.len() {
            stream_for_limits = frames;
        }
    }

    if args.ingest_only {
        return ingest_report(&ingest_rows, &out_dir, args.repeat);
    }

    // The machine's limits for the largest stream's bytes.
    eprintln!("limits…");
    let limit_dir = scratch.join("limits");
    std::fs::create_dir_all(&limit_dir)?;
    let mut sock = Series::default();
    let mut append = Series::default();
    let mut append_sync = Series::default();
    for _ in 0..args.repeat {
        sock.push(limits::socket_gb_per_s(&stream_for_limits)?);
        append.push(limits::append_gb_per_s(
            &stream_for_limits,
            &limit_dir,
            false,
        )?);
        append_sync.push(limits::append_gb_per_s(
            &stream_for_limits,
            &limit_dir,
            true,
        )?);
    }
    drop(stream_for_limits);

    // Through the SDK.
    let mut sdk_runs: Vec<(usize, u64, bool, [Vec<sdk::SdkRun>; 2])> = Vec::new();
    let pinnable = std::thread::available_parallelism()
        .map(|n| n.get() >= 2)
        .unwrap_or(false);
    for (procs, rows, pinned) in [
        (1usize, args.sdk_rows, false),
        (1, args.sdk_rows, true),
        (4, args.sdk_rows / 4, false),
    ] {
        if pinned && !pinnable {
            continue;
        }
        eprintln!(
            "SDK, {procs} process(es) × {rows} rows{}…",
            if pinned { ", pinned" } else { "" }
        );
        let mut results: [Vec<sdk::SdkRun>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..args.repeat {
            for (i, (name, bin)) in binaries.iter().enumerate() {
                let dir = scratch.join(format!("sdk-{name}-{procs}"));
                let _ = std::fs::remove_dir_all(&dir);
                results[i].push(sdk::run(
                    bin,
                    &args.python,
                    &dir,
                    rows,
                    procs,
                    pinned,
                    None,
                )?);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        sdk_runs.push((procs, rows, pinned, results));
    }
    let _ = std::fs::remove_dir_all(&scratch);

    // The report.
    let series =
        |v: &[ingest::Ingest], f: fn(&ingest::Ingest) -> f64| Series(v.iter().map(f).collect());
    let _ = writeln!(md, "## Raw-protocol ingest\n");
    let _ = writeln!(
        md,
        "A pre-encoded offline run (init, run, N × partial_history of 10 scalars, a config and a summary update every 10k rows, exit) replayed as fast as the socket takes it; the clock stops at the answer to the exit record. Every log was checked to hold all N rows.\n"
    );
    let mut bar = Vec::new();
    for (n, results) in &ingest_rows {
        let [o, t] = results;
        ingest_table(&mut md, *n, o, t);
        if Some(n) == ingest_rows.last().map(|(n, _)| n) {
            let rps =
                series(o, |r| r.rows_per_s()).median() / series(t, |r| r.rows_per_s()).median();
            let cpu =
                series(o, |r| r.cpu_per_100k()).median() / series(t, |r| r.cpu_per_100k()).median();
            let rss = series(o, |r| r.usage.peak_rss_mib).median()
                / series(t, |r| r.usage.peak_rss_mib).median();
            bar.push((
                format!("ingest N={n}: rows/s ≥ 10× wandb-core"),
                format!("{rps:.2}×"),
                rps >= 10.0,
            ));
            bar.push((
                format!("ingest N={n}: CPU/100k rows ≤ 1/10"),
                format!("{cpu:.3}×"),
                cpu <= 0.1,
            ));
            bar.push((
                format!("ingest N={n}: peak RSS ≤ 1/4"),
                format!("{rss:.3}×"),
                rss <= 0.25,
            ));
        }
    }
    if ingest_rows.len() > 1 {
        let first = ingest_rows[0].1[0]
            .iter()
            .map(|r| r.usage.peak_rss_mib)
            .fold(0.0, f64::max);
        let last = Series(
            ingest_rows.last().unwrap().1[0]
                .iter()
                .map(|r| r.usage.peak_rss_mib)
                .collect(),
        )
        .median();
        bar.push((
            "ingest: our peak RSS flat from the smallest N to the largest".into(),
            format!("{first:.1} → {last:.1} MiB"),
            last <= first * 1.25 + 2.0,
        ));
        let ns: Vec<u64> = ingest_rows.iter().map(|(n, _)| *n).collect();
        let med = |i: usize, f: fn(&ingest::Ingest) -> f64| -> Vec<f64> {
            ingest_rows
                .iter()
                .map(|(_, r)| series(&r[i], f).median())
                .collect()
        };
        report::plot(
            &out_dir.join("ingest-throughput.svg"),
            "Raw ingest throughput",
            "rows (N)",
            "rows/s",
            &ns,
            &med(0, |r| r.rows_per_s()),
            &med(1, |r| r.rows_per_s()),
        )?;
        report::plot(
            &out_dir.join("ingest-memory.svg"),
            "Raw ingest peak RSS",
            "rows (N)",
            "MiB",
            &ns,
            &med(0, |r| r.usage.peak_rss_mib),
            &med(1, |r| r.usage.peak_rss_mib),
        )?;
        let _ = writeln!(
            md,
            "![throughput](ingest-throughput.svg)\n![memory](ingest-memory.svg)\n"
        );
    }

    let _ = writeln!(md, "## Through the Python SDK\n");
    let _ = writeln!(
        md,
        "`wandb.init(mode=\"offline\")`, N × `run.log` of 10 scalars, `finish()`, attached through WANDB_SERVICE so the measured process is the service alone.\n"
    );
    for (procs, rows, pinned, results) in &sdk_runs {
        let [o, t] = results;
        let s = |v: &[sdk::SdkRun], f: fn(&sdk::SdkRun) -> f64| Series(v.iter().map(f).collect());
        let pin_note = if *pinned {
            ", service on CPU 1, client on CPU 0"
        } else {
            ""
        };
        table_header(
            &mut md,
            &format!("{procs} process(es) × {rows} rows{pin_note}"),
        );
        row(
            &mut md,
            "logs/s (all processes)",
            &s(o, |r| r.logs_per_s),
            &s(t, |r| r.logs_per_s),
            0,
        );
        row(
            &mut md,
            "service CPU s per 100k logs",
            &s(o, |r| r.cpu_per_100k()),
            &s(t, |r| r.cpu_per_100k()),
            3,
        );
        row(
            &mut md,
            "service peak RSS (MiB)",
            &s(o, |r| r.usage.peak_rss_mib),
            &s(t, |r| r.usage.peak_rss_mib),
            1,
        );
        row(
            &mut md,
            "init (ms)",
            &s(o, |r| r.init.as_secs_f64() * 1e3),
            &s(t, |r| r.init.as_secs_f64() * 1e3),
            1,
        );
        row(
            &mut md,
            "finish (ms)",
            &s(o, |r| r.finish.as_secs_f64() * 1e3),
            &s(t, |r| r.finish.as_secs_f64() * 1e3),
            1,
        );
        let _ = writeln!(md);
        if *procs == 1 {
            let cpu = s(o, |r| r.cpu_per_100k()).median() / s(t, |r| r.cpu_per_100k()).median();
            let lps = s(o, |r| r.logs_per_s).median() / s(t, |r| r.logs_per_s).median();
            let how = if *pinned {
                " (pinned to separate CPUs)"
            } else {
                ""
            };
            bar.push((
                format!("SDK{how}: service CPU/100k logs ≤ 1/10"),
                format!("{cpu:.3}×"),
                cpu <= 0.1,
            ));
            bar.push((
                format!("SDK{how}: logs/s not lower"),
                format!("{lps:.3}×"),
                lps >= 1.0,
            ));
        }
    }

    let _ = writeln!(md, "## Start-up and idle\n");
    table_header(&mut md, "figure");
    row(&mut md, "spawn to port file (ms)", &spawn[0], &spawn[1], 2);
    row(&mut md, "idle RSS (MiB)", &idle[0], &idle[1], 1);
    let size = [
        startup::binary_size_mb(&ours),
        startup::binary_size_mb(&theirs),
    ];
    row(
        &mut md,
        "binary size (MB)",
        &Series(vec![size[0]]),
        &Series(vec![size[1]]),
        1,
    );
    let _ = writeln!(md);
    let sp = spawn[0].median() / spawn[1].median();
    let ir = idle[0].median() / idle[1].median();
    bar.push((
        "spawn to port file ≤ 1/3".into(),
        format!("{sp:.3}×"),
        sp <= 1.0 / 3.0,
    ));
    bar.push(("idle RSS ≤ 1/4".into(), format!("{ir:.3}×"), ir <= 0.25));

    let _ = writeln!(md, "## The machine's limits for the same bytes\n");
    let _ = writeln!(md, "| path | GB/s |\n| --- | ---: |");
    let _ = writeln!(md, "| Unix socket between two threads | {} |", sock.show(2));
    let _ = writeln!(
        md,
        "| sequential append (page cache) | {} |",
        append.show(2)
    );
    let _ = writeln!(
        md,
        "| sequential append + fsync | {} |",
        append_sync.show(2)
    );
    if let Some((_, results)) = ingest_rows.last() {
        let ours_mb = Series(results[0].iter().map(|r| r.mb_per_s()).collect()).median();
        let theirs_mb = Series(results[1].iter().map(|r| r.mb_per_s()).collect()).median();
        let _ = writeln!(
            md,
            "\nAt the largest N, ours takes in {:.1}% of the socket's limit, wandb-core {:.1}%.\n",
            ours_mb / 10.0 / sock.median(),
            theirs_mb / 10.0 / sock.median()
        );
    }
    let _ = writeln!(
        md,
        "## Rust SDK\n\nNot measured: the Rust SDK has not landed yet.\n"
    );

    let _ = writeln!(
        md,
        "## Against the bar\n\n| criterion | measured (ours/theirs) | met |\n| --- | ---: | :---: |"
    );
    for (what, value, ok) in &bar {
        let _ = writeln!(
            md,
            "| {what} | {value} | {} |",
            if *ok { "yes" } else { "no" }
        );
    }

    std::fs::write(out_dir.join("report.md"), &md)?;
    println!("{md}");
    eprintln!("report: {}", out_dir.join("report.md").display());
    Ok(())
}
