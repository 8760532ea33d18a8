//! Conv (QDQ), QLinearConv and ConvInteger: 2-D, grouped and depthwise, strided, padded.

use crate::error::{Error, Result};
use crate::frontend::attrs::{attr_int, attr_ints, chw, pads_2d, sizes, strides_2d};
use crate::frontend::context::Ctx;
use crate::frontend::registry::{ONNX, OpDoc, OpRegistry};
use crate::frontend::tensor::{Const, ConstData};
use crate::frontend::unsupported;
use crate::frontend::value::{LinearDraft, Pending, PendingOp, QConst, QParams, RealClamp, Value};
use crate::frontend::weights::{bias_acc, linear_operands, weight_parts};
use crate::ir::LinearShape;
use heq_runtime::plan::{ConvShape, IntType};
use tract_onnx::pb::NodeProto;

/// Registers the builders.
pub fn register(r: &mut OpRegistry) {
    r.register(
        ONNX,
        "Conv",
        conv,
        OpDoc {
            becomes: "HE linear layer (coefficient encoding): any stride, padding and group count (grouped, depthwise); a float or int32 bias is folded into the accumulator; a float output (float head) reveals the accumulator, which the client dequantizes",
            limits: "2-D only; input and weights must be dequantized integers",
        },
    );
    r.register(
        ONNX,
        "QLinearConv",
        qlinear_conv,
        OpDoc {
            becomes: "HE linear layer + requantization",
            limits: "2-D only",
        },
    );
    r.register(
        ONNX,
        "ConvInteger",
        conv_integer,
        OpDoc {
            becomes: "HE linear layer with an int32 accumulator output",
            limits: "2-D only; integer constant weights",
        },
    );
}

/// The pending convolution of dequantized input `x` with dequantized weights `w`.
pub(crate) fn conv_pending(
    cx: &Ctx,
    node: &NodeProto,
    x: Value,
    w: Value,
    bias: Option<Value>,
) -> Result<Pending> {
    let (t, w) = linear_operands(
        node,
        x,
        w,
        "the weights are not a dequantized integer constant",
    )?;
    let fact = cx.graph.tensor(t);
    let [c, h, wd] = chw(node, &fact.shape)?;
    let [m, cg, kh, kw] = <[usize; 4]>::try_from(w.dims.as_slice())
        .map_err(|_| unsupported(node, "weights are not 4-D"))?;
    let groups = usize::try_from(attr_int(node, "group").unwrap_or(1)).unwrap_or(0);
    if groups == 0 || c % groups != 0 || m % groups != 0 || c / groups != cg {
        return Err(Error::model(
            &node.name,
            &node.op_type,
            format!("{c} input channels, {m} filters of {cg} channels, {groups} groups"),
        ));
    }
    if let Some(k) = attr_ints(node, "kernel_shape")
        && sizes(node, &k)? != [kh, kw]
    {
        return Err(Error::model(
            &node.name,
            &node.op_type,
            "kernel_shape disagrees with the weights",
        ));
    }
    let stride = strides_2d(node)?;
    let pads = pads_2d(node, [h, wd], [kh, kw], stride)?;
    if h + pads[0] + pads[2] < kh || wd + pads[1] + pads[3] < kw {
        return Err(Error::model(
            &node.name,
            &node.op_type,
            "the kernel is larger than the padded input",
        ));
    }
    let shape = ConvShape {
        in_channels: c,
        in_hw: [h, wd],
        out_channels: m,
        kernel: [kh, kw],
        stride,
        pads,
        groups,
    };
    let (weights, weight_ty, w_scale) = weight_parts(node, &w, 0)?;
    let sx = f64::from(fact.scale);
    let acc_scale: Vec<f64> = w_scale.iter().map(|s| sx * s).collect();
    let bias = bias_acc(node, bias, &acc_scale)?;
    let [oh, ow] = shape.out_hw();
    Ok(Pending {
        op: PendingOp::Linear(LinearDraft {
            shape: LinearShape::Conv(shape),
            input: t,
            weights,
            weight_ty,
            bias,
            acc_scale,
        }),
        shape: vec![m, oh, ow],
        clamp: RealClamp::default(),
        names: vec![node.name.clone()],
    })
}

