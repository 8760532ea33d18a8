//! Structural checks a plan must pass before anything runs it.
//!
//! Invariants (every violation is reported, not just the first):
//! - layer `i` has id `l{i}`; every tensor id a layer or the input/output names exists;
//! - every layer input is the model input or the output of an earlier layer; no tensor is
//!   produced twice; the output is computed;
//! - every tensor has non-zero dimensions, at most [`MAX_TENSOR_ELEMENTS`] elements, and all
//!   tensors together at most [`MAX_TOTAL_ELEMENTS`]; its element width is in `1..=32`, its zero
//!   point fits its element type, its scale is finite and positive, its range is non-empty;
//! - shapes agree with each operation (elements in = elements out for `Reshape`, channel
//!   concatenation with equal trailing dimensions for `Concat`, geometry for convolutions and
//!   pools); kernels and strides are non-zero, the padded input covers the kernel, pooling pads
//!   are smaller than the window (no window lies entirely in the padding), and no layer needs
//!   more than [`MAX_LAYER_MACS`] multiply-accumulates or window reads;
//! - clamps are ordered, shifts are below 64, tie windows fit their shift, accumulator widths
//!   are in `1..=64`, share rings and plaintext moduli in `1..=64` bits, packing factors at
//!   least 1, the OT batch size in `1..=`[`MAX_OT_BATCH_ROTS`], the chunk bound from the batch
//!   size to [`MAX_CHUNK_ROTS`];
//! - only layers that compute carries ([`Op::computes_carries`]) choose a carry depth other
//!   than [`CarryDepth::Ripple`];
//! - `Rescale` has one multiplier or one per channel (dividing the tensor length); `AvgPool`
//!   has one multiplier per possible window count (`kernel_h · kernel_w`) and its `ceil_pads`
//!   are part of the bottom and right pads;
//! - linear layers have a valid tile (`M_w·C_w·H_w·W_w ≤ N`) and `N ∈ {2048, 4096, 8192}`;
//! - the epilogue fits the output tensor ([`super::Epilogue::output`]: axes, lengths, element
//!   types, at most [`super::MAX_EPILOGUE_STEPS`] steps of rank at most
//!   [`super::MAX_EPILOGUE_RANK`]);
//! - when weights are present, every linear layer has exactly one entry (sorted by layer), with
//!   exactly its number of weights (each within the layer's weight type) and biases, and
//!   nothing else has weights; requantizations have one multiplier per output channel.
//!
//! The limits keep a hostile plan from making a reader allocate or compute without bound; they
//! are far above what two-party inference can run (ResNet-50 at 224×224: 2^19.6 elements in its
//! largest tensor, 112·112·64, and 2^26.8 multiply-accumulates in its largest layer, conv1).

use super::{CarryDepth, Layer, LayerWeights, Op, Plan, TensorId};
use crate::cost::plan::{MAX_CHUNK_ROTS, MAX_OT_BATCH_ROTS};
use crate::error::PlanError;

/// Most elements one tensor may have (2^26).
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 26;
/// Most elements all tensors of a plan may have together (2^28).
pub const MAX_TOTAL_ELEMENTS: usize = 1 << 28;
/// Most multiply-accumulates (or window reads, for pools) one layer may need (2^36).
pub const MAX_LAYER_MACS: usize = 1 << 36;

