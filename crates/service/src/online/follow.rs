//! The follower: reads the run's transaction log as the writer commits it
//! (or a finished log, for sync) and turns each record into backend
//! traffic until the exit record, then finishes the run on the server.
//!
//! History rows, system samples, the summary and console lines go to the
//! file stream; run files to the uploader; parameter and config changes
//! into one debounced UpsertBucket; artifacts into jobs beside it.
//!
//! Long for one file, but one concept: the follower's state machine and
//! what each record does to it.
//!
//! Why it applies summary, config and console records itself instead of
//! taking the handler's state: the handler's summary already travels in
//! the log (summary records, at most one a second, as wandb-core writes
//! them), so applying them costs nothing measurable (no follower symbol in
//! a profile of 100k online rows); the follower reads the log at the
//! backend's pace, so a side channel from the handler would have to grow
//! without bound or hold the client whenever the backend is slow; and
//! `sync` has no handler at all. The console emulator does run twice
//! (here and in the run files writer), at about 95 MB/s: 70 ms per 100k
//! coloured console lines.

use std::time::Duration;

use prost::Message;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wandb_proto::json::Value as JValue;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::view::{HistoryView, ItemView};
use wandb_store::txlog::{LogReader, ReadError};

use super::exits::Exits;
use super::filestream::{self, FileStreamConfig, FsMsg};
use super::lines::{ConsoleLines, events_line, history_line};
use super::requests::{ArtifactJobs, JobContext, refuse_artifacts};
use super::uploads::{self, Policy, RunPath, UpMsg};
use super::upsert::{config_json, metadata_json, upsert_vars};
use super::{InitResult, OnlineCtl, Sender};
use crate::backend::BackendError;
use crate::respond::Reply;
use crate::runstate::config::RunConfig;
use crate::runstate::metrics::Metrics;
use crate::runstate::summary::item_path;
use wandb_proto::tree::Tree;

/// Changes to the run wait this long for company before an UpsertBucket.
const UPSERT_DEBOUNCE: Duration = Duration::from_secs(5);

/// What following a log ended with.
pub(super) struct Followed {
    pub exit_synthesized: bool,
    pub torn: bool,
    pub file_stream_ok: bool,
    /// The run is finished on the server with everything in its log.
    pub sent: bool,
}

/// The run as read back so far.
struct FollowState {
    run: pb::RunRecord,
    storage_id: String,
    config: RunConfig,
    metrics: Metrics,
    summary: Tree,
    summary_dirty: bool,
    console: ConsoleLines,
    params_dirty: bool,
    config_dirty: bool,
    upsert_due: Option<Instant>,
    environment: Vec<pb::EnvironmentRecord>,
    seen_run: bool,
    exit_code: Option<i32>,
    /// The exit record said the run is not complete.
    not_complete: bool,
    exit_synthesized: bool,
    torn: bool,
    skip: Skip,
    artifacts: ArtifactJobs,
    /// Shared mode: history rows this writer has read from its log; the
    /// next one goes out as this `_step` (the log's rows have none).
    shared_rows: i64,
}

/// Lines the server already has (a continued sync): not sent again.
#[derive(Debug, Default)]
struct Skip {
    history: i64,
    events: i64,
    console: u64,
}

impl FollowState {
    fn schedule_upsert(&mut self) {
        self.upsert_due
            .get_or_insert_with(|| Instant::now() + UPSERT_DEBOUNCE);
    }
}

/// The run's file stream and uploader, and how they end.
struct Pipes {
    /// The server takes console lines in the structured form
    /// (STRUCTURED_CONSOLE_LOGS).
    structured_console: bool,
    fs: mpsc::Sender<FsMsg>,
    fs_task: JoinHandle<bool>,
    up: mpsc::Sender<UpMsg>,
    up_task: JoinHandle<()>,
    /// Stops both tasks when the follower is dropped (`finish_timeout`).
    _stop: AbortOnDrop,
}

struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

