//! `define_metric`: per-metric step axes and summary aggregates.
//!
//! Definitions merge per name (unless the SDK asks to overwrite); a glob
//! definition (`"val/*"`, only a trailing `*` is supported) applies to
//! non-underscore keys that have no definition of their own.

use std::collections::HashMap;

use wandb_proto::pb;

/// Which aggregates the summary shows for a metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SummaryFlags {
    pub min: bool,
    pub max: bool,
    pub mean: bool,
    pub last: bool,
    pub first: bool,
    pub none: bool,
}

impl SummaryFlags {
    /// Whether any aggregate replaces the plain latest value.
    pub fn aggregates(&self) -> bool {
        self.min || self.max || self.mean || self.last || self.first
    }
}

/// One metric's definition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricDef {
    pub step_metric: String,
    pub step_sync: bool,
    pub hidden: bool,
    pub summary: SummaryFlags,
    /// The record as the SDK sent it (merged), for the run config's `_wandb.m`.
    pub record: pb::MetricRecord,
}

impl MetricDef {
    fn from_record(r: &pb::MetricRecord) -> Self {
        let s = r.summary.unwrap_or_default();
        let o = r.options.unwrap_or_default();
        Self {
            step_metric: r.step_metric.clone(),
            step_sync: o.step_sync,
            hidden: o.hidden,
            summary: SummaryFlags {
                min: s.min,
                max: s.max,
                mean: s.mean,
                last: s.last,
                first: s.first,
                none: s.none,
            },
            record: r.clone(),
        }
    }

    /// Merges a later definition like a protobuf merge: what it sets wins,
    /// flags accumulate.
    fn merge(&mut self, r: &pb::MetricRecord) {
        let mut merged = self.record.clone();
        if !r.step_metric.is_empty() {
            merged.step_metric = r.step_metric.clone();
        }
        if r.goal != 0 {
            merged.goal = r.goal;
        }
        let mut o = merged.options.unwrap_or_default();
        let no = r.options.unwrap_or_default();
        o.step_sync |= no.step_sync;
        o.hidden |= no.hidden;
        o.defined |= no.defined;
        merged.options = Some(o);
        let mut s = merged.summary.unwrap_or_default();
        let ns = r.summary.unwrap_or_default();
        s.min |= ns.min;
        s.max |= ns.max;
        s.mean |= ns.mean;
        s.best |= ns.best;
        s.last |= ns.last;
        s.none |= ns.none;
        s.copy |= ns.copy;
        s.first |= ns.first;
        merged.summary = Some(s);
        *self = Self::from_record(&merged);
    }
}

/// All definitions of a run.
#[derive(Debug, Default)]
pub struct Metrics {
    by_name: HashMap<String, MetricDef>,
    /// (prefix, definition) for `glob_name`s, in definition order.
    globs: Vec<(String, MetricDef)>,
    /// Names in definition order, for a stable `_wandb.m`.
    order: Vec<String>,
}

impl Metrics {
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.globs.is_empty()
    }

    /// Applies a `metric` record from the SDK.
    pub fn define(&mut self, r: &pb::MetricRecord) {
        let overwrite = r.control.as_ref().is_some_and(|c| c.overwrite);
        if !r.name.is_empty() {
            match self.by_name.get_mut(&r.name) {
                Some(def) if !overwrite => def.merge(r),
                _ => {
                    if !self.by_name.contains_key(&r.name) {
                        self.order.push(r.name.clone());
                    }
                    self.by_name
                        .insert(r.name.clone(), MetricDef::from_record(r));
                }
            }
        } else if !r.glob_name.is_empty() {
            let prefix = r
                .glob_name
                .strip_suffix('*')
                .unwrap_or(&r.glob_name)
                .to_string();
            match self.globs.iter_mut().find(|(p, _)| *p == prefix) {
                Some((_, def)) if !overwrite => def.merge(r),
                Some((_, def)) => *def = MetricDef::from_record(r),
                None => self.globs.push((prefix, MetricDef::from_record(r))),
            }
        }
    }

    /// The definition that applies to a key, own or by glob.
    pub fn get(&self, key: &str) -> Option<&MetricDef> {
        self.by_name.get(key).or_else(|| {
            if key.starts_with('_') {
                return None;
            }
            self.globs
                .iter()
                .find(|(prefix, _)| key.starts_with(prefix.as_str()))
                .map(|(_, d)| d)
        })
    }

    /// Explicit definitions in order (what `_wandb.m` lists).
    pub fn records(&self) -> impl Iterator<Item = &pb::MetricRecord> {
        self.order
            .iter()
            .filter_map(|n| self.by_name.get(n))
            .map(|d| &d.record)
            .chain(self.globs.iter().map(|(_, d)| &d.record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str, glob: &str, step: &str, min: bool, max: bool) -> pb::MetricRecord {
        pb::MetricRecord {
            name: name.into(),
            glob_name: glob.into(),
            step_metric: step.into(),
            options: Some(pb::MetricOptions {
                step_sync: !step.is_empty(),
                defined: true,
                ..Default::default()
            }),
            summary: Some(pb::MetricSummary {
                min,
                max,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn definitions_merge_and_globs_apply_to_plain_keys() {
        let mut m = Metrics::default();
        m.define(&metric("loss", "", "", true, false));
        m.define(&metric("loss", "", "epoch", false, true));
        let loss = m.get("loss").unwrap();
        assert!(loss.summary.min && loss.summary.max);
        assert_eq!(loss.step_metric, "epoch");
        assert!(loss.step_sync);

        m.define(&metric("", "val/*", "epoch", false, true));
        assert_eq!(m.get("val/acc").unwrap().step_metric, "epoch");
        assert!(m.get("_val/x").is_none());
        assert!(m.get("train/acc").is_none());

        let mut over = metric("loss", "", "", false, false);
        over.control = Some(pb::MetricControl { overwrite: true });
        m.define(&over);
        assert!(!m.get("loss").unwrap().summary.min);
        assert_eq!(m.records().count(), 2);
    }
}
