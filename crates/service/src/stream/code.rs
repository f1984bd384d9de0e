//! The user's code, saved at run start as wandb-core saves it: with
//! `save_code`, a copy of the main script (`files/code/<program_relpath>`)
//! and the git state the run was started from (`files/diff.patch`, the
//! uncommitted changes against HEAD, and `files/diff_<sha>.patch`, against
//! the upstream commit), both uploaded at once.
//!
//! A thread of its own: it copies files and runs git, which can take a
//! while in a large repository, and the handler never blocks. What it
//! saved comes back to the stream as one `files` record. Failures are the
//! run's log's business only (wandb-core does not tell the user either):
//! a run without a patch is still a run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio::sync::mpsc;
use wandb_proto::pb;

use super::StreamInput;
use crate::online::uploads::safe_relative;
use crate::runlog::RunLog;
use crate::settings::RunSettings;

/// What the handler starts at run start (once).
pub(crate) struct CodeSaver {
    pub settings: Arc<RunSettings>,
    pub log: RunLog,
    /// The stream's input, where the `files` record goes.
    pub to: mpsc::WeakSender<StreamInput>,
}

impl CodeSaver {
    /// Saves what the settings ask for on a thread.
    pub fn start(self) {
        spawn(self.settings, self.log, self.to)
    }
}

