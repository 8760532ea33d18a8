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
//! tiles in its probe plans and replaces them all.

use crate::error::Result;
use crate::lower::Skeleton;
use crate::optimize::candidates::{self, RunnerUp};
use crate::optimize::{self, Objective, Solution, baseline};
use heq_runtime::cost::compute::ComputeProfile;
use heq_runtime::cost::plan::PlanCost;
use heq_runtime::plan::{Plan, PublicPlan};

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
/// timed with `profile` (the latency objective's compute times, and the runner-ups).
///
/// # Errors
/// [`crate::Error::Plan`] when the plan breaks a structural rule; [`crate::Error::Optimize`]
/// when the chosen plan cannot be scheduled or the optimizer fails.
pub fn select(
    skeleton: Skeleton,
    strategy: Strategy,
    profile: &ComputeProfile,
) -> Result<Selection> {
    let opencheetah = skeleton
        .linear_ops()
        .filter_map(baseline::layer_protocol)
        .collect();
    let start = skeleton.into_plan(opencheetah, "cheetah")?;
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
            let o = optimize::optimize_against(
                &start,
                objective,
                profile,
                baseline.as_ref().map(|b| &b.cost),
            )?;
            Ok(Selection {
                plan: o.plan,
                cost: o.cost,
                baseline,
                runner_ups: o.runner_ups,
                solution: Some(o.solution),
            })
        }
    }
}
