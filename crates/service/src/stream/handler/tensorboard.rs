//! TensorBoard rows and files into the run (see [`crate::stream::tensorboard`]).

use bytes::Bytes;
use prost::Message;
use wandb_proto::pb;
use wandb_proto::pb::record::RecordType;
use wandb_proto::view::PartialHistoryView;
use wandb_tensorboard::convert::Row;

use super::Handler;
use crate::stream::tensorboard::{TbOutput, Tensorboard};

impl Handler {
    pub(crate) fn set_tensorboard(&mut self, tb: Tensorboard) {
        self.tensorboard = Some(tb);
    }

    /// A `tbrecord`: kept in the log as sent, and its directory followed.
    pub(super) fn tbrecord(&mut self, tb: pb::TbRecord) {
        if self.exited {
            return;
        }
        if let Some(t) = self.tensorboard.as_mut() {
            self.log
                .info(&format!("tensorboard: following {}", tb.log_dir));
            t.track(tb);
        }
    }

    /// Directories being followed.
    pub(crate) fn tensorboard_count(&self) -> usize {
        self.tensorboard.as_ref().map_or(0, Tensorboard::count)
    }

    /// The run is finishing: no more directories will come.
    pub(crate) fn tensorboard_closing(&self) {
        if let Some(t) = &self.tensorboard {
            t.closing();
        }
    }

    /// Asks directory `n` to be read to its end.
    pub(crate) fn tensorboard_stop(&self, n: usize) {
        if let Some(t) = &self.tensorboard {
            t.stop(n);
        }
    }

    /// Every directory is done.
    pub(crate) fn tensorboard_clear(&mut self) {
        if let Some(t) = self.tensorboard.as_mut() {
            t.clear();
        }
    }

    pub(crate) fn tensorboard_output(&mut self, out: TbOutput) {
        match out {
            TbOutput::Row(row) if !self.exited => self.tensorboard_row(row),
            TbOutput::File { path, policy } if !self.exited => {
                self.emit(RecordType::Files(pb::FilesRecord {
                    files: vec![pb::FilesItem {
                        path,
                        policy: policy as i32,
                        ..Default::default()
                    }],
                    ..Default::default()
                }));
            }
            TbOutput::Warn(message) => self.log.warn(&format!("tensorboard: {message}")),
            TbOutput::Row(_) | TbOutput::File { .. } | TbOutput::Done(_) => {}
        }
    }

    /// A row of TensorBoard values, logged as `run.log` logs one: the
    /// history row takes the run's next `_step`; the TensorBoard step is
    /// `global_step`, the events' time `_timestamp`.
    fn tensorboard_row(&mut self, row: Row) {
        // Media first, so that the row never names a file the run does not
        // announce. Kept in the log (W&B's service keeps neither these nor
        // the charts there, so `wandb sync` of an offline run loses them).
        if !row.media.is_empty() {
            let files = row
                .media
                .iter()
                .map(|path| pb::FilesItem {
                    path: path.clone(),
                    policy: pb::files_item::PolicyType::Now as i32,
                    r#type: pb::files_item::FileType::Media as i32,
                })
                .collect();
            self.emit(RecordType::Files(pb::FilesRecord {
                files,
                ..Default::default()
            }));
        }
        if !row.charts.is_empty() {
            let update = row
                .charts
                .iter()
                .map(|(key, json)| pb::ConfigItem {
                    nested_key: vec!["_wandb".into(), "visualize".into(), key.clone()],
                    value_json: json.clone(),
                    ..Default::default()
                })
                .collect();
            let config = pb::ConfigRecord {
                update,
                ..Default::default()
            };
            self.config.apply(&config);
            self.emit(RecordType::Config(config));
            self.forward(crate::stream::runfiles::FilesMsg::Config(
                self.config.to_yaml(&self.history.metrics),
            ));
        }
        let item = |key: &str, value_json: String| pb::HistoryItem {
            key: key.to_string(),
            value_json,
            ..Default::default()
        };
        let mut items: Vec<pb::HistoryItem> =
            row.items.iter().map(|(k, v)| item(k, v.clone())).collect();
        items.push(item("global_step", row.step.to_string()));
        let mut ts = String::new();
        wandb_proto::json::write_float(row.wall_time, &mut ts);
        items.push(item("_timestamp", ts));
        let request = pb::Record {
            record_type: Some(RecordType::Request(pb::Request {
                request_type: Some(pb::request::RequestType::PartialHistory(
                    pb::PartialHistoryRequest {
                        item: items,
                        action: Some(pb::HistoryAction { flush: true }),
                        ..Default::default()
                    },
                )),
            })),
            ..Default::default()
        };
        let raw = Bytes::from(request.encode_to_vec());
        match PartialHistoryView::from_record(&raw) {
            Ok(Some(view)) => self.partial_history(&view),
            other => self
                .log
                .warn(&format!("tensorboard: a row did not convert: {other:?}")),
        }
    }
}
