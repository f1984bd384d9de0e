//! The run config, and the `_wandb` entry the service maintains in it.
//!
//! The config is a tree of values updated by the run record and `config`
//! records (`nested_key` paths address inner values). wandb-core presents
//! each top-level key wrapped as `{"value": …}` (in the run result and in
//! `config.yaml`) and adds `_wandb`: the CLI and Python versions, the
//! telemetry (`t`) and the metric definitions (`m`) encoded with field
//! numbers as keys, and each writer's environment (`e`).

use prost::Message;
use prost_reflect::{DynamicMessage, ReflectMessage, Value as PValue};
use wandb_proto::json::Value;
use wandb_proto::{pb, telemetry_descriptor_pool};

use super::metrics::Metrics;
use super::summary::item_path;
use wandb_proto::tree::Tree;

#[derive(Debug, Default)]
pub struct RunConfig {
    root: Vec<(String, Value)>,
    telemetry: pb::TelemetryRecord,
    /// Each writer's environment records, merged (`_wandb.e`).
    environments: Vec<(String, pb::EnvironmentRecord)>,
}

impl RunConfig {
    /// Applies the updates and removals of a `config` record (or the config
    /// carried by the run record).
    pub fn apply(&mut self, record: &pb::ConfigRecord) {
        let mut root = Tree::from_members(std::mem::take(&mut self.root));
        for item in &record.update {
            let path = item_path(&item.key, &item.nested_key);
            if path.iter().all(String::is_empty) {
                continue;
            }
            match Value::parse(&item.value_json) {
                Ok(v) => {
                    if !root.insert(&path, v) {
                        tracing::warn!("config key nested too deep, ignored");
                    }
                }
                Err(e) => {
                    tracing::warn!(key = %path.join("."), "config value is not JSON, ignored: {e}")
                }
            }
        }
        for item in &record.remove {
            root.remove(&item_path(&item.key, &item.nested_key));
        }
        self.root = root.to_members();
    }

    /// Sets every top-level key of `other` over this config and merges its
    /// telemetry (a resumed run: the server's config under the new one).
    /// `_wandb` is merged entry by entry (the server's media entries stay
    /// beside what this session put there).
    pub fn merge_from(&mut self, other: &RunConfig) {
        for (k, v) in &other.root {
            match self.root.iter_mut().find(|(key, _)| key == k) {
                Some((_, Value::Object(mine))) if k == "_wandb" => {
                    if let Value::Object(theirs) = v {
                        for (ek, ev) in theirs {
                            match mine.iter_mut().find(|(key, _)| key == ek) {
                                Some((_, slot)) => *slot = ev.clone(),
                                None => mine.push((ek.clone(), ev.clone())),
                            }
                        }
                    }
                }
                Some((_, slot)) => *slot = v.clone(),
                None => self.root.push((k.clone(), v.clone())),
            }
        }
        let _ = self
            .telemetry
            .merge(other.telemetry.encode_to_vec().as_slice());
        self.telemetry.core_version = crate::PRODUCER.to_string();
    }

    /// Merges a telemetry record (the SDK sends cumulative ones). The
    /// service reports itself as the core version, as wandb-core does.
    pub fn merge_telemetry(&mut self, t: &pb::TelemetryRecord) {
        // A protobuf merge: set fields overwrite, flags accumulate.
        let _ = self.telemetry.merge(t.encode_to_vec().as_slice());
        self.telemetry.core_version = crate::PRODUCER.to_string();
    }

    /// Merges an environment record into its writer's (`_wandb.e`).
    pub fn add_environment(&mut self, env: &pb::EnvironmentRecord) {
        let writer = if env.writer_id.is_empty() {
            "default"
        } else {
            env.writer_id.as_str()
        };
        let i = match self.environments.iter().position(|(w, _)| w == writer) {
            Some(i) => i,
            None => {
                self.environments
                    .push((writer.to_string(), Default::default()));
                self.environments.len() - 1
            }
        };
        let slot = &mut self.environments[i].1;
        let _ = slot.merge(env.encode_to_vec().as_slice());
        slot.info = None;
    }

    /// The `_wandb` value: what the SDK put there (such as `pinned_keys`
    /// from `run.pin_config_keys`), with the service's own entries set
    /// over it, as wandb-core does.
    pub fn wandb_internal(&self, metrics: &Metrics) -> Value {
        const OWN: [&str; 4] = ["m", "cli_version", "python_version", "t"];
        let own = |k: &str| OWN.contains(&k) || (k == "e" && !self.environments.is_empty());
        let mut members: Vec<(String, Value)> = match self.root.iter().find(|(k, _)| k == "_wandb")
        {
            Some((_, Value::Object(sdk))) => sdk.iter().filter(|(k, _)| !own(k)).cloned().collect(),
            _ => Vec::new(),
        };
        members.push((
            "m".to_string(),
            Value::Array(metrics.records().map(metric_dict).collect()),
        ));
        if !self.telemetry.cli_version.is_empty() {
            members.push((
                "cli_version".to_string(),
                Value::Str(self.telemetry.cli_version.clone()),
            ));
        }
        if !self.telemetry.python_version.is_empty() {
            members.push((
                "python_version".to_string(),
                Value::Str(self.telemetry.python_version.clone()),
            ));
        }
        members.push(("t".to_string(), telemetry_dict(&self.telemetry)));
        if !self.environments.is_empty() {
            let e = self
                .environments
                .iter()
                .map(|(w, env)| {
                    let v =
                        Value::parse(&environment_json(env)).unwrap_or(Value::Object(Vec::new()));
                    (w.clone(), v)
                })
                .collect();
            members.push(("e".to_string(), Value::Object(e)));
        }
        Value::Object(members)
    }

