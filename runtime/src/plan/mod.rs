//! The plan: the one description of a private inference that the compiler writes and both parties
//! execute.
//!
//! A plan has a **public part** ([`PublicPlan`]: architecture, shapes, bit widths, activation
//! scales, protocol parameters, the client's plaintext [`Epilogue`]), which both parties hold
//! and whose hash they compare before a run, and a **server-only part** ([`ServerWeights`]:
//! weights and biases), which never leaves the server. A client plan is a [`Plan`] whose
//! `weights` is `None`.
//!
//! # Integer semantics
//!
//! Every tensor holds **centred integers** `v = q − zero_point`, where `q` is the ONNX quantized
//! value; the real value is `scale · v`. The exact rules each layer applies are written in
//! `docs/semantics.md` and implemented by [`crate::reference`], which is the definition every
//! two-party run reproduces bit for bit. In short, a linear layer computes the accumulator
//! `acc[c] = bias[c] + Σ w·x` over centred values, then a [`Requant`]:
//! `y = clamp(round(acc·m[c] / 2^k), lo, hi)`, rounding to nearest with ties to even (see
//! [`Rounding`]).

mod epilogue;
mod io;
mod validate;

pub use epilogue::{
    ChannelScales, ElementKind, Epilogue, EpilogueOp, EpilogueStep, MAX_EPILOGUE_RANK,
    MAX_EPILOGUE_STEPS, TopKOutput, ValueType,
};
pub use io::{
    PLAN_FORMAT_VERSION, PLAN_MAGIC, read_plan, read_plan_bytes, write_plan, write_plan_bytes,
};
pub use validate::{MAX_LAYER_MACS, MAX_TENSOR_ELEMENTS, MAX_TOTAL_ELEMENTS, validate};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Index of a tensor in [`PublicPlan::tensors`]. Displayed as `t12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TensorId(pub u32);

/// Index of a layer in [`PublicPlan::layers`]. Displayed as `l3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LayerId(pub u32);

impl fmt::Display for TensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "l{}", self.0)
    }
}

/// A complete plan: public part plus, on the server, the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// What both parties know.
    pub public: PublicPlan,
    /// What only the server knows; `None` in a client plan.
    pub weights: Option<ServerWeights>,
}

/// The public part of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublicPlan {
    /// Name of the model (file stem of the ONNX file or its graph name).
    pub model_name: String,
    /// The model input, as the client provides it.
    pub input: IoSpec,
    /// The tensor the server reveals to the client at the end of a run; `name` is the ONNX
    /// name of the model output, which [`PublicPlan::epilogue`] computes from it (when the
    /// epilogue is empty, the output is this tensor, dequantized).
    pub output: IoSpec,
    /// Every tensor, indexed by [`TensorId`].
    pub tensors: Vec<TensorInfo>,
    /// Every layer in execution (topological) order, indexed by [`LayerId`].
    pub layers: Vec<Layer>,
    /// Protocol choices that apply to the whole plan.
    pub protocol: GlobalProtocol,
    /// What the client computes in plaintext after the reveal (`docs/semantics.md` §5).
    pub epilogue: Epilogue,
}

/// How a float model input or output maps to a plan tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IoSpec {
    /// ONNX name of the graph input or output.
    pub name: String,
    /// The plan tensor.
    pub tensor: TensorId,
    /// Shape of one sample, without the batch dimension (e.g. `[1, 16, 16]`).
    pub shape: Vec<usize>,
}

/// Integer element type of a quantized tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IntType {
    /// Bit width of the ONNX element (2 to 32).
    pub bits: u32,
    /// Whether the ONNX element is signed.
    pub signed: bool,
}

impl IntType {
    /// Smallest representable quantized value.
    pub fn min(self) -> i64 {
        if self.signed {
            -(1i64 << (self.bits - 1))
        } else {
            0
        }
    }

    /// Largest representable quantized value.
    pub fn max(self) -> i64 {
        if self.signed {
            (1i64 << (self.bits - 1)) - 1
        } else {
            (1i64 << self.bits) - 1
        }
    }

    /// The centred values `[min − zero_point, max − zero_point]` the type can hold.
    pub fn centred_range(self, zero_point: i64) -> (i64, i64) {
        (self.min() - zero_point, self.max() - zero_point)
    }
}

impl fmt::Display for IntType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", if self.signed { "i" } else { "u" }, self.bits)
    }
}

