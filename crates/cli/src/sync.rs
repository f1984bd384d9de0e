//! `wandb-core sync`: send offline runs to W&B without Python.
//!
//! The same sync the service runs for `wandb sync` (see
//! `wandb_service::sync`), with progress bars on a terminal and plain lines
//! otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use wandb_proto::pb;
use wandb_service::sync::{RunStatus, Severity, SyncOptions, SyncSession, discover};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `.wandb` files, run directories, or directories of runs (default:
    /// ./wandb).
    paths: Vec<PathBuf>,
    /// Send the runs to this entity.
    #[arg(long, short = 'e')]
    entity: Option<String>,
    /// Send the runs to this project.
    #[arg(long, short = 'p')]
    project: Option<String>,
    /// Send the run under this ID.
    #[arg(long)]
    id: Option<String>,
    /// Set the runs' job type.
    #[arg(long)]
    job_type: Option<String>,
    /// Rename tags: `old=new,gone=` (an empty new name removes the tag).
    #[arg(long)]
    replace_tags: Option<String>,
    /// Runs sent at once.
    #[arg(long, short = 'j', default_value_t = 4)]
    parallel: usize,
    /// Leave out runs already synced (those with a `.wandb.synced` marker).
    #[arg(long)]
    skip_synced: bool,
    /// Follow runs still being written, and finish them when their exit
    /// record arrives.
    #[arg(long)]
    live: bool,
    /// Keep running: find new offline runs under the paths as they appear
    /// (runs written on other machines into a shared filesystem included),
    /// follow each live, finish each at its exit record. For a cluster's
    /// login node; stop it with Ctrl-C or SIGTERM, restart it any time.
    #[arg(long, conflicts_with_all = ["dry_run", "tensorboard", "id", "live"])]
    watch: bool,
    /// With --watch: how new runs are found. `inotify` is told at once
    /// and costs nothing while idle, but sees only this machine's writes;
    /// `poll` scans every --poll and sees every machine's (NFS, Lustre,
    /// GPFS); `auto` uses inotify unless a path is on a network filesystem.
    #[arg(long, default_value = "auto", requires = "watch")]
    discover: wandb_service::sync::DiscoveryMode,
    /// With --watch: how often the paths are scanned for new runs when
    /// scanning.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s", requires = "watch")]
    poll: std::time::Duration,
    /// With --watch: a run without an exit record whose writer shows no
    /// sign of life (the heartbeat beside its log, its growth) for this
    /// long is left unfinished on the server (crashed); it resumes if the
    /// writer comes back.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m", requires = "watch")]
    stale: std::time::Duration,
    /// With --watch: once a run is synced, remove its local copy if the
    /// server provably has all of it (as `wandb-core gc` checks).
    #[arg(long, requires = "watch")]
    delete_synced: bool,
    /// List what would be synced, and stop.
    #[arg(long)]
    dry_run: bool,
    /// The paths are TensorBoard log directories (or directories of them):
    /// each directory of tfevents files becomes a run, written under
    /// ./wandb/tensorboard/, then synced. Importing again sends only what
    /// the server does not have.
    #[arg(long)]
    tensorboard: bool,
    /// With --tensorboard: one run per path, its log directories' keys
    /// prefixed by their path below it (`train/loss`, `eval/loss`), instead
    /// of one run per log directory.
    #[arg(long, requires = "tensorboard")]
    one_run: bool,
    /// The W&B server.
    #[arg(long, env = "WANDB_BASE_URL", default_value = "https://api.wandb.ai")]
    base_url: String,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("the current directory")?;
    // Asked first: an import without a key to send it would be wasted.
    let api_key = if args.dry_run {
        None
    } else {
        Some(api_key(&args.base_url)?)
    };
    let paths = if args.tensorboard {
        if args.paths.is_empty() {
            bail!("--tensorboard needs the log directories to import");
        }
        if args.dry_run {
            for p in &args.paths {
                eprintln!(
                    "wandb-core: would import TensorBoard logs under {}",
                    p.display()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        crate::tensorboard::import(
            &args.paths,
            args.one_run,
            args.id.as_deref(),
            args.project.as_deref(),
            &cwd,
        )?
    } else if args.paths.is_empty() {
        vec![PathBuf::from("wandb")]
    } else {
        args.paths.clone()
    };
    let settings = pb::Settings {
        base_url: Some(args.base_url.trim_end_matches('/').to_string()),
        api_key,
        program: Some("wandb-core sync".into()),
        // Compressed unless asked not to: cheaper than the bytes on a real
        // network.
        x_file_stream_no_gzip: Some(
            std::env::var("WANDB_X_FILE_STREAM_NO_GZIP")
                .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1")),
        ),
        // Advanced, as the Python SDK reads them from the environment.
        x_file_stream_max_bytes: env_number("WANDB_X_FILE_STREAM_MAX_BYTES")?,
        x_file_stream_transmit_interval: env_number("WANDB_X_FILE_STREAM_TRANSMIT_INTERVAL")?,
        ..Default::default()
    };
    let options = SyncOptions {
        settings,
        new_entity: args.entity.clone(),
        new_project: args.project.clone(),
        new_run_id: args.id.clone(),
        new_job_type: args.job_type.clone(),
        tag_replacements: tag_replacements(args.replace_tags.as_deref())?,
        live: args.live,
        stale_after: None,
        skip_synced: args.skip_synced,
        dry_run: args.dry_run,
        parallelism: args.parallel.max(1),
    };
    if args.watch {
        // Runs are found by the watcher's own scans, new ones included.
        return crate::watch::run(crate::watch::Watch {
            paths,
            cwd,
            options,
            discover: args.discover,
            poll: args.poll,
            stale: args.stale,
            delete_synced: args.delete_synced,
        });
    }
    let (targets, problems) = discover(&paths, &cwd);
    if targets.len() > 1 && args.id.is_some() {
        bail!("--id names one run, but {} runs were found", targets.len());
    }
    let session = Arc::new(SyncSession::new(targets, problems, options, &cwd));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let work = {
        let session = session.clone();
        runtime.spawn(async move { session.run().await })
    };
    let ui = Ui::new(&session, std::io::stderr().is_terminal());
    while !work.is_finished() {
        ui.update(&session);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = runtime.block_on(work);
    ui.update(&session);
    ui.finish();

    let (mut synced, mut skipped, mut failed) = (0, 0, 0);
    for r in &session.runs {
        match r.status() {
            RunStatus::Done { .. } => synced += 1,
            RunStatus::Skipped(_) => skipped += 1,
            _ => failed += 1,
        }
    }
    let errors = session
        .messages()
        .iter()
        .filter(|m| m.severity == Severity::Error)
        .count();
    if !args.dry_run {
        eprintln!("{synced} run(s) synced, {skipped} skipped, {failed} failed");
    }
    Ok(if failed > 0 || errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn env_number<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a number")),
        _ => Ok(None),
    }
}

/// `WANDB_API_KEY`, else the key `wandb login` stored in `~/.netrc`.
pub(crate) fn api_key(base_url: &str) -> anyhow::Result<String> {
    if let Ok(key) = std::env::var("WANDB_API_KEY")
        && !key.is_empty()
    {
        return Ok(key);
    }
    let host = base_url
        .split("://")
        .nth(1)
        .unwrap_or(base_url)
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_string();
    let netrc = std::env::var_os("NETRC")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc")));
    if let Some(text) = netrc.and_then(|p| std::fs::read_to_string(p).ok()) {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let mut i = 0;
        while i + 1 < tokens.len() {
            if tokens[i] == "machine" && tokens[i + 1] == host {
                let mut j = i + 2;
                while j + 1 < tokens.len() && tokens[j] != "machine" {
                    if tokens[j] == "password" {
                        return Ok(tokens[j + 1].to_string());
                    }
                    j += 1;
                }
            }
            i += 1;
        }
    }
    bail!("no API key: set WANDB_API_KEY (or run `wandb login`) for {base_url}")
}

fn tag_replacements(spec: Option<&str>) -> anyhow::Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    for pair in spec
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let Some((old, new)) = pair.split_once('=') else {
            bail!("--replace-tags: {pair:?} is not old=new");
        };
        map.insert(old.trim().to_string(), new.trim().to_string());
    }
    Ok(map)
}

/// Progress: a bar per run being synced and one overall on a terminal;
/// a line per run every few seconds otherwise.
struct Ui {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    bars: std::cell::RefCell<HashMap<usize, ProgressBar>>,
    last_plain: std::cell::Cell<Instant>,
}

impl Ui {
    fn new(session: &SyncSession, tty: bool) -> Self {
        let total: u64 = session.runs.iter().map(|r| r.total_bytes).sum();
        let (multi, overall) = if tty {
            let multi = MultiProgress::new();
            let overall = multi.add(ProgressBar::new(total));
            overall.set_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            overall.set_prefix("all runs");
            (Some(multi), Some(overall))
        } else {
            (None, None)
        };
        Self {
            multi,
            overall,
            bars: Default::default(),
            last_plain: std::cell::Cell::new(Instant::now()),
        }
    }

    fn print(&self, line: String) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn update(&self, session: &SyncSession) {
        for m in session.take_new_messages() {
            let level = match m.severity {
                Severity::Error => "ERROR ",
                Severity::Warning => "WARNING ",
                Severity::Info => "",
            };
            self.print(format!("wandb-core sync: {level}{}", m.content));
        }
        let mut done_bytes = 0;
        let plain_due = self.last_plain.get().elapsed() >= Duration::from_secs(2);
        for (i, r) in session.runs.iter().enumerate() {
            let read = r.progress.bytes_read.load(Relaxed);
            let status = r.status();
            done_bytes += match status {
                RunStatus::Waiting | RunStatus::Syncing => read,
                _ => r.total_bytes,
            };
            let label = r.label.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(multi) = &self.multi {
                let mut bars = self.bars.borrow_mut();
                match status {
                    RunStatus::Syncing => {
                        let bar = bars.entry(i).or_insert_with(|| {
                            let bar = multi.add(ProgressBar::new(r.total_bytes));
                            bar.set_style(
                                ProgressStyle::with_template(
                                    "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {msg}",
                                )
                                .expect("a valid template")
                                .progress_chars("=> "),
                            );
                            bar
                        });
                        bar.set_prefix(short(&label));
                        bar.set_length(r.total_bytes.max(read));
                        bar.set_position(read);
                        bar.set_message(format!(
                            "{} records, {} history rows",
                            r.progress.records.load(Relaxed),
                            r.progress.history_sent.load(Relaxed)
                        ));
                    }
                    _ => {
                        if let Some(bar) = bars.remove(&i) {
                            bar.finish_and_clear();
                        }
                    }
                }
            } else if plain_due && status == RunStatus::Syncing {
                let pct = if r.total_bytes > 0 {
                    read as f64 * 100.0 / r.total_bytes as f64
                } else {
                    100.0
                };
                eprintln!(
                    "wandb-core sync: [{label}] {pct:.0}% of {} bytes read, {} history rows sent",
                    r.total_bytes,
                    r.progress.history_sent.load(Relaxed)
                );
            }
        }
        if plain_due {
            self.last_plain.set(Instant::now());
        }
        if let Some(o) = &self.overall {
            o.set_position(done_bytes);
        }
    }

    fn finish(&self) {
        for bar in self.bars.borrow().values() {
            bar.finish_and_clear();
        }
        if let Some(o) = &self.overall {
            o.finish_and_clear();
        }
    }
}

fn short(label: &str) -> String {
    let tail = label.rsplit('/').next().unwrap_or(label);
    tail.chars().take(12).collect()
}
