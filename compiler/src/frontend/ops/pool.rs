//! MaxPool, AveragePool, GlobalAveragePool and com.microsoft QLinearAveragePool /
//! QLinearGlobalAveragePool. Max pooling commutes with (monotone) dequantization and is emitted
//! at once; average pooling waits for its output quantization (one multiplier per window count).

use crate::error::{Error, Result};
use crate::frontend::attrs::{attr_int, attr_ints, chw, pads_2d, sizes, strides_2d};
use crate::frontend::context::Ctx;
use crate::frontend::ops::conv::{dq_operand, q_result};
use crate::frontend::registry::{MICROSOFT, ONNX, OpDoc, OpRegistry};
use crate::frontend::unsupported;
use crate::frontend::value::{Pending, PendingOp, RealClamp, Value};
use crate::ir::LayerOp;
use heq_runtime::plan::PoolShape;
use tract_onnx::pb::NodeProto;

/// Largest pooling window (elements): average pooling keeps one multiplier per count.
const MAX_WINDOW: usize = 1 << 16;

/// Registers the builders.
pub fn register(r: &mut OpRegistry) {
    r.register(
        ONNX,
        "MaxPool",
        max_pool,
        OpDoc {
            becomes: "OT max pooling (comparison tree) on shares",
            limits: "no indices output; 2-D windows",
        },
    );
    r.register(
        ONNX,
        "AveragePool",
        average_pool,
        OpDoc {
            becomes: "window sum (local) + rounded division fused into a requantization (OT)",
            limits: "2-D windows; at most 2^16 elements per window",
        },
    );
    r.register(
        ONNX,
        "GlobalAveragePool",
        average_pool,
        OpDoc {
            becomes: "as AveragePool over the whole feature map",
            limits: "at most 2^16 elements; no channels_last",
        },
    );
    r.register(
        MICROSOFT,
        "QLinearAveragePool",
        qlinear_average_pool,
        OpDoc {
            becomes: "as AveragePool, with the output's own scale",
            limits: "as AveragePool",
        },
    );
    r.register(
        MICROSOFT,
        "QLinearGlobalAveragePool",
        qlinear_average_pool,
        OpDoc {
            becomes: "as GlobalAveragePool",
            limits: "as GlobalAveragePool",
        },
    );
}

/// Window geometry of a (global) pooling node over a `[C, H, W]` input.
fn pool_shape(node: &NodeProto, shape: &[usize]) -> Result<PoolShape> {
    let [c, h, w] = chw(node, shape)?;
    if node.op_type.contains("Global") {
        if attr_int(node, "channels_last").is_some_and(|v| v != 0) {
            return Err(unsupported(node, "channels_last"));
        }
        if h * w > MAX_WINDOW {
            return Err(unsupported(
                node,
                "a pooling window of more than 2^16 elements",
            ));
        }
        return Ok(PoolShape {
            channels: c,
            in_hw: [h, w],
            kernel: [h, w],
            stride: [1, 1],
            pads: [0; 4],
        });
    }
    let kernel = sizes(node, &attr_ints(node, "kernel_shape").unwrap_or_default())?;
    let [kh, kw] = <[usize; 2]>::try_from(kernel)
        .map_err(|_| unsupported(node, "a kernel that is not 2-D"))?;
    let stride = strides_2d(node)?;
    let pads = pads_2d(node, [h, w], [kh, kw], stride)?;
    if kh == 0
        || kw == 0
        || h + pads[0] + pads[2] < kh
        || w + pads[1] + pads[3] < kw
        || kh * kw > MAX_WINDOW
    {
        return Err(Error::model(
            &node.name,
            &node.op_type,
            "the window does not fit the padded input",
        ));
    }
    Ok(PoolShape {
        channels: c,
        in_hw: [h, w],
        kernel: [kh, kw],
        stride,
        pads,
    })
}

fn max_pool(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    if node.output.get(1).is_some_and(|o| !o.is_empty()) {
        return Err(unsupported(node, "MaxPool indices output"));
    }
    let x = cx.required(node, 0)?;
    let (Value::Real(t) | Value::Quant(t)) = x else {
        return Err(unsupported(
            node,
            "MaxPool of a value that is not an integer tensor",
        ));
    };
    let pool = pool_shape(node, &cx.graph.tensor(t).shape)?;
    let [oh, ow] = pool.out_hw();
    let out_name = node.output.first().cloned().unwrap_or_default();
    let shape = vec![pool.channels, oh, ow];
    let out = cx.layer_like(&node.name, LayerOp::MaxPool(pool), vec![t], t, shape);
    cx.graph.tensor_mut(out).name = out_name;
    cx.set_output(
        node,
        0,
        if matches!(x, Value::Real(_)) {
            Value::Real(out)
        } else {
            Value::Quant(out)
        },
    );
    Ok(())
}

fn avg_pending(cx: &Ctx, node: &NodeProto, x: Value) -> Result<Value> {
    let Value::Real(t) = x else {
        return Err(unsupported(
            node,
            "average pooling of a value that is not dequantized",
        ));
    };
    let pool = pool_shape(node, &cx.graph.tensor(t).shape)?;
    let [oh, ow] = pool.out_hw();
    let count_include_pad = attr_int(node, "count_include_pad").unwrap_or(0) != 0;
    Ok(Value::Pending(Pending {
        shape: vec![pool.channels, oh, ow],
        op: PendingOp::AvgPool {
            input: t,
            pool,
            count_include_pad,
        },
        clamp: RealClamp::default(),
        names: vec![node.name.clone()],
    }))
}

fn average_pool(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let x = cx.required(node, 0)?;
    let v = avg_pending(cx, node, x)?;
    cx.set_output(node, 0, v);
    Ok(())
}

fn qlinear_average_pool(cx: &mut Ctx, node: &NodeProto) -> Result<()> {
    let x = dq_operand(cx, node, 0, 1, 2, None)?;
    let v = avg_pending(cx, node, x)?;
    q_result(cx, node, v, 3, 4)
}
