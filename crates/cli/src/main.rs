//! `wandb-core`: the service binary and its tools.
//!
//! Thin by design: argument parsing and exit codes live here, the work in
//! the library crates. Without a subcommand it is the service, taking the
//! same flags as W&B's binary (Go flag syntax: `-x` or `--x`, a value after
//! a space or `=`).

mod export;
mod gc;
mod inspect;
mod install;
mod leet;
mod logging;
mod monitor;
mod service;
mod sync;
mod tensorboard;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wandb-core", version = concat!(env!("CARGO_PKG_VERSION"), " (wandb-core-rs)"))]
#[command(about = "wandb-core-rs: a drop-in W&B run-tracking service, and its tools")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    service: service::ServiceArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the records of a run's transaction log (`run-<id>.wandb`), one
    /// JSON object per line.
    Inspect(inspect::Args),
    /// Start a detached service shared by many processes; prints its
    /// WANDB_SERVICE token.
    Start(service::StartArgs),
    /// Stop the service a WANDB_SERVICE token names.
    Stop(service::StopArgs),
    /// Make a Python environment's wandb package use this service.
    Install(install::Args),
    /// Restore the wandb package's own wandb-core.
    Uninstall(install::Args),
    /// Print the system metrics a run records on this machine, live.
    Monitor(monitor::Args),
    /// Send offline runs (or runs still being written, with --live) to W&B.
    Sync(sync::Args),
    /// Remove the local copies of runs the server has in full (checked
    /// against the server, run by run).
    Gc(gc::Args),
    /// Write runs' history, summary and config as Parquet, CSV or JSON
    /// Lines, for pandas, polars and other tools.
    Export(export::Args),
    /// LEET, the terminal UI for runs (`wandb leet` runs this).
    Leet(leet::Args),
}

/// Go's flag package takes `-name` for long flags; clap wants `--name`.
fn go_style_args() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "leet") {
        leet::normalize(&mut args);
        return args;
    }
    for arg in args.iter_mut().skip(1) {
        let Some(s) = arg.to_str() else { continue };
        if let Some(rest) = s.strip_prefix('-')
            && !rest.starts_with('-')
            && service::LONG_FLAGS.contains(&rest.split('=').next().unwrap_or(""))
        {
            *arg = format!("-{s}").into();
        }
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(go_style_args());
    let result = match cli.command {
        None => service::serve(&cli.service),
        Some(Command::Inspect(args)) => inspect::run(&args),
        Some(Command::Start(args)) => service::start(&args),
        Some(Command::Stop(args)) => service::stop(&args),
        Some(Command::Install(args)) => install::install(&args),
        Some(Command::Uninstall(args)) => install::uninstall(&args),
        Some(Command::Monitor(args)) => monitor::run(&args),
        Some(Command::Sync(args)) => sync::run(&args),
        Some(Command::Leet(args)) => leet::run(args),
        Some(Command::Gc(args)) => gc::run(&args),
        Some(Command::Export(args)) => export::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
