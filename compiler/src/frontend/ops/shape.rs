//! Identity, Flatten, Reshape, Concat and com.microsoft QLinearConcat. Shape changes keep the
//! values and the quantization (after the reveal, they are client-side reshapes); a
//! concatenation of differently quantized inputs rescales them first.

use crate::error::{Error, Result};
use crate::frontend::attrs::{attr_int, normalize_axis};
use crate::frontend::context::Ctx;
use crate::frontend::ops::conv::{dq_operand, q_result};
use crate::frontend::registry::{MICROSOFT, ONNX, OpDoc, OpRegistry};
use crate::frontend::unsupported;
use crate::frontend::value::{Pending, PendingOp, RealClamp, Value};
use crate::ir::{LayerOp, TensorId};
use heq_runtime::plan::EpilogueOp;
use tract_onnx::pb::NodeProto;

/// Registers the builders.
pub fn register(r: &mut OpRegistry) {
    r.register(
        ONNX,
        "Identity",
        identity,
        OpDoc {
            becomes: "nothing (the value passes on)",
            limits: "-",
        },
    );
    r.register(
        ONNX,
        "Flatten",
        flatten,
        OpDoc {
            becomes: "layout only (no protocol step; after the reveal, a client-side reshape)",
            limits: "not across the batch dimension",
        },
    );
    r.register(
        ONNX,
        "Reshape",
        reshape,
        OpDoc {
            becomes: "layout only (no protocol step; after the reveal, a client-side reshape)",
            limits: "not across the batch dimension",
        },
    );
    r.register(
        ONNX,
        "Concat",
        concat,
        OpDoc {
            becomes: "channel concatenation of shares (local), requantized to a common scale when needed",
            limits: "channel axis only",
        },
    );
    r.register(
        MICROSOFT,
        "QLinearConcat",
        qlinear_concat,
        OpDoc {
            becomes: "as Concat",
            limits: "as Concat",
        },
    );
}

/// An integer tensor (dequantized or not) and whether it is the dequantized view.
fn int_tensor(node: &NodeProto, x: &Value) -> Result<(TensorId, bool)> {
    match x {
        Value::Real(t) => Ok((*t, true)),
        Value::Quant(t) => Ok((*t, false)),
        _ => Err(unsupported(
            node,
            "a shape operation on a value that is not an integer tensor",
        )),
    }
}

fn identity(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let x = cx.required(node, 0)?;
    cx.set_output(node, 0, x);
    Ok(())
}

/// The sample shape of a value a shape operation reads: an integer tensor, a float
/// computation or a client value.
fn sample_shape(cx: &Ctx, node: &NodeProto, x: &Value) -> Result<Vec<usize>> {
    match x {
        Value::Pending(p) => Ok(p.shape.clone()),
        Value::Client(c) => Ok(cx.client_type(node, c)?.shape),
        x => int_tensor(node, x).map(|(t, _)| cx.graph.tensor(t).shape.clone()),
    }
}

/// Binds the node's output to `x` with the sample shape `shape`: a `Reshape` layer on an
/// integer tensor, a client-side reshape after the reveal.
fn emit_reshape(cx: &mut Ctx, node: &NodeProto, x: &Value, shape: Vec<usize>) -> Result<()> {
    if matches!(x, Value::Pending(_) | Value::Client(_)) {
        let c = cx.client_input(node, 0)?;
        let c = cx.client_step(node, c, EpilogueOp::Reshape(shape))?;
        cx.set_output(node, 0, Value::Client(c));
        return Ok(());
    }
    let (t, real) = int_tensor(node, x)?;
    if shape.iter().product::<usize>() != cx.graph.tensor(t).len() {
        return Err(Error::model(
            &node.name,
            &node.op_type,
            format!("cannot reshape {:?} to {shape:?}", cx.graph.tensor(t).shape),
        ));
    }
    let out = cx.layer_like(&node.name, LayerOp::Reshape, vec![t], t, shape);
    cx.graph.tensor_mut(out).name = node.output.first().cloned().unwrap_or_default();
    cx.set_output(
        node,
        0,
        if real {
            Value::Real(out)
        } else {
            Value::Quant(out)
        },
    );
    Ok(())
}

fn flatten(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let x = cx.required(node, 0)?;
    let sample = sample_shape(cx, node, &x)?;
    // ONNX axis in [-r, r] over the full rank r (batch included).
    let rank = sample.len() as i64 + 1;
    let a = attr_int(node, "axis").unwrap_or(1);
    let axis = if a < 0 { a + rank } else { a };
    if !(1..=rank).contains(&axis) {
        return Err(unsupported(node, "Flatten across the batch dimension"));
    }
    let axis = axis as usize;
    let outer: usize = sample[..axis - 1].iter().product();
    let inner: usize = sample[axis - 1..].iter().product();
    let shape = if axis == 1 {
        vec![inner]
    } else {
        vec![outer, inner]
    };
    emit_reshape(cx, node, &x, shape)
}

