//! `--mode sim`: both parties in this process on each sample, one after the other
//! ([`heq_runtime::party::sim`]); prints the per-layer traffic in the client's view and writes
//! the outputs (and the report).

use anyhow::Context;
use heq_runtime::party::report::{self, OtJson, RunInfo, TransportJson};
use heq_runtime::party::{Prepared, sim};
use heq_runtime::plan::OtBackend;
use std::time::Instant;

use super::samples::{quantize, read_inputs, write_outputs};
use super::{RunArgs, finish_report};

/// Quantizes, runs both parties per sample, reports, writes the outputs.
///
/// # Errors
/// An unreadable plan or input, a failed two-party run, a failed write.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let (input_path, output_path) = args.io_paths()?;
    let (plan, input) = read_inputs(args.plan()?, input_path)?;
    let samples = quantize(&plan, &input);
    let backend = args.ot.map_or(plan.public.protocol.ot, OtBackend::from);
    let seed = args.seed.unwrap_or_else(rand::random);
    let start = Instant::now();
    let runs = sim::run(&plan, &samples, backend, args.kernel_memory_bytes(), seed)
        .context("two-party run")?;
    let prepared = Prepared::with_backend(&plan.public, backend)?;
    let summed = report::aggregate(runs.iter().map(|r| &r.client));
    let info = RunInfo {
        role: "sim",
        plan_hash: plan.public.hash(),
        ot_backend: backend,
        ot: OtJson::predicted(&prepared.cost, backend, 1, runs.len() as u64),
        sessions: 1,
        samples: runs.len() as u64,
        wall: start.elapsed(),
        transport: TransportJson::default(),
    };
    finish_report(args, "both parties, client view", &summed, info)?;
    let outputs: Vec<Vec<i64>> = runs.into_iter().map(|r| r.output).collect();
    write_outputs(output_path, args.raw, &plan, &input.shape, &outputs)
}
