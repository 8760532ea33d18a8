//! ONNX frontend: a raw `ModelProto` → [`LayerGraph`](crate::ir::LayerGraph).
//!
//! The frontend walks the nodes in file order (ONNX requires topological order) through the
//! [`registry::OpRegistry`]. Every ONNX value becomes a [`value::Value`]: an integer tensor (the
//! output of a QuantizeLinear or an integer graph input), its dequantized real view, a constant,
//! or a *pending* float computation (a Conv, Gemm, Add, pooling or ReLU on dequantized values)
//! that becomes an integer layer with a fused requantization when a QuantizeLinear consumes it;
//! after the reveal, a *client value* the client computes in plaintext (the plan's epilogue:
//! a float head's dequantization, Softmax, ArgMax, TopK, ...).
//! QOperator nodes (QLinearConv, QLinearAdd, ...) are decomposed into the same steps, so QDQ,
//! QCDQ and QOperator models lower to the same layers. Before anything is built, the opset
//! imports are checked against the newest the frontend knows and every node is looked up in the
//! registry: all unknown operators are reported together; during the walk, a node whose
//! configuration is unsupported is recorded and everything computed from it skipped, so one
//! error names every such node too.
//!
//! Layout: [`build`] drives the walk; [`context`] holds its state ([`context::Ctx`]);
//! [`value`] is the value model; [`quantize`] turns values into integer layers;
//! [`weights`] reads a linear layer's weights and bias; [`attrs`] reads node attributes;
//! [`ops`] has one builder per ONNX operator, registered in [`registry`]; [`reveal`] ends the
//! two-party part where the client's plaintext epilogue begins; [`tensor`] decodes ONNX
//! tensors.

pub mod attrs;
pub mod build;
pub mod context;
pub mod ops;
pub mod quantize;
pub mod registry;
pub mod reveal;
pub mod tensor;
pub mod value;
pub mod weights;

pub use build::build;
pub use quantize::{MULTIPLIER_BITS, multipliers};

use crate::error::{Error, UnsupportedNode};
use tract_onnx::pb::NodeProto;

/// An "unsupported configuration" error for one node.
pub(crate) fn unsupported(node: &NodeProto, reason: &str) -> Error {
    Error::Unsupported(vec![UnsupportedNode {
        name: node.name.clone(),
        op_type: node.op_type.clone(),
        domain: domain_name(&node.domain).to_string(),
        reason: Some(reason.to_string()),
    }])
}

fn domain_name(d: &str) -> &str {
    if d.is_empty() { "ai.onnx" } else { d }
}
