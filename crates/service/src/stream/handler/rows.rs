//! `run.log()`: rows into the log, read straight from the received bytes
//! (the hot path), and the summary records they produce, coalesced.

use std::time::Instant;

use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::view::PartialHistoryView;

use super::{Handler, SUMMARY_INTERVAL, summary_item};
use crate::stream::history::Rejected;
use crate::stream::runfiles::FilesMsg;

impl Handler {
    /// `run.log()`: the hot path, read straight from the received bytes.
    pub(super) fn partial_history(&mut self, view: &PartialHistoryView<'_>) {
        let mut rows = Vec::new();
        let runtime = self.runtime();
        let result = self
            .history
            .partial(view, self.starting_step(), runtime, &mut rows);
        for row in rows {
            self.persist(row);
        }
        match result {
            Ok(()) => {}
            Err(Rejected::StepBackwards { step, current }) => self.warn_user(format!(
                "Tried to log to step {step} that is less than the current step {current}. Steps must be \
                 monotonically increasing, so this data will be ignored. See \
                 https://wandb.me/define-metric to log data out of order."
            )),
            Err(Rejected::BadValue(message)) => self.log.warn(&message),
        }
        if self.last_summary_emit.elapsed() >= SUMMARY_INTERVAL {
            self.emit_summary();
        }
    }

    /// Emits the pending row (at exit).
    pub(super) fn flush_row(&mut self) {
        let mut rows = Vec::new();
        let runtime = self.runtime();
        self.history.flush_row(runtime, &mut rows);
        for row in rows {
            self.persist(row);
        }
    }

    /// Writes the summary leaves that changed, with the run time; called on
    /// the coalescing interval and at exit.
    pub fn emit_summary(&mut self) {
        self.last_summary_emit = Instant::now();
        if !self.history.summary.has_dirty() || self.exited {
            return;
        }
        let runtime = (self.runtime() as i64).to_string();
        self.history
            .summary
            .set_plain_value(self.k_wandb_runtime, &runtime);
        let h = &mut self.history;
        let mut update = Vec::new();
        let mut remove = Vec::new();
        for (id, value) in h.summary.take_dirty(&h.keys, &h.metrics) {
            let path = h.keys.path(id);
            match value {
                Some(v) => update.push(summary_item(path, v, false)),
                None => remove.push(summary_item(path, String::new(), false)),
            }
        }
        // `wandb-summary.json` holds the whole summary, so rebuilding it
        // costs the summary's size (a 100 MB value, a million keys): it is
        // rebuilt at most a tenth of the time, on this task. The records
        // carry every change meanwhile, and the exit writes the file.
        let started = Instant::now();
        let tree = (started >= self.summary_file_due).then(|| h.summary_file());
        self.emit(RecordType::Summary(pb::SummaryRecord {
            update,
            remove,
            ..Default::default()
        }));
        if let Some(tree) = tree {
            self.forward(FilesMsg::Summary(tree));
            self.summary_file_due = Instant::now() + started.elapsed() * 9;
        }
    }
}