    /// Top-level entries, `_wandb` last and computed.
    fn entries(&self, metrics: &Metrics) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = self
            .root
            .iter()
            .filter(|(k, _)| k != "_wandb")
            .cloned()
            .collect();
        out.push(("_wandb".to_string(), self.wandb_internal(metrics)));
        out
    }

    /// Config items as the run result carries them: `{"value": v}` per key.
    pub fn wrapped_items(&self, metrics: &Metrics) -> Vec<pb::ConfigItem> {
        let mut items: Vec<pb::ConfigItem> = self
            .entries(metrics)
            .into_iter()
            .map(|(k, v)| pb::ConfigItem {
                key: k,
                value_json: Value::Object(vec![("value".to_string(), v)]).to_json(),
                ..Default::default()
            })
            .collect();
        // wandb-core lists `_wandb` first.
        items.rotate_right(1);
        items
    }

    /// `config.yaml`: every top-level key wrapped as `value:` (keys in
    /// yaml.v3's order, `_wandb` first).
    pub fn to_yaml(&self, metrics: &Metrics) -> String {
        let entries: Vec<(String, Value)> = self
            .entries(metrics)
            .into_iter()
            .map(|(k, v)| (k, Value::Object(vec![("value".to_string(), v)])))
            .collect();
        super::yaml::document(&entries)
    }
}

