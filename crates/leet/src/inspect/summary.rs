//! `inspect --summary`: where a run stands, in a screenful or one object.
//!
//! The whole log is folded into the run's identity, state, last step,
//! summary, config and console tail, then printed as W&B's inspector
//! prints them (same labels, alignment, value forms and JSON members), so
//! a script polling `wandb leet inspect --summary --json` for a run's
//! state reads the same answer from either binary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use prost::Message as _;
use unicode_width::UnicodeWidthChar as _;
use unicode_width::UnicodeWidthStr as _;
use wandb_proto::json::{Escapes, Floats, Format, Value};
use wandb_proto::pb::{self, record::RecordType};

use super::InspectError;
use super::gofmt::{self, Time};
use super::json::decode_value;
use super::source::{LogFile, RawEvent, Records};
use crate::runlog::{Console, RunState, Stream, item_path};

/// Console lines shown.
const CONSOLE_TAIL: usize = 20;
/// A run without an exit record whose log has not been written for longer
/// than this is called crashed rather than running.
const CRASHED_AFTER_NANOS: i128 = 10 * 60 * 1_000_000_000;
/// Keys are aligned to the longest, up to this many columns.
const MAX_KEY_WIDTH: usize = 40;
/// List values wider than this are cut.
const MAX_VALUE_WIDTH: usize = 80;
/// How the text lists a value that is a list or an object: wandb's bare
/// `NaN`/`Infinity`, Go's shortest float digits (`1e+20`), no escape for
/// U+2028.
const LISTED: Format = Format {
    escapes: Escapes::Short,
    floats: Floats::Wandb,
    indent: None,
};

/// An object's members, in key order.
type Members = Vec<(String, Value)>;

/// Keys (sorted) to nodes: the run's summary or config as W&B's inspector
/// folds them.
///
/// Not `wandb_proto::tree::Tree` (the service's and the TUI's): W&B's
/// inspector folds records differently, on purpose, and we print what it
/// prints. In the summary a value set whole is a leaf, even an object
/// (setting `a.b` later replaces it rather than merging into it, and
/// removing `a.b` cannot reach into it), and a `null` leaf means unset. In
/// the config an object value merges into the object already there, key by
/// key, where the service's tree replaces it.
type Branch = BTreeMap<String, Node>;

#[derive(Debug, Clone)]
enum Node {
    Branch(Branch),
    Leaf(Value),
}

impl Node {
    /// The branch holding `path`'s last key: branches made on the way, a
    /// leaf in the way replaced by one.
    fn branch_for<'a>(mut branch: &'a mut Branch, path: &[String]) -> &'a mut Branch {
        for key in &path[..path.len().saturating_sub(1)] {
            let child = branch
                .entry(key.clone())
                .or_insert_with(|| Node::Branch(Branch::new()));
            if let Node::Leaf(_) = child {
                *child = Node::Branch(Branch::new());
            }
            let Node::Branch(next) = child else {
                unreachable!("made a branch above")
            };
            branch = next;
        }
        branch
    }

    /// A summary update: `value` at `path`, whole.
    fn set(branch: &mut Branch, path: &[String], value: Value) {
        let Some(last) = path.last() else { return };
        Node::branch_for(branch, path).insert(last.clone(), Node::Leaf(value));
    }

    /// A config update: `value` at `path`, an object merged into the
    /// object there.
    fn merge(branch: &mut Branch, path: &[String], value: Value) {
        let Some(last) = path.last() else { return };
        let branch = Node::branch_for(branch, path);
        match branch.get_mut(last) {
            Some(node) => node.merge_value(value),
            None => {
                branch.insert(last.clone(), Node::config(value));
            }
        }
    }

    fn merge_value(&mut self, value: Value) {
        match (self, value) {
            (Node::Branch(branch), Value::Object(members)) => {
                for (key, value) in members {
                    match branch.get_mut(&key) {
                        Some(node) => node.merge_value(value),
                        None => {
                            branch.insert(key, Node::config(value));
                        }
                    }
                }
            }
            (node, value) => *node = Node::config(value),
        }
    }

    /// A config value: objects are branches, for later updates to merge
    /// into.
    fn config(value: Value) -> Node {
        match value {
            Value::Object(members) => Node::Branch(
                members
                    .into_iter()
                    .map(|(k, v)| (k, Node::config(v)))
                    .collect(),
            ),
            leaf => Node::Leaf(leaf),
        }
    }

    fn remove(branch: &mut Branch, path: &[String]) {
        let Some((last, init)) = path.split_last() else {
            return;
        };
        let mut node = branch;
        for key in init {
            match node.get_mut(key) {
                Some(Node::Branch(next)) => node = next,
                _ => return,
            }
        }
        node.remove(last);
    }

    /// The summary's members: unset leaves and branches left empty
    /// dropped.
    fn summary_members(branch: &Branch) -> Members {
        let mut members = Members::new();
        for (key, node) in branch {
            match node {
                Node::Leaf(Value::Null) => {}
                Node::Leaf(v) => members.push((key.clone(), v.clone())),
                Node::Branch(inner) => {
                    let inner = Node::summary_members(inner);
                    if !inner.is_empty() {
                        members.push((key.clone(), Value::Object(inner)));
                    }
                }
            }
        }
        members
    }

    /// The config's members, all of them.
    fn config_members(branch: &Branch) -> Members {
        branch
            .iter()
            .map(|(key, node)| {
                let value = match node {
                    Node::Leaf(v) => v.clone(),
                    Node::Branch(inner) => Value::Object(Node::config_members(inner)),
                };
                (key.clone(), value)
            })
            .collect()
    }
}