/// A tensor of the plan: shape, quantization and the sound range of its centred values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// ONNX name of the tensor this one stands for.
    pub name: String,
    /// Shape of one sample: `[C, H, W]` for feature maps, `[rows, features]` or `[features]`.
    pub shape: Vec<usize>,
    /// ONNX element type of the quantized value `q`.
    pub ty: IntType,
    /// Zero point of `q`; the plan stores `v = q − zero_point`.
    pub zero_point: i64,
    /// Real value of one step: `real = scale · v`.
    pub scale: f32,
    /// Sound bounds `[lo, hi]` of every centred value `v` the tensor can hold.
    pub range: (i64, i64),
}

impl TensorInfo {
    /// A tensor whose range is everything its type can hold (until range analysis narrows it).
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        ty: IntType,
        zero_point: i64,
        scale: f32,
    ) -> Self {
        TensorInfo {
            name: name.into(),
            shape,
            ty,
            zero_point,
            scale,
            range: ty.centred_range(zero_point),
        }
    }

    /// Number of elements of one sample.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One layer: its operation, inputs, output and protocol configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// Position in [`PublicPlan::layers`].
    pub id: LayerId,
    /// ONNX node name(s) this layer was built from, joined with `+`.
    pub name: String,
    /// What the layer computes.
    pub op: Op,
    /// Input tensors (one, except for `Add` and `Concat`).
    pub inputs: Vec<TensorId>,
    /// Output tensor.
    pub output: TensorId,
    /// How the layer's nonlinear protocols compute carries (comparisons, truncation carries);
    /// [`CarryDepth::Ripple`] for layers without any.
    pub carry: CarryDepth,
}

/// How a layer's carry computations ([`crate::nonlinear::carry`]) combine the bits: the
/// compiler's per-layer trade of bytes for rounds. Exact costs:
/// [`crate::cost::nonlinear::carries`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CarryDepth {
    /// A ripple chain: one round per bit, 4 bits and 2 random OTs per bit.
    #[default]
    Ripple,
    /// A parallel-prefix tree of generate/propagate pairs: `1 + ⌈log2 len⌉` rounds, about twice
    /// the bytes and 1.5 times the random OTs of the chain.
    Tree,
}

impl fmt::Display for CarryDepth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CarryDepth::Ripple => "ripple",
            CarryDepth::Tree => "tree",
        })
    }
}

/// The operation of a layer. Linear layers (`Conv`, `MatMul`, `Affine`) run under HE; their
/// weights and biases are in [`ServerWeights`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// 2-D convolution (grouped and depthwise included), followed by requantization.
    Conv(LinearLayer<ConvShape>),
    /// `Y[r, :] = X[r, :] · W + bias` for every row `r` (Gemm/FC when `rows = 1`), then
    /// requantization.
    MatMul(LinearLayer<MatMulShape>),
    /// Per-channel `acc[c] = a[c]·x + bias[c]` (a stand-alone BatchNormalization), then
    /// requantization.
    Affine(LinearLayer<AffineShape>),
    /// Public rescaling of one tensor: `y = clamp(round(x·m / 2^k), lo, hi)`
    /// (a Q→DQ→Q chain, a ReLU between two quantizations, a Concat input with another scale).
    Rescale(Requant),
    /// `y = clamp(round((a·m_a + b·m_b) / 2^k), lo, hi)` with public multipliers.
    Add(AddSpec),
    /// Max pooling over windows; padding never wins the maximum.
    MaxPool(PoolShape),
    /// Average pooling: the window sum, then a public requantization whose multiplier depends on
    /// the number of elements counted (see [`AvgPoolSpec`]).
    AvgPool(AvgPoolSpec),
    /// Concatenation along the channel axis (axis 0 of a sample); inputs share scale and zero
    /// point.
    Concat,
    /// A change of shape only (Flatten, Reshape): the row-major data is unchanged.
    Reshape,
}

