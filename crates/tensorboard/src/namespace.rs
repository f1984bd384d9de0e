//! Where a log directory's metrics go: the key prefix (namespace) and the
//! path its tfevents files are saved under in the run.
//!
//! Both are the log directory relative to a root: the `root_logdir` the
//! user gave, or else a guess from the run's log directories (their
//! longest common path once there are two: `logs/train` and `logs/eval`
//! give `train/…` and `eval/…`). A single directory waits a while for a
//! second; with none, the root is the working directory and the prefix
//! is empty, so a torch writer's `runs/Aug21_…_host` does not prefix every
//! key. This is how W&B's service names them; keys must match.

use std::path::{Component, Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a single log directory waits for a second before the root is
/// taken to be the working directory.
pub const GUESS_WAIT: Duration = Duration::from_secs(10);

/// `path` absolute (relative to `base`) and without `.`/`..`, as a
/// `/`-separated string.
pub fn slash_form(path: &Path, base: &Path) -> String {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    let mut clean = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other.as_os_str()),
        }
    }
    clean.to_string_lossy().replace('\\', "/")
}

/// `path` relative to `root` (both slash forms), without leading `/`; a
/// plain prefix match, as W&B's service does it. `None` when `path` is
/// not under `root`.
pub fn trim(root: &str, path: &str) -> Option<String> {
    let rest = path.strip_prefix(root)?;
    Some(rest.trim_start_matches('/').to_string())
}

/// The run's guess at the common root of its log directories.
#[derive(Default)]
pub struct RootGuesser {
    state: Mutex<Guess>,
    changed: Condvar,
}

#[derive(Default)]
struct Guess {
    dirs: Vec<String>,
    root: Option<String>,
    /// No more directories will come (the run is finishing).
    closed: bool,
}

impl RootGuesser {
    /// A log directory of the run (slash form). The root is inferred once
    /// there are two, and then stays.
    pub fn add(&self, dir: &str) {
        let mut g = self.state.lock().expect("guesser lock");
        if g.root.is_some() {
            return;
        }
        g.dirs.push(dir.to_string());
        if g.dirs.len() >= 2 {
            g.root = Some(common_prefix(&g.dirs));
            self.changed.notify_all();
        }
    }

    /// No more directories: waiters stop waiting (ours: a run finishing
    /// within the wait does not wait it out; no directory can come).
    pub fn close(&self) {
        self.state.lock().expect("guesser lock").closed = true;
        self.changed.notify_all();
    }

    /// The inferred root, waiting up to `wait` for it; `None` when there is
    /// no second directory by then.
    pub fn root(&self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        let mut g = self.state.lock().expect("guesser lock");
        loop {
            if g.root.is_some() || g.closed {
                return g.root.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            g = self.changed.wait_timeout(g, left).expect("guesser lock").0;
        }
    }
}

/// The longest common prefix of `/`-separated paths, by whole components.
fn common_prefix(dirs: &[String]) -> String {
    let mut parts: Vec<&str> = dirs[0].split('/').collect();
    for d in &dirs[1..] {
        let n = parts
            .iter()
            .zip(d.split('/'))
            .take_while(|(a, b)| *a == b)
            .count();
        parts.truncate(n);
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_common_paths_and_prefixes_are_plain() {
        let g = RootGuesser::default();
        g.add("/w/logs/train");
        assert_eq!(g.root(Duration::ZERO), None);
        g.add("/w/logs/eval");
        assert_eq!(g.root(Duration::ZERO).as_deref(), Some("/w/logs"));
        g.add("/elsewhere");
        assert_eq!(g.root(Duration::ZERO).as_deref(), Some("/w/logs"));
        assert_eq!(trim("/w/logs", "/w/logs/train").as_deref(), Some("train"));
        assert_eq!(trim("/tb", "/tb2/x").as_deref(), Some("2/x"));
        assert_eq!(trim("/a", "/b"), None);
        // The same directory twice: no prefix.
        let same = RootGuesser::default();
        same.add("/w/runs/x");
        same.add("/w/runs/x");
        assert_eq!(
            trim(&same.root(Duration::ZERO).unwrap(), "/w/runs/x").as_deref(),
            Some("")
        );
        let apart = RootGuesser::default();
        apart.add("/a");
        apart.add("/b");
        assert_eq!(apart.root(Duration::ZERO).as_deref(), Some(""));
    }

    #[test]
    fn a_closed_guesser_stops_the_wait() {
        let g = std::sync::Arc::new(RootGuesser::default());
        g.add("/w/one");
        let waiter = {
            let g = g.clone();
            std::thread::spawn(move || g.root(Duration::from_secs(60)))
        };
        g.close();
        assert_eq!(waiter.join().unwrap(), None);
    }

    #[test]
    fn paths_are_made_absolute_and_clean() {
        let base = Path::new("/work");
        assert_eq!(
            slash_form(Path::new("logs/./train/"), base),
            "/work/logs/train"
        );
        assert_eq!(slash_form(Path::new("../x"), base), "/x");
        assert_eq!(slash_form(Path::new("/abs/dir"), base), "/abs/dir");
    }
}
