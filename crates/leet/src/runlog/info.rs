//! Who a run is and where it stands: the records of a log that are not
//! rows (run, config, summary, exit), folded the way the service keeps
//! them. LEET's reader and `wandb-core export` both read these, so both
//! fold them here.

use wandb_proto::json::Value;
use wandb_proto::pb::{self, record::RecordType};
use wandb_proto::tree::Tree;

/// Where a run stands, as its log tells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunState {
    /// No exit record (yet): being written, or the process died.
    #[default]
    Running,
    /// An exit record with code 0.
    Finished { exit_code: i32 },
    /// An exit record with another code.
    Failed { exit_code: i32 },
}

impl RunState {
    /// The state an exit record with this code leaves the run in.
    pub fn exited(exit_code: i32) -> Self {
        if exit_code == 0 {
            RunState::Finished { exit_code }
        } else {
            RunState::Failed { exit_code }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished { .. } => "finished",
            RunState::Failed { .. } => "failed",
        }
    }

    pub fn exit_code(self) -> Option<i32> {
        match self {
            RunState::Running => None,
            RunState::Finished { exit_code } | RunState::Failed { exit_code } => Some(exit_code),
        }
    }
}

/// A run's identity, state, config and summary, as its log tells.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub id: String,
    pub entity: String,
    pub project: String,
    pub name: String,
    pub group: String,
    pub job_type: String,
    pub notes: String,
    pub tags: Vec<String>,
    pub host: String,
    /// Seconds since the epoch.
    pub start_time: Option<f64>,
    pub state: RunState,
    pub config: Tree,
    pub summary: Tree,
}

impl RunInfo {
    /// The run's name for lists: its display name, else its id.
    pub fn label(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }

    /// Takes in a record of the kinds it keeps; gives any other back.
    pub fn apply(&mut self, record: RecordType) -> Option<RecordType> {
        match record {
            RecordType::Run(run) => self.apply_run(run),
            RecordType::Summary(s) => {
                for item in s.update {
                    set(
                        &mut self.summary,
                        &item.key,
                        &item.nested_key,
                        &item.value_json,
                    );
                }
                for item in s.remove {
                    self.summary.remove(&item_path(&item.key, &item.nested_key));
                }
            }
            RecordType::Config(c) => self.apply_config(c),
            RecordType::Exit(e) => self.state = RunState::exited(e.exit_code),
            other => return Some(other),
        }
        None
    }

    fn apply_run(&mut self, run: pb::RunRecord) {
        let keep = |field: &mut String, new: String| {
            if !new.is_empty() {
                *field = new;
            }
        };
        keep(&mut self.id, run.run_id);
        keep(&mut self.entity, run.entity);
        keep(&mut self.project, run.project);
        keep(&mut self.name, run.display_name);
        keep(&mut self.group, run.run_group);
        keep(&mut self.job_type, run.job_type);
        keep(&mut self.notes, run.notes);
        keep(&mut self.host, run.host);
        if !run.tags.is_empty() {
            self.tags = run.tags;
        }
        if let Some(t) = &run.start_time {
            self.start_time = Some(wandb_proto::time::secs(t));
        }
        if let Some(config) = run.config {
            self.apply_config(config);
        }
        if let Some(summary) = run.summary {
            for item in summary.update {
                set(
                    &mut self.summary,
                    &item.key,
                    &item.nested_key,
                    &item.value_json,
                );
            }
        }
    }

    fn apply_config(&mut self, c: pb::ConfigRecord) {
        for item in c.update {
            set(
                &mut self.config,
                &item.key,
                &item.nested_key,
                &item.value_json,
            );
        }
        for item in c.remove {
            self.config.remove(&item_path(&item.key, &item.nested_key));
        }
    }
}

/// `key`, or `nested_key` when set: where an item's value goes.
pub(crate) fn item_path(key: &str, nested: &[String]) -> Vec<String> {
    if nested.is_empty() {
        vec![key.to_string()]
    } else {
        nested.to_vec()
    }
}

fn set(tree: &mut Tree, key: &str, nested: &[String], value_json: &str) {
    let value = Value::parse(value_json).unwrap_or_else(|_| Value::Str(value_json.to_string()));
    tree.insert(&item_path(key, nested), value);
}
