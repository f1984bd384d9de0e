//! The run summary: per leaf, the latest value and running statistics.
//!
//! Every history row updates the leaves it contains. A leaf's summary value
//! is its latest value, or, when `define_metric` asked for aggregates, an
//! object with the chosen ones (`min`, `max`, `mean`, `last`, `first`).
//! Statistics are kept from the first value even if the metric is defined
//! later. A user's own summary write sets the leaf and drops its aggregates
//! for the rest of the run, as in wandb-core.

use indexmap::{IndexMap, IndexSet};
use wandb_proto::json::Value;
use wandb_proto::pb;

use super::history::Path;
use super::metrics::{MetricDef, Metrics};

#[derive(Debug, Clone)]
struct Leaf {
    latest: Value,
    first: Value,
    min: f64,
    max: f64,
    total: f64,
    count: u64,
    /// Set by a user write: show the plain value from now on.
    plain: bool,
}

impl Leaf {
    fn new(value: Value) -> Self {
        Self {
            first: value.clone(),
            latest: value,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            total: 0.0,
            count: 0,
            plain: false,
        }
    }

    fn observe(&mut self, value: Value) {
        if let Some(x) = value.as_f64() {
            if !x.is_nan() {
                self.min = self.min.min(x);
                self.max = self.max.max(x);
            }
            self.total += x;
            self.count += 1;
        }
        self.latest = value;
    }
}

/// The summary of one run.
#[derive(Debug, Default)]
pub struct Summary {
    leaves: IndexMap<Path, Leaf>,
    /// Leaves changed since [`take_dirty`](Self::take_dirty).
    dirty: IndexSet<Path>,
}

fn metric_name(path: &[String]) -> String {
    path.join(".")
}

impl Summary {
    /// Records a value from a history row.
    pub fn observe(&mut self, path: &Path, value: &Value) {
        if matches!(value, Value::Null) {
            return;
        }
        match self.leaves.get_mut(path) {
            Some(leaf) => leaf.observe(value.clone()),
            None => {
                let mut leaf = Leaf::new(value.clone());
                leaf.observe(value.clone());
                self.leaves.insert(path.clone(), leaf);
            }
        }
        self.dirty.insert(path.clone());
    }

    /// Sets a leaf to a value without touching statistics or aggregates (the
    /// service's own bookkeeping, such as `_wandb.runtime`).
    pub fn set_plain_value(&mut self, path: Path, value: Value) {
        match self.leaves.get_mut(&path) {
            Some(leaf) => leaf.latest = value,
            None => {
                self.leaves.insert(path.clone(), Leaf::new(value));
            }
        }
        self.dirty.insert(path);
    }

    /// Applies a `summary` record written by the user (`run.summary[k] = v`).
    pub fn apply_user(&mut self, record: &pb::SummaryRecord) {
        for item in &record.update {
            let path = item_path(&item.key, &item.nested_key);
            let Ok(value) = Value::parse(&item.value_json) else {
                tracing::warn!(key = %path.join("."), "summary update with invalid JSON ignored");
                continue;
            };
            let leaf = self
                .leaves
                .entry(path.clone())
                .or_insert_with(|| Leaf::new(value.clone()));
            leaf.latest = value;
            leaf.plain = true;
            self.dirty.insert(path);
        }
        for item in &record.remove {
            let path = item_path(&item.key, &item.nested_key);
            self.leaves.shift_remove(&path);
            self.dirty.insert(path);
        }
    }

    /// A leaf's summary value under the metric definitions, `None` when it
    /// has none (removed, `summary="none"`, or null).
    pub fn value(&self, path: &[String], metrics: &Metrics) -> Option<Value> {
        let leaf = self.leaves.get(path)?;
        let def = metrics.get(&metric_name(path));
        render(leaf, def)
    }

    /// Leaves changed since the last call, with their current values (`None`
    /// when a leaf no longer has a value).
    pub fn take_dirty(&mut self, metrics: &Metrics) -> Vec<(Path, Option<Value>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|p| {
                let v = self.value(&p, metrics);
                (p, v)
            })
            .collect()
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Every leaf with a value, in first-seen order.
    pub fn items(&self, metrics: &Metrics) -> Vec<(Path, Value)> {
        self.leaves
            .iter()
            .filter_map(|(p, leaf)| {
                render(leaf, metrics.get(&metric_name(p))).map(|v| (p.clone(), v))
            })
            .collect()
    }

    /// The summary as one nested JSON object (`wandb-summary.json`).
    pub fn to_tree(&self, metrics: &Metrics) -> Value {
        let mut root = Value::Object(Vec::new());
        for (path, value) in self.items(metrics) {
            insert_path(&mut root, &path, value);
        }
        root
    }
}

