//! Run logs written from scratch, for tests and benchmarks.
//!
//! A million-row run through the SDK takes minutes; written straight with
//! the store's log writer it takes a second, with the records the service
//! writes for it (run, config, rows, summary, console, system metrics,
//! exit), so views and benchmarks can be tried on any size.

use std::path::{Path, PathBuf};

use prost::Message as _;
use wandb_proto::pb::{self, record::RecordType};
use wandb_store::txlog::{FlushPolicy, LogWriter, WriteError};

/// What to put in a synthetic run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub id: String,
    pub project: String,
    pub name: String,
    /// History rows.
    pub rows: u64,
    /// Metrics per row (`m0`, `m1`, …).
    pub metrics: usize,
    /// A console line every this many rows (0: none).
    pub console_every: u64,
    /// A system metrics sample every this many rows (0: none).
    pub stats_every: u64,
    /// The exit code [`write_run`] ends the run with (`None`: no exit
    /// record, as when a process dies).
    pub exit_code: Option<i32>,
    /// Seconds since the epoch of the first row.
    pub start: f64,
}

impl Spec {
    pub fn new(id: &str, rows: u64) -> Self {
        Self {
            id: id.to_string(),
            project: "synthetic".into(),
            name: format!("run-{id}"),
            rows,
            metrics: 3,
            console_every: 10,
            stats_every: 10,
            exit_code: Some(0),
            start: 1_790_000_000.0,
        }
    }
}

/// A value of metric `m` at `step`: smooth and distinct per metric.
pub fn value(m: usize, step: u64) -> f64 {
    let s = step as f64;
    (m as f64 + 1.0) / (1.0 + s / 100.0) + 0.01 * (s * 0.1 + m as f64).sin()
}

fn record(kind: RecordType) -> Vec<u8> {
    pb::Record {
        record_type: Some(kind),
        ..Default::default()
    }
    .encode_to_vec()
}

fn ts(secs: f64) -> prost_types::Timestamp {
    wandb_proto::time::from_secs(secs)
}

/// A log being written, record by record.
pub struct Writer {
    log: LogWriter,
    spec: Spec,
    step: u64,
}

