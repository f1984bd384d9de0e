//! What UpsertBucket carries: the run's parameters (name, tags, notes, git,
//! …) and its config as the server stores it (`{key: {"value": v}}` with
//! `_wandb`, including each writer's environment under `_wandb.e`), and
//! `wandb-metadata.json` from the environment records.

use prost::Message;
use serde_json::{Value, json};
use wandb_proto::pb;

use super::uploads::RunPath;
use crate::runstate::config::{RunConfig, environment_json};
use crate::runstate::metrics::Metrics;
use crate::settings::RunSettings;

/// UpsertBucket variables for the run record (`None` = null).
pub(super) fn upsert_vars(
    settings: &RunSettings,
    run: &pb::RunRecord,
    path: Option<&RunPath>,
    storage_id: &str,
    config: Option<String>,
    params: bool,
) -> Value {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut v = json!({
        "name": path.map(|p| p.name.clone()).or_else(|| opt(&run.run_id)),
        "project": path.map(|p| p.project.clone()).or_else(|| opt(&run.project)).or_else(|| settings.raw.project.clone().filter(|p| !p.is_empty())),
        "entity": path.map(|p| p.entity.clone()).or_else(|| opt(&run.entity)).or_else(|| settings.raw.entity.clone().filter(|e| !e.is_empty())),
        "config": config,
    });
    if params {
        let git = run.git.clone().unwrap_or_default();
        let obj = v.as_object_mut().expect("object");
        obj.insert("id".into(), json!(opt(storage_id)));
        obj.insert("groupName".into(), json!(opt(&run.run_group)));
        obj.insert("displayName".into(), json!(opt(&run.display_name)));
        obj.insert("notes".into(), json!(opt(&run.notes)));
        obj.insert("commit".into(), json!(opt(&git.commit)));
        obj.insert("host".into(), json!(opt(&run.host)));
        obj.insert(
            "program".into(),
            json!(
                settings
                    .raw
                    .program
                    .clone()
                    .or_else(|| settings.raw.program_relpath.clone())
            ),
        );
        obj.insert("repo".into(), json!(opt(&git.remote_url)));
        obj.insert("jobType".into(), json!(opt(&run.job_type)));
        obj.insert("sweep".into(), json!(opt(&run.sweep_id)));
        obj.insert(
            "tags".into(),
            if run.tags.is_empty() {
                Value::Null
            } else {
                json!(run.tags)
            },
        );
    }
    v
}

/// The config as UpsertBucket wants it: `{key: {"value": v}}` as a string.
pub(super) fn config_json(config: &RunConfig, metrics: &Metrics) -> String {
    let mut out = String::from("{");
    for (i, item) in config.wrapped_items(metrics).iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        wandb_proto::json::write_str(&item.key, &mut out);
        out.push(':');
        out.push_str(&item.value_json);
    }
    out.push('}');
    out
}

/// `wandb-metadata.json`: the run's environment records merged, without
/// their record info.
pub(super) fn metadata_json(environment: &[pb::EnvironmentRecord]) -> String {
    let mut merged = pb::EnvironmentRecord::default();
    for env in environment {
        let _ = merged.merge(env.encode_to_vec().as_slice());
    }
    merged.info = None;
    environment_json(&merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(writer: &str, os: &str, python: &str) -> pb::EnvironmentRecord {
        pb::EnvironmentRecord {
            writer_id: writer.into(),
            os: os.into(),
            python: python.into(),
            ..Default::default()
        }
    }

    #[test]
    fn metadata_merges_environment_records() {
        let json = metadata_json(&[env("a", "Linux", ""), env("a", "", "3.12")]);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["os"], "Linux");
        assert_eq!(v["python"], "3.12");
    }
}
