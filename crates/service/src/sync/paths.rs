//! Which runs a sync covers: `.wandb` files, run directories holding one,
//! or a `wandb/` directory (or any directory) holding run directories.

use std::path::{Path, PathBuf};

/// The marker written beside a log once it is synced.
pub const SYNCED_SUFFIX: &str = ".synced";

/// One run to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTarget {
    /// `run-<id>.wandb`.
    pub log: PathBuf,
    /// Its run directory (`files/` is inside).
    pub dir: PathBuf,
}

impl RunTarget {
    fn of(log: PathBuf) -> Self {
        let dir = log
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self { log, dir }
    }

    /// `run-<id>.wandb.synced`.
    pub fn marker(&self) -> PathBuf {
        let mut name = self.log.as_os_str().to_owned();
        name.push(SYNCED_SUFFIX);
        PathBuf::from(name)
    }

    pub fn is_synced(&self) -> bool {
        self.marker().exists()
    }
}

/// The runs under `paths` (relative ones against `cwd`), in a stable
/// order, and a message for each path that holds none.
pub fn discover(paths: &[PathBuf], cwd: &Path) -> (Vec<RunTarget>, Vec<String>) {
    walk(paths, cwd, &mut Vec::new())
}

/// [`discover`], also naming the directories searched that hold no log
/// (`searched`): where new runs can appear.
pub(crate) fn walk(
    paths: &[PathBuf],
    cwd: &Path,
    searched: &mut Vec<PathBuf>,
) -> (Vec<RunTarget>, Vec<String>) {
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    for p in paths {
        let path = if p.is_absolute() {
            p.clone()
        } else {
            cwd.join(p)
        };
        let before = runs.len();
        if path.is_file() {
            if is_log_name(&path) {
                runs.push(RunTarget::of(path.clone()));
            } else {
                problems.push(format!(
                    "{}: not a transaction log (expected a run-<id>.wandb file)",
                    p.display()
                ));
                continue;
            }
        } else if path.is_dir() {
            collect_dir(&path, 0, &mut runs, searched);
        } else {
            problems.push(format!("{}: no such file or directory", p.display()));
            continue;
        }
        if runs.len() == before {
            problems.push(format!("{}: no runs found", p.display()));
        }
    }
    runs.sort_by(|a, b| a.log.cmp(&b.log));
    runs.dedup();
    (runs, problems)
}

fn is_log_name(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "wandb")
}

/// A run directory holds its log; deeper directories are searched (a
/// `wandb/` directory, a directory of such) up to a small depth.
fn collect_dir(dir: &Path, depth: usize, runs: &mut Vec<RunTarget>, searched: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut subdirs = Vec::new();
    let mut found = false;
    for e in entries.flatten() {
        let path = e.path();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_file() && is_log_name(&path) {
            runs.push(RunTarget::of(path));
            found = true;
        } else if kind.is_dir() && depth < 3 {
            // `latest-run` is a link to a run found anyway.
            subdirs.push(path);
        }
    }
    if found {
        return;
    }
    searched.push(dir.to_path_buf());
    for d in subdirs {
        collect_dir(&d, depth + 1, runs, searched);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_logs_in_files_run_dirs_and_wandb_dirs() {
        let root = tempfile::tempdir().unwrap();
        let w = root.path().join("wandb");
        for name in ["offline-run-1-a", "offline-run-2-b"] {
            std::fs::create_dir_all(w.join(name).join("files")).unwrap();
            std::fs::write(w.join(name).join(format!("run-{}.wandb", &name[14..])), b"").unwrap();
        }
        std::os::unix::fs::symlink("offline-run-2-b", w.join("latest-run")).unwrap();
        std::fs::write(root.path().join("notes.txt"), b"x").unwrap();
        let (runs, problems) = discover(&[PathBuf::from("wandb")], root.path());
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert!(problems.is_empty());
        let (runs, _) = discover(&[w.join("offline-run-1-a")], root.path());
        assert_eq!(runs[0].log, w.join("offline-run-1-a/run-a.wandb"));
        assert_eq!(
            runs[0].marker(),
            w.join("offline-run-1-a/run-a.wandb.synced")
        );
        let (runs, problems) = discover(
            &[PathBuf::from("notes.txt"), PathBuf::from("nope")],
            root.path(),
        );
        assert!(runs.is_empty());
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
