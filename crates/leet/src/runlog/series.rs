//! A metric's points, bounded however long the run.
//!
//! A chart is at most a few hundred cells wide, so a million rows cannot
//! be shown point by point anyway. A series keeps at most [`CAP`]
//! buckets; when full, neighbouring buckets merge pairwise and each new
//! bucket takes twice the points. A bucket keeps its mean (the line), its
//! minimum and maximum (so a spike survives downsampling: the chart draws
//! the envelope), and where it starts on both x axes. Memory per metric is
//! fixed; the cost per point is a few additions.

/// Buckets kept per series (a power of two: merging halves them).
pub const CAP: usize = 2048;

/// Points summarised together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The step (or the sample's index, for system metrics) of the first point.
    pub step: f64,
    /// Wall time of the first point, seconds since the epoch.
    pub time: f64,
    pub sum: f64,
    pub count: u32,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

impl Bucket {
    fn new(step: f64, time: f64, y: f64) -> Self {
        Self {
            step,
            time,
            sum: y,
            count: 1,
            min: y,
            max: y,
            last: y,
        }
    }

    fn add(&mut self, y: f64) {
        self.sum += y;
        self.count += 1;
        self.min = self.min.min(y);
        self.max = self.max.max(y);
        self.last = y;
    }

    fn merge(&mut self, later: &Bucket) {
        self.sum += later.sum;
        self.count += later.count;
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        self.last = later.last;
    }

    pub fn mean(&self) -> f64 {
        self.sum / f64::from(self.count)
    }
}

/// One metric over a run.
#[derive(Debug, Clone, Default)]
pub struct Series {
    buckets: Vec<Bucket>,
    /// Points per bucket at the current resolution.
    per_bucket: u32,
    /// Points seen (finite ones).
    points: u64,
    /// Points that were NaN or infinite: counted, not drawn.
    non_finite: u64,
}

impl Series {
    pub fn push(&mut self, step: f64, time: f64, y: f64) {
        if !y.is_finite() {
            self.non_finite += 1;
            return;
        }
        self.points += 1;
        if self.per_bucket == 0 {
            self.per_bucket = 1;
        }
        match self.buckets.last_mut() {
            Some(b) if b.count < self.per_bucket => b.add(y),
            _ => {
                if self.buckets.len() == CAP {
                    self.halve();
                    if let Some(b) = self.buckets.last_mut()
                        && b.count < self.per_bucket
                    {
                        b.add(y);
                        return;
                    }
                }
                self.buckets.push(Bucket::new(step, time, y));
            }
        }
    }

    fn halve(&mut self) {
        let merged: Vec<Bucket> = self
            .buckets
            .chunks(2)
            .map(|pair| {
                let mut b = pair[0];
                if let Some(later) = pair.get(1) {
                    b.merge(later);
                }
                b
            })
            .collect();
        self.buckets = merged;
        self.per_bucket *= 2;
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    pub fn points(&self) -> u64 {
        self.points
    }

    pub fn non_finite(&self) -> u64 {
        self.non_finite
    }

    pub fn last(&self) -> Option<f64> {
        self.buckets.last().map(|b| b.last)
    }

    /// The smallest and largest value seen.
    pub fn range(&self) -> Option<(f64, f64)> {
        self.buckets.iter().fold(None, |acc, b| match acc {
            None => Some((b.min, b.max)),
            Some((lo, hi)) => Some((lo.min(b.min), hi.max(b.max))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_extremes() {
        let mut s = Series::default();
        for i in 0..1_000_000u32 {
            let y = if i == 777_777 { 1e9 } else { f64::from(i % 10) };
            s.push(f64::from(i), 0.0, y);
        }
        assert!(s.buckets().len() <= CAP, "{}", s.buckets().len());
        assert!(s.buckets().len() > CAP / 2);
        assert_eq!(s.points(), 1_000_000);
        assert_eq!(s.range(), Some((0.0, 1e9)), "the spike survives");
        let total: u64 = s.buckets().iter().map(|b| u64::from(b.count)).sum();
        assert_eq!(total, 1_000_000, "every point is in one bucket");
        assert_eq!(s.buckets()[0].step, 0.0);
        assert!(s.buckets().windows(2).all(|w| w[0].step < w[1].step));
        assert_eq!(s.last(), Some(9.0));
    }

    #[test]
    fn short_series_are_exact_and_non_finite_is_counted() {
        let mut s = Series::default();
        for (i, y) in [1.0, f64::NAN, 3.0, f64::INFINITY].into_iter().enumerate() {
            s.push(i as f64, 0.0, y);
        }
        let means: Vec<f64> = s.buckets().iter().map(Bucket::mean).collect();
        assert_eq!(means, vec![1.0, 3.0]);
        assert_eq!(s.non_finite(), 2);
    }
}
