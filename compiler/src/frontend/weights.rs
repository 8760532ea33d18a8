//! The weights and bias of a linear layer from dequantized constants: centred integer
//! weights with their type and per-channel scales, and the bias in accumulator units.

use super::tensor::{Const, ConstData};
use super::unsupported;
use super::value::{QConst, Value};
use crate::error::{Error, Result};
use crate::ir::TensorId;
use heq_runtime::plan::IntType;
use tract_onnx::pb::NodeProto;

/// Smallest integer type holding `[lo, hi]` (signed when `lo < 0`; narrow ranges such as
/// `[-7, 7]` take the same width as `[-8, 7]`).
pub fn type_for_range(lo: i64, hi: i64) -> IntType {
    let signed = lo < 0;
    let bits = (1..=32)
        .find(|&b| {
            let t = IntType { bits: b, signed };
            t.min() <= lo && hi <= t.max()
        })
        .unwrap_or(32);
    IntType { bits, signed }
}

/// The operands of a linear layer: the input, which must be a dequantized integer tensor, and
/// the weights, which must be a dequantized integer constant (`not_weights` is the error
/// otherwise).
///
/// # Errors
/// Operands of any other kind.
pub(crate) fn linear_operands(
    node: &NodeProto,
    x: Value,
    w: Value,
    not_weights: &str,
) -> Result<(TensorId, QConst)> {
    let Value::Real(t) = x else {
        return Err(unsupported(
            node,
            "the input is not a dequantized integer tensor",
        ));
    };
    let Value::ConstReal(w) = w else {
        return Err(unsupported(node, not_weights));
    };
    Ok((t, w))
}

/// Centred weights (original order), their type and the scale of each output channel of a
/// dequantized constant whose output channels lie along `out_axis`.
///
/// # Errors
/// Per-axis quantization along another axis; weights beyond 32 bits.
pub(crate) fn weight_parts(
    node: &NodeProto,
    w: &QConst,
    out_axis: usize,
) -> Result<(Vec<i32>, IntType, Vec<f64>)> {
    let m = *w
        .dims
        .get(out_axis)
        .ok_or_else(|| Error::model(&node.name, &node.op_type, "weight rank too small"))?;
    if w.scale.len() > 1 && w.axis != out_axis {
        return Err(unsupported(
            node,
            "weights quantized per slice along an axis other than the output channels",
        ));
    }
    let mut centred = Vec::with_capacity(w.values.len());
    for i in 0..w.values.len() {
        let c = w.centred(i);
        centred
            .push(i32::try_from(c).map_err(|_| unsupported(node, "weights wider than 32 bits"))?);
    }
    let ty = if w.zero_point.iter().all(|&z| z == 0) {
        w.ty
    } else {
        let lo = centred.iter().copied().min().unwrap_or(0);
        let hi = centred.iter().copied().max().unwrap_or(0);
        type_for_range(i64::from(lo.min(-1)), i64::from(hi))
    };
    let scales = (0..m)
        .map(|c| f64::from(w.scale[if w.scale.len() == 1 { 0 } else { c }]))
        .collect();
    Ok((centred, ty, scales))
}

/// The bias in accumulator units (`acc_scale[c]` per output channel).
///
/// # Errors
/// A bias that is not a constant of one value per output channel.
pub(crate) fn bias_acc(
    node: &NodeProto,
    bias: Option<Value>,
    acc_scale: &[f64],
) -> Result<Vec<i64>> {
    let m = acc_scale.len();
    let bad = || {
        Error::model(
            &node.name,
            &node.op_type,
            format!("the bias must be a constant of {m} values"),
        )
    };
    let to_acc = |real: f64, c: usize| -> Result<i64> {
        let v = (real / acc_scale[c]).round();
        if v.is_finite() && v.abs() < 2f64.powi(62) {
            Ok(v as i64)
        } else {
            Err(unsupported(node, "bias out of range"))
        }
    };
    match bias {
        None => Ok(vec![0; m]),
        Some(Value::ConstReal(b)) if b.values.len() == m => (0..m)
            .map(|c| {
                let s = f64::from(b.scale[b.slice_of(c)]);
                if (s / acc_scale[c] - 1.0).abs() < 1e-6 {
                    Ok(b.centred(c))
                } else {
                    to_acc(b.real(c), c)
                }
            })
            .collect(),
        Some(Value::Const(Const {
            data: ConstData::Int { values, .. },
            ..
        })) if values.len() == m => Ok(values),
        Some(Value::Const(
            c @ Const {
                data: ConstData::Float(_),
                ..
            },
        )) if c.len() == m => c
            .to_f64()
            .into_iter()
            .enumerate()
            .map(|(i, r)| to_acc(r, i))
            .collect(),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowest_types_hold_their_ranges() {
        assert_eq!(
            type_for_range(-7, 7),
            IntType {
                bits: 4,
                signed: true
            }
        );
        assert_eq!(
            type_for_range(0, 15),
            IntType {
                bits: 4,
                signed: false
            }
        );
        assert_eq!(
            type_for_range(-1, 1),
            IntType {
                bits: 2,
                signed: true
            }
        );
        assert_eq!(
            type_for_range(-127, 127),
            IntType {
                bits: 8,
                signed: true
            }
        );
    }
}
