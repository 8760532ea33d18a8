//! Mixed precision (HEQuant, `protocols.md` takeaways 8–10): lower the weight and activation
//! bit widths of some linear layers where calibration data shows the model barely notices, to
//! shrink accumulators, share rings and therefore communication.
//!
//! 1. **Candidates**: per linear layer (the first and last optionally kept) and per width of
//!    [`Options::widths`] below its own, the graph with that layer re-quantized
//!    ([`requantize::lower_layer`]: weights and, where the consumers allow, the output), the
//!    passes re-run and the plan lowered and selected by the optimizer for communication
//!    ([`crate::select`]).
//! 2. **Sensitivity**: each candidate plan runs on the calibration samples with the reference
//!    executor; its sensitivity is the budget's metric against the original plan (fraction of
//!    top-1 changes, or largest output change). Its saving is the optimized plan's predicted
//!    bytes below the original's.
//! 3. **ILP** ([`ilp`]): at most one candidate per layer, summed sensitivity within the budget,
//!    maximal saving.
//! 4. **Check**: the chosen changes are applied together and measured. Over budget, the measured
//!    value is spread over the chosen candidates' sensitivities (so that this combination no
//!    longer fits) and the ILP re-solved, at most [`MAX_ROUNDS`] times; the best measured
//!    combination within budget is kept (at worst none: the original plan).
//!
//! **Faithful truncation** ([`choose_faithful`], with [`Options::faithful`]), on the final
//! (compressed) graph: requantizations become [`Rounding::Faithful`] (±1 in the last place, far
//! fewer bytes) from the last one backwards, as many as the budget allows. Each try runs the
//! calibration samples with [`reference::run_simulated`]: the share splits the two-party
//! protocol would meet are drawn from a fixed seed ([`FAITHFUL_SEED`] plus the sample index),
//! so the floor or ceiling comes up as often as in a real run (stochastic rounding, unbiased)
//! and the measurement is reproducible. A worst case is not used: which of the two neighbours
//! hurts a sample's top-1 depends on every other layer's choice, so no single rule is the
//! worst, and "always the floor" would measure a bias the protocol does not have.

pub mod ilp;
pub mod requantize;

use crate::error::{Error, Result};
use crate::ir::{LayerGraph, LayerOp};
use crate::optimize::Objective;
use crate::passes::PassManager;
use crate::select::{Strategy, select};
use heq_runtime::cost::compute::ComputeProfile;
use heq_runtime::npy::NpyArray;
use heq_runtime::plan::{LoweredLayer, Plan, PrecisionBudget, PrecisionRecord, Rounding};
use heq_runtime::reference;
use petgraph::stable_graph::NodeIndex;

/// Re-solves after a measured violation, at most.
pub const MAX_ROUNDS: usize = 8;

/// Seed of the simulated share splits of faithful truncation; sample `i` runs with
/// `FAITHFUL_SEED + i`.
pub const FAITHFUL_SEED: u64 = 0x6865_7163_6661_6974;

/// What mixed precision may do.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Calibration inputs of shape `[N, ...model input shape]`, row-major.
    pub samples: NpyArray<f32>,
    /// The accuracy constraint.
    pub budget: PrecisionBudget,
    /// Candidate bit widths (those below a layer's own are tried).
    pub widths: Vec<u32>,
    /// Keep the first and the last linear layer at their widths.
    pub keep_ends: bool,
    /// Also make requantizations faithful within the budget ([`choose_faithful`]).
    pub faithful: bool,
}

impl Options {
    /// Options with the default widths 6, 4 and 3 bits, every layer a candidate.
    pub fn new(samples: NpyArray<f32>, budget: PrecisionBudget) -> Self {
        Options {
            samples,
            budget,
            widths: vec![6, 4, 3],
            keep_ends: false,
            faithful: false,
        }
    }

    /// The budget's limit.
    fn limit(&self) -> f64 {
        match self.budget {
            PrecisionBudget::AccuracyDrop(x) | PrecisionBudget::OutputError(x) => x,
        }
    }
}

/// One candidate: a layer lowered to one width.
#[derive(Clone, Debug)]
struct Candidate {
    node: NodeIndex,
    bits: u32,
    choice: ilp::Choice,
}

/// The result: the graph with the chosen widths, and its record.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The graph (passes run) with the chosen layers lowered.
    pub graph: LayerGraph,
    /// What changed and what was measured.
    pub record: PrecisionRecord,
    /// Candidates measured.
    pub candidates: usize,
    /// ILP rounds solved.
    pub rounds: usize,
    /// The original plan's outputs on the samples (what [`choose_faithful`] compares with).
    original: Outputs,
}

