//! The ring search (step 3 of the optimizer, [`super`]): the share rings and HEQuant packing
//! ([`RingOption`]) of every linear layer, chosen together on the exact plan cost before the ILP
//! chooses the HE configurations at those options.
//!
//! Each layer's options are its narrowest ring ([`narrow_rings`]), a few wider rings and the
//! packings whose fields fit the probe plans' primes. A pick (one option per layer) is priced
//! on a probe plan: the starting plan's HE parameters and tiles with the picked rings,
//! scheduled and priced by `plan_cost` (nonlinear steps, unpacking), each HE layer at its
//! cheapest candidate for its option and the keys those use (per context the public key and
//! the Galois keys of their response packing). Picks are compared
//! first on the bytes by which layers exceed the baseline's, then on the objective: every
//! combination on small plans (each with the ILP's optimum, [`super::exhaustive::best_pick`]),
//! coordinate descent from the narrowest rings on larger ones.

use super::candidates::{
    self, Candidate, ContextKeys, LayerCandidates, RingOption, RunnerUp, key_bytes, runner_up,
};
use super::{Objective, Problem, exhaustive, ilp, public_with_protocols};
use crate::error::{Error, Result};
use heq_runtime::cost::compute::ComputeProfile;
use heq_runtime::cost::nonlinear::Cost;
use heq_runtime::cost::plan::{PlanCost, plan_cost, unpack_cost};
use heq_runtime::params::nonlinear::UnpackPlan;
use heq_runtime::plan::{LinearProtocol, PackDim, Plan};
use heq_runtime::schedule::{ScheduleError, StepKind, schedule};
use rayon::prelude::*;

/// Ring widths tried per linear layer, above the narrowest one: a little headroom lets the
/// requantization skip its wrap computation; 37 is the baseline's ring.
const RING_STEPS: [u32; 5] = [0, 1, 2, 4, 8];

/// Widest ring tried (the probe plans use the baseline primes, which decrypt up to 42 bits).
const MAX_RING_BITS: u32 = 40;

/// HEQuant packing factors tried per linear layer, along both dimensions.
const PACK_FACTORS: [u32; 3] = [2, 3, 4];

/// Widest packed plaintext (what the probe plans' primes decrypt).
const MAX_PACKED_BITS: u32 = 42;

/// Ring-option combinations searched exhaustively by default; larger plans use coordinate
/// descent.
pub const EXACT_RING_SEARCH: u64 = 4096;

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

/// A layer's cheapest candidate (objective value): its value, channel bytes, and the candidate
/// (`None` when the layer has none), whose keys the estimate prices.
#[derive(Clone, Debug)]
struct Cheapest {
    value: f64,
    bytes: u64,
    candidate: Option<Candidate>,
}

impl Cheapest {
    /// The candidate of least objective value among `candidates` (the first on ties), only
    /// among those that pack no responses (need no Galois keys) unless `packs`.
    fn of(objective: Objective, candidates: impl Iterator<Item = Candidate>, packs: bool) -> Self {
        candidates
            .filter(|c| packs || c.protocol.encoding.members() == 1)
            .map(|c| (c.value(objective), c))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(
                Cheapest {
                    value: f64::INFINITY,
                    bytes: u64::MAX,
                    candidate: None,
                },
                |(value, c)| Cheapest {
                    value,
                    bytes: c.bytes(),
                    candidate: Some(c),
                },
            )
    }
}

/// What the plan with given ring options costs outside its HE layers.
struct Probe {
    /// Nonlinear and reveal bytes, the unpacking of packed words excluded.
    fixed_bytes: u64,
    /// Channel rounds, the unpacking of packed words excluded.
    rounds: u64,
    /// The plan's chunk bound, which chunks the unpacking.
    chunk_rots: u64,
    /// Compute milliseconds of the layers without HE messages (their ROTs, produced and
    /// consumed).
    fixed_ms: f64,
    /// The compute profile timing the layers ([`ComputeProfile::layer_compute_ms`]).
    profile: ComputeProfile,
    /// Nanoseconds per ROT of the OT extension at the plan's batch size (the batches
    /// themselves are chosen after the protocols, [`crate::select`]).
    ot_ns_per_rot: f64,
    /// Per linear layer, the ROTs of its nonlinear steps, the unpacking of packed words
    /// excluded (timed with the candidate's HE work in [`Self::priced`]).
    linear_rots: Vec<Cost>,
    /// Per linear layer, its unpacking (with packing).
    unpacks: Vec<Option<UnpackPlan>>,
    /// Per plan layer, its channel bytes without the HE messages and the unpacking.
    layer_bytes: Vec<u64>,
    /// Per linear layer, its index in the plan.
    positions: Vec<usize>,
}

