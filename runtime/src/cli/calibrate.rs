//! `heq-run calibrate`: measures this machine's compute profile
//! ([`heq_runtime::calibrate`]) and writes it as JSON for `heqc compile --profile`.

use anyhow::Context;
use clap::Args;
use heq_runtime::output_file;
use std::path::PathBuf;

/// The arguments of `heq-run calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Where to write the JSON profile (default: stdout); written atomically, checked to be
    /// writable before the measurements start.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Ciphertexts timed per HE step and context.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub iters: usize,
}

/// Measures and writes the profile.
///
/// # Errors
/// An `--out` that cannot be written (before measuring), a failed measurement or write.
pub fn run(args: &CalibrateArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.out {
        output_file::check_writable(path).context("--out")?;
    }
    let profile = heq_runtime::calibrate::calibrate(args.iters.max(1), rand::random())
        .context("calibrating")?;
    let json = profile.to_json();
    match &args.out {
        Some(path) => output_file::write_atomically(path, json.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{json}"),
    }
    Ok(())
}
