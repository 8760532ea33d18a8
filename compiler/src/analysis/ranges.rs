//! Range analysis: sound bounds on every tensor's centred values and on every accumulator.
//!
//! Tensor ranges come from the clamps of requantizing layers and from the element types (the
//! graph input); max pooling, reshapes and concatenation carry their inputs' ranges.
//!
//! Accumulator width (protocols.md, takeaway 8): for output channel `m` with weights `w`, bias
//! `b` and input values in `[lo, hi]` (widened to contain 0, the padding value),
//! `acc ∈ [b + Σ_{w>0} w·lo + Σ_{w<0} w·hi, b + Σ_{w>0} w·hi + Σ_{w<0} w·lo]`; the sound width
//! is the smallest signed width holding both ends for every `m`. The naive width, for
//! comparison, is `b_w + b_a + ⌈log2(terms)⌉ + 1`.

use crate::ir::{AccBits, LayerGraph, LayerOp, Linear};

/// Smallest signed width (sign included) holding every value of `[lo, hi]`.
pub fn signed_bits(lo: i64, hi: i64) -> u32 {
    let need = |v: i64| {
        if v >= 0 {
            65 - v.leading_zeros()
        } else {
            65 - (!v).leading_zeros()
        }
    };
    need(lo).max(need(hi)).max(1)
}

/// `⌈log2 n⌉` (0 for `n ≤ 1`).
pub fn ceil_log2(n: usize) -> u32 {
    if n <= 1 {
        0
    } else {
        usize::BITS - (n - 1).leading_zeros()
    }
}

/// Sound accumulator bounds of a linear layer whose input lies in `input`.
pub fn acc_range(v: &Linear, input: (i64, i64)) -> (i64, i64) {
    let (lo, hi) = (input.0.min(0) as i128, input.1.max(0) as i128);
    let (mut min, mut max) = (0i128, 0i128);
    for m in 0..v.shape.out_channels() {
        let (mut pos, mut neg) = (0i128, 0i128);
        for i in v.shape.channel_weights(m) {
            let w = i128::from(v.weights[i]);
            if w > 0 { pos += w } else { neg += w }
        }
        let b = i128::from(v.bias[m]);
        max = max.max(b + pos * hi + neg * lo);
        min = min.min(b + pos * lo + neg * hi);
    }
    let clip = |x: i128| x.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    (clip(min), clip(max))
}

/// Sound and naive accumulator widths of a linear layer.
pub fn acc_bits(v: &Linear, input: (i64, i64), input_bits: u32) -> AccBits {
    let (lo, hi) = acc_range(v, input);
    AccBits {
        sound: signed_bits(lo, hi),
        naive: v.weight_ty.bits + input_bits + ceil_log2(v.shape.terms()) + 1,
    }
}

/// Computes every tensor range and every accumulator width, in place.
///
/// # Panics
/// If the graph has a cycle (the verifier rejects those first).
pub fn infer(g: &mut LayerGraph) {
    let order = g.order().expect("the verifier rejects cyclic graphs");
    for n in order {
        let layer = g.layer(n).clone();
        let input = g.tensor(layer.inputs[0]).clone();
        let range = match &layer.op {
            LayerOp::Linear(l) => {
                let bits = acc_bits(l, input.range, input.ty.bits);
                if let LayerOp::Linear(l) = &mut g.layer_mut(n).op {
                    l.acc = Some(bits);
                }
                match &l.requant {
                    Some(r) => r.clamp,
                    None => acc_range(l, input.range),
                }
            }
            LayerOp::Rescale(r) => r.clamp,
            LayerOp::Add(a) => a.clamp,
            LayerOp::AvgPool(a) => a.requant.clamp,
            LayerOp::MaxPool(_) | LayerOp::Reshape => input.range,
            LayerOp::Concat => layer
                .inputs
                .iter()
                .map(|t| g.tensor(*t).range)
                .fold(input.range, |a, b| (a.0.min(b.0), a.1.max(b.1))),
        };
        g.tensor_mut(layer.output).range = range;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::LinearShape;
    use heq_runtime::plan::{IntType, MatMulShape};

    #[test]
    fn signed_bits_counts_the_sign() {
        assert_eq!(signed_bits(0, 0), 1);
        assert_eq!(signed_bits(-1, 0), 1);
        assert_eq!(signed_bits(0, 1), 2);
        assert_eq!(signed_bits(-128, 127), 8);
        assert_eq!(signed_bits(-129, 0), 9);
        assert_eq!(signed_bits(0, 128), 9);
        assert_eq!(ceil_log2(1), 0);
        assert_eq!(ceil_log2(9), 4);
        assert_eq!(ceil_log2(16), 4);
    }

    #[test]
    fn acc_bounds_use_signs_of_weights_and_bias() {
        // Two outputs; column 0 has weights [3, -2], column 1 [-1, -1]; input in [0, 255].
        let l = Linear {
            shape: LinearShape::MatMul(MatMulShape {
                rows: 1,
                inner: 2,
                cols: 2,
            }),
            weight_ty: IntType {
                bits: 8,
                signed: true,
            },
            weights: vec![3, -1, -2, -1],
            bias: vec![10, -5],
            requant: None,
            acc: None,
        };
        assert_eq!(l.shape.channel_weights(0), vec![0, 2]);
        // col 0: max 10 + 3·255 = 775, min 10 − 2·255 = −500; col 1: min −5 − 510 = −515.
        assert_eq!(acc_range(&l, (0, 255)), (-515, 775));
        assert_eq!(
            acc_bits(&l, (0, 255), 8),
            AccBits {
                sound: 11,
                naive: 8 + 8 + 1 + 1
            }
        );
    }
}
