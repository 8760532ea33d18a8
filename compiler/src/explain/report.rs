//! The report's data: per-layer rows and totals of a plan, built from the plan and its
//! predictions (the plan's and the baseline's cost, the runner-ups), either as the selection
//! left them ([`report_selection`]) or priced anew for a plan read from disk ([`report_with`]).
//!
//! Predicted costs come from the runtime's `schedule` and `plan_cost` (bytes each way and rounds
//! per layer, setup, reveal, OT extension); the baseline totals from the same plan with every
//! linear layer on the Cheetah protocol ([`crate::optimize::baseline`]); the runner-up of a
//! linear layer is the cheapest other configuration of the candidate search
//! ([`crate::optimize::candidates`]) at the layer's rings.

use crate::optimize::{self, Net, baseline, candidates};
use crate::select::{Priced, Selection};
use heq_runtime::cost::compute::ComputeProfile;
use heq_runtime::cost::plan::PlanCost;
use heq_runtime::cost::plan::Traffic;
use heq_runtime::plan::{
    CarryDepth, ElementKind, Encoding, EpilogueOp, IntType, LinearLayer, LinearProtocol, Op,
    PackDim, Plan, PrecisionRecord, PublicPlan, Requant, TensorId, TopKOutput, ValueType,
    multiplier_bits,
};
use serde::Serialize;

/// What `explain` prints of a linear layer, whatever its shape type.
struct LinearFacts<'a> {
    weight_ty: IntType,
    acc_bits: u32,
    acc_bits_naive: u32,
    requant: Option<&'a Requant>,
    protocol: &'a LinearProtocol,
}

