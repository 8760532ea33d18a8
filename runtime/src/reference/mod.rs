//! Plaintext reference executor of the plan's integer semantics.
//!
//! This is the definition every two-party run reproduces bit for bit; `docs/semantics.md`
//! states the same rules for users. All values are centred (`v = q − zero_point`), one sample
//! at a time, row-major CHW. Products and sums are computed in `i128` with overflow checks, every
//! accumulator is checked against the layer's `acc_bits` and every tensor value against the
//! tensor's declared range, so a wrong range analysis in the compiler shows up as an error here.
//!
//! The executor validates the plan first ([`crate::plan::validate`]); it never panics, whatever
//! the plan.
//!
//! A [`Rounding::Faithful`] requantization is the one exception to "bit for bit": [`run`]
//! computes its exact value (nearest, ties to even), while the two-party protocol returns the
//! floor or the ceiling of `x / 2^k` depending on the random share split. [`run_simulated`]
//! draws that split from a seeded generator, as the compiler does to measure the agreement of a
//! plan with faithful truncations (`docs/semantics.md` §6).

pub mod epilogue;
#[cfg(any(test, feature = "testing"))]
pub mod testutil;

use crate::error::ExecError;
use crate::plan::{
    AffineShape, AvgPoolSpec, ConvShape, LayerId, LayerWeights, LinearLayer, MatMulShape, Op, Plan,
    PoolShape, PublicPlan, Rounding, TensorId,
};
use crate::ring::{self, RoundShift};

/// Every value one run computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Centred values of every tensor, indexed by [`TensorId`]; empty for a tensor no layer
    /// computes.
    pub tensors: Vec<Vec<i64>>,
    /// The accumulators of every linear layer (before requantization), in layer order.
    pub accumulators: Vec<(LayerId, Vec<i64>)>,
}

/// Runs one sample: centred input values in, centred output values out.
///
/// # Errors
/// An invalid plan ([`ExecError::Plan`]), an input of the wrong length
/// ([`ExecError::InputShape`]), a plan without weights ([`ExecError::MissingWeights`]), a value
/// outside its tensor's range ([`ExecError::OutOfRange`]), an accumulator wider than its layer
/// declares ([`ExecError::AccOverflow`]) or a 128-bit overflow ([`ExecError::Overflow`]).
pub fn run(plan: &Plan, input: &[i64]) -> Result<Vec<i64>, ExecError> {
    output(plan, execute(plan, input, None, &mut Truncation::Exact)?)
}

/// Runs one sample as [`run`], except that every [`Rounding::Faithful`] requantization returns
/// what its two-party protocol returns for a share split drawn from a generator seeded with
/// `seed`: `⌈t / 2^k⌉` with probability `(t mod 2^k) / 2^k`, else `⌊t / 2^k⌋` (the server's low
/// `k` share bits are uniform, and the protocol's dropped carry is 1 exactly when they are at
/// least `t mod 2^k`).
///
/// # Errors
/// As [`run`].
pub fn run_simulated(plan: &Plan, input: &[i64], seed: u64) -> Result<Vec<i64>, ExecError> {
    let mut splits = Truncation::Simulated(SplitMix64(seed));
    output(plan, execute(plan, input, None, &mut splits)?)
}

/// The output tensor of a run's tensors.
fn output(plan: &Plan, mut tensors: Vec<Vec<i64>>) -> Result<Vec<i64>, ExecError> {
    Ok(std::mem::take(
        &mut tensors[plan.public.output.tensor.0 as usize],
    ))
}

/// How the executor rounds a [`Rounding::Faithful`] requantization.
enum Truncation {
    /// Exactly, as every other (the nearest integer, ties to even).
    Exact,
    /// As the two-party protocol does for random share splits from this generator.
    Simulated(SplitMix64),
}

/// The SplitMix64 generator (Steele, Lea and Flood): a seeded stream of uniform `u64`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Runs one sample and keeps every tensor and every linear layer's accumulators.
///
/// # Errors
/// As [`run`].
pub fn run_traced(plan: &Plan, input: &[i64]) -> Result<Trace, ExecError> {
    let mut accumulators = Vec::new();
    let tensors = execute(plan, input, Some(&mut accumulators), &mut Truncation::Exact)?;
    Ok(Trace {
        tensors,
        accumulators,
    })
}

