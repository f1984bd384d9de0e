//! `sync_tensorboard`: TensorBoard logs mirrored into the run.
//!
//! The SDK patches TensorBoard's writers and sends a `tbrecord` for each
//! log directory one opens. For each, a thread follows the directory
//! (`wandb_tensorboard::logdir`), turns its events into rows
//! (`wandb_tensorboard::convert`) and hands them to the handler, which
//! logs them as `run.log` rows (`global_step` and `_timestamp` from the
//! events, `_step` the run's own); the tfevents files are linked into the
//! run's files for upload. A thread, not a task: following is file I/O.
//!
//! The run's exit waits for every directory to be read to its end, so
//! the last rows come before the exit record, as with W&B's service.
//! What a directory already holds when it is announced is read one
//! directory after another, and the directories are finished one after
//! another too: rows of logs written before the run (an import) come in
//! the same order every time, so a re-sync can skip what the server has.
//! Beyond it: directories are looked at every second (W&B's service: 5 s),
//! a run that finishes does not sit out the wait for a second directory,
//! and online the tfevents files are uploaded while the run runs (W&B's
//! TensorBoard tab otherwise stays empty until `finish()`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wandb_proto::pb;
use wandb_tensorboard::cloud;
use wandb_tensorboard::convert::{Converter, Row};
use wandb_tensorboard::logdir::{Filter, LogDir, Next};
use wandb_tensorboard::namespace::{self, GUESS_WAIT, RootGuesser};

use crate::settings::RunSettings;

/// How often a directory is looked at for more events.
const POLL: Duration = Duration::from_secs(1);
/// Online, a growing tfevents file is uploaded again at most this often.
const LIVE_UPLOAD: Duration = Duration::from_secs(30);
/// Rows and files waiting for the handler: a burst of events waits for the
/// handler here, not in memory.
pub(crate) const OUTPUT_QUEUE: usize = 64;

/// What a followed directory hands the handler.
#[derive(Debug)]
pub(crate) enum TbOutput {
    Row(Row),
    /// A file the run saves (`files` record): the run-relative path and
    /// whether it is the final (end) upload or a live one.
    File {
        path: String,
        policy: pb::files_item::PolicyType,
    },
    Warn(String),
    /// Directory `n` (in `tbrecord` order) is read to its end (after a
    /// stop, or given up).
    Done(usize),
}

struct Watcher {
    stop: flume::Sender<()>,
    /// Detached when dropped: a thread ends after its `Done`; joining
    /// would block the handler's task.
    _thread: JoinHandle<()>,
}

/// Whose turn it is to read what its directory already holds.
#[derive(Default)]
struct Turns {
    next: Mutex<usize>,
    changed: Condvar,
}

impl Turns {
    /// Waits for turn `n`; the turn passes on when the guard drops.
    fn take(self: &Arc<Self>, n: usize) -> TurnGuard {
        let mut next = self.next.lock().expect("turns lock");
        while *next < n {
            next = self.changed.wait(next).expect("turns lock");
        }
        TurnGuard(self.clone(), n)
    }
}

struct TurnGuard(Arc<Turns>, usize);

impl Drop for TurnGuard {
    fn drop(&mut self) {
        let mut next = self.0.next.lock().expect("turns lock");
        *next = (*next).max(self.1 + 1);
        self.0.changed.notify_all();
    }
}

/// The run's followed log directories.
pub(crate) struct Tensorboard {
    settings: Arc<RunSettings>,
    guesser: Arc<RootGuesser>,
    turns: Arc<Turns>,
    out: flume::Sender<TbOutput>,
    watchers: Vec<Watcher>,
}

impl Tensorboard {
    pub(crate) fn new(settings: Arc<RunSettings>, out: flume::Sender<TbOutput>) -> Self {
        Tensorboard {
            settings,
            guesser: Arc::default(),
            turns: Arc::default(),
            out,
            watchers: Vec::new(),
        }
    }