impl Writer {
    /// Creates `<dir>/run-<date>-<id>/run-<id>.wandb` with the run's
    /// opening records.
    pub fn create(wandb_dir: &Path, spec: Spec) -> Result<Self, WriteError> {
        let run_dir = wandb_dir.join(format!("run-20261207_120000-{}", spec.id));
        std::fs::create_dir_all(&run_dir).map_err(|source| WriteError::Io {
            path: run_dir.clone(),
            source,
        })?;
        let policy = FlushPolicy {
            max_buffered: 64 * 1024,
            ..FlushPolicy::default()
        };
        let mut log = LogWriter::create(run_dir.join(format!("run-{}.wandb", spec.id)), policy)?;
        let config = pb::ConfigRecord {
            update: vec![
                pb::ConfigItem {
                    key: "lr".into(),
                    value_json: "0.001".into(),
                    ..Default::default()
                },
                pb::ConfigItem {
                    key: "model".into(),
                    value_json: r#"{"layers":12,"name":"gpt"}"#.into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        log.append(&record(RecordType::Run(pb::RunRecord {
            run_id: spec.id.clone(),
            project: spec.project.clone(),
            display_name: spec.name.clone(),
            tags: vec!["synthetic".into()],
            notes: "written by wandb_leet::synthetic".into(),
            host: "bench".into(),
            config: Some(config),
            start_time: Some(ts(spec.start)),
            ..Default::default()
        })))?;
        Ok(Self { log, spec, step: 0 })
    }

    pub fn path(&self) -> PathBuf {
        self.log.path().to_path_buf()
    }

    /// Appends the next `n` rows (and their console and stats records).
    pub fn rows(&mut self, n: u64) -> Result<(), WriteError> {
        let keys: Vec<String> = (0..self.spec.metrics).map(|m| format!("m{m}")).collect();
        for _ in 0..n {
            let step = self.step;
            let time = self.spec.start + step as f64 * 0.01;
            let mut item = Vec::with_capacity(keys.len() + 2);
            item.push(pb::HistoryItem {
                key: "_step".into(),
                value_json: step.to_string(),
                ..Default::default()
            });
            let mut json = String::new();
            wandb_proto::json::write_float(time, &mut json);
            item.push(pb::HistoryItem {
                key: "_timestamp".into(),
                value_json: json,
                ..Default::default()
            });
            for (m, key) in keys.iter().enumerate() {
                let mut json = String::new();
                wandb_proto::json::write_float(value(m, step), &mut json);
                item.push(pb::HistoryItem {
                    key: key.clone(),
                    value_json: json,
                    ..Default::default()
                });
            }
            self.log
                .append(&record(RecordType::History(pb::HistoryRecord {
                    item,
                    step: Some(pb::HistoryStep { num: step as i64 }),
                    ..Default::default()
                })))?;
            if self.spec.console_every > 0 && step.is_multiple_of(self.spec.console_every) {
                self.log
                    .append(&record(RecordType::OutputRaw(pb::OutputRawRecord {
                        output_type: pb::output_raw_record::OutputType::Stdout as i32,
                        timestamp: Some(ts(time)),
                        line: format!("step {step}: loss {:.4}\n", value(0, step)),
                        ..Default::default()
                    })))?;
            }
            if self.spec.stats_every > 0 && step.is_multiple_of(self.spec.stats_every) {
                let item = [("cpu", 10.0 + (step % 7) as f64), ("memory_percent", 42.5)]
                    .into_iter()
                    .map(|(k, v)| pb::StatsItem {
                        key: k.into(),
                        value_json: v.to_string(),
                    })
                    .collect();
                self.log.append(&record(RecordType::Stats(pb::StatsRecord {
                    timestamp: Some(ts(time)),
                    item,
                    ..Default::default()
                })))?;
            }
            self.step += 1;
        }
        Ok(())
    }

    /// Makes what was appended visible to readers.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.log.flush()
    }

    /// Writes the summary and, with a code, the exit record; closes.
    pub fn finish(mut self, exit_code: Option<i32>) -> Result<PathBuf, WriteError> {
        let last = self.step.saturating_sub(1);
        let mut update = vec![pb::SummaryItem {
            key: "_step".into(),
            value_json: last.to_string(),
            ..Default::default()
        }];
        for m in 0..self.spec.metrics {
            let mut json = String::new();
            wandb_proto::json::write_float(value(m, last), &mut json);
            update.push(pb::SummaryItem {
                key: format!("m{m}"),
                value_json: json,
                ..Default::default()
            });
        }
        self.log
            .append(&record(RecordType::Summary(pb::SummaryRecord {
                update,
                ..Default::default()
            })))?;
        if let Some(exit_code) = exit_code {
            self.log
                .append(&record(RecordType::Exit(pb::RunExitRecord {
                    exit_code,
                    ..Default::default()
                })))?;
        }
        let path = self.path();
        self.log.close()?;
        Ok(path)
    }
}

/// Writes a whole run; returns its log's path.
pub fn write_run(wandb_dir: &Path, spec: Spec) -> Result<PathBuf, WriteError> {
    let (rows, exit_code) = (spec.rows, spec.exit_code);
    let mut w = Writer::create(wandb_dir, spec)?;
    w.rows(rows)?;
    w.finish(exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runlog::{RunLog, RunState};

    #[test]
    fn a_written_run_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_run(dir.path(), Spec::new("abc", 100)).unwrap();
        let run = RunLog::read(&path).unwrap();
        assert_eq!(run.id, "abc");
        assert_eq!(run.rows, 100);
        assert_eq!(run.step, Some(99));
        assert_eq!(run.state, RunState::Finished { exit_code: 0 });
        assert_eq!(run.metrics.keys().collect::<Vec<_>>(), ["m0", "m1", "m2"]);
        assert_eq!(run.metrics["m1"].last(), Some(value(1, 99)));
        assert_eq!(run.console.total(), 10);
        assert_eq!(run.system["cpu"].points(), 10);
        let config = run.config.to_json();
        assert!(config.contains(r#""layers":12"#), "{config}");
    }
}
