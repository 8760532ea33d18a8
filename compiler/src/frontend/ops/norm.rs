//! BatchNormalization: folded into the linear layer it follows (per-channel scale of the
//! requantization multiplier, shift of the bias rounded to accumulator units), or, on a
//! dequantized tensor, a stand-alone per-channel `Affine` layer.

use crate::error::{Error, Result};
use crate::frontend::attrs::attr_float;
use crate::frontend::context::Ctx;
use crate::frontend::registry::{ONNX, OpDoc, OpRegistry};
use crate::frontend::unsupported;
use crate::frontend::value::{LinearDraft, Pending, PendingOp, RealClamp, Value};
use crate::ir::LinearShape;
use heq_runtime::plan::{AffineShape, IntType};
use tract_onnx::pb::NodeProto;

/// Weight of a stand-alone BatchNormalization channel whose scale is a float: `±2^14`, the
/// accumulator step then being `|a_c|·s_x / 2^14`.
const AFFINE_ONE: i32 = 1 << 14;

/// Registers the builders.
pub fn register(r: &mut OpRegistry) {
    r.register(
        ONNX,
        "BatchNormalization",
        batch_norm,
        OpDoc {
            becomes: "folded into the preceding Conv/Gemm; stand-alone: a per-channel HE affine layer",
            limits: "constant parameters; not after a fused activation",
        },
    );
}

/// Real values of a per-channel parameter (float constant or dequantized constant).
fn real_param(node: &NodeProto, v: Option<&Value>, c: usize) -> Result<Vec<f64>> {
    let vals = match v {
        Some(Value::Const(k)) => k.to_f64(),
        Some(Value::ConstReal(q)) => (0..q.values.len()).map(|i| q.real(i)).collect(),
        _ => {
            return Err(unsupported(
                node,
                "BatchNormalization parameters must be constants",
            ));
        }
    };
    if vals.len() != c {
        return Err(Error::model(
            &node.name,
            &node.op_type,
            format!("{} parameter values for {c} channels", vals.len()),
        ));
    }
    Ok(vals)
}

fn batch_norm(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let x = cx.required(node, 0)?;
    let c = match &x {
        Value::Pending(Pending {
            op: PendingOp::Linear(d),
            ..
        }) => d.acc_scale.len(),
        Value::Real(t) => cx.graph.tensor(*t).shape.first().copied().unwrap_or(0),
        _ => {
            return Err(unsupported(
                node,
                "BatchNormalization of a value that is neither dequantized nor a linear layer",
            ));
        }
    };
    let eps = f64::from(attr_float(node, "epsilon").unwrap_or(1e-5));
    let gamma = real_param(node, cx.input(node, 1)?, c)?;
    let beta = real_param(node, cx.input(node, 2)?, c)?;
    let mean = real_param(node, cx.input(node, 3)?, c)?;
    let var = real_param(node, cx.input(node, 4)?, c)?;
    let a: Vec<f64> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    let b: Vec<f64> = (0..c).map(|i| beta[i] - mean[i] * a[i]).collect();
    if a.iter().any(|a| !a.is_finite() || *a == 0.0) || b.iter().any(|b| !b.is_finite()) {
        return Err(unsupported(
            node,
            "a zero or non-finite BatchNormalization scale",
        ));
    }
    let to_acc = |b: f64, s: f64| -> Result<i64> {
        let v = (b / s).round();
        if v.abs() < 2f64.powi(62) {
            Ok(v as i64)
        } else {
            Err(unsupported(node, "BatchNormalization bias out of range"))
        }
    };
    let v = match x {
        Value::Pending(Pending {
            op: PendingOp::Linear(mut d),
            shape,
            clamp,
            mut names,
        }) if clamp.is_none() => {
            for i in 0..c {
                d.acc_scale[i] *= a[i];
                d.bias[i] = d.bias[i]
                    .checked_add(to_acc(b[i], d.acc_scale[i])?)
                    .ok_or_else(|| unsupported(node, "BatchNormalization bias out of range"))?;
            }
            names.push(node.name.clone());
            Value::Pending(Pending {
                op: PendingOp::Linear(d),
                shape,
                clamp,
                names,
            })
        }
        Value::Real(t) => {
            let fact = cx.graph.tensor(t).clone();
            let sx = f64::from(fact.scale);
            let (weights, weight_ty, acc_scale): (Vec<i32>, IntType, Vec<f64>) =
                match cx.input(node, 1)? {
                    Some(Value::ConstReal(q))
                        if q.zero_point.iter().all(|&z| z == 0)
                            && q.values.iter().all(|v| v.abs() < 1 << 15) =>
                    {
                        // The quantized gamma, scaled up to 15 bits: the finer accumulator step
                        // makes the bias (rounded to accumulator units) as exact as the float BN.
                        let max = q
                            .values
                            .iter()
                            .map(|v| v.unsigned_abs())
                            .max()
                            .unwrap_or(1)
                            .max(1);
                        let f = 1i64 << (15 - (64 - max.leading_zeros())).min(15);
                        let w: Vec<i32> = q.values.iter().map(|&v| (v * f) as i32).collect();
                        let s = (0..c).map(|i| sx * a[i] / f64::from(w[i])).collect();
                        (
                            w,
                            IntType {
                                bits: 16,
                                signed: true,
                            },
                            s,
                        )
                    }
                    _ => {
                        let w = a
                            .iter()
                            .map(|a| if *a > 0.0 { AFFINE_ONE } else { -AFFINE_ONE })
                            .collect();
                        (
                            w,
                            IntType {
                                bits: 16,
                                signed: true,
                            },
                            a.iter()
                                .map(|a| sx * a.abs() / f64::from(AFFINE_ONE))
                                .collect(),
                        )
                    }
                };
            let bias = (0..c)
                .map(|i| to_acc(b[i], acc_scale[i]))
                .collect::<Result<Vec<_>>>()?;
            let per_channel = fact.shape[1..].iter().product();
            Value::Pending(Pending {
                op: PendingOp::Linear(LinearDraft {
                    shape: LinearShape::Affine(AffineShape {
                        channels: c,
                        per_channel,
                    }),
                    input: t,
                    weights,
                    weight_ty,
                    bias,
                    acc_scale,
                }),
                shape: fact.shape.clone(),
                clamp: RealClamp::default(),
                names: vec![node.name.clone()],
            })
        }
        _ => {
            return Err(unsupported(
                node,
                "BatchNormalization after a fused activation",
            ));
        }
    };
    cx.set_output(node, 0, v);
    Ok(())
}
