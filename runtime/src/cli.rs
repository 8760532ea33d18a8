//! Command line of `heq-run`: the arguments (clap derive) and what each mode does with them.

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use heq_runtime::npy::{self, NpyArray};
use heq_runtime::party::{Prepared, sim};
use heq_runtime::plan::{OtBackend, Plan, read_plan};
use heq_runtime::reference;
use rayon::prelude::*;
use std::path::PathBuf;

/// Runs a heqc plan on `.npy` samples.
#[derive(Debug, Parser)]
#[command(
    name = "heq-run",
    version,
    about,
    long_about = None,
    after_help = "heq-run calibrate [--out profile.json]: measure this machine's compute profile."
)]
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
    /// OT backend of `--mode sim` (default: the plan's).
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub ot: Option<OtArg>,
    /// Seed of both parties' randomness in `--mode sim` (default: from the OS).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// OT backend on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OtArg {
    /// Silent OT (least communication).
    Silent,
    /// IKNP OT extension.
    Iknp,
}

impl From<OtArg> for OtBackend {
    fn from(a: OtArg) -> Self {
        match a {
            OtArg::Silent => OtBackend::Silent,
            OtArg::Iknp => OtBackend::Iknp,
        }
    }
}

/// Execution mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The plaintext reference executor in this process: bit-exact with what the two-party
    /// protocols compute, without cryptography or network.
    Plain,
    /// Both parties in this process (two threads, in-memory channel, real OT over a loopback
    /// QUIC connection): bit-exact with `plain`; prints the per-layer traffic, measured and
    /// predicted, on stderr.
    Sim,
}

/// `heq-run calibrate`: measures this machine's compute profile (HE per ciphertext, nonlinear
/// protocol and OT extension per ROT) for heqc's latency predictions (`heqc compile --profile`).
#[derive(Debug, Parser)]
#[command(name = "heq-run calibrate", version, about, long_about = None)]
pub struct CalibrateCli {
    /// Where to write the JSON profile (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Ciphertexts timed per HE step and context.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub iters: usize,
}

/// Runs `heq-run calibrate`.
///
/// # Errors
/// A failed measurement or write.
pub fn run_calibrate(cli: &CalibrateCli) -> anyhow::Result<()> {
    let profile = heq_runtime::calibrate::calibrate(cli.iters.max(1), rand::random())
        .context("calibrating")?;
    let json = profile.to_json();
    match &cli.out {
        Some(path) => {
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{json}"),
    }
    Ok(())
}

/// Runs the command.
///
/// # Errors
/// Unreadable or invalid plan, unreadable input, wrong input shape or dtype, a run error, or a
/// failed write; each with the file it concerns.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    match cli.mode {
        Mode::Plain => run_plain(cli),
        Mode::Sim => run_sim(cli),
    }
}

/// `--mode plain`: quantize, run the reference executor per sample, write the outputs.
fn run_plain(cli: &Cli) -> anyhow::Result<()> {
    let (plan, input) = read_inputs(cli)?;
    let sample_len = plan.public.input.shape.iter().product::<usize>();
    let outputs = input
        .data
        .par_chunks(sample_len.max(1))
        .enumerate()
        .map(|(i, x)| run_sample(&plan, x).with_context(|| format!("sample {i}")))
        .collect::<anyhow::Result<Vec<Vec<i64>>>>()?;
    write_outputs(cli, &plan, &input.shape, &outputs)
}

/// `--mode sim`: quantize, run both parties on each sample one after the other, print the
/// per-layer traffic, write the outputs.
fn run_sim(cli: &Cli) -> anyhow::Result<()> {
    let (plan, input) = read_inputs(cli)?;
    let p = &plan.public;
    let sample_len = p.input.shape.iter().product::<usize>();
    let samples: Vec<Vec<i64>> = input
        .data
        .chunks(sample_len.max(1))
        .map(|x| reference::quantize_input(p, x))
        .collect();
    let backend = cli.ot.map_or(p.protocol.ot, OtBackend::from);
    let seed = cli.seed.unwrap_or_else(rand::random);
    let start = std::time::Instant::now();
    let runs = sim::run(&plan, &samples, backend, seed).context("two-party run")?;
    let prepared = Prepared::with_backend(p, backend)?;
    for (i, run) in runs.iter().enumerate() {
        eprintln!("sample {i} (client view):");
        eprint!("{}", run.client.table());
    }
    let ot = prepared.cost.ot_extension;
    eprintln!(
        "OT extension per sample ({backend:?}, predicted): {} ROTs server->client, {} client->server, \
         {} bytes up, {} bytes down; wall time {:.2} s for {} samples",
        prepared.cost.server_rots,
        prepared.cost.client_rots,
        ot.bytes_up,
        ot.bytes_down,
        start.elapsed().as_secs_f64(),
        runs.len()
    );
    let outputs: Vec<Vec<i64>> = runs.into_iter().map(|r| r.output).collect();
    write_outputs(cli, &plan, &input.shape, &outputs)
}

/// Reads the plan and the input samples; checks the batch shape and rejects NaN.
fn read_inputs(cli: &Cli) -> anyhow::Result<(Plan, NpyArray<f32>)> {
    let plan = read_plan(&cli.plan).context("reading the plan")?;
    let input = npy::read_f32(&cli.input).context("reading the input")?;
    batch_size(&input.shape, &plan.public.input.shape)
        .with_context(|| format!("input {}", cli.input.display()))?;
    if let Some(i) = input.data.iter().position(|x| x.is_nan()) {
        bail!("input {}: element {i} is NaN", cli.input.display());
    }
    Ok((plan, input))
}

/// Writes the centred outputs of every sample (dequantized, or raw with `--raw`).
fn write_outputs(
    cli: &Cli,
    plan: &Plan,
    input_shape: &[usize],
    outputs: &[Vec<i64>],
) -> anyhow::Result<()> {
    let p = &plan.public;
    let mut shape = p.output.shape.clone();
    if let Some(n) = batch_size(input_shape, &p.input.shape)? {
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
    written.context("writing the output")
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
        CalibrateCli::command().debug_assert();
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
