//! ONNX frontend: a raw `ModelProto` → [`LayerGraph`].
//!
//! The frontend walks the nodes in file order (ONNX requires topological order) through the
//! [`registry::OpRegistry`]. Every ONNX value becomes a [`Value`]: an integer tensor (the output
//! of a QuantizeLinear or an integer graph input), its dequantized real view, a constant, or a
//! *pending* float computation (a Conv, Gemm, Add, pooling or ReLU on dequantized values) that
//! becomes an integer layer with a fused requantization when a QuantizeLinear consumes it.
//! QOperator nodes (QLinearConv, QLinearAdd, ...) are decomposed into the same steps, so QDQ,
//! QCDQ and QOperator models lower to the same layers. Before anything is built, every node is
//! looked up in the registry and all unknown operators are reported together.
//!
//! Multipliers follow the rule of the plan: `M = s_in·s_w[c]/s_out` in f64 from the f32 scales,
//! one shift `k ≥ 0` per layer with `max |M|·2^k ∈ [2^23, 2^24)`, `m = round(M·2^k)`.

pub mod ops;
pub mod registry;
pub mod tensor;

use crate::error::{Error, Result, UnsupportedNode};
use crate::ir::{
    Layer, LayerGraph, LayerOp, Linear, Port, Requant, TensorFact, TensorId, type_range,
};
use heq_runtime::plan::{
    AddSpec, AffineShape, AvgPoolSpec, ConvShape, IntType, MatMulShape, PoolShape, PublicRequant,
};
use std::collections::HashMap;
use tensor::{Const, ConstData};
use tract_onnx::pb::{
    ModelProto, NodeProto, attribute_proto::AttributeType, tensor_shape_proto::dimension,
    type_proto,
};

/// Largest input sample heqc compiles (elements).
const MAX_INPUT_ELEMENTS: usize = 1 << 28;

/// Significant bits of the largest requantization multiplier.
pub const MULTIPLIER_BITS: u32 = 24;

/// Integer multipliers and shift for real multipliers `ms` (see the module doc).
pub fn multipliers(ms: &[f64]) -> (Vec<i64>, u32) {
    let max = ms.iter().fold(0.0f64, |a, m| a.max(m.abs()));
    let mut k: i32 = 0;
    if max > 0.0 && max.is_finite() {
        k = (MULTIPLIER_BITS as i32 - 1) - max.log2().floor() as i32;
        while k > 0 && max * 2f64.powi(k) >= 2f64.powi(MULTIPLIER_BITS as i32) {
            k -= 1;
        }
        while max * 2f64.powi(k) < 2f64.powi(MULTIPLIER_BITS as i32 - 1) {
            k += 1;
        }
        k = k.clamp(0, 62);
    }
    let scale = 2f64.powi(k);
    (
        ms.iter().map(|m| (m * scale).round() as i64).collect(),
        k as u32,
    )
}

/// Round half to even of a float, as ONNX QuantizeLinear rounds.
pub(crate) fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

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
    fn is_none(&self) -> bool {
        self.lo.is_none() && self.hi.is_none()
    }

    fn and(self, o: RealClamp) -> RealClamp {
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

/// The kind and dimensions of a pending linear layer.
#[derive(Clone, Debug, PartialEq)]
pub enum LinearKind {
    /// Convolution.
    Conv(ConvShape),
    /// Matrix product.
    MatMul(MatMulShape),
    /// Per-channel affine map.
    Affine(AffineShape),
}

/// A linear layer before its output quantization is known.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearDraft {
    /// Dimensions.
    pub kind: LinearKind,
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
        let LinearDraft {
            kind,
            weights,
            weight_ty,
            bias,
            ..
        } = self;
        match kind {
            LinearKind::Conv(shape) => LayerOp::Conv(Linear {
                shape,
                weight_ty,
                weights,
                bias,
                requant,
                acc: None,
            }),
            LinearKind::MatMul(shape) => LayerOp::MatMul(Linear {
                shape,
                weight_ty,
                weights,
                bias,
                requant,
                acc: None,
            }),
            LinearKind::Affine(shape) => LayerOp::Affine(Linear {
                shape,
                weight_ty,
                weights,
                bias,
                requant,
                acc: None,
            }),
        }
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
    fn per_tensor(&self, node: &NodeProto) -> Result<(f32, i64)> {
        if self.scale.len() != 1 || self.zero_point.len() != 1 {
            return Err(unsupported(node, "per-axis quantization of an activation"));
        }
        Ok((self.scale[0], self.zero_point[0]))
    }
}

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