/// The result of [`choose_faithful`].
#[derive(Clone, Debug)]
pub struct Faithful {
    /// The graph with the chosen requantizations faithful.
    pub graph: LayerGraph,
    /// Requantizations made faithful.
    pub layers: usize,
    /// Requantizations with a shift (the candidates).
    pub candidates: usize,
    /// Measured top-1 agreement and largest output error of `graph` against the original plan
    /// (`None` when no requantization became faithful).
    pub agreement: Option<(f64, f64)>,
    /// Plans measured.
    pub measured: usize,
}

/// Dequantized outputs of every sample, and their top-1 classes.
#[derive(Clone, Debug)]
struct Outputs {
    values: Vec<Vec<f32>>,
    top1: Vec<usize>,
}

/// Runs `plan` on the samples with the reference executor, faithful truncations exact or,
/// with a seed, simulated ([`reference::run_simulated`], sample `i` with `seed + i`).
fn run(plan: &Plan, samples: &[&[f32]], seed: Option<u64>) -> Result<Outputs> {
    let p = &plan.public;
    let values = samples
        .iter()
        .zip(0u64..)
        .map(|(x, i)| {
            let x = reference::quantize_input(p, x);
            let y = match seed {
                None => reference::run(plan, &x),
                Some(seed) => reference::run_simulated(plan, &x, seed.wrapping_add(i)),
            }
            .map_err(|e| Error::Calibration {
                reason: format!("reference executor: {e}"),
            })?;
            Ok(reference::dequantize_output(p, &y))
        })
        .collect::<Result<Vec<_>>>()?;
    let top1 = values
        .iter()
        .map(|v| {
            // The first largest output, as numpy's argmax.
            v.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                    if x > best.1 { (i, x) } else { best }
                })
                .0
        })
        .collect();
    Ok(Outputs { values, top1 })
}

/// Top-1 agreement and largest output difference of `b` against `a`.
fn compare(a: &Outputs, b: &Outputs) -> (f64, f64) {
    let n = a.top1.len().max(1) as f64;
    let agree = a.top1.iter().zip(&b.top1).filter(|(x, y)| x == y).count() as f64 / n;
    let err = a
        .values
        .iter()
        .zip(&b.values)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| f64::from((p - q).abs())))
        .fold(0.0, f64::max);
    (agree, err)
}

/// The budget's metric of `(agreement, error)`.
fn metric(budget: PrecisionBudget, (agree, err): (f64, f64)) -> f64 {
    match budget {
        PrecisionBudget::AccuracyDrop(_) => 1.0 - agree,
        PrecisionBudget::OutputError(_) => err,
    }
}

/// Re-runs the standard passes on an edited graph.
fn analyse(mut g: LayerGraph) -> Result<LayerGraph> {
    PassManager::standard().run(&mut g)?;
    Ok(g)
}

/// The graph's plan, optimized for communication, and its predicted channel bytes. The
/// reference executor ignores protocols, so this plan also gives the graph's outputs.
fn plan_and_bytes(g: &LayerGraph, profile: &ComputeProfile) -> Result<(Plan, u64)> {
    let s = select(
        crate::lower::lower(g)?,
        Strategy::Optimized(Objective::Comm),
        profile,
    )?;
    let bytes = s.cost.channel().total_bytes();
    Ok((s.plan, bytes))
}

/// The linear layers that may be lowered, in order.
fn lowerable(g: &LayerGraph, keep_ends: bool) -> Result<Vec<NodeIndex>> {
    let order = g.order().ok_or_else(|| Error::Invariant {
        pass: "precision",
        violations: vec!["cycle".into()],
    })?;
    let mut linear: Vec<NodeIndex> = order
        .into_iter()
        .filter(|&n| matches!(g.layer(n).op, LayerOp::Linear(_)))
        .collect();
    if keep_ends {
        linear.pop();
        if !linear.is_empty() {
            linear.remove(0);
        }
    }
    Ok(linear)
}

/// Applies the chosen candidates to `g` and re-runs the passes.
fn apply(g: &LayerGraph, chosen: &[&Candidate]) -> Option<(LayerGraph, Vec<LoweredLayer>)> {
    let mut g = g.clone();
    let mut lowered = Vec::new();
    for c in chosen {
        let (next, l) = requantize::lower_layer(&g, c.node, c.bits)?;
        g = next;
        lowered.push(l);
    }
    Some((analyse(g).ok()?, lowered))
}

