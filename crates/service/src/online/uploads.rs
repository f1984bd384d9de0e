//! Run-file uploads: files of the run's `files/` directory go to the
//! backend through CreateRunFiles (upload URLs for a batch of paths,
//! collected for a few seconds) and parallel PUTs. Each success is reported
//! to the file stream (`uploaded`). Policies: `now` (the next batch), `end`
//! (at finish), `live` (again whenever the file changed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::events::Events;
use super::filestream::FsMsg;
use crate::backend::Backend;
use crate::runlog::RunLog;
use crate::settings::IgnoreGlobs;

/// How long paths are collected before one CreateRunFiles.
const BATCH_DELAY: Duration = Duration::from_secs(5);
/// PUTs in flight at once.
const PARALLEL_UPLOADS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Now,
    End,
    Live,
}

#[derive(Debug)]
pub enum UpMsg {
    File {
        path: String,
        policy: Policy,
    },
    /// Upload what is pending, `end` and changed `live` files and `also`,
    /// then answer.
    Finish {
        also: Vec<String>,
        done: oneshot::Sender<()>,
    },
}

/// Run files uploaded so far, by kind, for the SDK's progress and its
/// "Synced N W&B file(s), M media file(s)…" line.
#[derive(Debug, Default)]
pub struct UploadStats {
    pub wandb: AtomicI32,
    pub media: AtomicI32,
    pub other: AtomicI32,
    pub uploaded_bytes: AtomicI64,
    pub total_bytes: AtomicI64,
}

impl UploadStats {
    fn uploaded(&self, path: &str, first_time: bool, bytes: u64) {
        self.uploaded_bytes
            .fetch_add(bytes as i64, Ordering::Relaxed);
        if !first_time {
            return;
        }
        let kind = if path.starts_with("media/") {
            &self.media
        } else if WANDB_FILES.contains(&path) {
            &self.wandb
        } else {
            &self.other
        };
        kind.fetch_add(1, Ordering::Relaxed);
    }

    /// The SDK's view of them.
    pub fn file_counts(&self) -> wandb_proto::pb::FileCounts {
        wandb_proto::pb::FileCounts {
            wandb_count: self.wandb.load(Ordering::Relaxed),
            media_count: self.media.load(Ordering::Relaxed),
            artifact_count: 0,
            other_count: self.other.load(Ordering::Relaxed),
        }
    }

    pub fn pusher_stats(&self) -> wandb_proto::pb::FilePusherStats {
        wandb_proto::pb::FilePusherStats {
            uploaded_bytes: self.uploaded_bytes.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            deduped_bytes: 0,
        }
    }
}

/// The files the service itself writes for a run.
const WANDB_FILES: &[&str] = &[
    "wandb-metadata.json",
    "requirements.txt",
    "config.yaml",
    "wandb-summary.json",
    "output.log",
    "diff.patch",
];

/// Where the run is on the server.
#[derive(Debug, Clone)]
pub struct RunPath {
    pub entity: String,
    pub project: String,
    pub name: String,
}

/// What stays as it is in a path segment (RFC 3986's unreserved).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl RunPath {
    /// `entity/project/name`, each percent-encoded, for URL paths.
    pub fn url_segments(&self) -> String {
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string();
        format!(
            "{}/{}/{}",
            enc(&self.entity),
            enc(&self.project),
            enc(&self.name)
        )
    }
}

/// A path the client named, if it stays inside the files directory.
pub fn safe_relative(path: &str) -> Option<String> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() {
        return None;
    }
    let ok = p.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| path.replace('\\', "/"))
}

/// A file's size and modification time when it was uploaded.
type Stamp = (u64, Option<SystemTime>);

/// Uploads the files of one run.
pub struct Uploader {
    pub backend: Backend,
    pub run: RunPath,
    pub files_dir: PathBuf,
    /// Where an uploaded file is announced (`uploaded` in the file stream).
    pub fs: mpsc::Sender<FsMsg>,
    pub log: RunLog,
    pub stats: Arc<UploadStats>,
    pub events: Events,
    /// What was uploaded, by path: (size, modified) at that time.
    pub done: BTreeMap<String, Stamp>,
    /// `ignore_globs`: never uploaded, whoever asks.
    pub ignore: IgnoreGlobs,
}

impl Uploader {
    /// A failure the user must hear of (after retries): logged and shown.
    fn fail(&self, message: String) {
        self.log.error(&message);
        self.events.warn(message);
    }

    fn stamp(&self, path: &str) -> Option<Stamp> {
        let meta = std::fs::metadata(self.files_dir.join(path)).ok()?;
        meta.is_file().then(|| (meta.len(), meta.modified().ok()))
    }

