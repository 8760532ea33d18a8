//! `heqc compile`: compiles, writes the plan(s) and prints what the selection predicted.

use super::net::NetArgs;
use anyhow::{Context, bail};
use heq_runtime::output_file;
use heq_runtime::plan::PrecisionBudget;
use heqc::optimize::Objective;
use heqc::{CompileOptions, Strategy, precision};
use std::path::PathBuf;

/// What the optimizer minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectiveArg {
    /// Total bytes, both directions.
    Comm,
    /// Estimated latency on `--net`: bytes / bandwidth + rounds · RTT + compute (HE, and the
    /// nonlinear protocols' random OTs).
    Latency,
}

/// How requantizations truncate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TruncationArg {
    /// Exactly: the two-party output equals the reference executor's bit for bit.
    Exact,
    /// Faithfully where `--calibration` data shows the budget allows it: the floor or the
    /// ceiling of `x / 2^k` (±1 in the last place, unbiased), no carry chain on the low bits.
    Faithful,
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
    /// Where to write the server plan (public part and weights); written atomically, checked to
    /// be writable before compiling.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the client plan (public part only) here; a different file from `-o`.
    #[arg(long)]
    pub client_out: Option<PathBuf>,
    /// What the optimizer minimises.
    #[arg(long, value_enum, default_value = "comm")]
    pub objective: ObjectiveArg,
    /// Network and compute profile of the latency objective.
    #[command(flatten)]
    pub net: NetArgs,
    /// Skip the optimizer and use a fixed baseline configuration.
    #[arg(long, value_enum)]
    pub baseline: Option<BaselineArg>,
    /// Mixed precision: calibration inputs (float `.npy` of shape `[N, ...input shape]`); lowers
    /// per-layer weight and activation bit widths within `--max-accuracy-drop` or
    /// `--max-output-error`.
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    /// Largest fraction of calibration samples whose top-1 class may differ from the model as
    /// quantized (e.g. 0.01).
    #[arg(
        long,
        value_name = "X",
        requires = "calibration",
        conflicts_with = "max_output_error"
    )]
    pub max_accuracy_drop: Option<f64>,
    /// Largest change of any dequantized output on the calibration samples.
    #[arg(long, value_name = "E", requires = "calibration")]
    pub max_output_error: Option<f64>,
    /// Mixed precision keeps the first and the last linear layer at their bit widths.
    #[arg(long, requires = "calibration")]
    pub keep_first_last: bool,
    /// `exact` (default): every requantization bit for bit as the reference executor.
    /// `faithful`: requantizations may return the floor or the ceiling of `x / 2^k` (the
    /// two-party output then differs from the reference by at most 1 in each such layer, and
    /// the errors propagate), for far fewer bytes; needs `--calibration` and its budget, and
    /// keeps faithful truncation only on as many layers (the last ones) as the measured
    /// agreement allows, which the plan records and `heqc explain` shows.
    #[arg(long, value_enum, default_value = "exact")]
    pub truncation: TruncationArg,
    /// With `--truncation faithful`: keep every layer's bit widths (no mixed precision), the
    /// calibration data only decides the faithful truncations.
    #[arg(long, requires = "calibration")]
    pub keep_bits: bool,
    /// Produce the random OTs in batches of at most ROTS per direction instead of the
    /// objective's choice (2^16 to 2^22), with chunks of 16 batches (at most 2^22 ROTs) unless
    /// `--chunk-rots` is given: smaller batches hold less memory in each party and send more
    /// OT-extension bytes and round trips.
    #[arg(long, value_name = "ROTS", value_parser = ot_batch)]
    pub ot_batch: Option<u64>,
    /// Run the nonlinear protocols in chunks of at most ROTS random OTs per direction instead
    /// of the objective's choice (by default 16 OT batches, at most 2^22; `--objective latency`
    /// takes up to 2^24 where the round trips saved are worth it): each party holds up to two
    /// chunks' pads, up to 98 bytes per ROT (`heqc explain` prints them), and a layer larger
    /// than a chunk repeats its protocols' rounds once per chunk. Bounds the OT batch too.
    #[arg(long, value_name = "ROTS", value_parser = chunk_rots)]
    pub chunk_rots: Option<u64>,
    /// Keep the literal requantization multipliers (24 significant bits) and shifts instead of
    /// the smallest ones that give bit-identical outputs over the proven value ranges (the
    /// default, which shortens the truncations and narrows their rings). `--baseline cheetah`
    /// always keeps them (Cheetah as it would run the model); the baseline printed beside an
    /// optimized plan prices Cheetah's protocols on that plan's requantizations.
    #[arg(long)]
    pub no_compress_requant: bool,
}

/// Parses `--ot-batch`: a count of ROTs in `1..=MAX_OT_BATCH_ROTS`.
fn ot_batch(s: &str) -> Result<u64, String> {
    rots_up_to(s, heq_runtime::cost::plan::MAX_OT_BATCH_ROTS)
}

/// Parses `--chunk-rots`: a count of ROTs in `1..=MAX_CHUNK_ROTS`.
fn chunk_rots(s: &str) -> Result<u64, String> {
    rots_up_to(s, heq_runtime::cost::plan::MAX_CHUNK_ROTS)
}

/// Parses a count of ROTs in `1..=max`.
fn rots_up_to(s: &str, max: u64) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a number of ROTs from 1 to {max}")),
    }
}

