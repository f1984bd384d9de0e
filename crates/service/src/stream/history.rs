//! A run's history state: the step counter, the pending row, and what
//! every flushed row updates (summary, sampled history, step metrics).
//!
//! Semantics of wandb-core for `run.log(data, step=, commit=)`:
//! a `step` above the current one flushes the pending row first; a step
//! below it drops the request with a warning; the row is flushed when
//! `commit` says so, or when no step was given. A flushed row gets `_step`
//! and `_runtime`, keys defined against a step metric get that metric's
//! last value, and the step moves on (an empty flush only moves it on).

use bytes::{Bytes, BytesMut};
use wandb_proto::view::PartialHistoryView;

use super::rows::{Row, encode_history_record};
use super::sampled_history::SampledHistory;
use crate::runstate::keys::{KeyId, Keys};
use crate::runstate::metrics::Metrics;
use crate::runstate::summary::{Kind, Summary};

/// Step-metric resolution cached per key (see `step_sync_for`).
const UNRESOLVED: u32 = 0;
const NO_STEP_METRIC: u32 = 1;

pub struct History {
    pub keys: Keys,
    pub summary: Summary,
    pub metrics: Metrics,
    pub sampled: SampledHistory,
    row: Row,
    step: i64,
    step_initialized: bool,
    /// `x_shared`: rows without `_step`, flushed unless told otherwise.
    shared: bool,
    /// `x_server_side_derived_summary`: the service keeps no summary of rows.
    server_side_summary: bool,
    /// Per key: `UNRESOLVED`, `NO_STEP_METRIC`, or 2 + the step metric's id.
    step_sync: Vec<u32>,
    /// Last value of each key (by id) that some metric uses as its step.
    step_values: Vec<Option<(Vec<u8>, Kind)>>,
    is_step_metric: Vec<bool>,
    k_step: KeyId,
    k_runtime: KeyId,
    /// Encoded records are cut from this buffer: the records of a batch
    /// share one allocation, which the writer thread frees once, instead of
    /// freeing one allocation per record made on another thread (which
    /// makes glibc's malloc contend on an arena lock).
    encoded: BytesMut,
}

/// Size of the shared buffer encoded records are cut from.
const ENCODE_BUFFER: usize = 64 * 1024;

/// Why a request was not taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejected {
    /// The request logged to a step below the current one.
    StepBackwards { step: i64, current: i64 },
    /// A value was not JSON.
    BadValue(String),
}

impl History {
    pub fn new(shared: bool, server_side_summary: bool) -> Self {
        let mut keys = Keys::default();
        let k_step = keys.top("_step");
        let k_runtime = keys.top("_runtime");
        Self {
            keys,
            summary: Summary::default(),
            metrics: Metrics::default(),
            sampled: SampledHistory::default(),
            row: Row::default(),
            step: 0,
            step_initialized: false,
            shared,
            server_side_summary,
            step_sync: Vec::new(),
            step_values: Vec::new(),
            is_step_metric: Vec::new(),
            k_step,
            k_runtime,
            encoded: BytesMut::new(),
        }
    }

    /// The step the next row will get (`starting_step` before any row).
    pub fn step(&self, starting_step: i64) -> i64 {
        if self.step_initialized {
            self.step
        } else {
            starting_step
        }
    }

    /// Shared mode: the number of the last row this writer flushed (its
    /// own count; the backend orders all writers' rows). wandb-core puts it
    /// in the uploaded summary and rows as `_step`, never in the log.
    pub fn shared_last_step(&self) -> Option<i64> {
        (self.shared && self.step > 0).then(|| self.step - 1)
    }

    /// `wandb-summary.json`: the whole summary, with shared mode's row
    /// count as `_step` (as wandb-core writes the file).
    pub fn summary_file(&self) -> String {
        let mut tree = self.summary.to_tree(&self.keys, &self.metrics);
        if let (Some(step), wandb_proto::json::Value::Object(members)) =
            (self.shared_last_step(), &mut tree)
        {
            members.retain(|(k, _)| k != "_step");
            members.push(("_step".into(), wandb_proto::json::Value::Int(step)));
        }
        tree.to_json()
    }

    pub fn has_pending_row(&self) -> bool {
        !self.row.is_empty()
    }

    /// Applies a `define_metric`.
    pub fn define_metric(&mut self, m: &wandb_proto::pb::MetricRecord) {
        self.metrics.define(m);
        if !m.step_metric.is_empty() {
            let id = self.keys.top(&m.step_metric) as usize;
            if self.is_step_metric.len() <= id {
                self.is_step_metric.resize(id + 1, false);
            }
            self.is_step_metric[id] = true;
        }
        self.step_sync.iter_mut().for_each(|s| *s = UNRESOLVED);
    }

