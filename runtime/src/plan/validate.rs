//! Structural checks a plan must pass before anything runs it.
//!
//! Invariants (every violation is reported, not just the first):
//! - layer `i` has id `l{i}`; every tensor id a layer or the input/output names exists;
//! - every layer input is the model input or the output of an earlier layer; no tensor is
//!   produced twice;
//! - shapes agree with each operation (elements in = elements out for `Reshape`, channel sums
//!   for `Concat`, geometry for convolutions and pools);
//! - clamps are ordered and tensor ranges non-empty;
//! - linear layers have a valid tile (`M_w·C_w·H_w·W_w ≤ N`) and `N ∈ {2048, 4096, 8192}`;
//! - when weights are present, every linear layer has exactly its number of weights, biases and
//!   multipliers, and nothing else has weights.

use super::{Op, Plan, TensorId};
use crate::error::PlanError;

/// Checks the invariants listed in the module documentation.
///
/// # Errors
/// [`PlanError::Invalid`] with every violation found.
pub fn validate(plan: &Plan) -> Result<(), PlanError> {
    let p = &plan.public;
    let mut errs = Vec::new();
    let n_tensors = p.tensors.len();
    let exists = |t: TensorId| (t.0 as usize) < n_tensors;
    for io in [&p.input, &p.output] {
        if !exists(io.tensor) {
            errs.push(format!("{} refers to missing tensor {}", io.name, io.tensor));
        } else if p.tensors[io.tensor.0 as usize].len() != io.shape.iter().product::<usize>() {
            errs.push(format!("{}: shape {:?} disagrees with tensor {}", io.name, io.shape, io.tensor));
        }
    }
    for (i, t) in p.tensors.iter().enumerate() {
        if t.range.0 > t.range.1 {
            errs.push(format!("t{i}: empty range {:?}", t.range));
        }
        if !(1..=32).contains(&t.ty.bits) {
            errs.push(format!("t{i}: element width {} outside 1..=32", t.ty.bits));
        }
    }
    let mut defined = vec![false; n_tensors];
    if exists(p.input.tensor) {
        defined[p.input.tensor.0 as usize] = true;
    }
    for (i, layer) in p.layers.iter().enumerate() {
        let at = format!("{} ({})", layer.id, layer.name);
        if layer.id.0 as usize != i {
            errs.push(format!("{at}: listed at position {i}"));
        }
        if !exists(layer.output) || layer.inputs.iter().any(|t| !exists(*t)) {
            errs.push(format!("{at}: refers to a missing tensor"));
            continue;
        }
        for t in &layer.inputs {
            if !defined[t.0 as usize] {
                errs.push(format!("{at}: input {t} is not computed before it"));
            }
        }
        if std::mem::replace(&mut defined[layer.output.0 as usize], true) {
            errs.push(format!("{at}: output {} is produced twice", layer.output));
        }
        let want_inputs = match layer.op {
            Op::Add(_) => 2..=2,
            Op::Concat => 1..=usize::MAX,
            _ => 1..=1,
        };
        if !want_inputs.contains(&layer.inputs.len()) {
            errs.push(format!("{at}: {} inputs", layer.inputs.len()));
            continue;
        }
        let len = |t: TensorId| p.tensors[t.0 as usize].len();
        let (input_len, output_len) = (len(layer.inputs[0]), len(layer.output));
        let shape_ok = match &layer.op {
            Op::Conv(l) => {
                let s = &l.shape;
                let [oh, ow] = s.out_hw();
                s.groups > 0
                    && s.in_channels % s.groups == 0
                    && s.out_channels % s.groups == 0
                    && s.stride.iter().all(|&x| x > 0)
                    && s.in_hw[0] + s.pads[0] + s.pads[2] >= s.kernel[0]
                    && s.in_hw[1] + s.pads[1] + s.pads[3] >= s.kernel[1]
                    && input_len == s.in_channels * s.in_hw[0] * s.in_hw[1]
                    && output_len == s.out_channels * oh * ow
            }
            Op::MatMul(l) => {
                input_len == l.shape.rows * l.shape.inner && output_len == l.shape.rows * l.shape.cols
            }
            Op::Affine(l) => {
                input_len == l.shape.channels * l.shape.per_channel && output_len == input_len
            }
            Op::MaxPool(s) | Op::AvgPool(super::AvgPoolSpec { pool: s, .. }) => {
                let [oh, ow] = s.out_hw();
                s.stride.iter().all(|&x| x > 0)
                    && s.in_hw[0] + s.pads[0] + s.pads[2] >= s.kernel[0]
                    && s.in_hw[1] + s.pads[1] + s.pads[3] >= s.kernel[1]
                    && input_len == s.channels * s.in_hw[0] * s.in_hw[1]
                    && output_len == s.channels * oh * ow
            }
            Op::Rescale(r) => output_len == input_len && !r.multipliers.is_empty(),
            Op::Add(_) => len(layer.inputs[1]) == input_len && output_len == input_len,
            Op::Concat => layer.inputs.iter().map(|t| len(*t)).sum::<usize>() == output_len,
            Op::Reshape => output_len == input_len,
        };
        if !shape_ok {
            errs.push(format!("{at}: shapes do not fit the {} operation", layer.op.kind()));
        }
        let clamp = match &layer.op {
            Op::Conv(l) => l.requant.as_ref().map(|r| r.clamp),
            Op::MatMul(l) => l.requant.as_ref().map(|r| r.clamp),
            Op::Affine(l) => l.requant.as_ref().map(|r| r.clamp),
            Op::Rescale(r) => Some(r.clamp),
            Op::Add(a) => Some(a.clamp),
            Op::AvgPool(a) => Some(a.clamp),
            _ => None,
        };
        if let Some((lo, hi)) = clamp
            && lo > hi
        {
            errs.push(format!("{at}: clamp [{lo}, {hi}] is empty"));
        }
        if let Some(proto) = linear_protocol(&layer.op) {
            let t = &proto.tile;
            if ![2048, 4096, 8192].contains(&proto.he.degree) {
                errs.push(format!("{at}: ring degree {} not in {{2048, 4096, 8192}}", proto.he.degree));
            }
            if t.c * t.h * t.w * t.m == 0 || t.c * t.h * t.w * t.m > proto.he.degree {
                errs.push(format!("{at}: tile {t:?} does not fit N = {}", proto.he.degree));
            }
        }
    }
    if exists(p.output.tensor) && !defined[p.output.tensor.0 as usize] {
        errs.push(format!("output {} is never computed", p.output.tensor));
    }
    if let Some(w) = &plan.weights {
        for (id, lw) in &w.layers {
            let Some(layer) = p.layers.get(id.0 as usize) else {
                errs.push(format!("weights for missing layer {id}"));
                continue;
            };
            let (n_w, n_out, has_requant) = match &layer.op {
                Op::Conv(l) => (l.shape.weight_len(), l.shape.out_channels, l.requant.is_some()),
                Op::MatMul(l) => (l.shape.inner * l.shape.cols, l.shape.cols, l.requant.is_some()),
                Op::Affine(l) => (l.shape.channels, l.shape.channels, l.requant.is_some()),
                _ => {
                    errs.push(format!("{id}: a {} layer has no weights", layer.op.kind()));
                    continue;
                }
            };
            let n_m = if has_requant { n_out } else { 0 };
            if lw.weights.len() != n_w || lw.bias.len() != n_out || lw.multipliers.len() != n_m {
                errs.push(format!(
                    "{id}: {} weights, {} biases, {} multipliers; expected {n_w}, {n_out}, {n_m}",
                    lw.weights.len(),
                    lw.bias.len(),
                    lw.multipliers.len()
                ));
            }
        }
        let linear = p.layers.iter().filter(|l| l.op.is_linear()).count();
        if w.layers.len() != linear {
            errs.push(format!("{} weight entries for {linear} linear layers", w.layers.len()));
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(PlanError::Invalid(errs)) }
}

/// The HE protocol of a linear layer.
pub(crate) fn linear_protocol(op: &Op) -> Option<&super::LinearProtocol> {
    match op {
        Op::Conv(l) => Some(&l.protocol),
        Op::MatMul(l) => Some(&l.protocol),
        Op::Affine(l) => Some(&l.protocol),
        _ => None,
    }
}
