//! The optimizer: chooses every linear layer's HE configuration (ring degree, primes, share
//! rings, tile) to minimise the predicted communication or latency of the whole plan
//! (`protocols.md` §3.6, §6, takeaway 10).
//!
//! Pipeline:
//!
//! 1. **rings**: every linear layer gets `in_ring = plain = out_ring = acc_bits`, the narrowest
//!    the protocol allows (lossless: the plaintext holds the sound accumulator), widened only where
//!    the schedule's ring rule demands it (a linear layer without requantization feeding a wider
//!    consumer). With the rings fixed, the nonlinear cost of the plan is a constant.
//! 2. **candidates** ([`candidates`]): per layer and HE context, the Pareto-optimal tiles, priced
//!    by the runtime's cost functions and filtered by the server's flooding check.
//! 3. **ILP** ([`ilp`]): one binary per (layer, candidate) and one per HE context (each context
//!    used costs one public key); checked against brute force ([`exhaustive`]) in tests.
//! 4. The chosen plan is scheduled and priced by `heq_runtime::cost::plan::plan_cost`, and its
//!    channel bytes must equal the ILP's (exactness).
//!
//! [`baseline`] gives the Cheetah configuration (`--baseline cheetah`).

pub mod baseline;
pub mod candidates;
pub mod exhaustive;
pub mod ilp;

use crate::error::{Error, Result};
use candidates::{Candidate, HeContext, LayerCandidates};
use heq_runtime::cost::compute::{ComputeProfile, Network};
use heq_runtime::cost::linear::public_key_bytes;
use heq_runtime::cost::plan::{PlanCost, plan_cost};
use heq_runtime::plan::{HeParams, LinearProtocol, Op, Plan, PublicPlan};
use heq_runtime::schedule::{ScheduleError, schedule};
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

    /// Bandwidth in bits per second.
    pub fn bits_per_second(self) -> f64 {
        match self {
            Net::Lan => 3e9,
            Net::Wan => 400e6,
            Net::Custom {
                bits_per_second, ..
            } => bits_per_second as f64,
        }
    }

    /// Round-trip time in milliseconds.
    pub fn rtt_ms(self) -> f64 {
        match self {
            Net::Lan => 0.3,
            Net::Wan => 40.0,
            Net::Custom { rtt_us, .. } => rtt_us as f64 / 1e3,
        }
    }

    /// The runtime's network model of this profile.
    pub fn network(self) -> Network {
        Network {
            bits_per_second: self.bits_per_second(),
            rtt_ms: self.rtt_ms(),
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
        write!(
            f,
            "{name} ({} Mbps, {} ms RTT)",
            self.bits_per_second() / 1e6,
            self.rtt_ms()
        )
    }
}

/// What the optimizer minimises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Objective {
    /// Total channel bytes, both directions (default).
    #[default]
    Comm,
    /// Estimated milliseconds: bytes / bandwidth + rounds · RTT + HE compute (the compute
    /// profile given to [`optimize_with`]).
    Latency(Net),
}

impl Objective {
    /// Value of `bytes` sent in `rounds` rounds with `compute_ms` of HE compute.
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
    /// Every context some candidate uses, with its public-key bytes.
    pub contexts: Vec<(HeContext, u64)>,
    /// Channel bytes that do not depend on the choice (nonlinear steps, reveal).
    pub fixed_bytes: u64,
    /// Channel rounds (they do not depend on the choice).
    pub rounds: u64,
    /// The objective.
    pub objective: Objective,
}

impl Problem {
    /// Objective value of one candidate (its rounds are in [`Problem::rounds`]).
    pub fn candidate_value(&self, c: &Candidate) -> f64 {
        self.objective
            .value(c.cost.total_bytes() as u64, 0, c.compute_ms)
    }

    /// Objective value of one context's public key.
    pub fn context_value(&self, ctx: usize) -> f64 {
        self.objective.value(self.contexts[ctx].1, 0, 0.0)
    }

