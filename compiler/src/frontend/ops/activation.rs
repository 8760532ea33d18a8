//! Relu and Clip: fused into the clamp of the pending computation they follow; a Clip on an
//! integer tensor (QCDQ: QuantizeLinear → Clip → DequantizeLinear) narrows its type.

use crate::error::{Error, Result};
use crate::frontend::attrs::attr_float;
use crate::frontend::context::Ctx;
use crate::frontend::registry::{ONNX, OpDoc, OpRegistry};
use crate::frontend::tensor::{Const, ConstData};
use crate::frontend::unsupported;
use crate::frontend::value::{Pending, PendingOp, RealClamp, Value};
use crate::frontend::weights::type_for_range;
use heq_runtime::plan::IntType;
use tract_onnx::pb::NodeProto;

/// Registers the builders.
pub fn register(r: &mut OpRegistry) {
    r.register(
        ONNX,
        "Relu",
        relu,
        OpDoc {
            becomes: "clamp at zero fused into the producer's requantization (OT ReLU)",
            limits: "only on a dequantized tensor or a pending computation",
        },
    );
    r.register(
        ONNX,
        "Clip",
        clip,
        OpDoc {
            becomes: "clamp fused into the requantization (OT clamp; only bindable bounds compared); in QCDQ (Quantize → Clip → Dequantize) the bounds set the bit width",
            limits: "bounds must be constant scalars",
        },
    );
}

fn relu(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let x = cx.required(node, 0)?;
    let v = clamp_real(
        cx,
        node,
        x,
        RealClamp {
            lo: Some(0.0),
            hi: None,
        },
    )?;
    cx.set_output(node, 0, v);
    Ok(())
}

/// Applies a real clamp to a pending computation or a dequantized tensor.
fn clamp_real(cx: &Ctx, node: &NodeProto, x: Value, c: RealClamp) -> Result<Value> {
    match x {
        Value::Pending(mut p) => {
            p.clamp = p.clamp.and(c);
            p.names.push(node.name.clone());
            Ok(Value::Pending(p))
        }
        Value::Real(t) => Ok(Value::Pending(Pending {
            op: PendingOp::Clamp(t),
            shape: cx.graph.tensor(t).shape.clone(),
            clamp: c,
            names: vec![node.name.clone()],
        })),
        _ => Err(unsupported(
            node,
            "activation of a value that is neither dequantized nor pending",
        )),
    }
}

fn clip(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let x = cx.required(node, 0)?;
    let bound = |i: usize, attr: &str| -> Result<Option<f64>> {
        if cx.opset < 11 {
            return Ok(attr_float(node, attr).map(f64::from));
        }
        match cx.const_input(node, i)? {
            None => Ok(None),
            Some(c) if c.len() == 1 => Ok(c.to_f64().first().copied()),
            Some(_) => Err(Error::model(
                &node.name,
                &node.op_type,
                "clip bounds must be scalars",
            )),
        }
    };
    let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
    // Integer bounds within the type of a quantized value; an empty interval is refused.
    let int_bounds = |ty: IntType| -> Result<(i64, i64)> {
        let l = lo.map_or(ty.min(), |v| v as i64).max(ty.min());
        let h = hi.map_or(ty.max(), |v| v as i64).min(ty.max());
        if l > h {
            Err(unsupported(node, "the clip leaves no representable value"))
        } else {
            Ok((l, h))
        }
    };
    let v = match x {
        Value::Quant(t) => {
            let (lo, hi) = int_bounds(cx.graph.tensor(t).ty)?;
            cx.clip_quant(node, t, lo, hi, type_for_range(lo, hi))?
        }
        Value::ConstQuant(mut c) => {
            let (lo, hi) = int_bounds(c.ty)?;
            for v in &mut c.values {
                *v = (*v).clamp(lo, hi);
            }
            c.ty = type_for_range(lo, hi);
            Value::ConstQuant(c)
        }
        Value::Const(Const {
            dims,
            data: ConstData::Int { ty, values },
        }) => {
            let (lo, hi) = int_bounds(ty)?;
            let values = values.iter().map(|v| (*v).clamp(lo, hi)).collect();
            Value::Const(Const {
                dims,
                data: ConstData::Int {
                    ty: type_for_range(lo, hi),
                    values,
                },
            })
        }
        x => clamp_real(
            cx,
            node,
            x,
            RealClamp {
                lo: lo.map(|v| v as f32),
                hi: hi.map(|v| v as f32),
            },
        )?,
    };
    cx.set_output(node, 0, v);
    Ok(())
}
