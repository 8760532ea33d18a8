//! The build context [`Ctx`]: the ONNX values bound so far and the layer graph being built,
//! with the lookups every operator builder uses (inputs, constants, quantization parameters)
//! and the creation of tensors and layers. Turning values into integer layers (QuantizeLinear,
//! DequantizeLinear, pending computations) is in [`super::quantize`].

use super::attrs::attr_int;
use super::tensor::{Const, ConstData};
use super::unsupported;
use super::value::{QParams, Value};
use crate::error::{Error, Result};
use crate::ir::{Layer, LayerGraph, LayerOp, TensorId, TensorInfo};
use heq_runtime::plan::IntType;
use std::collections::HashMap;
use tract_onnx::pb::NodeProto;

/// The state of the walk: ONNX values and the graph being built.
pub struct Ctx {
    pub(super) values: HashMap<String, Value>,
    /// The graph being built.
    pub graph: LayerGraph,
    /// Whether the graph input's quantization is known (its QuantizeLinear, or the
    /// DequantizeLinear of an integer input, was seen).
    pub(super) input_defined: bool,
    /// Default-domain opset version.
    pub opset: i64,
}

impl Ctx {
    /// An empty context for a model named `name` with default-domain opset `opset`.
    pub(super) fn new(name: &str, opset: i64) -> Self {
        Ctx {
            values: HashMap::new(),
            graph: LayerGraph::new(name),
            input_defined: false,
            opset,
        }
    }

    /// The value of an ONNX name.
    ///
    /// # Errors
    /// If no earlier node or initializer defines it.
    pub fn value(&self, node: &NodeProto, name: &str) -> Result<&Value> {
        self.values.get(name).ok_or_else(|| {
            Error::model(
                &node.name,
                &node.op_type,
                format!("input '{name}' is not defined before the node"),
            )
        })
    }

    /// Input `i` of a node, if present and non-empty.
    pub fn input<'a>(&'a self, node: &NodeProto, i: usize) -> Result<Option<&'a Value>> {
        match node.input.get(i).filter(|n| !n.is_empty()) {
            Some(name) => self.value(node, name).map(Some),
            None => Ok(None),
        }
    }

    /// Input `i` of a node, which must be present.
    ///
    /// # Errors
    /// If it is missing or undefined.
    pub fn required(&self, node: &NodeProto, i: usize) -> Result<Value> {
        self.input(node, i)?
            .cloned()
            .ok_or_else(|| Error::model(&node.name, &node.op_type, format!("input {i} is missing")))
    }

    /// Binds output `i` of a node.
    pub fn set_output(&mut self, node: &NodeProto, i: usize, v: Value) {
        if let Some(name) = node.output.get(i).filter(|n| !n.is_empty()) {
            self.values.insert(name.clone(), v);
        }
    }

    /// A constant input (initializer).
    ///
    /// # Errors
    /// If the input is not a constant.
    pub fn const_input(&self, node: &NodeProto, i: usize) -> Result<Option<Const>> {
        match self.input(node, i)? {
            None => Ok(None),
            Some(Value::Const(c)) => Ok(Some(c.clone())),
            Some(_) => Err(unsupported(
                node,
                &format!("input {i} must be a constant initializer"),
            )),
        }
    }

    /// Reads scale (input `si`) and zero point (input `zi`, optional) as quantization
    /// parameters; `default_ty` applies when the zero point is absent.
    ///
    /// # Errors
    /// If they are not constants of matching sizes.
    pub fn qparams(
        &self,
        node: &NodeProto,
        si: usize,
        zi: usize,
        default_ty: IntType,
    ) -> Result<QParams> {
        let bad = |r: &str| Error::model(&node.name, &node.op_type, r.to_string());
        let scale = match self.const_input(node, si)? {
            Some(Const {
                data: ConstData::Float(v),
                ..
            }) => v,
            _ => return Err(bad("the scale must be a float constant")),
        };
        let (zero_point, ty) = match self.const_input(node, zi)? {
            Some(Const {
                data: ConstData::Int { ty, values },
                ..
            }) if ty.bits <= 32 => (values, ty),
            Some(_) => {
                return Err(bad(
                    "the zero point must be an integer constant of at most 32 bits",
                ));
            }
            None => (vec![0; scale.len()], default_ty),
        };
        if scale.is_empty()
            || scale.len() != zero_point.len()
            || scale.iter().any(|s| !s.is_finite() || *s <= 0.0)
        {
            return Err(bad("scales must be positive and match the zero points"));
        }
        let axis = attr_int(node, "axis").unwrap_or(1);
        Ok(QParams {
            scale,
            zero_point,
            ty,
            axis,
        })
    }

    /// Adds a tensor for the output of a node.
    pub fn tensor(
        &mut self,
        name: &str,
        shape: Vec<usize>,
        ty: IntType,
        zero_point: i64,
        scale: f32,
    ) -> TensorId {
        self.graph
            .add_tensor(TensorInfo::new(name, shape, ty, zero_point, scale))
    }

    /// Adds a layer producing a new tensor shaped and quantized like `like` (shape `shape`).
    pub fn layer_like(
        &mut self,
        name: &str,
        op: LayerOp,
        inputs: Vec<TensorId>,
        like: TensorId,
        shape: Vec<usize>,
    ) -> TensorId {
        let f = self.graph.tensor(like).clone();
        let out = self.graph.add_tensor(TensorInfo {
            name: name.to_string(),
            shape,
            ..f
        });
        self.graph.add_layer(Layer {
            name: name.to_string(),
            op,
            inputs,
            output: out,
        });
        out
    }
}
