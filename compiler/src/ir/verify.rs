//! IR verifier, run after every pass.
//!
//! Invariants (every violation is reported):
//! - the graph is acyclic and every tensor id a layer or port names exists;
//! - every layer input is the graph input or produced by a layer, and no tensor is produced twice;
//! - the graph output is the graph input or produced by a layer, and the epilogue fits it
//!   (`heq_runtime::plan::Epilogue::output`);
//! - a linear layer has exactly its number of weights and biases, one multiplier per output
//!   channel when it requantizes, and its input/output element counts match its shape;
//! - every clamp is ordered; every tensor range is non-empty;
//! - `Add` has two inputs, `Concat` at least one, everything else exactly one.

use super::{LayerGraph, LayerOp, LinearShape, TensorId};
use std::collections::HashSet;

/// Returns every violated invariant (empty when the graph is well formed).
pub fn verify(g: &LayerGraph) -> Vec<String> {
    let mut errs = Vec::new();
    let n_tensors = g.tensors().len();
    let exists = |t: TensorId| (t.0 as usize) < n_tensors;
    let Some(order) = g.order() else {
        return vec!["the layer graph has a cycle".into()];
    };
    if !exists(g.input.tensor) {
        errs.push(format!(
            "input {} is not a tensor of the graph",
            g.input.tensor
        ));
    }
    let mut produced = HashSet::new();
    for (i, t) in g.tensors().iter().enumerate() {
        if t.range.0 > t.range.1 {
            errs.push(format!("t{i}: empty range {:?}", t.range));
        }
    }
    for &n in &order {
        let l = g.layer(n);
        let at = format!("'{}' ({})", l.name, l.op.kind());
        if !exists(l.output) || l.inputs.iter().any(|t| !exists(*t)) {
            errs.push(format!("{at}: refers to a missing tensor"));
            continue;
        }
        if !produced.insert(l.output) || l.output == g.input.tensor {
            errs.push(format!("{at}: output {} is produced twice", l.output));
        }
        for t in &l.inputs {
            if *t != g.input.tensor && g.producer(*t).is_none() {
                errs.push(format!("{at}: input {t} has no producer"));
            }
        }
        let arity_ok = match l.op {
            LayerOp::Add(_) => l.inputs.len() == 2,
            LayerOp::Concat => !l.inputs.is_empty(),
            _ => l.inputs.len() == 1,
        };
        if !arity_ok {
            errs.push(format!("{at}: {} inputs", l.inputs.len()));
            continue;
        }
        let (in_len, out_len) = (g.tensor(l.inputs[0]).len(), g.tensor(l.output).len());
        let shape_ok = match &l.op {
            LayerOp::Linear(c) => {
                let m = c.shape.out_channels();
                if c.weights.len() != c.shape.weight_len() || c.bias.len() != m {
                    errs.push(format!(
                        "{at}: {} weights and {} biases for {m} channels",
                        c.weights.len(),
                        c.bias.len()
                    ));
                }
                if let Some(r) = &c.requant
                    && (r.multipliers.len() != m || r.clamp.0 > r.clamp.1)
                {
                    errs.push(format!(
                        "{at}: {} multipliers for {m} channels, clamp {:?}",
                        r.multipliers.len(),
                        r.clamp
                    ));
                }
                match &c.shape {
                    LinearShape::Conv(s) => {
                        let [oh, ow] = s.out_hw();
                        in_len == s.in_channels * s.in_hw[0] * s.in_hw[1]
                            && out_len == s.out_channels * oh * ow
                    }
                    LinearShape::MatMul(s) => {
                        in_len == s.rows * s.inner && out_len == s.rows * s.cols
                    }
                    LinearShape::Affine(s) => {
                        in_len == s.channels * s.per_channel && out_len == in_len
                    }
                }
            }
            LayerOp::MaxPool(p)
            | LayerOp::AvgPool(heq_runtime::plan::AvgPoolSpec { pool: p, .. }) => {
                let [oh, ow] = p.out_hw();
                in_len == p.channels * p.in_hw[0] * p.in_hw[1] && out_len == p.channels * oh * ow
            }
            LayerOp::Add(_) => g.tensor(l.inputs[1]).len() == in_len && out_len == in_len,
            LayerOp::Concat => {
                l.inputs.iter().map(|t| g.tensor(*t).len()).sum::<usize>() == out_len
            }
            LayerOp::Rescale(_) | LayerOp::Reshape => in_len == out_len,
        };
        if !shape_ok {
            errs.push(format!("{at}: element counts do not fit the operation"));
        }
        let clamp = match &l.op {
            LayerOp::Rescale(r) => Some(r.clamp),
            LayerOp::Add(a) => Some(a.clamp),
            LayerOp::AvgPool(a) => Some(a.requant.clamp),
            _ => None,
        };
        if let Some((lo, hi)) = clamp
            && lo > hi
        {
            errs.push(format!("{at}: clamp [{lo}, {hi}] is empty"));
        }
    }
    if !exists(g.output.tensor)
        || (g.output.tensor != g.input.tensor && !produced.contains(&g.output.tensor))
    {
        errs.push(format!("output {} is never computed", g.output.tensor));
    }
    if exists(g.output.tensor)
        && let Err(e) = g.epilogue.output(&g.tensor(g.output.tensor).shape)
    {
        errs.push(e);
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Layer, Linear, Port, TensorInfo};
    use heq_runtime::plan::{IntType, MatMulShape};

    #[test]
    fn reports_every_violation() {
        let i8t = IntType {
            bits: 8,
            signed: true,
        };
        let mut g = LayerGraph::new("bad");
        let x = g.add_tensor(TensorInfo::new("x", vec![4], i8t, 0, 1.0));
        let orphan = g.add_tensor(TensorInfo::new("orphan", vec![4], i8t, 0, 1.0));
        let y = g.add_tensor(TensorInfo::new("y", vec![2], i8t, 0, 1.0));
        g.input = Port {
            name: "x".into(),
            tensor: x,
        };
        g.output = Port {
            name: "y".into(),
            tensor: TensorId(9),
        };
        let fc = Linear {
            shape: LinearShape::MatMul(MatMulShape {
                rows: 1,
                inner: 4,
                cols: 2,
            }),
            weight_ty: i8t,
            weights: vec![1; 7],
            bias: vec![0; 2],
            requant: None,
            acc: None,
        };
        g.add_layer(Layer {
            name: "fc".into(),
            op: LayerOp::Linear(fc),
            inputs: vec![orphan],
            output: y,
        });
        assert_eq!(
            verify(&g),
            vec![
                "'fc' (matmul): input t1 has no producer".to_string(),
                "'fc' (matmul): 7 weights and 2 biases for 2 channels".to_string(),
                "output t9 is never computed".to_string(),
            ]
        );
    }
}
