//! The GraphQL operations the service sends, and what it reads from their
//! answers. Operation names, arguments and fields are those of the W&B API.

use serde_json::{Value, json};
use wandb_proto::json::Value as JValue;

use super::http::RetryClass;
use super::{Backend, BackendError};

const VIEWER: &str =
    "query Viewer { viewer { id entity username email flags teams { edges { node { name } } } } }";

const UPSERT_BUCKET: &str = "mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, \
$groupName: String, $description: String, $displayName: String, $notes: String, $commit: String, \
$config: JSONString, $host: String, $debug: Boolean, $program: String, $repo: String, $jobType: String, \
$state: String, $sweep: String, $tags: [String!], $summaryMetrics: JSONString) { \
upsertBucket(input: {id: $id, name: $name, groupName: $groupName, modelName: $project, entityName: $entity, \
description: $description, displayName: $displayName, notes: $notes, config: $config, commit: $commit, \
host: $host, debug: $debug, jobProgram: $program, jobRepo: $repo, jobType: $jobType, state: $state, \
sweep: $sweep, tags: $tags, summaryMetrics: $summaryMetrics}) { \
bucket { id name displayName description config sweepName historyLineCount \
project { id name entity { id name } } } inserted } }";

const RUN_RESUME_STATUS: &str = "query RunResumeStatus($project: String, $entity: String, $name: String!) { \
model(name: $project, entityName: $entity) { id name entity { id name } \
bucket(name: $name, missingOk: true) { id name summaryMetrics displayName logLineCount historyLineCount \
eventsLineCount historyTail eventsTail config tags notes wandbConfig(keys: [\"t\"]) } } }";

const STORED_RUN: &str = "query StoredRun($project: String!, $entity: String, $name: String!, $after: String) { \
project(name: $project, entityName: $entity) { run(name: $name) { name state historyLineCount \
files(first: 1000, after: $after) { pageInfo { hasNextPage endCursor } edges { node { name sizeBytes } } } } } }";

const CREATE_RUN_FILES: &str = "mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) { \
createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) { \
runID uploadHeaders files { name uploadUrl } } }";

const SERVER_FEATURES: &str =
    "query ServerFeaturesQuery { serverInfo { features { name isEnabled } } }";

const NOTIFY_ALERT: &str = "mutation NotifyScriptableRunAlert($entityName: String!, $projectName: String!, \
$runName: String!, $title: String!, $text: String!, $severity: AlertSeverity = INFO, $waitDuration: Duration) { \
notifyScriptableRunAlert(input: {entityName: $entityName, projectName: $projectName, runName: $runName, \
title: $title, text: $text, severity: $severity, waitDuration: $waitDuration}) { success } }";

/// Who the API key belongs to.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    pub entity: String,
    pub username: String,
    pub email: String,
    pub teams: Vec<String>,
    pub flags_json: String,
}

/// What an UpsertBucket answer tells about the run.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    pub storage_id: String,
    pub name: String,
    pub display_name: String,
    pub sweep_name: String,
    pub project: String,
    pub entity: String,
}

/// What the server holds of a run: enough to prove a local copy redundant
/// (`wandb-core gc`).
#[derive(Debug, Clone, Default)]
pub struct StoredRun {
    /// `running`, `finished`, `failed`, `crashed`, …
    pub state: String,
    pub history_line_count: i64,
    /// Every file's name (its path under the run's files) and size.
    pub files: Vec<(String, u64)>,
}

/// A run that exists on the server, for resuming.
#[derive(Debug, Clone, Default)]
pub struct ResumeState {
    pub storage_id: String,
    pub history_line_count: i64,
    pub events_line_count: i64,
    pub log_line_count: i64,
    /// `{key: value}` (unwrapped from `{"value": …}`).
    pub config: JValue,
    /// The summary, an object.
    pub summary: JValue,
    pub last_step: Option<i64>,
    pub runtime: f64,
    /// The run's tags, kept when the resuming session gives none.
    pub tags: Vec<String>,
    /// The run's notes, kept when the resuming session gives none.
    pub notes: String,
}

/// The entries of the server's `_wandb` config a resumed run keeps: what
/// the SDK put there for media and charts logged earlier (mask class
/// labels, custom charts), which the UI needs to draw those values. The
/// rest of `_wandb` is the service's own and is made anew.
const KEPT_WANDB_ENTRIES: [&str; 3] = ["viz", "visualize", "mask/class_labels"];