/// Checks the invariants listed in the module documentation.
///
/// # Errors
/// [`PlanError::Invalid`] with every violation found.
pub fn validate(plan: &Plan) -> Result<(), PlanError> {
    let p = &plan.public;
    let mut errs = Vec::new();
    let lens = tensor_lens(plan, &mut errs);
    let n_tensors = p.tensors.len();
    let exists = |t: TensorId| (t.0 as usize) < n_tensors;
    for io in [&p.input, &p.output] {
        if !exists(io.tensor) {
            errs.push(format!(
                "{} refers to missing tensor {}",
                io.name, io.tensor
            ));
        } else if let Some(len) = lens[io.tensor.0 as usize]
            && checked_product(&io.shape) != Some(len)
        {
            errs.push(format!(
                "{}: shape {:?} disagrees with tensor {}",
                io.name, io.shape, io.tensor
            ));
        }
    }
    let batch = p.protocol.ot_batch_rots;
    if !(1..=MAX_OT_BATCH_ROTS).contains(&batch) {
        errs.push(format!(
            "OT batch of {batch} ROTs outside 1..={MAX_OT_BATCH_ROTS}"
        ));
    }
    let chunk = p.protocol.chunk_rots;
    if !(batch..=MAX_CHUNK_ROTS).contains(&chunk) {
        errs.push(format!(
            "chunks of {chunk} ROTs outside the OT batch's {batch}..={MAX_CHUNK_ROTS}"
        ));
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
        check_params(&layer.op, &at, &mut errs);
        if layer.carry != CarryDepth::Ripple && !layer.op.computes_carries() {
            errs.push(format!(
                "{at}: carry depth {} on a layer that computes no carries",
                layer.carry
            ));
        }
        let mut io_lens = Vec::with_capacity(layer.inputs.len() + 1);
        for t in layer.inputs.iter().chain([&layer.output]) {
            match lens[t.0 as usize] {
                Some(len) => io_lens.push(len),
                // The tensor itself is already reported.
                None => break,
            }
        }
        if io_lens.len() == layer.inputs.len() + 1 {
            let (ins, out) = io_lens.split_at(layer.inputs.len());
            match layer_work(plan, layer, ins, out[0]) {
                Some(macs) if macs > MAX_LAYER_MACS => errs.push(format!(
                    "{at}: {macs} multiply-accumulates exceed the limit of {MAX_LAYER_MACS} per layer"
                )),
                Some(_) => {}
                None => {
                    errs.push(format!("{at}: shapes do not fit the {} operation", layer.op.kind()))
                }
            }
        }
    }
    if exists(p.output.tensor) && !defined[p.output.tensor.0 as usize] {
        errs.push(format!("output {} is never computed", p.output.tensor));
    }
    if exists(p.output.tensor)
        && let Err(e) = p
            .epilogue
            .output(&p.tensors[p.output.tensor.0 as usize].shape)
    {
        errs.push(e);
    }
    if let Some(w) = &plan.weights {
        check_weights(plan, &w.layers, &mut errs);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(PlanError::Invalid(errs))
    }
}

/// Elements of every tensor, `None` for a tensor that breaks a rule (reported in `errs`).
fn tensor_lens(plan: &Plan, errs: &mut Vec<String>) -> Vec<Option<usize>> {
    let mut total = 0usize;
    let mut lens = Vec::with_capacity(plan.public.tensors.len());
    for (i, t) in plan.public.tensors.iter().enumerate() {
        if t.range.0 > t.range.1 {
            errs.push(format!("t{i}: empty range {:?}", t.range));
        }
        if !(1..=32).contains(&t.ty.bits) {
            errs.push(format!("t{i}: element width {} outside 1..=32", t.ty.bits));
        } else if !(t.ty.min()..=t.ty.max()).contains(&t.zero_point) {
            errs.push(format!(
                "t{i}: zero point {} does not fit {}",
                t.zero_point, t.ty
            ));
        }
        if !(t.scale.is_finite() && t.scale > 0.0) {
            errs.push(format!(
                "t{i}: scale {} is not a positive finite number",
                t.scale
            ));
        }
        let len = checked_product(&t.shape);
        let len = match len {
            _ if t.shape.contains(&0) => {
                errs.push(format!("t{i}: shape {:?} has a zero dimension", t.shape));
                None
            }
            Some(n) if n <= MAX_TENSOR_ELEMENTS => Some(n),
            _ => {
                errs.push(format!(
                    "t{i}: shape {:?} exceeds the limit of {MAX_TENSOR_ELEMENTS} elements per tensor",
                    t.shape
                ));
                None
            }
        };
        total = total.saturating_add(len.unwrap_or(0));
        lens.push(len);
    }
    if total > MAX_TOTAL_ELEMENTS {
        errs.push(format!(
            "{total} tensor elements in all exceed the limit of {MAX_TOTAL_ELEMENTS} per plan"
        ));
    }
    lens
}

