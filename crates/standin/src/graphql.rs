//! `POST /graphql`: the operations the W&B service uses, answered like a
//! GraphQL server: the document is parsed, each root field is resolved to
//! a value (with the arguments and variables), and the value is cut to the
//! selection set (aliases, fragments and `__typename` included), so the
//! answer has exactly the fields asked for.

use std::collections::HashMap;

use graphql_parser::query::{
    Definition, Document, Field, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
    Value as GValue,
};
use serde_json::{Map, Value, json};

use crate::store::{RunKey, Store, Upsert};
use crate::{Config, DEFAULT_ENTITY};

type Doc<'a> = Document<'a, String>;
pub(crate) type GField<'a> = Field<'a, String>;

/// A GraphQL request body.
#[derive(Debug, serde::Deserialize)]
pub struct Request {
    pub query: String,
    #[serde(default)]
    pub variables: Option<Value>,
    #[serde(default, rename = "operationName")]
    pub operation_name: Option<String>,
}

/// The operation's name (or its first root field) for logs and failure
/// injection, without answering it.
pub fn operation_name(req: &Request) -> Option<String> {
    if let Some(name) = req.operation_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(name.clone());
    }
    let doc = graphql_parser::parse_query::<String>(&req.query).ok()?;
    let op = pick_operation(&doc, None)?;
    let (name, set) = op_parts(op);
    name.cloned().or_else(|| {
        set.items.iter().find_map(|s| match s {
            Selection::Field(f) => Some(f.name.clone()),
            _ => None,
        })
    })
}

fn pick_operation<'d, 'a>(
    doc: &'d Doc<'a>,
    name: Option<&str>,
) -> Option<&'d OperationDefinition<'a, String>> {
    let mut ops = doc.definitions.iter().filter_map(|d| match d {
        Definition::Operation(op) => Some(op),
        Definition::Fragment(_) => None,
    });
    match name {
        Some(n) => ops.find(|op| op_parts(op).0.map(String::as_str) == Some(n)),
        None => ops.next(),
    }
}

fn op_parts<'d, 'a>(
    op: &'d OperationDefinition<'a, String>,
) -> (Option<&'d String>, &'d SelectionSet<'a, String>) {
    match op {
        OperationDefinition::SelectionSet(s) => (None, s),
        OperationDefinition::Query(q) => (q.name.as_ref(), &q.selection_set),
        OperationDefinition::Mutation(m) => (m.name.as_ref(), &m.selection_set),
        OperationDefinition::Subscription(s) => (s.name.as_ref(), &s.selection_set),
    }
}

/// Everything a resolver may need.
pub struct Ctx<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
    pub base_url: &'a str,
    pub variables: Map<String, Value>,
    /// The request came from a writer of a shared run
    /// (`X-WANDB-USE-ASYNC-FILESTREAM`).
    pub shared_run: bool,
}

