//! `heqc compile`.

use anyhow::Context;
use heqc::Mode;
use heqc::optimize::{self, Net, Objective, baseline};
use std::path::PathBuf;

/// What the optimizer minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectiveArg {
    /// Total bytes, both directions.
    Comm,
    /// Estimated latency on `--net`: bytes / bandwidth + rounds · RTT + HE compute.
    Latency,
}

/// Network profile of the latency objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetArg {
    /// 3 Gbps, 0.3 ms RTT.
    Lan,
    /// 400 Mbps, 40 ms RTT.
    Wan,
}

/// Fixed configurations instead of the optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BaselineArg {
    /// OpenCheetah: N = 4096, primes 60 + 49 bits, 37-bit rings, its tiling, no packing.
    Cheetah,
}

/// Arguments of `heqc compile`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX model.
    pub model: PathBuf,
    /// Where to write the server plan (public part and weights).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the client plan (public part only) here.
    #[arg(long)]
    pub client_out: Option<PathBuf>,
    /// What the optimizer minimises.
    #[arg(long, value_enum, default_value = "comm")]
    pub objective: ObjectiveArg,
    /// Network of the latency objective.
    #[arg(long, value_enum, default_value = "lan")]
    pub net: NetArg,
    /// Skip the optimizer and use a fixed baseline configuration.
    #[arg(long, value_enum)]
    pub baseline: Option<BaselineArg>,
}

impl Args {
    /// The compilation mode these arguments ask for.
    pub fn mode(&self) -> Mode {
        let net = match self.net {
            NetArg::Lan => Net::Lan,
            NetArg::Wan => Net::Wan,
        };
        match (self.baseline, self.objective) {
            (Some(BaselineArg::Cheetah), _) => Mode::Baseline,
            (None, ObjectiveArg::Comm) => Mode::Optimize(Objective::Comm),
            (None, ObjectiveArg::Latency) => Mode::Optimize(Objective::Latency(net)),
        }
    }
}

/// Compiles, writes the plan(s) atomically and prints a one-line summary with the predicted
/// bytes and their ratio to the Cheetah baseline.
///
/// # Errors
/// Compilation and I/O failures.
pub fn run(a: &Args) -> anyhow::Result<()> {
    let compiled = heqc::compile_path_with(&a.model, a.mode())?;
    for (i, (phase, t)) in compiled.timings.iter().enumerate() {
        tracing::info!("phase {}: {phase} {:.3} ms", i + 1, t.as_secs_f64() * 1e3);
    }
    let plan = &compiled.plan;
    heq_runtime::plan::write_plan(plan, &a.output).context("writing the plan")?;
    if let Some(c) = &a.client_out {
        heq_runtime::plan::write_plan(&plan.to_client(), c).context("writing the client plan")?;
    }
    let size = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    let weights: usize = plan
        .weights
        .as_ref()
        .map_or(0, |w| w.layers.iter().map(|(_, l)| l.weights.len()).sum());
    let predicted = optimize::predict(&plan.public)?.channel();
    let base = optimize::predict(&baseline::cheetah(plan).public)?.channel();
    println!(
        "{}: {} layers ({} linear), {} weights, {} profile: predicted {} bytes ({} up, {} down), \
         {:.2}x less than cheetah ({} bytes), plan {} bytes -> {}",
        plan.public.model_name,
        plan.public.layers.len(),
        plan.public
            .layers
            .iter()
            .filter(|l| l.op.is_linear())
            .count(),
        weights,
        plan.public.protocol.profile,
        predicted.total_bytes(),
        predicted.bytes_up,
        predicted.bytes_down,
        base.total_bytes() as f64 / predicted.total_bytes().max(1) as f64,
        base.total_bytes(),
        size,
        a.output.display()
    );
    Ok(())
}