impl Args {
    /// The selection strategy these arguments ask for.
    ///
    /// # Errors
    /// Invalid network arguments.
    pub fn strategy(&self) -> anyhow::Result<Strategy> {
        let net = self.net.net()?;
        Ok(match (self.baseline, self.objective) {
            (Some(BaselineArg::Cheetah), _) => Strategy::Baseline,
            (None, ObjectiveArg::Comm) => Strategy::Optimized(Objective::Comm),
            (None, ObjectiveArg::Latency) => Strategy::Optimized(Objective::Latency(net)),
        })
    }

    /// Checks, before any work, that the plan files can be written and are two different
    /// files.
    ///
    /// # Errors
    /// An [`heq_runtime::error::OutputError`] (a usage error), with the option it concerns.
    pub fn check_outputs(&self) -> anyhow::Result<()> {
        output_file::check_writable(&self.output).context("-o")?;
        if let Some(client) = &self.client_out {
            output_file::check_writable(client).context("--client-out")?;
            output_file::check_distinct(&self.output, client).context("-o and --client-out")?;
        }
        Ok(())
    }

    /// The compilation options: strategy, compute profile and mixed precision.
    ///
    /// # Errors
    /// Invalid network arguments, an unreadable profile or calibration file, a budget that is
    /// missing, negative or not a number.
    pub fn options(&self) -> anyhow::Result<CompileOptions> {
        let mut options = CompileOptions::new(self.strategy()?);
        options.profile = self.net.profile()?;
        let faithful = self.truncation == TruncationArg::Faithful;
        if faithful && self.calibration.is_none() {
            bail!(
                "--truncation faithful needs --calibration data and --max-accuracy-drop or \
                 --max-output-error: faithful truncation is kept only where the agreement \
                 measured on that data stays within the budget"
            );
        }
        if self.keep_bits && !faithful {
            bail!("--keep-bits only applies with --truncation faithful");
        }
        if let Some(path) = &self.calibration {
            let budget = match (self.max_accuracy_drop, self.max_output_error) {
                (Some(x), None) => PrecisionBudget::AccuracyDrop(x),
                (None, Some(e)) => PrecisionBudget::OutputError(e),
                _ => bail!("--calibration needs --max-accuracy-drop or --max-output-error"),
            };
            let (PrecisionBudget::AccuracyDrop(x) | PrecisionBudget::OutputError(x)) = budget;
            if !(x.is_finite() && x >= 0.0) {
                bail!("the accuracy budget must be a non-negative number, not {x}");
            }
            let data = heq_runtime::npy::read_f32(path)
                .with_context(|| format!("reading the calibration data {}", path.display()))?;
            let mut p = precision::Options::new(data, budget);
            p.keep_ends = self.keep_first_last;
            p.faithful = faithful;
            if self.keep_bits {
                p.widths.clear();
            }
            options.precision = Some(p);
        }
        if let (Some(batch), Some(chunk)) = (self.ot_batch, self.chunk_rots)
            && chunk < batch
        {
            bail!("--chunk-rots {chunk} is below the OT batch of --ot-batch {batch}");
        }
        options.ot_batch = self.ot_batch;
        options.chunk_rots = self.chunk_rots;
        options.compress_requant &= !self.no_compress_requant;
        Ok(options)
    }
}

/// Compiles, writes the plan(s) atomically and prints a one-line summary with the predicted
/// bytes and their ratio to the Cheetah baseline, then the predicted times, all from the
/// selection (nothing is priced again).
///
/// # Errors
/// Compilation and I/O failures; a model whose Cheetah baseline cannot be scheduled (the
/// summary compares with it).
pub fn run(a: &Args) -> anyhow::Result<()> {
    a.check_outputs()?;
    let options = a.options()?;
    let compiled = heqc::compile_path_opts(&a.model, &options)?;
    for (i, (phase, t)) in compiled.timings.iter().enumerate() {
        tracing::info!("phase {}: {phase} {:.3} ms", i + 1, t.as_secs_f64() * 1e3);
    }
    let selection = &compiled.selection;
    let plan = &selection.plan;
    heq_runtime::plan::write_plan(plan, &a.output)
        .with_context(|| format!("writing plan {}", a.output.display()))?;
    if let Some(c) = &a.client_out {
        heq_runtime::plan::write_plan(&plan.to_client(), c)
            .with_context(|| format!("writing client plan {}", c.display()))?;
    }
    let size = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    let weights: usize = plan
        .weights
        .as_ref()
        .map_or(0, |w| w.layers.iter().map(|(_, l)| l.weights.len()).sum());
    let predicted = selection.cost.channel();
    let base = selection
        .baseline
        .as_ref()
        .context("the Cheetah baseline of this model cannot be scheduled")?
        .cost
        .channel();
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
    let timing = heqc::explain::Timing {
        net: a.net.net()?,
        profile: options.profile,
    };
    let report = heqc::explain::report_selection(selection, &timing);
    if let (Some(t), Some(b)) = (report.totals.time, report.totals.baseline_time) {
        println!(
            "predicted time on {}: {:.1} ms (compute {:.1} ms, network {:.1} ms); cheetah {:.1} ms",
            report.network, t.total_ms, t.compute_ms, t.network_ms, b.total_ms
        );
    }
    if let Some(p) = &plan.public.protocol.precision {
        println!("{}", heqc::explain::precision_line(p));
    }
    Ok(())
}