/// The state of the walk: ONNX values and the graph being built.
pub struct Ctx {
    values: HashMap<String, Value>,
    /// The graph being built.
    pub graph: LayerGraph,
    input_defined: bool,
    /// Default-domain opset version.
    pub opset: i64,
}

impl Ctx {
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
            .add_tensor(TensorFact::new(name, shape, ty, zero_point, scale))
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
        let out = self.graph.add_tensor(TensorFact {
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

    /// Quantizes a value (the QuantizeLinear semantics), emitting the layers it needs.
    ///
    /// # Errors
    /// Values that cannot be quantized, per-axis activation quantization.
    pub fn quantize(
        &mut self,
        node: &NodeProto,
        x: Value,
        q: &QParams,
        out_name: &str,
    ) -> Result<Value> {
        match x {
            Value::Const(c) => {
                let ConstData::Float(v) = &c.data else {
                    return Err(unsupported(node, "quantizing an integer constant"));
                };
                let mut qc = QConst::new(node, c.dims.clone(), Vec::new(), q.ty, q)?;
                qc.values = v
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        let s = qc.slice_of(i);
                        let r =
                            round_half_even(f64::from(x / qc.scale[s])) as i64 + qc.zero_point[s];
                        r.clamp(q.ty.min(), q.ty.max())
                    })
                    .collect();
                Ok(Value::ConstQuant(qc))
            }
            Value::FloatInput(shape) => {
                let (s, zp) = q.per_tensor(node)?;
                if self.input_defined {
                    return Err(unsupported(node, "the float input is quantized twice"));
                }
                let input_name = node.input[0].clone();
                let t = self.tensor(&input_name, shape.clone(), q.ty, zp, s);
                self.graph.input = Port {
                    name: input_name,
                    tensor: t,
                };
                self.input_defined = true;
                Ok(Value::Quant(t))
            }
            Value::Real(t) => {
                let (s, zp) = q.per_tensor(node)?;
                let f = self.graph.tensor(t);
                if f.scale == s && f.zero_point == zp && f.ty == q.ty {
                    return Ok(Value::Quant(t));
                }
                let p = Pending {
                    op: PendingOp::Clamp(t),
                    shape: f.shape.clone(),
                    clamp: RealClamp::default(),
                    names: vec![],
                };
                self.finish(node, p, s, zp, q.ty, out_name)
            }
            Value::Pending(p) => {
                let (s, zp) = q.per_tensor(node)?;
                self.finish(node, p, s, zp, q.ty, out_name)
            }
            _ => Err(unsupported(
                node,
                "QuantizeLinear of an already quantized value",
            )),
        }
    }

    /// Dequantizes a value (the DequantizeLinear semantics).
    ///
    /// # Errors
    /// Parameters that disagree with the tensor's own, non-integer values.
    pub fn dequantize(&mut self, node: &NodeProto, x: Value, q: &QParams) -> Result<Value> {
        match x {
            Value::Quant(t) => {
                let (s, zp) = q.per_tensor(node)?;
                let is_int_input = t == self.graph.input.tensor && !self.input_defined;
                let f = self.graph.tensor_mut(t);
                if is_int_input {
                    f.scale = s;
                    f.zero_point = zp;
                    f.range = type_range(f.ty, zp);
                    self.input_defined = true;
                } else if f.scale != s || f.zero_point != zp {
                    return Err(unsupported(
                        node,
                        "dequantization parameters differ from the tensor's quantization",
                    ));
                }
                Ok(Value::Real(t))
            }
            Value::Const(Const {
                dims,
                data: ConstData::Int { ty, values },
            }) => Ok(Value::ConstReal(QConst::new(node, dims, values, ty, q)?)),
            Value::ConstQuant(c) => Ok(Value::ConstReal(QConst::new(
                node, c.dims, c.values, c.ty, q,
            )?)),
            _ => Err(unsupported(
                node,
                "DequantizeLinear of a value that is not an integer tensor",
            )),
        }
    }

