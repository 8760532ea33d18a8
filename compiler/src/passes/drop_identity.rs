//! `DropIdentity`: removes layers that do not change the values they pass on.
//!
//! - a `Reshape` whose output has its input's shape;
//! - a `Reshape` fed by another `Reshape` that nothing else reads (the first one goes);
//! - a `Rescale` whose multiplier is exactly `2^k`, whose clamp holds its input's whole range
//!   and whose output has the input's scale, zero point and type (a Q→DQ→Q with equal
//!   parameters).

use super::Pass;
use crate::error::Result;
use crate::ir::{LayerGraph, LayerOp};

/// Identity removal.
pub struct DropIdentity;

fn is_identity(g: &LayerGraph, n: petgraph::stable_graph::NodeIndex) -> bool {
    let l = g.layer(n);
    let (i, o) = (g.tensor(l.inputs[0]), g.tensor(l.output));
    let same_quant = i.scale == o.scale && i.zero_point == o.zero_point && i.ty == o.ty;
    match &l.op {
        LayerOp::Reshape => {
            i.shape == o.shape
                || g.producer(l.inputs[0]).is_some_and(|p| {
                    matches!(g.layer(p).op, LayerOp::Reshape)
                        && g.consumers(l.inputs[0]).len() == 1
                        && l.inputs[0] != g.output.tensor
                })
        }
        LayerOp::Rescale(r) => {
            same_quant
                && r.shift < 63
                && r.multipliers.iter().all(|&m| m == 1i64 << r.shift)
                && r.clamp.0 <= i.range.0
                && i.range.1 <= r.clamp.1
        }
        _ => false,
    }
}

impl Pass for DropIdentity {
    fn name(&self) -> &'static str {
        "drop_identity"
    }

    fn run(&mut self, g: &mut LayerGraph) -> Result<bool> {
        let mut changed = false;
        loop {
            let Some(order) = g.order() else {
                return Ok(changed);
            };
            let Some(n) = order.into_iter().find(|&n| is_identity(g, n)) else {
                return Ok(changed);
            };
            let l = g.layer(n).clone();
            if matches!(l.op, LayerOp::Reshape)
                && g.tensor(l.inputs[0]).shape != g.tensor(l.output).shape
            {
                // Reshape of a reshape: the first one goes, this one reads its input.
                let p = g
                    .producer(l.inputs[0])
                    .expect("is_identity checked the producer");
                g.bypass(p);
            } else {
                g.bypass(n);
            }
            changed = true;
        }
    }
}
