//! The file stream's lines, built from records read back from the log:
//! history rows and system-metrics samples as JSON objects, and console
//! text as the file stream shows it. Pure functions (the console keeps
//! its own emulator state), tested here.

use std::time::SystemTime;

use wandb_proto::pb;
use wandb_proto::view::ItemView;

use crate::runstate::console::Console;

/// A history row as a JSON line: leaves under their paths, nested objects
/// rebuilt; values as recorded.
pub(super) fn history_line(items: &[ItemView<'_>]) -> String {
    enum Node<'a> {
        Leaf(&'a str),
        Obj(Vec<(&'a str, Node<'a>)>),
    }
    fn insert<'a>(node: &mut Vec<(&'a str, Node<'a>)>, path: &[&'a str], value: &'a str) {
        let Some((head, rest)) = path.split_first() else {
            return;
        };
        let pos = node.iter().position(|(k, _)| k == head);
        if rest.is_empty() {
            match pos {
                Some(i) => node[i].1 = Node::Leaf(value),
                None => node.push((head, Node::Leaf(value))),
            }
            return;
        }
        let i = match pos {
            Some(i) => i,
            None => {
                node.push((head, Node::Obj(Vec::new())));
                node.len() - 1
            }
        };
        if let Node::Leaf(_) = node[i].1 {
            node[i].1 = Node::Obj(Vec::new());
        }
        if let Node::Obj(children) = &mut node[i].1 {
            insert(children, rest, value);
        }
    }
    fn write(node: &[(&str, Node<'_>)], out: &mut String) {
        out.push('{');
        for (i, (k, v)) in node.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            wandb_proto::json::write_str(k, out);
            out.push(':');
            match v {
                Node::Leaf(text) => out.push_str(text),
                Node::Obj(children) => write(children, out),
            }
        }
        out.push('}');
    }
    let mut root = Vec::new();
    for item in items {
        let key = [item.key];
        let path: &[&str] = if item.nested_key.is_empty() {
            &key
        } else {
            &item.nested_key
        };
        let value = if item.value_json.is_empty() {
            "null"
        } else {
            item.value_json
        };
        insert(&mut root, path, value);
    }
    let mut out = String::new();
    write(&root, &mut out);
    out
}

/// A system-metrics sample as an events line (`_runtime` counts from the
/// run's start).
pub(super) fn events_line(
    stats: &pb::StatsRecord,
    start: Option<&prost_types::Timestamp>,
) -> String {
    let secs = wandb_proto::time::secs;
    let mut out = String::from("{\"_wandb\":true");
    if let Some(ts) = &stats.timestamp {
        out.push_str(",\"_timestamp\":");
        wandb_proto::json::write_float(secs(ts), &mut out);
        if let Some(start) = start {
            out.push_str(",\"_runtime\":");
            wandb_proto::json::write_float((secs(ts) - secs(start)).max(0.0), &mut out);
        }
    }
    for item in &stats.item {
        out.push(',');
        wandb_proto::json::write_str(&format!("system.{}", item.key), &mut out);
        out.push(':');
        out.push_str(if item.value_json.is_empty() {
            "null"
        } else {
            &item.value_json
        });
    }
    out.push('}');
    out
}

/// The console as the file stream wants it: lines with their first-seen
/// time, `ERROR ` before stderr lines; or, for a server with
/// STRUCTURED_CONSOLE_LOGS, each line a JSON object
/// (`{"level":"error","ts":…,"label":…,"content":…}`, level for stderr
/// only, label only when set), as wandb-core sends them.
pub(super) struct ConsoleLines {
    console: Console,
    finished: u64,
    /// Line number → (time first seen, text last sent).
    sent: std::collections::BTreeMap<u64, (String, String)>,
    label: Option<String>,
    structured: bool,
}

fn console_time() -> String {
    let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    now.trim_end_matches('Z').to_string()
}

impl ConsoleLines {
    /// A console whose lines carry the label (`x_label`) when given.
    pub(super) fn new(label: Option<String>, structured: bool) -> Self {
        ConsoleLines {
            console: Console::default(),
            finished: 0,
            sent: Default::default(),
            label,
            structured,
        }
    }

    fn line_of(
        structured: bool,
        label: Option<&str>,
        stderr: bool,
        ts: &str,
        text: &str,
    ) -> String {
        if structured {
            return structured_line(stderr, ts, label, text);
        }
        let prefix = if stderr { "ERROR " } else { "" };
        match label {
            Some(l) => format!("{prefix}{ts} [{l}] {text}"),
            None => format!("{prefix}{ts} {text}"),
        }
    }

    /// Feeds captured output.
    pub(super) fn write(&mut self, stderr: bool, text: &str) {
        self.console.write(stderr, text);
    }

    /// Lines from `run.write_logs()`.
    pub(super) fn append_lines(&mut self, text: &str) {
        self.console.append_lines(text);
    }

