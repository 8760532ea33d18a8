//! The execution schedule of a plan: which protocols run, in which share rings, with which
//! parameters. Both parties derive it from the [`PublicPlan`] alone, so they agree on every
//! message size without talking.
//!
//! Share rings. Every tensor is held as additive shares in one ring `Z_{2^r}`; `r` is the widest
//! ring any consumer needs (a smaller ring is a free local reduction):
//!
//! - a linear layer needs its `in_ring_bits` (the HE input ring);
//! - `Rescale`, `Add`, `AvgPool` need the tensor's values as signed integers
//!   ([`CombinePlan`] extends or reduces them into its combination ring);
//! - `MaxPool` needs the differences of two values as signed integers (its comparison ring,
//!   [`MaxPoolPlan`]: `b + 1` bits for `2^b` values, e.g. 9 bits for `[0, 255]` or
//!   `[−128, 127]`), and at least the values as signed integers, which a requantization
//!   producing the tensor delivers; its output ring does not matter to it;
//! - `Concat` and `Reshape` need their output tensor's ring;
//! - the model output needs its values as signed integers.
//!
//! A `Rescale`, `Add` or `AvgPool` needs an input that a requantization or a max pool produces
//! in its combination ring (the producer then extends once, straight into it; not for the model
//! output).
//!
//! A producer delivers its tensor in that ring: requantizations (linear layers with `requant`,
//! `Rescale`, `Add`, `AvgPool`) clamp in the small ring of their clamp range (plus one bit)
//! and, if the tensor's ring is wider, extend the result ([`Step::extend`]: one correlated OT
//! per element instead of comparisons in the wide ring); a max pool compares in its comparison
//! ring whatever its input tensor's ring (a free reduction), so a requantization feeding it
//! clamps in the small ring and does not extend, and the pool extends each output once, into
//! its tensor's ring (one correlated OT per output, a quarter or a ninth of the inputs for
//! 2×2 or 3×3 windows); a linear layer without
//! requantization outputs its accumulator ring `out_ring_bits`, which must then be wide
//! enough, unless it packs (its unpacking outputs any ring that holds the accumulator).
//!
//! Per layer (`protocols.md` §1.5, §1.8; `docs/semantics.md` §2–4): a linear layer is one HE
//! round trip ([`LinearOutput::Accumulator`]: shares of the accumulator
//! modulo `2^out_ring_bits`, or of HEQuant packed words, which an [`UnpackPlan`] splits into
//! the accumulators directly in the requantization's combination ring) and, with a
//! requantization, a [`CombinePlan`] that multiplies the shares by the public per-channel
//! multipliers and rounds exactly; `Rescale`, `Add` and
//! `AvgPool` are [`CombinePlan`]s, `MaxPool` a [`MaxPoolPlan`] (comparison tree, extension),
//! `Concat` and `Reshape` are local; every carry a layer's protocols compute runs at the
//! layer's [`CarryDepth`]. The model input is held by the client in the clear (its
//! server share is zero, and a linear layer reading it encrypts the plain input); the server
//! reveals its output share to the client at the end.

use crate::params::conv::{ConvGeometry, affine_as_conv, matmul_as_conv};
use crate::params::he::{ConfigError, HeBudget, LinearOutput, layer_budget, pack_exponents};
use crate::params::nonlinear::{
    CombinePlan, MaxPoolPlan, ParamError, RescalePlan, UnpackPlan, add_plan, avg_pool_plan,
    multiplied_range, pool_window_sizes, rescale_plan, signed_bits,
};
use crate::plan::{
    CarryDepth, ConvShape, HeParams, LayerId, LinearProtocol, Op, PublicPlan, Requant, Rounding,
    TensorId,
};