impl Op {
    /// Short lower-case name of the operation, as `heqc explain` prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(l) if l.shape.is_depthwise() => "dwconv",
            Op::Conv(_) => "conv",
            Op::MatMul(_) => "matmul",
            Op::Affine(_) => "affine",
            Op::Rescale(_) => "rescale",
            Op::Add(_) => "add",
            Op::MaxPool(_) => "maxpool",
            Op::AvgPool(_) => "avgpool",
            Op::Concat => "concat",
            Op::Reshape => "reshape",
        }
    }

    /// Whether this layer runs under homomorphic encryption.
    pub fn is_linear(&self) -> bool {
        matches!(self, Op::Conv(_) | Op::MatMul(_) | Op::Affine(_))
    }

    /// Whether the layer runs a nonlinear protocol that can compute carries (a requantization or
    /// a max pool), i.e. whether its [`Layer::carry`] can matter.
    pub fn computes_carries(&self) -> bool {
        match self {
            Op::Rescale(_) | Op::Add(_) | Op::AvgPool(_) | Op::MaxPool(_) => true,
            op => op.requant().is_some(),
        }
    }

    /// The shape-independent part of a linear layer (`None` for other operations).
    pub fn linear(&self) -> Option<LinearInfo<'_>> {
        match self {
            Op::Conv(l) => Some(l.info()),
            Op::MatMul(l) => Some(l.info()),
            Op::Affine(l) => Some(l.info()),
            _ => None,
        }
    }

    /// The [`Requant`] producing this layer's output: a linear layer's (if it requantizes), a
    /// `Rescale` or an `AvgPool`. `Add` has its own two-input form ([`AddSpec`]).
    pub fn requant(&self) -> Option<&Requant> {
        match self {
            Op::Rescale(r) => Some(r),
            Op::AvgPool(a) => Some(&a.requant),
            op => op.linear().and_then(|l| l.requant),
        }
    }
}

/// A linear layer: its shape, its public requantization parameters and its HE protocol choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearLayer<S> {
    /// Dimensions of the computation.
    pub shape: S,
    /// Element type of the centred weights (ONNX weight type; the weight zero point is already
    /// subtracted).
    pub weight_ty: IntType,
    /// Sound bound on `|acc|` in bits: every accumulator fits in a signed integer of this many
    /// bits (range analysis from per-channel weight L1 norms).
    pub acc_bits: u32,
    /// The naive bound `b_w + b_a + ⌈log2(terms)⌉` (+ bias), for comparison in `explain`.
    pub acc_bits_naive: u32,
    /// Requantization applied to the accumulator (one multiplier per output channel); `None`
    /// leaves the raw accumulator as output. Its parameters are public: both parties scale their
    /// shares by `m[c]` (the secret is the weights and biases, not the quantization scales they
    /// were trained with; see `docs/security.md`).
    #[serde(with = "legacy_requant_order")]
    pub requant: Option<Requant>,
    /// How the layer runs under HE.
    pub protocol: LinearProtocol,
}

impl<S> LinearLayer<S> {
    /// The fields that do not depend on the shape.
    pub fn info(&self) -> LinearInfo<'_> {
        LinearInfo {
            weight_ty: self.weight_ty,
            acc_bits: self.acc_bits,
            acc_bits_naive: self.acc_bits_naive,
            requant: self.requant.as_ref(),
            protocol: &self.protocol,
        }
    }
}

/// The shape-independent part of a linear layer, whatever its shape ([`Op::linear`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearInfo<'a> {
    /// Element type of the centred weights.
    pub weight_ty: IntType,
    /// Sound accumulator width.
    pub acc_bits: u32,
    /// Naive accumulator width.
    pub acc_bits_naive: u32,
    /// Requantization of the accumulator, if any.
    pub requant: Option<&'a Requant>,
    /// How the layer runs under HE.
    pub protocol: &'a LinearProtocol,
}

/// A requantization `y = clamp(round(x·m / 2^k), lo, hi)`, rounding to nearest with ties to
/// even (the two-party output of a [`Rounding::Faithful`] one may be the other neighbour). The operation carrying it says which multiplier an element takes: a linear layer's
/// output channel `c` takes `m[c]`; a `Rescale` one multiplier for the whole tensor or one per
/// channel; an `AvgPool` window of `n` counted elements `m[n − 1]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requant {
    /// The multipliers `m`.
    pub multipliers: Vec<i64>,
    /// Right shift `k`.
    pub shift: u32,
    /// Output clamp `[lo, hi]` on centred values (ReLU/Clip fused here).
    pub clamp: (i64, i64),
    /// How ties `x·m ≡ 2^(k−1) (mod 2^k)` round.
    pub rounding: Rounding,
}

impl Requant {
    /// Bits of the largest `|m|`.
    pub fn multiplier_bits(&self) -> u32 {
        multiplier_bits(&self.multipliers)
    }
}