    /// Follows the directory a `tbrecord` names.
    pub(crate) fn track(&mut self, tb: pb::TbRecord) {
        let base = client_dir(&self.settings);
        // Known to the guesser at once: a second directory announced right
        // after the first decides both their prefixes.
        self.guesser.add(&dir_form(&tb.log_dir, &base));
        let (stop, stopped) = flume::bounded(1);
        let job = Follow {
            index: self.watchers.len(),
            turns: self.turns.clone(),
            tb,
            base,
            files_dir: self.settings.files_dir(),
            filter: Filter {
                host: self.settings.raw.host.clone(),
                start_time: self.settings.raw.x_start_time.map(|t| t.floor() as i64),
            },
            online: !self.settings.offline,
            runtime: tokio::runtime::Handle::try_current().ok(),
            guesser: self.guesser.clone(),
            out: self.out.clone(),
            stopped,
        };
        let thread = std::thread::Builder::new()
            .name(format!("tensorboard-{}", self.settings.run_id))
            .spawn(move || job.run())
            .expect("spawn tensorboard thread");
        self.watchers.push(Watcher {
            stop,
            _thread: thread,
        });
    }

    /// Directories followed (each answers one `Done`).
    pub(crate) fn count(&self) -> usize {
        self.watchers.len()
    }

    /// The run is finishing: no more directories will come.
    pub(crate) fn closing(&self) {
        self.guesser.close();
    }

    /// Tells directory `n` to read to its end and stop.
    pub(crate) fn stop(&self, n: usize) {
        if let Some(w) = self.watchers.get(n) {
            let _ = w.stop.try_send(());
        }
    }

    /// Every directory is done.
    pub(crate) fn clear(&mut self) {
        self.watchers.clear();
    }
}

/// Where the client's relative paths start: its working directory at
/// `wandb.init` (`root_dir`), which is the service's own only when the SDK
/// launched it.
fn client_dir(settings: &RunSettings) -> PathBuf {
    settings
        .raw
        .root_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// A log or root directory as the guesser and prefixes see it: absolute
/// and `/`-separated, or the bucket URL as given.
fn dir_form(dir: &str, base: &Path) -> String {
    if cloud::is_cloud(dir) {
        dir.trim_end_matches('/').to_string()
    } else {
        namespace::slash_form(Path::new(dir), base)
    }
}

/// One directory's thread.
struct Follow {
    /// Its place among the run's directories.
    index: usize,
    turns: Arc<Turns>,
    tb: pb::TbRecord,
    base: PathBuf,
    files_dir: PathBuf,
    filter: Filter,
    online: bool,
    /// Runs a bucket's requests (the service's runtime).
    runtime: Option<tokio::runtime::Handle>,
    guesser: Arc<RootGuesser>,
    out: flume::Sender<TbOutput>,
    stopped: flume::Receiver<()>,
}

/// Sends `Done` however the thread ends (a panic included): the run's
/// exit waits for it.
struct DoneOnDrop(flume::Sender<TbOutput>, usize);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(TbOutput::Done(self.1));
    }
}

impl Follow {
    fn run(self) {
        let _done = DoneOnDrop(self.out.clone(), self.index);
        let log_dir = dir_form(&self.tb.log_dir, &self.base);
        let (prefix, root) = self.names(&log_dir);
        // What is there already is read in turn (until the first `Idle`).
        let mut turn = Some(self.turns.take(self.index));
        let mut filter = self.filter.clone();
        if self.tb.ignore_hostname {
            filter.host = None;
        }
        if self.tb.ignore_timestamp {
            filter.start_time = None;
        }
        let mut dir = if cloud::is_cloud(&log_dir) {
            let bucket = self
                .runtime
                .clone()
                .ok_or_else(|| "no runtime for its requests".to_string())
                .and_then(|rt| cloud::open(&log_dir, rt));
            match bucket {
                Ok(b) => LogDir::with_source(Box::new(b), &filter),
                Err(e) => {
                    let _ = self.out.send(TbOutput::Warn(format!(
                        "TensorBoard log directory {log_dir}: {e}; not read"
                    )));
                    return;
                }
            }
        } else {
            LogDir::new(&log_dir, &filter)
        };
        let mut convert = Converter::new(prefix, &self.files_dir);
        let mut finishing = false;
        // Files being read, for live uploads: path, size last uploaded, when.
        let mut live: Vec<(String, PathBuf, u64, Instant)> = Vec::new();
        loop {
            let next = dir.poll();
            for w in dir
                .take_warnings()
                .into_iter()
                .chain(convert.take_warnings())
            {
                let _ = self.out.send(TbOutput::Warn(w));
            }
            match next {
                Ok(Next::Event(event)) => {
                    if let Some(row) = convert.event(*event) {
                        let _ = self.out.send(TbOutput::Row(row));
                    }
                }
                Ok(Next::File(path)) if !dir.is_local() => {
                    if self.tb.save {
                        let _ = self.out.send(TbOutput::Warn(format!(
                            "not saving tfevents file {} because it is in the cloud",
                            path.display()
                        )));
                    }
                }
                Ok(Next::File(path)) => {
                    if let Some(run_path) = self.save(&path, root.as_deref())
                        && self.online
                    {
                        live.push((run_path, path, 0, Instant::now()));
                    }
                }
                Ok(Next::Idle) => {
                    drop(turn.take());
                    if finishing {
                        break;
                    }
                    self.upload_grown(&mut live);
                    // Told to stop, or the run is gone: read to the end.
                    if self.stopped.recv_timeout(POLL).is_ok() || self.stopped.is_disconnected() {
                        finishing = true;
                    }
                }
                Err(e) => {
                    let _ = self.out.send(TbOutput::Warn(format!(
                        "TensorBoard log {log_dir}: {e}; no more of it is read"
                    )));
                    break;
                }
            }
        }
        if let Some(row) = convert.finish() {
            let _ = self.out.send(TbOutput::Row(row));
        }
        for w in convert.take_warnings() {
            let _ = self.out.send(TbOutput::Warn(w));
        }
    }