impl Pipes {
    /// Waits for the uploads, then sends what the file stream holds:
    /// marking the run complete with `exit_code`, or only flushing when
    /// the run stays unfinished. Returns whether the file stream is
    /// healthy.
    async fn close(self, exit_code: Option<i32>) -> bool {
        drop(self.up);
        let _ = self.up_task.await;
        let (done_tx, done_rx) = oneshot::channel();
        let last = match exit_code {
            Some(code) => FsMsg::Complete(code, done_tx),
            None => FsMsg::Flush(done_tx),
        };
        let _ = self.fs.send(last).await;
        let healthy = done_rx.await.unwrap_or(false);
        drop(self.fs);
        let _ = self.fs_task.await;
        healthy
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

impl Sender {
    /// Follows the log until the exit record, then finishes the run; or,
    /// when `finish_timeout` runs out first, stops where it is.
    pub(super) async fn follow(
        mut self,
        init: InitResult,
        first_run: pb::RunRecord,
        mut ctl: mpsc::Receiver<OnlineCtl>,
        exit_replies: Vec<Option<Reply>>,
    ) -> Followed {
        let exits = Exits::new(exit_replies);
        // `wandb sync` takes as long as it takes, as with wandb-core.
        let timeout = match self.progress {
            Some(_) => None,
            None => self
                .settings
                .raw
                .finish_timeout
                .filter(|t| t.is_finite() && *t > 0.0)
                .map(Duration::from_secs_f64),
        };
        let followed = {
            let following = self.follow_log(init, first_run, &mut ctl, &exits);
            tokio::select! {
                followed = following => Some(followed),
                () = exits.expired(timeout) => None,
            }
        };
        if let Some(followed) = followed {
            return followed;
        }
        // The follower, its file stream and uploads are stopped (dropped).
        let log = self.settings.sync_file.display();
        self.log.warn(&format!(
            "finish_timeout ({:.1}s) ran out: uploads stopped; the rest stays in {log}",
            timeout.unwrap_or_default().as_secs_f64()
        ));
        // wandb-core's words first; then where the rest is and how it goes.
        self.events.warn("Timed out finishing run.".into());
        self.events.warn(format!(
            "What was not uploaded is kept in {log}; `wandb sync --no-skip-online {}` \
             sends it (what the server already has is not sent twice).",
            self.settings.sync_dir.display()
        ));
        exits.answer(true);
        self.done(&exits, Some(&mut ctl)).await;
        Followed {
            exit_synthesized: false,
            torn: false,
            file_stream_ok: false,
            sent: false,
        }
    }

    async fn follow_log(
        &mut self,
        init: InitResult,
        first_run: pb::RunRecord,
        ctl: &mut mpsc::Receiver<OnlineCtl>,
        exits: &Exits,
    ) -> Followed {
        let path = RunPath {
            entity: init.entity.clone(),
            project: init.project.clone(),
            name: init.name.clone(),
        };
        let resumed = init.resumed.clone().unwrap_or_default();
        let pipes = self.start_pipes(&path, &resumed).await;
        let mut state = FollowState {
            run: first_run,
            storage_id: init.storage_id.clone(),
            config: RunConfig::default(),
            metrics: Metrics::default(),
            summary: Tree::default(),
            summary_dirty: false,
            console: ConsoleLines::new(
                self.settings.raw.x_label.clone().filter(|l| !l.is_empty()),
                pipes.structured_console,
            ),
            params_dirty: false,
            config_dirty: false,
            upsert_due: None,
            environment: Vec::new(),
            seen_run: false,
            exit_code: None,
            not_complete: false,
            exit_synthesized: false,
            torn: false,
            skip: Skip::default(),
            artifacts: ArtifactJobs::default(),
            shared_rows: 0,
        };
        if self.progress.is_some() {
            // Replaying: what the server has is already sent.
            state.skip = Skip {
                history: resumed.history_line_count.max(0),
                events: resumed.events_line_count.max(0),
                console: resumed.log_line_count.max(0) as u64,
            };
        }
        // A resumed run keeps the server's config under what is set now
        // (merged, as the handler merges it: the session's `_wandb: {}`
        // must not wipe the server's media entries).
        let mut session = RunConfig::default();
        if let Some(c) = &state.run.config {
            session.apply(c);
        }
        state.config.apply(&resumed.config_record());
        state.config.merge_from(&session);
        if let JValue::Object(members) = &resumed.summary {
            for (k, v) in members {
                state.summary.insert(std::slice::from_ref(k), v.clone());
            }
        }

        let mut reader: Option<LogReader<std::fs::File>> = None;
        let mut ctl_open = true;
        loop {
            self.read_committed(&mut reader, &mut state, &pipes, &path)
                .await;
            self.flush_batch(&mut state, &pipes.fs).await;
            if let Some(code) = state.exit_code {
                // From here the follower waits on the server without
                // reading its requests: the exit record starts the clock.
                exits.start_clock();
                self.finish(&mut state, &path, &pipes).await;
                // A writer that does not own the run's end (shared mode's
                // x_update_finish_state=False), or an exit marked not
                // complete, leaves the run unfinished, as wandb-core does.
                let marks_end =
                    !state.not_complete && self.settings.raw.x_update_finish_state.unwrap_or(true);
                let healthy = pipes.close(marks_end.then_some(code)).await;
                self.log.info(&format!(
                    "run finished on the server (file stream {})",
                    if healthy { "complete" } else { "failed" }
                ));
                self.done(exits, Some(ctl)).await;
                return Followed {
                    exit_synthesized: state.exit_synthesized,
                    torn: state.torn,
                    file_stream_ok: healthy,
                    sent: healthy,
                };
            }
            // Wait for more of the log, an exit answer to hold, or a
            // debounced upsert.
            let upsert_wait = state
                .upsert_due
                .map(|d| d.saturating_duration_since(Instant::now()));
            tokio::select! {
                changed = self.committed.changed() => {
                    if changed.is_ok() {
                        continue;
                    }
                    // The writer is gone: read what is left, then stop.
                    self.read_committed(&mut reader, &mut state, &pipes, &path).await;
                    if state.exit_code.is_some() {
                        continue;
                    }
                    if self.progress.is_some() && !self.unfinished_if_no_exit {
                        // A replayed log without an exit record: its
                        // process crashed. Finish the run as failed (exit
                        // code 1), as wandb-core's sync does.
                        state.exit_code = Some(1);
                        state.exit_synthesized = true;
                        continue;
                    }
                    // Closed without an exit (the service stopped): send
                    // what there is; the run stays unfinished.
                    self.flush_batch(&mut state, &pipes.fs).await;
                    let healthy = pipes.close(None).await;
                    self.done(exits, None).await;
                    return Followed {
                        exit_synthesized: false,
                        torn: state.torn,
                        file_stream_ok: healthy,
                        sent: false,
                    };
                }
                msg = ctl.recv(), if ctl_open => match msg {
                    Some(OnlineCtl::Exit { reply }) => exits.push(reply),
                    Some(OnlineCtl::LinkArtifact { request, reply }) => {
                        let cx = self.job_context(&path);
                        state.artifacts.link(cx, *request, reply);
                    }
                    Some(OnlineCtl::LogArtifact { request, reply }) => {
                        let request = *request;
                        let cx = self.job_context(&path);
                        state.artifacts.save(cx, request.artifact.unwrap_or_default(),
                            request.history_step, request.staging_dir, reply);
                    }
                    Some(OnlineCtl::Init { done, .. }) => {
                        let _ = done.send(Err(BackendError::Config("the run was already initialised".into())));
                    }
                    None => ctl_open = false,
                },
                _ = sleep_opt(upsert_wait) => {
                    state.upsert_due = None;
                    self.upsert(&mut state, &path).await;
                }
            }
        }
    }

    /// The file stream (at the server's line counts of a resumed run) and
    /// the uploader.
    async fn start_pipes(
        &self,
        path: &RunPath,
        resumed: &crate::backend::graphql::ResumeState,
    ) -> Pipes {
        // Asked once per run, as wandb-core asks at its first file stream
        // request; a server that cannot answer has none.
        let features = self.backend.server_features().await;
        let feature = |name: &str| features.iter().any(|f| f == name);
        let gzip = file_stream_gzip(
            self.settings.raw.x_file_stream_no_gzip,
            feature("FILESTREAM_GZIP"),
        );
        let structured_console = feature("STRUCTURED_CONSOLE_LOGS");
        let (fs_tx, fs_rx) = mpsc::channel(1024);
        let fs_cfg = FileStreamConfig {
            path: format!("/files/{}/file_stream", path.url_segments()),
            history_offset: resumed.history_line_count,
            events_offset: resumed.events_line_count,
            // Replaying skips the console lines the server has instead.
            console_offset: if self.progress.is_some() {
                0
            } else {
                resumed.log_line_count.max(0) as u64
            },
            transmit_interval: Duration::from_secs_f64(
                self.settings
                    .raw
                    .x_file_stream_transmit_interval
                    .filter(|t| *t > 0.0)
                    .unwrap_or(15.0),
            ),
            heartbeat: Duration::from_secs(30),
            max_bytes: self
                .settings
                .raw
                .x_file_stream_max_bytes
                .filter(|b| *b > 0)
                .map_or(10 << 20, |b| b as usize),
            // History lines are held compressed: a request may fill to
            // `max_bytes`, as wandb-core's do.
            buffer_bytes: usize::MAX,
            max_line: self
                .settings
                .raw
                .x_file_stream_max_line_bytes
                .filter(|b| *b > 0)
                .map_or(filestream::MAX_LINE, |b| b as usize),
            gzip,
            stop_on_fatal: self.settings.raw.stop_on_fatal_error.unwrap_or(false),
        };
        let events = self.events.clone();
        let fs_task = tokio::spawn(filestream::run(
            self.backend.clone(),
            fs_cfg,
            fs_rx,
            self.stopped.clone(),
            move |m| events.warn(m),
        ));
        let (up_tx, up_rx) = mpsc::channel(1024);
        let uploader = uploads::Uploader {
            backend: self.backend.clone(),
            run: path.clone(),
            files_dir: self.settings.files_dir(),
            fs: fs_tx.clone(),
            log: self.log.clone(),
            stats: self.stats.clone(),
            events: self.events.clone(),
            done: Default::default(),
            ignore: self.settings.ignore.clone(),
        };
        for bad in &self.settings.ignore.invalid {
            self.log.warn(&format!(
                "ignore_globs: {bad:?} is not a valid pattern; it ignores nothing"
            ));
        }
        let up_task = tokio::spawn(uploads::run(uploader, up_rx));
        Pipes {
            structured_console,
            _stop: AbortOnDrop(vec![fs_task.abort_handle(), up_task.abort_handle()]),
            fs: fs_tx,
            fs_task,
            up: up_tx,
            up_task,
        }
    }

    fn job_context<'a>(&'a self, run: &'a RunPath) -> JobContext<'a> {
        JobContext {
            backend: &self.backend,
            log: &self.log,
            events: &self.events,
            run,
        }
    }

    /// Reads every record committed so far (opening the log once it
    /// exists).
    async fn read_committed(
        &mut self,
        reader: &mut Option<LogReader<std::fs::File>>,
        state: &mut FollowState,
        pipes: &Pipes,
        path: &RunPath,
    ) {
        if reader.is_none() {
            *reader = LogReader::open(&self.settings.log_file).ok();
        }
        let Some(r) = reader else {
            return;
        };
        let mut buf = Vec::new();
        loop {
            match r.next_into(&mut buf) {
                Ok(Some(pos)) => {
                    if let Some(p) = &self.progress {
                        use std::sync::atomic::Ordering::Relaxed;
                        p.bytes_read.store(pos.end, Relaxed);
                        p.records.fetch_add(1, Relaxed);
                    }
                    // Rows, nearly every record of a run, are read where
                    // they lie: no decode, no string per key and value.
                    if let Ok(Some(row)) = HistoryView::from_record(&buf) {
                        self.on_row(&row.items, state, &pipes.fs).await;
                        continue;
                    }
                    let record = match pb::Record::decode(&buf[..]) {
                        Ok(rec) => rec,
                        Err(e) => {
                            self.log
                                .warn(&format!("record in the log does not decode: {e}"));
                            continue;
                        }
                    };
                    self.on_record(record, state, pipes, path).await;
                }
                Ok(None) => {
                    state.torn = false;
                    return;
                }
                Err(ReadError::Truncated { .. }) => {
                    state.torn = true;
                    return;
                }
                Err(ReadError::Corrupt { offset, kind }) => {
                    let message = format!(
                        "transaction log corrupt at byte {offset} ({kind}); skipped to the next good block"
                    );
                    self.log.error(&message);
                    self.events.warn(message);
                    r.recover();
                }
                Err(e) => {
                    self.log
                        .error(&format!("cannot read the transaction log: {e}"));
                    return;
                }
            }
        }
    }

    async fn on_record(
        &mut self,
        record: pb::Record,
        s: &mut FollowState,
        pipes: &Pipes,
        path: &RunPath,
    ) {
        let Some(kind) = record.record_type else {
            return;
        };
        let (fs, up) = (&pipes.fs, &pipes.up);
        match kind {
            // Read as a view before decoding; here if that failed.
            RecordType::History(h) => {
                let mut items: Vec<ItemView<'_>> = h
                    .item
                    .iter()
                    .map(|i| ItemView {
                        key: &i.key,
                        nested_key: i.nested_key.iter().map(String::as_str).collect(),
                        typed: None,
                        value_json: &i.value_json,
                    })
                    .collect();
                // Shared mode: the row goes out numbered by this writer,
                // and the summary says how far it got (as wandb-core sends
                // them); the backend orders every writer's rows itself.
                let step;
                if self.settings.shared {
                    step = s.shared_rows.to_string();
                    s.summary
                        .insert(&["_step".to_string()], JValue::Int(s.shared_rows));
                    s.summary_dirty = true;
                    s.shared_rows += 1;
                    items.push(ItemView {
                        key: "_step",
                        value_json: &step,
                        ..Default::default()
                    });
                }
                self.on_row(&items, s, fs).await;
            }
            RecordType::Summary(sum) => {
                for item in &sum.update {
                    let p = item_path(&item.key, &item.nested_key);
                    match JValue::parse(&item.value_json).unwrap_or(JValue::Null) {
                        // A null (the SDK's NaN) leaves the summary, as
                        // with wandb-core.
                        JValue::Null => s.summary.remove(&p),
                        v => {
                            s.summary.insert(&p, v);
                        }
                    }
                }
                for item in &sum.remove {
                    s.summary.remove(&item_path(&item.key, &item.nested_key));
                }
                s.summary_dirty = true;
            }
            RecordType::OutputRaw(o) => {
                let stderr = o.output_type() == pb::output_raw_record::OutputType::Stderr;
                s.console.write(stderr, &o.line);
            }
            RecordType::Output(o) => {
                let stderr = o.output_type() == pb::output_record::OutputType::Stderr;
                s.console.write(stderr, &o.line);
            }
            RecordType::OutputLogger(o) => s.console.append_lines(&o.line),
            RecordType::Run(run) => {
                if !s.seen_run {
                    // The init record: already upserted.
                    s.seen_run = true;
                    return;
                }
                if let Some(c) = &run.config {
                    s.config.apply(c);
                    s.config_dirty = true;
                }
                s.run = run;
                s.params_dirty = true;
                s.schedule_upsert();
            }
            RecordType::Config(c) => {
                s.config.apply(&c);
                s.config_dirty = true;
                s.schedule_upsert();
            }
            RecordType::Telemetry(t) => {
                s.config.merge_telemetry(&t);
                s.config_dirty = true;
                s.schedule_upsert();
            }
            RecordType::Metric(m) => {
                s.metrics.define(&m);
                s.config_dirty = true;
                s.schedule_upsert();
            }
            RecordType::Environment(env) => {
                s.config.add_environment(&env);
                s.environment.push(env);
                // The run's metadata file is the primary writer's alone.
                if self.settings.primary {
                    self.write_run_file("wandb-metadata.json", &metadata_json(&s.environment));
                    let _ = up
                        .send(UpMsg::File {
                            path: "wandb-metadata.json".into(),
                            policy: Policy::Now,
                        })
                        .await;
                }
                s.config_dirty = true;
                s.schedule_upsert();
            }
            RecordType::Files(files) => {
                for f in files.files {
                    let policy = match pb::files_item::PolicyType::try_from(f.policy) {
                        Ok(pb::files_item::PolicyType::End) => Policy::End,
                        Ok(pb::files_item::PolicyType::Live) => Policy::Live,
                        _ => Policy::Now,
                    };
                    let _ = up
                        .send(UpMsg::File {
                            path: f.path,
                            policy,
                        })
                        .await;
                }
            }
            RecordType::Stats(stats) => {
                if s.skip.events > 0 {
                    s.skip.events -= 1;
                    return;
                }
                let line = events_line(&stats, s.run.start_time.as_ref());
                let _ = fs.send(FsMsg::Events(line)).await;
            }
            RecordType::Alert(a) => {
                let severity = match a.level.to_uppercase().as_str() {
                    "WARN" | "WARNING" => "WARN",
                    "ERROR" => "ERROR",
                    _ => "INFO",
                };
                let vars = json!({
                    "entityName": path.entity, "projectName": path.project, "runName": path.name,
                    "title": a.title, "text": a.text, "severity": severity,
                    "waitDuration": a.wait_duration * 1000,
                });
                let backend = self.backend.clone();
                let log = self.log.clone();
                tokio::spawn(async move {
                    if let Err(e) = backend.notify_alert(vars).await {
                        log.error(&format!("alert not sent: {e}"));
                    }
                });
            }
            RecordType::Preempting(_) => {
                let _ = fs.send(FsMsg::Preempting).await;
            }
            RecordType::Exit(exit) => {
                s.exit_code = Some(exit.exit_code);
                s.not_complete = exit.not_complete;
            }
            // Offline runs record artifacts in the log; sent when synced.
            RecordType::Artifact(a) => {
                let cx = self.job_context(path);
                s.artifacts.save(cx, a, 0, String::new(), None);
            }
            _ => {}
        }
    }

    /// A history row: a file stream line, unless the server has it.
    async fn on_row(&self, items: &[ItemView<'_>], s: &mut FollowState, fs: &mpsc::Sender<FsMsg>) {
        use std::sync::atomic::Ordering::Relaxed;
        if s.skip.history > 0 {
            s.skip.history -= 1;
            if let Some(p) = &self.progress {
                p.history_skipped.fetch_add(1, Relaxed);
            }
            return;
        }
        let _ = fs.send(FsMsg::History(history_line(items))).await;
        if self.settings.server_side_derived_summary
            && let Some(step) = items
                .iter()
                .find(|i| i.key == "_step" || i.nested_key == ["_step"])
                .and_then(|i| JValue::parse(i.value_json).ok())
        {
            // The server derives the summary from the rows, but wandb-core
            // still streams the last step in it.
            s.summary.insert(&["_step".to_string()], step);
            s.summary_dirty = true;
        }
        if let Some(p) = &self.progress {
            p.history_sent.fetch_add(1, Relaxed);
        }
    }

    /// After a batch of records: the summary and console lines that changed.
    async fn flush_batch(&mut self, s: &mut FollowState, fs: &mpsc::Sender<FsMsg>) {
        if std::mem::take(&mut s.summary_dirty) {
            let _ = fs.send(FsMsg::Summary(s.summary.to_json())).await;
        }
        for (n, line) in s.console.changed() {
            if n < s.skip.console {
                continue;
            }
            let _ = fs.send(FsMsg::Console(n, line)).await;
        }
    }

    async fn upsert(&self, s: &mut FollowState, path: &RunPath) {
        if !s.params_dirty && !s.config_dirty {
            return;
        }
        let _op = self.backend.operations.start("updating run metadata");
        let config = s.config_dirty.then(|| config_json(&s.config, &s.metrics));
        let vars = upsert_vars(
            &self.settings,
            &s.run,
            Some(path),
            &s.storage_id,
            config,
            s.params_dirty,
        );
        s.params_dirty = false;
        s.config_dirty = false;
        if let Err(e) = self.backend.upsert_bucket(vars, None).await {
            let message = format!("run update not sent: {e}");
            self.log.error(&message);
            self.events.warn(message);
        }
    }

    fn write_run_file(&self, name: &str, content: &str) {
        let path = self.settings.files_dir().join(name);
        if let Err(e) = wandb_store::write_atomically(&path, content.as_bytes()) {
            self.log.error(&format!("writing {name}: {e}"));
        }
    }

    /// Run files are final, the config is sent, every upload is done.
    async fn finish(&mut self, s: &mut FollowState, path: &RunPath, pipes: &Pipes) {
        self.flush_batch(s, &pipes.fs).await;
        // What the file stream holds goes now, while the run files are
        // finished and uploaded, not after them (one round trip fewer at
        // the end; the answer is not needed).
        let (early, _) = oneshot::channel();
        let _ = pipes.fs.send(FsMsg::Flush(early)).await;
        let _ = self.files_done.wait_for(|d| *d).await;
        // Artifacts logged during the run are committed before it ends.
        s.artifacts.wait().await;
        // The run-level files are the primary writer's (`x_primary`): in
        // shared mode the others upload only their own console.
        let primary = self.settings.primary;
        if self.progress.is_some() && primary {
            // Replaying: no run-files writer made these (W&B's service
            // writes none offline); make them from the log, as it does.
            self.write_run_file("config.yaml", &s.config.to_yaml(&s.metrics));
            self.write_run_file("wandb-summary.json", &s.summary.to_json());
        }
        let mut also = Vec::new();
        if primary {
            also.extend(
                [
                    "wandb-metadata.json",
                    "requirements.txt",
                    "config.yaml",
                    "wandb-summary.json",
                ]
                .map(String::from),
            );
        }
        if self.settings.console == crate::settings::ConsoleCapture::On {
            if self.settings.raw.console_multipart.unwrap_or(false) {
                also.extend(console_chunks(
                    &self.settings.files_dir(),
                    &self.settings.output_file_name,
                ));
            } else {
                also.push(self.settings.output_file_name.clone());
            }
        }
        // The last run update and the end-of-run uploads are independent:
        // both at once.
        let upsert = async {
            if s.params_dirty || s.config_dirty {
                self.upsert(s, path).await;
            }
        };
        let uploads = async {
            let (done, wait) = oneshot::channel();
            if pipes.up.send(UpMsg::Finish { also, done }).await.is_ok() {
                let _ = wait.await;
            }
        };
        tokio::join!(upsert, uploads);
    }

    /// Nothing more will be sent: tells the run, answers the exits held,
    /// and (when the handler is still there) answers later exits at once
    /// and refuses later artifacts until it hangs up.
    async fn done(&self, exits: &Exits, ctl: Option<&mut mpsc::Receiver<OnlineCtl>>) {
        self.events.finished();
        exits.answer(false);
        if let Some(ctl) = ctl {
            while let Some(msg) = ctl.recv().await {
                if let Some(OnlineCtl::Exit { reply }) =
                    refuse_artifacts(msg, "the run is finished")
                {
                    exits.push(reply);
                }
            }
        }
    }
}

/// The console chunks a `console_multipart` run wrote, oldest first.
fn console_chunks(files_dir: &std::path::Path, output_name: &str) -> Vec<String> {
    let mut chunks: Vec<String> = std::fs::read_dir(files_dir.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| crate::stream::runfiles::is_chunk_of(n, output_name))
        .map(|n| format!("logs/{n}"))
        .collect();
    chunks.sort();
    chunks
}

/// Whether file stream bodies are compressed. As wandb-core: unless the
/// client says not to (the Python SDK does, by default), so a client that
/// sends no such setting gets compression, where the server takes it.
fn file_stream_gzip(no_gzip: Option<bool>, server_takes_gzip: bool) -> bool {
    !no_gzip.unwrap_or(false) && server_takes_gzip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stream_gzip_follows_wandb_core() {
        // No setting sent (a raw-protocol client, the Rust SDK): compressed.
        assert!(file_stream_gzip(None, true));
        assert!(file_stream_gzip(Some(false), true));
        // The Python SDK's default, and a server without the feature.
        assert!(!file_stream_gzip(Some(true), true));
        assert!(!file_stream_gzip(None, false));
    }
}