/// Checks the numeric parameters of an operation that do not depend on tensor shapes.
fn check_params(op: &Op, at: &str, errs: &mut Vec<String>) {
    let (clamp, shift, rounding) = match op {
        Op::Add(a) => (Some(a.clamp), Some(a.shift), Some(a.rounding)),
        op => match op.requant() {
            Some(r) => (Some(r.clamp), Some(r.shift), Some(r.rounding)),
            None => (None, None, None),
        },
    };
    if let Some((lo, hi)) = clamp
        && lo > hi
    {
        errs.push(format!("{at}: clamp [{lo}, {hi}] is empty"));
    }
    if let Some(k) = shift
        && k >= 64
    {
        errs.push(format!("{at}: shift {k} is not below 64"));
    }
    if let (Some(k), Some(window)) = (shift, rounding.and_then(|r| r.tie_window()))
        && window > 0
        && (k == 0 || k < 64 && u128::from(window) * 2 >= 1u128 << k)
    {
        errs.push(format!(
            "{at}: tie window {window} does not fit shift {k} (needs 2·window < 2^shift)"
        ));
    }
    if let Some(linear) = op.linear() {
        let (acc_bits, weight_ty, proto) = (linear.acc_bits, linear.weight_ty, linear.protocol);
        if !(1..=64).contains(&acc_bits) {
            errs.push(format!("{at}: accumulator width {acc_bits} outside 1..=64"));
        }
        if !(1..=32).contains(&weight_ty.bits) {
            errs.push(format!(
                "{at}: weight width {} outside 1..=32",
                weight_ty.bits
            ));
        }
        let t = &proto.tile;
        if ![2048, 4096, 8192].contains(&proto.he.degree) {
            errs.push(format!(
                "{at}: ring degree {} not in {{2048, 4096, 8192}}",
                proto.he.degree
            ));
        }
        let slots =
            t.c.checked_mul(t.h)
                .and_then(|x| x.checked_mul(t.w))
                .and_then(|x| x.checked_mul(t.m));
        if !slots.is_some_and(|s| s > 0 && s <= proto.he.degree) {
            errs.push(format!(
                "{at}: tile {t:?} does not fit N = {}",
                proto.he.degree
            ));
        }
        for (what, bits) in [
            ("input ring", proto.in_ring_bits),
            ("output ring", proto.out_ring_bits),
            ("plaintext modulus", proto.he.plain_bits),
        ] {
            if !(1..=64).contains(&bits) {
                errs.push(format!("{at}: {what} of {bits} bits outside 1..=64"));
            }
        }
        if proto.packing.factor == 0 {
            errs.push(format!("{at}: packing factor 0"));
        }
    }
}

/// Whether a linear layer's requantization has one multiplier per output channel.
fn requant_channels(requant: &Option<super::Requant>, channels: usize) -> bool {
    requant
        .as_ref()
        .is_none_or(|r| r.multipliers.len() == channels)
}

