//! `Layer`: one integer operation of the layer graph, with its server-private data inline.

use heq_runtime::plan::{
    AddSpec, AffineShape, AvgPoolSpec, ConvShape, IntType, MatMulShape, PoolShape, PublicRequant,
    TensorId,
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
    /// 2-D convolution, weights `[M, C/groups, h, w]`.
    Conv(Linear<ConvShape>),
    /// Matrix product, weights `[inner, cols]`.
    MatMul(Linear<MatMulShape>),
    /// Per-channel affine map (stand-alone BatchNormalization), weights `[C]`.
    Affine(Linear<AffineShape>),
    /// Public rescaling.
    Rescale(PublicRequant),
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
            LayerOp::Conv(l) if l.shape.is_depthwise() => "dwconv",
            LayerOp::Conv(_) => "conv",
            LayerOp::MatMul(_) => "matmul",
            LayerOp::Affine(_) => "affine",
            LayerOp::Rescale(_) => "rescale",
            LayerOp::Add(_) => "add",
            LayerOp::MaxPool(_) => "maxpool",
            LayerOp::AvgPool(_) => "avgpool",
            LayerOp::Concat => "concat",
            LayerOp::Reshape => "reshape",
        }
    }

    /// The shape-independent view of a linear layer, if this is one.
    pub fn linear(&self) -> Option<LinearView<'_>> {
        match self {
            LayerOp::Conv(l) => Some(l.view()),
            LayerOp::MatMul(l) => Some(l.view()),
            LayerOp::Affine(l) => Some(l.view()),
            _ => None,
        }
    }

    /// Mutable access to the accumulator widths of a linear layer.
    pub fn acc_mut(&mut self) -> Option<&mut Option<AccBits>> {
        match self {
            LayerOp::Conv(l) => Some(&mut l.acc),
            LayerOp::MatMul(l) => Some(&mut l.acc),
            LayerOp::Affine(l) => Some(&mut l.acc),
            _ => None,
        }
    }
}

/// A linear layer: shape, integer weights and bias, and the fused requantization.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear<S> {
    /// Dimensions.
    pub shape: S,
    /// Element type of the (centred) weights.
    pub weight_ty: IntType,
    /// Centred weights, row-major in the plan's layout.
    pub weights: Vec<i32>,
    /// Bias per output channel, in accumulator units.
    pub bias: Vec<i64>,
    /// Requantization of the accumulator; `None` outputs the raw accumulator.
    pub requant: Option<Requant>,
    /// Accumulator widths, once range analysis has run.
    pub acc: Option<AccBits>,
}

/// Requantization `y = clamp(floor((acc·m[c] + 2^(k−1)) / 2^k), lo, hi)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requant {
    /// Multiplier per output channel.
    pub multipliers: Vec<i64>,
    /// Right shift `k`.
    pub shift: u32,
    /// Output clamp on centred values.
    pub clamp: (i64, i64),
}

/// Accumulator widths of a linear layer (signed bits, sign included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccBits {
    /// Sound width from per-channel weight sums, the input range and the bias.
    pub sound: u32,
    /// `b_w + b_a + ⌈log2(terms)⌉ + 1`.
    pub naive: u32,
}

/// How the weights of a linear layer group into output channels.
pub trait LinearShape {
    /// Number of output channels.
    fn out_channels(&self) -> usize;
    /// Number of weights.
    fn weight_len(&self) -> usize;
    /// Products summed into one accumulator.
    fn terms(&self) -> usize;
    /// Indices of the weights feeding output channel `m`.
    fn channel_weights(&self, m: usize) -> Vec<usize>;
}

impl LinearShape for ConvShape {
    fn out_channels(&self) -> usize {
        self.out_channels
    }
    fn weight_len(&self) -> usize {
        ConvShape::weight_len(self)
    }
    fn terms(&self) -> usize {
        self.in_channels / self.groups.max(1) * self.kernel[0] * self.kernel[1]
    }
    fn channel_weights(&self, m: usize) -> Vec<usize> {
        let per = self.terms();
        (m * per..(m + 1) * per).collect()
    }
}

impl LinearShape for MatMulShape {
    fn out_channels(&self) -> usize {
        self.cols
    }
    fn weight_len(&self) -> usize {
        self.inner * self.cols
    }
    fn terms(&self) -> usize {
        self.inner
    }
    fn channel_weights(&self, m: usize) -> Vec<usize> {
        (0..self.inner).map(|i| i * self.cols + m).collect()
    }
}

impl LinearShape for AffineShape {
    fn out_channels(&self) -> usize {
        self.channels
    }
    fn weight_len(&self) -> usize {
        self.channels
    }
    fn terms(&self) -> usize {
        1
    }
    fn channel_weights(&self, m: usize) -> Vec<usize> {
        vec![m]
    }
}

/// A linear layer seen through its [`LinearShape`], whatever its kind.
pub struct LinearView<'a> {
    /// Dimensions.
    pub shape: &'a dyn LinearShape,
    /// Weight type.
    pub weight_ty: IntType,
    /// Weights.
    pub weights: &'a [i32],
    /// Bias.
    pub bias: &'a [i64],
    /// Requantization.
    pub requant: Option<&'a Requant>,
    /// Accumulator widths.
    pub acc: Option<AccBits>,
}

impl<S: LinearShape> Linear<S> {
    /// The shape-independent view.
    pub fn view(&self) -> LinearView<'_> {
        LinearView {
            shape: &self.shape,
            weight_ty: self.weight_ty,
            weights: &self.weights,
            bias: &self.bias,
            requant: self.requant.as_ref(),
            acc: self.acc,
        }
    }
}
