//! `wandb-core`: the service binary and its tools.
//!
//! Thin by design: argument parsing and exit codes live here, the work in
//! the library crates.

mod inspect;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wandb-core",
    version,
    about = "wandb-core-rs: a W&B run-tracking service and its tools"
)]
#[command(arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the records of a run's transaction log (`run-<id>.wandb`), one
    /// JSON object per line.
    Inspect(inspect::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
