//! `leet`: the terminal UI for runs, which the wandb CLI starts as
//! `wandb-core leet run|inspect|symon|config …` (wandb/cli/leet.py) with
//! the flags W&B's binary takes. The work is in the `wandb-leet` crate;
//! this is the flags.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

#[derive(clap::Args)]
#[command(
    about = "LEET: a terminal UI for viewing W&B runs locally",
    long_about = "LEET: a terminal UI for viewing W&B runs locally.\n\n\
                  The command defaults to \"run\": `wandb-core leet ./wandb` browses the runs of a \
                  wandb directory."
)]
pub struct Args {
    #[command(subcommand)]
    command: LeetCommand,
}

#[derive(clap::Subcommand)]
enum LeetCommand {
    /// View the runs in a wandb directory, a single run, or a remote run.
    Run(RunArgs),
    /// Inspect a run's .wandb transaction log.
    Inspect(InspectArgs),
    /// View live local system metrics.
    Symon(SymonArgs),
    /// Show (and create) the LEET configuration file.
    Config(ConfigArgs),
}

/// Flags every `leet` command takes, as W&B's does.
#[derive(clap::Args)]
struct Common {
    /// URL of the W&B server (W&B's binary sends its telemetry there; this
    /// one sends none).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Log level: -4 debug, 0 info, 4 warn, 8 error. Logs go to
    /// wandb-leet.debug.log next to the LEET config file.
    #[arg(
        long,
        value_name = "LEVEL",
        allow_negative_numbers = true,
        default_value_t = 0
    )]
    log_level: i32,
    /// Disable observability (this binary has none to disable).
    #[arg(long)]
    no_observability: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// W&B's profiling server address; Go-only, accepted and ignored.
    #[arg(long, value_name = "ADDR", hide = true)]
    pprof: Option<String>,
    /// Path to a .wandb file to open directly in single-run view.
    #[arg(long, value_name = "FILE")]
    run_file: Option<PathBuf>,
    /// URL of a W&B run to open (the API key in WANDB_API_KEY).
    #[arg(long, value_name = "URL")]
    remote_url: Option<String>,
    /// The wandb directory (default: ./wandb).
    wandb_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct InspectArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, value_name = "ADDR", hide = true)]
    pprof: Option<String>,
    /// Path to the .wandb file to inspect. Defaults to the latest run in the
    /// wandb directory.
    #[arg(long, value_name = "FILE")]
    run_file: Option<PathBuf>,
    /// Print the run's state, latest metric values, config and console tail
    /// instead of its records.
    #[arg(long)]
    summary: bool,
    /// Print JSON: one line per record, or one object with --summary.
    #[arg(long)]
    json: bool,
    /// Keep printing records as the run writes them until it exits.
    #[arg(long, short = 'f')]
    follow: bool,
    /// With --follow, stop once the run's file has gone this long without a
    /// write. 0 waits forever.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// The wandb directory (default: ./wandb).
    wandb_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SymonArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, value_name = "ADDR", hide = true)]
    pprof: Option<String>,
    /// Sampling interval for system metrics (e.g. 500ms, 2s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    interval: Duration,
}

#[derive(clap::Args)]
struct ConfigArgs {
    #[command(flatten)]
    common: Common,
}

/// Go durations (`500ms`, `2s`, `1m`, `1h30m`, `0`) and humantime's.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// The leet commands, for the default-command rule in `main`.
pub const COMMANDS: &[&str] = &["run", "inspect", "symon", "config", "help"];

/// Long flags that Go also spells with one dash.
pub const LONG_FLAGS: &[&str] = &[
    "base-url",
    "log-level",
    "no-observability",
    "pprof",
    "run-file",
    "remote-url",
    "summary",
    "json",
    "follow",
    "idle-timeout",
    "interval",
];

/// `wandb-core leet [flags] DIR` means `leet run [flags] DIR`, as W&B's
/// binary has it; Go's one-dash long flags become clap's two.
pub fn normalize(args: &mut Vec<OsString>) {
    if args.get(1).is_none_or(|a| a != "leet") {
        return;
    }
    let leet = 1;
    let next = args.get(leet + 1).and_then(|a| a.to_str());
    let is_command = next.is_some_and(|n| COMMANDS.contains(&n));
    let is_help = matches!(next, Some("-h" | "--help" | "-help"));
    if !is_command && !is_help {
        args.insert(leet + 1, "run".into());
    }
    for arg in args.iter_mut().skip(leet + 1) {
        let Some(s) = arg.to_str() else { continue };
        if s == "-help" {
            *arg = "--help".into();
        } else if let Some(rest) = s.strip_prefix('-')
            && !rest.starts_with('-')
            && LONG_FLAGS.contains(&rest.split('=').next().unwrap_or(""))
        {
            *arg = format!("-{s}").into();
        }
    }
}

fn wandb_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| PathBuf::from("wandb"))
}

fn init_logging(common: &Common) -> anyhow::Result<()> {
    wandb_leet::config::init_logging(common.log_level).context("cannot open LEET's debug log")
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        LeetCommand::Run(a) => {
            init_logging(&a.common)?;
            if let Some(url) = a.remote_url {
                anyhow::bail!(
                    "remote runs ({url}) are not supported by wandb-core-rs's LEET yet; \
                     open a local run (a wandb directory or a .wandb file), or run \
                     `WANDB_CORE_RS=0 wandb leet {url}` for W&B's"
                );
            }
            wandb_leet::tui::run(wandb_leet::tui::Options {
                wandb_dir: wandb_dir(a.wandb_dir),
                run_file: a.run_file,
            })?;
        }
        LeetCommand::Inspect(a) => {
            init_logging(&a.common)?;
            wandb_leet::inspect::run(&wandb_leet::inspect::Options {
                wandb_dir: wandb_dir(a.wandb_dir),
                run_file: a.run_file,
                summary: a.summary,
                json: a.json,
                follow: a.follow,
                idle_timeout: a.idle_timeout,
            })?;
        }
        LeetCommand::Symon(a) => {
            init_logging(&a.common)?;
            wandb_leet::symon::run(a.interval)?;
        }
        LeetCommand::Config(a) => {
            init_logging(&a.common)?;
            wandb_leet::config::run()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(args: &[&str]) -> Vec<String> {
        let mut v: Vec<OsString> = args.iter().map(OsString::from).collect();
        normalize(&mut v);
        v.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn run_is_the_default_and_go_flags_get_two_dashes() {
        assert_eq!(
            normalized(&["w", "leet", "wandb"]),
            ["w", "leet", "run", "wandb"]
        );
        assert_eq!(normalized(&["w", "leet"]), ["w", "leet", "run"]);
        assert_eq!(
            normalized(&["w", "leet", "-run-file", "x", "-log-level", "-4", "d"]),
            [
                "w",
                "leet",
                "run",
                "--run-file",
                "x",
                "--log-level",
                "-4",
                "d"
            ]
        );
        assert_eq!(
            normalized(&["w", "leet", "inspect", "-json", "-summary"]),
            ["w", "leet", "inspect", "--json", "--summary"]
        );
        assert_eq!(normalized(&["w", "leet", "-h"]), ["w", "leet", "-h"]);
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
    }
}