/// The multiply-accumulates (or window reads) a layer needs, or `None` if the shapes of its
/// inputs (`ins`, element counts) and output (`out`) do not fit the operation.
fn layer_work(plan: &Plan, layer: &Layer, ins: &[usize], out: usize) -> Option<usize> {
    let input = ins[0];
    let op = &layer.op;
    let fits = |ok: bool| ok.then_some(());
    match op {
        Op::Conv(l) => {
            let s = &l.shape;
            fits(s.groups > 0 && s.in_channels % s.groups == 0 && s.out_channels % s.groups == 0)?;
            let [oh, ow] = window_out_hw(s.in_hw, s.kernel, s.stride, s.pads)?;
            fits(
                input
                    == s.in_channels
                        .checked_mul(s.in_hw[0])?
                        .checked_mul(s.in_hw[1])?,
            )?;
            fits(out == s.out_channels.checked_mul(oh)?.checked_mul(ow)?)?;
            fits(requant_channels(&l.requant, s.out_channels))?;
            let per_output = (s.in_channels / s.groups)
                .checked_mul(s.kernel[0])?
                .checked_mul(s.kernel[1])?;
            out.checked_mul(per_output)
        }
        Op::MatMul(l) => {
            let s = &l.shape;
            fits(input == s.rows.checked_mul(s.inner)? && out == s.rows.checked_mul(s.cols)?)?;
            fits(requant_channels(&l.requant, s.cols))?;
            out.checked_mul(s.inner)
        }
        Op::Affine(l) => {
            fits(input == l.shape.channels.checked_mul(l.shape.per_channel)? && out == input)?;
            fits(requant_channels(&l.requant, l.shape.channels))?;
            Some(out)
        }
        Op::MaxPool(s) | Op::AvgPool(super::AvgPoolSpec { pool: s, .. }) => {
            fits(s.pads[0] < s.kernel[0] && s.pads[2] < s.kernel[0])?;
            fits(s.pads[1] < s.kernel[1] && s.pads[3] < s.kernel[1])?;
            let [oh, ow] = window_out_hw(s.in_hw, s.kernel, s.stride, s.pads)?;
            fits(
                input
                    == s.channels
                        .checked_mul(s.in_hw[0])?
                        .checked_mul(s.in_hw[1])?,
            )?;
            fits(out == s.channels.checked_mul(oh)?.checked_mul(ow)?)?;
            let window = s.kernel[0].checked_mul(s.kernel[1])?;
            if let Op::AvgPool(a) = op {
                fits(a.requant.multipliers.len() == window)?;
                fits(a.ceil_pads[0] <= s.pads[2] && a.ceil_pads[1] <= s.pads[3])?;
            }
            out.checked_mul(window)
        }
        Op::Rescale(r) => {
            let c = r.multipliers.len();
            fits(out == input && c > 0 && input.is_multiple_of(c))?;
            Some(out)
        }
        Op::Add(_) => {
            fits(ins[1] == input && out == input)?;
            Some(out)
        }
        Op::Concat => {
            let shape = |t: &TensorId| &plan.public.tensors[t.0 as usize].shape;
            let out_shape = shape(&layer.output);
            let trailing_ok = layer
                .inputs
                .iter()
                .all(|t| shape(t).get(1..) == out_shape.get(1..));
            fits(
                trailing_ok && ins.iter().try_fold(0usize, |a, &n| a.checked_add(n)) == Some(out),
            )?;
            Some(out)
        }
        Op::Reshape => {
            fits(out == input)?;
            Some(out)
        }
    }
}

/// Output height and width of a window operation, or `None` if a kernel side or stride is zero
/// or the padded input is smaller than the kernel (checked before dividing or subtracting).
fn window_out_hw(
    in_hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
) -> Option<[usize; 2]> {
    let mut out = [0; 2];
    for d in 0..2 {
        let padded = in_hw[d].checked_add(pads[d])?.checked_add(pads[d + 2])?;
        if kernel[d] == 0 || stride[d] == 0 || padded < kernel[d] {
            return None;
        }
        out[d] = (padded - kernel[d]) / stride[d] + 1;
    }
    Some(out)
}

/// Checks the server-only part against the layers.
fn check_weights(plan: &Plan, entries: &[(super::LayerId, LayerWeights)], errs: &mut Vec<String>) {
    let p = &plan.public;
    for pair in entries.windows(2) {
        if pair[0].0 >= pair[1].0 {
            errs.push(format!(
                "weight entries not sorted by layer ({} before {})",
                pair[0].0, pair[1].0
            ));
        }
    }
    for (id, lw) in entries {
        let Some(layer) = p.layers.get(id.0 as usize) else {
            errs.push(format!("weights for missing layer {id}"));
            continue;
        };
        let (n_w, n_out) = match &layer.op {
            Op::Conv(l) => {
                let s = &l.shape;
                let per_filter = s
                    .in_channels
                    .checked_div(s.groups)
                    .and_then(|c| c.checked_mul(s.kernel[0])?.checked_mul(s.kernel[1]));
                let n = per_filter.and_then(|f| f.checked_mul(s.out_channels));
                (n, s.out_channels)
            }
            Op::MatMul(l) => (l.shape.inner.checked_mul(l.shape.cols), l.shape.cols),
            Op::Affine(l) => (Some(l.shape.channels), l.shape.channels),
            _ => {
                errs.push(format!("{id}: a {} layer has no weights", layer.op.kind()));
                continue;
            }
        };
        if Some(lw.weights.len()) != n_w || lw.bias.len() != n_out {
            let n_w = n_w.map_or_else(|| "too many".to_string(), |n| n.to_string());
            errs.push(format!(
                "{id}: {} weights, {} biases; expected {n_w}, {n_out}",
                lw.weights.len(),
                lw.bias.len(),
            ));
        }
        if let Some(ty) = layer.op.linear().map(|l| l.weight_ty)
            && (1..=32).contains(&ty.bits)
            && let Some(w) = lw
                .weights
                .iter()
                .find(|&&w| !(ty.min()..=ty.max()).contains(&i64::from(w)))
        {
            errs.push(format!("{id}: weight {w} does not fit {ty}"));
        }
    }
    let linear = p.layers.iter().filter(|l| l.op.is_linear()).count();
    if entries.len() != linear {
        errs.push(format!(
            "{} weight entries for {linear} linear layers",
            entries.len()
        ));
    }
}

