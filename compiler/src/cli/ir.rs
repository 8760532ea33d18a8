//! `heqc ir`.

use std::path::PathBuf;

/// Print the layer IR of a model after the compiler passes: one line per layer with its
/// inputs, output tensor (type, shape, zero point, scale, range), geometry, accumulator widths
/// (sound/naive) and requantization shift and clamp. Weights are never printed.
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
