//! Re-quantizing one linear layer of the layer graph to fewer bits.
//!
//! Weights: `w' = round(w / 2^d)` (ties to even) clamped to the narrower type, bias
//! `b' = round(b / 2^d)`, and the layer's requantization multiplier times `2^d` (the
//! accumulator unit grew by `2^d`). Output activation: the requantization shift grows by `e`,
//! the clamp and the tensor's type, zero point, scale and range shrink by `2^e`, and every
//! consumer absorbs the `2^e` larger input step: a requantizing linear layer or `Rescale` by its
//! multiplier (and a linear layer's bias by `1/2^e`), `Add` by its input's multiplier, `AvgPool`
//! by its multipliers; max pooling and reshapes pass the new quantization on to their own
//! consumers. An output feeding a concatenation or a linear layer without requantization keeps
//! its width.
//!
//! A multiplier times `2^d` takes the factor from the shift first, so that multipliers do not
//! grow where the shift allows.

use crate::ir::{LayerGraph, LayerOp, Requant, TensorId, TensorInfo};
use heq_runtime::plan::{IntType, LoweredLayer};
use petgraph::stable_graph::NodeIndex;

/// `round(x / 2^d)`, ties to even ([`heq_runtime::ring::round_shift`]).
pub fn round_shift(x: i64, d: u32) -> i64 {
    // |x / 2^d| rounded is at most |x|, so the result fits an i64.
    heq_runtime::ring::round_shift(i128::from(x), d).half_even() as i64
}

/// Multiplies `m / 2^shift` by `2^d`: the shift first, then the multipliers. `false` (nothing
/// changed) if a multiplier would overflow 62 bits.
fn scale_up(multipliers: &mut [i64], shift: &mut u32, d: u32) -> bool {
    let take = (*shift).min(d);
    let rest = d - take;
    let fits = multipliers
        .iter()
        .all(|&m| rest < 62 && m.unsigned_abs() < 1u64 << (62 - rest));
    if !fits {
        return false;
    }
    *shift -= take;
    for m in multipliers {
        *m <<= rest;
    }
    true
}

/// Whether every consumer of `t` can absorb a coarser step of `t`.
fn absorbable(g: &LayerGraph, t: TensorId) -> bool {
    g.consumers(t).into_iter().all(|c| {
        let l = g.layer(c);
        match &l.op {
            LayerOp::Linear(l) => l.requant.is_some(),
            LayerOp::Rescale(_) | LayerOp::Add(_) | LayerOp::AvgPool(_) => true,
            LayerOp::MaxPool(_) | LayerOp::Reshape => absorbable(g, l.output),
            LayerOp::Concat => false,
        }
    })
}

/// The fact of a tensor whose step grew by `2^e`, now of `bits` bits.
fn coarser(f: &TensorInfo, e: u32, bits: u32) -> TensorInfo {
    let ty = IntType {
        bits,
        signed: f.ty.signed,
    };
    let zero_point = round_shift(f.zero_point, e).clamp(ty.min(), ty.max());
    let (lo, hi) = ty.centred_range(zero_point);
    TensorInfo {
        ty,
        zero_point,
        scale: f.scale * (1u64 << e) as f32,
        range: (
            round_shift(f.range.0, e).clamp(lo, hi),
            round_shift(f.range.1, e).clamp(lo, hi),
        ),
        ..f.clone()
    }
}