/// Why a plan cannot be scheduled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The plan breaks a structural rule ([`crate::plan::validate`]).
    #[error("invalid plan: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A linear layer's HE configuration cannot run.
    #[error("layer {layer}: {source}")]
    Linear {
        /// The layer.
        layer: LayerId,
        /// Why.
        source: ConfigError,
    },
    /// The nonlinear protocol parameters of a layer cannot be planned.
    #[error("layer {layer}: {source}")]
    Param {
        /// The layer.
        layer: LayerId,
        /// Why.
        source: ParamError,
    },
    /// A tensor produced in a ring narrower than a consumer needs.
    #[error("tensor {tensor}: produced in a {have}-bit ring, a consumer needs {need} bits")]
    RingTooNarrow {
        /// The tensor.
        tensor: TensorId,
        /// Bits the producer delivers.
        have: u32,
        /// Bits a consumer needs.
        need: u32,
    },
    /// A linear layer's accumulator does not fit its output ring.
    #[error("layer {layer}: {acc_bits}-bit accumulator in a {ring_bits}-bit output ring")]
    Accumulator {
        /// The layer.
        layer: LayerId,
        /// Accumulator bits.
        acc_bits: u32,
        /// Output ring bits.
        ring_bits: u32,
    },
}

/// The schedule of a whole plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Share ring bits of every tensor, indexed by [`TensorId`].
    pub rings: Vec<u32>,
    /// One step per layer, in plan order.
    pub steps: Vec<Step>,
    /// The HE contexts the client sends keys for, one per distinct `(N, primes)`, in plan
    /// order (one key serves every plaintext modulus of a context).
    pub keys: Vec<ContextKeys>,
}

/// The keys the client sends for one HE context: a public key, and Galois keys for the
/// exponents its layers' response packing uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextKeys {
    /// The parameters of the context's first linear layer.
    pub he: HeParams,
    /// Galois exponents, increasing (empty if no layer of the context packs responses).
    pub galois: Vec<usize>,
}

/// What runs for one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The layer.
    pub layer: LayerId,
    /// The protocols.
    pub kind: StepKind,
    /// Extension of a requantized output from the ring of its clamp into the output tensor's
    /// (wider) ring: the clamp compares in the small ring, then one cheap signed extension (a
    /// max pool's extension is part of its [`MaxPoolPlan`]).
    pub extend: Option<RescalePlan>,
}

/// The protocols of one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one step per layer, built once per plan: boxing the linear step saves nothing"
)]
pub enum StepKind {
    /// An HE linear layer, the unpacking of its packed words if it packs, then the
    /// requantization of its accumulator if any.
    Linear {
        /// Whether the input is the model input, which the client holds in the clear.
        plain_input: bool,
        /// The layer as a convolution, tiled into ciphertexts.
        geometry: ConvGeometry,
        /// The noise budget of the layer's HE context (widths on the wire).
        budget: HeBudget,
        /// With HEQuant packing: the unpacking of the packed words (one per coefficient the
        /// response reveals, [`ConvGeometry::useful`] summed over the responses) into the
        /// accumulators, in the ring the requantization combines in (no extension left for
        /// it), or in the output tensor's ring without requantization.
        unpack: Option<UnpackPlan>,
        /// Requantization of the accumulator shares (one input: the accumulator in
        /// `Z_{2^out_ring_bits}`, or in the unpacking's ring), output in the output tensor's
        /// ring.
        requant: Option<CombinePlan>,
    },
    /// `Rescale`: the input times its public multipliers, requantized.
    Rescale(CombinePlan),
    /// `Add`: `a·m_a + b·m_b`, requantized.
    Add(CombinePlan),
    /// `AvgPool`: the window sums times their multipliers, requantized.
    AvgPool(CombinePlan),
    /// Max pooling: a comparison tree in the ring of the input differences, then one
    /// extension per output into the output tensor's ring.
    MaxPool(MaxPoolPlan),
    /// `Concat` or `Reshape`: local.
    Local,
}

impl StepKind {
    /// The step with its carries (requantization, max pool comparisons) computed at `depth`.
    pub fn with_carry_depth(self, depth: CarryDepth) -> Self {
        match self {
            StepKind::Linear {
                plain_input,
                geometry,
                budget,
                unpack,
                requant,
            } => StepKind::Linear {
                plain_input,
                geometry,
                budget,
                unpack,
                requant: requant.map(|p| p.with_carry_depth(depth)),
            },
            StepKind::Rescale(p) => StepKind::Rescale(p.with_carry_depth(depth)),
            StepKind::Add(p) => StepKind::Add(p.with_carry_depth(depth)),
            StepKind::AvgPool(p) => StepKind::AvgPool(p.with_carry_depth(depth)),
            StepKind::MaxPool(p) => StepKind::MaxPool(MaxPoolPlan { depth, ..p }),
            StepKind::Local => StepKind::Local,
        }
    }
}

