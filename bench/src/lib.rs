//! heq-bench: a zoo of architecture-shaped quantized ONNX models with seeded random weights
//! (ResNet-20/32/18 for CIFAR, MobileNetV2 for Tiny-ImageNet, SqueezeNet 1.0 and ResNet-50 for
//! ImageNet; W8A8, W4A4, W2A2), generated in memory without downloads, their compilation by
//! heqc, and the benchmark of heqc's plans against the Cheetah baseline: predicted cost
//! ([`cost`]), measured two-party runs ([`party`]), results, tables ([`results`]) and chart
//! ([`chart`]), with the machine they ran on ([`machine`]).
//!
//! ```
//! use heq_bench::zoo::{Arch, Precision};
//! let model = heq_bench::zoo::build(Arch::ResNet20, Precision::W4A4, 1);
//! let row = heq_bench::compile(&model, Arch::ResNet20, Precision::W4A4)?.0;
//! assert_eq!(row.linear_layers, 22);
//! # Ok::<(), heq_bench::Error>(())
//! ```

pub mod chart;
pub mod cost;
pub mod machine;
pub mod onnx;
pub mod party;
pub mod results;
pub mod zoo;

use heq_runtime::error::PlanError;
use heq_runtime::plan::{Op, Plan};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tract_onnx::pb::ModelProto;
use zoo::{Arch, Precision};

/// Errors of the bench library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// heqc refused a zoo model.
    #[error("heqc refused {model}")]
    Compile {
        /// The model name.
        model: String,
        /// The compiler's error.
        #[source]
        source: heqc::Error,
    },
    /// The plan could not be encoded.
    #[error("encoding the plan of {model}")]
    Plan {
        /// The model name.
        model: String,
        /// The encoder's error.
        #[source]
        source: PlanError,
    },
}

/// What one compiled model costs and holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Model name (`<arch>_<precision>`).
    pub model: String,
    /// Architecture.
    pub arch: Arch,
    /// Precision.
    pub precision: Precision,
    /// Convolutions in the plan (depthwise included).
    pub convs: usize,
    /// Matrix products in the plan.
    pub matmuls: usize,
    /// Linear (HE) layers in the plan.
    pub linear_layers: usize,
    /// Multiply-accumulates of the linear layers, per sample.
    pub macs: u64,
    /// Weights of the linear layers.
    pub weights: u64,
    /// Size of the ONNX model (bytes).
    pub onnx_bytes: usize,
    /// Size of the plan file with weights (bytes).
    pub plan_bytes: usize,
    /// Wall time of `heqc::compile_proto`.
    pub compile_time: Duration,
    /// Widest sound accumulator over the linear layers (bits).
    pub max_acc_bits: u32,
    /// Widest naive accumulator bound over the linear layers (bits).
    pub max_acc_bits_naive: u32,
    /// Widest sound accumulator over the inner linear layers (all but the first and the last,
    /// which stay 8-bit), 0 when there are none.
    pub inner_acc_bits: u32,
    /// Widest naive accumulator bound over the inner linear layers.
    pub inner_acc_bits_naive: u32,
}

/// Compiles a model with heqc's optimizer and measures the plan.
///
/// # Errors
/// [`Error::Compile`] when heqc refuses the model, [`Error::Plan`] when the plan cannot be
/// encoded.
pub fn compile(model: &ModelProto, arch: Arch, precision: Precision) -> Result<(Row, Plan), Error> {
    compile_with(model, arch, precision, heqc::Strategy::default())
}

/// Compiles a model with heqc with `strategy` and measures the plan.
///
/// # Errors
/// As [`compile`].
pub fn compile_with(
    model: &ModelProto,
    arch: Arch,
    precision: Precision,
    strategy: heqc::Strategy,
) -> Result<(Row, Plan), Error> {
    let name = zoo::model_name(arch, precision);
    let start = Instant::now();
    let compiled =
        heqc::compile_proto_with(model, &name, strategy).map_err(|source| Error::Compile {
            model: name.clone(),
            source,
        })?;
    let compile_time = start.elapsed();
    let plan = compiled.selection.plan;
    let plan_bytes = heq_runtime::plan::write_plan_bytes(&plan)
        .map_err(|source| Error::Plan {
            model: name.clone(),
            source,
        })?
        .len();
    let mut row = Row {
        model: name,
        arch,
        precision,
        convs: 0,
        matmuls: 0,
        linear_layers: 0,
        macs: 0,
        weights: 0,
        onnx_bytes: prost::Message::encoded_len(model),
        plan_bytes,
        compile_time,
        max_acc_bits: 0,
        max_acc_bits_naive: 0,
        inner_acc_bits: 0,
        inner_acc_bits_naive: 0,
    };
    let mut accs = Vec::new();
    for layer in &plan.public.layers {
        let (macs, weights, acc, naive) = match &layer.op {
            Op::Conv(l) => {
                row.convs += 1;
                let [oh, ow] = l.shape.out_hw();
                let w = l.shape.weight_len() as u64;
                (w * (oh * ow) as u64, w, l.acc_bits, l.acc_bits_naive)
            }
            Op::MatMul(l) => {
                row.matmuls += 1;
                let s = &l.shape;
                let w = (s.inner * s.cols) as u64;
                (w * s.rows as u64, w, l.acc_bits, l.acc_bits_naive)
            }
            Op::Affine(l) => {
                let s = &l.shape;
                let n = (s.channels * s.per_channel) as u64;
                (n, s.channels as u64, l.acc_bits, l.acc_bits_naive)
            }
            _ => continue,
        };
        row.linear_layers += 1;
        row.macs += macs;
        row.weights += weights;
        accs.push((acc, naive));
    }
    let widest = |a: &[(u32, u32)]| {
        a.iter()
            .fold((0, 0), |(s, n), &(a, b)| (s.max(a), n.max(b)))
    };
    (row.max_acc_bits, row.max_acc_bits_naive) = widest(&accs);
    if accs.len() > 2 {
        (row.inner_acc_bits, row.inner_acc_bits_naive) = widest(&accs[1..accs.len() - 1]);
    }
    Ok((row, plan))
}

/// The table `heq-bench compile` prints: one line per row, fixed-width columns; accumulator
/// widths as `sound/naive` bits.
pub fn render_table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<12} {:<5} {:>6} {:>6} {:>7} {:>8} {:>9} {:>10} {:>10} {:>9} {:>8} {:>9}\n",
        "arch",
        "prec",
        "linear",
        "convs",
        "matmuls",
        "MMACs",
        "weights",
        "onnx B",
        "plan B",
        "compile s",
        "acc max",
        "acc inner"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<12} {:<5} {:>6} {:>6} {:>7} {:>8.1} {:>9} {:>10} {:>10} {:>9.2} {:>8} {:>9}",
            r.arch.name(),
            r.precision.name(),
            r.linear_layers,
            r.convs,
            r.matmuls,
            r.macs as f64 / 1e6,
            r.weights,
            r.onnx_bytes,
            r.plan_bytes,
            r.compile_time.as_secs_f64(),
            format!("{}/{}", r.max_acc_bits, r.max_acc_bits_naive),
            format!("{}/{}", r.inner_acc_bits, r.inner_acc_bits_naive),
        );
    }
    s
}
