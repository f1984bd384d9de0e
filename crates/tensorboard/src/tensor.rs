//! TensorBoard's newer summaries (scalars, histograms and PR curves) store
//! their data as a `TensorProto`; the conversion only needs such a tensor as
//! plain `f64` numbers plus its shape, which is what this module reads.
//!
//! As in wandb-core, the shape is not checked against the element count
//! (TensorBoard writers do not always agree on it), so every access that
//! relies on the shape checks its own bounds instead.

use crate::proto::{TensorProto, dtype};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum TensorError {
    #[error("unsupported tensor dtype {0}")]
    UnsupportedDtype(i32),
    #[error("tensor has unknown shape")]
    UnknownShape,
    #[error("tensor content of {len} bytes is not a multiple of {size}-byte elements")]
    RaggedContent { len: usize, size: usize },
    #[error("expected a tensor with exactly one value, but it has {0}")]
    NotScalar(usize),
    #[error("expected a rank-2 tensor, but its shape is {0:?}")]
    NotRank2(Vec<i64>),
    #[error("index {index} is out of range for a dimension of size {size}")]
    OutOfRange { index: i64, size: i64 },
    #[error("tensor of shape {shape:?} holds only {len} values")]
    TooFewValues { shape: Vec<i64>, len: usize },
}

/// A numeric tensor, every element widened to `f64`, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tensor {
    shape: Vec<i64>,
    values: Vec<f64>,
}

impl Tensor {
    /// Reads a DT_FLOAT, DT_DOUBLE, DT_INT32 or DT_INT64 tensor.
    pub(crate) fn from_proto(proto: &TensorProto) -> Result<Self, TensorError> {
        let shape: Vec<i64> = proto
            .tensor_shape
            .as_ref()
            .map(|s| s.dim.iter().map(|d| d.size).collect())
            .unwrap_or_default();
        // TensorFlow marks an unknown size with -1; nothing else negative is meaningful either.
        if shape.iter().any(|&size| size < 0) {
            return Err(TensorError::UnknownShape);
        }
        Ok(Self {
            values: read_values(proto)?,
            shape,
        })
    }

    /// The only element, whatever the shape says (TensorBoard writes scalars
    /// with shape `[]`, but some writers use `[1]` or even `[0]`).
    pub(crate) fn scalar(&self) -> Result<f64, TensorError> {
        match self.values[..] {
            [value] => Ok(value),
            _ => Err(TensorError::NotScalar(self.values.len())),
        }
    }

    /// Row `i` of a rank-2 tensor; a negative `i` counts from the end.
    pub(crate) fn row(&self, i: i64) -> Result<&[f64], TensorError> {
        let (rows, cols) = self.rank2()?;
        let r = self.to_usize(resolve(i, rows)?)?;
        let cols = self.to_usize(cols)?;
        r.checked_mul(cols)
            .and_then(|start| self.values.get(start..start.checked_add(cols)?))
            .ok_or_else(|| self.too_few())
    }

    /// Column `j` of a rank-2 tensor; a negative `j` counts from the end.
    pub(crate) fn col(&self, j: i64) -> Result<Vec<f64>, TensorError> {
        let (rows, cols) = self.rank2()?;
        let c = self.to_usize(resolve(j, cols)?)?;
        let (rows, cols) = (self.to_usize(rows)?, self.to_usize(cols)?);
        (0..rows)
            .map(|r| {
                r.checked_mul(cols)
                    .and_then(|start| start.checked_add(c))
                    .and_then(|k| self.values.get(k).copied())
                    .ok_or_else(|| self.too_few())
            })
            .collect()
    }

    fn rank2(&self) -> Result<(i64, i64), TensorError> {
        match self.shape[..] {
            [rows, cols] => Ok((rows, cols)),
            _ => Err(TensorError::NotRank2(self.shape.clone())),
        }
    }

    /// Sizes are known to be non-negative; this only fails where `usize` is
    /// narrower than the size, and then the values cannot be there either.
    fn to_usize(&self, n: i64) -> Result<usize, TensorError> {
        usize::try_from(n).map_err(|_| self.too_few())
    }

    fn too_few(&self) -> TensorError {
        TensorError::TooFewValues {
            shape: self.shape.clone(),
            len: self.values.len(),
        }
    }
}

/// Python-style index into a dimension of `size` elements.
fn resolve(index: i64, size: i64) -> Result<i64, TensorError> {
    let resolved = if index < 0 { index + size } else { index };
    if (0..size).contains(&resolved) {
        Ok(resolved)
    } else {
        Err(TensorError::OutOfRange { index, size })
    }
}

/// The elements: from `tensor_content` when it is set (packed, little-endian),
/// else from the dtype's repeated field.
fn read_values(proto: &TensorProto) -> Result<Vec<f64>, TensorError> {
    let content = &proto.tensor_content;
    match proto.dtype {
        dtype::FLOAT if content.is_empty() => {
            Ok(proto.float_val.iter().map(|&v| f64::from(v)).collect())
        }
        dtype::FLOAT => unpack(content, |b: [u8; 4]| f64::from(f32::from_le_bytes(b))),
        dtype::DOUBLE if content.is_empty() => Ok(proto.double_val.clone()),
        dtype::DOUBLE => unpack(content, f64::from_le_bytes),
        dtype::INT32 if content.is_empty() => {
            Ok(proto.int_val.iter().map(|&v| f64::from(v)).collect())
        }
        dtype::INT32 => unpack(content, |b: [u8; 4]| f64::from(i32::from_le_bytes(b))),
        // Above 2^53 this loses precision, as it does in wandb-core.
        dtype::INT64 if content.is_empty() => {
            Ok(proto.int64_val.iter().map(|&v| v as f64).collect())
        }
        dtype::INT64 => unpack(content, |b: [u8; 8]| i64::from_le_bytes(b) as f64),
        other => Err(TensorError::UnsupportedDtype(other)),
    }
}