    /// Turns a pending computation into integer layers whose output has scale `s`, zero point
    /// `zp` and type `ty`.
    fn finish(
        &mut self,
        node: &NodeProto,
        p: Pending,
        s: f32,
        zp: i64,
        ty: IntType,
        out_name: &str,
    ) -> Result<Value> {
        let (tlo, thi) = type_range(ty, zp);
        let sy = f64::from(s);
        let bound = |b: Option<f32>, default: i64| {
            b.map(|b| (round_half_even(f64::from(b) / sy) as i64).clamp(tlo, thi))
                .unwrap_or(default)
        };
        let clamp = (
            bound(p.clamp.lo, tlo).max(tlo),
            bound(p.clamp.hi, thi).min(thi),
        );
        if clamp.0 > clamp.1 {
            return Err(unsupported(
                node,
                "the fused clip leaves no representable value",
            ));
        }
        let mut names = p.names.clone();
        if names.is_empty() {
            names.push(node.name.clone());
        }
        let name = names.join("+");
        let out = self
            .graph
            .add_tensor(TensorFact::new(out_name, p.shape.clone(), ty, zp, s));
        let scale_of = |g: &LayerGraph, t: TensorId| f64::from(g.tensor(t).scale);
        let (op, inputs) = match p.op {
            PendingOp::Linear(d) => {
                let ms: Vec<f64> = d.acc_scale.iter().map(|a| a / sy).collect();
                let (multipliers, shift) = multipliers(&ms);
                let input = d.input;
                (
                    d.into_op(Some(Requant {
                        multipliers,
                        shift,
                        clamp,
                    })),
                    vec![input],
                )
            }
            PendingOp::Add(a, b) => {
                let (m, shift) =
                    multipliers(&[scale_of(&self.graph, a) / sy, scale_of(&self.graph, b) / sy]);
                (
                    LayerOp::Add(AddSpec {
                        m_a: m[0],
                        m_b: m[1],
                        shift,
                        clamp,
                    }),
                    vec![a, b],
                )
            }
            PendingOp::AvgPool {
                input,
                pool,
                count_include_pad,
            } => {
                let sx = scale_of(&self.graph, input);
                let n = pool.kernel[0] * pool.kernel[1];
                let ms: Vec<f64> = (1..=n).map(|c| sx / (sy * c as f64)).collect();
                let (multipliers, shift) = multipliers(&ms);
                (
                    LayerOp::AvgPool(AvgPoolSpec {
                        pool,
                        count_include_pad,
                        multipliers,
                        shift,
                        clamp,
                    }),
                    vec![input],
                )
            }
            PendingOp::Clamp(t) => {
                let (multipliers, shift) = multipliers(&[scale_of(&self.graph, t) / sy]);
                (
                    LayerOp::Rescale(PublicRequant {
                        multipliers,
                        shift,
                        clamp,
                    }),
                    vec![t],
                )
            }
            PendingOp::Concat(ts) => {
                let mut inputs = Vec::with_capacity(ts.len());
                for t in ts {
                    let f = self.graph.tensor(t).clone();
                    if f.scale == s && f.zero_point == zp && f.ty == ty && clamp == (tlo, thi) {
                        inputs.push(t);
                        continue;
                    }
                    let (multipliers, shift) = multipliers(&[f64::from(f.scale) / sy]);
                    let r = self.graph.add_tensor(TensorFact::new(
                        format!("{}.rescaled", f.name),
                        f.shape.clone(),
                        ty,
                        zp,
                        s,
                    ));
                    let op = LayerOp::Rescale(PublicRequant {
                        multipliers,
                        shift,
                        clamp,
                    });
                    self.graph.add_layer(Layer {
                        name: format!("{name}.{}", f.name),
                        op,
                        inputs: vec![t],
                        output: r,
                    });
                    inputs.push(r);
                }
                (LayerOp::Concat, inputs)
            }
        };
        self.graph.add_layer(Layer {
            name,
            op,
            inputs,
            output: out,
        });
        Ok(Value::Quant(out))
    }

