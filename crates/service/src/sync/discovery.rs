//! How `sync --watch` learns of new runs: by scanning the directories
//! again and again, or by inotify telling it that something appeared.
//!
//! Scans work everywhere, but their cost grows with the runs kept and they
//! see a new run only at the next one. inotify costs nothing while nothing
//! happens and wakes the watcher at once, but on network filesystems (NFS,
//! Lustre, GPFS, …) it sees only this machine's writes, never the compute
//! nodes': there only scans work. `auto` picks by the filesystem each
//! directory is on. Only the directories a scan walks without finding a
//! log are watched (the `wandb/` directories and those above them, a
//! handful), never run directories: the number of watches stays small
//! however many runs there are. A full scan still runs now and then, in
//! case an event was lost.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::paths::{RunTarget, walk};

/// With inotify, a full scan still runs this often: a safety net for an
/// event the kernel dropped, not the way runs are found.
const SAFETY_SCAN: Duration = Duration::from_secs(60);

/// How the watcher finds new runs (`--discover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryMode {
    /// inotify where every directory is on a local filesystem, else scans.
    Auto,
    Inotify,
    Poll,
}

impl std::str::FromStr for DiscoveryMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "inotify" => Ok(Self::Inotify),
            "poll" => Ok(Self::Poll),
            _ => Err(format!("{s:?}: expected auto, inotify or poll")),
        }
    }
}

/// Finds the runs under some directories, scanning when it is time to.
pub struct Discovery {
    paths: Vec<PathBuf>,
    cwd: PathBuf,
    poll: Duration,
    next_scan: Instant,
    notify: Option<Notify>,
    notes: Vec<String>,
}

struct Notify {
    watcher: RecommendedWatcher,
    /// Set by inotify's thread when something appeared.
    woken: Arc<AtomicBool>,
    watched: HashSet<PathBuf>,
}

impl Discovery {
    /// `poll` is the scan interval when scanning.
    pub fn new(mode: DiscoveryMode, paths: Vec<PathBuf>, cwd: PathBuf, poll: Duration) -> Self {
        let mut d = Self {
            paths,
            cwd,
            poll,
            next_scan: Instant::now(),
            notify: None,
            notes: Vec::new(),
        };
        let use_inotify = match mode {
            DiscoveryMode::Poll => false,
            DiscoveryMode::Inotify => true,
            DiscoveryMode::Auto => match d.paths.iter().find_map(|p| network_fs(&d.resolve(p))) {
                Some((path, fs)) => {
                    d.notes.push(format!(
                        "{} is on {fs}, where inotify does not see other machines' writes: scanning",
                        path.display()
                    ));
                    false
                }
                None => true,
            },
        };
        if use_inotify {
            let woken = Arc::new(AtomicBool::new(false));
            let flag = woken.clone();
            match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Something appeared (a run directory, a log, a rename into
                // place), or the kernel lost events: look again.
                let look = match &event {
                    Ok(e) => {
                        e.need_rescan()
                            || matches!(
                                e.kind,
                                EventKind::Create(_)
                                    | EventKind::Modify(notify::event::ModifyKind::Name(_))
                            )
                    }
                    Err(_) => true,
                };
                if look {
                    flag.store(true, Ordering::SeqCst);
                }
            }) {
                Ok(watcher) => {
                    d.notify = Some(Notify {
                        watcher,
                        woken,
                        watched: HashSet::new(),
                    })
                }
                Err(e) => d.notes.push(format!("inotify unavailable ({e}): scanning")),
            }
        }
        d
    }

    /// How runs are found, for the user.
    pub fn describe(&self) -> String {
        match &self.notify {
            Some(_) => format!(
                "new runs seen through inotify (a full scan every {})",
                humantime::format_duration(SAFETY_SCAN)
            ),
            None => format!("a scan every {}", humantime::format_duration(self.poll)),
        }
    }

    /// Whether inotify is in use (it may have given up since).
    pub fn uses_inotify(&self) -> bool {
        self.notify.is_some()
    }

    /// What happened that the user should hear of (a fall-back to scans).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// The runs under the directories, if it is time to look: at start,
    /// when inotify saw something, and every scan interval.
    pub fn scan_if_due(&mut self) -> Option<Vec<RunTarget>> {
        let woken = self
            .notify
            .as_ref()
            .is_some_and(|n| n.woken.swap(false, Ordering::SeqCst));
        if !woken && Instant::now() < self.next_scan {
            return None;
        }
        let interval = if self.notify.is_some() {
            SAFETY_SCAN
        } else {
            self.poll
        };
        self.next_scan = Instant::now() + interval;
        let mut searched = Vec::new();
        // The walk names every directory it searched without finding a
        // log, the paths themselves included: where new runs can appear.
        let (runs, _) = walk(&self.paths, &self.cwd, &mut searched);
        if self.watch(searched) {
            // A run may have appeared in a directory between the walk and
            // its watch: look once more, now that it is watched.
            self.next_scan = Instant::now();
        }
        Some(runs)
    }

    /// Watches directories not watched yet; whether any was added.
    fn watch(&mut self, dirs: Vec<PathBuf>) -> bool {
        let Some(n) = &mut self.notify else {
            return false;
        };
        let mut added = false;
        for dir in dirs {
            if n.watched.contains(&dir) {
                continue;
            }
            match n.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    n.watched.insert(dir);
                    added = true;
                }
                Err(e) => {
                    // Out of watches (fs.inotify.max_user_watches), or a
                    // directory gone: scans find everything still.
                    self.notes.push(format!(
                        "inotify cannot watch {} ({e}): scanning every {} instead",
                        dir.display(),
                        humantime::format_duration(self.poll)
                    ));
                    self.notify = None;
                    return false;
                }
            }
        }
        added
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.cwd.join(p)
        }
    }
}

