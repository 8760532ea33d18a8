//! Add (QDQ: two dequantized tensors, or a linear layer plus a constant bias; after the reveal,
//! a public scalar on the client) and com.microsoft QLinearAdd.

use crate::error::{Error, Result};
use crate::frontend::context::Ctx;
use crate::frontend::ops::conv::{dq_operand, q_result};
use crate::frontend::ops::epilogue::scalar_step;
use crate::frontend::registry::{MICROSOFT, ONNX, OpDoc, OpRegistry};
use crate::frontend::unsupported;
use crate::frontend::value::{Pending, PendingOp, RealClamp, Value};
use crate::frontend::weights::bias_acc;
use heq_runtime::plan::EpilogueOp;
use tract_onnx::pb::NodeProto;

/// Registers the builders.
pub fn register(r: &mut OpRegistry) {
    r.register(
        ONNX,
        "Add",
        add,
        OpDoc {
            becomes: "residual add of two quantized tensors: scale alignment by exact OT rescaling, then local add and requantization; a constant added to a linear output is folded into its bias; a scalar added to a dequantized output runs in the client-side epilogue",
            limits: "no broadcasting",
        },
    );
    r.register(
        MICROSOFT,
        "QLinearAdd",
        qlinear_add,
        OpDoc {
            becomes: "as a QDQ Add",
            limits: "as Add",
        },
    );
}

fn add_values(cx: &Ctx, node: &NodeProto, a: Value, b: Value) -> Result<Value> {
    match (a, b) {
        (Value::Real(a), Value::Real(b)) => {
            let (fa, fb) = (cx.graph.tensor(a), cx.graph.tensor(b));
            if fa.shape != fb.shape {
                return Err(unsupported(
                    node,
                    &format!("broadcasting add of {:?} and {:?}", fa.shape, fb.shape),
                ));
            }
            Ok(Value::Pending(Pending {
                op: PendingOp::Add(a, b),
                shape: fa.shape.clone(),
                clamp: RealClamp::default(),
                names: vec![node.name.clone()],
            }))
        }
        (
            Value::Pending(Pending {
                op: PendingOp::Linear(mut d),
                shape,
                clamp,
                mut names,
            }),
            c @ (Value::Const(_) | Value::ConstReal(_)),
        )
        | (
            c @ (Value::Const(_) | Value::ConstReal(_)),
            Value::Pending(Pending {
                op: PendingOp::Linear(mut d),
                shape,
                clamp,
                mut names,
            }),
        ) if clamp.is_none() => {
            let extra = bias_acc(node, Some(c), &d.acc_scale)?;
            for (b, e) in d.bias.iter_mut().zip(extra) {
                *b = b
                    .checked_add(e)
                    .ok_or_else(|| Error::model(&node.name, &node.op_type, "bias overflow"))?;
            }
            names.push(node.name.clone());
            Ok(Value::Pending(Pending {
                op: PendingOp::Linear(d),
                shape,
                clamp,
                names,
            }))
        }
        _ => Err(unsupported(
            node,
            "Add of values that are not two dequantized tensors",
        )),
    }
}

/// Whether an Add is a client-side step: a constant added to a client value or a dequantized
/// tensor, or to a linear layer's output when it is not one bias per output channel.
fn adds_on_client(a: &Value, b: &Value) -> bool {
    let (x, constant_len) = match (a, b) {
        (Value::Const(c), x) | (x, Value::Const(c)) => (x, c.len()),
        (Value::ConstReal(q), x) | (x, Value::ConstReal(q)) => (x, q.values.len()),
        _ => return false,
    };
    match x {
        Value::Client(_) | Value::Real(_) => true,
        Value::Pending(Pending {
            op: PendingOp::Linear(d),
            ..
        }) => constant_len != d.acc_scale.len(),
        _ => false,
    }
}

fn add(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let (a, b) = (cx.required(node, 0)?, cx.required(node, 1)?);
    if adds_on_client(&a, &b) {
        return scalar_step(cx, node, EpilogueOp::Add);
    }
    let v = add_values(cx, node, a, b)?;
    cx.set_output(node, 0, v);
    Ok(())
}

fn qlinear_add(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let a = dq_operand(cx, node, 0, 1, 2, None)?;
    let b = dq_operand(cx, node, 3, 4, 5, None)?;
    let v = add_values(cx, node, a, b)?;
    q_result(cx, node, v, 6, 7)
}
