//! Local data that cleans itself (`wandb-core gc`, `sync --watch
//! --delete-synced`): a run's local copy is removed only once the server
//! provably has all of it.
//!
//! "Provably": not the `.synced` marker (a sync may have stopped short, and
//! runs synced by other means have none), but the server's own account,
//! asked for each run: as many history rows as the log holds, every file
//! under the run's `files/` with the same size, and, for a run whose log
//! has an exit record, a state past `running`. A run still being written
//! (a sign of life within `older_than`) is left alone. Anything unclear
//! keeps the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_store::txlog::LogReader;

use super::paths::RunTarget;
use crate::backend::{Backend, BackendConfig};

/// What gc decided for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The server has everything: removed (or, dry run, removable), with
    /// the bytes it held.
    Remove { bytes: u64 },
    /// Kept, and why.
    Keep(String),
}

/// A run's local copy, as gc compares it.
struct Local {
    run: pb::RunRecord,
    history_rows: i64,
    has_exit: bool,
    /// Paths under `files/` and their sizes.
    files: Vec<(String, u64)>,
}

fn read_local(target: &RunTarget) -> Result<Local, String> {
    let mut reader =
        LogReader::open(&target.log).map_err(|e| format!("cannot read its log: {e}"))?;
    let (mut run, mut history_rows, mut has_exit) = (None, 0, false);
    let mut buf = Vec::new();
    loop {
        match reader.next_into(&mut buf) {
            Ok(Some(_)) => match pb::Record::decode(&buf[..]).map(|r| r.record_type) {
                Ok(Some(RecordType::Run(r))) if run.is_none() => run = Some(r),
                Ok(Some(RecordType::History(_))) => history_rows += 1,
                Ok(Some(RecordType::Exit(_))) => has_exit = true,
                _ => {}
            },
            Ok(None) => break,
            // A torn tail: what precedes it is what a sync sent.
            Err(_) => break,
        }
    }
    let run = run.ok_or("its log has no run record")?;
    let files_dir = target.dir.join("files");
    let mut files = Vec::new();
    if target.dir != Path::new(".") {
        for entry in walkdir::WalkDir::new(&files_dir).follow_links(true) {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&files_dir) else {
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            files.push((rel.to_string_lossy().into_owned(), size));
        }
    }
    Ok(Local {
        run,
        history_rows,
        has_exit,
        files,
    })
}

/// Whether the server has all of `target`.
async fn judge(
    backend: &Backend,
    default_entity: &str,
    target: &RunTarget,
    older_than: Duration,
) -> Verdict {
    if let Some(quiet) = crate::heartbeat::last_sign_of_life(&target.log)
        && quiet < older_than
    {
        return Verdict::Keep(format!(
            "written {} ago (less than --older-than)",
            humantime::format_duration(Duration::from_secs(quiet.as_secs()))
        ));
    }
    let local = match read_local(target) {
        Ok(l) => l,
        Err(e) => return Verdict::Keep(e),
    };
    let entity = if local.run.entity.is_empty() {
        default_entity
    } else {
        &local.run.entity
    };
    let project = if local.run.project.is_empty() {
        "uncategorized"
    } else {
        &local.run.project
    };
    let name = &local.run.run_id;
    let stored = match backend.stored_run(entity, project, name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Verdict::Keep(format!("{entity}/{project}/{name} is not on the server"));
        }
        Err(e) => return Verdict::Keep(format!("cannot ask the server: {e}")),
    };
    if stored.history_line_count < local.history_rows {
        return Verdict::Keep(format!(
            "the server has {} of its {} history rows",
            stored.history_line_count, local.history_rows
        ));
    }
    if local.has_exit && matches!(stored.state.as_str(), "running" | "pending" | "") {
        return Verdict::Keep(format!(
            "finished locally, but the server says {:?}",
            stored.state
        ));
    }
    for (path, size) in &local.files {
        match stored.files.iter().find(|(n, _)| n == path) {
            None => return Verdict::Keep(format!("the server lacks files/{path}")),
            Some((_, s)) if s != size => {
                return Verdict::Keep(format!(
                    "files/{path}: {size} bytes here, {s} on the server"
                ));
            }
            Some(_) => {}
        }
    }
    Verdict::Remove {
        bytes: disk_usage(&removal(target)),
    }
}

/// What removing a run takes away: its directory when that is a run
/// directory (named after the run, holding the log), else the log alone
/// and its markers.
fn removal(target: &RunTarget) -> Vec<PathBuf> {
    let id = target
        .log
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("run-"))
        .and_then(|n| n.strip_suffix(".wandb"))
        .unwrap_or_default();
    let dir_is_the_runs = !id.is_empty()
        && target
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|d| d.ends_with(&format!("-{id}")));
    if dir_is_the_runs {
        vec![target.dir.clone()]
    } else {
        vec![
            target.log.clone(),
            target.marker(),
            crate::heartbeat::path_for(&target.log),
        ]
    }
}

fn disk_usage(paths: &[PathBuf]) -> u64 {
    paths
        .iter()
        .flat_map(|p| walkdir::WalkDir::new(p).into_iter().flatten())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Removes what [`removal`] names, and a `latest-run` link left pointing
/// at it.
fn remove(target: &RunTarget) -> std::io::Result<()> {
    for p in removal(target) {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p)?,
            Ok(_) => std::fs::remove_file(&p)?,
            Err(_) => {}
        }
    }
    if let Some(parent) = target.dir.parent() {
        let latest = parent.join("latest-run");
        if std::fs::read_link(&latest).is_ok() && !latest.exists() {
            let _ = std::fs::remove_file(&latest);
        }
    }
    Ok(())
}

/// A collector of local runs the server has in full.
#[derive(Clone)]
pub struct Gc {
    backend: Arc<Backend>,
    default_entity: String,
    older_than: Duration,
    dry_run: bool,
}

impl Gc {
    /// Connects with `settings` (base URL, API key, proxies); asks the
    /// server who the key belongs to, for runs logged without an entity.
    pub async fn connect(
        settings: &pb::Settings,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<Self, String> {
        let backend = BackendConfig::from_settings(settings)
            .and_then(Backend::new)
            .map_err(|e| e.to_string())?;
        let viewer = backend
            .viewer()
            .await
            .map_err(|e| format!("cannot ask the server who this is: {e}"))?;
        Ok(Self {
            backend: Arc::new(backend),
            default_entity: viewer.entity,
            older_than,
            dry_run,
        })
    }

    /// Judges `target` and, unless this is a dry run, removes it when the
    /// server has all of it.
    pub async fn collect(&self, target: &RunTarget) -> Verdict {
        let verdict = judge(&self.backend, &self.default_entity, target, self.older_than).await;
        if let Verdict::Remove { .. } = verdict
            && !self.dry_run
            && let Err(e) = remove(target)
        {
            return Verdict::Keep(format!("cannot remove it: {e}"));
        }
        verdict
    }
}
