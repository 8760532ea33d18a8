//! `heqc explain`.

use super::net::NetArgs;
use anyhow::Context;
use heqc::explain::{Format, Timing};
use std::path::PathBuf;

/// Report formats.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FormatArg {
    /// Fixed-width table.
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
    /// Network and compute profile of the predicted times.
    #[command(flatten)]
    pub net: NetArgs,
    /// Also draw the per-layer predicted bytes (up/down, beside the Cheetah baseline) as an
    /// SVG bar chart to this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// Reads the plan and prints the report on stdout.
///
/// # Errors
/// Unreadable or invalid plans.
pub fn run(a: &Args) -> anyhow::Result<()> {
    let plan = heq_runtime::plan::read_plan(&a.plan).context("reading the plan")?;
    let format = match a.format {
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
        std::fs::write(path, heqc::chart::svg(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", heqc::explain::format(&report, format)?);
    Ok(())
}
