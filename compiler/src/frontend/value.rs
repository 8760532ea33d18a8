//! The frontend's value model: what the walk knows about one ONNX value ([`Value`]), including
//! the float computations that wait for their QuantizeLinear ([`Pending`]) and quantized
//! constants ([`QConst`]).

use super::attrs::normalize_axis;
use super::tensor::Const;
use super::unsupported;
use crate::error::{Error, Result};
use crate::ir::{LayerOp, Linear, LinearShape, Requant, TensorId};
use heq_runtime::plan::{Epilogue, IntType, PoolShape};
use tract_onnx::pb::NodeProto;

/// A constant with per-axis quantization parameters (a weight or a bias).
#[derive(Clone, Debug, PartialEq)]
pub struct QConst {
    /// ONNX dimensions.
    pub dims: Vec<usize>,
    /// Quantized values `q`.
    pub values: Vec<i64>,
    /// Element type of `q`.
    pub ty: IntType,
    /// Scale per slice along `axis` (one value: per tensor).
    pub scale: Vec<f32>,
    /// Zero point per slice along `axis`.
    pub zero_point: Vec<i64>,
    /// Quantization axis.
    pub axis: usize,
}

impl QConst {
    /// A constant quantized with `q`, checking that per-slice parameters match the axis.
    ///
    /// # Errors
    /// An axis out of range, or per-slice parameters whose count is not the axis length.
    pub fn new(
        node: &NodeProto,
        dims: Vec<usize>,
        values: Vec<i64>,
        ty: IntType,
        q: &QParams,
    ) -> Result<QConst> {
        let axis = if q.scale.len() > 1 {
            normalize_axis(node, q.axis, dims.len())?
        } else {
            0
        };
        if q.scale.len() > 1 && dims.get(axis) != Some(&q.scale.len()) {
            return Err(Error::model(
                &node.name,
                &node.op_type,
                "scale length does not match the axis",
            ));
        }
        Ok(QConst {
            dims,
            values,
            ty,
            scale: q.scale.clone(),
            zero_point: q.zero_point.clone(),
            axis,
        })
    }

    /// Index into `scale`/`zero_point` of element `i`.
    pub fn slice_of(&self, i: usize) -> usize {
        if self.scale.len() == 1 {
            return 0;
        }
        let inner: usize = self.dims[self.axis + 1..].iter().product();
        (i / inner) % self.dims[self.axis]
    }

    /// Centred value `q − zp` of element `i`.
    pub fn centred(&self, i: usize) -> i64 {
        self.values[i] - self.zero_point[self.slice_of(i)]
    }

    /// Real value of element `i`.
    pub fn real(&self, i: usize) -> f64 {
        self.centred(i) as f64 * f64::from(self.scale[self.slice_of(i)])
    }
}

/// Clamp on the real value, from fused ReLU/Clip nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RealClamp {
    /// Lower bound.
    pub lo: Option<f32>,
    /// Upper bound.
    pub hi: Option<f32>,
}

impl RealClamp {
    /// Whether neither bound is set.
    pub fn is_none(&self) -> bool {
        self.lo.is_none() && self.hi.is_none()
    }

    /// The intersection of two clamps.
    pub fn and(self, o: RealClamp) -> RealClamp {
        let max = |a: Option<f32>, b: Option<f32>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let min = |a: Option<f32>, b: Option<f32>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        RealClamp {
            lo: max(self.lo, o.lo),
            hi: min(self.hi, o.hi),
        }
    }
}

/// A linear layer before its output quantization is known.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearDraft {
    /// Kind and dimensions.
    pub shape: LinearShape,
    /// Input tensor.
    pub input: TensorId,
    /// Centred weights in the plan layout.
    pub weights: Vec<i32>,
    /// Weight type.
    pub weight_ty: IntType,
    /// Bias in accumulator units.
    pub bias: Vec<i64>,
    /// Real value of one accumulator step, per output channel.
    pub acc_scale: Vec<f64>,
}