/// What the log says about the run.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub run_id: String,
    pub name: String,
    pub project: String,
    pub entity: String,
    pub notes: String,
    pub tags: Vec<String>,
    pub start_time: Option<Time>,
    /// Running until an exit record says otherwise.
    pub state: RunState,
    pub step: Option<i64>,
    summary: Branch,
    config: Branch,
    pub console: Console,
}

impl RunSummary {
    /// Applies one encoded record.
    pub fn apply(&mut self, bytes: &[u8]) {
        let Ok(record) = pb::Record::decode(bytes) else {
            return;
        };
        match record.record_type {
            Some(RecordType::Run(run)) => {
                // Each run record says who the run is, whole.
                self.run_id = run.run_id;
                self.name = run.display_name;
                self.project = run.project;
                self.entity = run.entity;
                self.notes = run.notes;
                self.tags = run.tags;
                self.start_time = run.start_time.as_ref().map(Time::from_proto);
                if let Some(config) = run.config {
                    self.apply_config(config);
                }
            }
            Some(RecordType::Config(config)) => self.apply_config(config),
            Some(RecordType::Summary(summary)) => {
                for item in summary.update {
                    if let Some(value) = decode_value(&item.value_json) {
                        Node::set(
                            &mut self.summary,
                            &item_path(&item.key, &item.nested_key),
                            value,
                        );
                    }
                }
                for item in summary.remove {
                    Node::remove(&mut self.summary, &item_path(&item.key, &item.nested_key));
                }
            }
            Some(RecordType::Exit(exit)) => self.state = RunState::exited(exit.exit_code),
            Some(RecordType::History(history)) => {
                let from_step = history.step.map(|s| s.num);
                let from_item = || {
                    history
                        .item
                        .iter()
                        .find(|i| item_path(&i.key, &i.nested_key).join(".") == "_step")
                        .and_then(|i| match decode_value(&i.value_json) {
                            Some(Value::Int(n)) => Some(n),
                            _ => None,
                        })
                };
                if let Some(step) = from_step.or_else(from_item).filter(|s| *s >= 0) {
                    self.step = Some(step);
                }
            }
            Some(RecordType::OutputRaw(output)) => {
                let stream = Stream::of_output_type(output.output_type);
                self.console.push(stream, output.timestamp, &output.line);
            }
            _ => {}
        }
    }

    /// Config updates merge into what is there (objects key by key).
    fn apply_config(&mut self, config: pb::ConfigRecord) {
        for item in config.update {
            if let Some(value) = decode_value(&item.value_json) {
                Node::merge(
                    &mut self.config,
                    &item_path(&item.key, &item.nested_key),
                    value,
                );
            }
        }
        for item in config.remove {
            Node::remove(&mut self.config, &item_path(&item.key, &item.nested_key));
        }
    }