    /// Lines new or changed since the last call, by line number.
    pub(super) fn changed(&mut self) -> Vec<(u64, String)> {
        if !self.console.take_dirty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let finished = self.console.drain_finished_with_stream();
        let tail = self.console.tail_with_stream();
        let lines = finished
            .iter()
            .map(|l| (l, true))
            .chain(tail.iter().map(|l| (l, false)));
        for (n, ((text, stderr), is_final)) in (self.finished..).zip(lines) {
            let (ts, last) = self
                .sent
                .entry(n)
                .or_insert_with(|| (console_time(), String::new()));
            let line = Self::line_of(self.structured, self.label.as_deref(), *stderr, ts, text);
            if *last != line {
                *last = line.clone();
                out.push((n, line));
            }
            if is_final {
                self.sent.remove(&n);
            }
        }
        self.finished += finished.len() as u64;
        out
    }
}

/// One console line in the structured form, keys in wandb-core's order
/// and escaped as Go's `encoding/json` escapes them (`<`, `>`, `&`, U+2028
/// and U+2029 as `\u` escapes), so the bytes sent are the same.
fn structured_line(stderr: bool, ts: &str, label: Option<&str>, text: &str) -> String {
    let mut line = String::with_capacity(text.len() + 48);
    line.push('{');
    if stderr {
        line.push_str(r#""level":"error","#);
    }
    line.push_str(r#""ts":"#);
    push_go_json_string(&mut line, ts);
    if let Some(label) = label {
        line.push_str(r#","label":"#);
        push_go_json_string(&mut line, label);
    }
    line.push_str(r#","content":"#);
    push_go_json_string(&mut line, text);
    line.push('}');
    line
}

fn push_go_json_string(out: &mut String, s: &str) {
    let quoted = serde_json::Value::from(s).to_string();
    for c in quoted.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_console_lines_are_json_as_wandb_core_writes_them() {
        assert_eq!(
            structured_line(false, "2023-04-05T10:15:30.000000", None, "Hello, world!"),
            r#"{"ts":"2023-04-05T10:15:30.000000","content":"Hello, world!"}"#
        );
        assert_eq!(
            structured_line(
                true,
                "2023-04-05T10:15:30.000000",
                Some("stderr"),
                "Division by zero"
            ),
            r#"{"level":"error","ts":"2023-04-05T10:15:30.000000","label":"stderr","content":"Division by zero"}"#
        );
        assert_eq!(
            structured_line(false, "t", None, "a<b> & \"q\" \u{2028}"),
            r#"{"ts":"t","content":"a\u003cb\u003e \u0026 \"q\" \u2028"}"#
        );
        let mut c = ConsoleLines::new(Some("w1".into()), true);
        c.write(true, "oops\n");
        let lines = c.changed();
        let v: serde_json::Value = serde_json::from_str(&lines[0].1).unwrap();
        assert_eq!(
            (
                v["level"].as_str(),
                v["label"].as_str(),
                v["content"].as_str()
            ),
            (Some("error"), Some("w1"), Some("oops"))
        );
    }

    #[test]
    fn history_lines_rebuild_nested_objects() {
        let item = |path: &[&'static str], v: &'static str| ItemView {
            nested_key: path.to_vec(),
            value_json: v,
            ..Default::default()
        };
        let line = history_line(&[
            item(&["loss"], "0.5"),
            item(&["img", "_type"], "\"image-file\""),
            item(&["img", "size"], "3"),
            item(&["_step"], "0"),
        ]);
        assert_eq!(
            line,
            r#"{"loss":0.5,"img":{"_type":"image-file","size":3},"_step":0}"#
        );
    }

    #[test]
    fn events_lines_carry_runtime_from_the_start() {
        let ts = |s| prost_types::Timestamp {
            seconds: s,
            nanos: 500_000_000,
        };
        let stats = pb::StatsRecord {
            timestamp: Some(ts(110)),
            item: vec![pb::StatsItem {
                key: "cpu".into(),
                value_json: "12.5".into(),
            }],
            ..Default::default()
        };
        let line = events_line(
            &stats,
            Some(&prost_types::Timestamp {
                seconds: 100,
                nanos: 500_000_000,
            }),
        );
        assert_eq!(
            line,
            r#"{"_wandb":true,"_timestamp":110.5,"_runtime":10,"system.cpu":12.5}"#
        );
    }

    #[test]
    fn console_lines_are_sent_again_only_when_they_change() {
        let mut c = ConsoleLines::new(Some("w1".into()), false);
        c.write(false, "epoch 1\rprogress 50%");
        let first = c.changed();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, 0);
        assert!(first[0].1.ends_with(" [w1] progress 50%"), "{}", first[0].1);
        assert!(c.changed().is_empty(), "nothing new");
        c.write(false, "\rprogress 100%\n");
        c.write(true, "boom\n");
        let second = c.changed();
        let texts: Vec<_> = second.iter().map(|(n, l)| (*n, l.clone())).collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert_eq!(texts[0].0, 0);
        assert!(
            texts[0].1.ends_with(" [w1] progress 100%"),
            "{:?}",
            texts[0]
        );
        assert_eq!(texts[1].0, 1);
        assert!(texts[1].1.starts_with("ERROR "), "{:?}", texts[1]);
        // Line 0 keeps the time it was first seen.
        assert_eq!(first[0].1.split(' ').next(), texts[0].1.split(' ').next());
    }
}
