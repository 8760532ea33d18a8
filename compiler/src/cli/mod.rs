//! The `heqc` command line: clap derive, one module per subcommand.

pub mod compile;
pub mod explain;
pub mod ir;
pub mod net;
pub mod ops;

use clap::{Parser, Subcommand};

/// heqc compiles quantized ONNX models (QDQ, QCDQ, QOperator) into plans for two-party private
/// inference (HE for linear layers, OT for the rest), and explains plans.
#[derive(Debug, Parser)]
#[command(name = "heqc", version, propagate_version = true)]
pub struct Cli {
    /// More output on stderr: -v prints the compiler phases with timings, -vv the passes.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile an ONNX model into a plan file.
    ///
    /// Accepts QDQ (QuantizeLinear/DequantizeLinear, ai.onnx or onnxruntime's com.microsoft,
    /// around Conv, Gemm, MatMul, Add, Relu/Clip, pooling (also `ceil_mode`), Concat,
    /// Flatten/Reshape, BatchNormalization), QCDQ (Quantize → Clip →
    /// Dequantize, the clip bounds giving the bit width) and QOperator models (QLinearConv,
    /// QLinearMatMul, ConvInteger, MatMulInteger, com.microsoft QGemm, QLinearAdd,
    /// QLinearAveragePool, QLinearGlobalAveragePool, QLinearConcat). The optimizer chooses each
    /// linear layer's HE configuration (`--objective comm|latency`, `--net lan|wan|custom`,
    /// `--profile` from `heq-run calibrate`); `--baseline cheetah` keeps OpenCheetah's. With
    /// `--calibration` and `--max-accuracy-drop` or `--max-output-error`, mixed precision lowers
    /// per-layer bit widths within that budget, measured on the calibration data. Every
    /// requantization then gets the smallest shift and multipliers with bit-identical outputs
    /// over the proven value ranges (`--no-compress-requant` keeps the literal ones). Prints a
    /// summary with the predicted bytes, their ratio to the Cheetah baseline, the predicted time
    /// and the measured agreement of a mixed-precision plan; with -v the compiler phases and
    /// their times. Operators heqc cannot compile are all listed in one error, one line per
    /// operator (and reason) with the count and the first node names.
    ///
    /// Exit codes: 0 the plan is written; 1 failure: an unreadable or malformed model (not
    /// ONNX, an undefined input, a zero scale), an I/O error, an internal error; 2 the model is
    /// valid but unsupported (operators or configurations heqc cannot compile, an opset newer
    /// than heqc knows, a symbolic spatial dimension, quantization scales out of range), or a
    /// usage error.
    Compile(compile::Args),
    /// Print a per-layer report of a plan file (server or client plan).
    ///
    /// Per layer: id, ONNX node name(s), operation, input/output shapes, the bit widths of
    /// input, weights, accumulator and output (the sound accumulator width next to the naive
    /// bound),
    /// requantization multiplier bits and shift, tile, ring degree N, share ring bits, primes,
    /// plaintext bits, the predicted bytes each way, rounds and time (`--net`, `--profile`);
    /// for linear layers the HE bytes and the runner-up configuration; then totals, the Cheetah
    /// baseline's totals and the ratio, and a mixed-precision plan's measured agreement.
    /// The text table fits 120 characters and leaves the protocol parameters (naive bound,
    /// multiplier bits, shift, tile, N, rings, primes, plaintext bits) to `--wide`.
    /// `--svg` also draws the per-layer bytes beside the baseline's. Client plans have no
    /// weights; their weight counts show as "-".
    Explain(explain::Args),
    /// Print the layer IR of a model after the compiler passes.
    ///
    /// One line per layer with its inputs, output tensor (type, shape, zero point, scale,
    /// range), geometry, accumulator widths (sound/naive) and requantization shift and clamp.
    /// Weights are never printed.
    Ir(ir::Args),
    /// Print the table of supported ONNX operators: what each becomes and what of it heqc
    /// refuses.
    ///
    /// Any other operator makes `heqc compile` fail with exit code 2, naming every such node
    /// (grouped by operator).
    Ops(ops::Args),
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the subcommand reports.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Compile(a) => compile::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Ir(a) => ir::run(a),
        Command::Ops(a) => ops::run(a),
    }
}