    /// The run's state name and how the text shows it.
    fn state(&self, last_write: Option<Time>, now: Time) -> (&'static str, String) {
        if let Some(code) = self.state.exit_code() {
            let name = self.state.name();
            return (name, format!("{name} (exit code {code})"));
        }
        if self.run_id.is_empty() {
            return ("unknown", "unknown (no run record yet)".to_string());
        }
        let idle = last_write.map_or(0, |t| now.nanos_since(t));
        let ago = gofmt::duration_secs(idle);
        if idle > CRASHED_AFTER_NANOS {
            (
                "crashed",
                format!("crashed (no exit record, last write {ago} ago)"),
            )
        } else {
            ("running", format!("running (last write {ago} ago)"))
        }
    }

    /// The summary as text.
    pub fn text(&self, file: &str, last_write: Option<Time>, now: Time) -> String {
        let mut out = String::new();
        let label = if self.name.is_empty() {
            self.run_id.clone()
        } else {
            format!("{} ({})", self.name, self.run_id)
        };
        let project = if self.entity.is_empty() {
            self.project.clone()
        } else {
            format!("{}/{}", self.entity, self.project)
        };
        let mut header = vec![
            ("run", label),
            ("project", project),
            ("file", file.to_string()),
            ("state", self.state(last_write, now).1),
        ];
        if let Some(t) = self.start_time {
            header.push(("started", gofmt::rfc3339_local(t)));
        }
        if let Some(step) = self.step {
            header.push(("step", step.to_string()));
        }
        for (label, value) in header {
            let _ = writeln!(out, "{label:<7}  {value}");
        }
        let summary = Node::summary_members(&self.summary);
        let config = Node::config_members(&self.config);
        for (title, members) in [("summary", &summary), ("config", &config)] {
            let mut rows = Vec::new();
            flatten(members, "", true, &mut rows);
            if rows.is_empty() {
                continue;
            }
            let _ = write!(out, "\n{title}\n");
            let width = rows
                .iter()
                .map(|(k, _)| k.len())
                .max()
                .unwrap_or(0)
                .min(MAX_KEY_WIDTH);
            for (key, value) in rows {
                // Padded to the longest key in bytes, counted in characters
                // (as Go's `%-*s` pads).
                let pad = width.saturating_sub(key.chars().count());
                let _ = writeln!(out, "  {key}{}  {value}", " ".repeat(pad));
            }
        }
        let total = self.console.total();
        if total > 0 {
            let shown = total.min(CONSOLE_TAIL as u64);
            let _ = write!(out, "\nconsole (last {shown} of {total} lines)\n");
            for line in self.console.tail(CONSOLE_TAIL) {
                let stream = match line.stream {
                    Stream::Stderr => "[stderr] ",
                    Stream::Stdout => "",
                };
                let _ = writeln!(
                    out,
                    "  {}  {stream}{}",
                    gofmt::clock_local(time_of(line)),
                    line.text()
                );
            }
        }
        out
    }