/// The plan format's legacy field order of a linear layer's [`Requant`]: shift, clamp,
/// rounding, then the multipliers (every other requantization puts the multipliers first).
/// Plan files written before the requantization types were unified encode it this way, so the
/// encoding stays byte for byte the same without a format version bump.
mod legacy_requant_order {
    use super::{Requant, Rounding};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// [`Requant`] with the fields in the legacy order (borrowed, for writing).
    #[derive(Serialize)]
    #[serde(rename = "RequantShape")]
    struct Ref<'a> {
        shift: u32,
        clamp: (i64, i64),
        rounding: Rounding,
        multipliers: &'a [i64],
    }

    /// [`Requant`] with the fields in the legacy order (owned, for reading).
    #[derive(Deserialize)]
    #[serde(rename = "RequantShape")]
    struct Owned {
        shift: u32,
        clamp: (i64, i64),
        rounding: Rounding,
        multipliers: Vec<i64>,
    }

    pub(super) fn serialize<S: Serializer>(r: &Option<Requant>, s: S) -> Result<S::Ok, S::Error> {
        r.as_ref()
            .map(|r| Ref {
                shift: r.shift,
                clamp: r.clamp,
                rounding: r.rounding,
                multipliers: &r.multipliers,
            })
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Requant>, D::Error> {
        Ok(Option::<Owned>::deserialize(d)?.map(|o| Requant {
            multipliers: o.multipliers,
            shift: o.shift,
            clamp: o.clamp,
            rounding: o.rounding,
        }))
    }
}

/// Bits of the largest `|m|` of a multiplier table (0 for an empty one).
pub fn multiplier_bits(multipliers: &[i64]) -> u32 {
    multipliers
        .iter()
        .map(|m| 64 - m.unsigned_abs().leading_zeros())
        .max()
        .unwrap_or(0)
}

/// The tie rule of a requantization `x·m / 2^k`. Every requantization rounds to nearest with
/// ties to even (as ONNX `QuantizeLinear` and onnxruntime do); the variants differ in what a
/// protocol may assume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rounding {
    /// Ties can occur and round to the even neighbour.
    HalfEven,
    /// The compiler proved that no value the tensor ranges allow hits a tie, so rounding half up
    /// gives the same result (cheaper on shares). The reference executor fails on a tie.
    NoTies,
    /// Ties round to the even neighbour, and a tie is any remainder within the window of the
    /// midpoint: `|r − 2^(k−1)| ≤ window` (`2·window < 2^k`). For a multiplier that approximates
    /// a division by a count that is not a power of two (an average pool's `1/6`): the exact
    /// quotient's ties land near the midpoint, not on it, and the compiler chooses the window
    /// so that exactly those fall inside it. Costs the same as `HalfEven`.
    HalfEvenWithin(u64),
    /// Faithful truncation (opt-in, `heqc compile --truncation faithful`): the two-party
    /// protocol drops the carry of the low `k` bits and computes `⌊x / 2^k⌋` or `⌈x / 2^k⌉`
    /// (exactly `x / 2^k` when `2^k` divides `x`), which one depending on the random share
    /// split; the reference executor computes the nearest integer, ties to even, so the two
    /// differ by at most 1 before the clamp (`docs/semantics.md` §6).
    Faithful,
}

impl Rounding {
    /// Half-width of the tie window (0 for exact ties), or `None` where no tie is tested
    /// ([`Rounding::NoTies`], [`Rounding::Faithful`]).
    pub fn tie_window(self) -> Option<u64> {
        match self {
            Rounding::HalfEven => Some(0),
            Rounding::NoTies | Rounding::Faithful => None,
            Rounding::HalfEvenWithin(w) => Some(w),
        }
    }

    /// Whether the protocol may return either neighbour of `x / 2^k`
    /// ([`Rounding::Faithful`]) instead of the exact rounding.
    pub fn is_faithful(self) -> bool {
        self == Rounding::Faithful
    }
}

/// Residual add with scale alignment. Not a [`Requant`]: its two multipliers belong to the two
/// inputs of one sum, not to elements of one tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddSpec {
    /// Multiplier of the first input.
    pub m_a: i64,
    /// Multiplier of the second input.
    pub m_b: i64,
    /// Right shift `k`.
    pub shift: u32,
    /// Output clamp `[lo, hi]` on centred values.
    pub clamp: (i64, i64),
    /// How ties `x·m ≡ 2^(k−1) (mod 2^k)` round.
    pub rounding: Rounding,
}

