//! The `heqc` command line: clap derive, one module per subcommand.

pub mod compile;
pub mod explain;
pub mod ir;

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
    Compile(compile::Args),
    /// Print a per-layer report of a plan file (server or client plan).
    Explain(explain::Args),
    /// Print the layer IR of a model after the compiler passes.
    Ir(ir::Args),
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
    }
}
