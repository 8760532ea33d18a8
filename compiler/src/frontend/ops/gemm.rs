//! Gemm and MatMul (QDQ), QLinearMatMul, MatMulInteger and com.microsoft QGemm: a dequantized
//! activation times a constant weight matrix.

use crate::error::{Error, Result};
use crate::frontend::attrs::{attr_float, attr_int};
use crate::frontend::context::Ctx;
use crate::frontend::ops::conv::{dq_operand, int_operands, q_result};
use crate::frontend::registry::{MICROSOFT, ONNX, OpDoc, OpRegistry};
use crate::frontend::unsupported;
use crate::frontend::value::{LinearDraft, Pending, PendingOp, RealClamp, Value};
use crate::frontend::weights::{bias_acc, linear_operands, weight_parts};
use crate::ir::LinearShape;
use heq_runtime::plan::MatMulShape;
use tract_onnx::pb::NodeProto;

/// Registers the builders.
pub fn register(r: &mut OpRegistry) {
    r.register(
        ONNX,
        "Gemm",
        gemm,
        OpDoc {
            becomes: "HE fully connected layer; a float output (float head) reveals the accumulator, which the client dequantizes",
            limits: "no transA; beta = 1; constant weights",
        },
    );
    r.register(
        ONNX,
        "MatMul",
        matmul,
        OpDoc {
            becomes: "HE matrix product with a constant weight matrix; a float output (float head) reveals the accumulator, which the client dequantizes",
            limits: "2-D constant weights; no batched weights",
        },
    );
    r.register(
        ONNX,
        "QLinearMatMul",
        qlinear_matmul,
        OpDoc {
            becomes: "HE matrix product + requantization",
            limits: "as MatMul",
        },
    );
    r.register(
        ONNX,
        "MatMulInteger",
        matmul_integer,
        OpDoc {
            becomes: "HE matrix product with an int32 output",
            limits: "as MatMul",
        },
    );
    r.register(
        MICROSOFT,
        "QGemm",
        qgemm,
        OpDoc {
            becomes: "HE fully connected layer + requantization",
            limits: "quantized output only; as Gemm",
        },
    );
}

/// The pending product `x · W (+ bias)`; `trans_b` when the constant is stored `[N, K]`.
fn matmul_pending(
    cx: &Ctx,
    node: &NodeProto,
    x: Value,
    w: Value,
    bias: Option<Value>,
    trans_b: bool,
    alpha: f64,
) -> Result<Pending> {
    let (t, w) = linear_operands(
        node,
        x,
        w,
        "the weight matrix is not a dequantized integer constant",
    )?;
    let fact = cx.graph.tensor(t);
    let (rows, inner) = match fact.shape.as_slice() {
        [k] => (1, *k),
        [r, k] => (*r, *k),
        s => return Err(unsupported(node, &format!("input shape {s:?} per sample"))),
    };
    let [d0, d1] = <[usize; 2]>::try_from(w.dims.as_slice())
        .map_err(|_| unsupported(node, "the weight matrix is not 2-D"))?;
    let (k, cols) = if trans_b { (d1, d0) } else { (d0, d1) };
    if k != inner {
        return Err(Error::model(
            &node.name,
            &node.op_type,
            format!("inner dimensions {inner} and {k} differ"),
        ));
    }
    let (centred, weight_ty, w_scale) = weight_parts(node, &w, usize::from(!trans_b))?;
    let weights = if trans_b {
        (0..k * cols)
            .map(|i| centred[(i % cols) * k + i / cols])
            .collect()
    } else {
        centred
    };
    let sx = f64::from(fact.scale);
    let acc_scale: Vec<f64> = w_scale.iter().map(|s| sx * s * alpha).collect();
    let bias = bias_acc(node, bias, &acc_scale)?;
    let shape = if fact.shape.len() == 1 {
        vec![cols]
    } else {
        vec![rows, cols]
    };
    Ok(Pending {
        op: PendingOp::Linear(LinearDraft {
            shape: LinearShape::MatMul(MatMulShape { rows, inner, cols }),
            input: t,
            weights,
            weight_ty,
            bias,
            acc_scale,
        }),
        shape,
        clamp: RealClamp::default(),
        names: vec![node.name.clone()],
    })
}

fn gemm_attrs(node: &NodeProto) -> Result<(bool, f64)> {
    if attr_int(node, "transA").unwrap_or(0) != 0 {
        return Err(unsupported(node, "transA"));
    }
    if attr_float(node, "beta").is_some_and(|b| b != 1.0) {
        return Err(unsupported(node, "beta other than 1"));
    }
    Ok((
        attr_int(node, "transB").unwrap_or(0) != 0,
        f64::from(attr_float(node, "alpha").unwrap_or(1.0)),
    ))
}

fn gemm(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let (trans_b, alpha) = gemm_attrs(node)?;
    let (x, w, b) = (
        cx.required(node, 0)?,
        cx.required(node, 1)?,
        cx.input(node, 2)?.cloned(),
    );
    let p = matmul_pending(cx, node, x, w, b, trans_b, alpha)?;
    cx.set_output(node, 0, Value::Pending(p));
    Ok(())
}

fn matmul(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let (x, w) = (cx.required(node, 0)?, cx.required(node, 1)?);
    let p = matmul_pending(cx, node, x, w, None, false, 1.0)?;
    cx.set_output(node, 0, Value::Pending(p));
    Ok(())
}

fn qlinear_matmul(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let x = dq_operand(cx, node, 0, 1, 2, None)?;
    let w = dq_operand(cx, node, 3, 4, 5, Some(1))?;
    let p = matmul_pending(cx, node, x, w, None, false, 1.0)?;
    q_result(cx, node, Value::Pending(p), 6, 7)
}

fn matmul_integer(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let (x, w) = int_operands(cx, node, 1)?;
    let p = matmul_pending(cx, node, x, w, None, false, 1.0)?;
    let v = cx.finish_raw(node, p)?;
    cx.set_output(node, 0, v);
    Ok(())
}

fn qgemm(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let (trans_b, alpha) = gemm_attrs(node)?;
    if cx.input(node, 7)?.is_none() {
        return Err(unsupported(node, "QGemm with a float output"));
    }
    let x = dq_operand(cx, node, 0, 1, 2, None)?;
    let w = dq_operand(cx, node, 3, 4, 5, Some(if trans_b { 0 } else { 1 }))?;
    let b = cx.input(node, 6)?.cloned();
    let p = matmul_pending(cx, node, x, w, b, trans_b, alpha)?;
    q_result(cx, node, Value::Pending(p), 7, 8)
}