fn unpack<const N: usize>(
    content: &[u8],
    decode: impl Fn([u8; N]) -> f64,
) -> Result<Vec<f64>, TensorError> {
    let chunks = content.chunks_exact(N);
    if !chunks.remainder().is_empty() {
        return Err(TensorError::RaggedContent {
            len: content.len(),
            size: N,
        });
    }
    Ok(chunks
        .map(|chunk| {
            let mut bytes = [0; N];
            bytes.copy_from_slice(chunk);
            decode(bytes)
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::{Dim, TensorShape};

    /// A DT_FLOAT tensor with its values in `float_val`.
    pub(crate) fn float_tensor(shape: &[i64], values: &[f32]) -> TensorProto {
        TensorProto {
            dtype: dtype::FLOAT,
            tensor_shape: Some(TensorShape {
                dim: shape.iter().map(|&size| Dim { size }).collect(),
            }),
            float_val: values.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn float_widens_to_f64() {
        let t = Tensor::from_proto(&float_tensor(&[], &[0.1])).unwrap();
        assert_eq!(t.scalar(), Ok(f64::from(0.1f32)));
    }

    #[test]
    fn content_is_little_endian_and_wins_over_fields() {
        let proto = TensorProto {
            dtype: dtype::DOUBLE,
            tensor_content: 10.5f64.to_le_bytes().to_vec(),
            double_val: vec![1.0, 2.0],
            ..Default::default()
        };
        assert_eq!(Tensor::from_proto(&proto).unwrap().scalar(), Ok(10.5));

        let ints = TensorProto {
            dtype: dtype::INT32,
            tensor_content: [(-3i32).to_le_bytes(), 7i32.to_le_bytes()].concat(),
            ..Default::default()
        };
        assert_eq!(Tensor::from_proto(&ints).unwrap().values, vec![-3.0, 7.0]);

        let ragged = TensorProto {
            dtype: dtype::INT64,
            tensor_content: vec![0; 12],
            ..Default::default()
        };
        assert_eq!(
            Tensor::from_proto(&ragged),
            Err(TensorError::RaggedContent { len: 12, size: 8 })
        );
    }

    #[test]
    fn int_fields() {
        let proto = TensorProto {
            dtype: dtype::INT64,
            int64_val: vec![5],
            ..Default::default()
        };
        assert_eq!(Tensor::from_proto(&proto).unwrap().scalar(), Ok(5.0));
    }

    #[test]
    fn unsupported_dtype_and_unknown_shape() {
        const DT_HALF: i32 = 19;
        let half = TensorProto {
            dtype: DT_HALF,
            ..Default::default()
        };
        assert_eq!(
            Tensor::from_proto(&half),
            Err(TensorError::UnsupportedDtype(DT_HALF))
        );
        assert_eq!(
            Tensor::from_proto(&float_tensor(&[-1], &[1.0])),
            Err(TensorError::UnknownShape)
        );
    }

    #[test]
    fn scalar_needs_exactly_one_value() {
        // The shape does not matter, only the element count.
        let odd_shape = Tensor::from_proto(&float_tensor(&[0], &[2.5])).unwrap();
        assert_eq!(odd_shape.scalar(), Ok(2.5));
        let two = Tensor::from_proto(&float_tensor(&[2], &[1.0, 2.0])).unwrap();
        assert_eq!(two.scalar(), Err(TensorError::NotScalar(2)));
    }

    #[test]
    fn rows_and_columns() {
        let values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let t = Tensor::from_proto(&float_tensor(&[2, 3], &values)).unwrap();
        assert_eq!(t.row(0).unwrap(), &[1.0, 2.0, 3.0]);
        assert_eq!(t.row(-1).unwrap(), &[4.0, 5.0, 6.0]);
        assert_eq!(t.row(-2).unwrap(), &[1.0, 2.0, 3.0]);
        assert_eq!(t.row(2), Err(TensorError::OutOfRange { index: 2, size: 2 }));
        assert_eq!(
            t.row(-3),
            Err(TensorError::OutOfRange { index: -3, size: 2 })
        );
        assert_eq!(t.col(1).unwrap(), vec![2.0, 5.0]);
        assert_eq!(t.col(-1).unwrap(), vec![3.0, 6.0]);
        assert_eq!(t.col(3), Err(TensorError::OutOfRange { index: 3, size: 3 }));

        let flat = Tensor::from_proto(&float_tensor(&[3], &[1.0, 2.0, 3.0])).unwrap();
        assert_eq!(flat.row(0), Err(TensorError::NotRank2(vec![3])));
    }

    #[test]
    fn short_data_is_an_error_not_a_panic() {
        let t = Tensor::from_proto(&float_tensor(&[2, 3], &[1.0, 2.0, 3.0, 4.0])).unwrap();
        assert_eq!(t.row(0).unwrap(), &[1.0, 2.0, 3.0]);
        assert!(matches!(t.row(1), Err(TensorError::TooFewValues { .. })));
        assert!(matches!(t.col(2), Err(TensorError::TooFewValues { .. })));
        let huge = Tensor::from_proto(&float_tensor(&[i64::MAX, i64::MAX], &[1.0])).unwrap();
        assert!(matches!(
            huge.row(-1),
            Err(TensorError::TooFewValues { .. })
        ));
    }
}
