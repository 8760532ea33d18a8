//! QuantizeLinear and DequantizeLinear (opsets 10–28: per-tensor and per-axis, every integer
//! type from int2 to int32), and onnxruntime's com.microsoft QuantizeLinear/DequantizeLinear
//! (contrib opset 1), which its quantizer writes for 4- and 16-bit types when the model's
//! ai.onnx opset is below 21: the same inputs, `axis` attribute and semantics, so both domains
//! share the builders.

use crate::error::Result;
use crate::frontend::attrs::attr_int;
use crate::frontend::context::Ctx;
use crate::frontend::registry::{MICROSOFT, ONNX, OpDoc, OpRegistry};
use crate::frontend::{tensor, unsupported};
use heq_runtime::plan::IntType;
use tract_onnx::pb::NodeProto;

/// Registers the builders.
pub fn register(r: &mut OpRegistry) {
    r.register(
        ONNX,
        "QuantizeLinear",
        quantize_linear,
        OpDoc {
            becomes: "sets a tensor's integer type (int2–int16, int32, uint2–uint16), scale and zero point; a pending computation before it becomes its requantization",
            limits: "no blocked quantization; no float8 types; per-axis scales on activations",
        },
    );
    r.register(
        ONNX,
        "DequantizeLinear",
        dequantize_linear,
        OpDoc {
            becomes: "real view of an integer tensor or constant; per-tensor or per-channel (axis) scales on weights",
            limits: "no blocked quantization",
        },
    );
    r.register(
        MICROSOFT,
        "QuantizeLinear",
        quantize_linear,
        OpDoc {
            becomes: "as ai.onnx QuantizeLinear (onnxruntime writes it for int4/uint4/int16/uint16 below opset 21)",
            limits: "as ai.onnx QuantizeLinear",
        },
    );
    r.register(
        MICROSOFT,
        "DequantizeLinear",
        dequantize_linear,
        OpDoc {
            becomes: "as ai.onnx DequantizeLinear (per-tensor or per-channel, int4/uint4/int16/uint16 below opset 21)",
            limits: "as ai.onnx DequantizeLinear",
        },
    );
}

const UINT8: IntType = IntType {
    bits: 8,
    signed: false,
};

fn quantize_linear(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    if attr_int(node, "block_size").is_some_and(|b| b != 0) {
        return Err(unsupported(node, "blocked quantization"));
    }
    let default_ty = match attr_int(node, "output_dtype").filter(|&d| d != 0) {
        Some(d) => tensor::int_type(d as i32).ok_or_else(|| unsupported(node, "output type"))?,
        None => UINT8,
    };
    let q = cx.qparams(node, 1, 2, default_ty)?;
    let x = cx.required(node, 0)?;
    let out = node.output.first().cloned().unwrap_or_default();
    let v = cx.quantize(node, x, &q, &out)?;
    cx.set_output(node, 0, v);
    Ok(())
}

fn dequantize_linear(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    if attr_int(node, "block_size").is_some_and(|b| b != 0) {
        return Err(unsupported(node, "blocked quantization"));
    }
    let q = cx.qparams(node, 1, 2, UINT8)?;
    let x = cx.required(node, 0)?;
    let v = cx.dequantize(node, x, &q)?;
    cx.set_output(node, 0, v);
    Ok(())
}