impl ResumeState {
    /// The run from RunResumeStatus's `bucket`; `None` when there is no
    /// such run (no bucket, or one never initialised: no `_wandb.t`).
    fn from_bucket(b: &Value) -> Result<Option<Self>, BackendError> {
        if b.is_null() {
            return Ok(None);
        }
        let has_t = wandb_json_field(&b["wandbConfig"]).is_some_and(|c| c.get("t").is_some());
        if !has_t {
            return Ok(None);
        }
        let missing = |f: &str| BackendError::GraphQL {
            what: "RunResumeStatus".into(),
            message: format!("the server's answer lacks {f}"),
        };
        let int = |f: &str| b[f].as_i64().ok_or_else(|| missing(f));
        // `{key: {"value": v}}` on the server; kept as `{key: v}`.
        let config = match wandb_json_field(&b["config"]) {
            Some(JValue::Object(members)) => JValue::Object(
                members
                    .into_iter()
                    .map(|(k, v)| {
                        let inner = v.get("value").cloned().unwrap_or(v);
                        (k, inner)
                    })
                    .collect(),
            ),
            _ => return Err(missing("config")),
        };
        let summary = wandb_json_field(&b["summaryMetrics"])
            .filter(|s| matches!(s, JValue::Object(_)))
            .ok_or_else(|| missing("summaryMetrics"))?;
        let history_tail =
            wandb_json_field(&b["historyTail"]).ok_or_else(|| missing("historyTail"))?;
        let events_tail =
            wandb_json_field(&b["eventsTail"]).ok_or_else(|| missing("eventsTail"))?;
        let history_line_count = int("historyLineCount")?;
        // The last step the run reached: the highest of the summary's, the
        // last row's and the row count's word for it (rows may have been
        // sent without a summary update, or the tail may be short).
        let last_row = last_line(&history_tail);
        let last_step = [
            summary.get("_step").and_then(JValue::as_i64),
            last_row
                .as_ref()
                .and_then(|r| r.get("_step"))
                .and_then(JValue::as_i64),
            (history_line_count > 0).then(|| history_line_count - 1),
        ]
        .into_iter()
        .flatten()
        .max();
        // The run's clock: the highest `_runtime` it reported anywhere.
        let summary_runtime = match summary.get("_wandb") {
            Some(w @ JValue::Object(_)) => w.get("runtime"),
            _ => summary.get("_runtime"),
        };
        let runtime = [
            summary_runtime.and_then(JValue::as_f64),
            last_row
                .as_ref()
                .and_then(|r| r.get("_runtime"))
                .and_then(JValue::as_f64),
            last_line(&events_tail)
                .as_ref()
                .and_then(|r| r.get("_runtime"))
                .and_then(JValue::as_f64),
        ]
        .into_iter()
        .flatten()
        .filter(|r| r.is_finite())
        .fold(0.0, f64::max);
        Ok(Some(ResumeState {
            storage_id: str_of(b, &["id"]),
            history_line_count,
            events_line_count: int("eventsLineCount")?,
            log_line_count: int("logLineCount")?,
            config,
            summary,
            last_step,
            runtime,
            notes: b["notes"].as_str().unwrap_or_default().to_string(),
            tags: b["tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        }))
    }

    /// The server's config as a config record, to lay under what the
    /// resuming session sets.
    pub fn config_record(&self) -> wandb_proto::pb::ConfigRecord {
        use wandb_proto::pb::ConfigItem;
        let JValue::Object(members) = &self.config else {
            return Default::default();
        };
        let mut update: Vec<ConfigItem> = members
            .iter()
            .filter(|(k, _)| k.as_str() != "_wandb")
            .map(|(k, v)| ConfigItem {
                key: k.clone(),
                value_json: v.to_json(),
                ..Default::default()
            })
            .collect();
        if let Some(wandb) = self.config.get("_wandb") {
            for entry in KEPT_WANDB_ENTRIES {
                if let Some(v) = wandb.get(entry) {
                    update.push(ConfigItem {
                        nested_key: vec!["_wandb".into(), entry.into()],
                        value_json: v.to_json(),
                        ..Default::default()
                    });
                }
            }
        }
        wandb_proto::pb::ConfigRecord {
            update,
            ..Default::default()
        }
    }
}

/// The last line of a history or events tail (a JSON array of JSON rows).
fn last_line(tail: &JValue) -> Option<JValue> {
    match tail {
        JValue::Array(lines) => lines
            .last()
            .and_then(JValue::as_str)
            .and_then(|l| JValue::parse(l).ok()),
        _ => None,
    }
}

/// Upload instructions for run files.
#[derive(Debug, Clone, Default)]
pub struct RunFileUrls {
    pub headers: Vec<(String, String)>,
    /// `(name, upload URL)`; `None`: the server does not want the file.
    pub files: Vec<(String, Option<String>)>,
}

fn str_of(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or_default().to_string()
}

/// A field holding W&B JSON (as a string, as the API sends these, or as
/// JSON), read with the W&B dialect: NaN and ±Infinity stay numbers.
fn wandb_json_field(v: &Value) -> Option<JValue> {
    match v {
        Value::String(s) => JValue::parse(s).ok(),
        Value::Null => None,
        other => JValue::parse(&other.to_string()).ok(),
    }
}

impl Backend {
    pub async fn viewer(&self) -> Result<Viewer, BackendError> {
        let data = self
            .graphql("Viewer", VIEWER, json!({}), RetryClass::MostFailures, None)
            .await?;
        let v = &data["viewer"];
        if v.is_null() {
            return Err(BackendError::GraphQL {
                what: "Viewer".into(),
                message: "invalid credentials (no viewer)".into(),
            });
        }
        Ok(Viewer {
            entity: str_of(v, &["entity"]),
            username: str_of(v, &["username"]),
            email: str_of(v, &["email"]),
            teams: v["teams"]["edges"]
                .as_array()
                .map(|e| e.iter().map(|n| str_of(n, &["node", "name"])).collect())
                .unwrap_or_default(),
            flags_json: match &v["flags"] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            },
        })
    }

    /// UpsertBucket with these variables (unset ones as null).
    pub async fn upsert_bucket(
        &self,
        variables: Value,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Bucket, BackendError> {
        let data = self
            .graphql(
                "UpsertBucket",
                UPSERT_BUCKET,
                variables,
                RetryClass::UpsertBucket,
                deadline,
            )
            .await?;
        let b = &data["upsertBucket"]["bucket"];
        if b.is_null() {
            return Err(BackendError::GraphQL {
                what: "UpsertBucket".into(),
                message: "the server returned no run".into(),
            });
        }
        Ok(Bucket {
            storage_id: str_of(b, &["id"]),
            name: str_of(b, &["name"]),
            display_name: str_of(b, &["displayName"]),
            sweep_name: str_of(b, &["sweepName"]),
            project: str_of(b, &["project", "name"]),
            entity: str_of(b, &["project", "entity", "name"]),
        })
    }

    /// The run on the server, if it exists (and is a real run: its config
    /// has telemetry).
    pub async fn run_resume_status(
        &self,
        entity: &str,
        project: &str,
        name: &str,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<ResumeState>, BackendError> {
        let vars = json!({"entity": (!entity.is_empty()).then_some(entity), "project": project, "name": name});
        let data = self
            .graphql(
                "RunResumeStatus",
                RUN_RESUME_STATUS,
                vars,
                RetryClass::MostFailures,
                deadline,
            )
            .await?;
        ResumeState::from_bucket(&data["model"]["bucket"])
    }

    /// The run's state, row count and files (every page of them), if the
    /// run exists.
    pub async fn stored_run(
        &self,
        entity: &str,
        project: &str,
        name: &str,
    ) -> Result<Option<StoredRun>, BackendError> {
        let mut stored = StoredRun::default();
        let mut after: Option<String> = None;
        loop {
            let vars = json!({
                "entity": (!entity.is_empty()).then_some(entity),
                "project": project,
                "name": name,
                "after": after,
            });
            let data = self
                .graphql(
                    "StoredRun",
                    STORED_RUN,
                    vars,
                    RetryClass::MostFailures,
                    None,
                )
                .await?;
            let run = &data["project"]["run"];
            if run.is_null() {
                return Ok(None);
            }
            stored.state = str_of(run, &["state"]);
            stored.history_line_count = run["historyLineCount"].as_i64().unwrap_or(0);
            let files = &run["files"];
            for edge in files["edges"].as_array().into_iter().flatten() {
                let node = &edge["node"];
                let size = match &node["sizeBytes"] {
                    Value::String(s) => s.parse().unwrap_or(0),
                    v => v.as_u64().unwrap_or(0),
                };
                stored.files.push((str_of(node, &["name"]), size));
            }
            let page = &files["pageInfo"];
            match page["endCursor"].as_str() {
                Some(cursor) if page["hasNextPage"].as_bool() == Some(true) => {
                    after = Some(cursor.to_string());
                }
                _ => return Ok(Some(stored)),
            }
        }
    }

    pub async fn create_run_files(
        &self,
        entity: &str,
        project: &str,
        run: &str,
        files: &[String],
    ) -> Result<RunFileUrls, BackendError> {
        let vars = json!({"entity": entity, "project": project, "run": run, "files": files});
        let data = self
            .graphql(
                "CreateRunFiles",
                CREATE_RUN_FILES,
                vars,
                RetryClass::MostFailures,
                None,
            )
            .await?;
        let c = &data["createRunFiles"];
        let headers = c["uploadHeaders"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(|x| x.as_str())
                    .filter_map(|x| x.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let files = c["files"]
            .as_array()
            .map(|f| {
                f.iter()
                    .map(|x| {
                        (
                            str_of(x, &["name"]),
                            x["uploadUrl"].as_str().map(String::from),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(RunFileUrls { headers, files })
    }

    /// Enabled server features (unknown on error: none).
    /// The server's enabled features, asked once per backend (a run's
    /// components share its answer, as wandb-core's feature checker does).
    pub async fn server_features(&self) -> Vec<String> {
        self.features
            .get_or_init(|| self.query_server_features())
            .await
            .clone()
    }

    /// Whether the server has this feature enabled.
    pub async fn server_feature(&self, name: &str) -> bool {
        self.server_features().await.iter().any(|f| f == name)
    }

    async fn query_server_features(&self) -> Vec<String> {
        match self
            .graphql(
                "ServerFeaturesQuery",
                SERVER_FEATURES,
                json!({}),
                RetryClass::MostFailures,
                None,
            )
            .await
        {
            Ok(data) => data["serverInfo"]["features"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter(|x| x["isEnabled"].as_bool() == Some(true))
                        .map(|x| str_of(x, &["name"]))
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!("server features unknown: {e}");
                Vec::new()
            }
        }
    }

    pub async fn notify_alert(&self, vars: Value) -> Result<(), BackendError> {
        self.graphql(
            "NotifyScriptableRunAlert",
            NOTIFY_ALERT,
            vars,
            RetryClass::MostFailures,
            None,
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(summary: &str, history_tail: &str, events_tail: &str, rows: i64) -> Value {
        json!({
            "id": "UnVuOjE=", "wandbConfig": "{\"t\": 1}", "notes": "n", "tags": ["a"],
            "config": "{\"lr\": {\"value\": 0.1}, \"_wandb\": {\"value\": {\"t\": 1, \"viz\": {\"c\": 1}, \"m\": []}}}",
            "summaryMetrics": summary, "historyTail": history_tail, "eventsTail": events_tail,
            "historyLineCount": rows, "eventsLineCount": 2, "logLineCount": 3,
        })
    }

    #[test]
    fn the_last_step_and_the_clock_are_the_highest_the_run_reported() {
        let b = bucket(
            r#"{"_step": 3, "_wandb": {"runtime": 10}}"#,
            r#"["{\"_step\": 4, \"_runtime\": 12.5}"]"#,
            r#"["{\"_runtime\": 20.25}"]"#,
            9,
        );
        let r = ResumeState::from_bucket(&b).unwrap().unwrap();
        assert_eq!(r.last_step, Some(8), "the row count says 9 rows");
        assert_eq!(r.runtime, 20.25, "the events tail ran longest");
        assert_eq!(
            (r.notes.as_str(), r.tags.as_slice()),
            ("n", &["a".to_string()][..])
        );
        let b = bucket(r#"{"_runtime": 30, "_step": 1}"#, "[]", "[]", 0);
        let r = ResumeState::from_bucket(&b).unwrap().unwrap();
        assert_eq!((r.last_step, r.runtime), (Some(1), 30.0));
        // Only the media entries of `_wandb` come back.
        let keys: Vec<(String, Vec<String>)> = r
            .config_record()
            .update
            .into_iter()
            .map(|i| (i.key, i.nested_key))
            .collect();
        assert_eq!(
            keys,
            [
                ("lr".to_string(), vec![]),
                (String::new(), vec!["_wandb".to_string(), "viz".to_string()])
            ]
        );
    }

    #[test]
    fn a_run_never_initialised_is_no_run() {
        assert!(ResumeState::from_bucket(&Value::Null).unwrap().is_none());
        let mut b = bucket("{}", "[]", "[]", 0);
        b["wandbConfig"] = json!("{}");
        assert!(ResumeState::from_bucket(&b).unwrap().is_none());
        b["wandbConfig"] = json!("{\"t\": 1}");
        b["historyTail"] = Value::Null;
        assert!(ResumeState::from_bucket(&b).is_err());
    }
}
