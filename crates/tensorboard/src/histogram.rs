//! TensorBoard histograms become W&B's `histogram` type: bin edges plus
//! weights, at most 512 bins. They come either as the `histograms` plugin's
//! `[k, 3]` tensor or as the older `HistogramProto`; both are reduced to
//! edges and weights here, rebinned the way wandb-core does it, so that the
//! history holds the same numbers whichever service synced the run.

use wandb_proto::json::Value;

use crate::proto::HistogramProto;
use crate::tensor::{Tensor, TensorError};

/// W&B's limit on the bins of one histogram.
pub(crate) const MAX_BINS: usize = 512;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum HistogramError {
    #[error("couldn't read histograms row: {0}")]
    Tensor(#[from] TensorError),
    #[error("empty BucketLimit")]
    EmptyLimits,
    #[error("histogram has {limits} bucket limits but {buckets} buckets")]
    LengthMismatch { limits: usize, buckets: usize },
    #[error("histo.Min >= rightEdges[0] ({min} >= {limit})")]
    MinNotBelowFirstLimit { min: f64, limit: f64 },
    #[error("invalid histogram: {edges} edges for {weights} weights")]
    Invalid { edges: usize, weights: usize },
    #[error("error rebinning histogram: its edges are not in order")]
    Rebin,
    #[error("error serializing histogram: it holds NaN or infinite numbers")]
    NotFinite,
}

/// Bin `i` spans `edges[i]..edges[i + 1]` and holds `weights[i]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    pub edges: Vec<f64>,
    pub weights: Vec<f64>,
}

impl Histogram {
    /// From the `histograms` plugin's tensor, whose rows are
    /// `(left edge, right edge, count)`; `None` when it has no rows.
    /// The bins are assumed to be contiguous, as TensorBoard writes them.
    pub(crate) fn from_tensor(tensor: &Tensor) -> Result<Option<Self>, HistogramError> {
        let mut edges = tensor.col(0)?;
        let rights = tensor.col(1)?;
        let counts = tensor.col(2)?;
        let Some(&last) = rights.last() else {
            return Ok(None);
        };
        edges.push(last);
        Self::new(edges, counts).map(Some)
    }

    /// From a `HistogramProto`, whose `bucket_limit`s are right edges. Its
    /// first bucket starts at -DBL_MAX: it is dropped when empty, and
    /// otherwise starts at `min` instead.
    pub(crate) fn from_proto(proto: &HistogramProto) -> Result<Self, HistogramError> {
        let (limits, counts) = (&proto.bucket_limit, &proto.bucket);
        let Some(&first_limit) = limits.first() else {
            return Err(HistogramError::EmptyLimits);
        };
        let Some((&first_count, later_counts)) = counts.split_first() else {
            return Err(HistogramError::LengthMismatch {
                limits: limits.len(),
                buckets: 0,
            });
        };
        if limits.len() != counts.len() {
            return Err(HistogramError::LengthMismatch {
                limits: limits.len(),
                buckets: counts.len(),
            });
        }
        if first_count == 0.0 {
            Self::new(limits.clone(), later_counts.to_vec())
        } else if proto.min < first_limit {
            let edges = std::iter::once(proto.min)
                .chain(limits.iter().copied())
                .collect();
            Self::new(edges, counts.clone())
        } else {
            Err(HistogramError::MinNotBelowFirstLimit {
                min: proto.min,
                limit: first_limit,
            })
        }
    }

    /// Checks the lengths and reduces to `MAX_BINS` bins if there are more.
    fn new(edges: Vec<f64>, weights: Vec<f64>) -> Result<Self, HistogramError> {
        if edges.len() != weights.len() + 1 {
            return Err(HistogramError::Invalid {
                edges: edges.len(),
                weights: weights.len(),
            });
        }
        let histogram = Self { edges, weights };
        if histogram.weights.len() > MAX_BINS {
            histogram.rebin(MAX_BINS)
        } else {
            Ok(histogram)
        }
    }