/// Convolution dimensions (one sample, NCHW without N).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvShape {
    /// Input channels `C`.
    pub in_channels: usize,
    /// Input height and width `[H, W]` (before padding).
    pub in_hw: [usize; 2],
    /// Output channels `M`.
    pub out_channels: usize,
    /// Kernel height and width `[h, w]`.
    pub kernel: [usize; 2],
    /// Strides `[s_h, s_w]`.
    pub stride: [usize; 2],
    /// Zero padding `[top, left, bottom, right]` (zero = the real value 0).
    pub pads: [usize; 4],
    /// Groups: `C` and `M` are both divisible by it; `groups == C == M` is depthwise.
    pub groups: usize,
}

impl ConvShape {
    /// Output height and width.
    pub fn out_hw(&self) -> [usize; 2] {
        let h = self.in_hw[0] + self.pads[0] + self.pads[2];
        let w = self.in_hw[1] + self.pads[1] + self.pads[3];
        [
            (h - self.kernel[0]) / self.stride[0] + 1,
            (w - self.kernel[1]) / self.stride[1] + 1,
        ]
    }

    /// Whether every group has one input and one output channel.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.groups == self.out_channels
    }

    /// Number of weights: `M · (C / groups) · h · w`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * (self.in_channels / self.groups) * self.kernel[0] * self.kernel[1]
    }
}

/// Matrix product dimensions: `X (rows × inner) · W (inner × cols)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatMulShape {
    /// Rows of the activation operand (1 for a fully connected layer).
    pub rows: usize,
    /// Shared dimension.
    pub inner: usize,
    /// Output features.
    pub cols: usize,
}

/// Per-channel affine dimensions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffineShape {
    /// Channels `C`.
    pub channels: usize,
    /// Elements per channel (`H·W`).
    pub per_channel: usize,
}

/// Pooling window geometry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolShape {
    /// Channels `C`.
    pub channels: usize,
    /// Input height and width.
    pub in_hw: [usize; 2],
    /// Window `[h, w]`.
    pub kernel: [usize; 2],
    /// Strides.
    pub stride: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

impl PoolShape {
    /// Output height and width.
    pub fn out_hw(&self) -> [usize; 2] {
        let h = self.in_hw[0] + self.pads[0] + self.pads[2];
        let w = self.in_hw[1] + self.pads[1] + self.pads[3];
        [
            (h - self.kernel[0]) / self.stride[0] + 1,
            (w - self.kernel[1]) / self.stride[1] + 1,
        ]
    }

    /// For every window (outputs in `[C, out_h, out_w]` order), the number of its positions
    /// inside the input grown by `margin` rows/columns `[top, left, bottom, right]`:
    /// `[0; 4]` counts the in-bounds elements, `pads` the whole window.
    pub fn window_sizes_within(&self, margin: [usize; 4]) -> Vec<usize> {
        let [oh, ow] = self.out_hw();
        // Positions `o·stride + k` of the padded input inside `[pads − before, pads + len + after)`.
        let inside = |o: usize, axis: usize| {
            let lo = self.pads[axis].saturating_sub(margin[axis]);
            let hi = self.pads[axis] + self.in_hw[axis] + margin[axis + 2];
            (0..self.kernel[axis])
                .filter(|&k| (lo..hi).contains(&(o * self.stride[axis] + k)))
                .count()
        };
        let rows: Vec<usize> = (0..oh).map(|o| inside(o, 0)).collect();
        let cols: Vec<usize> = (0..ow).map(|o| inside(o, 1)).collect();
        let per_channel: Vec<usize> = rows
            .iter()
            .flat_map(|&r| cols.iter().map(move |&c| r * c))
            .collect();
        per_channel.repeat(self.channels)
    }
}

/// Average pooling: the sum over the in-bounds window elements, then
/// `y = clamp(round(sum·m[n] / 2^k), lo, hi)` where `n` is the number of elements counted
/// ([`AvgPoolSpec::window_counts`]): the in-bounds elements, or with `count_include_pad` the
/// window's positions inside the input and the model's padding (`pool.pads` without
/// `ceil_pads`).
///
/// The encoding is the fields of `pool`, `count_include_pad`, those of `requant` (postcard
/// writes a nested struct as its fields, as when the requantization fields were inline), then
/// `ceil_pads`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AvgPoolSpec {
    /// Window geometry (global average pooling: the window is the whole input).
    pub pool: PoolShape,
    /// Whether padded positions count in the divisor.
    pub count_include_pad: bool,
    /// The requantization of the window sums: `multipliers[n − 1]` is the multiplier for a
    /// window of `n` counted elements.
    pub requant: Requant,
    /// Rows at the bottom and columns at the right of `pool.pads` that ONNX `ceil_mode` added
    /// past the model's own padding, so that the last, partial windows exist (`[0, 0]` without
    /// `ceil_mode`). They never count, not even with `count_include_pad` (onnxruntime's and
    /// PyTorch's divisor is the window clipped to the model-padded input).
    pub ceil_pads: [usize; 2],
}