/// An environment record as JSON (protobuf JSON names, two-space indents),
/// as wandb-core writes `wandb-metadata.json` and `_wandb.e`.
pub(crate) fn environment_json(env: &pb::EnvironmentRecord) -> String {
    let pool = wandb_proto::descriptor_pool();
    let Some(desc) = pool.get_message_by_name("wandb_internal.EnvironmentRecord") else {
        return "{}".into();
    };
    match DynamicMessage::decode(desc, env.encode_to_vec().as_slice()) {
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

/// The telemetry as `{field number: value}`, the way wandb encodes it into
/// `_wandb.t`: strings and integers as themselves, all-bool messages as the
/// list of set field numbers, other messages as maps of their string
/// fields; fields starting with `_` are skipped.
fn telemetry_dict(t: &pb::TelemetryRecord) -> Value {
    let desc = telemetry_descriptor_pool()
        .get_message_by_name("wandb_internal.TelemetryRecord")
        .expect("the telemetry schema has TelemetryRecord");
    let Ok(dynamic) = DynamicMessage::decode(desc, t.encode_to_vec().as_slice()) else {
        return Value::Object(Vec::new());
    };
    let mut members = Vec::new();
    for (field, value) in dynamic.fields() {
        if field.name().starts_with('_') {
            continue;
        }
        let key = field.number().to_string();
        match value {
            PValue::String(s) => members.push((key, Value::Str(s.clone()))),
            PValue::I32(i) | PValue::EnumNumber(i) => {
                members.push((key, Value::Int(i64::from(*i))))
            }
            PValue::I64(i) => members.push((key, Value::Int(*i))),
            PValue::Message(inner) => {
                let all_bool = inner
                    .descriptor()
                    .fields()
                    .all(|f| f.kind() == prost_reflect::Kind::Bool);
                if all_bool {
                    let set: Vec<Value> = inner
                        .fields()
                        .map(|(f, _)| Value::Int(i64::from(f.number())))
                        .collect();
                    members.push((key, Value::Array(set)));
                } else {
                    let strings = inner
                        .fields()
                        .filter_map(|(f, v)| match v {
                            PValue::String(s) => {
                                Some((f.number().to_string(), Value::Str(s.clone())))
                            }
                            _ => None,
                        })
                        .collect();
                    members.push((key, Value::Object(strings)));
                }
            }
            _ => {}
        }
    }
    Value::Object(members)
}

/// A metric definition encoded the same way for `_wandb.m` (name 1,
/// glob_name 2, step_metric 4, step_metric_index 5, options 6 and summary 7
/// as lists of set flags, goal 8).
fn metric_dict(m: &pb::MetricRecord) -> Value {
    let mut members = Vec::new();
    let mut string = |n: &str, s: &str| {
        if !s.is_empty() {
            members.push((n.to_string(), Value::Str(s.to_string())));
        }
    };
    string("1", &m.name);
    string("2", &m.glob_name);
    string("4", &m.step_metric);
    if m.step_metric_index != 0 {
        members.push(("5".into(), Value::Int(i64::from(m.step_metric_index))));
    }
    let flags = |pairs: &[(i64, bool)]| {
        Value::Array(
            pairs
                .iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| Value::Int(*n))
                .collect(),
        )
    };
    if let Some(o) = &m.options {
        members.push((
            "6".into(),
            flags(&[(1, o.step_sync), (2, o.hidden), (3, o.defined)]),
        ));
    }
    if let Some(s) = &m.summary {
        members.push((
            "7".into(),
            flags(&[
                (1, s.min),
                (2, s.max),
                (3, s.mean),
                (4, s.best),
                (5, s.last),
                (6, s.none),
                (7, s.copy),
                (8, s.first),
            ]),
        ));
    }
    if m.goal != 0 {
        members.push(("8".into(), Value::Int(i64::from(m.goal))));
    }
    Value::Object(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, json: &str) -> pb::ConfigItem {
        pb::ConfigItem {
            key: key.into(),
            value_json: json.into(),
            ..Default::default()
        }
    }

    #[test]
    fn updates_removals_and_yaml() {
        let mut c = RunConfig::default();
        c.apply(&pb::ConfigRecord {
            update: vec![
                item("lr", "0.01"),
                item("opt", r#"{"name":"adam","betas":[0.9,0.99]}"#),
                item("_wandb", "{}"),
            ],
            ..Default::default()
        });
        c.apply(&pb::ConfigRecord {
            update: vec![pb::ConfigItem {
                nested_key: vec!["opt".into(), "name".into()],
                value_json: "\"sgd\"".into(),
                ..Default::default()
            }],
            remove: vec![item("lr", "")],
            ..Default::default()
        });
        c.merge_telemetry(&pb::TelemetryRecord {
            python_version: "3.11.7".into(),
            feature: Some(pb::Feature {
                offline: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        let yaml = c.to_yaml(&Metrics::default());
        assert!(
            yaml.starts_with(
                "_wandb:\n    value:\n        m: []\n        python_version: 3.11.7\n        t:\n            \"3\":\n                - 4\n            \"4\": 3.11.7\n            \"12\": 0.31.0+wandb-core-rs."
            ),
            "{yaml}"
        );
        assert!(
            yaml.ends_with(
                "opt:\n    value:\n        betas:\n            - 0.9\n            - 0.99\n        name: sgd\n"
            ),
            "{yaml}"
        );
        let items = c.wrapped_items(&Metrics::default());
        assert_eq!(items[0].key, "_wandb");
        assert_eq!(
            items[1].value_json,
            r#"{"value":{"name":"sgd","betas":[0.9,0.99]}}"#
        );
    }

    #[test]
    fn environments_go_under_wandb_e_per_writer() {
        let env = |writer: &str, os: &str, python: &str| pb::EnvironmentRecord {
            writer_id: writer.into(),
            os: os.into(),
            python: python.into(),
            ..Default::default()
        };
        let mut c = RunConfig::default();
        c.add_environment(&env("w1", "Linux", ""));
        c.add_environment(&env("w1", "", "3.12"));
        c.add_environment(&env("", "Darwin", ""));
        let Value::Object(w) = c.wandb_internal(&Metrics::default()) else {
            panic!("an object")
        };
        let e = &w.iter().find(|(k, _)| k == "e").expect("_wandb.e").1;
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["w1"]["os"], "Linux");
        assert_eq!(v["w1"]["python"], "3.12");
        assert_eq!(v["w1"]["writerId"], "w1");
        assert_eq!(v["default"]["os"], "Darwin");
        let yaml = c.to_yaml(&Metrics::default());
        assert!(
            yaml.contains("        e:\n            default:\n"),
            "{yaml}"
        );
        assert!(yaml.contains("\n            w1:\n"), "{yaml}");
    }

    #[test]
    fn what_the_sdk_puts_in_wandb_is_kept_under_the_services_own_entries() {
        let mut c = RunConfig::default();
        c.apply(&pb::ConfigRecord {
            update: vec![
                pb::ConfigItem {
                    nested_key: vec!["_wandb".into(), "pinned_keys".into()],
                    value_json: r#"["lr"]"#.into(),
                    ..Default::default()
                },
                pb::ConfigItem {
                    nested_key: vec!["_wandb".into(), "t".into()],
                    value_json: "1".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let Value::Object(w) = c.wandb_internal(&Metrics::default()) else {
            panic!("an object")
        };
        assert_eq!(
            w.iter()
                .find(|(k, _)| k == "pinned_keys")
                .map(|(_, v)| v.to_json()),
            Some(r#"["lr"]"#.to_string())
        );
        // The service's telemetry, not the SDK's value.
        assert!(matches!(
            w.iter().find(|(k, _)| k == "t"),
            Some((_, Value::Object(_)))
        ));
    }
}