impl<'a> LinearFacts<'a> {
    fn of<S>(l: &'a LinearLayer<S>) -> Self {
        LinearFacts {
            weight_ty: l.weight_ty,
            acc_bits: l.acc_bits,
            acc_bits_naive: l.acc_bits_naive,
            requant: l.requant.as_ref(),
            protocol: &l.protocol,
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerRow {
    /// Layer id (`l3`).
    pub id: String,
    /// ONNX node name(s).
    pub name: String,
    /// Operation kind.
    pub op: String,
    /// Input shapes.
    pub inputs: Vec<Vec<usize>>,
    /// Output shape.
    pub output: Vec<usize>,
    /// Input element type(s) (`u8`).
    pub input_bits: Vec<String>,
    /// Weight element type, for linear layers.
    pub weight_bits: Option<String>,
    /// Sound accumulator width, for linear layers.
    pub acc_bits: Option<u32>,
    /// Naive accumulator width, for linear layers.
    pub acc_bits_naive: Option<u32>,
    /// Output element type.
    pub output_bits: String,
    /// Output range of centred values.
    pub output_range: (i64, i64),
    /// Bits of the largest requantization multiplier.
    pub multiplier_bits: Option<u32>,
    /// Requantization shift.
    pub shift: Option<u32>,
    /// Tile `CxHxW/M`, for linear layers, with ` il×n` when it is channel-interleaved and
    /// its responses are packed `n` to a ciphertext.
    pub tile: Option<String>,
    /// Ring degree, for linear layers.
    pub degree: Option<usize>,
    /// Share ring bits (in/out), for linear layers.
    pub ring_bits: Option<(u32, u32)>,
    /// Number of weights, when the plan has them.
    pub weights: Option<usize>,
    /// HE configuration, for linear layers.
    pub config: Option<Config>,
    /// Predicted traffic of the layer (HE and nonlinear), when the plan can be scheduled.
    pub predicted: Option<Traffic>,
    /// Predicted HE part of a linear layer's traffic.
    pub he: Option<Traffic>,
    /// The cheapest other configuration of a linear layer and its HE traffic (server plans).
    pub runner_up: Option<RunnerUp>,
    /// Predicted time of the layer on the report's network and compute profile.
    pub time: Option<Time>,
    /// Predicted traffic of the layer on the Cheetah baseline.
    pub baseline: Option<Traffic>,
    /// The layer's carry depth when it is not the ripple chain (`tree`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carry: Option<String>,
    /// Whether the layer's requantization truncates faithfully (±1, `Rounding::Faithful`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub faithful: bool,
    /// The most chunks one of the layer's nonlinear protocols runs in, when above one (each
    /// chunk repeats the protocol's rounds, [`heq_runtime::cost::plan::Stage`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u64>,
}

/// Predicted time: compute (the compute profile) plus network (bytes / bandwidth + rounds ·
/// RTT), in milliseconds rounded to microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Time {
    /// Compute of both parties.
    pub compute_ms: f64,
    /// Transfer and round trips.
    pub network_ms: f64,
    /// Their sum.
    pub total_ms: f64,
}

impl Time {
    fn new(compute_ms: f64, network_ms: f64) -> Self {
        let us = |x: f64| (x * 1e3).round() / 1e3;
        Time {
            compute_ms: us(compute_ms),
            network_ms: us(network_ms),
            total_ms: us(compute_ms + network_ms),
        }
    }
}

/// The network and compute profile of the predicted times.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Network.
    pub net: Net,
    /// Compute times.
    pub profile: ComputeProfile,
}

impl Default for Timing {
    /// LAN and the shipped compute profile.
    fn default() -> Self {
        Timing {
            net: Net::Lan,
            profile: ComputeProfile::builtin(),
        }
    }
}

impl Timing {
    /// Per-layer times of a priced plan, and the whole run's (setup, layers, reveal and the OT
    /// extension's transfer).
    fn times(&self, p: &PublicPlan, c: &PlanCost) -> (Vec<Time>, Time) {
        let net = self.net.network();
        let compute = self.profile.layer_ms(p, c);
        let layers: Vec<Time> = c
            .layers
            .iter()
            .zip(&compute)
            .map(|(l, &ms)| {
                Time::new(
                    ms,
                    net.transfer_ms(l.traffic.total_bytes(), l.traffic.rounds),
                )
            })
            .collect();
        let extra = [c.setup, c.reveal, c.ot_extension]
            .iter()
            .map(|t| net.transfer_ms(t.total_bytes(), t.rounds))
            .sum::<f64>();
        let total = Time::new(
            compute.iter().sum(),
            extra + layers.iter().map(|t| t.network_ms).sum::<f64>(),
        );
        (layers, total)
    }
}

/// The HE configuration of a linear layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    /// Ring degree `N`.
    pub degree: usize,
    /// Prime sizes.
    pub moduli_bits: Vec<u32>,
    /// Plaintext modulus bits.
    pub plain_bits: u32,
    /// Input and output share ring bits.
    pub ring_bits: (u32, u32),
    /// Tile `CxHxW/M`, with ` il×n` for the interleaved encoding.
    pub tile: String,
    /// Coefficient encoding and response packing.
    pub encoding: Encoding,
    /// Packing: `none` or `<factor>x<field_bits>/<dim>`.
    pub packing: String,
}

impl Config {
    fn of(p: &LinearProtocol) -> Self {
        let k = &p.packing;
        Config {
            degree: p.he.degree,
            moduli_bits: p.he.moduli_bits.clone(),
            plain_bits: p.he.plain_bits,
            ring_bits: (p.in_ring_bits, p.out_ring_bits),
            tile: tile_str(p),
            encoding: p.encoding,
            packing: if k.factor <= 1 {
                "none".into()
            } else {
                let dim = match k.dim {
                    PackDim::Spatial => "hw",
                    PackDim::OutChannels => "m",
                };
                format!("{}x{}/{dim}", k.factor, k.field_bits)
            },
        }
    }

    /// The prime sizes joined by `+`.
    pub(super) fn moduli(&self) -> String {
        self.moduli_bits
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("+")
    }
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "N={} q={} t=2^{} ring {}/{} tile {} pack {}",
            self.degree,
            self.moduli(),
            self.plain_bits,
            self.ring_bits.0,
            self.ring_bits.1,
            self.tile,
            self.packing
        )
    }
}

