//! The optimizer: chooses every linear layer's HE configuration (ring degree, primes, share
//! rings, tile, HEQuant packing) to minimise the predicted communication or latency of the whole
//! plan (`protocols.md` §3.5–3.6, §5.7, takeaways 8–10), with no layer costing more bytes than
//! in the Cheetah baseline.
//!
//! Pipeline:
//!
//! 1. **ring options** ([`candidates::RingOption`]): per linear layer its narrowest ring
//!    (`in_ring = plain = out_ring = acc_bits`, widened only where the schedule's ring rule
//!    demands it), a few wider rings, and packings of `b ∈ {2, 3, 4}` fields of `acc_bits + 1`
//!    bits along space or output channels.
//! 2. **candidates** ([`candidates`]): per layer, option and HE context, the Pareto-optimal
//!    tiles, priced by the runtime's cost functions and filtered by the server's flooding check;
//!    a packed candidate also pays the unpacking of its words (`UnpackPlan`).
//! 3. **rings** ([`rings`]): the options of all layers chosen together on the exact plan cost
//!    (`schedule` + `plan_cost` of a probe plan: nonlinear steps, unpacking, keys of the
//!    contexts used), minimising first the bytes by which layers exceed the baseline's, then
//!    the objective: every combination on small plans ([`exhaustive::best_pick`]), coordinate
//!    descent on larger ones.
//! 4. **ILP** ([`ilp`]): at the chosen options, one binary per (layer, candidate), one per HE
//!    context (each context used costs one public key) and one per (context, Galois exponent)
//!    (each costs one Galois key, shared by every layer whose response packing uses it), with
//!    only candidates that keep their layer within the baseline's bytes; checked against brute
//!    force ([`exhaustive`]) in tests.
//! 5. The chosen plan is scheduled and priced by `heq_runtime::cost::plan::plan_cost`, and its
//!    channel bytes must equal the ILP's (exactness).
//!
//! [`baseline`] gives the Cheetah configuration (`--baseline cheetah`); [`crate::select`] runs
//! either on a lowered model.

pub mod baseline;
pub mod candidates;
pub mod exhaustive;
pub mod ilp;
pub mod rings;

use crate::error::{Error, Result};
use candidates::{Candidate, ContextKeys, LayerCandidates, RunnerUp};
use heq_runtime::cost::compute::{ComputeProfile, Network};
use heq_runtime::cost::plan::{PlanCost, plan_cost};
use heq_runtime::plan::{LinearProtocol, Plan, PublicPlan};
use heq_runtime::schedule::schedule;
use rings::{EXACT_RING_SEARCH, RingSearch};
use std::time::{Duration, Instant};

/// A network profile for the latency objective (OpenCheetah's `tc` settings, `protocols.md`
/// §1.1, or a custom one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// 3 Gbps, 0.3 ms RTT.
    Lan,
    /// 400 Mbps, 40 ms RTT.
    Wan,
    /// Any bandwidth and RTT (integers, so that the profile stays `Eq`).
    Custom {
        /// Bandwidth in bits per second.
        bits_per_second: u64,
        /// Round-trip time in microseconds.
        rtt_us: u64,
    },
}

impl Net {
    /// A custom network of `mbps` megabits per second and `rtt_ms` milliseconds RTT (rounded
    /// to whole bits per second and microseconds; the bandwidth at least 1 bit per second).
    pub fn custom(mbps: f64, rtt_ms: f64) -> Self {
        Net::Custom {
            bits_per_second: ((mbps * 1e6).round() as u64).max(1),
            rtt_us: (rtt_ms * 1e3).round().max(0.0) as u64,
        }
    }

    /// The runtime's network model of this profile (the one place its bandwidth and RTT are
    /// defined).
    pub fn network(self) -> Network {
        match self {
            Net::Lan => Network {
                bits_per_second: 3e9,
                rtt_ms: 0.3,
            },
            Net::Wan => Network {
                bits_per_second: 400e6,
                rtt_ms: 40.0,
            },
            Net::Custom {
                bits_per_second,
                rtt_us,
            } => Network {
                bits_per_second: bits_per_second as f64,
                rtt_ms: rtt_us as f64 / 1e3,
            },
        }
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Net::Lan => "lan",
            Net::Wan => "wan",
            Net::Custom { .. } => "custom",
        };
        let network = self.network();
        write!(
            f,
            "{name} ({} Mbps, {} ms RTT)",
            network.bits_per_second / 1e6,
            network.rtt_ms
        )
    }
}

/// What the optimizer minimises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Objective {
    /// Total channel bytes, both directions (default).
    #[default]
    Comm,
    /// Estimated milliseconds: bytes / bandwidth + rounds · RTT + compute (HE operations, and
    /// the nonlinear steps' ROTs, consumed by the protocols and produced by the OT extension;
    /// the compute profile given to [`optimize_with`]).
    Latency(Net),
}