    /// The key prefix and the root tfevents files are saved relative to.
    fn names(&self, log_dir: &str) -> (String, Option<String>) {
        if let Some(ns) = &self.tb.namespace {
            let root =
                (!self.tb.root_dir.is_empty()).then(|| dir_form(&self.tb.root_dir, &self.base));
            return (ns.clone(), root);
        }
        let (root, guessed) = if !self.tb.root_dir.is_empty() {
            (
                Some(namespace::slash_form(
                    Path::new(&self.tb.root_dir),
                    &self.base,
                )),
                true,
            )
        } else {
            match self.guesser.root(GUESS_WAIT) {
                Some(root) => (Some(root), true),
                // One directory: keys unprefixed, files saved relative to
                // the client's working directory.
                None => (Some(namespace::slash_form(&self.base, &self.base)), false),
            }
        };
        if !guessed {
            return (String::new(), root);
        }
        let root_str = root.clone().unwrap_or_default();
        match namespace::trim(&root_str, log_dir) {
            Some(ns) => (ns, root),
            None => {
                let _ = self.out.send(TbOutput::Warn(format!(
                    "TensorBoard log directory {log_dir} is not under its root {root_str}; \
                     its keys are not prefixed"
                )));
                (String::new(), root)
            }
        }
    }

    /// Links a tfevents file into the run's files (uploaded at the end);
    /// returns its run path.
    fn save(&self, path: &Path, root: Option<&str>) -> Option<String> {
        if !self.tb.save {
            return None;
        }
        let file = namespace::slash_form(path, &self.base);
        let run_path = if !self.tb.save_path.is_empty() {
            let name = path.file_name()?.to_string_lossy().into_owned();
            let dir = self.tb.save_path.trim_matches('/');
            if dir.is_empty() || dir == "." {
                name
            } else {
                format!("{dir}/{name}")
            }
        } else {
            namespace::trim(root.unwrap_or_default(), &file)?
        };
        let safe = !run_path.is_empty()
            && Path::new(&run_path)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            let _ = self.out.send(TbOutput::Warn(format!(
                "tfevents file {file} would be saved as {run_path:?}, outside the run; not saved"
            )));
            return None;
        }
        let link = self.files_dir.join(&run_path);
        let linked = link
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::os::unix::fs::symlink(path, &link));
        if let Err(e) = linked {
            let _ = self.out.send(TbOutput::Warn(format!(
                "tfevents file {file} not saved as {}: {e}",
                link.display()
            )));
            return None;
        }
        let _ = self.out.send(TbOutput::File {
            path: run_path.clone(),
            policy: pb::files_item::PolicyType::End,
        });
        Some(run_path)
    }

    /// Online: files that grew since their last upload go again, at most
    /// every [`LIVE_UPLOAD`].
    fn upload_grown(&self, live: &mut [(String, PathBuf, u64, Instant)]) {
        for (run_path, path, sent, at) in live.iter_mut() {
            let size = std::fs::metadata(&*path).map_or(0, |m| m.len());
            let due = *sent == 0 || at.elapsed() >= LIVE_UPLOAD;
            if size > *sent && due {
                *sent = size;
                *at = Instant::now();
                let _ = self.out.send(TbOutput::File {
                    path: run_path.clone(),
                    policy: pb::files_item::PolicyType::Now,
                });
            }
        }
    }
}