fn spawn(settings: Arc<RunSettings>, log: RunLog, to: mpsc::WeakSender<StreamInput>) {
    let s = &settings.raw;
    if !s.save_code.unwrap_or(false)
        || s.x_disable_machine_info.unwrap_or(false)
        || !settings.primary
    {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name(format!("code-{}", settings.run_id))
        .spawn(move || {
            let saved = save(&settings, &log);
            if saved.is_empty() {
                return;
            }
            let record = pb::FilesRecord {
                files: saved
                    .into_iter()
                    .map(|path| pb::FilesItem {
                        path,
                        r#type: pb::files_item::FileType::Wandb as i32,
                        policy: pb::files_item::PolicyType::Now as i32,
                    })
                    .collect(),
                ..Default::default()
            };
            if let Some(tx) = to.upgrade() {
                // A plain thread may block: the handler drains its input.
                let _ = tx.blocking_send(StreamInput::SavedFiles(record));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("code: cannot start the thread: {e}");
    }
}

/// Saves the code and the patches; returns their paths under `files/`.
fn save(settings: &RunSettings, log: &RunLog) -> Vec<String> {
    let files = settings.files_dir();
    let mut saved = Vec::new();
    match copy_program(settings, &files) {
        Ok(path) => saved.push(path),
        Err(why) => log.warn(&format!("code: not saved: {why}")),
    }
    if !settings.raw.disable_git.unwrap_or(false) {
        saved.extend(save_patches(settings, &files, log));
    }
    saved
}

/// Copies the main script to `files/code/<program_relpath>` (once: a
/// resumed run keeps the first copy).
fn copy_program(settings: &RunSettings, files: &Path) -> Result<String, String> {
    let s = &settings.raw;
    let rel = s
        .program_relpath
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or("the program's relative path is empty")?;
    let rel = safe_relative(rel).ok_or_else(|| format!("{rel:?} is not a relative path"))?;
    let source = s
        .program_abspath
        .as_deref()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .ok_or("the program's absolute path does not exist")?;
    let target = files.join("code").join(&rel);
    if !target.exists() {
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::copy(&source, &target).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    Ok(format!("code/{rel}"))
}

/// `diff.patch` and `diff_<sha>.patch`, each written only when git gives a
/// non-empty diff.
fn save_patches(settings: &RunSettings, files: &Path, log: &RunLog) -> Vec<String> {
    let root = match settings.raw.git_root.as_deref().filter(|r| !r.is_empty()) {
        Some(root) => PathBuf::from(root),
        None => std::env::current_dir().unwrap_or_default(),
    };
    // As wandb-core, the root itself must be the repository (no search of
    // the parents).
    if !root.join(".git").exists() {
        log.info(&format!("code: no git repository at {}", root.display()));
        return Vec::new();
    }
    let git = Git { root: &root };
    let mut saved = Vec::new();
    let mut patch = |against: &str, name: String| match git.diff(against) {
        Ok(diff) if diff.is_empty() => log.info(&format!("code: no diff against {against}")),
        Ok(diff) => match std::fs::write(files.join(&name), diff) {
            Ok(()) => saved.push(name),
            Err(e) => log.warn(&format!("code: cannot write {name}: {e}")),
        },
        Err(e) => log.warn(&format!("code: git diff {against}: {e}")),
    };
    patch("HEAD", "diff.patch".into());
    let fork_point = !settings.raw.disable_git_fork_point.unwrap_or(false);
    match git.upstream_commit(fork_point) {
        Some(sha) => patch(&sha, format!("diff_{sha}.patch")),
        None => log.info("code: no upstream commit; no upstream patch"),
    }
    saved
}

struct Git<'a> {
    root: &'a Path,
}

impl Git<'_> {
    /// Runs git in the repository; its output when it succeeds.
    fn run(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.root)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(out.stdout)
    }

    fn text(&self, args: &[&str]) -> Option<String> {
        let out = self.run(args).ok()?;
        let text = String::from_utf8(out).ok()?.trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    /// The changes against `commit`, submodules' included. wandb-core
    /// writes git's stderr into the patch too; ours keeps the patch a
    /// patch.
    fn diff(&self, commit: &str) -> Result<Vec<u8>, String> {
        self.run(&["diff", commit, "--submodule=diff"])
    }

    /// The upstream commit the patch is taken against: the upstream
    /// branch's head, or (with `fork_point`) where this branch left its
    /// upstream, or any tracked branch. Only a full hex SHA is returned: it
    /// becomes part of a file name.
    fn upstream_commit(&self, fork_point: bool) -> Option<String> {
        let sha = if !fork_point {
            self.text(&["rev-parse", "@{upstream}"])?
        } else {
            // A detached HEAD has no fork point.
            self.text(&["symbolic-ref", "HEAD"])?;
            match self.text(&["rev-parse", "--abbrev-ref", "@{upstream}"]) {
                Some(upstream) => self.text(&["merge-base", "HEAD", &upstream])?,
                None => {
                    let tracked =
                        self.text(&["for-each-ref", "--format=%(upstream:short)", "refs/heads/"])?;
                    let mut branches: Vec<&str> =
                        tracked.lines().filter(|l| !l.is_empty()).collect();
                    branches.sort_unstable();
                    branches.dedup();
                    if branches.is_empty() {
                        return None;
                    }
                    let mut args = vec!["merge-base", "HEAD"];
                    args.extend(branches);
                    self.text(&args)?
                }
            }
        };
        (sha.len() >= 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    fn settings(root: &Path, run_dir: &Path, fork_point: bool) -> RunSettings {
        let raw = pb::Settings {
            run_id: Some("code1".into()),
            sync_file: Some(run_dir.join("run-code1.wandb").display().to_string()),
            save_code: Some(true),
            git_root: Some(root.display().to_string()),
            program_relpath: Some("src/train.py".into()),
            program_abspath: Some(root.join("src/train.py").display().to_string()),
            disable_git_fork_point: Some(!fork_point),
            ..Default::default()
        };
        RunSettings::from_proto(raw, "code1").unwrap()
    }

    #[test]
    fn saves_the_program_and_both_patches() {
        let tmp = tempfile::tempdir().unwrap();
        let (origin, repo, run) = (
            tmp.path().join("origin"),
            tmp.path().join("repo"),
            tmp.path().join("run"),
        );
        std::fs::create_dir_all(repo.join("src")).unwrap();
        std::fs::create_dir_all(run.join("files")).unwrap();
        git(
            tmp.path(),
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                origin.to_str().unwrap(),
            ],
        );
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("src/train.py"), "print(1)\n").unwrap();
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-qm", "one"]);
        git(
            &repo,
            &["remote", "add", "origin", origin.to_str().unwrap()],
        );
        git(&repo, &["push", "-q", "-u", "origin", "main"]);
        std::fs::write(repo.join("src/train.py"), "print(2)\n").unwrap();
        git(&repo, &["commit", "-qam", "two"]);
        std::fs::write(repo.join("src/train.py"), "print(3)\n").unwrap();

        for fork_point in [false, true] {
            let _ = std::fs::remove_dir_all(run.join("files"));
            std::fs::create_dir_all(run.join("files")).unwrap();
            let s = settings(&repo, &run, fork_point);
            let log = RunLog::open("code1", None);
            let saved = save(&s, &log);
            assert_eq!(saved.len(), 3, "{saved:?}");
            assert_eq!(saved[0], "code/src/train.py");
            let files = run.join("files");
            assert_eq!(
                std::fs::read_to_string(files.join(&saved[0])).unwrap(),
                "print(3)\n"
            );
            let head = std::fs::read_to_string(files.join("diff.patch")).unwrap();
            assert!(
                head.contains("-print(2)") && head.contains("+print(3)"),
                "{head}"
            );
            let upstream = &saved[2];
            assert!(upstream.starts_with("diff_") && upstream.ends_with(".patch"));
            let up = std::fs::read_to_string(files.join(upstream)).unwrap();
            assert!(up.contains("-print(1)") && up.contains("+print(3)"), "{up}");
        }
    }

    #[test]
    fn outside_a_repository_only_the_program_is_saved() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("src")).unwrap();
        std::fs::create_dir_all(tmp.path().join("run/files")).unwrap();
        std::fs::write(tmp.path().join("src/train.py"), "x\n").unwrap();
        let mut s = settings(tmp.path(), &tmp.path().join("run"), true);
        let log = RunLog::open("code1", None);
        assert_eq!(save(&s, &log), ["code/src/train.py"]);
        // A path that leaves the files directory is refused.
        let mut raw = s.raw.clone();
        raw.program_relpath = Some("../../etc/passwd".into());
        s = RunSettings::from_proto(raw, "code1").unwrap();
        assert!(save(&s, &log).is_empty());
    }
}