    /// Emits a pending linear layer without requantization: its output is the raw accumulator
    /// (ConvInteger, MatMulInteger), an int32 tensor with scale 1.
    ///
    /// # Errors
    /// If the pending computation is not a linear layer with unit accumulator scale.
    pub fn finish_raw(&mut self, node: &NodeProto, p: Pending) -> Result<Value> {
        let PendingOp::Linear(d) = p.op else {
            return Err(unsupported(
                node,
                "only linear layers can output their raw accumulator",
            ));
        };
        if d.acc_scale.iter().any(|&s| s != 1.0) || !p.clamp.is_none() {
            return Err(unsupported(
                node,
                "a raw accumulator output must have unit scale",
            ));
        }
        let out_name = node.output.first().cloned().unwrap_or_default();
        let out = self.tensor(
            &out_name,
            p.shape,
            IntType {
                bits: 32,
                signed: true,
            },
            0,
            1.0,
        );
        let input = d.input;
        self.graph.add_layer(Layer {
            name: node.name.clone(),
            op: d.into_op(None),
            inputs: vec![input],
            output: out,
        });
        Ok(Value::Quant(out))
    }

    /// Tightens the clamp of the layer producing `t` (a Clip right after a QuantizeLinear), or
    /// adds a clamping rescale when `t` has no such producer; narrows the type to `ty`.
    pub fn clip_quant(
        &mut self,
        node: &NodeProto,
        t: TensorId,
        lo: i64,
        hi: i64,
        ty: IntType,
    ) -> Result<Value> {
        let f = self.graph.tensor(t).clone();
        let (clo, chi) = (lo - f.zero_point, hi - f.zero_point);
        let tightened = self
            .graph
            .producer(t)
            .filter(|_| self.graph.consumers(t).is_empty())
            .is_some_and(|p| {
                let c = match &mut self.graph.layer_mut(p).op {
                    LayerOp::Conv(l) => l.requant.as_mut().map(|r| &mut r.clamp),
                    LayerOp::MatMul(l) => l.requant.as_mut().map(|r| &mut r.clamp),
                    LayerOp::Affine(l) => l.requant.as_mut().map(|r| &mut r.clamp),
                    LayerOp::Rescale(r) => Some(&mut r.clamp),
                    LayerOp::Add(a) => Some(&mut a.clamp),
                    LayerOp::AvgPool(a) => Some(&mut a.clamp),
                    _ => None,
                };
                c.map(|c| *c = (c.0.max(clo), c.1.min(chi))).is_some()
            });
        if tightened {
            let f = self.graph.tensor_mut(t);
            f.ty = ty;
            f.range = (f.range.0.max(clo), f.range.1.min(chi));
            if f.range.0 > f.range.1 {
                return Err(unsupported(node, "the clip leaves no representable value"));
            }
            return Ok(Value::Quant(t));
        }
        let out = self.graph.add_tensor(TensorFact {
            ty,
            range: (clo, chi),
            ..TensorFact::new(
                node.output.first().cloned().unwrap_or_default(),
                f.shape.clone(),
                ty,
                f.zero_point,
                f.scale,
            )
        });
        let op = LayerOp::Rescale(PublicRequant {
            multipliers: vec![1],
            shift: 0,
            clamp: (clo, chi),
        });
        self.graph.add_layer(Layer {
            name: node.name.clone(),
            op,
            inputs: vec![t],
            output: out,
        });
        Ok(Value::Quant(out))
    }
}

/// Smallest integer type holding `[lo, hi]` (signed when `lo < 0`; narrow ranges such as
/// `[-7, 7]` take the same width as `[-8, 7]`).
pub fn type_for_range(lo: i64, hi: i64) -> IntType {
    let signed = lo < 0;
    let bits = (1..=32)
        .find(|&b| {
            let t = IntType { bits: b, signed };
            t.min() <= lo && hi <= t.max()
        })
        .unwrap_or(32);
    IntType { bits, signed }
}