/// Checks that calibration data has shape `[N, ...input]` with `N >= 1`, holds the values its
/// shape announces, and only finite ones.
fn check_samples(data: &NpyArray<f32>, input: &[usize]) -> Result<()> {
    let fail = |reason: String| Err(Error::Calibration { reason });
    let dims: Vec<String> = input.iter().map(ToString::to_string).collect();
    let n = match data.shape.split_first() {
        Some((&n, sample)) if sample == input && n > 0 => n,
        _ => {
            return fail(format!(
                "the data has shape {:?}, not [N, {}] (N >= 1 samples of the model input)",
                data.shape,
                dims.join(", ")
            ));
        }
    };
    if n.checked_mul(input.iter().product()) != Some(data.data.len()) {
        return fail(format!(
            "{} values do not fill the shape {:?}",
            data.data.len(),
            data.shape
        ));
    }
    if let Some((i, v)) = data.data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return fail(format!(
            "element {i} is {v}; calibration data must be finite"
        ));
    }
    Ok(())
}

/// Chooses per-layer bit widths for the analysed graph `g` within the budget.
///
/// # Errors
/// [`Error::Calibration`] for samples of the wrong shape, non-finite samples or a failing
/// reference run; lowering
/// and optimizer errors of the original graph.
pub fn choose(g: &LayerGraph, opts: &Options, profile: &ComputeProfile) -> Result<Outcome> {
    let input = g.tensor(g.input.tensor);
    let input_len = input.len().max(1);
    let data = &opts.samples;
    check_samples(data, &input.shape)?;
    let samples: Vec<&[f32]> = data.data.chunks(input_len).collect();
    let (plan, base_bytes) = plan_and_bytes(g, profile)?;
    let original = run(&plan, &samples, None)?;
    let limit = opts.limit();
    let nodes = lowerable(g, opts.keep_ends)?;
    let mut per_layer: Vec<Vec<Candidate>> = Vec::with_capacity(nodes.len());
    let mut measured = 0;
    for &node in &nodes {
        let mut cands = Vec::new();
        for &bits in &opts.widths {
            let Some((edited, lowered)) = requantize::lower_layer(g, node, bits) else {
                continue;
            };
            let Ok(edited) = analyse(edited) else {
                continue;
            };
            let Ok((plan, b)) = plan_and_bytes(&edited, profile) else {
                continue;
            };
            measured += 1;
            let out = run(&plan, &samples, None)?;
            let sensitivity = metric(opts.budget, compare(&original, &out));
            tracing::debug!(
                layer = %lowered.name, bits, sensitivity, saving = base_bytes as f64 - b as f64,
                "precision candidate"
            );
            if b < base_bytes && sensitivity <= limit {
                cands.push(Candidate {
                    node,
                    bits,
                    choice: ilp::Choice {
                        saving: (base_bytes - b) as f64,
                        sensitivity,
                    },
                });
            }
        }
        per_layer.push(cands);
    }
    let mut best: (u64, LayerGraph, Vec<LoweredLayer>, (f64, f64)) =
        (base_bytes, g.clone(), Vec::new(), (1.0, 0.0));
    let mut rounds = 0;
    for _ in 0..MAX_ROUNDS {
        if per_layer.iter().all(Vec::is_empty) {
            break;
        }
        rounds += 1;
        let options: Vec<Vec<ilp::Choice>> = per_layer
            .iter()
            .map(|c| c.iter().map(|c| c.choice).collect())
            .collect();
        let picks = ilp::solve(&options, limit)?;
        let chosen: Vec<(usize, usize)> = picks
            .iter()
            .enumerate()
            .filter_map(|(l, p)| p.map(|p| (l, p)))
            .collect();
        if chosen.is_empty() {
            break;
        }
        let refs: Vec<&Candidate> = chosen.iter().map(|&(l, p)| &per_layer[l][p]).collect();
        let result = apply(g, &refs).and_then(|(edited, lowered)| {
            let (plan, b) = plan_and_bytes(&edited, profile).ok()?;
            Some((edited, lowered, plan, b))
        });
        let value = match result {
            Some((edited, lowered, plan, b)) => {
                let cmp = compare(&original, &run(&plan, &samples, None)?);
                let value = metric(opts.budget, cmp);
                if value <= limit && b < best.0 {
                    best = (b, edited, lowered, cmp);
                }
                value
            }
            None => f64::INFINITY,
        };
        if value <= limit {
            break;
        }
        // This combination is over budget: raise its members' sensitivities so that their sum
        // exceeds the limit, then re-solve.
        let share = if value.is_finite() {
            value / chosen.len() as f64
        } else {
            limit + 1.0
        };
        let bump = share.max(limit / chosen.len() as f64 + f64::EPSILON);
        for &(l, p) in &chosen {
            let s = &mut per_layer[l][p].choice.sensitivity;
            *s = s.max(bump);
        }
    }
    let (_, graph, lowered, (agree, err)) = best;
    Ok(Outcome {
        graph,
        record: PrecisionRecord {
            samples: samples.len() as u64,
            budget: opts.budget,
            top1_agreement: agree,
            max_output_error: err,
            lowered,
            faithful_seed: None,
        },
        candidates: measured,
        rounds,
        original,
    })
}