    /// Reduces to `n` bins (`n` ≥ 1, fewer than now), keeping the outer edges
    /// and the total weight. The new edges interpolate the old ones at
    /// fractional old indices `j·old/n` (split into an integer part and a
    /// remainder so the positions are exact); each old bin's weight goes to
    /// the new bin it falls in, or is split in proportion between the two
    /// new bins it straddles. Unordered edges can walk off the end: that is
    /// an error, never a panic.
    fn rebin(&self, n: usize) -> Result<Self, HistogramError> {
        let (old, old_weights) = (&self.edges, &self.weights);
        let bins = old_weights.len();
        let edge = |i: usize| old.get(i).copied().ok_or(HistogramError::Rebin);
        let weight = |i: usize| old_weights.get(i).copied().ok_or(HistogramError::Rebin);

        let mut edges = Vec::with_capacity(n + 1);
        edges.push(edge(0)?);
        for j in 1..n {
            let (q, r) = (j * bins / n, j * bins % n);
            let (a, b) = (edge(q)?, edge(q + 1)?);
            edges.push(a + (b - a) * (r as f64 / n as f64));
        }
        edges.push(edge(bins)?);

        let mut weights = vec![0.0; n];
        let mut i = 0;
        for j in 0..n {
            let right = edges[j + 1];
            // Old bins that end before the new bin does belong to it whole.
            while edge(i + 1)? < right {
                weights[j] += weight(i)?;
                i += 1;
            }
            // The old bin that reaches the new right edge is split.
            let (left_old, right_old) = (edge(i)?, edge(i + 1)?);
            if right <= right_old {
                let f = (right - left_old) / (right_old - left_old);
                let w = weight(i)?;
                weights[j] += f * w;
                weights[(j + 1).min(n - 1)] += (1.0 - f) * w;
                i += 1;
            }
        }
        Ok(Self { edges, weights })
    }

