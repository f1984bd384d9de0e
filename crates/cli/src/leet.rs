//! `leet`: W&B's terminal UI for runs, which the wandb CLI starts as
//! `wandb-core leet run|inspect|symon|config …` (wandb/cli/leet.py). Ours
//! has none yet; so that `wandb leet` keeps working where wandb launches
//! our binary, the command is handed to W&B's own: the one the wheel's
//! hook found (`WANDB_CORE_RS_WANDB_CORE`, set for the SDK's children), or
//! the one `wandb-core install` kept beside ours (`wandb-core.orig`).

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

/// Where the wheel's hook puts W&B's binary.
const WANDB_CORE_ENV: &str = "WANDB_CORE_RS_WANDB_CORE";

#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// Everything after `leet`, passed on unchanged (`--help` included).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// W&B's wandb-core, if one is known.
fn theirs() -> Option<PathBuf> {
    let from_env = std::env::var_os(WANDB_CORE_ENV).map(PathBuf::from);
    let beside = std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name("wandb-core.orig"));
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    [from_env, beside]
        .into_iter()
        .flatten()
        .filter(|p| p.is_file())
        // Never ourselves: that would loop.
        .find(|p| p.canonicalize().ok() != me)
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let Some(theirs) = theirs() else {
        bail!(
            "wandb-core-rs has no LEET terminal UI yet, and W&B's wandb-core is not known \
             here ({WANDB_CORE_ENV} unset, no wandb-core.orig beside this binary); \
             run `WANDB_CORE_RS=0 wandb leet …` to use W&B's"
        );
    };
    let err = Command::new(&theirs).arg("leet").args(&args.args).exec();
    Err(err).with_context(|| format!("run {} leet", theirs.display()))
}