    /// Uploads the paths that exist and changed since their last upload.
    async fn upload(&mut self, paths: BTreeSet<String>) {
        let paths: Vec<(String, Stamp)> = paths
            .into_iter()
            .filter(|p| !self.ignore.matches(p))
            .filter_map(|p| self.stamp(&p).map(|s| (p, s)))
            .filter(|(p, s)| self.done.get(p) != Some(s))
            .collect();
        if paths.is_empty() {
            return;
        }
        let bytes: u64 = paths.iter().map(|(_, (size, _))| size).sum();
        self.stats
            .total_bytes
            .fetch_add(bytes as i64, Ordering::Relaxed);
        let names: Vec<String> = paths.iter().map(|(p, _)| p.clone()).collect();
        let urls = match self
            .backend
            .create_run_files(&self.run.entity, &self.run.project, &self.run.name, &names)
            .await
        {
            Ok(u) => u,
            Err(e) => {
                self.fail(format!("cannot upload {} run file(s): {e}", names.len()));
                return;
            }
        };
        if urls.files.len() != names.len() {
            self.fail(format!(
                "CreateRunFiles answered {} URLs for {} files; nothing uploaded",
                urls.files.len(),
                names.len()
            ));
            return;
        }
        let jobs =
            urls.files.into_iter().zip(paths).filter_map(
                |((name, url), (path, stamp))| match url {
                    Some(url) => Some((name, url, path, stamp)),
                    None => {
                        self.log.warn(&format!(
                            "the server gave no upload URL for {path}; skipped"
                        ));
                        None
                    }
                },
            );
        let backend = self.backend.clone();
        let headers = urls.headers;
        let dir = self.files_dir.clone();
        let results: Vec<(String, Stamp, Result<(), String>)> = futures::stream::iter(jobs)
            .map(|(name, url, path, stamp)| {
                let (backend, headers, file) = (backend.clone(), headers.clone(), dir.join(&path));
                async move {
                    let _op = backend.operations.start(format!("uploading {path}"));
                    let result = match tokio::fs::read(&file).await {
                        Ok(content) => backend
                            .upload(
                                &url,
                                &headers,
                                Bytes::from(content),
                                &format!("upload of {name}"),
                            )
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
                    };
                    (path, stamp, result)
                }
            })
            .buffer_unordered(PARALLEL_UPLOADS)
            .collect()
            .await;
        for (path, stamp, result) in results {
            match result {
                Ok(()) => {
                    let first_time = self.done.insert(path.clone(), stamp).is_none();
                    self.stats.uploaded(&path, first_time, stamp.0);
                    let _ = self.fs.send(FsMsg::Uploaded(path)).await;
                }
                Err(e) => self.fail(format!("file not uploaded: {e}")),
            }
        }
    }
}

/// Uploads what `rx` asks for, batching paths for [`BATCH_DELAY`], until
/// `Finish`.
pub async fn run(mut up: Uploader, mut rx: mpsc::Receiver<UpMsg>) {
    let mut batch: BTreeSet<String> = BTreeSet::new();
    let mut later: BTreeSet<String> = BTreeSet::new();
    let mut live: BTreeSet<String> = BTreeSet::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let msg = match deadline {
            Some(d) => tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep_until(d) => {
                    deadline = None;
                    let mut now: BTreeSet<String> = std::mem::take(&mut batch);
                    now.extend(live.iter().cloned());
                    up.upload(now).await;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        match msg {
            None => return,
            Some(UpMsg::File { path, policy }) => {
                let Some(path) = safe_relative(&path) else {
                    up.log.warn(&format!(
                        "file {path:?} is outside the run's files directory; not uploaded"
                    ));
                    continue;
                };
                match policy {
                    Policy::Now => {
                        batch.insert(path);
                    }
                    Policy::End => {
                        later.insert(path);
                    }
                    Policy::Live => {
                        live.insert(path.clone());
                        batch.insert(path);
                    }
                }
                deadline.get_or_insert_with(|| Instant::now() + BATCH_DELAY);
            }
            Some(UpMsg::Finish { also, done }) => {
                let mut all = std::mem::take(&mut batch);
                all.extend(std::mem::take(&mut later));
                all.extend(live.iter().cloned());
                all.extend(also.into_iter().filter_map(|p| safe_relative(&p)));
                up.upload(all).await;
                let _ = done.send(());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_stay_out() {
        assert_eq!(
            safe_relative("media/images/a.png").as_deref(),
            Some("media/images/a.png")
        );
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "./x"] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }
}
