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
/// time, `ERROR ` before stderr lines.
pub(super) struct ConsoleLines {
    console: Console,
    finished: u64,
    /// Line number → (time first seen, text last sent).
    sent: std::collections::BTreeMap<u64, (String, String)>,
    label: Option<String>,
}

fn console_time() -> String {
    let now = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    now.trim_end_matches('Z').to_string()
}

impl ConsoleLines {
    /// A console whose lines carry `[label] ` (`x_label`) when given.
    pub(super) fn new(label: Option<String>) -> Self {
        ConsoleLines {
            console: Console::default(),
            finished: 0,
            sent: Default::default(),
            label,
        }
    }

    /// Feeds captured output.
    pub(super) fn write(&mut self, stderr: bool, text: &str) {
        self.console.write(stderr, text);
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
            let prefix = if *stderr { "ERROR " } else { "" };
            let label = self
                .label
                .as_ref()
                .map(|l| format!("[{l}] "))
                .unwrap_or_default();
            let line = format!("{prefix}{ts} {label}{text}");
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut c = ConsoleLines::new(Some("w1".into()));
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
