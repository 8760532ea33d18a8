//! `heqc ir`.

use std::path::PathBuf;

/// Arguments of `heqc ir`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX model.
    pub model: PathBuf,
}

/// Compiles the model and prints its IR on stdout.
///
/// # Errors
/// Compilation failures.
pub fn run(a: &Args) -> anyhow::Result<()> {
    print!("{}", heqc::compile_path(&a.model)?.ir_text);
    Ok(())
}