impl AvgPoolSpec {
    /// The number of elements each window's sum is divided by, in output order.
    pub fn window_counts(&self) -> Vec<usize> {
        let p = &self.pool;
        if self.count_include_pad {
            p.window_sizes_within([
                p.pads[0],
                p.pads[1],
                p.pads[2].saturating_sub(self.ceil_pads[0]),
                p.pads[3].saturating_sub(self.ceil_pads[1]),
            ])
        } else {
            p.window_sizes_within([0; 4])
        }
    }

    /// The multiplier of a window of `counted` elements (`None` if out of the table).
    pub fn multiplier(&self, counted: usize) -> Option<i64> {
        self.requant
            .multipliers
            .get(counted.checked_sub(1)?)
            .copied()
    }
}

/// How a linear layer runs under HE: parameters, tiling, packing and the share rings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearProtocol {
    /// RLWE parameters.
    pub he: HeParams,
    /// Tile of the input processed by one ciphertext.
    pub tile: Tile,
    /// HEQuant intra-coefficient packing (`factor == 1`: none).
    pub packing: Packing,
    /// Coefficient layout of the ciphertexts and response packing.
    pub encoding: Encoding,
    /// Bits of the ring `Z_{2^l}` holding the input shares during this layer.
    pub in_ring_bits: u32,
    /// Bits of the ring `Z_{2^l}` holding the output shares the layer produces.
    pub out_ring_bits: u32,
}

/// RLWE (BFV) parameters of one linear layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeParams {
    /// Ring degree `N` (2048, 4096 or 8192).
    pub degree: usize,
    /// Bit sizes of the ciphertext primes, the one kept after the modulus switch first.
    pub moduli_bits: Vec<u32>,
    /// Plaintext modulus `t = 2^plain_bits`.
    pub plain_bits: u32,
}

/// Input tile `(C_w, H_w, W_w)` and filters per ciphertext `M_w`, with
/// `M_w·C_w·H_w·W_w ≤ N`. For a matrix product, `c` is the inner block `d1` and `m` the output
/// block `d0`; `h = w = 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tile {
    /// Channels per tile.
    pub c: usize,
    /// Rows per tile (padded input rows, overlapping by `kernel − 1`).
    pub h: usize,
    /// Columns per tile.
    pub w: usize,
    /// Output channels (filters) per ciphertext.
    pub m: usize,
}

/// How a linear layer's tiles are laid out in ciphertext coefficients (`protocols.md` §1.3,
/// §2: BumbleBee response packing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// Cheetah's channel-major blocks: input `(c, i, j)` at `c·H_w·W_w + i·W_w + j`, `M_w`
    /// filters per response, whose outputs are contiguous runs of coefficients. One response
    /// ciphertext per filter group and spatial group.
    #[default]
    Cheetah,
    /// Channel-interleaved: input `(c, i, j)` at `(i·W_w + j)·C_w + c` with `C_w` a power of two
    /// and `M_w = 1`, so every output sits at a multiple of `C_w`. The server packs the responses
    /// of `members` consecutive filter groups (a power of two, at most `C_w`) into one
    /// ciphertext with the client's Galois keys (PackRLWEs), member `j`'s outputs at offset
    /// `j·C_w/members`; `members = 1` sends them unpacked.
    Interleaved {
        /// Responses per packed response ciphertext.
        members: usize,
    },
}

impl Encoding {
    /// Responses packed into one ciphertext (1 for Cheetah's encoding).
    pub fn members(self) -> usize {
        match self {
            Encoding::Cheetah => 1,
            Encoding::Interleaved { members } => members,
        }
    }
}

/// The dimension along which several low-bit values share one plaintext coefficient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PackDim {
    /// Spatial tiles (positions) share a coefficient.
    Spatial,
    /// Output channels share a coefficient.
    OutChannels,
}

