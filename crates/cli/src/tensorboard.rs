//! `wandb-core sync --tensorboard`: TensorBoard logs written without W&B
//! imported as runs, then synced.
//!
//! Each import is an offline run written by our service in this process
//! (`Run::tensorboard`, the path `sync_tensorboard=True` takes), under
//! `./wandb/tensorboard/<run id>/`, which the ordinary sync then sends. The
//! run ID comes from the log directory's absolute path and the conversion
//! is deterministic, so importing again rebuilds the same rows and the
//! sync sends only what the server does not have yet.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// One run to make: its ID and name, the log directories and their root.
struct Plan {
    id: String,
    name: String,
    dirs: Vec<PathBuf>,
    root: PathBuf,
}

/// Makes the runs; returns their run directories.
pub fn import(
    paths: &[PathBuf],
    one_run: bool,
    id: Option<&str>,
    project: Option<&str>,
    cwd: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut plans = Vec::new();
    for path in paths {
        let text = path.to_string_lossy();
        if wandb_tensorboard::cloud::is_cloud(&text) {
            // A bucket: the URL is the log directory (not searched).
            let url = text.trim_end_matches('/').to_string();
            plans.push(Plan {
                id: stable_id(Path::new(&url)),
                name: url.rsplit('/').next().unwrap_or(&url).to_string(),
                dirs: vec![PathBuf::from(&url)],
                root: PathBuf::from(&url),
            });
            continue;
        }
        let path =
            std::path::absolute(cwd.join(path)).with_context(|| format!("{}", path.display()))?;
        let dirs = log_dirs(&path);
        if dirs.is_empty() {
            bail!(
                "no TensorBoard event files (*tfevents*) under {}",
                path.display()
            );
        }
        let name_of = |dir: &Path| {
            let rel = dir.strip_prefix(&path).unwrap_or(dir);
            if rel.as_os_str().is_empty() {
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into(),
                )
            } else {
                rel.display().to_string()
            }
        };
        if one_run {
            plans.push(Plan {
                id: stable_id(&path),
                name: name_of(&path),
                dirs,
                root: path.clone(),
            });
        } else {
            for dir in dirs {
                plans.push(Plan {
                    id: stable_id(&dir),
                    name: name_of(&dir),
                    root: dir.clone(),
                    dirs: vec![dir],
                });
            }
        }
    }
    if let Some(id) = id {
        if plans.len() > 1 {
            bail!(
                "--id names one run, but the paths hold {} runs",
                plans.len()
            );
        }
        plans[0].id = id.to_string();
    }
    let mut runs = Vec::new();
    for plan in plans {
        let staging = cwd.join("wandb").join("tensorboard").join(&plan.id);
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .with_context(|| format!("clearing {}", staging.display()))?;
        }
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        let mut settings = wandb::Settings::new()
            .mode(wandb::Mode::Offline)
            .dir(&staging)
            .run_id(plan.id.as_str())
            .name(plan.name.as_str())
            .transport(wandb::Transport::InProcess)
            .disable_stats(true);
        if let Some(project) = project {
            settings = settings.project(project);
        }
        let run = wandb::init(settings).with_context(|| format!("a run for {}", plan.name))?;
        for dir in &plan.dirs {
            run.tensorboard(wandb::TensorboardDir::new(dir).root(&plan.root).existing())?;
        }
        let report = run.finish(0)?;
        let dir = report.dir.context("the imported run has no directory")?;
        eprintln!(
            "wandb-core: {} imported as run {} ({} log director{})",
            plan.name,
            plan.id,
            plan.dirs.len(),
            if plan.dirs.len() == 1 { "y" } else { "ies" }
        );
        runs.push(dir);
    }
    Ok(runs)
}

/// Directories under `root` (itself included) holding tfevents files,
/// sorted.
fn log_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.file_name().to_string_lossy().contains("tfevents"))
        .filter_map(|e| e.path().parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// A run ID from a path: the same path, the same run.
fn stable_id(path: &Path) -> String {
    let digest = Sha256::digest(path.to_string_lossy().as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("tb-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_named_by_their_directories() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["a/train", "a/eval", "b"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
            std::fs::write(dir.path().join(d).join("events.out.tfevents.1.h"), b"").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        let found = log_dirs(dir.path());
        let rel: Vec<_> = found
            .iter()
            .map(|d| d.strip_prefix(dir.path()).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            rel,
            [Path::new("a/eval"), Path::new("a/train"), Path::new("b")]
        );
        assert_eq!(stable_id(&found[0]), stable_id(&found[0]));
        assert_ne!(stable_id(&found[0]), stable_id(&found[1]));
        assert!(stable_id(&found[0]).starts_with("tb-"));
    }
}
