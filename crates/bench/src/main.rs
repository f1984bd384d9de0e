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
mod ingest;
mod limits;
mod monitor;
mod online;
mod process;
mod report;
mod rust_sdk;
mod sdk;
mod standin;
mod startup;
mod sync;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};
use clap::Parser;

use report::{Series, row, table_header};

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
    /// Rows logged by the online runs.
    #[arg(long, default_value_t = 50_000)]
    online_rows: u64,
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

fn today() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()[..10].to_string()
}

/// The system monitor's cost per sample and in memory, ours and theirs.
fn monitor_report(
    args: &Args,
    binaries: &[(&str, &Path); 2],
    out_dir: &Path,
    scratch: &Path,
) -> anyhow::Result<()> {
    let (seconds, interval) = if args.quick { (2.0, 0.2) } else { (10.0, 0.1) };
    let mut per_sample_ms = [Series::default(), Series::default()];
    let mut rss_cost = [Series::default(), Series::default()];
    let mut samples = [Series::default(), Series::default()];
    for r in 0..args.repeat {
        for (i, (name, bin)) in binaries.iter().enumerate() {
            eprintln!("system monitor, {name}, run {}…", r + 1);
            let dir = scratch.join(format!("monitor-{name}"));
            let on = monitor::run(bin, &args.python, &dir, seconds, interval, true)?;
            let off = monitor::run(bin, &args.python, &dir, seconds, interval, false)?;
            if on.samples == 0 {
                bail!("{name}: no stats records written");
            }
            per_sample_ms[i].push((on.cpu_s - off.cpu_s).max(0.0) * 1000.0 / on.samples as f64);
            rss_cost[i].push(on.peak_rss_mib - off.peak_rss_mib);
            samples[i].push(on.samples as f64);
        }
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# System monitor cost, wandb-core-rs beside wandb-core 0.31.0\n"
    );
    let _ = writeln!(md, "- date: {}", today());
    let _ = writeln!(md, "- machine: {}", report::machine());
    let _ = writeln!(
        md,
        "- an idle offline run of {seconds} s sampled every {interval} s, and the same with `x_disable_stats`; \
         CPU and memory of the service and every process it started (wandb-core's includes its `wandb-symon` sidecar); \
         median [min–max] of {} run(s)\n",
        args.repeat
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
    std::fs::write(out_dir.join("monitor.md"), &md)?;
    print!("{md}");
    Ok(())
}

/// Logging a directory as an artifact, first and unchanged, ours and theirs.
fn artifacts_report(
    args: &Args,
    binaries: &[(&str, &Path); 2],
    out_dir: &Path,
    scratch: &Path,
) -> anyhow::Result<()> {
    let (files, size) = if args.quick {
        (20, 100_000)
    } else {
        (1000, 1 << 20)
    };
    let data = scratch.join("artifact-data");
    let _ = std::fs::remove_dir_all(&data);
    artifacts::make_dir(&data, files, size)?;
    let mut figures: [[Series; 5]; 2] = Default::default();
    for r in 0..args.repeat {
        for (i, (name, bin)) in binaries.iter().enumerate() {
            eprintln!("artifacts, {name}, run {}…", r + 1);
            let run = artifacts::run(bin, &args.python, &data, &scratch.join("artifact-run"))?;
            for (s, x) in figures[i].iter_mut().zip([
                run.save_s[0],
                run.save_s[1],
                run.add_s[0],
                run.add_s[1],
                run.service_cpu_s,
            ]) {
                s.push(x);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(scratch.join("artifact-run"));
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Logging a directory as an artifact, wandb-core-rs beside wandb-core 0.31.0\n"
    );
    let _ = writeln!(md, "- date: {}", today());
    let _ = writeln!(md, "- machine: {}", report::machine());
    let _ = writeln!(
        md,
        "- {files} files of {size} bytes ({:.2} GB), `wandb.Artifact.add_dir` + `run.log_artifact` + `wait()` \
         through the Python SDK to the backend stand-in (in the bench process), then the same directory again \
         (unchanged: the server has it, nothing is uploaded); median [min–max] of {} run(s)\n",
        (files * size) as f64 / 1e9,
        args.repeat
    );
    table_header(&mut md, "figure (s)");
    row(
        &mut md,
        "log_artifact + wait, first time",
        &figures[0][0],
        &figures[1][0],
        2,
    );
    row(
        &mut md,
        "log_artifact + wait, unchanged",
        &figures[0][1],
        &figures[1][1],
        2,
    );
    row(
        &mut md,
        "add_dir (SDK hashing), first time",
        &figures[0][2],
        &figures[1][2],
        2,
    );
    row(
        &mut md,
        "add_dir, unchanged",
        &figures[0][3],
        &figures[1][3],
        2,
    );
    row(
        &mut md,
        "service CPU, whole run",
        &figures[0][4],
        &figures[1][4],
        2,
    );
    std::fs::write(out_dir.join("artifacts.md"), &md)?;
    print!("{md}");
    Ok(())
}

/// Syncing offline runs: ours (through `wandb sync` and `wandb-core sync`)
/// beside W&B's `wandb sync`, on the same logs, one run each.
fn sync_report(
    args: &Args,
    binaries: &[(&str, &Path); 2],
    out_dir: &Path,
    scratch: &Path,
) -> anyhow::Result<()> {
    let workloads: [(&str, usize, u64); 2] = if args.quick {
        [("one run", 1, 10_000), ("several runs", 3, 2_000)]
    } else {
        [("one run", 1, 1_000_000), ("several runs", 20, 50_000)]
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Syncing offline runs, wandb-core-rs beside wandb-core 0.31.0\n"
    );
    let _ = writeln!(md, "- date: {}", today());
    let _ = writeln!(md, "- machine: {}", report::machine());
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
        let logs = sync::logs_dir(scratch, &name.replace(' ', "-"));
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs)?;
        eprintln!("sync, {name}: writing {runs} × {rows} rows…");
        let ids = sync::make_logs(&logs, runs, rows)?;
        let target = scratch.join("sync-target");
        eprintln!("sync, {name}: W&B's…");
        let theirs = sync::run(
            sync::Via::Sdk {
                python: &args.python,
                service: binaries[1].1,
            },
            &logs,
            &target,
            &ids,
            rows,
        )?;
        eprintln!("sync, {name}: ours through wandb sync…");
        let ours_sdk = sync::run(
            sync::Via::Sdk {
                python: &args.python,
                service: binaries[0].1,
            },
            &logs,
            &target,
            &ids,
            rows,
        )?;
        eprintln!("sync, {name}: wandb-core sync…");
        let ours_cli = sync::run(
            sync::Via::Cli {
                binary: binaries[0].1,
            },
            &logs,
            &target,
            &ids,
            rows,
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
    std::fs::write(out_dir.join("sync.md"), &md)?;
    print!("{md}");
    Ok(())
}

/// Online runs through the Python SDK, the backend fast and slow, client
/// and service free to run anywhere or pinned apart.
fn online_report(
    args: &Args,
    binaries: &[(&str, &Path); 2],
    out_dir: &Path,
    scratch: &Path,
) -> anyhow::Result<()> {
    let rows = if args.quick { 2_000 } else { args.online_rows };
    let latencies: &[u64] = if args.quick {
        &[0, 100]
    } else {
        &[0, 100, 1000]
    };
    let pinnable = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Online runs through the Python SDK, wandb-core-rs beside wandb-core 0.31.0\n"
    );
    let _ = writeln!(md, "- date: {}", today());
    let _ = writeln!(md, "- machine: {}", report::machine());
    let _ = writeln!(
        md,
        "- `wandb.init()` online, {rows} × `run.log` of 10 scalars, `finish()`; the backend is \
         the stand-in (loopback, in the bench process, fresh each run) answering every request \
         after the latency shown; every run checked to reach it whole (all rows, complete). \
         `run.log` calls/s over the logging loop; service CPU and peak RSS of the whole \
         service process; median [min–max] of {} run(s), the two services alternating. \
         A busy machine has a busy loop of the lowest priority (nice 19) on every CPU \
         (see below)\n",
        args.repeat
    );
    let mut bars = Vec::new();
    for &latency_ms in latencies {
        for (placement, pinned, busy) in [
            ("unpinned, idle machine", false, false),
            ("unpinned, busy machine", false, true),
            ("client on CPU 0, service on CPU 1", true, false),
        ] {
            if pinned && !pinnable {
                continue;
            }
            eprintln!("online, backend latency {latency_ms} ms, {placement}…");
            let mut results: [Vec<sdk::SdkRun>; 2] = [Vec::new(), Vec::new()];
            let _load = busy.then(online::BusyMachine::start);
            for _ in 0..args.repeat {
                for (i, (name, bin)) in binaries.iter().enumerate() {
                    let dir = scratch.join(format!("online-{name}"));
                    results[i].push(online::run(
                        bin,
                        &args.python,
                        &dir,
                        rows,
                        std::time::Duration::from_millis(latency_ms),
                        pinned,
                    )?);
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            let series = |i: usize, f: &dyn Fn(&sdk::SdkRun) -> f64| {
                Series(results[i].iter().map(f).collect())
            };
            let logs = |r: &sdk::SdkRun| r.logs_per_s;
            let cpu = |r: &sdk::SdkRun| r.usage.cpu_s;
            let rss = |r: &sdk::SdkRun| r.usage.peak_rss_mib;
            let finish = |r: &sdk::SdkRun| r.finish.as_secs_f64();
            let _ = writeln!(md, "## Backend latency {latency_ms} ms, {placement}\n");
            table_header(&mut md, "figure");
            row(
                &mut md,
                "`run.log` calls/s",
                &series(0, &logs),
                &series(1, &logs),
                0,
            );
            row(
                &mut md,
                "service CPU, whole run (s)",
                &series(0, &cpu),
                &series(1, &cpu),
                2,
            );
            row(
                &mut md,
                "service peak RSS (MiB)",
                &series(0, &rss),
                &series(1, &rss),
                1,
            );
            row(
                &mut md,
                "`finish()` (s)",
                &series(0, &finish),
                &series(1, &finish),
                2,
            );
            let _ = writeln!(md);
            let ratio =
                |f: &dyn Fn(&sdk::SdkRun) -> f64| series(0, f).median() / series(1, f).median();
            bars.push((
                format!("{latency_ms} ms, {placement}"),
                ratio(&logs),
                ratio(&cpu),
                ratio(&rss),
            ));
        }
    }
    let _ = writeln!(
        md,
        "## Against the bar (ours/theirs)\n\n| setting | `run.log` calls/s (≥ 1.0) | service CPU (≤ 0.1) | peak RSS (≤ 0.25) |\n| --- | ---: | ---: | ---: |"
    );
    for (setting, logs, cpu, rss) in &bars {
        let mark = |ok: bool| if ok { "" } else { " ✗" };
        let _ = writeln!(
            md,
            "| {setting} | {logs:.3}{} | {cpu:.3}{} | {rss:.3}{} |",
            mark(*logs >= 1.0),
            mark(*cpu <= 0.1),
            mark(*rss <= 0.25)
        );
    }
    let _ = writeln!(
        md,
        "\n## Reading it\n\n\
         The service never holds the training loop here: its socket stays drained \
         (`ss` showed at most 15 KB queued on it at any time, out of ~200 KB) and it is idle \
         most of the time. `run.log` in the 0.31 SDK hands each record from the training \
         thread to the SDK's asyncio thread and waits for it to be written. When the service \
         leaves the second CPU idle, the two SDK threads settle on different CPUs and every \
         hand-off wakes a sleeping one (expensive in a VM); W&B's service, busy on that CPU \
         for the whole loop, keeps the SDK's threads together on the other. Take the idle CPU \
         away, by pinning or by giving it any work, even of the lowest priority, and the same \
         client logs faster with ours. The idle-machine figure is the SDK's hand-off cost, \
         not a stall of the service."
    );
    std::fs::write(out_dir.join("online.md"), &md)?;
    print!("{md}");
    Ok(())
}

/// The Rust SDK's log() beside the Python SDK's run.log.
fn rust_sdk_report(
    args: &Args,
    binaries: &[(&str, &Path); 2],
    out_dir: &Path,
    scratch: &Path,
) -> anyhow::Result<()> {
    use wandb::Transport;
    let rows = args.sdk_rows;
    let setups: [(&str, Option<Transport>); 4] = [
        (
            "Rust SDK, our service in-process",
            Some(Transport::InProcess),
        ),
        (
            "Rust SDK → our wandb-core (socket)",
            Some(Transport::Launch(binaries[0].1.to_path_buf())),
        ),
        (
            "Rust SDK → W&B's wandb-core (socket)",
            Some(Transport::Launch(binaries[1].1.to_path_buf())),
        ),
        ("Python SDK → W&B's wandb-core", None),
    ];
    let mut figures: Vec<[Series; 5]> = (0..setups.len()).map(|_| Default::default()).collect();
    for r in 0..args.repeat {
        for (i, (name, transport)) in setups.iter().enumerate() {
            eprintln!("{name}, run {}…", r + 1);
            let dir = scratch.join(format!("rust-sdk-{i}-{r}"));
            let run = match transport {
                Some(t) => rust_sdk::rust(t.clone(), &dir, rows)?,
                None => rust_sdk::python(&args.python, &dir, rows)?,
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
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# The Rust SDK's log(), beside the Python SDK's run.log\n"
    );
    let _ = writeln!(md, "- date: {}", today());
    let _ = writeln!(md, "- machine: {}", report::machine());
    let _ = writeln!(
        md,
        "- {rows} rows of 10 float scalars, offline, system metrics off; latency of each call \
         from the caller's side; sustained = rows / (first log → finish() returned, everything \
         written by the service); median [min–max] of {} run(s)\n",
        args.repeat
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
    std::fs::write(out_dir.join("rust-sdk.md"), &md)?;
    print!("{md}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.sizes = vec![1000];
        args.sdk_rows = 1000;
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
    if args.monitor {
        return monitor_report(&args, &binaries, &out_dir, &scratch);
    }
    if args.rust_sdk {
        return rust_sdk_report(&args, &binaries, &out_dir, &scratch);
    }
    if args.sync {
        return sync_report(&args, &binaries, &out_dir, &scratch);
    }
    if args.artifacts {
        return artifacts_report(&args, &binaries, &out_dir, &scratch);
    }
    if args.online {
        return online_report(&args, &binaries, &out_dir, &scratch);
    }

    let mut md = String::new();
    let _ = writeln!(md, "# wandb-core-rs beside wandb-core 0.31.0\n");
    let _ = writeln!(md, "- date: {}", today());
    let _ = writeln!(md, "- machine: {}", report::machine());
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
    for _ in 0..args.repeat.max(5) {
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
        table_header(&mut md, &format!("N = {n}"));
        let [o, t] = results;
        row(
            &mut md,
            "rows/s",
            &series(o, |r| r.rows_per_s()),
            &series(t, |r| r.rows_per_s()),
            0,
        );
        row(
            &mut md,
            "MB/s received",
            &series(o, |r| r.mb_per_s()),
            &series(t, |r| r.mb_per_s()),
            1,
        );
        row(
            &mut md,
            "service CPU s per 100k rows",
            &series(o, |r| r.cpu_per_100k()),
            &series(t, |r| r.cpu_per_100k()),
            3,
        );
        row(
            &mut md,
            "peak RSS (MiB)",
            &series(o, |r| r.usage.peak_rss_mib),
            &series(t, |r| r.usage.peak_rss_mib),
            1,
        );
        row(
            &mut md,
            "last frame to exit (ms)",
            &series(o, |r| r.exit_after_last_frame.as_secs_f64() * 1e3),
            &series(t, |r| r.exit_after_last_frame.as_secs_f64() * 1e3),
            1,
        );
        row(
            &mut md,
            "log size (MB)",
            &series(o, |r| r.log_bytes as f64 / 1e6),
            &series(t, |r| r.log_bytes as f64 / 1e6),
            1,
        );
        let _ = writeln!(md);
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
            "rows/s",
            &ns,
            &med(0, |r| r.rows_per_s()),
            &med(1, |r| r.rows_per_s()),
        )?;
        report::plot(
            &out_dir.join("ingest-memory.svg"),
            "Raw ingest peak RSS",
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