fn conv(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let (x, w, b) = (
        cx.required(node, 0)?,
        cx.required(node, 1)?,
        cx.input(node, 2)?.cloned(),
    );
    let p = conv_pending(cx, node, x, w, b)?;
    cx.set_output(node, 0, Value::Pending(p));
    Ok(())
}

/// The scale and zero point of a QOperator operand or result at inputs `si`, `zi` (uint8 when
/// the zero point is absent).
fn qoperator_params(cx: &Ctx, node: &NodeProto, si: usize, zi: usize) -> Result<QParams> {
    let uint8 = IntType {
        bits: 8,
        signed: false,
    };
    cx.qparams(node, si, zi, uint8)
}

/// Dequantizes QOperator operand `x` with the scale and zero point at inputs `si`, `zi`;
/// weights (`axis = Some(a)`) may be quantized per slice along `a`.
pub(crate) fn dq_operand(
    cx: &mut Ctx,
    node: &NodeProto,
    xi: usize,
    si: usize,
    zi: usize,
    axis: Option<i64>,
) -> Result<Value> {
    let x = cx.required(node, xi)?;
    let mut q = qoperator_params(cx, node, si, zi)?;
    q.axis = axis.unwrap_or(0);
    cx.dequantize(node, x, &q)
}

/// Quantizes a QOperator result with the scale and zero point at inputs `si`, `zi`.
pub(crate) fn q_result(
    cx: &mut Ctx,
    node: &NodeProto,
    v: Value,
    si: usize,
    zi: usize,
) -> Result<()> {
    let q = qoperator_params(cx, node, si, zi)?;
    let out = node.output.first().cloned().unwrap_or_default();
    let v = cx.quantize(node, v, &q, &out)?;
    cx.set_output(node, 0, v);
    Ok(())
}

fn qlinear_conv(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let x = dq_operand(cx, node, 0, 1, 2, None)?;
    let w = dq_operand(cx, node, 3, 4, 5, Some(0))?;
    let b = cx.input(node, 8)?.cloned();
    let p = conv_pending(cx, node, x, w, b)?;
    q_result(cx, node, Value::Pending(p), 6, 7)
}

/// Integer operands of ConvInteger/MatMulInteger: scale 1, the given zero points.
pub(crate) fn int_operands(
    cx: &mut Ctx,
    node: &NodeProto,
    out_axis: usize,
) -> Result<(Value, Value)> {
    let zp = |cx: &Ctx, i: usize| -> Result<Vec<i64>> {
        Ok(match cx.const_input(node, i)? {
            Some(c) => c.to_f64().iter().map(|&v| v as i64).collect(),
            None => vec![0],
        })
    };
    let (xz, wz) = (zp(cx, 2)?, zp(cx, 3)?);
    let x = cx.required(node, 0)?;
    let xq = QParams {
        scale: vec![1.0; xz.len()],
        zero_point: xz,
        ty: IntType {
            bits: 8,
            signed: false,
        },
        axis: 0,
    };
    let x = cx.dequantize(node, x, &xq)?;
    let w = match cx.required(node, 1)? {
        Value::Const(Const {
            dims,
            data: ConstData::Int { ty, values },
        }) => {
            let wq = QParams {
                scale: vec![1.0; wz.len()],
                zero_point: wz,
                ty,
                axis: out_axis as i64,
            };
            Value::ConstReal(QConst::new(node, dims, values, ty, &wq)?)
        }
        _ => return Err(unsupported(node, "the weights are not an integer constant")),
    };
    Ok((x, w))
}

fn conv_integer(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let (x, w) = int_operands(cx, node, 0)?;
    let p = conv_pending(cx, node, x, w, None)?;
    let v = cx.finish_raw(node, p)?;
    cx.set_output(node, 0, v);
    Ok(())
}
