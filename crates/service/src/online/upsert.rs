//! What UpsertBucket carries: the run's parameters (name, tags, notes, git,
//! …) and its config as the server stores it (`{key: {"value": v}}` with
//! `_wandb`, including each writer's environment under `_wandb.e`), and
//! `wandb-metadata.json` from the same environment records.

use prost::Message;
use serde_json::{Value, json};
use wandb_proto::pb;

use super::uploads::RunPath;
use crate::runstate::config::RunConfig;
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

/// An environment record in the protobuf JSON mapping (camelCase), as
/// `wandb-metadata.json` holds it.
fn environment_json(env: &pb::EnvironmentRecord) -> String {
    let pool = wandb_proto::descriptor_pool();
    let Some(desc) = pool.get_message_by_name("wandb_internal.EnvironmentRecord") else {
        return "{}".into();
    };
    match prost_reflect::DynamicMessage::decode(desc, env.encode_to_vec().as_slice()) {
        Ok(msg) => {
            let mut out = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(
                &mut out,
                serde_json::ser::PrettyFormatter::with_indent(b"  "),
            );
            let _ = msg.serialize_with_options(&mut ser, &prost_reflect::SerializeOptions::new());
            String::from_utf8(out).unwrap_or_else(|_| "{}".into())
        }
        Err(_) => "{}".into(),
    }
}

/// Adds `_wandb.value.e = {writer_id: environment}` to an encoded config.
pub(super) fn add_environment(config: &str, envs: &[pb::EnvironmentRecord]) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(config) else {
        return config.to_string();
    };
    let mut e = serde_json::Map::new();
    for env in envs {
        let writer = if env.writer_id.is_empty() {
            "default".to_string()
        } else {
            env.writer_id.clone()
        };
        let json: Value = serde_json::from_str(&environment_json(env)).unwrap_or(Value::Null);
        let slot = e.entry(writer).or_insert_with(|| json!({}));
        if let (Some(slot), Some(new)) = (slot.as_object_mut(), json.as_object()) {
            for (k, v) in new {
                slot.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(w) = v
        .get_mut("_wandb")
        .and_then(|w| w.get_mut("value"))
        .and_then(Value::as_object_mut)
    {
        w.insert("e".into(), Value::Object(e));
    }
    v.to_string()
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

    #[test]
    fn environments_go_under_wandb_e_per_writer() {
        let config = r#"{"lr":{"value":0.1},"_wandb":{"value":{"cli_version":"0.31.0"}}}"#;
        let out = add_environment(config, &[env("w1", "Linux", ""), env("", "Darwin", "")]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["lr"]["value"], 0.1);
        assert_eq!(v["_wandb"]["value"]["cli_version"], "0.31.0");
        assert_eq!(v["_wandb"]["value"]["e"]["w1"]["os"], "Linux");
        assert_eq!(v["_wandb"]["value"]["e"]["default"]["os"], "Darwin");
    }
}