impl LinearDraft {
    /// The layer operation, with `requant` fused.
    pub fn into_op(self, requant: Option<Requant>) -> LayerOp {
        LayerOp::Linear(Linear {
            shape: self.shape,
            weight_ty: self.weight_ty,
            weights: self.weights,
            bias: self.bias,
            requant,
            acc: None,
        })
    }
}

/// A float computation on dequantized values, waiting for its QuantizeLinear.
#[derive(Clone, Debug, PartialEq)]
pub enum PendingOp {
    /// A linear layer.
    Linear(LinearDraft),
    /// Elementwise sum of two real tensors.
    Add(TensorId, TensorId),
    /// Average pooling of a real tensor.
    AvgPool {
        /// Input.
        input: TensorId,
        /// Window geometry.
        pool: PoolShape,
        /// Whether padding counts in the divisor.
        count_include_pad: bool,
        /// End padding added by `ceil_mode` (see [`heq_runtime::plan::AvgPoolSpec`]).
        ceil_pads: [usize; 2],
    },
    /// A real tensor, only clamped (ReLU/Clip on dequantized values).
    Clamp(TensorId),
    /// Channel concatenation of real tensors with different quantizations.
    Concat(Vec<TensorId>),
}

/// A pending computation with its output shape, fused clamp and node names.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// The computation.
    pub op: PendingOp,
    /// Output shape of one sample.
    pub shape: Vec<usize>,
    /// Fused ReLU/Clip.
    pub clamp: RealClamp,
    /// ONNX node names folded into it.
    pub names: Vec<String>,
}

/// What the frontend knows about one ONNX value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// The float graph input, before its QuantizeLinear.
    FloatInput(Vec<usize>),
    /// An integer tensor (centred values).
    Quant(TensorId),
    /// The real (dequantized) view of an integer tensor.
    Real(TensorId),
    /// An initializer.
    Const(Const),
    /// A quantized constant (QuantizeLinear of a float initializer, optionally clipped).
    ConstQuant(QConst),
    /// A dequantized constant.
    ConstReal(QConst),
    /// A float computation waiting for its quantization.
    Pending(Pending),
    /// A value the client computes in plaintext after the reveal (see [`super::reveal`]).
    Client(ClientValue),
}

/// A value of the client-side epilogue: the plan tensor the server reveals and the plaintext
/// steps the client applies to it so far.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientValue {
    /// The revealed plan tensor.
    pub source: TensorId,
    /// Its dequantization and the steps up to this value.
    pub epilogue: Epilogue,
}

/// Quantization parameters of a QuantizeLinear/DequantizeLinear or a QOperator operand.
#[derive(Clone, Debug, PartialEq)]
pub struct QParams {
    /// Scale per slice.
    pub scale: Vec<f32>,
    /// Zero point per slice.
    pub zero_point: Vec<i64>,
    /// Element type.
    pub ty: IntType,
    /// Axis of per-slice parameters.
    pub axis: i64,
}

impl QParams {
    /// The scale and zero point of per-tensor parameters.
    ///
    /// # Errors
    /// Per-axis parameters.
    pub fn per_tensor(&self, node: &NodeProto) -> Result<(f32, i64)> {
        if self.scale.len() != 1 || self.zero_point.len() != 1 {
            return Err(unsupported(node, "per-axis quantization of an activation"));
        }
        Ok((self.scale[0], self.zero_point[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_axis_constants_index_their_slice() {
        let c = QConst {
            dims: vec![2, 3],
            values: vec![1, 2, 3, 4, 5, 6],
            ty: IntType {
                bits: 8,
                signed: true,
            },
            scale: vec![0.5, 2.0],
            zero_point: vec![1, -1],
            axis: 0,
        };
        assert_eq!(
            (0..6).map(|i| c.centred(i)).collect::<Vec<_>>(),
            vec![0, 1, 2, 5, 6, 7]
        );
        assert_eq!(c.real(4), 12.0);
    }
}
