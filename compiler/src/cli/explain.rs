//! `heqc explain`.

use super::net::NetArgs;
use anyhow::Context;
use heq_runtime::output_file;
use heqc::explain::{Format, Timing};
use std::path::PathBuf;

/// Report formats.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FormatArg {
    /// Fixed-width table, at most 120 characters wide unless `--wide`.
    Text,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// Arguments of `heqc explain`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plan file.
    pub plan: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
    /// Text format: every column (also the naive accumulator bound, requantization multiplier
    /// bits and shift, tile, ring degree N, share rings, primes q and plaintext bits t), however
    /// wide; the default table fits 120 characters. YAML and JSON always have every field.
    #[arg(long)]
    pub wide: bool,
    /// Network and compute profile of the predicted times.
    #[command(flatten)]
    pub net: NetArgs,
    /// Also draw the per-layer predicted bytes (up/down, beside the Cheetah baseline) as an
    /// SVG bar chart to this file (written atomically).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// Reads the plan and prints the report on stdout.
///
/// # Errors
/// An `--svg` path that cannot be written, unreadable or invalid plans.
pub fn run(a: &Args) -> anyhow::Result<()> {
    if let Some(path) = &a.svg {
        output_file::check_writable(path).context("--svg")?;
    }
    let plan = heq_runtime::plan::read_plan(&a.plan)
        .with_context(|| format!("reading plan {}", a.plan.display()))?;
    let format = match a.format {
        FormatArg::Text if a.wide => Format::WideText,
        FormatArg::Text => Format::Text,
        FormatArg::Yaml => Format::Yaml,
        FormatArg::Json => Format::Json,
    };
    let timing = Timing {
        net: a.net.net()?,
        profile: a.net.profile()?,
    };
    let report = heqc::explain::report_with(&plan, &timing);
    if let Some(path) = &a.svg {
        output_file::write_atomically(path, heqc::chart::svg(&report)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", heqc::explain::format(&report, format)?);
    Ok(())
}
