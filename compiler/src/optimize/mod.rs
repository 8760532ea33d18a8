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
//! 3. **rings**: the options of all layers chosen together on the exact plan cost (`schedule` +
//!    `plan_cost` of a probe plan: nonlinear steps, unpacking, keys of the contexts used),
//!    minimising first the bytes by which layers exceed the baseline's, then the objective:
//!    every combination on small plans ([`exhaustive::best_pick`]), coordinate descent on
//!    larger ones.
//! 4. **ILP** ([`ilp`]): at the chosen options, one binary per (layer, candidate) and one per HE
//!    context (each context used costs one public key), with only candidates that keep their
//!    layer within the baseline's bytes; checked against brute force ([`exhaustive`]) in tests.
//! 5. The chosen plan is scheduled and priced by `heq_runtime::cost::plan::plan_cost`, and its
//!    channel bytes must equal the ILP's (exactness).
//!
//! [`baseline`] gives the Cheetah configuration (`--baseline cheetah`).

pub mod baseline;
pub mod candidates;
pub mod exhaustive;
pub mod ilp;

use crate::error::{Error, Result};
use candidates::{Candidate, HeContext, LayerCandidates, RingOption};
use heq_runtime::cost::compute::{ComputeProfile, Network};
use heq_runtime::cost::linear::public_key_bytes;
use heq_runtime::cost::plan::{PlanCost, plan_cost};
use heq_runtime::params::nonlinear::UnpackPlan;
use heq_runtime::plan::{LinearProtocol, Op, PackDim, Plan, PublicPlan};
use heq_runtime::schedule::{ScheduleError, StepKind, schedule};
use rayon::prelude::*;
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
    /// Channel bytes that do not depend on the choice (nonlinear steps and reveal; the
    /// unpacking of packed words is in the candidates, [`Candidate::unpack_bytes`]).
    pub fixed_bytes: u64,
    /// Channel rounds (they do not depend on the choice).
    pub rounds: u64,
    /// The objective.
    pub objective: Objective,
}