fn reshape(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let x = cx.required(node, 0)?;
    let sample = sample_shape(cx, node, &x)?;
    let target: Vec<i64> = match cx.const_input(node, 1)? {
        Some(c) => c.to_f64().iter().map(|&v| v as i64).collect(),
        None => {
            return Err(Error::model(
                &node.name,
                &node.op_type,
                "missing target shape",
            ));
        }
    };
    let allow_zero = attr_int(node, "allowzero").unwrap_or(0) != 0;
    let mut full = vec![1usize];
    full.extend(sample);
    let total: usize = full.iter().product();
    let mut shape = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            0 if !allow_zero => shape.push(*full.get(i).ok_or_else(|| {
                Error::model(&node.name, &node.op_type, "0 beyond the input rank")
            })?),
            -1 if infer.is_none() => {
                infer = Some(i);
                shape.push(1);
            }
            d if d >= 0 => shape.push(d as usize),
            _ => {
                return Err(Error::model(
                    &node.name,
                    &node.op_type,
                    format!("invalid target shape {target:?}"),
                ));
            }
        }
    }
    let known: usize = shape.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(Error::model(
                &node.name,
                &node.op_type,
                format!("cannot infer a dimension of {target:?}"),
            ));
        }
        shape[i] = total / known;
    }
    if shape.first() != Some(&1) {
        return Err(unsupported(node, "Reshape across the batch dimension"));
    }
    emit_reshape(cx, node, &x, shape[1..].to_vec())
}

/// Concatenates real or integer tensors along the channel axis.
fn concat_values(cx: &mut Ctx, node: &NodeProto, xs: Vec<Value>, axis: i64) -> Result<Value> {
    let mut ts = Vec::with_capacity(xs.len());
    let mut reals = 0;
    for x in &xs {
        let (t, real) = int_tensor(node, x)?;
        ts.push(t);
        reals += usize::from(real);
    }
    let first = cx
        .graph
        .tensor(
            *ts.first()
                .ok_or_else(|| Error::model(&node.name, &node.op_type, "no inputs"))?,
        )
        .clone();
    if normalize_axis(node, axis, first.shape.len() + 1)? != 1 {
        return Err(unsupported(
            node,
            "concatenation along an axis other than the channels",
        ));
    }
    let mut channels = 0;
    for t in &ts {
        let f = cx.graph.tensor(*t);
        if f.shape.get(1..) != first.shape.get(1..) {
            return Err(Error::model(
                &node.name,
                &node.op_type,
                "inputs differ in shape beyond the channel axis",
            ));
        }
        channels += f.shape[0];
    }
    let mut shape = first.shape.clone();
    shape[0] = channels;
    let same = ts.iter().all(|t| {
        let f = cx.graph.tensor(*t);
        f.scale == first.scale && f.zero_point == first.zero_point && f.ty == first.ty
    });
    if same && (reals == 0 || reals == ts.len()) {
        let like = ts[0];
        let out = cx.layer_like(&node.name, LayerOp::Concat, ts, like, shape);
        cx.graph.tensor_mut(out).name = node.output.first().cloned().unwrap_or_default();
        return Ok(if reals == 0 {
            Value::Quant(out)
        } else {
            Value::Real(out)
        });
    }
    if reals != ts.len() {
        return Err(unsupported(
            node,
            "concatenation of integer tensors with different quantizations",
        ));
    }
    Ok(Value::Pending(Pending {
        op: PendingOp::Concat(ts),
        shape,
        clamp: RealClamp::default(),
        names: vec![node.name.clone()],
    }))
}

fn concat(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let xs = (0..node.input.len())
        .map(|i| cx.required(node, i))
        .collect::<Result<Vec<_>>>()?;
    let axis = attr_int(node, "axis")
        .ok_or_else(|| Error::model(&node.name, &node.op_type, "missing axis"))?;
    let v = concat_values(cx, node, xs, axis)?;
    cx.set_output(node, 0, v);
    Ok(())
}

fn qlinear_concat(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    if node.input.len() < 5 || !(node.input.len() - 2).is_multiple_of(3) {
        return Err(Error::model(
            &node.name,
            &node.op_type,
            "inputs are not (Y scale, Y zero point, (X, scale, zero point)...)",
        ));
    }
    let xs = (2..node.input.len())
        .step_by(3)
        .map(|i| dq_operand(cx, node, i, i + 1, i + 2, None))
        .collect::<Result<Vec<_>>>()?;
    let axis = attr_int(node, "axis")
        .ok_or_else(|| Error::model(&node.name, &node.op_type, "missing axis"))?;
    let v = concat_values(cx, node, xs, axis)?;
    q_result(cx, node, v, 0, 1)
}