impl Probe {
    /// Schedules and prices the plan with `options` (the HE layers, their unpacking and the
    /// keys excluded), its nonlinear compute timed with `profile`; `None` if the plan cannot be
    /// scheduled with them.
    fn new(
        plan: &Plan,
        parts: &[(LinearProtocol, u32)],
        options: &[RingOption],
        profile: &ComputeProfile,
    ) -> Option<Self> {
        let probe = public_with_protocols(&plan.public, &probe_protocols(parts, options), "probe");
        let s = schedule(&probe).ok()?;
        let cost = plan_cost(&probe, &s, probe.protocol.ot).ok()?;
        let mut unpacks = Vec::new();
        let mut positions = Vec::new();
        let mut layer_bytes = Vec::with_capacity(s.steps.len());
        let ot_ns_per_rot = profile.ot_ns_per_rot(probe.protocol.ot, probe.protocol.ot_batch_rots);
        let mut fixed_ms = 0.0;
        let mut linear_rots = Vec::new();
        let mut rounds = cost.channel().rounds;
        let chunk_rots = probe.protocol.chunk_rots;
        for (pos, (step, c)) in s.steps.iter().zip(&cost.layers).enumerate() {
            let mut bytes = c.traffic.total_bytes();
            let mut nonlinear = c.nonlinear;
            if let (StepKind::Linear { unpack, .. }, Some(he)) = (&step.kind, c.he) {
                let words = he.coeffs_down as u64;
                let unpacking = unpack
                    .map(|u| unpack_cost(&u, words, chunk_rots))
                    .unwrap_or_default();
                bytes -= he.total_bytes() as u64 + unpacking.total_bytes();
                rounds -= unpacking.rounds;
                nonlinear.server_rots -= unpacking.server_rots;
                nonlinear.client_rots -= unpacking.client_rots;
                unpacks.push(*unpack);
                positions.push(pos);
                linear_rots.push(nonlinear);
            } else {
                fixed_ms += profile.layer_compute_ms(0.0, &nonlinear, ot_ns_per_rot);
            }
            layer_bytes.push(bytes);
        }
        Some(Probe {
            fixed_bytes: layer_bytes.iter().sum::<u64>() + cost.reveal.total_bytes(),
            rounds,
            chunk_rots,
            fixed_ms,
            profile: profile.clone(),
            ot_ns_per_rot,
            linear_rots,
            unpacks,
            layer_bytes,
            positions,
        })
    }

