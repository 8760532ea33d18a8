//! Command line of `heq-run`: the arguments (clap derive) and what each mode does with them.

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use heq_runtime::npy::{self, NpyArray};
use heq_runtime::plan::{Plan, read_plan};
use heq_runtime::reference;
use rayon::prelude::*;
use std::path::PathBuf;

/// Runs a heqc plan on `.npy` samples.
#[derive(Debug, Parser)]
#[command(name = "heq-run", version, about, long_about = None)]
pub struct Cli {
    /// Plan file written by `heqc compile` (the server plan, with weights, for `--mode plain`).
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// How to execute the plan.
    #[arg(long, value_enum, value_name = "MODE")]
    pub mode: Mode,
    /// Input samples: a float32 or float64 `.npy` array whose shape is the plan's input shape
    /// (one sample) or `[N, ...input shape]` (a batch).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the outputs: float32 `.npy` of shape `[N, ...output shape]` (no `N` if
    /// the input had none), dequantized with the output scale. Written atomically.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Write the quantized outputs `q = v + zero_point` as int32 instead of dequantized floats.
    #[arg(long)]
    pub raw: bool,
}

/// Execution mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The plaintext reference executor in this process: bit-exact with what the two-party
    /// protocols compute, without cryptography or network.
    Plain,
}

/// Runs the command.
///
/// # Errors
/// Unreadable or invalid plan, unreadable input, wrong input shape or dtype, a run error, or a
/// failed write; each with the file it concerns.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    match cli.mode {
        Mode::Plain => run_plain(cli),
    }
}

/// `--mode plain`: quantize, run the reference executor per sample, write the outputs.
fn run_plain(cli: &Cli) -> anyhow::Result<()> {
    let plan =
        read_plan(&cli.plan).with_context(|| format!("reading plan {}", cli.plan.display()))?;
    let input = npy::read_f32(&cli.input)
        .with_context(|| format!("reading input {}", cli.input.display()))?;
    let p = &plan.public;
    let batch = batch_size(&input.shape, &p.input.shape)
        .with_context(|| format!("input {}", cli.input.display()))?;
    if let Some(i) = input.data.iter().position(|x| x.is_nan()) {
        bail!("input {}: element {i} is NaN", cli.input.display());
    }
    let sample_len = p.input.shape.iter().product::<usize>();
    let outputs = input
        .data
        .par_chunks(sample_len.max(1))
        .enumerate()
        .map(|(i, x)| run_sample(&plan, x).with_context(|| format!("sample {i}")))
        .collect::<anyhow::Result<Vec<Vec<i64>>>>()?;
    let mut shape = p.output.shape.clone();
    if let Some(n) = batch {
        shape.insert(0, n);
    }
    let values = outputs.concat();
    let written = if cli.raw {
        let zero_point = p.tensors[p.output.tensor.0 as usize].zero_point;
        let data = values
            .iter()
            .map(|&v| {
                v.checked_add(zero_point)
                    .and_then(|q| i32::try_from(q).ok())
            })
            .collect::<Option<Vec<i32>>>()
            .context("a quantized output does not fit int32")?;
        npy::write(&cli.output, NpyArray { shape, data })
    } else {
        let data = reference::dequantize_output(p, &values);
        npy::write(&cli.output, NpyArray { shape, data })
    };
    written.with_context(|| format!("writing output {}", cli.output.display()))
}

/// One sample: quantize, run, return the centred outputs.
fn run_sample(plan: &Plan, x: &[f32]) -> anyhow::Result<Vec<i64>> {
    let v = reference::quantize_input(&plan.public, x);
    Ok(reference::run(plan, &v)?)
}

/// `None` for one sample of the input shape, `Some(N)` for `[N, ...input shape]`.
fn batch_size(shape: &[usize], sample: &[usize]) -> anyhow::Result<Option<usize>> {
    if shape == sample {
        Ok(None)
    } else if shape.len() == sample.len() + 1 && shape[1..] == *sample {
        Ok(Some(shape[0]))
    } else {
        let dims: Vec<String> = sample.iter().map(ToString::to_string).collect();
        bail!(
            "shape {shape:?} is neither the plan's input shape {sample:?} nor [N, {}]",
            dims.join(", ")
        )
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn batch_shapes() {
        assert_eq!(batch_size(&[1, 4, 4], &[1, 4, 4]).unwrap(), None);
        assert_eq!(batch_size(&[5, 1, 4, 4], &[1, 4, 4]).unwrap(), Some(5));
        assert_eq!(batch_size(&[0, 3], &[3]).unwrap(), Some(0));
        let err = batch_size(&[4, 4], &[1, 4, 4]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape [4, 4] is neither the plan's input shape [1, 4, 4] nor [N, 1, 4, 4]"
        );
    }
}
