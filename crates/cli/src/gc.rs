//! `wandb-core gc [DIR…] [--older-than D] [--dry-run]`: removes the local
//! copies of runs that the server has in full, checked run by run against
//! the server (see `wandb_service::sync::gc`), and says how much that
//! freed. A run the server lacks anything of is kept, with the reason.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use wandb_proto::pb;
use wandb_service::sync::{Gc, Verdict, discover};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run directories, or directories of runs (default: ./wandb).
    paths: Vec<PathBuf>,
    /// Leave runs written to more recently than this (a run still being
    /// written is never complete on the server).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    older_than: Duration,
    /// Say what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// The W&B server.
    #[arg(long, env = "WANDB_BASE_URL", default_value = "https://api.wandb.ai")]
    base_url: String,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("the current directory")?;
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("wandb")]
    } else {
        args.paths.clone()
    };
    let (targets, problems) = discover(&paths, &cwd);
    for p in &problems {
        eprintln!("wandb-core gc: {p}");
    }
    if targets.is_empty() {
        if problems.is_empty() {
            eprintln!("wandb-core gc: no runs");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let settings = pb::Settings {
        base_url: Some(args.base_url.trim_end_matches('/').to_string()),
        api_key: Some(crate::sync::api_key(&args.base_url)?),
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let gc = match runtime.block_on(Gc::connect(&settings, args.older_than, args.dry_run)) {
        Ok(gc) => gc,
        Err(e) => bail!("{e}"),
    };
    let (mut freed, mut removed, mut kept) = (0u64, 0usize, 0usize);
    for target in &targets {
        let shown = target
            .dir
            .strip_prefix(&cwd)
            .unwrap_or(&target.dir)
            .display()
            .to_string();
        match runtime.block_on(gc.collect(target)) {
            Verdict::Remove { bytes } => {
                removed += 1;
                freed += bytes;
                let verb = if args.dry_run {
                    "would remove"
                } else {
                    "removed"
                };
                eprintln!("wandb-core gc: {verb} {shown} ({})", size(bytes));
            }
            Verdict::Keep(why) => {
                kept += 1;
                eprintln!("wandb-core gc: kept {shown}: {why}");
            }
        }
    }
    let verb = if args.dry_run { "would free" } else { "freed" };
    eprintln!(
        "wandb-core gc: {verb} {} in {removed} run(s); {kept} kept",
        size(freed)
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