    /// `c` as the `i`-th linear layer: with the bytes of its unpacking, and its HE compute
    /// timed with the ROTs of the layer's nonlinear steps and of its unpacking.
    fn priced(&self, i: usize, c: &Candidate) -> Candidate {
        let unpacking = self.unpacks[i]
            .map(|u| unpack_cost(&u, c.cost.coeffs_down as u64, self.chunk_rots))
            .unwrap_or_default();
        let mut rots = self.linear_rots[i];
        rots.server_rots += unpacking.server_rots;
        rots.client_rots += unpacking.client_rots;
        Candidate {
            unpack_bytes: unpacking.total_bytes(),
            unpack_rounds: unpacking.rounds,
            compute_ms: self
                .profile
                .layer_compute_ms(c.compute_ms, &rots, self.ot_ns_per_rot),
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

/// What a pick of ring options is worth: (bytes by which layers exceed the baseline's,
/// objective value).
type PickValue = (u64, f64);

/// Whether `a` is a strictly better pick than `b`: fewer bytes above the baseline, then a
/// smaller objective value.
fn better(a: PickValue, b: PickValue) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 < b.1)
}

/// Coordinate descent over the ring options from the narrowest ones: per layer the best of its
/// options given the others (each priced in parallel), for up to three sweeps.
fn descend(
    best: &[Vec<[Cheapest; 2]>],
    total: &(dyn Fn(&[usize]) -> Option<PickValue> + Sync),
) -> Result<Vec<usize>> {
    let mut pick = vec![0usize; best.len()];
    let mut current = total(&pick).ok_or(Error::Optimize {
        reason: "the plan cannot be scheduled with its narrowest rings".into(),
    })?;
    for _sweep in 0..3 {
        let mut changed = false;
        for (i, layer_best) in best.iter().enumerate() {
            // Every other option of layer i, priced in parallel; the best one that improves.
            let trials: Vec<(usize, PickValue)> = layer_best
                .par_iter()
                .enumerate()
                .filter(|(j, b)| *j != pick[i] && b[1].value.is_finite())
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

/// The ring search of one server plan: every linear layer's options and its candidates at
/// each of them.
pub(super) struct RingSearch<'a> {
    plan: &'a Plan,
    objective: Objective,
    /// Compute times of the latency objective (HE and nonlinear).
    profile: &'a ComputeProfile,
    /// The starting plan's linear protocols and accumulator widths (what probes keep).
    parts: Vec<(LinearProtocol, u32)>,
    /// `options[i]`: the ring options of linear layer `i`, its narrowest first.
    options: Vec<Vec<RingOption>>,
    /// `searched[i][j]`: the candidates of layer `i` at its option `j` (`None`: no
    /// configuration).
    searched: Vec<Vec<Option<LayerCandidates>>>,
    /// `best[i][j][packs]`: layer `i`'s cheapest candidate at option `j` (without its
    /// unpacking), among those that pack no responses (`0`) or among all (`1`).
    best: Vec<Vec<[Cheapest; 2]>>,
    /// Per plan layer, the baseline's bytes: no layer may cost more (when any choice allows).
    limits: Vec<u64>,
}

impl<'a> RingSearch<'a> {
    /// Searches the candidates of every ring option of every linear layer of `plan` (timed
    /// with `profile`); `baseline` is the baseline's cost of the same model (no limits
    /// without it).
    ///
    /// # Errors
    /// [`Error::Optimize`] when the plan has no weights, cannot be scheduled, or a layer has no
    /// configuration at its narrowest ring.
    pub(super) fn new(
        plan: &'a Plan,
        objective: Objective,
        profile: &'a ComputeProfile,
        baseline: Option<&PlanCost>,
        response_packing: bool,
    ) -> Result<Self> {
        let narrow = narrow_rings(plan)?;
        let linear = candidates::LinearLayers::new(plan, profile)?;
        let linear = if response_packing {
            linear
        } else {
            linear.without_response_packing()
        };
        let acc: Vec<u32> = (0..linear.len()).map(|i| linear.acc_bits(i)).collect();
        let options = ring_options(&narrow, &acc);
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
        let limits = baseline.map_or_else(
            || vec![u64::MAX; plan.public.layers.len()],
            |c| c.layers.iter().map(|l| l.traffic.total_bytes()).collect(),
        );
        let best = searched
            .iter()
            .map(|opts| {
                opts.iter()
                    .map(|s| {
                        [false, true].map(|packs| {
                            let all = s.iter().flat_map(|l| l.candidates.iter().cloned());
                            Cheapest::of(objective, all, packs)
                        })
                    })
                    .collect()
            })
            .collect();
        Ok(RingSearch {
            plan,
            objective,
            profile,
            parts: linear_parts(plan),
            options,
            searched,
            best,
            limits,
        })
    }

    /// The ring options of a pick.
    fn chosen(&self, pick: &[usize]) -> Vec<RingOption> {
        pick.iter()
            .enumerate()
            .map(|(i, &j)| self.options[i][j])
            .collect()
    }

    /// The plan priced at a pick of options; `None` when a layer has no candidate there or the
    /// plan cannot be scheduled.
    fn probe(&self, pick: &[usize]) -> Option<Probe> {
        if pick
            .iter()
            .enumerate()
            .any(|(i, &j)| self.searched[i][j].is_none())
        {
            return None;
        }
        Probe::new(self.plan, &self.parts, &self.chosen(pick), self.profile)
    }

    /// The estimated value of a pick: every layer at its cheapest candidate, plus the keys
    /// those use (the ILP then shares contexts and Galois keys better); the better of the
    /// candidates that pack no responses and of all (Galois keys pay only when enough layers
    /// share them).
    fn estimate(&self, pick: &[usize]) -> Option<PickValue> {
        let p = self.probe(pick)?;
        let plain = self.estimate_at(&p, pick, false);
        let packed = self.estimate_at(&p, pick, true);
        Some(if better(packed, plain) { packed } else { plain })
    }

    /// [`Self::estimate`] on the candidates that pack no responses or (`packs`) on all.
    fn estimate_at(&self, p: &Probe, pick: &[usize], packs: bool) -> PickValue {
        let mut chosen: Vec<Candidate> = Vec::with_capacity(pick.len());
        let mut value = 0.0;
        let mut he = Vec::with_capacity(pick.len());
        for (i, &j) in pick.iter().enumerate() {
            let c = match (&p.unpacks[i], &self.searched[i][j]) {
                (Some(_), Some(l)) => Cheapest::of(
                    self.objective,
                    l.candidates.iter().map(|c| p.priced(i, c)),
                    packs,
                ),
                _ => self.best[i][j][usize::from(packs)].clone(),
            };
            value += c.value;
            he.push(c.bytes);
            chosen.extend(c.candidate);
        }
        let keys = self.objective.value(key_bytes(&chosen), 0, 0.0);
        let value = self.objective.value(p.fixed_bytes, p.rounds, p.fixed_ms) + value + keys;
        (p.excess(&he, &self.limits), value)
    }

    /// The exact value of a pick: the ILP's optimum over the candidates at those options.
    fn exact(&self, pick: &[usize]) -> Option<PickValue> {
        let p = self.probe(pick)?;
        let problem = self.problem_at(&p, pick).ok()?;
        let (choice, _) = ilp::solve(&problem).ok()?;
        let he: Vec<u64> = problem
            .layers
            .iter()
            .zip(&choice)
            .map(|(l, &k)| l.candidates[k].bytes())
            .collect();
        Some((p.excess(&he, &self.limits), problem.value(&choice)))
    }

    /// The best pick: exhaustively when there are at most `exact_limit` combinations,
    /// otherwise by coordinate descent ([`descend`]).
    ///
    /// # Errors
    /// [`Error::Optimize`] when the plan cannot be scheduled with its narrowest rings.
    pub(super) fn pick(&self, exact_limit: u64) -> Result<Vec<usize>> {
        let sizes: Vec<usize> = self.options.iter().map(Vec::len).collect();
        match exhaustive::best_pick(&sizes, exact_limit, |p| self.exact(p), better) {
            Some((pick, _)) => Ok(pick),
            None => descend(&self.best, &|p| self.estimate(p)),
        }
    }

    /// The ILP problem at a pick.
    ///
    /// # Errors
    /// [`Error::Optimize`] when the picked rings cannot be scheduled, a picked option has no
    /// candidates or a key cannot be priced.
    pub(super) fn problem(&self, pick: &[usize]) -> Result<Problem> {
        let probe = Probe::new(self.plan, &self.parts, &self.chosen(pick), self.profile).ok_or(
            Error::Optimize {
                reason: "the chosen rings cannot be scheduled".into(),
            },
        )?;
        self.problem_at(&probe, pick)
    }

    /// The runner-up of every linear layer whose protocol is `chosen[i]`, at its picked ring
    /// option: the search's cheapest other candidate, as [`candidates::runner_ups`] finds it on
    /// the chosen plan.
    pub(super) fn runner_ups(&self, pick: &[usize], chosen: &[LinearProtocol]) -> Vec<RunnerUp> {
        pick.iter()
            .enumerate()
            .zip(chosen)
            .filter_map(|((i, &j), own)| runner_up(own, self.searched[i][j].as_ref()?))
            .collect()
    }

    /// The ILP problem at one pick of ring options (`probe` priced with them): each layer's
    /// candidates with the bytes of their unpacking, only those that keep the layer within its
    /// baseline bytes if any does.
    fn problem_at(&self, probe: &Probe, pick: &[usize]) -> Result<Problem> {
        let layers: Vec<LayerCandidates> = pick
            .iter()
            .enumerate()
            .map(|(i, &j)| {
                let l = self.searched[i][j].as_ref().ok_or(Error::Optimize {
                    reason: "a picked ring option has no candidates".into(),
                })?;
                let all: Vec<Candidate> = l.candidates.iter().map(|c| probe.priced(i, c)).collect();
                let pos = probe.positions[i];
                let within: Vec<Candidate> = all
                    .iter()
                    .filter(|c| probe.layer_bytes[pos] + c.bytes() <= self.limits[pos])
                    .cloned()
                    .collect();
                Ok(LayerCandidates {
                    layer: l.layer,
                    candidates: if within.is_empty() { all } else { within },
                })
            })
            .collect::<Result<_>>()?;
        let mut contexts: Vec<ContextKeys> = Vec::new();
        for c in layers.iter().flat_map(|l| &l.candidates) {
            let ctx = c.context();
            if !contexts.iter().any(|k| k.context == ctx) {
                let keys = ContextKeys::of(&c.protocol.he).map_err(|e| Error::Optimize {
                    reason: e.to_string(),
                })?;
                contexts.push(keys);
            }
        }
        contexts.sort();
        Ok(Problem {
            layers,
            contexts,
            fixed_bytes: probe.fixed_bytes,
            rounds: probe.rounds,
            fixed_ms: probe.fixed_ms,
            objective: self.objective,
        })
    }
}
