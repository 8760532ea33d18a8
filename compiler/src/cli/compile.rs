//! `heqc compile`.

use anyhow::Context;
use std::path::PathBuf;

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
}

/// Compiles, writes the plan(s) atomically and prints a one-line summary.
///
/// # Errors
/// Compilation and I/O failures.
pub fn run(a: &Args) -> anyhow::Result<()> {
    let compiled = heqc::compile_path(&a.model)?;
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
    println!(
        "{}: {} layers ({} linear), {} weights, plan {} bytes -> {}",
        plan.public.model_name,
        plan.public.layers.len(),
        plan.public
            .layers
            .iter()
            .filter(|l| l.op.is_linear())
            .count(),
        weights,
        size,
        a.output.display()
    );
    Ok(())
}