/// A non-negative axis for a tensor of `rank` dimensions.
pub(crate) fn normalize_axis(node: &NodeProto, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r.max(1)).contains(&a) {
        Ok(a as usize)
    } else {
        Err(Error::model(
            &node.name,
            &node.op_type,
            format!("axis {axis} out of range for rank {rank}"),
        ))
    }
}

/// An integer attribute.
pub fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == AttributeType::Int as i32)
        .map(|a| a.i)
}

/// A float attribute.
pub fn attr_float(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == AttributeType::Float as i32)
        .map(|a| a.f)
}

/// An integer-list attribute.
pub fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == AttributeType::Ints as i32)
        .map(|a| a.ints.clone())
}

/// A string attribute.
pub fn attr_str(node: &NodeProto, name: &str) -> Option<String> {
    node.attribute
        .iter()
        .find(|a| a.name == name && a.r#type == AttributeType::String as i32)
        .map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// Non-negative sizes from an integer-list attribute.
///
/// # Errors
/// Negative or oversized entries.
pub fn sizes(node: &NodeProto, v: &[i64]) -> Result<Vec<usize>> {
    v.iter()
        .map(|&x| usize::try_from(x).ok().filter(|&x| x < 1 << 24))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::model(&node.name, &node.op_type, format!("invalid sizes {v:?}")))
}

/// Builds the layer graph of a model.
///
/// # Errors
/// Every unsupported node at once ([`Error::Unsupported`]), or the first malformed node.
pub fn build(model: &ModelProto, name: &str) -> Result<LayerGraph> {
    let graph = model.graph.as_ref().ok_or_else(|| Error::Decode {
        path: name.to_string(),
        reason: "the model has no graph".into(),
    })?;
    let registry = registry::OpRegistry::standard();
    let missing: Vec<UnsupportedNode> = graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| registry.get(&n.domain, &n.op_type).is_none())
        .map(|(i, n)| UnsupportedNode {
            name: if n.name.is_empty() {
                format!("<unnamed #{i}>")
            } else {
                n.name.clone()
            },
            op_type: n.op_type.clone(),
            domain: domain_name(&n.domain).to_string(),
            reason: None,
        })
        .collect();
    if !missing.is_empty() {
        return Err(Error::Unsupported(missing));
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(21);
    let mut cx = Ctx {
        values: HashMap::new(),
        graph: LayerGraph::new(name),
        input_defined: false,
        opset,
    };
    for t in &graph.initializer {
        cx.values
            .insert(t.name.clone(), Value::Const(tensor::decode(t)?));
    }
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !cx.values.contains_key(&i.name))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(Error::model(
            name,
            "graph",
            format!(
                "{} graph inputs besides initializers; heqc compiles models with exactly one",
                inputs.len()
            ),
        ));
    };
    let bad_input = |r: &str| Error::model(&input.name, "graph input", r.to_string());
    let Some(type_proto::Value::TensorType(tt)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(bad_input("not a tensor"));
    };
    let dims = tt
        .shape
        .as_ref()
        .map(|s| s.dim.as_slice())
        .unwrap_or_default();
    let mut shape = Vec::new();
    for (i, d) in dims.iter().enumerate() {
        match &d.value {
            Some(dimension::Value::DimValue(v)) if *v >= 0 && *v < 1 << 24 => {
                shape.push(*v as usize)
            }
            _ if i == 0 => shape.push(1),
            _ => {
                return Err(bad_input(
                    "symbolic or invalid dimension after the batch dimension",
                ));
            }
        }
    }
    if shape.is_empty() {
        return Err(bad_input("a scalar input has no batch dimension"));
    }
    let sample = shape[1..].to_vec();
    if sample
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .is_none_or(|n| n > MAX_INPUT_ELEMENTS)
    {
        return Err(bad_input("more than 2^28 elements per sample"));
    }
    let v = if tt.elem_type == tensor::dtype::FLOAT {
        Value::FloatInput(sample)
    } else if let Some(ty) = tensor::int_type(tt.elem_type) {
        let t = cx.tensor(&input.name, sample, ty, 0, 1.0);
        cx.graph.input = Port {
            name: input.name.clone(),
            tensor: t,
        };
        Value::Quant(t)
    } else {
        return Err(bad_input(
            "element type is neither float nor an integer type",
        ));
    };
    cx.values.insert(input.name.clone(), v);
    for node in &graph.node {
        let b = registry
            .get(&node.domain, &node.op_type)
            .expect("checked above");
        b(&mut cx, node)?;
    }
    let [output] = graph.output.as_slice() else {
        return Err(Error::model(
            name,
            "graph",
            format!(
                "{} graph outputs; heqc compiles models with exactly one",
                graph.output.len()
            ),
        ));
    };
    let t = match cx.values.get(&output.name) {
        Some(Value::Real(t) | Value::Quant(t)) => *t,
        Some(_) => {
            return Err(Error::model(
                &output.name,
                "graph output",
                "the output is not a quantized tensor",
            ));
        }
        None => {
            return Err(Error::model(
                &output.name,
                "graph output",
                "no node computes the output",
            ));
        }
    };
    if cx.graph.tensors().is_empty() {
        return Err(bad_input("the float input is never quantized"));
    }
    cx.graph.output = Port {
        name: output.name.clone(),
        tensor: t,
    };
    Ok(cx.graph)
}

