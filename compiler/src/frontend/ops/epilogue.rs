//! Client-side operators: Softmax, ArgMax, TopK and Mul by a public scalar run on the client,
//! in plaintext, after the output is revealed (the plan's epilogue, [`crate::frontend::reveal`]);
//! [`scalar_step`] also serves Add of a public scalar.

use crate::error::{Error, Result};
use crate::frontend::attrs::{attr_int, normalize_axis};
use crate::frontend::context::Ctx;
use crate::frontend::registry::{ONNX, OpDoc, OpRegistry};
use crate::frontend::tensor::{Const, ConstData};
use crate::frontend::unsupported;
use crate::frontend::value::Value;
use heq_runtime::plan::{EpilogueOp, TopKOutput};
use tract_onnx::pb::NodeProto;

/// Where a client-side operator may stand, for every `limits` below.
const AFTER_REVEAL_ONLY: &str = "only after the last secret-dependent tensor (followed by nothing but client-side operators, Identity, Flatten, Reshape, Add of a scalar)";

/// Registers the builders.
pub fn register(r: &mut OpRegistry) {
    r.register_client_side(
        ONNX,
        "Softmax",
        softmax,
        OpDoc {
            becomes: "client-side epilogue: f32 softmax in plaintext after the reveal",
            limits: AFTER_REVEAL_ONLY,
        },
    );
    r.register_client_side(
        ONNX,
        "ArgMax",
        argmax,
        OpDoc {
            becomes: "client-side epilogue: int64 indices in plaintext after the reveal",
            limits: AFTER_REVEAL_ONLY,
        },
    );
    r.register_client_side(
        ONNX,
        "TopK",
        top_k,
        OpDoc {
            becomes: "client-side epilogue: sorted values and int64 indices in plaintext after the reveal",
            limits: AFTER_REVEAL_ONLY,
        },
    );
    r.register_client_side(
        ONNX,
        "Mul",
        mul,
        OpDoc {
            becomes: "client-side epilogue: multiplication by a public scalar in plaintext after the reveal",
            limits: "a scalar constant only (a per-element constant would be a model parameter in the client's plan); only after the last secret-dependent tensor",
        },
    );
}

/// The sample axis (no batch dimension) of an ONNX axis of a value whose sample has
/// `sample_rank` dimensions.
///
/// # Errors
/// An axis out of range, or the batch axis.
fn sample_axis(node: &NodeProto, axis: i64, sample_rank: usize) -> Result<usize> {
    match normalize_axis(node, axis, sample_rank + 1)? {
        0 => Err(unsupported(node, "an operation across the batch dimension")),
        a => Ok(a - 1),
    }
}

/// Reveals input 0 and binds output `o` to it with `op` appended, `op` made from the sample
/// shape of the input.
///
/// # Errors
/// An input that cannot be revealed, or whatever `op` reports.
fn client_op(
    cx: &mut Ctx,
    node: &NodeProto,
    outputs: &[usize],
    op: impl Fn(&[usize]) -> Result<Vec<EpilogueOp>>,
) -> Result<()> {
    let c = cx.client_input(node, 0)?;
    let shape = cx.client_type(node, &c)?.shape;
    for (&o, op) in outputs.iter().zip(op(&shape)?) {
        let v = cx.client_step(node, c.clone(), op)?;
        cx.set_output(node, o, Value::Client(v));
    }
    Ok(())
}

fn softmax(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let opset = cx.opset;
    client_op(cx, node, &[0], |shape| {
        let default = if opset >= 13 { -1 } else { 1 };
        let axis = sample_axis(node, attr_int(node, "axis").unwrap_or(default), shape.len())?;
        // Before opset 13, Softmax normalizes over the flattened block of dims [axis..].
        if opset < 13 && shape[axis + 1..].iter().product::<usize>() != 1 {
            return Err(unsupported(
                node,
                "Softmax before opset 13 over several axes (the flattened trailing block)",
            ));
        }
        Ok(vec![EpilogueOp::Softmax { axis }])
    })
}

fn argmax(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    client_op(cx, node, &[0], |shape| {
        let axis = sample_axis(node, attr_int(node, "axis").unwrap_or(0), shape.len())?;
        Ok(vec![EpilogueOp::ArgMax {
            axis,
            keep_dims: attr_int(node, "keepdims").unwrap_or(1) != 0,
            last_index: attr_int(node, "select_last_index").unwrap_or(0) != 0,
        }])
    })
}

