//! Stable text form of a layer graph: one line per tensor the layers produce, in
//! [`LayerGraph::order`], with layer ids as the plan will number them, then the output and
//! the client-side epilogue (if any). Used in snapshots and error messages; never prints
//! weights.

use super::{AccBits, LayerGraph, LayerOp, LinearShape, TensorId, TensorInfo};
use std::fmt::Write;

fn acc(a: Option<AccBits>) -> String {
    a.map_or_else(|| "?".into(), |a| format!("{}/{}", a.sound, a.naive))
}

fn tensor(t: TensorId, f: &TensorInfo) -> String {
    format!(
        "{t}:{}{:?} zp={} s={:e} r=[{}, {}]",
        f.ty, f.shape, f.zero_point, f.scale, f.range.0, f.range.1
    )
}

/// Prints the graph.
pub fn print(g: &LayerGraph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "graph {}", g.name);
    let _ = writeln!(
        out,
        "input {} {}",
        g.input.name,
        tensor(g.input.tensor, g.tensor(g.input.tensor))
    );
    match g.order() {
        None => out.push_str("<cycle>\n"),
        Some(order) => {
            for (i, n) in order.into_iter().enumerate() {
                let l = g.layer(n);
                let ins: Vec<String> = l.inputs.iter().map(ToString::to_string).collect();
                let detail = match &l.op {
                    LayerOp::Linear(c) => {
                        let shape = match &c.shape {
                            LinearShape::Conv(s) => format!(
                                " kernel={:?} stride={:?} pads={:?} groups={}",
                                s.kernel, s.stride, s.pads, s.groups
                            ),
                            LinearShape::MatMul(s) => {
                                format!(" {}x{}x{}", s.rows, s.inner, s.cols)
                            }
                            LinearShape::Affine(_) => String::new(),
                        };
                        let rq = c
                            .requant
                            .as_ref()
                            .map(|r| format!(" shift={} clamp={:?}", r.shift, r.clamp))
                            .unwrap_or_default();
                        format!(" w={}{shape} acc={}{rq}", c.weight_ty, acc(c.acc))
                    }
                    LayerOp::Rescale(r) => format!(
                        " m={:?} shift={} clamp={:?}",
                        r.multipliers, r.shift, r.clamp
                    ),
                    LayerOp::Add(a) => format!(
                        " m=({}, {}) shift={} clamp={:?}",
                        a.m_a, a.m_b, a.shift, a.clamp
                    ),
                    LayerOp::MaxPool(p) => format!(
                        " kernel={:?} stride={:?} pads={:?}",
                        p.kernel, p.stride, p.pads
                    ),
                    LayerOp::AvgPool(a) => format!(
                        " kernel={:?} stride={:?} pads={:?}{} shift={} clamp={:?}",
                        a.pool.kernel,
                        a.pool.stride,
                        a.pool.pads,
                        if a.ceil_pads == [0, 0] {
                            String::new()
                        } else {
                            format!(" ceil_pads={:?}", a.ceil_pads)
                        },
                        a.requant.shift,
                        a.requant.clamp
                    ),
                    LayerOp::Concat | LayerOp::Reshape => String::new(),
                };
                let _ = writeln!(
                    out,
                    "l{i} {} '{}' ({}) -> {}{detail}",
                    l.op.kind(),
                    l.name,
                    ins.join(", "),
                    tensor(l.output, g.tensor(l.output))
                );
            }
        }
    }
    let _ = writeln!(out, "output {} {}", g.output.name, g.output.tensor);
    if let Some(d) = &g.epilogue.dequantize {
        let _ = writeln!(
            out,
            "epilogue dequantize axis={} scales={:?}",
            d.axis, d.scales
        );
    }
    for step in &g.epilogue.steps {
        let _ = writeln!(
            out,
            "epilogue {} '{}' {:?}",
            step.op.kind(),
            step.name,
            step.op
        );
    }
    out
}
