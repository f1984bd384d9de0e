//! `install` / `uninstall`: make a Python environment's wandb package launch
//! this service instead of its own `bin/wandb-core` (kept as
//! `bin/wandb-core.orig` and restored by `uninstall`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use wandb_service::{supported_wandb_range, supports_wandb};

const BACKUP_SUFFIX: &str = ".orig";

#[derive(clap::Args)]
pub struct Args {
    /// The Python interpreter whose wandb package to change (default:
    /// `python3` on PATH).
    #[arg(long, default_value = "python3")]
    python: PathBuf,
}

/// The wandb package's version and its `bin/wandb-core` path.
fn locate(python: &Path) -> anyhow::Result<(String, PathBuf)> {
    let out = Command::new(python)
        .args([
            "-c",
            "import os, wandb; print(wandb.__version__); print(os.path.dirname(wandb.__file__))",
        ])
        .output()
        .with_context(|| format!("run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} cannot import wandb: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8(out.stdout).context("wandb's answer is not UTF-8")?;
    let mut lines = text.lines();
    let (Some(version), Some(dir)) = (lines.next(), lines.next()) else {
        bail!("unexpected answer from {}: {text:?}", python.display());
    };
    Ok((
        version.to_string(),
        Path::new(dir).join("bin").join("wandb-core"),
    ))
}

fn backup_path(core: &Path) -> PathBuf {
    let mut name = core.as_os_str().to_owned();
    name.push(BACKUP_SUFFIX);
    PathBuf::from(name)
}

pub fn install(args: &Args) -> anyhow::Result<ExitCode> {
    let (version, core) = locate(&args.python)?;
    if !supports_wandb(&version) {
        bail!(
            "wandb {version} at {} is not supported (supported: {})",
            core.display(),
            supported_wandb_range()
        );
    }
    let backup = backup_path(&core);
    if !backup.exists() {
        if !core.exists() {
            bail!(
                "{} does not exist; is this a complete wandb install?",
                core.display()
            );
        }
        std::fs::rename(&core, &backup)
            .with_context(|| format!("keep the original as {}", backup.display()))?;
    }
    let ours = std::env::current_exe().context("find our own binary")?;
    let tmp = core.with_extension("installing");
    std::fs::copy(&ours, &tmp)
        .with_context(|| format!("copy {} to {}", ours.display(), tmp.display()))?;
    std::fs::rename(&tmp, &core).with_context(|| format!("put {} in place", core.display()))?;
    eprintln!(
        "wandb {version} now uses wandb-core-rs: {}\n(the original is kept as {}; `wandb-core uninstall` restores it)",
        core.display(),
        backup.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn uninstall(args: &Args) -> anyhow::Result<ExitCode> {
    let (version, core) = locate(&args.python)?;
    let backup = backup_path(&core);
    if !backup.exists() {
        bail!(
            "wandb {version} at {} does not use wandb-core-rs (no {})",
            core.display(),
            backup.display()
        );
    }
    std::fs::rename(&backup, &core).with_context(|| format!("restore {}", core.display()))?;
    eprintln!(
        "wandb {version} uses its own wandb-core again: {}",
        core.display()
    );
    Ok(ExitCode::SUCCESS)
}