    /// Index of the context of `c` in [`Problem::contexts`].
    pub fn context_of(&self, c: &Candidate) -> usize {
        let ctx = c.context();
        self.contexts
            .iter()
            .position(|(k, _)| *k == ctx)
            .expect("every candidate's context is listed")
    }

    /// The contexts a choice uses, sorted.
    fn used_contexts(&self, choice: &[usize]) -> Vec<usize> {
        let mut used: Vec<usize> = self
            .layers
            .iter()
            .zip(choice)
            .map(|(l, &k)| self.context_of(&l.candidates[k]))
            .collect();
        used.sort_unstable();
        used.dedup();
        used
    }

    /// Objective value of a choice (one candidate index per layer).
    pub fn value(&self, choice: &[usize]) -> f64 {
        let fixed = self.objective.value(self.fixed_bytes, self.rounds, 0.0);
        let layers: f64 = self
            .layers
            .iter()
            .zip(choice)
            .map(|(l, &k)| self.candidate_value(&l.candidates[k]))
            .sum();
        let keys: f64 = self
            .used_contexts(choice)
            .into_iter()
            .map(|c| self.context_value(c))
            .sum();
        fixed + layers + keys
    }

    /// Channel bytes of a choice: what `plan_cost` must predict for the resulting plan.
    pub fn bytes(&self, choice: &[usize]) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .zip(choice)
            .map(|(l, &k)| l.candidates[k].cost.total_bytes() as u64)
            .sum();
        let keys: u64 = self
            .used_contexts(choice)
            .into_iter()
            .map(|c| self.contexts[c].1)
            .sum();
        self.fixed_bytes + layers + keys
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

/// The optimizer's result.
#[derive(Clone, Debug)]
pub struct Optimized {
    /// The plan with the chosen protocols (profile `"optimized"`).
    pub plan: Plan,
    /// The problem that was solved.
    pub problem: Problem,
    /// Chosen candidate per linear layer.
    pub choice: Vec<usize>,
    /// Predicted cost of the plan.
    pub cost: PlanCost,
    /// ILP statistics.
    pub stats: SolveStats,
    /// Wall time of the candidate search.
    pub search_time: Duration,
}

/// Replaces the protocol of every linear layer, in plan order, and sets the profile name.
///
/// # Panics
/// If `protocols` has fewer entries than the plan has linear layers.
pub fn with_protocols(plan: &Plan, protocols: &[LinearProtocol], profile: &str) -> Plan {
    let mut out = plan.clone();
    let mut it = protocols.iter();
    for l in &mut out.public.layers {
        let slot = match &mut l.op {
            Op::Conv(c) => &mut c.protocol,
            Op::MatMul(c) => &mut c.protocol,
            Op::Affine(c) => &mut c.protocol,
            _ => continue,
        };
        *slot = it.next().expect("one protocol per linear layer").clone();
    }
    out.public.protocol.profile = profile.to_string();
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

/// The linear layers' current protocols and accumulator widths, in plan order.
fn linear_parts(plan: &Plan) -> Vec<(LinearProtocol, u32)> {
    plan.public
        .layers
        .iter()
        .filter_map(|l| heq_runtime::schedule::linear_protocol(&l.op))
        .map(|(p, acc)| (p.clone(), acc))
        .collect()
}

/// Protocols of the probe plan: the current HE parameters and tiles with rings of `rings` bits.
fn probe_protocols(parts: &[(LinearProtocol, u32)], rings: &[u32]) -> Vec<LinearProtocol> {
    parts
        .iter()
        .zip(rings)
        .map(|((p, _), &r)| LinearProtocol {
            he: HeParams {
                plain_bits: r,
                ..p.he.clone()
            },
            in_ring_bits: r,
            out_ring_bits: r,
            ..p.clone()
        })
        .collect()
}

/// The narrowest share rings per linear layer: the accumulator width, widened where a linear
/// layer without requantization must deliver a wider ring to its consumers.
///
/// # Errors
/// [`Error::Optimize`] when the plan cannot be scheduled with any rings.
pub fn narrow_rings(plan: &Plan) -> Result<Vec<u32>> {
    let parts = linear_parts(plan);
    let mut rings: Vec<u32> = parts.iter().map(|(_, acc)| *acc).collect();
    let producers: Vec<_> = plan
        .public
        .layers
        .iter()
        .filter(|l| l.op.is_linear())
        .map(|l| l.output)
        .collect();
    for _ in 0..=rings.len() {
        let probe = with_protocols(plan, &probe_protocols(&parts, &rings), "probe");
        match schedule(&probe.public) {
            Ok(_) => return Ok(rings),
            Err(ScheduleError::RingTooNarrow { tensor, need, .. }) => {
                let Some(i) = producers.iter().position(|&t| t == tensor) else {
                    break;
                };
                rings[i] = rings[i].max(need);
            }
            Err(e) => {
                return Err(Error::Optimize {
                    reason: e.to_string(),
                });
            }
        }
    }
    Err(Error::Optimize {
        reason: "no share rings satisfy the schedule".into(),
    })
}

/// Ring widths tried per linear layer, above the narrowest one: a little headroom lets the
/// requantization skip its wrap computation; 37 is the baseline's ring.
const RING_STEPS: [u32; 5] = [0, 1, 2, 4, 8];

/// Widest ring tried (the probe plans use the baseline primes, which decrypt up to 42 bits).
const MAX_RING_BITS: u32 = 40;

/// The candidates of every layer at every ring of its menu: `menus[j][i]` is the `j`-th menu
/// entry of linear layer `i`; `None` where some layer has no configuration at that entry.
fn ring_menus(narrow: &[u32]) -> Vec<Vec<u32>> {
    let mut menus: Vec<Vec<u32>> = RING_STEPS
        .iter()
        .map(|d| {
            narrow
                .iter()
                .map(|&r| (r + d).min(MAX_RING_BITS).max(r))
                .collect()
        })
        .collect();
    menus.push(
        narrow
            .iter()
            .map(|&r| r.max(37).min(MAX_RING_BITS.max(r)))
            .collect(),
    );
    menus
}

/// The nonlinear and reveal bytes and all rounds of the plan with `rings` (the HE layers and the
/// keys excluded), or `None` if the plan cannot be scheduled with them.
fn fixed_part(plan: &Plan, parts: &[(LinearProtocol, u32)], rings: &[u32]) -> Option<(u64, u64)> {
    let cost =
        predict(&with_protocols(plan, &probe_protocols(parts, rings), "probe").public).ok()?;
    let channel = cost.channel();
    let he: u64 = cost
        .layers
        .iter()
        .filter_map(|l| l.he)
        .map(|h| h.total_bytes() as u64)
        .sum();
    Some((
        channel.total_bytes() - he - cost.setup.total_bytes(),
        channel.rounds,
    ))
}

/// Builds the optimization problem of a server plan.
///
/// The share ring of each linear layer is chosen first, by coordinate descent over its ring
/// menu on the exact plan cost (nonlinear steps from `plan_cost`, each HE layer at its cheapest
/// candidate for that ring); the ILP then chooses the HE configurations at those rings, so it
/// is optimal given the rings, not over them.
///
/// # Errors
/// [`Error::Optimize`] when the plan has no weights, a layer has no valid configuration or the
/// plan cannot be scheduled.
pub fn problem(plan: &Plan, objective: Objective) -> Result<Problem> {
    problem_with(plan, objective, &ComputeProfile::builtin())
}

/// [`problem`] with the candidates' compute times from `profile`.
///
/// # Errors
/// As [`problem`].
pub fn problem_with(
    plan: &Plan,
    objective: Objective,
    profile: &ComputeProfile,
) -> Result<Problem> {
    let narrow = narrow_rings(plan)?;
    let parts = linear_parts(plan);
    let menus = ring_menus(&narrow);
    let searched: Vec<Option<Vec<LayerCandidates>>> = menus
        .iter()
        .enumerate()
        .map(
            |(j, rings)| match candidates::search_with(plan, rings, profile) {
                Ok(c) => Ok(Some(c)),
                Err(e) if j == 0 => Err(e),
                Err(_) => Ok(None),
            },
        )
        .collect::<Result<_>>()?;
    let scratch = Problem {
        layers: Vec::new(),
        contexts: Vec::new(),
        fixed_bytes: 0,
        rounds: 0,
        objective,
    };
    // best[j][i]: value of layer i's cheapest candidate at menu entry j.
    let best: Vec<Option<Vec<f64>>> = searched
        .iter()
        .map(|s| {
            s.as_ref().map(|layers| {
                layers
                    .iter()
                    .map(|l| {
                        l.candidates
                            .iter()
                            .map(|c| scratch.candidate_value(c))
                            .fold(f64::INFINITY, f64::min)
                    })
                    .collect()
            })
        })
        .collect();
    let total = |pick: &[usize]| -> Option<f64> {
        let rings: Vec<u32> = pick.iter().enumerate().map(|(i, &j)| menus[j][i]).collect();
        let (bytes, rounds) = fixed_part(plan, &parts, &rings)?;
        let he: f64 = pick
            .iter()
            .enumerate()
            .map(|(i, &j)| best[j].as_ref().map_or(f64::INFINITY, |b| b[i]))
            .sum();
        Some(objective.value(bytes, rounds, 0.0) + he)
    };
    let mut pick = vec![0usize; narrow.len()];
    let mut current = total(&pick).ok_or(Error::Optimize {
        reason: "the plan cannot be scheduled with its narrowest rings".into(),
    })?;
    for _sweep in 0..3 {
        let mut changed = false;
        for i in 0..pick.len() {
            for (j, b) in best.iter().enumerate() {
                if j == pick[i] || b.is_none() {
                    continue;
                }
                let mut trial = pick.clone();
                trial[i] = j;
                if let Some(v) = total(&trial).filter(|&v| v < current) {
                    (pick, current, changed) = (trial, v, true);
                }
            }
        }
        if !changed {
            break;
        }
    }
    let layers: Vec<LayerCandidates> = pick
        .iter()
        .enumerate()
        .map(|(i, &j)| {
            searched[j]
                .as_ref()
                .map(|s| s[i].clone())
                .expect("only searched menu entries are picked")
        })
        .collect();
    let rings: Vec<u32> = pick.iter().enumerate().map(|(i, &j)| menus[j][i]).collect();
    let mut contexts: Vec<(HeContext, u64)> = Vec::new();
    for c in layers.iter().flat_map(|l| &l.candidates) {
        let ctx = c.context();
        if !contexts.iter().any(|(k, _)| *k == ctx) {
            let key = public_key_bytes(&c.protocol.he).map_err(|e| Error::Optimize {
                reason: e.to_string(),
            })?;
            contexts.push((ctx, key as u64));
        }
    }
    contexts.sort();
    let (fixed_bytes, rounds) = fixed_part(plan, &parts, &rings).ok_or(Error::Optimize {
        reason: "the chosen rings cannot be scheduled".into(),
    })?;
    Ok(Problem {
        layers,
        contexts,
        fixed_bytes,
        rounds,
        objective,
    })
}

/// Optimizes the protocols of a server plan with the shipped compute profile.
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
    let start = Instant::now();
    let problem = problem_with(plan, objective, profile)?;
    let search_time = start.elapsed();
    let (choice, stats) = ilp::solve(&problem)?;
    let protocols: Vec<LinearProtocol> = problem
        .layers
        .iter()
        .zip(&choice)
        .map(|(l, &k)| l.candidates[k].protocol.clone())
        .collect();
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
        problem,
        choice,
        cost,
        stats,
        search_time,
    })
}