/// The linear protocol and accumulator width of a linear op.
pub fn linear_protocol(op: &Op) -> Option<(&LinearProtocol, u32)> {
    match op {
        Op::Conv(l) => Some((&l.protocol, l.acc_bits)),
        Op::MatMul(l) => Some((&l.protocol, l.acc_bits)),
        Op::Affine(l) => Some((&l.protocol, l.acc_bits)),
        _ => None,
    }
}

/// Value range of a tensor as `i128`.
fn range(plan: &PublicPlan, t: TensorId) -> (i128, i128) {
    let (lo, hi) = plan.tensors[t.0 as usize].range;
    (i128::from(lo), i128::from(hi))
}

/// Ring bits that hold every value of `r` as a signed integer (at least 2).
fn value_bits(r: (i128, i128)) -> u32 {
    signed_bits(r).max(2)
}

/// Derives the schedule of a plan, after validating it.
///
/// # Errors
/// [`ScheduleError::Invalid`] for a plan that breaks a structural rule; otherwise
/// [`ScheduleError`] if a layer's protocols cannot be planned (ring or range constraints of
/// the protocols, an HE configuration that cannot run).
pub fn schedule(plan: &PublicPlan) -> Result<Schedule, ScheduleError> {
    let public_only = crate::plan::Plan {
        public: plan.clone(),
        weights: None,
    };
    crate::plan::validate(&public_only).map_err(|e| match e {
        crate::error::PlanError::Invalid(v) => ScheduleError::Invalid(v),
        other => ScheduleError::Invalid(vec![other.to_string()]),
    })?;
    let rings = tensor_rings(plan)?;
    let steps = plan
        .layers
        .iter()
        .map(|layer| {
            let kind = step_kind(plan, &rings, layer)?.with_carry_depth(layer.carry);
            let out_bits = rings[layer.output.0 as usize];
            let extend = requantized(&kind)
                .filter(|p| p.requant.out_bits < out_bits)
                .map(|p| {
                    let r = &p.requant;
                    RescalePlan::new(r.out_bits, r.out_range(), 0, out_bits, Rounding::NoTies)
                })
                .transpose()
                .map_err(|source| ScheduleError::Param {
                    layer: layer.id,
                    source,
                })?;
            Ok(Step {
                layer: layer.id,
                kind,
                extend,
            })
        })
        .collect::<Result<_, ScheduleError>>()?;
    let keys = context_keys(
        plan.layers
            .iter()
            .filter_map(|l| linear_protocol(&l.op).map(|(p, _)| p)),
    );
    Ok(Schedule { rings, steps, keys })
}

/// The keys the client sends for linear layers with protocols `protocols`: one entry per
/// distinct `(N, primes)`, in order of first use, with the union of the Galois exponents of
/// their response packing.
pub fn context_keys<'a>(
    protocols: impl IntoIterator<Item = &'a LinearProtocol>,
) -> Vec<ContextKeys> {
    let mut keys: Vec<ContextKeys> = Vec::new();
    for p in protocols {
        let same =
            |k: &ContextKeys| k.he.degree == p.he.degree && k.he.moduli_bits == p.he.moduli_bits;
        let index = keys.iter().position(same).unwrap_or_else(|| {
            keys.push(ContextKeys {
                he: p.he.clone(),
                galois: Vec::new(),
            });
            keys.len() - 1
        });
        let galois = &mut keys[index].galois;
        galois.extend(pack_exponents(p.he.degree, p.tile.c, p.encoding.members()));
        galois.sort_unstable();
        galois.dedup();
    }
    keys
}

/// The requantization that produces a step's output, if one does.
fn requantized(kind: &StepKind) -> Option<&CombinePlan> {
    match kind {
        StepKind::Linear {
            requant: Some(p), ..
        }
        | StepKind::Rescale(p)
        | StepKind::Add(p)
        | StepKind::AvgPool(p) => Some(p),
        _ => None,
    }
}

