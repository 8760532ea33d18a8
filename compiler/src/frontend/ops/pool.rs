//! MaxPool, AveragePool, GlobalAveragePool and com.microsoft QLinearAveragePool /
//! QLinearGlobalAveragePool. Max pooling commutes with (monotone) dequantization and is emitted
//! at once; average pooling waits for its output quantization (one multiplier per window count).
//! `ceil_mode` becomes extra end padding, which never counts (see [`ceil_mode_end_pad`]).

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
            becomes: "OT max pooling on shares: comparison tree in the small ring of the input differences, then one extension per output",
            limits: "no indices output; 2-D windows; no dilation",
        },
    );
    r.register(
        ONNX,
        "AveragePool",
        average_pool,
        OpDoc {
            becomes: "window sum (local) + rounded division fused into a requantization (OT); ceil_mode and count_include_pad as onnxruntime",
            limits: "2-D windows; at most 2^16 elements per window; no dilation",
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

/// Window geometry of a (global) pooling node over a `[C, H, W]` input, and the end padding
/// (`[bottom, right]`) that `ceil_mode` adds to `pads` for the last, partial windows.
fn pool_shape(node: &NodeProto, shape: &[usize]) -> Result<(PoolShape, [usize; 2])> {
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
        let pool = PoolShape {
            channels: c,
            in_hw: [h, w],
            kernel: [h, w],
            stride: [1, 1],
            pads: [0; 4],
        };
        return Ok((pool, [0, 0]));
    }
    let kernel = sizes(node, &attr_ints(node, "kernel_shape").unwrap_or_default())?;
    let [kh, kw] = <[usize; 2]>::try_from(kernel)
        .map_err(|_| unsupported(node, "a kernel that is not 2-D"))?;
    let stride = strides_2d(node)?;
    let mut pads = pads_2d(node, [h, w], [kh, kw], stride)?;
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
    let mut ceil_pads = [0, 0];
    if attr_int(node, "ceil_mode").is_some_and(|m| m != 0) {
        for (axis, len) in [h, w].into_iter().enumerate() {
            let extra = ceil_mode_end_pad(
                len,
                [pads[axis], pads[axis + 2]],
                [kh, kw][axis],
                stride[axis],
            );
            pads[axis + 2] += extra;
            ceil_pads[axis] = extra;
        }
    }
    let pool = PoolShape {
        channels: c,
        in_hw: [h, w],
        kernel: [kh, kw],
        stride,
        pads,
    };
    Ok((pool, ceil_pads))
}

/// The padding `ceil_mode` adds at the end of an axis of `len` positions (model padding
/// `[begin, end]`, window `kernel`, stride `stride`, window fits the padded axis): the output
/// length is `ceil((len + begin + end − kernel) / stride) + 1`, less one when the last window
/// would start in the end padding (ONNX, onnxruntime and PyTorch drop it), and the last
/// window must fit the padded axis.
fn ceil_mode_end_pad(len: usize, [begin, end]: [usize; 2], kernel: usize, stride: usize) -> usize {
    let padded = len + begin + end;
    let mut out = (padded - kernel).div_ceil(stride) + 1;
    if (out - 1) * stride >= len + begin {
        out -= 1;
    }
    ((out - 1) * stride + kernel).saturating_sub(padded)
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
    // Max pooling never lets padding win, so ceil_mode is just the extra end padding.
    let (pool, _) = pool_shape(node, &cx.graph.tensor(t).shape)?;
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
    let (pool, ceil_pads) = pool_shape(node, &cx.graph.tensor(t).shape)?;
    let [oh, ow] = pool.out_hw();
    let count_include_pad = attr_int(node, "count_include_pad").unwrap_or(0) != 0;
    Ok(Value::Pending(Pending {
        shape: vec![pool.channels, oh, ow],
        op: PendingOp::AvgPool {
            input: t,
            pool,
            count_include_pad,
            ceil_pads,
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

#[cfg(test)]
mod tests {
    use super::ceil_mode_end_pad;

    #[test]
    fn ceil_mode_adds_end_padding_for_partial_windows() {
        // 16, 3×3 stride 2, no pads: floor 7 windows, ceil 8, the last covering 2 of 3 rows.
        assert_eq!(ceil_mode_end_pad(16, [0, 0], 3, 2), 1);
        // 8, pad 1: floor 4, ceil 5 (the fixtures' average pool).
        assert_eq!(ceil_mode_end_pad(8, [1, 1], 3, 2), 1);
        // Exact fit: nothing to add.
        assert_eq!(ceil_mode_end_pad(7, [1, 1], 3, 2), 0);
        // 5, 2×2 stride 2, pad 1 at both ends: ceil gives 4 windows, but the 4th would start
        // at padded position 6 ≥ 5 + 1, in the end padding, so it is dropped: 3 windows.
        assert_eq!(ceil_mode_end_pad(5, [1, 1], 2, 2), 0);
        // 6, 1×1 stride 4: ceil gives 3 windows, the 3rd starting at 8 ≥ 6: dropped, 2 remain.
        assert_eq!(ceil_mode_end_pad(6, [0, 0], 1, 4), 0);
    }
}