/// Centred weights (original order), their type and the scale of each output channel of a
/// dequantized constant whose output channels lie along `out_axis`.
///
/// # Errors
/// Per-axis quantization along another axis; weights beyond 32 bits.
pub(crate) fn weight_parts(
    node: &NodeProto,
    w: &QConst,
    out_axis: usize,
) -> Result<(Vec<i32>, IntType, Vec<f64>)> {
    let m = *w
        .dims
        .get(out_axis)
        .ok_or_else(|| Error::model(&node.name, &node.op_type, "weight rank too small"))?;
    if w.scale.len() > 1 && w.axis != out_axis {
        return Err(unsupported(
            node,
            "weights quantized per slice along an axis other than the output channels",
        ));
    }
    let mut centred = Vec::with_capacity(w.values.len());
    for i in 0..w.values.len() {
        let c = w.centred(i);
        centred
            .push(i32::try_from(c).map_err(|_| unsupported(node, "weights wider than 32 bits"))?);
    }
    let ty = if w.zero_point.iter().all(|&z| z == 0) {
        w.ty
    } else {
        let lo = centred.iter().copied().min().unwrap_or(0);
        let hi = centred.iter().copied().max().unwrap_or(0);
        type_for_range(i64::from(lo.min(-1)), i64::from(hi))
    };
    let scales = (0..m)
        .map(|c| f64::from(w.scale[if w.scale.len() == 1 { 0 } else { c }]))
        .collect();
    Ok((centred, ty, scales))
}

/// The bias in accumulator units (`acc_scale[c]` per output channel).
///
/// # Errors
/// A bias that is not a constant of one value per output channel.
pub(crate) fn bias_acc(
    node: &NodeProto,
    bias: Option<Value>,
    acc_scale: &[f64],
) -> Result<Vec<i64>> {
    let m = acc_scale.len();
    let bad = || {
        Error::model(
            &node.name,
            &node.op_type,
            format!("the bias must be a constant of {m} values"),
        )
    };
    let to_acc = |real: f64, c: usize| -> Result<i64> {
        let v = (real / acc_scale[c]).round();
        if v.is_finite() && v.abs() < 2f64.powi(62) {
            Ok(v as i64)
        } else {
            Err(unsupported(node, "bias out of range"))
        }
    };
    match bias {
        None => Ok(vec![0; m]),
        Some(Value::ConstReal(b)) if b.values.len() == m => (0..m)
            .map(|c| {
                let s = f64::from(b.scale[b.slice_of(c)]);
                if (s / acc_scale[c] - 1.0).abs() < 1e-6 {
                    Ok(b.centred(c))
                } else {
                    to_acc(b.real(c), c)
                }
            })
            .collect(),
        Some(Value::Const(Const {
            data: ConstData::Int { values, .. },
            ..
        })) if values.len() == m => Ok(values),
        Some(Value::Const(
            c @ Const {
                data: ConstData::Float(_),
                ..
            },
        )) if c.len() == m => c
            .to_f64()
            .into_iter()
            .enumerate()
            .map(|(i, r)| to_acc(r, i))
            .collect(),
        _ => Err(bad()),
    }
}