/// The tile of a linear layer as `CxHxW/M`, followed by ` il×n` for the channel-interleaved
/// encoding packing `n` responses to a ciphertext (` il×1`: interleaved, unpacked).
fn tile_str(p: &LinearProtocol) -> String {
    let t = p.tile;
    let tile = format!("{}x{}x{}/{}", t.c, t.h, t.w, t.m);
    match p.encoding {
        Encoding::Cheetah => tile,
        Encoding::Interleaved { members } => format!("{tile} il×{members}"),
    }
}

/// The runner-up configuration of a linear layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunnerUp {
    /// Its configuration.
    pub config: Config,
    /// Its HE bytes client → server.
    pub bytes_up: u64,
    /// Its HE bytes server → client.
    pub bytes_down: u64,
}

impl RunnerUp {
    fn of(c: &candidates::Candidate) -> Self {
        RunnerUp {
            config: Config::of(&c.protocol),
            bytes_up: c.cost.bytes_up as u64,
            bytes_down: c.cost.bytes_down as u64,
        }
    }
}

/// Predicted totals of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Predicted {
    /// Channel traffic: setup, layers and reveal.
    pub channel: Traffic,
    /// Public keys.
    pub setup: Traffic,
    /// The server's output share.
    pub reveal: Traffic,
    /// OT extension traffic (its own connection).
    pub ot_extension: Traffic,
    /// OT-extension batches of one inference.
    pub ot_batches: usize,
    /// ROTs per direction of the largest batch.
    pub ot_batch_rots: u64,
    /// Most ROTs per direction of one chunk of a nonlinear protocol (the plan's bound).
    pub chunk_rots: u64,
    /// Chunks of all nonlinear protocols of one inference.
    pub chunks: u64,
    /// The most bytes of ROT pads the server holds at once
    /// ([`heq_runtime::cost::plan::PlanCost::pad_bytes`]).
    pub server_pad_bytes: u64,
    /// The most bytes of ROT pads the client holds at once.
    pub client_pad_bytes: u64,
}

impl Predicted {
    fn of(p: &PublicPlan, c: &PlanCost) -> Self {
        Predicted {
            channel: c.channel(),
            setup: c.setup,
            reveal: c.reveal,
            ot_extension: c.ot_extension,
            ot_batches: c.ot_batches.len(),
            ot_batch_rots: c
                .ot_batches
                .iter()
                .map(|b| b.server_rots.max(b.client_rots))
                .max()
                .unwrap_or(0),
            chunk_rots: p.protocol.chunk_rots,
            chunks: c
                .layers
                .iter()
                .flat_map(|l| &l.stages)
                .map(|s| s.chunks())
                .sum(),
            server_pad_bytes: c.pad_bytes().0,
            client_pad_bytes: c.pad_bytes().1,
        }
    }
}

/// Totals of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Totals {
    /// Layers.
    pub layers: usize,
    /// Linear (HE) layers.
    pub linear_layers: usize,
    /// Weights of all linear layers (absent in a client plan).
    pub weights: Option<usize>,
    /// Multiply-accumulates of all linear layers per inference.
    pub macs: u64,
    /// Accumulator bits saved by range analysis over the naive bound, summed over linear layers.
    pub acc_bits_saved: u32,
    /// Predicted traffic of the plan (absent if it cannot be scheduled).
    pub predicted: Option<Predicted>,
    /// Predicted traffic of the same model on the Cheetah baseline.
    pub baseline: Option<Predicted>,
    /// Baseline channel bytes over this plan's channel bytes.
    pub ratio: Option<f64>,
    /// Predicted time of one inference.
    pub time: Option<Time>,
    /// Predicted time of the baseline.
    pub baseline_time: Option<Time>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Model name.
    pub model: String,
    /// Protocol profile.
    pub profile: String,
    /// Whether the plan holds the server's weights.
    pub server_plan: bool,
    /// Network of the predicted times.
    pub network: String,
    /// Machine of the compute profile.
    pub compute_profile: String,
    /// Mixed precision: the budget, lowered layers and measured agreement, if it ran.
    pub precision: Option<PrecisionRecord>,
    /// Input: name, shape, type, scale, zero point.
    pub input: String,
    /// Output: name, shape, type, scale, zero point (with an epilogue: the model output's
    /// shape and element type, then the revealed tensor's).
    pub output: String,
    /// The client's plaintext epilogue after the reveal, one row per step (left out of YAML
    /// and JSON when the plan has none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub epilogue: Vec<EpilogueRow>,
    /// One row per layer.
    pub layers: Vec<LayerRow>,
    /// Totals.
    pub totals: Totals,
}

