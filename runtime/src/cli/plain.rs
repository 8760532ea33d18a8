//! `--mode plain`: the plaintext reference executor on every sample, in parallel; the outputs
//! every two-party run reproduces bit for bit.

use anyhow::Context;
use heq_runtime::plan::Plan;
use heq_runtime::reference;
use rayon::prelude::*;

use super::RunArgs;
use super::samples::{read_inputs, write_outputs};

/// Quantizes, runs the reference executor per sample, writes the outputs.
///
/// # Errors
/// An unreadable plan or input, a failing sample, a failed write.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let (input_path, output_path) = args.io_paths()?;
    let (plan, input) = read_inputs(args.plan()?, input_path)?;
    let sample_len = plan.public.input.shape.iter().product::<usize>();
    let outputs = input
        .data
        .par_chunks(sample_len.max(1))
        .enumerate()
        .map(|(i, x)| run_sample(&plan, x).with_context(|| format!("sample {i}")))
        .collect::<anyhow::Result<Vec<Vec<i64>>>>()?;
    write_outputs(output_path, args.raw, &plan, &input.shape, &outputs)
}

/// One sample: quantize, run, return the centred outputs.
fn run_sample(plan: &Plan, x: &[f32]) -> anyhow::Result<Vec<i64>> {
    let v = reference::quantize_input(&plan.public, x);
    Ok(reference::run(plan, &v)?)
}