/// Quantizes one float sample into the centred integers of the plan's input tensor, exactly as
/// ONNX `QuantizeLinear` in onnxruntime: `q = saturate(round_half_to_even(x / scale) +
/// zero_point)` in `f32`, then `v = q − zero_point`. NaN gives `v = 0`.
///
/// # Panics
/// If the plan's input tensor does not exist (a plan that passed validation always has it).
pub fn quantize_input(plan: &PublicPlan, x: &[f32]) -> Vec<i64> {
    let t = &plan.tensors[plan.input.tensor.0 as usize];
    let (lo, hi) = (t.ty.min(), t.ty.max());
    x.iter()
        .map(|&x| {
            if x.is_nan() {
                return 0;
            }
            // f32 arithmetic as onnxruntime's MlasQuantizeLinear; the saturating `as` and the
            // integer clamp only differ from its f32 clamp where f32 cannot hold the bounds.
            let q = (x / t.scale).round_ties_even() + t.zero_point as f32;
            (q as i64).clamp(lo, hi) - t.zero_point
        })
        .collect()
}

/// Dequantizes centred output values: `scale · v` in `f32`, with the output tensor's scale or,
/// for a revealed accumulator (a float head), the epilogue's scale of each element's channel.
/// The model output is [`epilogue::finish`] (this, then the epilogue's steps).
///
/// # Panics
/// If the plan's output tensor does not exist or the epilogue's channel scales do not fit it
/// (a plan that passed validation always has it, and they always fit).
pub fn dequantize_output(plan: &PublicPlan, y: &[i64]) -> Vec<f32> {
    let out = &plan.tensors[plan.output.tensor.0 as usize];
    match &plan.epilogue.dequantize {
        None => y.iter().map(|&v| out.scale * v as f32).collect(),
        Some(d) => {
            let inner: usize = out.shape[d.axis + 1..].iter().product();
            y.iter()
                .enumerate()
                .map(|(i, &v)| d.scales[(i / inner) % d.scales.len()] * v as f32)
                .collect()
        }
    }
}

/// Runs the plan, pushing accumulators to `accs` when given and rounding faithful
/// requantizations by `tr`; returns every tensor.
fn execute(
    plan: &Plan,
    input: &[i64],
    mut accs: Option<&mut Vec<(LayerId, Vec<i64>)>>,
    tr: &mut Truncation,
) -> Result<Vec<Vec<i64>>, ExecError> {
    crate::plan::validate(plan)?;
    let p = &plan.public;
    let input_info = &p.tensors[p.input.tensor.0 as usize];
    if input.len() != input_info.len() {
        return Err(ExecError::InputShape {
            expected: input_info.len(),
            actual: input.len(),
            shape: p.input.shape.clone(),
        });
    }
    let mut tensors = vec![Vec::new(); p.tensors.len()];
    check_range(plan, p.input.tensor, input)?;
    tensors[p.input.tensor.0 as usize] = input.to_vec();
    for layer in &p.layers {
        let x = &tensors[layer.inputs[0].0 as usize];
        let id = layer.id;
        let (acc, y) = match &layer.op {
            Op::Conv(l) => linear(plan, id, l, tr, |lw| conv(&l.shape, lw, x))?,
            Op::MatMul(l) => linear(plan, id, l, tr, |lw| matmul(&l.shape, lw, x))?,
            Op::Affine(l) => linear(plan, id, l, tr, |lw| affine(&l.shape, lw, x))?,
            Op::Rescale(r) => {
                let per_channel = x.len() / r.multipliers.len();
                let y = x.iter().enumerate().map(|(i, &v)| {
                    let m = r.multipliers[i / per_channel];
                    requantize(i128::from(v), m, r.shift, r.clamp, r.rounding, tr)
                });
                (None, y.collect::<Result<_, _>>().map_err(|e| e.at(id))?)
            }
            Op::Add(a) => {
                let b = &tensors[layer.inputs[1].0 as usize];
                let y = x.iter().zip(b).map(|(&x, &b)| {
                    let bm = i128::from(b)
                        .checked_mul(i128::from(a.m_b))
                        .ok_or(RoundFail::Overflow)?;
                    requantize_sum(i128::from(x), a.m_a, bm, a.shift, a.clamp, a.rounding, tr)
                });
                (None, y.collect::<Result<_, _>>().map_err(|e| e.at(id))?)
            }
            Op::MaxPool(s) => (None, max_pool(s, x)),
            Op::AvgPool(a) => (None, avg_pool(a, x, tr).map_err(|e| e.at(id))?),
            Op::Concat => {
                let parts = layer
                    .inputs
                    .iter()
                    .map(|t| tensors[t.0 as usize].as_slice());
                (None, parts.collect::<Vec<_>>().concat())
            }
            Op::Reshape => (None, x.clone()),
        };
        check_range(plan, layer.output, &y)?;
        if let (Some(accs), Some(acc)) = (accs.as_deref_mut(), acc) {
            accs.push((id, acc));
        }
        tensors[layer.output.0 as usize] = y;
    }
    Ok(tensors)
}