    /// The summary as one JSON object (indented, keys sorted).
    pub fn json(&self, file: &str, last_write: Option<Time>, now: Time) -> String {
        let str_ = |s: &str| Value::Str(s.to_string());
        let time = |t: Option<Time>| t.map_or(Value::Null, |t| str_(&gofmt::rfc3339_nano_utc(t)));
        let mut config = Node::config_members(&self.config);
        config.retain(|(k, _)| k != "_wandb");
        prune(&mut config);
        let console = self
            .console
            .tail(CONSOLE_TAIL)
            .map(|line| {
                Value::Object(vec![
                    ("line".to_string(), Value::Str(line.text())),
                    ("stream".to_string(), str_(line.stream.name())),
                    ("time".to_string(), time(Some(time_of(line)))),
                ])
            })
            .collect();
        let mut summary = Node::summary_members(&self.summary);
        summary.retain(|(k, _)| k != "_wandb");
        let members = BTreeMap::from([
            ("config", Value::Object(config)),
            ("console", Value::Array(console)),
            (
                "console_lines",
                Value::Int(i64::try_from(self.console.total()).unwrap_or(i64::MAX)),
            ),
            ("entity", str_(&self.entity)),
            (
                "exit_code",
                self.state
                    .exit_code()
                    .map_or(Value::Null, |c| Value::Int(i64::from(c))),
            ),
            ("file", str_(file)),
            ("last_write", time(last_write)),
            ("name", str_(&self.name)),
            ("notes", str_(&self.notes)),
            ("project", str_(&self.project)),
            ("run_id", str_(&self.run_id)),
            ("start_time", time(self.start_time)),
            ("state", str_(self.state(last_write, now).0)),
            ("step", self.step.map_or(Value::Null, Value::Int)),
            ("summary", Value::Object(summary)),
            (
                "tags",
                Value::Array(self.tags.iter().map(|t| str_(t)).collect()),
            ),
        ]);
        let object = Value::Object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        );
        let mut text = String::new();
        object.write_with(&mut text, Format::GO_JSON_INDENTED);
        text.push('\n');
        text
    }
}

/// When a console line was first written (Go's zero time if the capture
/// has none).
fn time_of(line: &crate::runlog::Line) -> Time {
    line.time.as_ref().map_or(Time::ZERO, Time::from_proto)
}

/// Drops objects left without members, innermost first.
fn prune(members: &mut Members) {
    members.retain_mut(|(_, v)| match v {
        Value::Object(inner) => {
            prune(inner);
            !inner.is_empty()
        }
        _ => true,
    });
}

/// Leaf paths and how they show; an object with a string `_type` (a media
/// value, a table) shows as its type and file.
///
/// Not `runlog::flatten` (the TUI's overview): W&B's inspector lists media
/// as one row and an empty object as none, where the TUI shows every leaf.
fn flatten(members: &Members, prefix: &str, top: bool, rows: &mut Vec<(String, String)>) {
    for (key, value) in members {
        if top && key == "_wandb" {
            continue;
        }
        let full = format!("{prefix}{key}");
        match value {
            Value::Object(inner) => match (value.get("_type"), value.get("path")) {
                (Some(Value::Str(kind)), Some(Value::Str(path))) => {
                    rows.push((full, format!("{kind} {path}").trim().to_string()));
                }
                (Some(Value::Str(kind)), _) => rows.push((full, kind.clone())),
                _ => flatten(inner, &format!("{full}."), false, rows),
            },
            v => rows.push((full, shown(v))),
        }
    }
}

/// A leaf value as the summary shows it.
fn shown(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => gofmt::write_g(&mut out, *f, gofmt::PRINT),
        Value::Str(s) => out.push_str(s),
        composite => {
            composite.write_with(&mut out, LISTED);
            if out.width() > MAX_VALUE_WIDTH {
                let mut cut = String::new();
                let mut width = 0;
                for c in out.chars() {
                    width += c.width().unwrap_or(0);
                    if width > MAX_VALUE_WIDTH - 4 {
                        break;
                    }
                    cut.push(c);
                }
                cut.push_str("...");
                out = cut;
            }
        }
    }
    out
}

