//! The reveal: where the two-party computation ends and the client's plaintext epilogue begins
//! (`docs/semantics.md` §5).
//!
//! An operation only the client needs (Softmax, ArgMax, TopK, a multiplication or addition by a
//! public scalar, a reshape of such a value) turns its input into a [`ClientValue`]: the plan
//! tensor the server reveals, plus the epilogue steps so far. A dequantized tensor is revealed
//! as it is (the client dequantizes it with its scale). A linear layer whose output stays float
//! (a *float head*) is emitted without requantization, so that it outputs its accumulator, and
//! the client dequantizes it with the per-channel scales `s_x · s_w[c]`: its bias, even a float
//! one, was folded into the accumulator on the server's side (`docs/security.md`). The graph
//! output binds to the revealed tensor and the epilogue; a client value that flows into
//! anything else (a QuantizeLinear, a linear layer) is refused by that operator's builder, and
//! a client-side operator in the middle of the network is reported before anything is built
//! ([`super::build`]).

use super::context::Ctx;
use super::unsupported;
use super::value::{ClientValue, LinearDraft, Pending, PendingOp, Value};
use crate::error::{Error, Result};
use crate::ir::{Layer, LinearShape, TensorId};
use heq_runtime::plan::{ChannelScales, Epilogue, EpilogueOp, EpilogueStep, IntType, ValueType};
use tract_onnx::pb::NodeProto;

/// The element type of a raw accumulator output.
const ACCUMULATOR: IntType = IntType {
    bits: 32,
    signed: true,
};

impl Ctx {
    /// Reveals input `i` of `node` (see the module doc).
    ///
    /// # Errors
    /// A value that cannot be revealed: a float computation other than a linear layer, a linear
    /// layer with a fused ReLU/Clip, an integer tensor that was not dequantized.
    pub fn client_input(&mut self, node: &NodeProto, i: usize) -> Result<ClientValue> {
        let name = node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                Error::model(&node.name, &node.op_type, format!("input {i} is missing"))
            })?
            .clone();
        self.value(node, &name)?;
        self.reveal(&name)
            .map_err(|reason| unsupported(node, reason))
    }

    /// Reveals ONNX value `name`, which must be defined. A float head is emitted once: the value
    /// is rebound to its client view.
    ///
    /// # Errors
    /// Why the value cannot be revealed.
    pub(super) fn reveal(&mut self, name: &str) -> std::result::Result<ClientValue, &'static str> {
        let client = match self.values.get(name).cloned() {
            Some(Value::Client(c)) => return Ok(c),
            Some(Value::Real(t)) => ClientValue {
                source: t,
                epilogue: Epilogue::default(),
            },
            Some(Value::Pending(Pending {
                op: PendingOp::Linear(d),
                shape,
                clamp,
                names,
            })) => {
                if !clamp.is_none() {
                    return Err(
                        "a float output after a fused ReLU/Clip needs a requantization (a QuantizeLinear after the activation)",
                    );
                }
                let axis = match d.shape {
                    LinearShape::MatMul(_) => shape.len() - 1,
                    LinearShape::Conv(_) | LinearShape::Affine(_) => 0,
                };
                let scales = d.acc_scale.iter().map(|&s| s as f32).collect();
                let source = self.emit_accumulator(names.join("+"), name, shape, d);
                ClientValue {
                    source,
                    epilogue: Epilogue {
                        dequantize: Some(ChannelScales { axis, scales }),
                        steps: Vec::new(),
                    },
                }
            }
            Some(Value::Pending(_)) => {
                return Err(
                    "only a linear layer's float output can be revealed; this float computation needs a QuantizeLinear",
                );
            }
            Some(Value::Quant(_)) => {
                return Err("a float operation on an integer tensor that is not dequantized");
            }
            _ => return Err("the value is not computed from the model input"),
        };
        self.values
            .insert(name.to_string(), Value::Client(client.clone()));
        Ok(client)
    }

    /// Emits a linear layer without requantization: its output, `out_name`, is the raw
    /// accumulator, an int32 tensor with scale 1 (the range analysis bounds it).
    pub(super) fn emit_accumulator(
        &mut self,
        layer_name: String,
        out_name: &str,
        shape: Vec<usize>,
        d: LinearDraft,
    ) -> TensorId {
        let out = self.tensor(out_name, shape, ACCUMULATOR, 0, 1.0);
        let input = d.input;
        self.graph.add_layer(Layer {
            name: layer_name,
            op: d.into_op(None),
            inputs: vec![input],
            output: out,
        });
        out
    }

    /// The shape and element type of a client value.
    ///
    /// # Errors
    /// None for values the builders made (every step is checked when added).
    pub fn client_type(&self, node: &NodeProto, c: &ClientValue) -> Result<ValueType> {
        c.epilogue
            .output(&self.graph.tensor(c.source).shape)
            .map_err(|e| Error::model(&node.name, &node.op_type, e))
    }

    /// Appends `op`, named after `node`, to a client value.
    ///
    /// # Errors
    /// A step that does not fit its input (an axis out of range, a reshape changing the number
    /// of elements, a float operation on indices).
    pub fn client_step(
        &self,
        node: &NodeProto,
        mut c: ClientValue,
        op: EpilogueOp,
    ) -> Result<ClientValue> {
        c.epilogue.steps.push(EpilogueStep {
            name: node.name.clone(),
            op,
        });
        self.client_type(node, &c)?;
        Ok(c)
    }
}
