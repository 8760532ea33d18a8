//! Protocol selection: the one stage that chooses how every linear layer runs under HE.
//!
//! [`select`] takes the [`Skeleton`] that lowering built and a [`Strategy`], and returns a
//! [`Selection`]: the runnable plan, its predicted cost, the Cheetah baseline's cost of the
//! same model, and every linear layer's runner-up configuration. Everything downstream (the
//! `heqc compile` summary, `heqc explain` of a freshly compiled model, mixed precision's
//! savings) reads these instead of pricing the plan or searching candidates again; only a plan
//! read from disk is priced anew ([`crate::explain`]).
//!
//! Both strategies start from OpenCheetah's protocols ([`baseline::layer_protocol`]): the
//! baseline keeps them (with a passing tile where the flooding check fails,
//! [`baseline::cheetah`]); the optimizer ([`crate::optimize`]) keeps their HE parameters and
//! tiles in its probe plans and replaces them all, then chooses every layer's carry depth
//! ([`choose_carry_depths`]), the OT batch size ([`choose_ot_batch`]) and the chunk bound
//! ([`choose_chunk_rots`]), which the baseline's cost then uses too (the baseline keeps ripple
//! chains).

use crate::error::Result;
use crate::lower::Skeleton;
use crate::optimize::candidates::{self, RunnerUp};
use crate::optimize::{self, Objective, Solution, baseline};
use heq_runtime::cost::compute::ComputeProfile;
use heq_runtime::cost::plan::{MAX_CHUNK_ROTS, OT_BATCH_CHOICES, PlanCost, default_chunk_rots};
use heq_runtime::plan::{CarryDepth, Plan, PublicPlan};

/// How the linear layers' protocols are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The Cheetah baseline ([`baseline`]).
    Baseline,
    /// The optimizer with this objective (default: communication).
    Optimized(Objective),
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::Optimized(Objective::Comm)
    }
}

/// A public plan and its predicted cost (what per-layer times are computed from).
#[derive(Clone, Debug)]
pub struct Priced {
    /// The public plan.
    pub public: PublicPlan,
    /// Its predicted cost.
    pub cost: PlanCost,
}

/// The result of [`select`].
#[derive(Clone, Debug)]
pub struct Selection {
    /// The plan with the chosen protocols (public part and server weights).
    pub plan: Plan,
    /// Its predicted cost.
    pub cost: PlanCost,
    /// The same model on the Cheetah baseline, priced (`None` when the baseline cannot be
    /// scheduled, e.g. an accumulator wider than its 37-bit rings).
    pub baseline: Option<Priced>,
    /// Per linear layer, the cheapest other configuration at its chosen rings (a layer with no
    /// other configuration has none).
    pub runner_ups: Vec<RunnerUp>,
    /// The optimizer's problem and solution (`None` with [`Strategy::Baseline`]).
    pub solution: Option<Solution>,
}