/// Makes every consumer of `t` absorb an input step `2^e` larger; `false` if one cannot (the
/// graph is then partly changed and must be dropped).
fn absorb(g: &mut LayerGraph, t: TensorId, e: u32, bits: u32) -> bool {
    for c in g.consumers(t) {
        let layer = g.layer(c).clone();
        let ok = match &mut g.layer_mut(c).op {
            LayerOp::Linear(l) => scale_linear(&mut l.requant, &mut l.bias, e),
            LayerOp::Rescale(r) => scale_up(&mut r.multipliers, &mut r.shift, e),
            LayerOp::AvgPool(a) => scale_up(&mut a.requant.multipliers, &mut a.requant.shift, e),
            LayerOp::Add(a) => {
                let mut ok = true;
                for (i, m) in [&mut a.m_a, &mut a.m_b].into_iter().enumerate() {
                    if layer.inputs[i] == t {
                        ok &= e < 62 && m.unsigned_abs() < 1u64 << (62 - e);
                        if ok {
                            *m <<= e;
                        }
                    }
                }
                ok
            }
            LayerOp::MaxPool(_) | LayerOp::Reshape => {
                let fact = coarser(g.tensor(layer.output), e, bits);
                *g.tensor_mut(layer.output) = fact;
                absorb(g, layer.output, e, bits)
            }
            LayerOp::Concat => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A requantizing linear layer absorbs a `2^e` larger accumulator unit.
fn scale_linear(requant: &mut Option<Requant>, bias: &mut [i64], e: u32) -> bool {
    let Some(r) = requant else { return false };
    if !scale_up(&mut r.multipliers, &mut r.shift, e) {
        return false;
    }
    for b in bias {
        *b = round_shift(*b, e);
    }
    true
}

/// The graph with linear layer `node` re-quantized to `bits`-bit weights and, where its
/// consumers allow, a `bits`-bit output; `None` when neither gets narrower (or the layer has no
/// requantization). The caller re-runs the passes (ranges, ties) before lowering.
pub fn lower_layer(
    g: &LayerGraph,
    node: NodeIndex,
    bits: u32,
) -> Option<(LayerGraph, LoweredLayer)> {
    let layer = g.layer(node).clone();
    let LayerOp::Linear(v) = &layer.op else {
        return None;
    };
    v.requant.as_ref()?;
    let out = g.tensor(layer.output).clone();
    let w_bits = v.weight_ty.bits;
    let d = if v.weight_ty.signed && w_bits > bits {
        w_bits - bits
    } else {
        0
    };
    let e = if out.ty.bits > bits && absorbable(g, layer.output) {
        out.ty.bits - bits
    } else {
        0
    };
    if d == 0 && e == 0 {
        return None;
    }
    let mut g = g.clone();
    let new_out = if e > 0 {
        coarser(&out, e, bits)
    } else {
        out.clone()
    };
    let ok = {
        let LayerOp::Linear(l) = &mut g.layer_mut(node).op else {
            return None;
        };
        let r = l.requant.as_mut()?;
        let mut ok = true;
        if d > 0 {
            let ty = IntType { bits, signed: true };
            for w in &mut l.weights {
                *w = round_shift(i64::from(*w), d).clamp(ty.min(), ty.max()) as i32;
            }
            for b in &mut l.bias {
                *b = round_shift(*b, d);
            }
            l.weight_ty = ty;
            ok &= scale_up(&mut r.multipliers, &mut r.shift, d);
        }
        if e > 0 {
            r.shift += e;
            ok &= r.shift < 64;
            let (lo, hi) = new_out.ty.centred_range(new_out.zero_point);
            r.clamp = (
                round_shift(r.clamp.0, e).clamp(lo, hi),
                round_shift(r.clamp.1, e).clamp(lo, hi),
            );
        }
        ok
    };
    if !ok {
        return None;
    }
    if e > 0 {
        *g.tensor_mut(layer.output) = new_out.clone();
        if !absorb(&mut g, layer.output, e, bits) {
            return None;
        }
    }
    let lowered = LoweredLayer {
        name: layer.name.clone(),
        weight_bits: (w_bits, w_bits - d),
        output_bits: (out.ty.bits, new_out.ty.bits),
    };
    Some((g, lowered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_shift_is_half_even() {
        assert_eq!(round_shift(5, 0), 5);
        assert_eq!(round_shift(8, 4), 0);
        assert_eq!(round_shift(24, 4), 2);
        assert_eq!(round_shift(25, 4), 2);
        assert_eq!(round_shift(-8, 4), 0);
        assert_eq!(round_shift(-24, 4), -2);
        assert_eq!(round_shift(-25, 4), -2);
        assert_eq!(round_shift(127, 4), 8);
        assert_eq!(round_shift(-128, 4), -8);
    }

    #[test]
    fn scale_up_takes_the_shift_first() {
        let (mut m, mut k) = (vec![3, 5], 2);
        assert!(scale_up(&mut m, &mut k, 3));
        assert_eq!((m, k), (vec![6, 10], 0));
        let (mut m, mut k) = (vec![1i64 << 61], 0);
        assert!(!scale_up(&mut m, &mut k, 2));
        assert_eq!((m, k), (vec![1i64 << 61], 0));
    }
}