/// Checks every value of a tensor against its declared range.
fn check_range(plan: &Plan, t: TensorId, values: &[i64]) -> Result<(), ExecError> {
    let (lo, hi) = plan.public.tensors[t.0 as usize].range;
    match values.iter().find(|&&v| v < lo || v > hi) {
        Some(&value) => Err(ExecError::OutOfRange {
            tensor: t,
            value,
            lo,
            hi,
        }),
        None => Ok(()),
    }
}

/// Accumulators of one linear layer in `i128` and, for each, its output channel; `None` on
/// overflow.
type Accumulators = Option<(Vec<i128>, Vec<usize>)>;

/// Runs a linear layer: accumulators from `accumulate`, the `acc_bits` check, then the
/// requantization (or the raw accumulators). Returns the accumulators and the output.
fn linear<S>(
    plan: &Plan,
    id: LayerId,
    l: &LinearLayer<S>,
    tr: &mut Truncation,
    accumulate: impl FnOnce(&LayerWeights) -> Accumulators,
) -> Result<(Option<Vec<i64>>, Vec<i64>), ExecError> {
    let lw = plan
        .weights
        .as_ref()
        .and_then(|w| w.get(id))
        .ok_or(ExecError::MissingWeights(id))?;
    let (acc, channels) = accumulate(lw).ok_or(ExecError::Overflow { layer: id })?;
    // validate() keeps acc_bits in 1..=64, so every accepted accumulator fits an i64.
    let bound = 1i128 << (l.acc_bits - 1);
    let acc = acc
        .into_iter()
        .map(|a| match i64::try_from(a) {
            Ok(v) if -bound < a && a < bound => Ok(v),
            _ => Err(ExecError::AccOverflow {
                layer: id,
                value: a,
                bits: l.acc_bits,
            }),
        })
        .collect::<Result<Vec<i64>, _>>()?;
    let y = match &l.requant {
        None => acc.clone(),
        Some(r) => acc
            .iter()
            .zip(&channels)
            .map(|(&a, &c)| {
                requantize(
                    i128::from(a),
                    r.multipliers[c],
                    r.shift,
                    r.clamp,
                    r.rounding,
                    tr,
                )
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.at(id))?,
    };
    Ok((Some(acc), y))
}

/// Why a requantization has no result.
enum RoundFail {
    /// A value passed 128 bits.
    Overflow,
    /// A tie in a requantization the plan declares [`Rounding::NoTies`].
    Tie,
}

impl RoundFail {
    fn at(self, layer: LayerId) -> ExecError {
        match self {
            RoundFail::Overflow => ExecError::Overflow { layer },
            RoundFail::Tie => ExecError::UnexpectedTie { layer },
        }
    }
}

/// `clamp(round(x·m / 2^k), lo, hi)`, ties to even.
fn requantize(
    x: i128,
    m: i64,
    k: u32,
    clamp: (i64, i64),
    rounding: Rounding,
    tr: &mut Truncation,
) -> Result<i64, RoundFail> {
    requantize_sum(x, m, 0, k, clamp, rounding, tr)
}

/// `clamp(round((x·m + extra) / 2^k), lo, hi)`, ties to even.
fn requantize_sum(
    x: i128,
    m: i64,
    extra: i128,
    k: u32,
    (lo, hi): (i64, i64),
    rounding: Rounding,
    tr: &mut Truncation,
) -> Result<i64, RoundFail> {
    let t = x
        .checked_mul(i128::from(m))
        .and_then(|t| t.checked_add(extra))
        .ok_or(RoundFail::Overflow)?;
    let y = round_shift(t, k, rounding, tr)?.clamp(i128::from(lo), i128::from(hi));
    i64::try_from(y).map_err(|_| RoundFail::Overflow)
}

/// `t / 2^k` rounded to nearest, ties (within the rule's window) to even
/// ([`crate::ring::round_shift_within`]); a tie is an error where the plan declares
/// [`Rounding::NoTies`]; a faithful one as `tr` says. validate() keeps `k < 64`.
fn round_shift(
    t: i128,
    k: u32,
    rounding: Rounding,
    tr: &mut Truncation,
) -> Result<i128, RoundFail> {
    match (rounding, tr) {
        (Rounding::Faithful, Truncation::Simulated(rng)) => {
            let floor = t >> k;
            let rest = t - (floor << k);
            let low = if k == 0 { 0 } else { rng.next() >> (64 - k) };
            Ok(floor + i128::from(i128::from(low) < rest))
        }
        (Rounding::Faithful, Truncation::Exact) => Ok(ring::round_shift(t, k).half_even()),
        (rounding, _) => match rounding.tie_window() {
            None => match ring::round_shift(t, k) {
                RoundShift::Tie { .. } => Err(RoundFail::Tie),
                r => Ok(r.half_even()),
            },
            Some(window) => Ok(ring::round_shift_within(t, k, window).half_even()),
        },
    }
}

/// `Σ w·x` added to `acc`; `None` on overflow.
fn mac(acc: i128, w: i32, x: i64) -> Option<i128> {
    acc.checked_add(i128::from(w) * i128::from(x))
}

/// Convolution accumulators; output channel `m` is channel `m` of the requantization.
///
/// Weight-stationary loop order: each weight is applied to the whole output rows it reaches, so
/// the inner loop walks contiguous memory and padding costs nothing.
fn conv(s: &ConvShape, lw: &LayerWeights, x: &[i64]) -> Accumulators {
    let [h, w] = s.in_hw;
    let [kh, kw] = s.kernel;
    let [sh, sw] = s.stride;
    let [oh, ow] = s.out_hw();
    let cg = s.in_channels / s.groups;
    let mg = s.out_channels / s.groups;
    let mut acc = Vec::with_capacity(s.out_channels * oh * ow);
    for m in 0..s.out_channels {
        let g = m / mg;
        let mut a = vec![i128::from(lw.bias[m]); oh * ow];
        for ci in 0..cg {
            let plane = &x[(g * cg + ci) * h * w..][..h * w];
            let filter = &lw.weights[(m * cg + ci) * kh * kw..][..kh * kw];
            for ky in 0..kh {
                let rows = in_bounds(oh, sh, s.pads[0], ky, h);
                for kx in 0..kw {
                    let wv = filter[ky * kw + kx];
                    if wv == 0 {
                        continue;
                    }
                    let cols = in_bounds(ow, sw, s.pads[1], kx, w);
                    for oy in rows.clone() {
                        let input = &plane[(oy * sh + ky - s.pads[0]) * w..][..w];
                        let out = &mut a[oy * ow..][..ow];
                        for ox in cols.clone() {
                            out[ox] = mac(out[ox], wv, input[ox * sw + kx - s.pads[1]])?;
                        }
                    }
                }
            }
        }
        acc.extend(a);
    }
    let channels = (0..acc.len()).map(|i| i / (oh * ow)).collect();
    Some((acc, channels))
}

/// The outputs `o < n` whose input position `o·stride + k − pad` lies in `[0, len)`.
fn in_bounds(n: usize, stride: usize, pad: usize, k: usize, len: usize) -> std::ops::Range<usize> {
    let lo = pad.saturating_sub(k).div_ceil(stride);
    // validate() checks that len + both pads does not overflow.
    let hi = (len + pad).saturating_sub(k).div_ceil(stride).min(n);
    lo..hi.max(lo)
}

/// Matrix product accumulators; element `(r, j)` has channel `j`.
fn matmul(s: &MatMulShape, lw: &LayerWeights, x: &[i64]) -> Accumulators {
    let mut acc = Vec::with_capacity(s.rows * s.cols);
    for row in x.chunks_exact(s.inner) {
        let mut a: Vec<i128> = lw.bias.iter().map(|&b| i128::from(b)).collect();
        // Row i of W is contiguous: walk W in memory order.
        for (&xi, w_row) in row.iter().zip(lw.weights.chunks_exact(s.cols)) {
            for (a, &w) in a.iter_mut().zip(w_row) {
                *a = mac(*a, w, xi)?;
            }
        }
        acc.extend(a);
    }
    let channels = (0..acc.len()).map(|i| i % s.cols).collect();
    Some((acc, channels))
}

/// Per-channel affine accumulators `a[c]·x + bias[c]`.
fn affine(s: &AffineShape, lw: &LayerWeights, x: &[i64]) -> Accumulators {
    let channels: Vec<usize> = (0..x.len()).map(|i| i / s.per_channel).collect();
    let acc = x
        .iter()
        .zip(&channels)
        .map(|(&v, &c)| mac(i128::from(lw.bias[c]), lw.weights[c], v))
        .collect::<Option<_>>()?;
    Some((acc, channels))
}

/// Calls `visit` with the in-bounds values of every pooling window, in output order.
fn for_each_window(s: &PoolShape, x: &[i64], mut visit: impl FnMut(&mut dyn Iterator<Item = i64>)) {
    let [h, w] = s.in_hw;
    let [oh, ow] = s.out_hw();
    for c in 0..s.channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let rows = (0..s.kernel[0]).filter_map(|ky| {
                    (oy * s.stride[0] + ky)
                        .checked_sub(s.pads[0])
                        .filter(|&y| y < h)
                });
                let mut values = rows.flat_map(|iy| {
                    (0..s.kernel[1])
                        .filter_map(|kx| {
                            (ox * s.stride[1] + kx)
                                .checked_sub(s.pads[1])
                                .filter(|&x| x < w)
                        })
                        .map(move |ix| x[(c * h + iy) * w + ix])
                });
                visit(&mut values);
            }
        }
    }
}