/// Chooses the protocols of every linear layer of `skeleton` with `strategy`; candidates are
/// timed with `profile` (the latency objective's compute times, and the runner-ups). The
/// Cheetah baseline prices Cheetah's protocols on the skeleton's own requantizations, so a plan
/// read back from disk prices the same baseline.
///
/// # Errors
/// [`crate::Error::Plan`] when the plan breaks a structural rule; [`crate::Error::Optimize`]
/// when the chosen plan cannot be scheduled or the optimizer fails.
pub fn select(
    skeleton: Skeleton,
    strategy: Strategy,
    profile: &ComputeProfile,
) -> Result<Selection> {
    let start = opencheetah_plan(skeleton)?;
    let baseline_public = baseline::cheetah_public(&start);
    let baseline_cost = optimize::predict(&baseline_public);
    match strategy {
        Strategy::Baseline => {
            let cost = baseline_cost?;
            let plan = Plan {
                public: baseline_public.clone(),
                weights: start.weights,
            };
            let runner_ups = candidates::runner_ups(&plan, profile);
            Ok(Selection {
                plan,
                cost: cost.clone(),
                baseline: Some(Priced {
                    public: baseline_public,
                    cost,
                }),
                runner_ups,
                solution: None,
            })
        }
        Strategy::Optimized(objective) => {
            let baseline = baseline_cost.ok().map(|cost| Priced {
                public: baseline_public,
                cost,
            });
            // The ring search is a heuristic: with the interleaved encoding's candidates it
            // can settle on worse rings than without them, so both are optimized and the plan
            // of the lower objective value kept (with response packing on a tie).
            let optimized = |response_packing| -> Result<(f64, optimize::Optimized, PlanCost)> {
                let mut o = optimize::optimize_against(
                    &start,
                    objective,
                    profile,
                    baseline.as_ref().map(|b| &b.cost),
                    response_packing,
                )?;
                choose_carry_depths(&mut o.plan.public, objective, profile)?;
                choose_ot_batch(&mut o.plan.public, objective, profile)?;
                let cost = choose_chunk_rots(&mut o.plan.public, objective, profile)?;
                let value = plan_value(&o.plan.public, &cost, objective, profile);
                Ok((value, o, cost))
            };
            let packed = optimized(true)?;
            let unpacked = optimized(false)?;
            let (_, o, cost) = if unpacked.0 < packed.0 {
                unpacked
            } else {
                packed
            };
            let baseline = match baseline {
                Some(mut b) => {
                    b.public.protocol.ot_batch_rots = o.plan.public.protocol.ot_batch_rots;
                    b.public.protocol.chunk_rots = o.plan.public.protocol.chunk_rots;
                    b.cost = optimize::predict(&b.public)?;
                    Some(b)
                }
                None => None,
            };
            Ok(Selection {
                plan: o.plan,
                cost,
                baseline,
                runner_ups: o.runner_ups,
                solution: Some(o.solution),
            })
        }
    }
}

/// `skeleton` with OpenCheetah's protocol on every linear layer ([`baseline::layer_protocol`]).
fn opencheetah_plan(skeleton: Skeleton) -> Result<Plan> {
    let opencheetah = skeleton
        .linear_ops()
        .filter_map(baseline::layer_protocol)
        .collect();
    skeleton.into_plan(opencheetah, "cheetah")
}

/// Sets every layer's carry depth to the one that minimises `objective` on that layer: its
/// channel bytes and rounds and its compute (the ROTs its protocols consume and the OT extension
/// produces, `profile`), each depth priced exactly by the plan cost (a layer's depth changes
/// only its own nonlinear steps, so the layers are chosen independently). Communication keeps
/// the ripple chains (fewer bytes); latency takes trees where their round trips saved outweigh
/// their extra bytes and ROTs. Equal values keep the chain.
///
/// # Errors
/// [`crate::Error::Optimize`] when the plan cannot be scheduled.
pub fn choose_carry_depths(
    public: &mut PublicPlan,
    objective: Objective,
    profile: &ComputeProfile,
) -> Result<()> {
    let mut priced = |depth: CarryDepth| -> Result<(PlanCost, Vec<f64>)> {
        for l in &mut public.layers {
            l.carry = if l.op.computes_carries() {
                depth
            } else {
                CarryDepth::Ripple
            };
        }
        let cost = optimize::predict(public)?;
        let ms = profile.layer_ms(public, &cost);
        Ok((cost, ms))
    };
    let ripple = priced(CarryDepth::Ripple)?;
    let tree = priced(CarryDepth::Tree)?;
    let value = |(cost, ms): &(PlanCost, Vec<f64>), i: usize| {
        let t = cost.layers[i].traffic;
        objective.value(t.total_bytes(), t.rounds, ms[i])
    };
    for (i, l) in public.layers.iter_mut().enumerate() {
        if l.carry == CarryDepth::Tree && value(&tree, i) >= value(&ripple, i) {
            l.carry = CarryDepth::Ripple;
        }
    }
    Ok(())
}

