//! `heqc explain`: a plan → a per-layer report (text table, YAML or JSON). A pure function of
//! the plan; works on client plans (no weights: weight counts are then absent).

use crate::error::{Error, Result};
use heq_runtime::plan::{LinearProtocol, Op, Plan, TensorId};
use serde::Serialize;
use std::fmt::Write;

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
    /// Tile `CxHxW/M`, for linear layers.
    pub tile: Option<String>,
    /// Ring degree, for linear layers.
    pub degree: Option<usize>,
    /// Share ring bits (in/out), for linear layers.
    pub ring_bits: Option<(u32, u32)>,
    /// Number of weights, when the plan has them.
    pub weights: Option<usize>,
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
    /// Input: name, shape, type, scale, zero point.
    pub input: String,
    /// Output: name, shape, type, scale, zero point.
    pub output: String,
    /// One row per layer.
    pub layers: Vec<LayerRow>,
    /// Totals.
    pub totals: Totals,
}

/// Output format of [`render`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Fixed-width table.
    Text,
    /// YAML (serde_norway).
    Yaml,
    /// JSON (pretty).
    Json,
}

fn shape_str(s: &[usize]) -> String {
    s.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

/// Saturating product (plan files are untrusted input).
fn product(v: &[usize]) -> u64 {
    v.iter().fold(1u64, |a, &b| a.saturating_mul(b as u64))
}

/// Builds the report of a plan.
pub fn report(plan: &Plan) -> Report {
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
    };
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
        };
        let mut linear = |weight_ty: heq_runtime::plan::IntType,
                          acc: u32,
                          naive: u32,
                          rq: Option<(u32, u32)>,
                          proto: &LinearProtocol,
                          macs: u64| {
            row.weight_bits = Some(weight_ty.to_string());
            row.acc_bits = Some(acc);
            row.acc_bits_naive = Some(naive);
            if let Some((bits, shift)) = rq {
                row.multiplier_bits = Some(bits);
                row.shift = Some(shift);
            }
            let t = proto.tile;
            row.tile = Some(format!("{}x{}x{}/{}", t.c, t.h, t.w, t.m));
            row.degree = Some(proto.he.degree);
            row.ring_bits = Some((proto.in_ring_bits, proto.out_ring_bits));
            totals.linear_layers += 1;
            totals.macs = totals.macs.saturating_add(macs);
            totals.acc_bits_saved += naive.saturating_sub(acc);
        };
        match &l.op {
            Op::Conv(c) => {
                let [oh, ow] = c.shape.out_hw();
                let macs = product(&[c.shape.weight_len(), oh, ow]);
                linear(
                    c.weight_ty,
                    c.acc_bits,
                    c.acc_bits_naive,
                    c.requant.as_ref().map(|r| (r.multiplier_bits, r.shift)),
                    &c.protocol,
                    macs,
                );
            }
            Op::MatMul(c) => {
                let macs = product(&[c.shape.rows, c.shape.inner, c.shape.cols]);
                linear(
                    c.weight_ty,
                    c.acc_bits,
                    c.acc_bits_naive,
                    c.requant.as_ref().map(|r| (r.multiplier_bits, r.shift)),
                    &c.protocol,
                    macs,
                );
            }
            Op::Affine(c) => {
                let macs = product(&[c.shape.channels, c.shape.per_channel]);
                linear(
                    c.weight_ty,
                    c.acc_bits,
                    c.acc_bits_naive,
                    c.requant.as_ref().map(|r| (r.multiplier_bits, r.shift)),
                    &c.protocol,
                    macs,
                );
            }
            Op::Rescale(r) => {
                row.multiplier_bits = r
                    .multipliers
                    .iter()
                    .map(|m| 64 - m.unsigned_abs().leading_zeros())
                    .max();
                row.shift = Some(r.shift);
            }
            Op::Add(a) => {
                row.multiplier_bits = Some(
                    64 - a
                        .m_a
                        .unsigned_abs()
                        .max(a.m_b.unsigned_abs())
                        .leading_zeros(),
                );
                row.shift = Some(a.shift);
            }
            Op::AvgPool(a) => {
                row.multiplier_bits = a
                    .multipliers
                    .iter()
                    .map(|m| 64 - m.unsigned_abs().leading_zeros())
                    .max();
                row.shift = Some(a.shift);
            }
            Op::MaxPool(_) | Op::Concat | Op::Reshape => {}
        }
        if let (Some(total), Some(w)) = (totals.weights.as_mut(), row.weights) {
            *total = total.saturating_add(w);
        }
        rows.push(row);
    }
    Report {
        model: p.model_name.clone(),
        profile: p.protocol.profile.clone(),
        server_plan: plan.weights.is_some(),
        input: io(&p.input.name, p.input.tensor),
        output: io(&p.output.name, p.output.tensor),
        layers: rows,
        totals,
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}

/// The fixed-width text table.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model {} (profile {}, {} plan)",
        r.model,
        r.profile,
        if r.server_plan { "server" } else { "client" }
    );
    let _ = writeln!(out, "input  {}", r.input);
    let _ = writeln!(out, "output {}", r.output);
    let _ = writeln!(
        out,
        "{:<4} {:<24} {:<8} {:<12} {:<12} {:<7} {:<4} {:>4} {:>5} {:<4} {:>5} {:>5} {:<14} {:>5} {:<6}",
        "id",
        "name",
        "op",
        "in",
        "out",
        "in_ty",
        "w",
        "acc",
        "naive",
        "out",
        "m_bit",
        "shift",
        "tile",
        "N",
        "ring"
    );
    for l in &r.layers {
        let name = if l.name.len() > 24 {
            format!("{}~", &l.name[..23])
        } else {
            l.name.clone()
        };
        let ins = l
            .inputs
            .iter()
            .map(|s| shape_str(s))
            .collect::<Vec<_>>()
            .join(",");
        let ring = l
            .ring_bits
            .map_or_else(|| "-".to_string(), |(a, b)| format!("{a}/{b}"));
        let _ = writeln!(
            out,
            "{:<4} {:<24} {:<8} {:<12} {:<12} {:<7} {:<4} {:>4} {:>5} {:<4} {:>5} {:>5} {:<14} {:>5} {:<6}",
            l.id,
            name,
            l.op,
            ins,
            shape_str(&l.output),
            l.input_bits.join(","),
            opt(&l.weight_bits),
            opt(&l.acc_bits),
            opt(&l.acc_bits_naive),
            l.output_bits,
            opt(&l.multiplier_bits),
            opt(&l.shift),
            opt(&l.tile),
            opt(&l.degree),
            ring
        );
    }
    let t = &r.totals;
    let _ = writeln!(
        out,
        "total: {} layers, {} linear, {} weights, {} MACs, {} accumulator bits saved over the naive bound",
        t.layers,
        t.linear_layers,
        opt(&t.weights),
        t.macs,
        t.acc_bits_saved
    );
    out
}

/// Renders the report of a plan in a format.
///
/// # Errors
/// [`Error::Format`] if YAML/JSON serialisation fails.
pub fn render(plan: &Plan, format: Format) -> Result<String> {
    let r = report(plan);
    match format {
        Format::Text => Ok(text(&r)),
        Format::Yaml => serde_norway::to_string(&r).map_err(|e| Error::Format(e.to_string())),
        Format::Json => serde_json::to_string_pretty(&r)
            .map(|s| s + "\n")
            .map_err(|e| Error::Format(e.to_string())),
    }
}