/// The ring a requantization clamped to `clamp` outputs in before any extension: its values
/// as signed integers plus one bit, so that the extension knows the MSB (one correlated OT, no
/// carry chain), at most the output tensor's ring.
fn clamp_bits(clamp: (i64, i64), out_bits: u32) -> u32 {
    (value_bits((i128::from(clamp.0), i128::from(clamp.1))) + 1).min(out_bits)
}

/// The ring a max pool needs its input in: its comparison ring, and at least the ring of the
/// input values as signed integers (a requantization producing the tensor delivers its values).
fn max_pool_input_bits(r: (i128, i128)) -> u32 {
    MaxPoolPlan::comparison_bits(r).max(value_bits(r))
}

/// The ring of every tensor: the widest need of its consumers (see the module doc).
fn tensor_rings(plan: &PublicPlan) -> Result<Vec<u32>, ScheduleError> {
    let mut rings = vec![0u32; plan.tensors.len()];
    let out = plan.output.tensor.0 as usize;
    // validate() guarantees that every tensor index exists.
    rings[plan.output.tensor.0 as usize] = value_bits(range(plan, plan.output.tensor));
    let direct = direct_extension(plan);
    let values: Vec<u32> = (0..plan.tensors.len())
        .map(|i| value_bits(range(plan, TensorId(i as u32))))
        .collect();
    // Consumers come after producers: walk backwards so that Concat/Reshape/MaxPool outputs
    // are known before their inputs.
    for layer in plan.layers.iter().rev() {
        let out_ring = rings[layer.output.0 as usize];
        for &t in &layer.inputs {
            let need = match &layer.op {
                op if op.is_linear() => linear_protocol(op).map_or(0, |(p, _)| p.in_ring_bits),
                Op::MaxPool(_) => max_pool_input_bits(range(plan, t)),
                Op::Concat | Op::Reshape => out_ring,
                _ if direct[t.0 as usize] => match step_kind(plan, &values, layer) {
                    Ok(StepKind::Rescale(p) | StepKind::Add(p) | StepKind::AvgPool(p)) => {
                        p.ring_bits.max(values[t.0 as usize])
                    }
                    _ => values[t.0 as usize],
                },
                _ => values[t.0 as usize],
            };
            let i = t.0 as usize;
            rings[i] = rings[i].max(need);
        }
    }
    // A linear layer without requantization delivers its accumulator ring; with packing, the
    // unpacking delivers any ring that holds the accumulator.
    for layer in &plan.layers {
        if let Some((p, acc_bits)) = linear_protocol(&layer.op)
            && !has_requant(&layer.op)
        {
            let i = layer.output.0 as usize;
            if p.packing.factor > 1 {
                rings[i] = rings[i].max(acc_bits);
                continue;
            }
            if rings[i] > p.out_ring_bits {
                return Err(ScheduleError::RingTooNarrow {
                    tensor: layer.output,
                    have: p.out_ring_bits,
                    need: rings[i],
                });
            }
            rings[i] = p.out_ring_bits;
        }
    }
    // A tensor nothing reads (not the output) is still produced: in the ring of its values.
    for (i, r) in rings.iter_mut().enumerate() {
        if *r == 0 && i != out {
            *r = value_bits(range(plan, TensorId(i as u32)));
        }
    }
    Ok(rings)
}

/// The tensors a requantization or a max pool produces (each extends its result, from the
/// clamp's or the comparisons' small ring, into the tensor's ring anyway) that are not the model
/// output: a `Rescale`, `Add` or `AvgPool` reading one takes it in its combination ring, so
/// that the producer extends once, straight into that ring, instead of the combination
/// extending it a second time (a max pool reading the same tensor reduces it for free).
fn direct_extension(plan: &PublicPlan) -> Vec<bool> {
    let mut direct = vec![false; plan.tensors.len()];
    for layer in &plan.layers {
        let extends = match &layer.op {
            Op::Rescale(_) | Op::Add(_) | Op::AvgPool(_) | Op::MaxPool(_) => true,
            op => has_requant(op),
        };
        direct[layer.output.0 as usize] = extends;
    }
    direct[plan.output.tensor.0 as usize] = false;
    direct
}

fn has_requant(op: &Op) -> bool {
    match op {
        Op::Conv(l) => l.requant.is_some(),
        Op::MatMul(l) => l.requant.is_some(),
        Op::Affine(l) => l.requant.is_some(),
        _ => false,
    }
}