/// Reads the whole log and prints its summary.
pub fn print(log: &LogFile, json: bool) -> Result<(), InspectError> {
    let mut records = Records::open(log)?;
    let mut run = RunSummary::default();
    loop {
        match records.next_raw()? {
            RawEvent::Record(bytes) => run.apply(bytes),
            RawEvent::Skipped(_) => {}
            RawEvent::Incomplete | RawEvent::End => break,
        }
    }
    let last_write = std::fs::metadata(&log.path)
        .and_then(|m| m.modified())
        .ok()
        .map(Time::from_system);
    let now = Time::from_system(SystemTime::now());
    let text = if json {
        run.json(&log.display, last_write, now)
    } else {
        run.text(&log.display, last_write, now)
    };
    super::write_stdout(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(r: RecordType) -> Vec<u8> {
        pb::Record {
            record_type: Some(r),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn update(key: &str, nested: &[&str], value_json: &str) -> pb::SummaryItem {
        pb::SummaryItem {
            key: key.into(),
            nested_key: nested.iter().map(|s| s.to_string()).collect(),
            value_json: value_json.into(),
        }
    }

    #[test]
    fn folds_and_prints_like_w_and_b() {
        let mut run = RunSummary::default();
        run.apply(&record(RecordType::Run(pb::RunRecord {
            run_id: "q".into(),
            display_name: "名前".into(),
            entity: "ent".into(),
            project: "pr".into(),
            config: Some(pb::ConfigRecord {
                update: vec![
                    pb::ConfigItem {
                        key: "x".into(),
                        value_json: r#"{"y":1}"#.into(),
                        ..Default::default()
                    },
                    pb::ConfigItem {
                        key: "_wandb".into(),
                        value_json: "{}".into(),
                        ..Default::default()
                    },
                    pb::ConfigItem {
                        key: "e".into(),
                        value_json: "{}".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        })));
        run.apply(&record(RecordType::Config(pb::ConfigRecord {
            update: vec![pb::ConfigItem {
                key: "x".into(),
                value_json: r#"{"z":[1,NaN]}"#.into(),
                ..Default::default()
            }],
            ..Default::default()
        })));
        run.apply(&record(RecordType::Summary(pb::SummaryRecord {
            update: vec![
                update("loss", &[], "1e6"),
                update("", &["img", "p"], r#"{"_type":"image-file"}"#),
                update("bad", &[], "not json"),
                update("é", &[], "\"x\""),
            ],
            ..Default::default()
        })));
        run.apply(&record(RecordType::History(pb::HistoryRecord {
            step: Some(pb::HistoryStep { num: 4 }),
            ..Default::default()
        })));
        run.apply(&record(RecordType::Exit(pb::RunExitRecord {
            exit_code: 2,
            ..Default::default()
        })));
        let now = Time {
            secs: 1_700_000_000,
            nanos: 0,
        };
        let text = run.text("f.wandb", Some(now), now);
        assert_eq!(
            text,
            "run      名前 (q)\nproject  ent/pr\nfile     f.wandb\nstate    failed (exit code 2)\n\
             step     4\n\nsummary\n  img.p  image-file\n  loss   1e+06\n  é      x\n\n\
             config\n  x.y  1\n  x.z  [1,NaN]\n"
        );
        let json = run.json("f.wandb", Some(now), now);
        assert!(json.contains("\"config\": {\n    \"x\": {\n      \"y\": 1,\n      \"z\": [\n        1,\n        \"NaN\"\n      ]"), "{json}");
        assert!(json.contains("\"state\": \"failed\""), "{json}");
        assert!(
            json.contains("\"last_write\": \"2023-11-14T22:13:20Z\""),
            "{json}"
        );
    }

    #[test]
    fn long_lists_are_cut_at_eighty_columns() {
        let long = Value::parse(&format!("[\"{}\"]", "x".repeat(77))).unwrap();
        let shown_long = shown(&long);
        assert_eq!(shown_long.chars().count(), 79);
        assert!(shown_long.ends_with("x..."));
        let fits = Value::parse(&format!("[\"{}\"]", "x".repeat(76))).unwrap();
        assert_eq!(shown(&fits).chars().count(), 80);
        let wide = Value::parse(&format!("[\"{}\"]", "漢".repeat(78))).unwrap();
        assert_eq!(shown(&wide).width(), 79);
    }

    #[test]
    fn state_follows_exit_run_and_last_write() {
        let now = Time {
            secs: 10_000,
            nanos: 0,
        };
        let mut run = RunSummary::default();
        assert_eq!(run.state(Some(now), now).0, "unknown");
        run.run_id = "r".into();
        let recent = Time {
            secs: 10_000 - 61,
            nanos: 0,
        };
        assert_eq!(
            run.state(Some(recent), now).1,
            "running (last write 1m1s ago)"
        );
        let old = Time {
            secs: 10_000 - 601,
            nanos: 0,
        };
        assert_eq!(
            run.state(Some(old), now).1,
            "crashed (no exit record, last write 10m1s ago)"
        );
        run.state = RunState::exited(0);
        assert_eq!(run.state(Some(old), now).1, "finished (exit code 0)");
    }
}