/// HEQuant intra-coefficient packing: `factor` fields of `field_bits` bits per coefficient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packing {
    /// Fields per coefficient `b` (1 = no packing).
    pub factor: u32,
    /// Bits per field `s` (accumulator bits + sign + guard).
    pub field_bits: u32,
    /// Packing dimension.
    pub dim: PackDim,
}

impl Packing {
    /// No packing.
    pub fn none() -> Self {
        Packing {
            factor: 1,
            field_bits: 0,
            dim: PackDim::Spatial,
        }
    }
}

/// Oblivious-transfer backend of the nonlinear protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OtBackend {
    /// Semi-honest silent OT (default: least communication).
    Silent,
    /// Semi-honest IKNP extension.
    Iknp,
}

/// Plan-wide protocol choices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlobalProtocol {
    /// OT backend.
    pub ot: OtBackend,
    /// Most random OTs per direction in one OT-extension batch
    /// ([`crate::cost::plan::ot_batches`]): larger batches send fewer OT-extension bytes and
    /// round trips, smaller ones, where the encoder's buffers fit the caches, produce each OT
    /// faster. The compiler chooses it by its objective from
    /// [`crate::cost::plan::OT_BATCH_CHOICES`].
    pub ot_batch_rots: u64,
    /// Most random OTs per direction one chunk of a nonlinear protocol consumes
    /// ([`crate::cost::plan::Stage`]), at least `ot_batch_rots` and at most
    /// [`crate::cost::plan::MAX_CHUNK_ROTS`]: larger chunks run large layers in fewer chunks
    /// (fewer rounds) and hold more pads in each party
    /// ([`crate::cost::plan::pad_memory_bytes`]). The compiler keeps
    /// [`crate::cost::plan::default_chunk_rots`] unless its objective gains from larger chunks.
    pub chunk_rots: u64,
    /// Statistical security parameter of masks and noise flooding, in bits.
    pub stat_bits: u32,
    /// Name of the configuration the compiler used (`"default"`, `"cheetah"`, `"optimized"`).
    pub profile: String,
    /// What mixed precision changed and measured (`heqc compile --calibration`), if it ran.
    pub precision: Option<PrecisionRecord>,
}

/// The record of a compilation on calibration data (mixed precision, faithful truncation): the
/// budget, the layers whose bit widths were lowered, and the plan's measured agreement with the
/// model as quantized on the calibration data (faithful truncations simulated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrecisionRecord {
    /// Calibration samples.
    pub samples: u64,
    /// The constraint.
    pub budget: PrecisionBudget,
    /// Fraction of samples whose top-1 class equals the original plan's.
    pub top1_agreement: f64,
    /// Largest absolute difference of a dequantized output from the original plan's.
    pub max_output_error: f64,
    /// Per lowered linear layer: its name, and its weight and output bit widths.
    pub lowered: Vec<LoweredLayer>,
    /// With faithful truncations ([`Rounding::Faithful`]): the seed of the simulated share
    /// splits the agreement above was measured with (`None`: every truncation exact).
    pub faithful_seed: Option<u64>,
}

/// The accuracy constraint of mixed precision.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum PrecisionBudget {
    /// At most this fraction of calibration samples may change their top-1 class.
    AccuracyDrop(f64),
    /// No dequantized output may move by more than this.
    OutputError(f64),
}

/// A linear layer whose bit widths mixed precision lowered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoweredLayer {
    /// Layer name (ONNX node names).
    pub name: String,
    /// Weight bits, before and after.
    pub weight_bits: (u32, u32),
    /// Output activation bits, before and after (equal when the output kept its width).
    pub output_bits: (u32, u32),
}

/// Everything only the server knows, per linear layer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerWeights {
    /// Weights of every linear layer, keyed by layer (sorted, one entry per linear layer).
    pub layers: Vec<(LayerId, LayerWeights)>,
}

impl ServerWeights {
    /// The weights of a layer, if it has any.
    pub fn get(&self, id: LayerId) -> Option<&LayerWeights> {
        self.layers.iter().find(|(l, _)| *l == id).map(|(_, w)| w)
    }
}

/// Weights of one linear layer, all centred integers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerWeights {
    /// Weights, row-major: Conv `[M, C/groups, h, w]`, MatMul `[inner, cols]`, Affine `[C]`.
    pub weights: Vec<i32>,
    /// Bias per output channel, in accumulator units.
    pub bias: Vec<i64>,
}