/// The step of one layer.
fn step_kind(
    plan: &PublicPlan,
    rings: &[u32],
    layer: &crate::plan::Layer,
) -> Result<StepKind, ScheduleError> {
    let id = layer.id;
    let param = |source| ScheduleError::Param { layer: id, source };
    let ring = |t: TensorId| rings[t.0 as usize];
    let out_bits = ring(layer.output);
    // validate() guarantees the inputs each op needs.
    let first = layer.inputs[0];
    let input = (ring(first), range(plan, first));
    // Ring-narrowing checks for local reductions.
    for &t in &layer.inputs {
        let need = match &layer.op {
            Op::Concat | Op::Reshape => out_bits,
            op if op.is_linear() => linear_protocol(op).map_or(0, |(p, _)| p.in_ring_bits),
            Op::MaxPool(_) => MaxPoolPlan::comparison_bits(range(plan, t)),
            _ => 0,
        };
        if ring(t) < need {
            return Err(ScheduleError::RingTooNarrow {
                tensor: t,
                have: ring(t),
                need,
            });
        }
    }
    let linear = |shape: &ConvShape, parts: LinearParts<'_>| {
        let (acc_bits, proto, _) = parts;
        let he = |source| ScheduleError::Linear { layer: id, source };
        let budget = layer_budget(proto, acc_bits, LinearOutput::Accumulator).map_err(he)?;
        let geometry = ConvGeometry::new(shape, proto).map_err(he)?;
        linear_step(
            id,
            first == plan.input.tensor,
            (geometry, budget),
            parts,
            out_bits,
        )
    };
    Ok(match &layer.op {
        Op::Conv(l) => linear(&l.shape, (l.acc_bits, &l.protocol, &l.requant))?,
        Op::MatMul(l) => linear(
            &matmul_as_conv(&l.shape),
            (l.acc_bits, &l.protocol, &l.requant),
        )?,
        Op::Affine(l) => linear(
            &affine_as_conv(&l.shape),
            (l.acc_bits, &l.protocol, &l.requant),
        )?,
        Op::Rescale(r) => {
            StepKind::Rescale(rescale_plan(r, input, clamp_bits(r.clamp, out_bits)).map_err(param)?)
        }
        Op::Add(a) => {
            let second = layer.inputs[1];
            let b = (ring(second), range(plan, second));
            let bits = clamp_bits(a.clamp, out_bits);
            StepKind::Add(add_plan(a, input, b, bits).map_err(param)?)
        }
        Op::AvgPool(spec) => {
            let bits = clamp_bits(spec.requant.clamp, out_bits);
            StepKind::AvgPool(avg_pool_plan(spec, input.0, input.1, bits).map_err(param)?)
        }
        Op::MaxPool(shape) => StepKind::MaxPool(
            MaxPoolPlan::new(input.1, &pool_window_sizes(shape), out_bits).map_err(param)?,
        ),
        Op::Concat | Op::Reshape => StepKind::Local,
    })
}

/// Accumulator bits, protocol and requantization of a linear layer.
type LinearParts<'a> = (u32, &'a LinearProtocol, &'a Option<Requant>);