impl Objective {
    /// Value of `bytes` sent in `rounds` rounds with `compute_ms` of compute.
    pub fn value(self, bytes: u64, rounds: u64, compute_ms: f64) -> f64 {
        match self {
            Objective::Comm => bytes as f64,
            Objective::Latency(net) => net.network().transfer_ms(bytes, rounds) + compute_ms,
        }
    }
}

/// The optimization problem: per linear layer its candidates, the HE contexts with their key
/// cost, and the constant part of the plan's cost.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Candidates of every linear layer, in plan order.
    pub layers: Vec<LayerCandidates>,
    /// Every context some candidate uses, with its key prices, sorted.
    pub contexts: Vec<ContextKeys>,
    /// Channel bytes that do not depend on the choice (nonlinear steps and reveal; the
    /// unpacking of packed words is in the candidates, [`Candidate::unpack_bytes`]).
    pub fixed_bytes: u64,
    /// Channel rounds that do not depend on the choice (the unpacking's are in the
    /// candidates, [`Candidate::unpack_rounds`]).
    pub rounds: u64,
    /// Compute milliseconds that do not depend on the choice: the nonlinear steps' ROTs (the
    /// unpacking of packed words is in the candidates' [`Candidate::compute_ms`]).
    pub fixed_ms: f64,
    /// The objective.
    pub objective: Objective,
}

impl Problem {
    /// Objective value of one candidate (with the rounds of its unpacking; the other rounds
    /// are in [`Problem::rounds`]).
    pub fn candidate_value(&self, c: &Candidate) -> f64 {
        c.value(self.objective)
    }

    /// Objective value of one context's public key.
    pub fn context_value(&self, ctx: usize) -> f64 {
        self.objective.value(self.contexts[ctx].public_key, 0, 0.0)
    }

    /// Objective value of one Galois key of a context.
    pub fn galois_value(&self, ctx: usize) -> f64 {
        self.objective.value(self.contexts[ctx].galois_key, 0, 0.0)
    }

    /// Index of the context of `c` in [`Problem::contexts`].
    pub fn context_of(&self, c: &Candidate) -> usize {
        let ctx = c.context();
        self.contexts
            .iter()
            .position(|k| k.context == ctx)
            .expect("every candidate's context is listed")
    }

    /// Bytes of the keys of a choice: per context used, its public key and its Galois keys.
    fn key_bytes(&self, choice: &[usize]) -> u64 {
        candidates::key_bytes(
            self.layers
                .iter()
                .zip(choice)
                .map(|(l, &k)| &l.candidates[k]),
        )
    }

    /// Objective value of a choice (one candidate index per layer).
    pub fn value(&self, choice: &[usize]) -> f64 {
        let fixed = self
            .objective
            .value(self.fixed_bytes, self.rounds, self.fixed_ms);
        let layers: f64 = self
            .layers
            .iter()
            .zip(choice)
            .map(|(l, &k)| self.candidate_value(&l.candidates[k]))
            .sum();
        let keys = self.objective.value(self.key_bytes(choice), 0, 0.0);
        fixed + layers + keys
    }

    /// Channel bytes of a choice: what `plan_cost` must predict for the resulting plan.
    pub fn bytes(&self, choice: &[usize]) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .zip(choice)
            .map(|(l, &k)| l.candidates[k].bytes())
            .sum();
        self.fixed_bytes + layers + self.key_bytes(choice)
    }
}

/// Size and time of the ILP solve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SolveStats {
    /// Binary variables.
    pub variables: usize,
    /// Constraints.
    pub constraints: usize,
    /// Wall time of the solver.
    pub time: Duration,
}

/// How the optimizer arrived at its plan: the problem, its solution and what they took.
#[derive(Clone, Debug)]
pub struct Solution {
    /// The problem that was solved.
    pub problem: Problem,
    /// Chosen candidate per linear layer.
    pub choice: Vec<usize>,
    /// ILP statistics.
    pub stats: SolveStats,
    /// Wall time of the candidate search.
    pub search_time: Duration,
}

/// The optimizer's result.
#[derive(Clone, Debug)]
pub struct Optimized {
    /// The plan with the chosen protocols (profile `"optimized"`).
    pub plan: Plan,
    /// Predicted cost of the plan.
    pub cost: PlanCost,
    /// Per linear layer, the cheapest other candidate at its chosen rings.
    pub runner_ups: Vec<RunnerUp>,
    /// The problem and its solution.
    pub solution: Solution,
}

/// Replaces the protocol of every linear layer, in plan order, and sets the profile name.
///
/// # Panics
/// If `protocols` has fewer entries than the plan has linear layers.
pub fn with_protocols(plan: &Plan, protocols: &[LinearProtocol], profile: &str) -> Plan {
    Plan {
        public: public_with_protocols(&plan.public, protocols, profile),
        weights: plan.weights.clone(),
    }
}