/// The network filesystem `path` (or the nearest existing directory above
/// it) is on, if it is on one: where inotify misses other machines' writes.
fn network_fs(path: &Path) -> Option<(PathBuf, &'static str)> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let st = rustix::fs::statfs(existing).ok()?;
    // f_type's width differs between platforms; the magic numbers are 32
    // bits (linux/magic.h and the filesystems' own headers).
    let name = network_fs_name(st.f_type as u32)?;
    Some((path.to_path_buf(), name))
}

fn network_fs_name(magic: u32) -> Option<&'static str> {
    Some(match magic {
        0x6969 => "NFS",
        0x0BD0_0BD0 => "Lustre",
        0x4750_4653 => "GPFS (Spectrum Scale)",
        0x1983_0326 => "BeeGFS",
        0x00C3_6400 => "CephFS",
        0xFF53_4D42 | 0xFE53_4D42 | 0x517B => "SMB/CIFS",
        0xAAD7_AAEA => "PanFS",
        0x0102_1997 => "9p",
        0x5346_414F | 0x6B41_4653 => "AFS",
        0x0116_1970 => "GFS2",
        0x7461_636F => "OCFS2",
        0x2003_0528 => "OrangeFS",
        // sshfs, gcsfuse, s3fs, JuiceFS and other FUSE mounts: often
        // remote, and inotify on them is unreliable.
        0x6573_5546 => "a FUSE filesystem",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_filesystems_are_told_from_local_ones() {
        assert_eq!(network_fs_name(0x6969), Some("NFS"));
        assert_eq!(network_fs_name(0x0BD0_0BD0), Some("Lustre"));
        // ext4, xfs, btrfs, tmpfs, overlayfs.
        for local in [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994, 0x794C_7630] {
            assert_eq!(network_fs_name(local), None, "{local:#x}");
        }
    }

    fn make_run(dir: &Path, id: &str) {
        let run = dir.join(format!("offline-run-20261207_000000-{id}"));
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join(format!("run-{id}.wandb")), b"").unwrap();
    }

    /// Waits up to 10 s for a scan that finds `n` runs.
    fn runs_within(d: &mut Discovery, n: usize) -> Option<usize> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(runs) = d.scan_if_due() {
                last = Some(runs.len());
                if runs.len() == n {
                    return last;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last
    }

    #[test]
    fn inotify_finds_new_runs_long_before_the_next_scan() {
        let root = tempfile::tempdir().unwrap();
        // The wandb directory does not exist yet when watching starts.
        let mut d = Discovery::new(
            DiscoveryMode::Inotify,
            vec![PathBuf::from(".")],
            root.path().to_path_buf(),
            Duration::from_secs(3600),
        );
        assert!(d.uses_inotify(), "{:?}", d.take_notes());
        assert_eq!(d.scan_if_due().map(|r| r.len()), Some(0));
        // Once more at once, now that the directory is watched; then
        // nothing happens, so no scan (the next is an hour away).
        assert_eq!(d.scan_if_due().map(|r| r.len()), Some(0));
        assert!(d.scan_if_due().is_none());
        let wandb = root.path().join("wandb");
        std::fs::create_dir(&wandb).unwrap();
        make_run(&wandb, "a");
        assert_eq!(runs_within(&mut d, 1), Some(1));
        make_run(&wandb, "b");
        assert_eq!(runs_within(&mut d, 2), Some(2));
        // Run directories are not watched; the root and wandb/ are.
        let watched = &d.notify.as_ref().unwrap().watched;
        assert_eq!(watched.len(), 2, "{watched:?}");
        assert!(d.take_notes().is_empty());
    }

    #[test]
    fn polling_finds_runs_only_when_a_scan_is_due() {
        let root = tempfile::tempdir().unwrap();
        let mut d = Discovery::new(
            DiscoveryMode::Poll,
            vec![root.path().to_path_buf()],
            root.path().to_path_buf(),
            Duration::from_millis(300),
        );
        assert!(!d.uses_inotify());
        assert_eq!(d.scan_if_due().map(|r| r.len()), Some(0));
        make_run(root.path(), "a");
        assert!(d.scan_if_due().is_none(), "not before the interval");
        assert_eq!(runs_within(&mut d, 1), Some(1));
    }

    #[test]
    fn auto_uses_inotify_on_a_local_filesystem() {
        let root = tempfile::tempdir().unwrap();
        let d = Discovery::new(
            DiscoveryMode::Auto,
            vec![root.path().to_path_buf()],
            root.path().to_path_buf(),
            Duration::from_secs(2),
        );
        // The tests' temporary directory is local here (and in CI).
        assert_eq!(
            d.uses_inotify(),
            network_fs(root.path()).is_none(),
            "{}",
            d.describe()
        );
    }
}
