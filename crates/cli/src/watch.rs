//! `wandb-core sync --watch DIR…`: the uploader a cluster's login node runs.
//!
//! Compute nodes write offline runs into a shared filesystem; this finds
//! them as they appear (`Discovery`: inotify on local filesystems, a scan
//! every `--poll` on NFS and Lustre, where inotify sees nothing of other
//! machines' writes), follows each live as `sync --live` does, and
//! finishes it when its exit record arrives. A run whose writer shows no sign of life for
//! `--stale` (the heartbeat our service keeps beside each offline log, or
//! the log's growth) is left unfinished on the server, which shows it
//! crashed; if the writer comes back, the run resumes. Nothing is kept
//! but the runs' own `.synced` markers: a restarted watcher continues
//! every other run where the server's data ends, as any sync does.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use wandb_service::heartbeat::is_quiet;
use wandb_service::sync::{
    Discovery, DiscoveryMode, Gc, RunStatus, Severity, SyncOptions, SyncSession, Verdict,
};

/// How often the watcher says how many runs it holds, in a log that may
/// run for weeks.
const STATUS_EVERY: Duration = Duration::from_secs(60);

/// A failed run (the backend refused it, say) is tried again after this.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// One run being followed.
struct Follow {
    session: Arc<SyncSession>,
    task: tokio::task::JoinHandle<()>,
}

/// Why a run is not followed now.
enum Parked {
    /// Left unfinished: its writer went quiet. Followed again once it
    /// shows a sign of life.
    Crashed,
    /// Failed; tried again from this instant.
    RetryAt(Instant),
}

pub struct Watch {
    pub paths: Vec<PathBuf>,
    pub cwd: PathBuf,
    pub options: SyncOptions,
    pub discover: DiscoveryMode,
    pub poll: Duration,
    pub stale: Duration,
    /// Remove each run's local copy once the server provably has it all.
    pub delete_synced: bool,
}

pub fn run(w: Watch) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            stop.store(true, Ordering::SeqCst);
        });
    }
    let gc = if w.delete_synced {
        // Just synced, its exit record read: no age to wait for.
        let gc = runtime
            .block_on(Gc::connect(&w.options.settings, Duration::ZERO, false))
            .map_err(|e| anyhow::anyhow!(e))?;
        Some(gc)
    } else {
        None
    };
    let mut options = w.options.clone();
    options.live = true;
    options.skip_synced = true;
    options.stale_after = Some(w.stale);
    options.parallelism = 1;

    let mut discovery = Discovery::new(w.discover, w.paths.clone(), w.cwd.clone(), w.poll);
    for note in discovery.take_notes() {
        eprintln!("wandb-core sync: {note}");
    }
    eprintln!(
        "wandb-core sync: watching {} ({}; writers quiet for {} are crashed)",
        w.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        discovery.describe(),
        humantime::format_duration(w.stale),
    );
    let mut following: HashMap<PathBuf, Follow> = HashMap::new();
    let mut parked: HashMap<PathBuf, Parked> = HashMap::new();
    let (mut synced, mut crashed_total) = (0usize, 0usize);
    let mut next_status = Instant::now() + STATUS_EVERY;
    while !stop.load(Ordering::SeqCst) {
        for f in following.values() {
            print_messages(&f.session);
        }
        following.retain(|log, f| {
            if !f.task.is_finished() {
                return true;
            }
            print_messages(&f.session);
            match f.session.runs.first().map(|r| r.status()) {
                Some(RunStatus::Done { finished: true, .. }) => {
                    synced += 1;
                    if let (Some(gc), Some(run)) = (&gc, f.session.runs.first()) {
                        let (gc, target) = (gc.clone(), run.target.clone());
                        runtime.spawn(async move {
                            match gc.collect(&target).await {
                                Verdict::Remove { bytes } => eprintln!(
                                    "wandb-core sync: removed {} ({}): the server has all of it",
                                    target.dir.display(),
                                    crate::gc::size(bytes)
                                ),
                                Verdict::Keep(why) => eprintln!(
                                    "wandb-core sync: kept {}: {why}",
                                    target.dir.display()
                                ),
                            }
                        });
                    }
                }
                Some(RunStatus::Done {
                    finished: false, ..
                }) => {
                    crashed_total += 1;
                    parked.insert(log.clone(), Parked::Crashed);
                }
                Some(RunStatus::Skipped(_)) => {}
                _ => {
                    parked.insert(log.clone(), Parked::RetryAt(Instant::now() + RETRY_AFTER));
                }
            }
            false
        });
        let found = discovery.scan_if_due();
        for note in discovery.take_notes() {
            eprintln!("wandb-core sync: {note}");
        }
        if let Some(targets) = found {
            for target in targets {
                if following.contains_key(&target.log) || target.is_synced() {
                    continue;
                }
                match parked.get(&target.log) {
                    Some(Parked::Crashed) => {
                        if is_quiet(&target.log, w.stale) {
                            continue;
                        }
                        eprintln!(
                            "wandb-core sync: {}: its writer is back; resuming",
                            target.dir.display()
                        );
                    }
                    Some(Parked::RetryAt(at)) if Instant::now() < *at => continue,
                    _ => {}
                }
                parked.remove(&target.log);
                let log = target.log.clone();
                let session = Arc::new(SyncSession::new(
                    vec![target],
                    Vec::new(),
                    options.clone(),
                    &w.cwd,
                ));
                let task = {
                    let session = session.clone();
                    runtime.spawn(async move { session.run().await })
                };
                following.insert(log, Follow { session, task });
            }
        }
        if Instant::now() >= next_status {
            next_status = Instant::now() + STATUS_EVERY;
            let crashed_now = parked
                .values()
                .filter(|p| matches!(p, Parked::Crashed))
                .count();
            eprintln!(
                "wandb-core sync: following {} run(s); {synced} synced, {crashed_now} crashed \
                 (of {crashed_total} ever) since start",
                following.len()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Stopped: what is mid-way continues at the next start, from what the
    // server has.
    for f in following.values() {
        f.task.abort();
        print_messages(&f.session);
    }
    eprintln!(
        "wandb-core sync: stopped; {synced} run(s) synced, {} left to the next start",
        following.len()
    );
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(ExitCode::SUCCESS)
}

fn print_messages(session: &SyncSession) {
    for m in session.take_new_messages() {
        let level = match m.severity {
            Severity::Error => "ERROR ",
            Severity::Warning => "WARNING ",
            Severity::Info => "",
        };
        eprintln!("wandb-core sync: {level}{}", m.content);
    }
}
