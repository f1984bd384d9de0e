//! `define_metric`: how W&B charts and summarises a metric.

use wandb_proto::pb;

/// A summary statistic W&B keeps for a metric.
///
/// ```
/// let m = wandb::Metric::new("loss").summary([wandb::Summary::Min, wandb::Summary::Last]);
/// # let _ = m;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    Min,
    Max,
    Mean,
    Last,
    First,
    /// The best value, in the direction of the metric's [`Goal`].
    Best,
    /// No summary at all for this metric.
    None,
}

/// Whether lower or higher values are better.
///
/// ```
/// let m = wandb::Metric::new("loss").goal(wandb::Goal::Minimize);
/// # let _ = m;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Minimize,
    Maximize,
}

/// A metric definition for [`Run::define_metric`](crate::Run::define_metric).
///
/// A name ending in `*` defines every metric with that prefix.
///
/// ```
/// use wandb::{Metric, Summary, Goal};
/// let m = Metric::new("val/loss")
///     .step_metric("epoch")
///     .summary([Summary::Min, Summary::Last])
///     .goal(Goal::Minimize);
/// let all_val = Metric::new("val/*").step_metric("epoch");
/// # let _ = (m, all_val);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    name: String,
    step_metric: Option<String>,
    summary: Vec<Summary>,
    goal: Option<Goal>,
    hidden: bool,
    overwrite: bool,
}

impl Metric {
    /// A metric by name (or prefix glob, `"train/*"`).
    ///
    /// ```
    /// let m = wandb::Metric::new("loss");
    /// # let _ = m;
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            step_metric: None,
            summary: Vec::new(),
            goal: None,
            hidden: false,
            overwrite: false,
        }
    }

    /// Chart this metric against another one (its x axis); W&B fills in
    /// the step metric's last value on rows that lack it.
    ///
    /// ```
    /// let m = wandb::Metric::new("val/acc").step_metric("epoch");
    /// # let _ = m;
    /// ```
    pub fn step_metric(mut self, name: impl Into<String>) -> Self {
        self.step_metric = Some(name.into());
        self
    }

    /// Which statistics the run summary keeps for this metric (the last
    /// value when none are chosen).
    ///
    /// ```
    /// let m = wandb::Metric::new("loss").summary([wandb::Summary::Min, wandb::Summary::Mean]);
    /// # let _ = m;
    /// ```
    pub fn summary(mut self, stats: impl IntoIterator<Item = Summary>) -> Self {
        self.summary.extend(stats);
        self
    }

    /// Whether lower or higher is better.
    ///
    /// ```
    /// let m = wandb::Metric::new("acc").goal(wandb::Goal::Maximize);
    /// # let _ = m;
    /// ```
    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self
    }

    /// Hide the metric from automatic charts.
    ///
    /// ```
    /// let m = wandb::Metric::new("debug/grad_norm").hidden(true);
    /// # let _ = m;
    /// ```
    pub fn hidden(mut self, hidden: bool) -> Self {
        self.hidden = hidden;
        self
    }

    /// Replace an earlier definition instead of merging with it.
    ///
    /// ```
    /// let m = wandb::Metric::new("loss").overwrite(true);
    /// # let _ = m;
    /// ```
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn to_record(&self) -> pb::MetricRecord {
        let (name, glob_name) = if self.name.ends_with('*') {
            (String::new(), self.name.clone())
        } else {
            (self.name.clone(), String::new())
        };
        let summary = (!self.summary.is_empty()).then(|| {
            let mut s = pb::MetricSummary::default();
            for stat in &self.summary {
                match stat {
                    Summary::Min => s.min = true,
                    Summary::Max => s.max = true,
                    Summary::Mean => s.mean = true,
                    Summary::Last => s.last = true,
                    Summary::First => s.first = true,
                    Summary::Best => s.best = true,
                    Summary::None => s.none = true,
                }
            }
            s
        });
        pb::MetricRecord {
            name,
            glob_name,
            step_metric: self.step_metric.clone().unwrap_or_default(),
            options: Some(pb::MetricOptions {
                step_sync: self.step_metric.is_some(),
                hidden: self.hidden,
                defined: true,
            }),
            summary,
            goal: match self.goal {
                None => pb::metric_record::MetricGoal::GoalUnset,
                Some(Goal::Minimize) => pb::metric_record::MetricGoal::GoalMinimize,
                Some(Goal::Maximize) => pb::metric_record::MetricGoal::GoalMaximize,
            } as i32,
            control: self
                .overwrite
                .then_some(pb::MetricControl { overwrite: true }),
            ..Default::default()
        }
    }
}