impl Problem {
    /// Objective value of one candidate (its rounds are in [`Problem::rounds`]).
    pub fn candidate_value(&self, c: &Candidate) -> f64 {
        self.objective.value(c.bytes(), 0, c.compute_ms)
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
            .map(|(l, &k)| l.candidates[k].bytes())
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
    for l in &mut out.layers {
        let slot = match &mut l.op {
            Op::Conv(c) => &mut c.protocol,
            Op::MatMul(c) => &mut c.protocol,
            Op::Affine(c) => &mut c.protocol,
            _ => continue,
        };
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

/// The linear layers' current protocols and accumulator widths, in plan order.
fn linear_parts(plan: &Plan) -> Vec<(LinearProtocol, u32)> {
    plan.public
        .layers
        .iter()
        .filter_map(|l| heq_runtime::schedule::linear_protocol(&l.op))
        .map(|(p, acc)| (p.clone(), acc))
        .collect()
}

/// Protocols of the probe plan: the current HE parameters and tiles with each layer's rings and
/// packing from `options`.
fn probe_protocols(parts: &[(LinearProtocol, u32)], options: &[RingOption]) -> Vec<LinearProtocol> {
    parts
        .iter()
        .zip(options)
        .map(|((p, _), o)| o.apply(p))
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
        let options: Vec<RingOption> = rings.iter().map(|&r| RingOption::plain(r)).collect();
        let probe =
            public_with_protocols(&plan.public, &probe_protocols(&parts, &options), "probe");
        match schedule(&probe) {
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

/// HEQuant packing factors tried per linear layer, along both dimensions.
const PACK_FACTORS: [u32; 3] = [2, 3, 4];

/// Widest packed plaintext (what the probe plans' primes decrypt).
const MAX_PACKED_BITS: u32 = 42;

/// The ring options of every linear layer: its narrowest ring first, then wider rings, then
/// the packings whose fields (accumulator plus a guard bit) fit [`MAX_PACKED_BITS`].
fn ring_options(narrow: &[u32], acc_bits: &[u32]) -> Vec<Vec<RingOption>> {
    narrow
        .iter()
        .zip(acc_bits)
        .map(|(&r, &acc)| {
            let mut rings: Vec<u32> = RING_STEPS
                .iter()
                .map(|d| (r + d).min(MAX_RING_BITS).max(r))
                .collect();
            rings.push(r.max(37).min(MAX_RING_BITS.max(r)));
            let mut v: Vec<RingOption> = Vec::new();
            for o in rings.into_iter().map(RingOption::plain) {
                if !v.contains(&o) {
                    v.push(o);
                }
            }
            for factor in PACK_FACTORS {
                for dim in [PackDim::Spatial, PackDim::OutChannels] {
                    let o = RingOption::packed(acc, factor, dim);
                    if o.ring <= MAX_PACKED_BITS {
                        v.push(o);
                    }
                }
            }
            v
        })
        .collect()
}

/// A layer's cheapest candidate (objective value): its value, channel bytes, and HE context with
/// the context's key bytes (`None` when the layer has no candidate).
#[derive(Clone, Debug)]
struct Cheapest {
    value: f64,
    bytes: u64,
    key: Option<(HeContext, u64)>,
}

/// What the plan with given ring options costs outside its HE layers.
struct Probe {
    /// Nonlinear and reveal bytes, the unpacking of packed words excluded.
    fixed_bytes: u64,
    /// All channel rounds.
    rounds: u64,
    /// Per linear layer, its unpacking (with packing).
    unpacks: Vec<Option<UnpackPlan>>,
    /// Per plan layer, its channel bytes without the HE messages and the unpacking.
    layer_bytes: Vec<u64>,
    /// Per linear layer, its index in the plan.
    positions: Vec<usize>,
}

impl Probe {
    /// `c` with the bytes of its unpacking as the `i`-th linear layer.
    fn priced(&self, i: usize, c: &Candidate) -> Candidate {
        Candidate {
            unpack_bytes: self.unpacks[i]
                .map_or(0, |u| u.cost(c.cost.coeffs_down as u64).total_bytes()),
            ..c.clone()
        }
    }

    /// Bytes by which the layers exceed their `limits` (the baseline's layers) when the `i`-th
    /// linear layer sends `he[i]` bytes of HE messages and unpacking.
    fn excess(&self, he: &[u64], limits: &[u64]) -> u64 {
        let mut bytes = self.layer_bytes.clone();
        for (&pos, &h) in self.positions.iter().zip(he) {
            bytes[pos] += h;
        }
        bytes
            .iter()
            .zip(limits)
            .map(|(&b, &l)| b.saturating_sub(l))
            .sum()
    }
}

/// Schedules and prices the plan with `options` (the HE layers, their unpacking and the keys
/// excluded); `None` if the plan cannot be scheduled with them.
fn probe(plan: &Plan, parts: &[(LinearProtocol, u32)], options: &[RingOption]) -> Option<Probe> {
    let probe = public_with_protocols(&plan.public, &probe_protocols(parts, options), "probe");
    let s = schedule(&probe).ok()?;
    let cost = plan_cost(&probe, &s, probe.protocol.ot).ok()?;
    let mut unpacks = Vec::new();
    let mut positions = Vec::new();
    let mut layer_bytes = Vec::with_capacity(s.steps.len());
    for (pos, (step, c)) in s.steps.iter().zip(&cost.layers).enumerate() {
        let mut bytes = c.traffic.total_bytes();
        if let (StepKind::Linear { unpack, .. }, Some(he)) = (&step.kind, c.he) {
            let words = he.coeffs_down as u64;
            bytes -= he.total_bytes() as u64 + unpack.map_or(0, |u| u.cost(words).total_bytes());
            unpacks.push(*unpack);
            positions.push(pos);
        }
        layer_bytes.push(bytes);
    }
    Some(Probe {
        fixed_bytes: layer_bytes.iter().sum::<u64>() + cost.reveal.total_bytes(),
        rounds: cost.channel().rounds,
        unpacks,
        layer_bytes,
        positions,
    })
}

/// What a pick of ring options is worth: (bytes by which layers exceed the baseline's,
/// objective value).
type PickValue = (u64, f64);

/// Ring-option combinations [`problem`] searches exhaustively; larger plans use [`descend`].
const EXACT_RING_SEARCH: u64 = 4096;

/// Coordinate descent over the ring options from the narrowest ones: per layer the best of its
/// options given the others (each priced in parallel), for up to three sweeps.
fn descend(
    best: &[Vec<Cheapest>],
    total: &(dyn Fn(&[usize]) -> Option<PickValue> + Sync),
    better: impl Fn(PickValue, PickValue) -> bool,
) -> Result<Vec<usize>> {
    let mut pick = vec![0usize; best.len()];
    let mut current = total(&pick).ok_or(Error::Optimize {
        reason: "the plan cannot be scheduled with its narrowest rings".into(),
    })?;
    for _sweep in 0..3 {
        let mut changed = false;
        for (i, layer_best) in best.iter().enumerate() {
            // Every other option of layer i, priced in parallel; the best one that improves.
            let trials: Vec<(usize, (u64, f64))> = layer_best
                .par_iter()
                .enumerate()
                .filter(|(j, b)| *j != pick[i] && b.value.is_finite())
                .filter_map(|(j, _)| {
                    let mut trial = pick.clone();
                    trial[i] = j;
                    total(&trial).map(|v| (j, v))
                })
                .collect();
            for (j, v) in trials {
                if better(v, current) {
                    pick[i] = j;
                    (current, changed) = (v, true);
                }
            }
        }
        if !changed {
            break;
        }
    }
    Ok(pick)
}

/// Builds the optimization problem of a server plan.
///
/// The share rings and packing of each linear layer ([`RingOption`]) are chosen first, on the
/// exact plan cost (nonlinear steps, unpacking included, from `plan_cost`, each HE layer at its
/// cheapest candidate for that option, one key per context those use), minimising first the
/// bytes by which layers exceed the baseline's: exhaustively when there are at most
/// [`EXACT_RING_SEARCH`] combinations, otherwise by coordinate descent ([`descend`]). The ILP
/// then chooses the HE configurations at those options, so it is optimal given the rings, not
/// over them.
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
    let narrow = narrow_rings(plan)?;
    let parts = linear_parts(plan);
    let linear = candidates::LinearLayers::new(plan, profile)?;
    let acc: Vec<u32> = (0..linear.len()).map(|i| linear.acc_bits(i)).collect();
    let options = ring_options(&narrow, &acc);
    // searched[i][j]: the candidates of layer i at its option j (None: no configuration).
    let searched: Vec<Vec<Option<LayerCandidates>>> = options
        .par_iter()
        .enumerate()
        .map(|(i, opts)| opts.iter().map(|&o| linear.candidates(i, o)).collect())
        .collect();
    if let Some(i) = searched.iter().position(|s| s[0].is_none()) {
        return Err(Error::Optimize {
            reason: format!(
                "layer {}: no HE configuration for a {}-bit accumulator",
                linear.id(i),
                acc[i]
            ),
        });
    }
    let scratch = Problem {
        layers: Vec::new(),
        contexts: Vec::new(),
        fixed_bytes: 0,
        rounds: 0,
        objective,
    };
    // Per plan layer, the baseline's bytes: no layer may cost more (when any choice allows).
    let limits: Vec<u64> = predict(&baseline::cheetah(plan).public).map_or_else(
        |_| vec![u64::MAX; plan.public.layers.len()],
        |c| c.layers.iter().map(|l| l.traffic.total_bytes()).collect(),
    );
    let cheapest = |cs: &mut dyn Iterator<Item = Candidate>| -> Cheapest {
        cs.map(|c| (scratch.candidate_value(&c), c))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(
                Cheapest {
                    value: f64::INFINITY,
                    bytes: u64::MAX,
                    key: None,
                },
                |(value, c)| {
                    let key = public_key_bytes(&c.protocol.he).map_or(0, |k| k as u64);
                    Cheapest {
                        value,
                        bytes: c.bytes(),
                        key: Some((c.context(), key)),
                    }
                },
            )
    };
    // best[i][j]: layer i's cheapest candidate at option j (without its unpacking).
    let best: Vec<Vec<Cheapest>> = searched
        .iter()
        .map(|opts| {
            opts.iter()
                .map(|s| match s {
                    Some(l) => cheapest(&mut l.candidates.iter().cloned()),
                    None => cheapest(&mut std::iter::empty()),
                })
                .collect()
        })
        .collect();
    let chosen = |pick: &[usize]| -> Vec<RingOption> {
        pick.iter()
            .enumerate()
            .map(|(i, &j)| options[i][j])
            .collect()
    };
    // The plan priced at a pick of options; `None` when a layer has no candidate there.
    let probe_pick = |pick: &[usize]| -> Option<Probe> {
        if pick
            .iter()
            .enumerate()
            .any(|(i, &j)| searched[i][j].is_none())
        {
            return None;
        }
        probe(plan, &parts, &chosen(pick))
    };
    // (bytes above the baseline's layers, value) with every layer at its cheapest candidate,
    // plus one key per context those use (the ILP then shares contexts better).
    let total = |pick: &[usize]| -> Option<(u64, f64)> {
        let p = probe_pick(pick)?;
        let mut keys: Vec<(HeContext, u64)> = Vec::new();
        let mut value = 0.0;
        let mut he = Vec::with_capacity(pick.len());
        for (i, &j) in pick.iter().enumerate() {
            let c = match (&p.unpacks[i], &searched[i][j]) {
                (Some(_), Some(l)) => cheapest(&mut l.candidates.iter().map(|c| p.priced(i, c))),
                _ => best[i][j].clone(),
            };
            value += c.value;
            he.push(c.bytes);
            if let Some(k) = c.key
                && !keys.iter().any(|(c, _)| *c == k.0)
            {
                keys.push(k);
            }
        }
        let keys: f64 = keys.iter().map(|(_, b)| objective.value(*b, 0, 0.0)).sum();
        let value = objective.value(p.fixed_bytes, p.rounds, 0.0) + value + keys;
        Some((p.excess(&he, &limits), value))
    };
    let better = |a: (u64, f64), b: (u64, f64)| a.0 < b.0 || (a.0 == b.0 && a.1 < b.1);
    // The exact value of a pick: the ILP's optimum over the candidates at those options.
    let exact = |pick: &[usize]| -> Option<(u64, f64)> {
        let p = probe_pick(pick)?;
        let problem = problem_at(&searched, &p, pick, &limits, objective).ok()?;
        let (choice, _) = ilp::solve(&problem).ok()?;
        let he: Vec<u64> = problem
            .layers
            .iter()
            .zip(&choice)
            .map(|(l, &k)| l.candidates[k].bytes())
            .collect();
        Some((p.excess(&he, &limits), problem.value(&choice)))
    };
    let sizes: Vec<usize> = options.iter().map(Vec::len).collect();
    let pick = match exhaustive::best_pick(&sizes, exact_limit, exact, better) {
        Some((pick, _)) => pick,
        None => descend(&best, &total, better)?,
    };
    let chosen_probe = probe(plan, &parts, &chosen(&pick)).ok_or(Error::Optimize {
        reason: "the chosen rings cannot be scheduled".into(),
    })?;
    problem_at(&searched, &chosen_probe, &pick, &limits, objective)
}

/// The ILP problem at one pick of ring options (`probe` priced with them): each layer's
/// candidates with the bytes of their unpacking, only those that keep the layer within its
/// baseline bytes (`limits`) if any does.
///
/// # Errors
/// [`Error::Optimize`] when a picked option has no candidates or a key cannot be priced.
fn problem_at(
    searched: &[Vec<Option<LayerCandidates>>],
    probe: &Probe,
    pick: &[usize],
    limits: &[u64],
    objective: Objective,
) -> Result<Problem> {
    let layers: Vec<LayerCandidates> = pick
        .iter()
        .enumerate()
        .map(|(i, &j)| {
            let l = searched[i][j].as_ref().ok_or(Error::Optimize {
                reason: "a picked ring option has no candidates".into(),
            })?;
            let all: Vec<Candidate> = l.candidates.iter().map(|c| probe.priced(i, c)).collect();
            let pos = probe.positions[i];
            let within: Vec<Candidate> = all
                .iter()
                .filter(|c| probe.layer_bytes[pos] + c.bytes() <= limits[pos])
                .cloned()
                .collect();
            Ok(LayerCandidates {
                layer: l.layer,
                candidates: if within.is_empty() { all } else { within },
            })
        })
        .collect::<Result<_>>()?;
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
    Ok(Problem {
        layers,
        contexts,
        fixed_bytes: probe.fixed_bytes,
        rounds: probe.rounds,
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
    let problem = problem_with(plan, objective, profile, EXACT_RING_SEARCH)?;
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
