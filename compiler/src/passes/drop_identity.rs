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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Layer, Port, TensorId, TensorInfo};
    use heq_runtime::plan::{IntType, Requant};

    #[test]
    fn identity_rescale_and_reshape_chains_go() {
        let u8t = IntType {
            bits: 8,
            signed: false,
        };
        let mut g = LayerGraph::new("g");
        let x = g.add_tensor(TensorInfo::new("x", vec![2, 2, 2], u8t, 0, 0.5));
        let a = g.add_tensor(TensorInfo::new("a", vec![8], u8t, 0, 0.5));
        let b = g.add_tensor(TensorInfo::new("b", vec![2, 4], u8t, 0, 0.5));
        let c = g.add_tensor(TensorInfo::new("c", vec![2, 4], u8t, 0, 0.5));
        g.input = Port {
            name: "x".into(),
            tensor: x,
        };
        g.output = Port {
            name: "c".into(),
            tensor: c,
        };
        g.add_layer(Layer {
            name: "flat".into(),
            op: LayerOp::Reshape,
            inputs: vec![x],
            output: a,
        });
        g.add_layer(Layer {
            name: "view".into(),
            op: LayerOp::Reshape,
            inputs: vec![a],
            output: b,
        });
        let rq = Requant {
            multipliers: vec![1 << 4],
            shift: 4,
            clamp: (0, 255),
            rounding: heq_runtime::plan::Rounding::HalfEven,
        };
        g.add_layer(Layer {
            name: "same".into(),
            op: LayerOp::Rescale(rq),
            inputs: vec![b],
            output: c,
        });
        assert!(DropIdentity.run(&mut g).expect("runs"));
        let order = g.order().expect("acyclic");
        let names: Vec<_> = order
            .iter()
            .map(|&n| (g.layer(n).name.as_str(), g.layer(n).inputs.clone()))
            .collect();
        assert_eq!(names, vec![("view", vec![TensorId(0)])]);
        assert_eq!(g.output.tensor, b);
        assert!(crate::ir::verify::verify(&g).is_empty());
    }
}