/// One step of the client's epilogue.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpilogueRow {
    /// ONNX node name(s), or the revealed tensor's name for the dequantization.
    pub name: String,
    /// Operation (`dequantize`, `softmax`, `argmax`, ...).
    pub op: String,
    /// Its parameters.
    pub detail: String,
    /// Output shape (one sample).
    pub output: Vec<usize>,
    /// Output element type: `f32` or `i64`.
    pub element: String,
}

/// The rows of a plan's epilogue (as far as its steps fit: a plan read from disk was validated,
/// so all of them).
fn epilogue_rows(p: &PublicPlan) -> Vec<EpilogueRow> {
    let Some(revealed) = p.tensors.get(p.output.tensor.0 as usize) else {
        return Vec::new();
    };
    let mut value = ValueType {
        shape: revealed.shape.clone(),
        kind: ElementKind::Float,
    };
    let mut rows = Vec::new();
    if let Some(d) = &p.epilogue.dequantize {
        rows.push(EpilogueRow {
            name: revealed.name.clone(),
            op: "dequantize".into(),
            detail: format!(
                "accumulator x per-channel scale ({} along axis {})",
                d.scales.len(),
                d.axis
            ),
            output: value.shape.clone(),
            element: value.kind.name().into(),
        });
    }
    for step in &p.epilogue.steps {
        let Ok(next) = step.op.output(&value) else {
            break;
        };
        value = next;
        let detail = match &step.op {
            EpilogueOp::Mul(c) => format!("x {c:e}"),
            EpilogueOp::Add(c) => format!("+ {c:e}"),
            EpilogueOp::Softmax { axis } => format!("axis {axis}"),
            EpilogueOp::ArgMax {
                axis,
                keep_dims,
                last_index,
            } => format!(
                "axis {axis}{}{}",
                if *keep_dims { ", keepdims" } else { "" },
                if *last_index { ", last index" } else { "" }
            ),
            EpilogueOp::TopK {
                axis,
                k,
                largest,
                output,
            } => format!(
                "axis {axis}, k {k}, {}, {}",
                if *largest { "largest" } else { "smallest" },
                match output {
                    TopKOutput::Values => "values",
                    TopKOutput::Indices => "indices",
                }
            ),
            EpilogueOp::Reshape(_) => String::new(),
        };
        rows.push(EpilogueRow {
            name: step.name.clone(),
            op: step.op.kind().into(),
            detail,
            output: value.shape.clone(),
            element: value.kind.name().into(),
        });
    }
    rows
}