/// Product of dimensions, `None` on overflow.
fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::plan::default_chunk_rots;
    use crate::plan::{AvgPoolSpec, Rounding, TensorInfo};
    use crate::reference::testutil::every_op_plan;

    /// The violations `validate` reports after `mutate` changes the sample plan.
    fn errors(mutate: impl FnOnce(&mut Plan)) -> Vec<String> {
        let mut plan = every_op_plan();
        mutate(&mut plan);
        match validate(&plan) {
            Err(PlanError::Invalid(errs)) => errs,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn conv(plan: &mut Plan) -> &mut crate::plan::ConvShape {
        match &mut plan.public.layers[0].op {
            Op::Conv(l) => &mut l.shape,
            _ => unreachable!("l0 of every_op_plan is the convolution"),
        }
    }

    fn avgpool(plan: &mut Plan) -> &mut AvgPoolSpec {
        match &mut plan.public.layers[2].op {
            Op::AvgPool(a) => a,
            _ => unreachable!("l2 of every_op_plan is the average pool"),
        }
    }

    #[test]
    fn sample_plan_is_valid() {
        assert!(validate(&every_op_plan()).is_ok());
    }

    #[test]
    fn zero_stride_and_kernel_are_rejected_without_dividing() {
        let shapes = "l0 (l0): shapes do not fit the conv operation";
        assert_eq!(errors(|p| conv(p).stride = [0, 1]), vec![shapes]);
        let weights = "l0: 36 weights, 2 biases; expected 0, 2";
        assert_eq!(errors(|p| conv(p).kernel = [0, 3]), vec![shapes, weights]);
        let pool = "l2 (l2): shapes do not fit the avgpool operation";
        assert_eq!(errors(|p| avgpool(p).pool.stride = [1, 0]), vec![pool]);
    }

    #[test]
    fn kernel_larger_than_padded_input_is_rejected_without_underflow() {
        let shapes = "l0 (l0): shapes do not fit the conv operation";
        let weights = "l0: 36 weights, 2 biases; expected 84, 2";
        assert_eq!(errors(|p| conv(p).kernel = [7, 3]), vec![shapes, weights]);
        assert_eq!(
            errors(|p| conv(p).pads = [usize::MAX, 0, usize::MAX, 0]),
            vec![shapes]
        );
        let weights = "l0: 36 weights, 2 biases; expected too many, 2";
        assert_eq!(errors(|p| conv(p).groups = 0), vec![shapes, weights]);
        let weights = "l0: 36 weights, 2 biases; expected 0, 2";
        assert_eq!(errors(|p| conv(p).groups = 3), vec![shapes, weights]);
    }

    #[test]
    fn only_layers_with_carries_choose_a_tree() {
        let mut trees = every_op_plan();
        let mut carrying = 0;
        for l in &mut trees.public.layers {
            if l.op.computes_carries() {
                l.carry = CarryDepth::Tree;
                carrying += 1;
            }
        }
        assert!(carrying >= 4 && validate(&trees).is_ok());
        let concat = |p: &mut Plan| {
            let l = p.public.layers.iter_mut().find(|l| l.op == Op::Concat);
            l.expect("every_op_plan has a concat").carry = CarryDepth::Tree;
        };
        assert_eq!(
            errors(concat),
            vec!["l5 (l5): carry depth tree on a layer that computes no carries".to_string()]
        );
    }

    #[test]
    fn pool_pads_must_be_smaller_than_the_window() {
        // A window entirely in the padding would count no element.
        assert_eq!(
            errors(|p| avgpool(p).pool.pads = [3, 1, 1, 1]),
            vec!["l2 (l2): shapes do not fit the avgpool operation".to_string()]
        );
    }

    #[test]
    fn ceil_pads_are_part_of_the_end_pads() {
        // every_op_plan's average pool has pads [1, 1, 1, 1].
        assert!(
            validate(&{
                let mut p = every_op_plan();
                avgpool(&mut p).ceil_pads = [1, 1];
                p
            })
            .is_ok()
        );
        assert_eq!(
            errors(|p| avgpool(p).ceil_pads = [2, 0]),
            vec!["l2 (l2): shapes do not fit the avgpool operation".to_string()]
        );
    }

    #[test]
    fn avgpool_needs_one_multiplier_per_count() {
        assert_eq!(
            errors(|p| avgpool(p)
                .requant
                .multipliers
                .pop()
                .map(drop)
                .unwrap_or_default()),
            vec!["l2 (l2): shapes do not fit the avgpool operation".to_string()]
        );
    }

    #[test]
    fn huge_and_empty_shapes_are_rejected() {
        let errs = errors(|p| p.public.tensors[3].shape = vec![usize::MAX, 2]);
        assert_eq!(
            errs[0],
            format!(
                "t3: shape [{}, 2] exceeds the limit of 67108864 elements per tensor",
                usize::MAX
            )
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        let errs = errors(|p| p.public.tensors[3].shape = vec![1 << 27]);
        assert_eq!(
            errs,
            vec!["t3: shape [134217728] exceeds the limit of 67108864 elements per tensor"]
        );
        let errs = errors(|p| p.public.tensors[3].shape = vec![2, 0, 2]);
        assert_eq!(errs, vec!["t3: shape [2, 0, 2] has a zero dimension"]);
    }

    #[test]
    fn total_elements_are_capped() {
        let errs = errors(|p| {
            let big = TensorInfo {
                shape: vec![1 << 26],
                ..p.public.tensors[0].clone()
            };
            p.public.tensors.extend(std::iter::repeat_n(big, 4));
        });
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].ends_with("tensor elements in all exceed the limit of 268435456 per plan"),
            "{errs:?}"
        );
    }

    #[test]
    fn too_much_work_per_layer_is_rejected() {
        // A 1×1 convolution from 2^13 to 2^13 channels on a 32×64 map: 2^24 outputs of 2^13
        // multiply-accumulates each, 2^37 in all.
        let mut b = crate::reference::testutil::PlanBuilder::new(&[1 << 13, 32, 64], (-1, 1));
        let shape = crate::plan::ConvShape {
            in_channels: 1 << 13,
            in_hw: [32, 64],
            out_channels: 1 << 13,
            kernel: [1, 1],
            stride: [1, 1],
            pads: [0; 4],
            groups: 1,
        };
        let op = Op::Conv(crate::reference::testutil::linear(shape, 20, None));
        let y = b.layer(op, &[b.input()], &[1 << 13, 32, 64], (-1, 1));
        let Err(PlanError::Invalid(errs)) = b.build(y) else {
            panic!("accepted")
        };
        assert_eq!(
            errs,
            vec![
                "l0 (l0): 137438953472 multiply-accumulates exceed the limit of 68719476736 per layer",
                "0 weight entries for 1 linear layers",
            ]
        );
    }

    #[test]
    fn missing_ids_are_rejected() {
        assert_eq!(
            errors(|p| p.public.layers[4].output = TensorId(99)),
            vec![
                "l4 (l4): refers to a missing tensor",
                "l5 (l5): input t5 is not computed before it",
            ]
        );
        assert_eq!(
            errors(|p| p.public.input.tensor = TensorId(77))[0],
            "input refers to missing tensor t77"
        );
    }

    #[test]
    fn weight_counts_and_types_are_checked() {
        let errs = errors(|p| p.weights.as_mut().unwrap().layers[0].1.weights.push(0));
        assert_eq!(errs, vec!["l0: 37 weights, 2 biases; expected 36, 2"]);
        let errs = errors(|p| {
            let Op::Conv(l) = &mut p.public.layers[0].op else {
                unreachable!()
            };
            l.requant.as_mut().map(|r| r.multipliers.pop());
        });
        assert_eq!(errs, vec!["l0 (l0): shapes do not fit the conv operation"]);
        let errs = errors(|p| p.weights.as_mut().unwrap().layers[1].1.weights[0] = 128);
        assert_eq!(errs, vec!["l4: weight 128 does not fit i8"]);
        let errs = errors(|p| p.weights.as_mut().unwrap().layers.swap(0, 1));
        assert_eq!(
            errs,
            vec!["weight entries not sorted by layer (l4 before l0)"]
        );
        let errs = errors(|p| {
            p.weights
                .as_mut()
                .unwrap()
                .layers
                .pop()
                .map(drop)
                .unwrap_or_default()
        });
        assert_eq!(errs, vec!["2 weight entries for 3 linear layers"]);
    }

    #[test]
    fn numeric_parameters_are_checked() {
        let errs = errors(|p| {
            let Op::Conv(l) = &mut p.public.layers[0].op else {
                unreachable!()
            };
            l.acc_bits = 65;
            l.requant.as_mut().unwrap().shift = 64;
            l.protocol.in_ring_bits = 0;
            l.protocol.packing.factor = 0;
            l.protocol.tile.c = usize::MAX;
            p.public.tensors[2].scale = f32::NAN;
            p.public.tensors[2].zero_point = 1 << 40;
        });
        assert_eq!(
            errs,
            vec![
                "t2: zero point 1099511627776 does not fit i32",
                "t2: scale NaN is not a positive finite number",
                "l0 (l0): shift 64 is not below 64",
                "l0 (l0): accumulator width 65 outside 1..=64",
                format!(
                    "l0 (l0): tile Tile {{ c: {}, h: 1, w: 1, m: 1 }} does not fit N = 4096",
                    usize::MAX
                )
                .as_str(),
                "l0 (l0): input ring of 0 bits outside 1..=64",
                "l0 (l0): packing factor 0",
            ]
        );
    }

    #[test]
    fn the_ot_batch_size_is_bounded() {
        for (rots, bad) in [
            (0, true),
            (1, false),
            (MAX_OT_BATCH_ROTS, false),
            (1 << 30, true),
        ] {
            let errs = {
                let mut plan = every_op_plan();
                plan.public.protocol.ot_batch_rots = rots;
                plan.public.protocol.chunk_rots = default_chunk_rots(rots);
                match validate(&plan) {
                    Err(PlanError::Invalid(errs)) => errs,
                    _ => Vec::new(),
                }
            };
            assert_eq!(!errs.is_empty(), bad, "{rots}: {errs:?}");
        }
    }

    #[test]
    fn the_chunk_bound_holds_a_batch_and_is_bounded() {
        let batch = every_op_plan().public.protocol.ot_batch_rots;
        for (rots, bad) in [
            (0, true),
            (batch - 1, true),
            (batch, false),
            (MAX_CHUNK_ROTS, false),
            (MAX_CHUNK_ROTS + 1, true),
        ] {
            let errs = {
                let mut plan = every_op_plan();
                plan.public.protocol.chunk_rots = rots;
                match validate(&plan) {
                    Err(PlanError::Invalid(errs)) => errs,
                    _ => Vec::new(),
                }
            };
            assert_eq!(!errs.is_empty(), bad, "{rots}: {errs:?}");
        }
    }

    #[test]
    fn a_tie_window_must_fit_the_shift() {
        let errs = errors(|p| {
            let Op::Conv(l) = &mut p.public.layers[0].op else {
                unreachable!()
            };
            let r = l.requant.as_mut().unwrap();
            r.rounding = Rounding::HalfEvenWithin(1 << (r.shift - 1));
        });
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("l0 (l0): tie window"), "{errs:?}");
        let mut plan = every_op_plan();
        let Op::Conv(l) = &mut plan.public.layers[0].op else {
            unreachable!()
        };
        let r = l.requant.as_mut().unwrap();
        r.rounding = Rounding::HalfEvenWithin((1 << (r.shift - 1)) - 1);
        assert!(validate(&plan).is_ok());
    }

    #[test]
    fn concat_needs_equal_trailing_dimensions() {
        let errs = errors(|p| p.public.tensors[6].shape = vec![2, 8]);
        assert_eq!(
            errs,
            vec!["l5 (l5): shapes do not fit the concat operation"]
        );
    }
}