    /// `{"_type":"histogram","bins":[...],"values":[...]}`. Non-finite numbers
    /// are an error: wandb-core's JSON encoder refuses them, so such a
    /// histogram is dropped rather than logged.
    pub(crate) fn to_json(&self) -> Result<String, HistogramError> {
        if !self
            .edges
            .iter()
            .chain(&self.weights)
            .all(|v| v.is_finite())
        {
            return Err(HistogramError::NotFinite);
        }
        let numbers = |v: &[f64]| Value::Array(v.iter().map(|&x| Value::Float(x)).collect());
        Ok(Value::Object(vec![
            ("_type".to_owned(), Value::Str("histogram".to_owned())),
            ("bins".to_owned(), numbers(&self.edges)),
            ("values".to_owned(), numbers(&self.weights)),
        ])
        .to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::tests::float_tensor;

    const EXAMPLE_JSON: &str =
        r#"{"_type":"histogram","bins":[0,0.5,1,1.5,2,2.5],"values":[7,5,10,11,4]}"#;

    fn from_rows(rows: &[[f32; 3]]) -> Result<Option<Histogram>, HistogramError> {
        let values: Vec<f32> = rows.iter().flatten().copied().collect();
        let tensor = Tensor::from_proto(&float_tensor(&[rows.len() as i64, 3], &values))?;
        Histogram::from_tensor(&tensor)
    }

    fn proto(min: f64, limits: &[f64], counts: &[f64]) -> HistogramProto {
        HistogramProto {
            min,
            bucket_limit: limits.to_vec(),
            bucket: counts.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn tensor_rows() {
        let rows = [
            [0.0, 0.5, 7.0],
            [0.5, 1.0, 5.0],
            [1.0, 1.5, 10.0],
            [1.5, 2.0, 11.0],
            [2.0, 2.5, 4.0],
        ];
        let h = from_rows(&rows).unwrap().unwrap();
        assert_eq!(h.edges, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(h.weights, vec![7.0, 5.0, 10.0, 11.0, 4.0]);
        assert_eq!(h.to_json().unwrap(), EXAMPLE_JSON);
    }

    #[test]
    fn empty_tensor_is_nothing() {
        assert_eq!(from_rows(&[]), Ok(None));
    }

    #[test]
    fn tensor_needs_three_columns() {
        let tensor = Tensor::from_proto(&float_tensor(&[1, 2], &[0.0, 1.0])).unwrap();
        assert!(matches!(
            Histogram::from_tensor(&tensor),
            Err(HistogramError::Tensor(_))
        ));
    }

    #[test]
    fn proto_with_min_below_first_limit() {
        let limits = [0.5, 1.0, 1.5, 2.0, 2.5];
        let h = Histogram::from_proto(&proto(0.0, &limits, &[7.0, 5.0, 10.0, 11.0, 4.0])).unwrap();
        assert_eq!(h.to_json().unwrap(), EXAMPLE_JSON);
    }

    #[test]
    fn proto_drops_an_empty_first_bucket() {
        let limits = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5];
        let counts = [0.0, 7.0, 5.0, 10.0, 11.0, 4.0];
        // `min` does not matter when the first bucket is empty.
        let h = Histogram::from_proto(&proto(9.0, &limits, &counts)).unwrap();
        assert_eq!(h.to_json().unwrap(), EXAMPLE_JSON);
    }

    #[test]
    fn proto_errors() {
        assert_eq!(
            Histogram::from_proto(&proto(0.5, &[0.5, 1.0], &[3.0, 4.0])),
            Err(HistogramError::MinNotBelowFirstLimit {
                min: 0.5,
                limit: 0.5
            })
        );
        assert_eq!(
            Histogram::from_proto(&proto(0.0, &[], &[])),
            Err(HistogramError::EmptyLimits)
        );
        assert_eq!(
            Histogram::from_proto(&proto(0.0, &[1.0, 2.0], &[1.0])),
            Err(HistogramError::LengthMismatch {
                limits: 2,
                buckets: 1
            })
        );
    }

    #[test]
    fn huge_finite_limits_are_kept() {
        let h = Histogram::from_proto(&proto(0.0, &[1.0, f64::MAX], &[0.0, 3.0])).unwrap();
        assert_eq!(
            h.to_json().unwrap(),
            r#"{"_type":"histogram","bins":[1,1.7976931348623157e+308],"values":[3]}"#
        );
    }

    #[test]
    fn non_finite_numbers_drop_the_histogram() {
        let h = from_rows(&[[0.0, 1.0, f32::NAN]]).unwrap().unwrap();
        assert_eq!(h.to_json(), Err(HistogramError::NotFinite));
        let h = from_rows(&[[f32::NEG_INFINITY, 1.0, 2.0]])
            .unwrap()
            .unwrap();
        assert_eq!(h.to_json(), Err(HistogramError::NotFinite));
    }

    #[test]
    fn rebins_1000_unit_bins_to_512() {
        let edges: Vec<f64> = (0..=1000).map(f64::from).collect();
        let h = Histogram::new(edges, vec![1.0; 1000]).unwrap();
        assert_eq!(h.edges.len(), 513);
        assert_eq!(h.weights.len(), 512);
        assert_eq!(h.edges[0], 0.0);
        assert_eq!(h.edges[512], 1000.0);
        // Edge j sits at j·1000/512 exactly.
        assert_eq!(h.edges[1], 1000.0 / 512.0);
        assert_eq!(h.edges[256], 500.0);
        assert!(h.edges.windows(2).all(|w| w[0] < w[1]));
        let total: f64 = h.weights.iter().sum();
        assert!((total - 1000.0).abs() < 1e-9, "total weight {total}");
        assert!(h.to_json().is_ok());
    }

    #[test]
    fn exactly_512_bins_are_kept() {
        let edges: Vec<f64> = (0..=512).map(|i| f64::from(i) * 0.5).collect();
        let weights: Vec<f64> = (0..512).map(f64::from).collect();
        let h = Histogram::new(edges.clone(), weights.clone()).unwrap();
        assert_eq!(h, Histogram { edges, weights });
    }

    #[test]
    fn unordered_edges_are_an_error_not_a_panic() {
        // A spike makes one new edge huge; the walk then passes every later
        // old edge and runs out of old bins.
        let mut edges: Vec<f64> = (0..=601).map(f64::from).collect();
        edges[300] = 1e9;
        assert_eq!(
            Histogram::new(edges, vec![1.0; 601]),
            Err(HistogramError::Rebin)
        );
    }
}
