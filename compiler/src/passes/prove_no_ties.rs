//! `ProveNoTies`: marks every requantization that provably never meets a rounding tie
//! [`Rounding::NoTies`] (see [`crate::analysis::ties`]); the others stay `HalfEven`. An average
//! pool whose exact quotients tie but whose multipliers cannot divide exactly (a count of 6 at
//! the input's scale) gets multipliers, shift and a tie window that round those quotients to
//! even ([`Rounding::HalfEvenWithin`]). Runs after range analysis, on the final ranges and
//! accumulator widths.

use super::Pass;
use crate::analysis::ties::{max_abs, pool_tie_window, single_term, sum_of_terms};
use crate::error::Result;
use crate::ir::{Layer, LayerGraph, LayerOp, Requant};
use heq_runtime::plan::{AddSpec, Rounding};
use std::collections::BTreeSet;

/// Tie analysis as a pass.
pub struct ProveNoTies;

impl Pass for ProveNoTies {
    fn name(&self) -> &'static str {
        "prove_no_ties"
    }

    fn run(&mut self, g: &mut LayerGraph) -> Result<bool> {
        let mut changed = false;
        for n in g.order().unwrap_or_default() {
            let layer = g.layer(n);
            if let LayerOp::AvgPool(a) = &layer.op
                && let Some(requant) = exact_pool_requant(g, layer, a.requant.shift)
            {
                let LayerOp::AvgPool(a) = &mut g.layer_mut(n).op else {
                    unreachable!("matched above")
                };
                changed |= a.requant != requant;
                a.requant = requant;
                continue;
            }
            let Some(rounding) = proven_rounding(g, layer) else {
                continue;
            };
            let slot = g
                .layer_mut(n)
                .op
                .clamp_and_rounding_mut()
                .map(|(_, rounding)| rounding);
            if let Some(slot) = slot
                && *slot != rounding
            {
                *slot = rounding;
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// The tie rule proven for a requantizing layer's multipliers and shift over its inputs'
/// ranges: [`Rounding::NoTies`] where no tie can occur, else `HalfEven` (`None` for a layer that
/// does not requantize). An average pool's tie window is [`exact_pool_requant`]'s business.
fn proven_rounding(g: &LayerGraph, layer: &Layer) -> Option<Rounding> {
    match &layer.op {
        LayerOp::Linear(l) => proven_requant_rounding(g, layer, l.requant.as_ref()?),
        LayerOp::Rescale(r) => proven_requant_rounding(g, layer, r),
        LayerOp::AvgPool(a) => proven_requant_rounding(g, layer, &a.requant),
        LayerOp::Add(a) => Some(proven_add_rounding(g, layer, a)),
        LayerOp::MaxPool(_) | LayerOp::Concat | LayerOp::Reshape => None,
    }
}

/// The tie rule proven for `r` as the requantization of `layer` (a linear layer, a `Rescale` or
/// an average pool; `None` for other layers and a linear layer before range analysis).
pub(super) fn proven_requant_rounding(
    g: &LayerGraph,
    layer: &Layer,
    r: &Requant,
) -> Option<Rounding> {
    let input = max_abs(g.tensor(layer.inputs[0]).range);
    match &layer.op {
        LayerOp::Linear(l) => l
            .acc
            .map(|acc| single_term(&r.multipliers, r.shift, acc_max_abs(acc.sound))),
        LayerOp::Rescale(_) => Some(single_term(&r.multipliers, r.shift, input)),
        LayerOp::AvgPool(_) => Some(avg_pool_rounding(&r.multipliers, r.shift, input)),
        LayerOp::Add(_) | LayerOp::MaxPool(_) | LayerOp::Concat | LayerOp::Reshape => None,
    }
}

/// The tie rule proven for the residual add `a` on the inputs of `layer`.
pub(super) fn proven_add_rounding(g: &LayerGraph, layer: &Layer, a: &AddSpec) -> Rounding {
    let input = |i: usize| max_abs(g.tensor(layer.inputs[i]).range);
    sum_of_terms(&[(input(0), a.m_a), (input(1), a.m_b)], a.shift)
}

/// The requantization of an average pool `layer` that rounds its exact quotients to nearest,
/// ties to even ([`pool_tie_window`], trying shifts from `start` on), where its scale ratio is
/// a power of two and the plain multipliers would round some ties the wrong way; `None`
/// otherwise (also for a layer that is not an average pool).
pub(super) fn exact_pool_requant(g: &LayerGraph, layer: &Layer, start: u32) -> Option<Requant> {
    let LayerOp::AvgPool(a) = &layer.op else {
        return None;
    };
    let ratio =
        f64::from(g.tensor(layer.inputs[0]).scale) / f64::from(g.tensor(layer.output).scale);
    let x_max_abs = max_abs(g.tensor(layer.inputs[0]).range);
    let e = ratio.log2().round();
    if !(ratio > 0.0 && ratio == e.exp2() && e.abs() < 64.0) {
        return None;
    }
    let counts: Vec<usize> = a
        .window_counts()
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let r = &a.requant;
    let (multipliers, shift, window) =
        pool_tie_window(e as i32, &counts, r.multipliers.len(), x_max_abs, start)?;
    Some(Requant {
        multipliers,
        shift,
        clamp: r.clamp,
        rounding: if window == 0 {
            Rounding::HalfEven
        } else {
            Rounding::HalfEvenWithin(window)
        },
    })
}

/// `|acc| < 2^(bits−1)`.
pub(super) fn acc_max_abs(bits: u32) -> i128 {
    (1i128 << bits.saturating_sub(1).min(126)) - 1
}

/// Average pooling divides the sum of `n` values by `multipliers[n − 1]`.
fn avg_pool_rounding(multipliers: &[i64], shift: u32, x_max_abs: i128) -> Rounding {
    let tie_free = multipliers.iter().zip(1..).all(|(&m, n): (&i64, i128)| {
        single_term(&[m], shift, x_max_abs.saturating_mul(n)) == Rounding::NoTies
    });
    if tie_free {
        Rounding::NoTies
    } else {
        Rounding::HalfEven
    }
}