/// A shape as `AxBxC`.
pub(super) fn shape_str(s: &[usize]) -> String {
    s.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

/// Saturating product (plan files are untrusted input).
fn product(v: &[usize]) -> u64 {
    v.iter().fold(1u64, |a, &b| a.saturating_mul(b as u64))
}

/// Builds the report of a plan read from disk, with times on LAN and the shipped compute
/// profile.
pub fn report(plan: &Plan) -> Report {
    report_with(plan, &Timing::default())
}

/// Builds the report of a plan read from disk, with times on `timing`'s network and compute
/// profile: the plan and its baseline are priced, and the runner-ups searched (with
/// `timing`'s compute profile), anew.
pub fn report_with(plan: &Plan, timing: &Timing) -> Report {
    let cost = optimize::predict(&plan.public).ok();
    let baseline_public = baseline::cheetah_public(plan);
    let baseline = optimize::predict(&baseline_public).ok().map(|cost| Priced {
        public: baseline_public,
        cost,
    });
    let runner_ups = candidates::runner_ups(plan, &timing.profile);
    build(plan, cost.as_ref(), baseline.as_ref(), &runner_ups, timing)
}

/// Builds the report of a freshly compiled plan from its selection's predictions, with times on
/// `timing`'s network and compute profile (the runner-ups are those of the selection, searched
/// with the compilation's compute profile).
pub fn report_selection(selection: &Selection, timing: &Timing) -> Report {
    build(
        &selection.plan,
        Some(&selection.cost),
        selection.baseline.as_ref(),
        &selection.runner_ups,
        timing,
    )
}

/// Builds the report of `plan` with its predicted `cost`, the `baseline`'s, and the linear
/// layers' runner-ups (`None` and empty where they are unknown).
fn build(
    plan: &Plan,
    cost: Option<&PlanCost>,
    base: Option<&Priced>,
    runner_ups: &[candidates::RunnerUp],
    timing: &Timing,
) -> Report {
    let p = &plan.public;
    let tensor = |t: TensorId| &p.tensors[t.0 as usize];
    let io = |name: &str, t: TensorId| {
        let f = tensor(t);
        format!(
            "{name} [{}] {} scale={:e} zp={}",
            shape_str(&f.shape),
            f.ty,
            f.scale,
            f.zero_point
        )
    };
    let mut rows = Vec::with_capacity(p.layers.len());
    let mut totals = Totals {
        layers: p.layers.len(),
        linear_layers: 0,
        weights: plan.weights.as_ref().map(|_| 0),
        macs: 0,
        acc_bits_saved: 0,
        predicted: None,
        baseline: None,
        ratio: None,
        time: None,
        baseline_time: None,
    };
    let times = cost.map(|c| timing.times(p, c));
    totals.time = times.as_ref().map(|t| t.1);
    totals.baseline_time = base.map(|b| timing.times(&b.public, &b.cost).1);
    for l in &p.layers {
        let out = tensor(l.output);
        let mut row = LayerRow {
            id: l.id.to_string(),
            name: l.name.clone(),
            op: l.op.kind().to_string(),
            inputs: l.inputs.iter().map(|t| tensor(*t).shape.clone()).collect(),
            output: out.shape.clone(),
            input_bits: l.inputs.iter().map(|t| tensor(*t).ty.to_string()).collect(),
            weight_bits: None,
            acc_bits: None,
            acc_bits_naive: None,
            output_bits: out.ty.to_string(),
            output_range: out.range,
            multiplier_bits: None,
            shift: None,
            tile: None,
            degree: None,
            ring_bits: None,
            weights: plan
                .weights
                .as_ref()
                .and_then(|w| w.get(l.id))
                .map(|w| w.weights.len()),
            config: None,
            predicted: cost
                .and_then(|c| c.layers.get(l.id.0 as usize))
                .map(|c| c.traffic),
            he: cost
                .and_then(|c| c.layers.get(l.id.0 as usize))
                .and_then(|c| c.he)
                .map(|h| Traffic {
                    bytes_up: h.bytes_up as u64,
                    bytes_down: h.bytes_down as u64,
                    rounds: heq_runtime::cost::plan::LINEAR_ROUNDS,
                }),
            runner_up: runner_ups
                .iter()
                .find(|r| r.layer == l.id)
                .map(|r| RunnerUp::of(&r.candidate)),
            time: times
                .as_ref()
                .and_then(|t| t.0.get(l.id.0 as usize))
                .copied(),
            baseline: base
                .and_then(|b| b.cost.layers.get(l.id.0 as usize))
                .map(|c| c.traffic),
            carry: (l.carry != CarryDepth::Ripple).then(|| l.carry.to_string()),
            faithful: match &l.op {
                Op::Add(a) => a.rounding.is_faithful(),
                op => op.requant().is_some_and(|r| r.rounding.is_faithful()),
            },
            chunks: cost
                .and_then(|c| c.layers.get(l.id.0 as usize))
                .and_then(|c| c.stages.iter().map(|s| s.chunks()).max())
                .filter(|&n| n > 1),
        };
        let mut linear = |l: LinearFacts<'_>, macs: u64| {
            let (proto, acc, naive) = (l.protocol, l.acc_bits, l.acc_bits_naive);
            row.weight_bits = Some(l.weight_ty.to_string());
            row.acc_bits = Some(acc);
            row.acc_bits_naive = Some(naive);
            if let Some(r) = l.requant {
                row.multiplier_bits = Some(r.multiplier_bits());
                row.shift = Some(r.shift);
            }
            row.tile = Some(tile_str(proto));
            row.degree = Some(proto.he.degree);
            row.ring_bits = Some((proto.in_ring_bits, proto.out_ring_bits));
            row.config = Some(Config::of(proto));
            totals.linear_layers += 1;
            totals.macs = totals.macs.saturating_add(macs);
            totals.acc_bits_saved += naive.saturating_sub(acc);
        };
        match &l.op {
            Op::Conv(c) => {
                let [oh, ow] = c.shape.out_hw();
                linear(LinearFacts::of(c), product(&[c.shape.weight_len(), oh, ow]));
            }
            Op::MatMul(c) => {
                linear(
                    LinearFacts::of(c),
                    product(&[c.shape.rows, c.shape.inner, c.shape.cols]),
                );
            }
            Op::Affine(c) => {
                linear(
                    LinearFacts::of(c),
                    product(&[c.shape.channels, c.shape.per_channel]),
                );
            }
            Op::Rescale(r) => {
                row.multiplier_bits = Some(multiplier_bits(&r.multipliers));
                row.shift = Some(r.shift);
            }
            Op::Add(a) => {
                row.multiplier_bits = Some(multiplier_bits(&[a.m_a, a.m_b]));
                row.shift = Some(a.shift);
            }
            Op::AvgPool(a) => {
                row.multiplier_bits = Some(multiplier_bits(&a.requant.multipliers));
                row.shift = Some(a.requant.shift);
            }
            Op::MaxPool(_) | Op::Concat | Op::Reshape => {}
        }
        if let (Some(total), Some(w)) = (totals.weights.as_mut(), row.weights) {
            *total = total.saturating_add(w);
        }
        rows.push(row);
    }
    totals.predicted = cost.map(|c| Predicted::of(p, c));
    totals.baseline = base.map(|b| Predicted::of(&b.public, &b.cost));
    if let (Some(c), Some(b)) = (&totals.predicted, &totals.baseline) {
        totals.ratio = Some(b.channel.total_bytes() as f64 / c.channel.total_bytes().max(1) as f64);
    }
    Report {
        model: p.model_name.clone(),
        profile: p.protocol.profile.clone(),
        server_plan: plan.weights.is_some(),
        network: timing.net.to_string(),
        compute_profile: timing.profile.machine.clone(),
        precision: p.protocol.precision.clone(),
        input: io(&p.input.name, p.input.tensor),
        output: match p.epilogue.output(&tensor(p.output.tensor).shape) {
            Ok(out) if !p.epilogue.is_empty() => format!(
                "{} [{}] {} (client epilogue) from the revealed {}",
                p.output.name,
                shape_str(&out.shape),
                out.kind.name(),
                io(&tensor(p.output.tensor).name, p.output.tensor)
            ),
            _ => io(&p.output.name, p.output.tensor),
        },
        epilogue: epilogue_rows(p),
        layers: rows,
        totals,
    }
}