/// Sets the plan's OT batch size to the choice of [`OT_BATCH_CHOICES`] that minimises
/// `objective` over what the batch size changes (the OT extension's bytes and round trips, the
/// channel's rounds and bytes of the layers whose nonlinear protocols run in more chunks at a
/// smaller batch, and the OT compute at that batch size's speed in `profile`), and returns the
/// plan's cost at it. Communication alone prefers the fewest batches and chunks; latency weighs
/// the encoder's speed, which is highest where its buffers fit the caches, against the round
/// trips of more batches and chunks. Of equal values the smaller size wins (the same batches,
/// less memory promised). Each size is priced with its default chunks
/// ([`default_chunk_rots`]), which the plan keeps.
///
/// # Errors
/// [`crate::Error::Optimize`] when the plan cannot be scheduled.
pub fn choose_ot_batch(
    public: &mut PublicPlan,
    objective: Objective,
    profile: &ComputeProfile,
) -> Result<PlanCost> {
    let mut best: Option<(f64, u64, PlanCost)> = None;
    for rots in OT_BATCH_CHOICES {
        public.protocol.ot_batch_rots = rots;
        public.protocol.chunk_rots = default_chunk_rots(rots);
        let cost = optimize::predict(public)?;
        let traffic = cost.ot_extension + cost.channel();
        let compute_ms: f64 = profile.layer_ms(public, &cost).iter().sum();
        let value = objective.value(traffic.total_bytes(), traffic.rounds, compute_ms);
        if best.as_ref().is_none_or(|(v, ..)| value < *v) {
            best = Some((value, rots, cost));
        }
    }
    let (_, rots, cost) = best.expect("OT_BATCH_CHOICES is not empty");
    public.protocol.ot_batch_rots = rots;
    public.protocol.chunk_rots = default_chunk_rots(rots);
    Ok(cost)
}

/// How much worse than the best chunk bound's objective value a smaller chunk bound may be
/// and still be chosen: a fraction of the best value. Larger chunks hold more pads in each
/// party ([`heq_runtime::cost::plan::pad_memory_bytes`]: 2^22 ROTs 0.41 GB, 2^24 1.64 GB),
/// which the objectives do not price, so a larger chunk must save more than 1 % of the
/// objective (on the WAN, rounds at 40 ms; on a LAN the rounds of chunking cost well under
/// 1 % of the time and the default chunks stay).
pub const CHUNK_VALUE_TOLERANCE: f64 = 0.01;

/// The chunk bounds [`choose_chunk_rots`] weighs with OT batches of `batch_rots`: the default
/// ([`default_chunk_rots`]), then every power of two above it up to [`MAX_CHUNK_ROTS`].
pub fn chunk_choices(batch_rots: u64) -> Vec<u64> {
    let default = default_chunk_rots(batch_rots);
    std::iter::successors(Some(default), |c| {
        Some((c + 1).next_power_of_two()).filter(|&n| n <= MAX_CHUNK_ROTS)
    })
    .collect()
}

/// The objective value of a priced plan: its bytes (channel and OT extension), or its
/// predicted time on the objective's network with `profile`'s compute.
fn plan_value(
    public: &PublicPlan,
    cost: &PlanCost,
    objective: Objective,
    profile: &ComputeProfile,
) -> f64 {
    let traffic = cost.ot_extension + cost.channel();
    let compute_ms: f64 = profile.layer_ms(public, cost).iter().sum();
    objective.value(traffic.total_bytes(), traffic.rounds, compute_ms)
}

/// Sets the plan's chunk bound (at its OT batch size) to the smallest of [`chunk_choices`]
/// whose objective value (channel and OT-extension bytes and rounds, and compute, as
/// [`choose_ot_batch`] weighs them) is within [`CHUNK_VALUE_TOLERANCE`] of the best one's, and
/// returns the plan's cost at it. Larger chunks run large layers in fewer chunks, so fewer
/// rounds (and slightly fewer bytes of byte rounding), at the price of memory: communication
/// and fast networks keep the default, a high round-trip time takes larger chunks.
///
/// # Errors
/// [`crate::Error::Optimize`] when the plan cannot be scheduled.
pub fn choose_chunk_rots(
    public: &mut PublicPlan,
    objective: Objective,
    profile: &ComputeProfile,
) -> Result<PlanCost> {
    let mut priced = Vec::new();
    for chunk in chunk_choices(public.protocol.ot_batch_rots) {
        public.protocol.chunk_rots = chunk;
        let cost = optimize::predict(public)?;
        let value = plan_value(public, &cost, objective, profile);
        priced.push((value, chunk, cost));
    }
    let best = priced.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let (_, chunk, cost) = priced
        .into_iter()
        .find(|p| p.0 <= best * (1.0 + CHUNK_VALUE_TOLERANCE))
        .expect("chunk_choices is not empty");
    public.protocol.chunk_rots = chunk;
    Ok(cost)
}