fn render(leaf: &Leaf, def: Option<&MetricDef>) -> Option<Value> {
    if matches!(leaf.latest, Value::Null) {
        return None;
    }
    let Some(flags) = def.map(|d| d.summary) else {
        return Some(leaf.latest.clone());
    };
    if flags.none {
        return None;
    }
    if leaf.plain || !flags.aggregates() {
        return Some(leaf.latest.clone());
    }
    let mut agg = Vec::new();
    let numeric = leaf.count > 0;
    if flags.min && numeric && leaf.min.is_finite() {
        agg.push(("min".to_string(), number(leaf.min)));
    }
    if flags.max && numeric && leaf.max.is_finite() {
        agg.push(("max".to_string(), number(leaf.max)));
    }
    if flags.mean && numeric {
        agg.push((
            "mean".to_string(),
            Value::Float(leaf.total / leaf.count as f64),
        ));
    }
    if flags.last {
        agg.push(("last".to_string(), leaf.latest.clone()));
    }
    if flags.first {
        agg.push(("first".to_string(), leaf.first.clone()));
    }
    if agg.is_empty() {
        return Some(leaf.latest.clone());
    }
    Some(Value::Object(agg))
}

/// Whole numbers print as integers, as they were logged.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::Int(x as i64)
    } else {
        Value::Float(x)
    }
}

/// `key`, or `nested_key` when set.
pub fn item_path(key: &str, nested_key: &[String]) -> Path {
    if nested_key.is_empty() {
        vec![key.to_string()]
    } else {
        nested_key.to_vec()
    }
}

/// Puts `value` at `path` in a tree of objects.
pub fn insert_path(root: &mut Value, path: &[String], value: Value) {
    let Value::Object(members) = root else { return };
    let (head, rest) = path.split_first().expect("non-empty path");
    let idx = match members.iter().position(|(k, _)| k == head) {
        Some(i) => i,
        None => {
            members.push((head.clone(), Value::Object(Vec::new())));
            members.len() - 1
        }
    };
    if rest.is_empty() {
        members[idx].1 = value;
    } else {
        if !matches!(members[idx].1, Value::Object(_)) {
            members[idx].1 = Value::Object(Vec::new());
        }
        insert_path(&mut members[idx].1, rest, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        s.split('.').map(String::from).collect()
    }

    fn define(metrics: &mut Metrics, name: &str, summary: pb::MetricSummary) {
        metrics.define(&pb::MetricRecord {
            name: name.into(),
            summary: Some(summary),
            ..Default::default()
        });
    }

    #[test]
    fn aggregates_follow_definitions_and_user_writes_make_values_plain() {
        let mut metrics = Metrics::default();
        let mut s = Summary::default();
        for x in [3.0, 1.0, 2.0] {
            s.observe(&p("loss"), &Value::Float(x));
        }
        assert_eq!(s.value(&p("loss"), &metrics), Some(Value::Float(2.0)));

        // Defined after the values were seen: statistics are there already.
        define(
            &mut metrics,
            "loss",
            pb::MetricSummary {
                min: true,
                mean: true,
                last: true,
                ..Default::default()
            },
        );
        assert_eq!(
            s.value(&p("loss"), &metrics).unwrap().to_json(),
            r#"{"min":1,"mean":2,"last":2}"#
        );

        s.apply_user(&pb::SummaryRecord {
            update: vec![pb::SummaryItem {
                key: "loss".into(),
                value_json: "0.0001".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        s.observe(&p("loss"), &Value::Float(0.5));
        assert_eq!(s.value(&p("loss"), &metrics), Some(Value::Float(0.5)));

        define(
            &mut metrics,
            "hide",
            pb::MetricSummary {
                none: true,
                ..Default::default()
            },
        );
        s.observe(&p("hide"), &Value::Int(1));
        s.observe(&p("n.a"), &Value::Null);
        assert!(s.value(&p("hide"), &metrics).is_none());
        assert!(s.value(&p("n.a"), &metrics).is_none());
    }

    #[test]
    fn tree_nests_paths() {
        let metrics = Metrics::default();
        let mut s = Summary::default();
        s.observe(&p("a.b"), &Value::Int(1));
        s.observe(&p("a.c"), &Value::Str("x".into()));
        s.set_plain_value(p("_wandb.runtime"), Value::Int(3));
        assert_eq!(
            s.to_tree(&metrics).to_json(),
            r#"{"a":{"b":1,"c":"x"},"_wandb":{"runtime":3}}"#
        );
        let dirty = s.take_dirty(&metrics);
        assert_eq!(dirty.len(), 3);
        assert!(!s.has_dirty());
    }
}
