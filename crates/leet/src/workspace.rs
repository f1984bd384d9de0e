//! The runs of a wandb directory.
//!
//! Each run lives in `run-<date>_<time>-<id>/` (or `offline-run-…`) with
//! its log `run-<id>.wandb`. Listing is a directory read, cheap enough to
//! repeat every second so that new runs appear as they start.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A run directory found in a wandb directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEntry {
    /// The run directory's name (`offline-run-20261207_111311-a563nom0`).
    pub dir_name: String,
    pub id: String,
    /// `20261207_111311`, as the directory names it.
    pub started: String,
    pub offline: bool,
    pub log: PathBuf,
    /// When the log was last written.
    pub modified: Option<SystemTime>,
}

/// Splits `run-20261207_111311-a563nom0` into its time and id.
fn parse_dir_name(name: &str) -> Option<(bool, &str, &str)> {
    let (offline, rest) = match name.strip_prefix("offline-run-") {
        Some(rest) => (true, rest),
        None => (false, name.strip_prefix("run-")?),
    };
    // The time is 15 characters (YYYYMMDD_HHMMSS), then '-' and the id.
    let (started, id) = (rest.get(..15)?, rest.get(16..)?);
    let valid = started.as_bytes()[8] == b'_'
        && started
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit())
        && rest.as_bytes()[15] == b'-'
        && !id.is_empty();
    valid.then_some((offline, started, id))
}

/// The runs in `wandb_dir`, newest first. Directories without a log are
/// skipped; an unreadable `wandb_dir` is an error.
pub fn list_runs(wandb_dir: &Path) -> std::io::Result<Vec<RunEntry>> {
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(wandb_dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((offline, started, id)) = parse_dir_name(name) else {
            continue;
        };
        let log = entry.path().join(format!("run-{id}.wandb"));
        let Ok(meta) = std::fs::metadata(&log) else {
            continue;
        };
        runs.push(RunEntry {
            dir_name: name.to_string(),
            id: id.to_string(),
            started: started.to_string(),
            offline,
            log,
            modified: meta.modified().ok(),
        });
    }
    runs.sort_by(|a, b| (&b.started, &b.dir_name).cmp(&(&a.started, &a.dir_name)));
    Ok(runs)
}

/// The newest run of a wandb directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestRun {
    /// The run directory as named from the wandb directory: where
    /// `latest-run` points, as the link says it (relative to the wandb
    /// directory, or absolute), `latest-run` if that is a directory itself,
    /// else the newest run directory's name. (W&B's inspector prints the
    /// log's path by this name.)
    pub dir: PathBuf,
    pub log: PathBuf,
}

/// The newest run in `wandb_dir`: the one `latest-run` points at when it
/// has a log, else the newest listed. An unreadable `wandb_dir` is an
/// error.
pub fn latest_run(wandb_dir: &Path) -> std::io::Result<Option<LatestRun>> {
    let latest = wandb_dir.join("latest-run");
    let target = std::fs::read_link(&latest).ok().or_else(|| {
        // A copied directory may have a real `latest-run` directory.
        latest.is_dir().then(|| PathBuf::from("latest-run"))
    });
    if let Some(dir) = target
        && let Some(log) = find_log(&wandb_dir.join(&dir))
    {
        return Ok(Some(LatestRun { dir, log }));
    }
    Ok(list_runs(wandb_dir)?.into_iter().next().map(|r| LatestRun {
        dir: PathBuf::from(r.dir_name),
        log: r.log,
    }))
}

/// The one `run-*.wandb` in a run directory.
pub fn find_log(run_dir: &Path) -> Option<PathBuf> {
    let mut logs = std::fs::read_dir(run_dir).ok()?.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name();
        let name = name.to_str()?;
        (name.starts_with("run-") && name.ends_with(".wandb")).then(|| e.path())
    });
    let first = logs.next()?;
    logs.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            parse_dir_name("offline-run-20261207_111311-a563nom0"),
            Some((true, "20261207_111311", "a563nom0"))
        );
        assert_eq!(
            parse_dir_name("run-20261207_111311-x-y"),
            Some((false, "20261207_111311", "x-y"))
        );
        for bad in [
            "run-",
            "run-2026",
            "latest-run",
            "run-20261207-111311-a",
            "run-20261207_111311-",
        ] {
            assert_eq!(parse_dir_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn lists_newest_first_and_skips_dirs_without_logs() {
        let dir = tempfile::tempdir().unwrap();
        for (name, id) in [
            ("run-20260101_000000-aaa", "aaa"),
            ("offline-run-20260301_000000-ccc", "ccc"),
            ("run-20260201_000000-bbb", "bbb"),
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join(format!("run-{id}.wandb")), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("run-20260401_000000-nolog")).unwrap();
        let ids: Vec<String> = list_runs(dir.path())
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["ccc", "bbb", "aaa"]);
        let latest = latest_run(dir.path()).unwrap().unwrap();
        assert_eq!(latest.dir, Path::new("offline-run-20260301_000000-ccc"));
        assert!(latest.log.ends_with("run-ccc.wandb"));
        // `latest-run` wins, as a link or as a directory.
        std::os::unix::fs::symlink("run-20260101_000000-aaa", dir.path().join("latest-run"))
            .unwrap();
        let latest = latest_run(dir.path()).unwrap().unwrap();
        assert_eq!(latest.dir, Path::new("run-20260101_000000-aaa"));
        assert!(latest.log.ends_with("run-aaa.wandb"));
        std::fs::remove_file(dir.path().join("latest-run")).unwrap();
        std::fs::create_dir(dir.path().join("latest-run")).unwrap();
        std::fs::write(dir.path().join("latest-run/run-ddd.wandb"), b"").unwrap();
        let latest = latest_run(dir.path()).unwrap().unwrap();
        assert_eq!(latest.dir, Path::new("latest-run"));
        assert!(latest.log.ends_with("latest-run/run-ddd.wandb"));
    }
}