impl Ctx<'_> {
    pub(crate) fn arg(&self, field: &GField<'_>, name: &str) -> Value {
        field
            .arguments
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| self.value(v))
            .unwrap_or(Value::Null)
    }

    fn value(&self, v: &GValue<'_, String>) -> Value {
        match v {
            GValue::Variable(name) => self.variables.get(name).cloned().unwrap_or(Value::Null),
            GValue::Int(i) => json!(i.as_i64()),
            GValue::Float(f) => json!(f),
            GValue::String(s) => json!(s),
            GValue::Boolean(b) => json!(b),
            GValue::Null => Value::Null,
            GValue::Enum(e) => json!(e),
            GValue::List(l) => Value::Array(l.iter().map(|x| self.value(x)).collect()),
            GValue::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), self.value(v))).collect())
            }
        }
    }

    /// A string argument, looked for at the top level and inside an
    /// `input:` object.
    fn input_str(&self, field: &GField<'_>, name: &str) -> Option<String> {
        let direct = self.arg(field, name);
        let v = if direct.is_null() {
            self.arg(field, "input")
                .get(name)
                .cloned()
                .unwrap_or(Value::Null)
        } else {
            direct
        };
        match v {
            Value::String(s) => Some(s),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// Answers a request: `{"data": …}` or `{"errors": […]}`.
pub fn execute(req: &Request, ctx: &Ctx<'_>) -> Value {
    let doc = match graphql_parser::parse_query::<String>(&req.query) {
        Ok(d) => d,
        Err(e) => return json!({"errors": [{"message": format!("invalid GraphQL document: {e}")}]}),
    };
    let Some(op) = pick_operation(
        &doc,
        req.operation_name.as_deref().filter(|n| !n.is_empty()),
    ) else {
        return json!({"errors": [{"message": "no such operation in the document"}]});
    };
    let fragments: HashMap<&str, &FragmentDefinition<'_, String>> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Fragment(f) => Some((f.name.as_str(), f)),
            _ => None,
        })
        .collect();
    let (_, set) = op_parts(op);
    let mut data = Map::new();
    let mut errors = Vec::new();
    for field in fields_of(set, &fragments, None) {
        let key = field.alias.clone().unwrap_or_else(|| field.name.clone());
        match resolve_root(field, ctx) {
            Ok(value) => {
                data.insert(key, project(&value, &field.selection_set, &fragments));
            }
            Err(message) => {
                data.insert(key, Value::Null);
                errors.push(json!({"message": message, "path": [field.name]}));
            }
        }
    }
    let mut out = json!({"data": data});
    if !errors.is_empty() {
        out["errors"] = Value::Array(errors);
    }
    out
}

/// The fields of a selection set with fragments spread in (inline fragments
/// whose type condition does not match `typename` are skipped).
fn fields_of<'s, 'a>(
    set: &'s SelectionSet<'a, String>,
    fragments: &HashMap<&str, &'s FragmentDefinition<'a, String>>,
    typename: Option<&str>,
) -> Vec<&'s GField<'a>> {
    let mut out = Vec::new();
    for item in &set.items {
        match item {
            Selection::Field(f) => out.push(f),
            Selection::FragmentSpread(s) => {
                if let Some(fd) = fragments.get(s.fragment_name.as_str()) {
                    out.extend(fields_of(&fd.selection_set, fragments, typename));
                }
            }
            Selection::InlineFragment(i) => {
                let matches = match (&i.type_condition, typename) {
                    (Some(graphql_parser::query::TypeCondition::On(t)), Some(actual)) => {
                        t == actual
                    }
                    _ => true,
                };
                if matches {
                    out.extend(fields_of(&i.selection_set, fragments, typename));
                }
            }
        }
    }
    out
}