/// Max pooling: the maximum of the in-bounds window elements (validate() guarantees every
/// window has one).
fn max_pool(s: &PoolShape, x: &[i64]) -> Vec<i64> {
    let mut y = Vec::new();
    for_each_window(s, x, |values| y.push(values.max().unwrap_or(i64::MIN)));
    y
}

/// Average pooling: window sum, then the requantization with the multiplier of the counted
/// elements ([`AvgPoolSpec::window_counts`]).
fn avg_pool(a: &AvgPoolSpec, x: &[i64], tr: &mut Truncation) -> Result<Vec<i64>, RoundFail> {
    let mut y = Vec::new();
    let mut failure = None;
    let mut counts = a.window_counts().into_iter();
    for_each_window(&a.pool, x, |values| {
        // At most MAX_LAYER_MACS (2^36) values of 64 bits: the sum cannot overflow.
        let sum = values.fold(0i128, |s, v| s + i128::from(v));
        // validate() sizes the table to the window, and a window counts at least one element.
        let m = counts.next().and_then(|n| a.multiplier(n)).unwrap_or(0);
        let r = &a.requant;
        match requantize(sum, m, r.shift, r.clamp, r.rounding, tr) {
            Ok(v) => y.push(v),
            Err(e) => failure = Some(e),
        }
    });
    failure.map_or(Ok(y), Err)
}

#[cfg(test)]
mod tests;
