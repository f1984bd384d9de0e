//! `wandb-core monitor`: the system metrics a run would record on this
//! machine, printed live, so a user can check them without starting a run.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use wandb_monitor::{Config, Sampler};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds between samples.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Stop after this many samples (default: until interrupted).
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// The process to report on (default: this one).
    #[arg(long)]
    pid: Option<i32>,
    /// Include the process's descendants.
    #[arg(long)]
    process_tree: bool,
    /// File systems to report (repeatable; default /).
    #[arg(long = "disk")]
    disks: Vec<String>,
    /// One JSON object per sample instead of `key=value` lines.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if !(args.interval.is_finite() && args.interval >= 0.1) {
        anyhow::bail!("--interval must be at least 0.1 s");
    }
    let mut config = Config::default();
    if let Some(pid) = args.pid {
        config.pid = pid;
    }
    config.track_process_tree = args.process_tree;
    if !args.disks.is_empty() {
        config.disk_paths = args.disks.clone();
    }
    let mut sampler = Sampler::new(config);
    let facts = sampler.probe();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# {} CPU(s) ({} logical){}, {} GPU(s){}",
        facts.cpu_count,
        facts.cpu_count_logical,
        facts
            .cpu
            .as_ref()
            .map(|c| format!(", {}", c.model))
            .unwrap_or_default(),
        facts.gpu_count,
        if facts.gpu_type.is_empty() {
            String::new()
        } else {
            format!(" ({})", facts.gpu_type)
        }
    )?;
    let interval = Duration::from_secs_f64(args.interval);
    let mut next = Instant::now();
    let mut n = 0;
    while args.count.is_none_or(|c| n < c) {
        let metrics = sampler.sample();
        let line = if args.json {
            let fields: Vec<String> = metrics
                .iter()
                .map(|m| {
                    format!(
                        "{}:{}",
                        serde_json::Value::from(m.key.as_str()),
                        m.value.to_json()
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        } else {
            metrics
                .iter()
                .map(|m| format!("{}={}", m.key, m.value.to_json()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break; // the reader went away (a closed pipe)
        }
        n += 1;
        next += interval;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(ExitCode::SUCCESS)
}