/// Cuts a resolved value down to what the selection asks for.
fn project<'s, 'a>(
    value: &Value,
    set: &'s SelectionSet<'a, String>,
    fragments: &HashMap<&str, &'s FragmentDefinition<'a, String>>,
) -> Value {
    if set.items.is_empty() {
        return value.clone();
    }
    match value {
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| project(v, set, fragments)).collect())
        }
        Value::Object(obj) => {
            let typename = obj.get("__typename").and_then(Value::as_str);
            let mut out = Map::new();
            for f in fields_of(set, fragments, typename) {
                let key = f.alias.clone().unwrap_or_else(|| f.name.clone());
                let v = obj.get(&f.name).cloned().unwrap_or(Value::Null);
                out.insert(key, project(&v, &f.selection_set, fragments));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

pub(crate) fn find_subfield<'s, 'a>(field: &'s GField<'a>, name: &str) -> Option<&'s GField<'a>> {
    field.selection_set.items.iter().find_map(|s| match s {
        Selection::Field(f) if f.name == name => Some(f),
        _ => None,
    })
}

fn resolve_root(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    match field.name.as_str() {
        "viewer" => Ok(viewer(ctx)),
        "serverInfo" => Ok(json!({
            "__typename": "ServerInfo",
            "features": ctx.config.features.iter().map(|(n, on)| json!({"name": n, "isEnabled": on})).collect::<Vec<_>>(),
            "latestLocalVersionInfo": null,
            "cliVersionInfo": {},
        })),
        "upsertBucket" => upsert_bucket(field, ctx),
        "model" | "project" => model(field, ctx),
        "entity" => Ok(
            json!({"__typename": "Entity", "id": "RW50aXR5OjE=", "name": ctx.arg(field, "name"), "organization": null}),
        ),
        "createRunFiles" => create_run_files(field, ctx),
        "createArtifact" => crate::artifacts::create_artifact(field, ctx),
        "createArtifactManifest" => crate::artifacts::create_manifest(field, ctx),
        "updateArtifactManifest" => crate::artifacts::update_manifest(field, ctx),
        "createArtifactFiles" => crate::artifacts::create_files(field, ctx),
        "completeMultipartUploadArtifact" => crate::artifacts::complete_multipart(field, ctx),
        "commitArtifact" => crate::artifacts::commit(field, ctx),
        "useArtifact" => crate::artifacts::use_artifact(field, ctx),
        "linkArtifact" => crate::artifacts::link_artifact(field, ctx),
        "clientIDMapping" => crate::artifacts::client_id_mapping(field, ctx),
        "artifact" => crate::artifacts::artifact_by_id(field, ctx),
        "notifyScriptableRunAlert" => {
            let input = |n: &str| ctx.input_str(field, n).unwrap_or_default();
            let key = RunKey::new(
                &input("entityName"),
                &input("projectName"),
                &input("runName"),
            );
            let wait = ctx
                .input_str(field, "waitDuration")
                .and_then(|w| w.parse().ok())
                .unwrap_or(0);
            ctx.store.add_alert(
                &key,
                &input("title"),
                &input("text"),
                &input("severity"),
                wait,
            );
            Ok(json!({"success": true}))
        }
        other => Err(format!("the stand-in does not implement {other}")),
    }
}

fn viewer(ctx: &Ctx<'_>) -> Value {
    json!({
        "__typename": "User",
        "id": "VXNlcjox",
        "entity": DEFAULT_ENTITY,
        "username": DEFAULT_ENTITY,
        "email": "standin@localhost",
        "admin": false,
        "flags": "{}",
        "userInfo": null,
        "apiKeys": {"edges": []},
        "teams": {"edges": [{"node": {"name": DEFAULT_ENTITY}}]},
        "defaultFramework": null,
        "photoUrl": null,
        "name": "stand-in user",
        "signupRequired": false,
        "baseUrl": ctx.base_url,
    })
}

/// A run as the `Run`/bucket type.
fn bucket(run: &crate::store::RunRow, ctx: &Ctx<'_>) -> Value {
    let key = RunKey::new(&run.entity, &run.project, &run.name);
    let tail = |file: &str| {
        let lines = ctx.store.lines(&key, file);
        let tail: Vec<String> = lines
            .iter()
            .rev()
            .take(10)
            .rev()
            .map(|(_, l)| l.clone())
            .collect();
        Value::String(serde_json::to_string(&tail).unwrap())
    };
    let wandb_config = run
        .config
        .get("_wandb")
        .and_then(|w| w.get("value"))
        .map(|v| json!({"t": v.get("t").cloned().unwrap_or(json!({}))}))
        .unwrap_or(json!({}));
    json!({
        "__typename": "Run",
        "id": run.storage_id,
        "name": run.name,
        "displayName": run.display_name,
        "description": run.notes,
        "notes": run.notes,
        "tags": run.tags,
        "group": run.group_name,
        "jobType": run.job_type,
        "host": run.host,
        "sweepName": null,
        "config": if run.config.is_null() { "{}".to_string() } else { run.config.to_string() },
        "summaryMetrics": if run.summary.is_null() { "{}".to_string() } else { run.summary.to_string() },
        "historyLineCount": ctx.store.line_count(&key, "wandb-history.jsonl"),
        "eventsLineCount": ctx.store.line_count(&key, "wandb-events.jsonl"),
        "logLineCount": ctx.store.line_count(&key, "output.log"),
        "historyTail": tail("wandb-history.jsonl"),
        "eventsTail": tail("wandb-events.jsonl"),
        "wandbConfig": wandb_config.to_string(),
        "state": if run.complete { "finished" } else { "running" },
        // One page: the stand-in holds few files per run.
        "files": {
            "pageInfo": {"hasNextPage": false, "endCursor": null},
            "edges": ctx.store.files(&key).iter().map(|f| json!({
                "node": {"__typename": "File", "name": f.path, "sizeBytes": f.size},
            })).collect::<Vec<_>>(),
        },
        "project": {
            "__typename": "Project",
            "id": "UHJvamVjdDox",
            "name": run.project,
            "entity": {"__typename": "Entity", "id": "RW50aXR5OjE=", "name": run.entity},
        },
    })
}

fn upsert_bucket(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let s = |n: &str| ctx.input_str(field, n);
    let entity = s("entityName")
        .or_else(|| s("entity"))
        .unwrap_or_else(|| DEFAULT_ENTITY.to_string());
    let project = s("modelName")
        .or_else(|| s("project"))
        .unwrap_or_else(|| "uncategorized".to_string());
    let name = s("name").unwrap_or_else(|| format!("standin{:08x}", fastrand::u32(..)));
    let tags = match ctx
        .arg(field, "input")
        .get("tags")
        .cloned()
        .unwrap_or(Value::Null)
    {
        Value::Array(t) => Some(
            t.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
        ),
        _ => None,
    };
    let config = s("config")
        .map(|c| serde_json::from_str(&crate::store::wandb_json(&c)).unwrap_or(Value::String(c)));
    let (run, inserted) = ctx.store.upsert(&Upsert {
        entity,
        project,
        name,
        display_name: s("displayName"),
        notes: s("notes"),
        tags,
        group_name: s("groupName"),
        job_type: s("jobType"),
        host: s("host"),
        program: s("jobProgram").or_else(|| s("program")),
        sweep: s("sweep"),
        config,
        merge_config: ctx.shared_run,
    });
    Ok(
        json!({"__typename": "UpsertBucketPayload", "bucket": bucket(&run, ctx), "inserted": inserted}),
    )
}

fn model(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let project = ctx
        .arg(field, "name")
        .as_str()
        .unwrap_or("uncategorized")
        .to_string();
    let entity = ctx
        .arg(field, "entityName")
        .as_str()
        .unwrap_or(DEFAULT_ENTITY)
        .to_string();
    let mut value = json!({
        "__typename": "Project",
        "id": "UHJvamVjdDox",
        "name": project,
        "entity": {"__typename": "Entity", "id": "RW50aXR5OjE=", "name": entity},
    });
    for sub in ["bucket", "run"] {
        if let Some(f) = find_subfield(field, sub) {
            let name = ctx.arg(f, "name").as_str().unwrap_or_default().to_string();
            let run = ctx.store.run(&RunKey::new(&entity, &project, &name));
            value[sub] = run.map(|r| bucket(&r, ctx)).unwrap_or(Value::Null);
        }
    }
    crate::artifacts::project_fields(field, ctx, &entity, &project, &mut value);
    Ok(value)
}

fn create_run_files(field: &GField<'_>, ctx: &Ctx<'_>) -> Result<Value, String> {
    let input = ctx.arg(field, "input");
    let get = |n: &str| {
        let v = ctx.arg(field, n);
        if v.is_null() {
            input.get(n).cloned().unwrap_or(Value::Null)
        } else {
            v
        }
    };
    let (entity, project, run) = (get("entityName"), get("projectName"), get("runName"));
    let (entity, project, run) = (
        entity
            .as_str()
            .or(get("entity").as_str())
            .unwrap_or(DEFAULT_ENTITY)
            .to_string(),
        project
            .as_str()
            .or(get("project").as_str())
            .unwrap_or("uncategorized")
            .to_string(),
        run.as_str()
            .or(get("run").as_str())
            .unwrap_or_default()
            .to_string(),
    );
    let files: Vec<String> = get("files")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let key = RunKey::new(&entity, &project, &run);
    ctx.store.ensure_run(&key);
    let storage_id = ctx
        .store
        .run(&key)
        .map(|r| r.storage_id)
        .unwrap_or_default();
    let urls: Vec<Value> = files
        .iter()
        .map(|f| {
            json!({
                "__typename": "File",
                "name": f,
                "uploadUrl": format!("{}/storage/{}/{}/{}/{}", ctx.base_url, enc(&entity), enc(&project), enc(&run), f.split('/').map(enc).collect::<Vec<_>>().join("/")),
            })
        })
        .collect();
    Ok(json!({
        "__typename": "CreateRunFilesPayload",
        "runID": storage_id,
        "uploadHeaders": [format!("{}: {}", crate::UPLOAD_TOKEN_HEADER, ctx.config.upload_token)],
        "files": urls,
    }))
}

/// What stays as it is in a path segment (RFC 3986's unreserved).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a path segment.
fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(query: &str, variables: Value, store: &Store) -> Value {
        let config = Config::default();
        let ctx = Ctx {
            store,
            config: &config,
            base_url: "http://127.0.0.1:1",
            variables: variables.as_object().cloned().unwrap_or_default(),
            shared_run: false,
        };
        execute(
            &Request {
                query: query.into(),
                variables: Some(variables),
                operation_name: None,
            },
            &ctx,
        )
    }

    #[test]
    fn answers_exactly_the_selection() {
        let store = Store::open(None).unwrap();
        let out = run(
            "query Viewer { viewer { id entity me: username teams { edges { node { name } } } } }",
            json!({}),
            &store,
        );
        assert_eq!(
            out,
            json!({"data": {"viewer": {"id": "VXNlcjox", "entity": "standin", "me": "standin", "teams": {"edges": [{"node": {"name": "standin"}}]}}}})
        );
    }

    #[test]
    fn upsert_then_resume_status() {
        let store = Store::open(None).unwrap();
        let doc = "mutation UpsertBucket($name: String, $project: String, $entity: String, $config: JSONString, $tags: [String!]) {
            upsertBucket(input: {name: $name, modelName: $project, entityName: $entity, config: $config, tags: $tags}) {
                bucket { id name displayName historyLineCount project { name entity { name } } } inserted } }";
        let out = run(
            doc,
            json!({"name": "r1", "project": "p", "entity": null, "config": "{\"lr\": {\"value\": 0.1}}", "tags": ["x"]}),
            &store,
        );
        assert_eq!(out["data"]["upsertBucket"]["inserted"], true);
        assert_eq!(
            out["data"]["upsertBucket"]["bucket"]["project"]["entity"]["name"],
            "standin"
        );
        let run_row = store.run(&RunKey::new("standin", "p", "r1")).unwrap();
        assert_eq!(run_row.config, json!({"lr": {"value": 0.1}}));
        assert_eq!(run_row.tags, vec!["x"]);

        let q = "query RunResumeStatus($project: String, $entity: String, $name: String!) {
            model(name: $project, entityName: $entity) { id bucket(name: $name, missingOk: true) { id historyLineCount config wandbConfig(keys: [\"t\"]) } } }";
        let out = run(
            q,
            json!({"project": "p", "entity": "standin", "name": "r1"}),
            &store,
        );
        assert_eq!(out["data"]["model"]["bucket"]["historyLineCount"], 0);
        let out = run(
            q,
            json!({"project": "p", "entity": "standin", "name": "nope"}),
            &store,
        );
        assert_eq!(out["data"]["model"]["bucket"], Value::Null);
        let out = run("{ nothingHere }", json!({}), &store);
        assert!(
            out["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("nothingHere")
        );
    }
}