/// The requantizing layers of `g` with a shift, in execution order.
fn truncating_layers(g: &LayerGraph) -> Result<Vec<NodeIndex>> {
    let order = g.order().ok_or_else(|| Error::Invariant {
        pass: "precision",
        violations: vec!["cycle".into()],
    })?;
    Ok(order
        .into_iter()
        .filter(|&n| {
            let shift = match &g.layer(n).op {
                LayerOp::Linear(l) => l.requant.as_ref().map(|r| r.shift),
                LayerOp::Rescale(r) => Some(r.shift),
                LayerOp::AvgPool(a) => Some(a.requant.shift),
                LayerOp::Add(a) => Some(a.shift),
                LayerOp::MaxPool(_) | LayerOp::Concat | LayerOp::Reshape => None,
            };
            shift.is_some_and(|k| k > 0)
        })
        .collect())
}

/// Chooses faithful truncations for the final graph `g` (mixed precision's `outcome` applied,
/// requantizations compressed): all of them if the budget allows, otherwise the longest run of
/// the last ones that a bisection finds within the budget (measured against the original plan,
/// so mixed precision's loss counts too). Errors propagate from earlier layers to later ones,
/// so the last ones are the cheapest in accuracy. The bisection assumes that fewer faithful
/// layers never measure worse; the chosen plan's own measurement is what is recorded.
///
/// # Errors
/// Lowering, optimizer and reference-executor failures.
pub fn choose_faithful(
    g: &LayerGraph,
    outcome: &Outcome,
    opts: &Options,
    profile: &ComputeProfile,
) -> Result<Faithful> {
    let input_len = g.tensor(g.input.tensor).len().max(1);
    let samples: Vec<&[f32]> = opts.samples.data.chunks(input_len).collect();
    let layers = truncating_layers(g)?;
    let limit = opts.limit();
    let mut measured = 0;
    let mut measure = |n: usize| -> Result<(LayerGraph, (f64, f64), bool)> {
        let mut edited = g.clone();
        for &node in &layers[layers.len() - n..] {
            if let Some((_, rounding)) = edited.layer_mut(node).op.clamp_and_rounding_mut() {
                *rounding = Rounding::Faithful;
            }
        }
        let (plan, _) = plan_and_bytes(&edited, profile)?;
        let cmp = compare(
            &outcome.original,
            &run(&plan, &samples, Some(FAITHFUL_SEED))?,
        );
        measured += 1;
        tracing::debug!(
            faithful = n,
            agreement = cmp.0,
            error = cmp.1,
            "faithful truncation"
        );
        Ok((edited, cmp, metric(opts.budget, cmp) <= limit))
    };
    let mut best = None;
    let (mut within, mut over) = (0, layers.len());
    if over > 0 {
        let (edited, cmp, ok) = measure(over)?;
        if ok {
            best = Some((over, edited, cmp));
            within = over;
        }
    }
    while over - within > 1 {
        let mid = within + (over - within) / 2;
        let (edited, cmp, ok) = measure(mid)?;
        if ok {
            best = Some((mid, edited, cmp));
            within = mid;
        } else {
            over = mid;
        }
    }
    Ok(match best {
        Some((n, graph, cmp)) => Faithful {
            graph,
            layers: n,
            candidates: layers.len(),
            agreement: Some(cmp),
            measured,
        },
        None => Faithful {
            graph: g.clone(),
            layers: 0,
            candidates: layers.len(),
            agreement: None,
            measured,
        },
    })
}