/// The step of a linear layer whose HE part runs with `geometry` and `budget`.
fn linear_step(
    id: LayerId,
    plain_input: bool,
    (geometry, budget): (ConvGeometry, HeBudget),
    (acc_bits, proto, requant): LinearParts<'_>,
    out_bits: u32,
) -> Result<StepKind, ScheduleError> {
    if acc_bits > proto.out_ring_bits || acc_bits == 0 {
        return Err(ScheduleError::Accumulator {
            layer: id,
            acc_bits,
            ring_bits: proto.out_ring_bits,
        });
    }
    let param = |source| ScheduleError::Param { layer: id, source };
    let bound = (1i128 << (acc_bits - 1)) - 1;
    let acc = (-bound, bound);
    let requant_in = |ring: u32| {
        requant
            .as_ref()
            .map(|r| {
                CombinePlan::new(
                    &[(ring, acc)],
                    multiplied_range(acc, &r.multipliers),
                    r.shift,
                    (i128::from(r.clamp.0), i128::from(r.clamp.1)),
                    clamp_bits(r.clamp, out_bits),
                    r.rounding,
                )
            })
            .transpose()
            .map_err(param)
    };
    let (unpack, requant) = if proto.packing.factor > 1 {
        // Unpack straight into the requantization's combination ring.
        let ring = requant_in(proto.out_ring_bits)?.map_or(out_bits, |p| p.ring_bits);
        let unpack = UnpackPlan::new(proto.he.plain_bits, proto.packing, acc, ring);
        (Some(unpack.map_err(param)?), requant_in(ring)?)
    } else {
        (None, requant_in(proto.out_ring_bits)?)
    };
    Ok(StepKind::Linear {
        plain_input,
        geometry,
        budget,
        unpack,
        requant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::nonlinear::WrapMode;
    use crate::plan::{MatMulShape, Requant, Rounding};
    use crate::reference::testutil::{PlanBuilder, linear, max_pool_plans, weights};

    fn rescale(shift: u32, clamp: (i64, i64)) -> Op {
        Op::Rescale(Requant {
            multipliers: vec![3],
            shift,
            clamp,
            rounding: Rounding::HalfEven,
        })
    }

    fn matmul(out_ring_bits: u32) -> Op {
        let mut l = linear(
            MatMulShape {
                rows: 1,
                inner: 4,
                cols: 2,
            },
            8,
            None,
        );
        l.protocol.tile.c = 4;
        l.protocol.tile.m = 2;
        l.protocol.out_ring_bits = out_ring_bits;
        Op::MatMul(l)
    }

    #[test]
    fn rings_are_the_widest_consumer_need() {
        // t0 [-8, 8] feeds a Rescale (5 bits) and a MaxPool-free Reshape of t1.
        let mut b = PlanBuilder::new(&[4], (-8, 8));
        let t1 = b.layer(rescale(1, (-4, 4)), &[b.input()], &[4], (-4, 4));
        let t2 = b.layer(Op::Reshape, &[t1], &[1, 4], (-4, 4));
        let t3 = b.linear(
            matmul(37),
            t2,
            weights(&[1; 8], &[0, 0]),
            &[1, 2],
            (-127, 127),
        );
        let t4 = b.layer(rescale(2, (-100, 100)), &[t3], &[1, 2], (-100, 100));
        let plan = b.build(t4).unwrap();
        let s = schedule(&plan.public).unwrap();
        // Input: its values; t1, t2: the matmul's input ring through the reshape; t3: the
        // accumulator ring; t4 (output): its values.
        assert_eq!(s.rings, vec![5, 37, 37, 37, 8]);
        assert_eq!(
            s.keys,
            vec![ContextKeys {
                he: crate::reference::testutil::default_protocol().he,
                galois: Vec::new()
            }]
        );
        assert!(matches!(
            &s.steps[2].kind,
            StepKind::Linear {
                plain_input: false,
                requant: None,
                ..
            }
        ));
        assert_eq!(s.steps[1].kind, StepKind::Local);
        // z = t0·3 ∈ [−24, 24] plus the rounding half: 6 bits, one more for the known MSB.
        let StepKind::Rescale(p) = &s.steps[0].kind else {
            panic!("rescale step");
        };
        assert_eq!(p.ring_bits, 7);
        // The clamp runs in the 5-bit ring of [−4, 4] plus the known-MSB bit; one extension
        // then brings the result into the matmul's 37-bit input ring.
        assert_eq!(p.requant.out_bits, 5);
        let e = s.steps[0].extend.expect("extension");
        assert_eq!((e.in_bits, e.out_bits, e.shift), (5, 37, 0));
        assert_eq!(s.steps[2].extend, None);
    }

    /// The max pool plan of a step.
    fn max_pool(step: &Step) -> &MaxPoolPlan {
        match &step.kind {
            StepKind::MaxPool(p) => p,
            other => panic!("max pool step, got {other:?}"),
        }
    }

    /// The combination plan of a `Rescale`, `Add` or `AvgPool` step.
    fn combine(step: &Step) -> &CombinePlan {
        match &step.kind {
            StepKind::Rescale(p) | StepKind::Add(p) | StepKind::AvgPool(p) => p,
            other => panic!("combination step, got {other:?}"),
        }
    }

    /// (input ring, output ring) of an extension.
    fn ext(e: Option<RescalePlan>) -> Option<(u32, u32)> {
        e.map(|e| {
            assert_eq!((e.shift, e.wrap), (0, WrapMode::KnownMsb), "{e:?}");
            (e.in_bits, e.out_bits)
        })
    }

    #[test]
    fn max_pools_compare_in_the_difference_ring_and_extend_each_output_once() {
        let plans = max_pool_plans();
        // Unsigned chain: the rescale clamps in 5 bits, the ring of the first pool's
        // comparisons ([−15, 15]), and does not extend; the first pool hands 5-bit shares to
        // the second, which extends its 2 outputs (not the 16 inputs) into the matmul's
        // 37-bit ring.
        let s = schedule(&plans[0].1.public).unwrap();
        assert_eq!(s.rings, vec![5, 5, 5, 37, 37, 37]);
        assert_eq!(combine(&s.steps[0]).requant.out_bits, 5);
        assert_eq!(s.steps[0].extend, None);
        let (p1, p2) = (max_pool(&s.steps[1]), max_pool(&s.steps[2]));
        assert_eq!(
            (p1.ring_bits, p1.levels.clone(), ext(p1.extend)),
            (5, vec![8, 4], None)
        );
        assert_eq!((p2.ring_bits, p2.levels.clone()), (5, vec![2]));
        assert_eq!((p2.range, ext(p2.extend)), ((0, 15), Some((5, 37))));
        assert_eq!(s.steps[2].extend, None);
        let c = crate::cost::plan::layer_cost(&plans[0].1.public, &s.steps[2]).nonlinear;
        let n = crate::cost::nonlinear::max_pool(&[2], 5, CarryDepth::Ripple)
            + crate::cost::nonlinear::client_cots(2, 2 * 32);
        assert_eq!(c, n);

        // Signed, into combinations: the rescale's output, read by both pools, is delivered in
        // the average pool's 13-bit combination ring (the max pool reduces it to 5 bits); the
        // max pool extends into the add's 6-bit ring, so neither combination extends.
        let s = schedule(&plans[1].1.public).unwrap();
        assert_eq!(s.rings, vec![5, 13, 6, 6, 4]);
        assert_eq!(ext(s.steps[0].extend), Some((5, 13)));
        let p = max_pool(&s.steps[1]);
        assert_eq!(
            (p.ring_bits, p.range, ext(p.extend)),
            (5, (-8, 7), Some((5, 6)))
        );
        let avg = combine(&s.steps[2]);
        assert_eq!((avg.ring_bits, avg.inputs[0].2), (13, None));
        assert_eq!(ext(s.steps[2].extend), Some((5, 6)));
        let add = combine(&s.steps[3]);
        assert_eq!(
            (add.ring_bits, add.inputs[0].2, add.inputs[1].2),
            (6, None, None)
        );
        assert_eq!(s.steps[3].extend, None);

        // Offset range: the values [100, 115] need 8 bits, their differences 5.
        let s = schedule(&plans[2].1.public).unwrap();
        assert_eq!(s.rings, vec![5, 8, 8]);
        assert_eq!(combine(&s.steps[0]).requant.out_bits, 8);
        let p = max_pool(&s.steps[1]);
        assert_eq!((p.ring_bits, ext(p.extend)), (5, Some((5, 8))));
    }

    #[test]
    fn a_narrow_accumulator_ring_cannot_feed_a_wider_consumer() {
        let mut b = PlanBuilder::new(&[1, 4], (-8, 8));
        let t1 = b.linear(
            matmul(20),
            b.input(),
            weights(&[1; 8], &[0, 0]),
            &[1, 2],
            (-64, 64),
        );
        let t2 = b.layer(Op::Reshape, &[t1], &[1, 2], (-64, 64));
        let mut m = matmul(37);
        if let Op::MatMul(l) = &mut m {
            l.shape.inner = 2;
            l.protocol.tile.c = 2;
        }
        let t3 = b.linear(m, t2, weights(&[1; 4], &[0, 0]), &[1, 2], (-128, 128));
        let plan = b.build(t3).unwrap();
        assert_eq!(
            schedule(&plan.public),
            Err(ScheduleError::RingTooNarrow {
                tensor: TensorId(1),
                have: 20,
                need: 37
            })
        );
    }
}