fn top_k(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let k = if cx.opset >= 10 {
        match cx.const_input(node, 1)? {
            Some(c) if c.len() == 1 => c.to_f64()[0],
            _ => return Err(unsupported(node, "K must be a constant of one value")),
        }
    } else {
        attr_int(node, "k").map_or(-1.0, |k| k as f64)
    };
    if !(k >= 1.0 && k.fract() == 0.0 && k <= f64::from(u32::MAX)) {
        return Err(Error::model(
            &node.name,
            &node.op_type,
            format!("K = {k} is not a positive integer"),
        ));
    }
    client_op(cx, node, &[0, 1], |shape| {
        let axis = sample_axis(node, attr_int(node, "axis").unwrap_or(-1), shape.len())?;
        let largest = attr_int(node, "largest").unwrap_or(1) != 0;
        // `sorted = 0` leaves the order unspecified: the sorted order is one of the allowed.
        Ok([TopKOutput::Values, TopKOutput::Indices]
            .map(|output| EpilogueOp::TopK {
                axis,
                k: k as usize,
                largest,
                output,
            })
            .to_vec())
    })
}

fn mul(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    scalar_step(cx, node, EpilogueOp::Mul)
}

/// The constant operand of a binary node and the index of the other one, if exactly one
/// operand is a constant.
pub(crate) fn constant_operand(cx: &Ctx, node: &NodeProto) -> Result<Option<(usize, Value)>> {
    let (a, b) = (cx.required(node, 0)?, cx.required(node, 1)?);
    let is_const = |v: &Value| matches!(v, Value::Const(_) | Value::ConstReal(_));
    Ok(match (is_const(&a), is_const(&b)) {
        (false, true) => Some((0, b)),
        (true, false) => Some((1, a)),
        _ => None,
    })
}

/// A binary node (Mul, Add) of a value and a public scalar: reveals the value and appends
/// `make(c)`.
///
/// # Errors
/// No constant operand, a constant that is not one float value repeated (a per-element
/// constant would be a model parameter in the client's plan) or that broadcasts to a larger
/// shape, or a value that cannot be revealed.
pub(crate) fn scalar_step(
    cx: &mut Ctx,
    node: &NodeProto,
    make: fn(f32) -> EpilogueOp,
) -> Result<()> {
    let Some((operand, constant)) = constant_operand(cx, node)? else {
        return Err(unsupported(
            node,
            "only a value and a constant scalar (after the reveal)",
        ));
    };
    let c = cx.client_input(node, operand)?;
    let shape = cx.client_type(node, &c)?.shape;
    let value = scalar(node, &constant, &shape)?;
    let v = cx.client_step(node, c, make(value))?;
    cx.set_output(node, 0, Value::Client(v));
    Ok(())
}

/// The value of a constant whose elements are all the same float and which broadcasts to
/// `[N, ...shape]` without enlarging it.
fn scalar(node: &NodeProto, constant: &Value, shape: &[usize]) -> Result<f32> {
    let (dims, values): (&[usize], Vec<f64>) = match constant {
        Value::Const(
            c @ Const {
                data: ConstData::Float(_),
                ..
            },
        ) => (&c.dims, c.to_f64()),
        Value::ConstReal(q) => (&q.dims, (0..q.values.len()).map(|i| q.real(i)).collect()),
        _ => return Err(unsupported(node, "the constant is not a float tensor")),
    };
    // Right-aligned against [N, ...shape]; the batch position must be 1.
    let full: Vec<usize> = std::iter::once(1).chain(shape.iter().copied()).collect();
    let fits = dims.len() <= full.len()
        && dims
            .iter()
            .rev()
            .zip(full.iter().rev())
            .all(|(&d, &f)| d == 1 || d == f);
    if !fits {
        return Err(unsupported(
            node,
            &format!("a constant of shape {dims:?} broadcasts beyond the value's shape"),
        ));
    }
    let first = values.first().map(|&v| v as f32);
    match first {
        Some(v) if v.is_finite() && values.iter().all(|&x| x as f32 == v) => Ok(v),
        _ => Err(unsupported(
            node,
            "after the reveal, only a constant scalar: a per-element constant would be a model parameter in the client's plan",
        )),
    }
}