    /// Takes a `partial_history` request; encoded history records for the
    /// rows it completes are appended to `out`. `runtime` is the run's age.
    pub fn partial(
        &mut self,
        req: &PartialHistoryView<'_>,
        starting_step: i64,
        runtime: f64,
        out: &mut Vec<Bytes>,
    ) -> Result<(), Rejected> {
        if !self.step_initialized {
            // Shared mode counts this writer's rows from 0, whatever the run's step.
            self.step = if self.shared { 0 } else { starting_step };
            self.step_initialized = true;
        }
        if !self.shared
            && let Some(step) = req.step
        {
            if step > self.step {
                self.flush_row(runtime, out);
                self.step = step;
            } else if step < self.step {
                return Err(Rejected::StepBackwards {
                    step,
                    current: self.step,
                });
            }
        }
        let mut bad = None;
        for item in &req.items {
            if let Err(e) = self.row.merge_item(&mut self.keys, item) {
                let key = if item.nested_key.is_empty() {
                    item.key.to_string()
                } else {
                    item.nested_key.join(".")
                };
                bad = Some(format!(
                    "history value for {key:?} is not JSON, dropped: {e}"
                ));
            }
        }
        let flush = match req.flush {
            Some(flush) => flush,
            None => self.shared || req.step.is_none(),
        };
        if flush {
            self.flush_row(runtime, out);
        }
        bad.map_or(Ok(()), |b| Err(Rejected::BadValue(b)))
    }

    /// The step metric a key is synced to, if any (cached per key).
    fn step_sync_for(&mut self, id: KeyId) -> Option<KeyId> {
        let i = id as usize;
        if self.step_sync.len() <= i {
            self.step_sync.resize(i + 1, UNRESOLVED);
        }
        if self.step_sync[i] == UNRESOLVED {
            let dotted = &self.keys.info(id).dotted;
            let target = self
                .metrics
                .get(dotted)
                .filter(|d| d.step_sync && !d.step_metric.is_empty())
                .map(|d| d.step_metric.clone());
            self.step_sync[i] = match target {
                Some(name) => 2 + self.keys.top(&name),
                None => NO_STEP_METRIC,
            };
            if self.step_sync.len() < self.keys.count() {
                self.step_sync.resize(self.keys.count(), UNRESOLVED);
            }
        }
        match self.step_sync[i] {
            NO_STEP_METRIC => None,
            n => Some(n - 2),
        }
    }

    /// Emits the pending row as the current step (if it has anything), then
    /// moves to the next step.
    pub fn flush_row(&mut self, runtime: f64, out: &mut Vec<Bytes>) {
        let step = self.step;
        if self.shared && self.row.is_empty() {
            // Shared mode counts rows, not steps: nothing to count.
            return;
        }
        self.step += 1;
        if self.row.is_empty() {
            return;
        }
        self.row.set_float(self.k_runtime, runtime);
        if !self.shared {
            self.row.set_int(self.k_step, step);
        }
        if !self.metrics.is_empty() {
            let ids: Vec<KeyId> = self.row.entries().iter().map(|(id, _)| *id).collect();
            for id in ids {
                if let Some(metric) = self.step_sync_for(id)
                    && !self.row.contains(metric)
                {
                    match self.step_values.get(metric as usize).cloned().flatten() {
                        Some((text, kind)) => self.row.set_text(metric, &text, kind),
                        None => self.row.set_int(metric, 0),
                    }
                }
            }
        }
        for (id, leaf) in self.row.entries() {
            let i = *id as usize;
            let text = self.row.text(leaf);
            if self.keys.path(*id).len() == 1
                && let Some(x) = leaf.kind.number()
            {
                self.sampled.add(*id, x);
            }
            if self.is_step_metric.get(i).copied().unwrap_or(false) {
                if self.step_values.len() <= i {
                    self.step_values.resize(i + 1, None);
                }
                self.step_values[i] = Some((text.to_vec(), leaf.kind));
            }
            if !self.server_side_summary {
                self.summary.observe(*id, text, leaf.kind);
            }
        }
        if self.encoded.capacity() - self.encoded.len() < 1024 {
            self.encoded = BytesMut::with_capacity(ENCODE_BUFFER);
        }
        encode_history_record(&self.keys, &self.row, step, &mut self.encoded);
        out.push(self.encoded.split().freeze());
        self.row.clear();
    }
}

