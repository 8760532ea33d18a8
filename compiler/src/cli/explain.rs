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
    print!("{}", heqc::explain::render_with(&plan, format, &timing)?);
    Ok(())
}
