//! `Layer`: one integer operation of the layer graph, with its server-private data inline.
//!
//! The operations are the plan's ([`heq_runtime::plan::Op`]) with two differences: the three
//! linear operations are one [`LayerOp::Linear`] whose [`LinearShape`] says which, and a linear
//! layer carries its weights and bias instead of a protocol (the selection stage chooses that
//! after lowering).

use heq_runtime::params::conv::{affine_as_conv, matmul_as_conv};
use heq_runtime::plan::{
    AddSpec, AffineShape, AvgPoolSpec, ConvShape, IntType, MatMulShape, PoolShape, Requant,
    Rounding, TensorId,
};

/// One layer of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// ONNX node name(s) this layer was built from, joined with `+`.
    pub name: String,
    /// What it computes.
    pub op: LayerOp,
    /// Input tensors.
    pub inputs: Vec<TensorId>,
    /// Output tensor.
    pub output: TensorId,
}

/// The operation of a layer; the plan's [`heq_runtime::plan::Op`] with the weights inline.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerOp {
    /// Convolution, matrix product or per-channel affine map, run under HE.
    Linear(Linear),
    /// Public rescaling.
    Rescale(Requant),
    /// Residual add with scale alignment.
    Add(AddSpec),
    /// Max pooling.
    MaxPool(PoolShape),
    /// Average pooling with a multiplier per window count.
    AvgPool(AvgPoolSpec),
    /// Channel concatenation.
    Concat,
    /// Change of shape only.
    Reshape,
}

impl LayerOp {
    /// Short name, as the plan's `Op::kind` prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerOp::Linear(l) => l.shape.kind(),
            LayerOp::Rescale(_) => "rescale",
            LayerOp::Add(_) => "add",
            LayerOp::MaxPool(_) => "maxpool",
            LayerOp::AvgPool(_) => "avgpool",
            LayerOp::Concat => "concat",
            LayerOp::Reshape => "reshape",
        }
    }

    /// The output clamp and tie rule of a layer that requantizes (a linear layer with a
    /// requantization, `Rescale`, `Add`, `AvgPool`), mutably.
    pub fn clamp_and_rounding_mut(&mut self) -> Option<(&mut (i64, i64), &mut Rounding)> {
        let r = match self {
            LayerOp::Linear(l) => l.requant.as_mut()?,
            LayerOp::Rescale(r) => r,
            LayerOp::AvgPool(a) => &mut a.requant,
            LayerOp::Add(a) => return Some((&mut a.clamp, &mut a.rounding)),
            LayerOp::MaxPool(_) | LayerOp::Concat | LayerOp::Reshape => return None,
        };
        Some((&mut r.clamp, &mut r.rounding))
    }
}

/// A linear layer: shape, integer weights and bias, and the fused requantization.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Which linear operation, and its dimensions.
    pub shape: LinearShape,
    /// Element type of the (centred) weights.
    pub weight_ty: IntType,
    /// Centred weights, row-major in the plan's layout.
    pub weights: Vec<i32>,
    /// Bias per output channel, in accumulator units.
    pub bias: Vec<i64>,
    /// Requantization of the accumulator (one multiplier per output channel); `None` outputs
    /// the raw accumulator. Its tie rule is `HalfEven` until [`crate::passes::ProveNoTies`]
    /// proves no tie occurs.
    pub requant: Option<Requant>,
    /// Accumulator widths, once range analysis has run.
    pub acc: Option<AccBits>,
}

/// Accumulator widths of a linear layer (signed bits, sign included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccBits {
    /// Sound width from per-channel weight sums, the input range and the bias.
    pub sound: u32,
    /// `b_w + b_a + ⌈log2(terms)⌉ + 1`.
    pub naive: u32,
}

/// The kind and dimensions of a linear layer: the plan's `Op::{Conv, MatMul, Affine}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinearShape {
    /// 2-D convolution, weights `[M, C/groups, h, w]`.
    Conv(ConvShape),
    /// Matrix product, weights `[inner, cols]`.
    MatMul(MatMulShape),
    /// Per-channel affine map (stand-alone BatchNormalization), weights `[C]`.
    Affine(AffineShape),
}

impl LinearShape {
    /// Short name, as the plan's `Op::kind` prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            LinearShape::Conv(s) if s.is_depthwise() => "dwconv",
            LinearShape::Conv(_) => "conv",
            LinearShape::MatMul(_) => "matmul",
            LinearShape::Affine(_) => "affine",
        }
    }

    /// The convolution the protocols run: a matrix product is a 1×1 convolution over `rows`
    /// positions, an affine map a depthwise 1×1 convolution (as the cost model sees them).
    pub fn as_conv(&self) -> ConvShape {
        match self {
            LinearShape::Conv(s) => s.clone(),
            LinearShape::MatMul(s) => matmul_as_conv(s),
            LinearShape::Affine(s) => affine_as_conv(s),
        }
    }

    /// Number of output channels.
    pub fn out_channels(&self) -> usize {
        self.as_conv().out_channels
    }

    /// Number of weights.
    pub fn weight_len(&self) -> usize {
        self.out_channels() * self.terms()
    }

    /// Products summed into one accumulator.
    pub fn terms(&self) -> usize {
        let c = self.as_conv();
        c.in_channels / c.groups.max(1) * c.kernel[0] * c.kernel[1]
    }

    /// Indices of the weights feeding output channel `m`: a contiguous filter, except for a
    /// matrix product, whose column `m` is strided.
    pub fn channel_weights(&self, m: usize) -> Vec<usize> {
        match self {
            LinearShape::MatMul(s) => (0..s.inner).map(|i| i * s.cols + m).collect(),
            LinearShape::Conv(_) | LinearShape::Affine(_) => {
                let per = self.terms();
                (m * per..(m + 1) * per).collect()
            }
        }
    }
}