/// A `partial_history` record as the SDK sends it (for tests).
#[cfg(test)]
pub(crate) fn partial_history_record(
    items: &[(&str, &str)],
    step: Option<i64>,
    commit: Option<bool>,
) -> Bytes {
    use prost::Message;
    use wandb_proto::pb;
    Bytes::from(
        pb::Record {
            record_type: Some(pb::record::RecordType::Request(pb::Request {
                request_type: Some(pb::request::RequestType::PartialHistory(
                    pb::PartialHistoryRequest {
                        item: items
                            .iter()
                            .map(|(k, v)| pb::HistoryItem {
                                key: k.to_string(),
                                value_json: v.to_string(),
                                ..Default::default()
                            })
                            .collect(),
                        step: step.map(|num| pb::HistoryStep { num }),
                        action: commit.map(|flush| pb::HistoryAction { flush }),
                        ..Default::default()
                    },
                )),
            })),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use wandb_proto::pb;

    use super::*;

    fn log(
        h: &mut History,
        items: &[(&str, &str)],
        step: Option<i64>,
        commit: Option<bool>,
    ) -> (Vec<Bytes>, Result<(), Rejected>) {
        let raw = partial_history_record(items, step, commit);
        let view = PartialHistoryView::from_record(&raw).unwrap().unwrap();
        let mut out = Vec::new();
        let r = h.partial(&view, 0, 1.5, &mut out);
        (out, r)
    }

    fn rows(out: &[Bytes]) -> Vec<Vec<(String, String)>> {
        out.iter()
            .map(|b| match pb::Record::decode(&b[..]).unwrap().record_type {
                Some(pb::record::RecordType::History(h)) => h
                    .item
                    .into_iter()
                    .map(|i| (i.nested_key.join("."), i.value_json))
                    .collect(),
                _ => panic!("not history"),
            })
            .collect()
    }

    #[test]
    fn shared_mode_rows_have_no_step_and_the_summary_file_counts_them() {
        let mut h = History::new(true, false);
        // A step from the SDK is ignored; every log is a row of its own.
        let (out, r) = log(&mut h, &[("a", "1")], Some(10), None);
        assert!(r.is_ok());
        assert_eq!(
            rows(&out),
            vec![vec![
                ("a".into(), "1".into()),
                ("_runtime".into(), "1.5".into())
            ]]
        );
        // An empty flush is not a row.
        let mut out = Vec::new();
        h.flush_row(2.0, &mut out);
        assert!(out.is_empty());
        let (out, _) = log(&mut h, &[("a", "2")], None, None);
        assert_eq!(out.len(), 1);
        assert_eq!(h.shared_last_step(), Some(1));
        let file: serde_json::Value = serde_json::from_str(&h.summary_file()).unwrap();
        assert_eq!(
            (file["a"].clone(), file["_step"].clone()),
            (2.into(), 1.into())
        );
        assert_eq!(History::new(false, false).shared_last_step(), None);
    }

    #[test]
    fn steps_commits_and_drops_like_wandb_core() {
        let mut h = History::new(false, false);
        // Same explicit step accumulates; a higher step flushes it.
        assert!(log(&mut h, &[("loss", "0.9")], Some(0), None).0.is_empty());
        assert!(log(&mut h, &[("acc", "0.1")], Some(0), None).0.is_empty());
        let (out, _) = log(&mut h, &[("loss", "0.8")], Some(1), None);
        assert_eq!(
            rows(&out),
            vec![vec![
                ("loss".into(), "0.9".into()),
                ("acc".into(), "0.1".into()),
                ("_runtime".into(), "1.5".into()),
                ("_step".into(), "0".into())
            ]]
        );
        // commit=False keeps accumulating at step 1; a plain log flushes.
        assert!(
            log(&mut h, &[("lr", "0.05")], None, Some(false))
                .0
                .is_empty()
        );
        let (out, _) = log(&mut h, &[("loss", "0.7")], None, None);
        let r = &rows(&out)[0];
        assert!(
            r.contains(&("loss".into(), "0.7".into())) && r.contains(&("lr".into(), "0.05".into()))
        );
        assert!(r.contains(&("_step".into(), "1".into())));
        // Backwards: dropped with the step numbers for the warning.
        assert_eq!(log(&mut h, &[("x", "1")], Some(10), None).1, Ok(()));
        let (out, rejected) = log(&mut h, &[("x", "2")], Some(5), None);
        assert!(out.is_empty());
        assert_eq!(
            rejected,
            Err(Rejected::StepBackwards {
                step: 5,
                current: 10
            })
        );
        assert_eq!(h.step(0), 10);
    }

    #[test]
    fn step_metrics_are_filled_in() {
        let mut h = History::new(false, false);
        h.define_metric(&pb::MetricRecord {
            name: "val/loss".into(),
            step_metric: "epoch".into(),
            options: Some(pb::MetricOptions {
                step_sync: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(log(&mut h, &[("val/loss", "0.5")], None, None).1, Ok(()));
        assert_eq!(log(&mut h, &[("epoch", "2")], None, None).1, Ok(()));
        let (out, _) = log(&mut h, &[("val/loss", "0.3")], None, None);
        assert!(rows(&out)[0].contains(&("epoch".into(), "2".into())));
    }
}