/// [`with_protocols`] on the public part only (what scheduling and pricing read; no copy of
/// the weights).
///
/// # Panics
/// If `protocols` has fewer entries than the plan has linear layers.
pub fn public_with_protocols(
    public: &PublicPlan,
    protocols: &[LinearProtocol],
    profile: &str,
) -> PublicPlan {
    let mut out = public.clone();
    let mut it = protocols.iter();
    for slot in crate::lower::protocol_slots(&mut out) {
        *slot = it.next().expect("one protocol per linear layer").clone();
    }
    out.protocol.profile = profile.to_string();
    out
}

/// Schedules and prices a public plan.
///
/// # Errors
/// [`Error::Optimize`] when the plan cannot be scheduled.
pub fn predict(public: &PublicPlan) -> Result<PlanCost> {
    let s = schedule(public).map_err(|e| Error::Optimize {
        reason: e.to_string(),
    })?;
    plan_cost(public, &s, public.protocol.ot).map_err(|e| Error::Optimize {
        reason: e.to_string(),
    })
}

/// The baseline's cost of the model of `plan` (`None` when it cannot be scheduled): the
/// per-layer bytes no optimized layer may exceed.
fn baseline_cost(plan: &Plan) -> Option<PlanCost> {
    predict(&baseline::cheetah_public(plan)).ok()
}

/// Builds the optimization problem of a server plan.
///
/// The share rings and packing of each linear layer are chosen first ([`rings`]), on the exact
/// plan cost, minimising first the bytes by which layers exceed the baseline's: exhaustively
/// when there are at most [`EXACT_RING_SEARCH`] combinations, otherwise by coordinate descent.
/// The ILP then chooses the HE configurations at those options, so it is optimal given the
/// rings, not over them.
///
/// # Errors
/// [`Error::Optimize`] when the plan has no weights, a layer has no valid configuration or the
/// plan cannot be scheduled.
pub fn problem(plan: &Plan, objective: Objective) -> Result<Problem> {
    problem_with(
        plan,
        objective,
        &ComputeProfile::builtin(),
        EXACT_RING_SEARCH,
    )
}

/// [`problem`] with the candidates' compute times from `profile`, searching the ring options
/// exhaustively up to `exact_limit` combinations (0: always by coordinate descent).
///
/// # Errors
/// As [`problem`].
pub fn problem_with(
    plan: &Plan,
    objective: Objective,
    profile: &ComputeProfile,
    exact_limit: u64,
) -> Result<Problem> {
    let search = RingSearch::new(plan, objective, profile, baseline_cost(plan).as_ref(), true)?;
    search.problem(&search.pick(exact_limit)?)
}

/// Optimizes the protocols of a server plan with the shipped compute profile.
///
/// The plan's current HE parameters and tiles are those of the probe plans of the ring search
/// ([`rings`]); [`crate::select`] starts from OpenCheetah's.
///
/// # Errors
/// As [`problem`]; [`Error::Optimize`] when the solver fails or the plan's predicted bytes
/// differ from the ILP's (a bug).
pub fn optimize(plan: &Plan, objective: Objective) -> Result<Optimized> {
    optimize_with(plan, objective, &ComputeProfile::builtin())
}

/// [`optimize`] with the compute times of `profile` (they matter to the latency objective).
///
/// # Errors
/// As [`optimize`].
pub fn optimize_with(
    plan: &Plan,
    objective: Objective,
    profile: &ComputeProfile,
) -> Result<Optimized> {
    optimize_against(plan, objective, profile, baseline_cost(plan).as_ref(), true)
}

/// [`optimize_with`] given the baseline's cost of the same model (`None`: no per-layer limits),
/// with or without the interleaved encoding's candidates (`response_packing`).
///
/// # Errors
/// As [`optimize`].
pub(crate) fn optimize_against(
    plan: &Plan,
    objective: Objective,
    profile: &ComputeProfile,
    baseline: Option<&PlanCost>,
    response_packing: bool,
) -> Result<Optimized> {
    let start = Instant::now();
    let search = RingSearch::new(plan, objective, profile, baseline, response_packing)?;
    let pick = search.pick(EXACT_RING_SEARCH)?;
    let problem = search.problem(&pick)?;
    let search_time = start.elapsed();
    let (choice, stats) = ilp::solve(&problem)?;
    let protocols: Vec<LinearProtocol> = problem
        .layers
        .iter()
        .zip(&choice)
        .map(|(l, &k)| l.candidates[k].protocol.clone())
        .collect();
    let runner_ups = search.runner_ups(&pick, &protocols);
    let plan = with_protocols(plan, &protocols, "optimized");
    let cost = predict(&plan.public)?;
    let predicted = cost.channel().total_bytes();
    if predicted != problem.bytes(&choice) {
        return Err(Error::Optimize {
            reason: format!(
                "plan_cost predicts {predicted} bytes, the ILP {}",
                problem.bytes(&choice)
            ),
        });
    }
    Ok(Optimized {
        plan,
        cost,
        runner_ups,
        solution: Solution {
            problem,
            choice,
            stats,
            search_time,
        },
    })
}
