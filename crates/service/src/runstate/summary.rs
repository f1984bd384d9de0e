//! The run summary: per leaf, the latest value and running statistics.
//!
//! Every history row updates the leaves it contains. A leaf's summary value
//! is its latest value, or, when `define_metric` asked for aggregates, an
//! object with the chosen ones (`min`, `max`, `mean`, `last`, `first`).
//! Statistics are kept from the first value even if the metric is defined
//! later. A user's own summary write sets the leaf and drops its aggregates
//! for the rest of the run, as in wandb-core. Leaves are indexed by
//! [`KeyId`], so a row's update touches no hash table.

use wandb_proto::json::Value;
use wandb_proto::pb;

use super::keys::{KeyId, Keys};
use super::metrics::{MetricDef, Metrics};
use wandb_proto::tree::Tree;

/// What the summary needs to know about a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Null,
    Int(i64),
    Float(f64),
    /// Strings, booleans, lists.
    Other,
}

impl Kind {
    pub fn number(self) -> Option<f64> {
        match self {
            Kind::Int(i) => Some(i as f64),
            Kind::Float(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn of(v: &Value) -> Self {
        match v {
            Value::Null => Kind::Null,
            Value::Int(i) => Kind::Int(*i),
            Value::Float(f) => Kind::Float(*f),
            _ => Kind::Other,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct SLeaf {
    present: bool,
    /// The latest value's JSON text (the buffer is reused row after row).
    latest: Vec<u8>,
    first: Option<Vec<u8>>,
    min: f64,
    max: f64,
    total: f64,
    count: u64,
    /// Set by a user write: show the plain value from now on.
    plain: bool,
    dirty: bool,
}

impl SLeaf {
    fn set_latest(&mut self, text: &[u8]) {
        if !self.present {
            // New, or back after a removal: statistics start over.
            self.present = true;
            self.min = f64::INFINITY;
            self.max = f64::NEG_INFINITY;
            self.total = 0.0;
            self.count = 0;
            self.first = None;
        }
        self.latest.clear();
        self.latest.extend_from_slice(text);
        if self.first.is_none() {
            self.first = Some(text.to_vec());
        }
    }
}

/// The summary of one run.
#[derive(Debug, Default)]
pub struct Summary {
    leaves: Vec<SLeaf>,
    /// Leaves changed since [`take_dirty`](Self::take_dirty), in change order.
    dirty: Vec<KeyId>,
}

impl Summary {
    fn leaf(&mut self, id: KeyId) -> &mut SLeaf {
        let i = id as usize;
        if self.leaves.len() <= i {
            self.leaves.resize_with(i + 1, SLeaf::default);
        }
        &mut self.leaves[i]
    }

    fn mark(&mut self, id: KeyId) {
        let leaf = self.leaf(id);
        if !leaf.dirty {
            leaf.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Records a value from a history row (null values are not summarised).
    pub fn observe(&mut self, id: KeyId, text: &[u8], kind: Kind) {
        if kind == Kind::Null {
            return;
        }
        let leaf = self.leaf(id);
        leaf.set_latest(text);
        if let Some(x) = kind.number() {
            // As wandb-core (Go's min and max): a NaN, once seen, is the
            // minimum and the maximum from then on.
            if leaf.count == 0 || x.is_nan() {
                (leaf.min, leaf.max) = (x, x);
            } else if !leaf.min.is_nan() {
                (leaf.min, leaf.max) = (leaf.min.min(x), leaf.max.max(x));
            }
            leaf.total += x;
            leaf.count += 1;
        }
        self.mark(id);
    }

    /// Sets a leaf without statistics (the service's own bookkeeping, such
    /// as `_wandb.runtime`).
    pub fn set_plain_value(&mut self, id: KeyId, text: &str) {
        self.leaf(id).set_latest(text.as_bytes());
        self.mark(id);
    }

    /// Applies a `summary` record written by the user (`run.summary[k] = v`).
    pub fn apply_user(&mut self, keys: &mut Keys, record: &pb::SummaryRecord) {
        for item in &record.update {
            let id = item_id(keys, &item.key, &item.nested_key);
            match Value::parse(&item.value_json) {
                Ok(Value::Null) => {
                    // The SDK sends NaN as null. wandb-core drops the leaf
                    // from the summary without writing a removal: the
                    // user's record, already in the log, says null; an
                    // earlier change not written yet is not written now.
                    let leaf = self.leaf(id);
                    leaf.present = false;
                    if std::mem::take(&mut leaf.dirty) {
                        self.dirty.retain(|d| *d != id);
                    }
                }
                Ok(v) => {
                    let leaf = self.leaf(id);
                    leaf.set_latest(v.to_json().as_bytes());
                    leaf.plain = true;
                    self.mark(id);
                }
                Err(e) => {
                    tracing::warn!(key = %keys.info(id).dotted, "summary update with invalid JSON ignored: {e}")
                }
            }
        }
        for item in &record.remove {
            let id = item_id(keys, &item.key, &item.nested_key);
            self.leaf(id).present = false;
            self.mark(id);
        }
    }

    /// A leaf's summary value as JSON, `None` when it has none (removed,
    /// `summary="none"`, never set).
    pub fn value(&self, id: KeyId, keys: &Keys, metrics: &Metrics) -> Option<String> {
        let leaf = self.leaves.get(id as usize).filter(|l| l.present)?;
        render(leaf, metrics.get(&keys.info(id).dotted))
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Leaves changed since the last call, with their current values.
    pub fn take_dirty(&mut self, keys: &Keys, metrics: &Metrics) -> Vec<(KeyId, Option<String>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|id| {
                self.leaves[id as usize].dirty = false;
                (id, self.value(id, keys, metrics))
            })
            .collect()
    }

    /// Every leaf with a value, in first-seen order of the keys.
    pub fn items(&self, keys: &Keys, metrics: &Metrics) -> Vec<(KeyId, String)> {
        (0..self.leaves.len() as KeyId)
            .filter_map(|id| self.value(id, keys, metrics).map(|v| (id, v)))
            .collect()
    }

    /// The summary as one nested JSON object (`wandb-summary.json`).
    pub fn to_tree(&self, keys: &Keys, metrics: &Metrics) -> Value {
        let mut tree = Tree::default();
        for (id, text) in self.items(keys, metrics) {
            tree.insert(keys.path(id), Value::parse(&text).unwrap_or(Value::Null));
        }
        tree.to_value()
    }
}

fn item_id(keys: &mut Keys, key: &str, nested_key: &[String]) -> KeyId {
    if nested_key.is_empty() {
        keys.top(key)
    } else {
        keys.path_id(nested_key)
    }
}

fn render(leaf: &SLeaf, def: Option<&MetricDef>) -> Option<String> {
    // Texts come from validated strings.
    let latest = || String::from_utf8_lossy(&leaf.latest).into_owned();
    let Some(flags) = def.map(|d| d.summary) else {
        return Some(latest());
    };
    if flags.none {
        return None;
    }
    if leaf.plain || !flags.aggregates() {
        return Some(latest());
    }
    let mut agg = Vec::new();
    let numeric = leaf.count > 0;
    if flags.min && numeric {
        agg.push(("min".to_string(), number(leaf.min)));
    }
    if flags.max && numeric {
        agg.push(("max".to_string(), number(leaf.max)));
    }
    if flags.mean && numeric {
        agg.push((
            "mean".to_string(),
            Value::Float(leaf.total / leaf.count as f64),
        ));
    }
    let parsed = |text: &[u8]| Value::parse(&String::from_utf8_lossy(text)).unwrap_or(Value::Null);
    if flags.last {
        agg.push(("last".to_string(), parsed(&leaf.latest)));
    }
    if flags.first
        && let Some(first) = &leaf.first
    {
        agg.push(("first".to_string(), parsed(first)));
    }
    if agg.is_empty() {
        return Some(latest());
    }
    Some(Value::Object(agg).to_json())
}

/// Whole numbers print as integers, as they were logged.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::Int(x as i64)
    } else {
        Value::Float(x)
    }
}

/// `key`, or `nested_key` when set: where an item's value goes.
pub fn item_path(key: &str, nested_key: &[String]) -> Vec<String> {
    if nested_key.is_empty() {
        vec![key.to_string()]
    } else {
        nested_key.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn define(metrics: &mut Metrics, name: &str, summary: pb::MetricSummary) {
        metrics.define(&pb::MetricRecord {
            name: name.into(),
            summary: Some(summary),
            ..Default::default()
        });
    }

    fn user(s: &mut Summary, keys: &mut Keys, key: &str, json: &str) {
        s.apply_user(
            keys,
            &pb::SummaryRecord {
                update: vec![pb::SummaryItem {
                    key: key.into(),
                    value_json: json.into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
    }

    #[test]
    fn aggregates_follow_definitions_and_user_writes_make_values_plain() {
        let mut keys = Keys::default();
        let mut metrics = Metrics::default();
        let mut s = Summary::default();
        let loss = keys.top("loss");
        for x in [3.0, 1.0, 2.0] {
            s.observe(loss, x.to_string().as_bytes(), Kind::Float(x));
        }
        assert_eq!(s.value(loss, &keys, &metrics).as_deref(), Some("2"));

        // Defined after the values were seen: statistics are there already.
        define(
            &mut metrics,
            "loss",
            pb::MetricSummary {
                min: true,
                mean: true,
                last: true,
                first: true,
                ..Default::default()
            },
        );
        assert_eq!(
            s.value(loss, &keys, &metrics).as_deref(),
            Some(r#"{"min":1,"mean":2,"last":2,"first":3}"#)
        );

        user(&mut s, &mut keys, "loss", "0.0001");
        s.observe(loss, b"0.5", Kind::Float(0.5));
        assert_eq!(s.value(loss, &keys, &metrics).as_deref(), Some("0.5"));

        define(
            &mut metrics,
            "hide",
            pb::MetricSummary {
                none: true,
                ..Default::default()
            },
        );
        let hide = keys.top("hide");
        s.observe(hide, b"1", Kind::Int(1));
        let null = keys.path_id(&["n", "a"]);
        s.observe(null, b"null", Kind::Null);
        assert!(s.value(hide, &keys, &metrics).is_none());
        assert!(s.value(null, &keys, &metrics).is_none());
        user(&mut s, &mut keys, "loss", "null");
        assert!(s.value(loss, &keys, &metrics).is_none());
    }

    #[test]
    fn tree_nests_paths_and_dirty_leaves_are_reported_once() {
        let mut keys = Keys::default();
        let metrics = Metrics::default();
        let mut s = Summary::default();
        let ab = keys.path_id(&["a", "b"]);
        let ac = keys.path_id(&["a", "c"]);
        let rt = keys.path_id(&["_wandb", "runtime"]);
        s.observe(ab, b"1", Kind::Int(1));
        s.observe(ab, b"2", Kind::Int(2));
        s.observe(ac, b"\"x\"", Kind::Other);
        s.set_plain_value(rt, "3");
        assert_eq!(
            s.to_tree(&keys, &metrics).to_json(),
            r#"{"a":{"b":2,"c":"x"},"_wandb":{"runtime":3}}"#
        );
        let dirty = s.take_dirty(&keys, &metrics);
        assert_eq!(dirty.len(), 3);
        assert!(!s.has_dirty());
    }

    #[test]
    fn nan_stays_the_min_and_max_once_seen_and_null_from_the_user_writes_no_removal() {
        let mut keys = Keys::default();
        let mut metrics = Metrics::default();
        let mut s = Summary::default();
        let m = keys.top("m");
        define(
            &mut metrics,
            "m",
            pb::MetricSummary {
                min: true,
                max: true,
                ..Default::default()
            },
        );
        s.observe(m, b"0", Kind::Int(0));
        assert_eq!(
            s.value(m, &keys, &metrics).as_deref(),
            Some(r#"{"min":0,"max":0}"#)
        );
        s.observe(m, b"NaN", Kind::Float(f64::NAN));
        s.observe(m, b"2", Kind::Int(2));
        assert_eq!(
            s.value(m, &keys, &metrics).as_deref(),
            Some(r#"{"min":NaN,"max":NaN}"#)
        );
        let low = keys.top("low");
        define(
            &mut metrics,
            "low",
            pb::MetricSummary {
                min: true,
                ..Default::default()
            },
        );
        s.observe(low, b"-Infinity", Kind::Float(f64::NEG_INFINITY));
        assert_eq!(
            s.value(low, &keys, &metrics).as_deref(),
            Some(r#"{"min":-Infinity}"#)
        );

        let x = keys.top("x");
        s.observe(x, b"1", Kind::Int(1));
        s.take_dirty(&keys, &metrics);
        user(&mut s, &mut keys, "x", "2");
        user(&mut s, &mut keys, "x", "null");
        assert!(s.value(x, &keys, &metrics).is_none());
        assert!(s.take_dirty(&keys, &metrics).is_empty());
    }
}