/// Resolves ONNX padding (`pads` or `auto_pad`) of a 2-D window over `[H, W]`.
///
/// # Errors
/// Malformed padding attributes.
pub(crate) fn pads_2d(
    node: &NodeProto,
    in_hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> Result<[usize; 4]> {
    let auto = attr_str(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" => match attr_ints(node, "pads") {
            None => Ok([0; 4]),
            Some(p) => {
                let p = sizes(node, &p)?;
                <[usize; 4]>::try_from(p).map_err(|_| {
                    Error::model(&node.name, &node.op_type, "pads must have 4 entries")
                })
            }
        },
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = [0; 4];
            for d in 0..2 {
                let out = in_hw[d].div_ceil(stride[d]);
                let total = ((out - 1) * stride[d] + kernel[d]).saturating_sub(in_hw[d]);
                let small = total / 2;
                let (begin, end) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                p[d] = begin;
                p[d + 2] = end;
            }
            Ok(p)
        }
        other => Err(Error::model(
            &node.name,
            &node.op_type,
            format!("auto_pad '{other}'"),
        )),
    }
}

/// Strides (default 1) of a 2-D window, rejecting dilation and ceil mode.
///
/// # Errors
/// Dilations other than 1, `ceil_mode`, malformed strides.
pub(crate) fn strides_2d(node: &NodeProto) -> Result<[usize; 2]> {
    if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&x| x != 1)) {
        return Err(unsupported(node, "dilation"));
    }
    if attr_int(node, "ceil_mode").is_some_and(|c| c != 0) {
        return Err(unsupported(node, "ceil_mode"));
    }
    match attr_ints(node, "strides") {
        None => Ok([1, 1]),
        Some(s) => {
            let s = sizes(node, &s)?;
            match s.as_slice() {
                [a, b] if *a > 0 && *b > 0 => Ok([*a, *b]),
                _ => Err(unsupported(node, "strides other than 2-D positive")),
            }
        }
    }
}

/// `[C, H, W]` of a feature-map tensor.
///
/// # Errors
/// Tensors that are not 3-D per sample.
pub(crate) fn chw(node: &NodeProto, shape: &[usize]) -> Result<[usize; 3]> {
    <[usize; 3]>::try_from(shape).map_err(|_| {
        unsupported(
            node,
            &format!("input shape {shape:?} is not [C, H, W] per sample"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_keep_24_significant_bits() {
        // 0.25 = 2^-2: k = 23 + 2 = 25, m = 2^23.
        assert_eq!(multipliers(&[0.25]), (vec![1 << 23], 25));
        // The largest sets k; the others share it (and may be negative).
        let (m, k) = multipliers(&[0.75, -0.1]);
        assert_eq!(k, 24);
        assert_eq!(m, vec![12_582_912, -1_677_722]);
        // Multipliers ≥ 2^24 keep k = 0.
        assert_eq!(multipliers(&[3.0e7]), (vec![30_000_000], 0));
        assert_eq!(multipliers(&[0.0]), (vec![0], 0));
    }

    #[test]
    fn rounding_and_types() {
        assert_eq!(
            [0.5, 1.5, 2.5, -0.5, -1.5, 2.4].map(round_half_even),
            [0.0, 2.0, 2.0, 0.0, -2.0, 2.0]
        );
        assert_eq!(
            type_for_range(-7, 7),
            IntType {
                bits: 4,
                signed: true
            }
        );
        assert_eq!(
            type_for_range(0, 15),
            IntType {
                bits: 4,
                signed: false
            }
        );
        assert_eq!(
            type_for_range(-1, 1),
            IntType {
                bits: 2,
                signed: true
            }
        );
        assert_eq!(
            type_for_range(-127, 127),
            IntType {
                bits: 8,
                signed: true
            }
        );
    }

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
