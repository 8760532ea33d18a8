//! `heq-bench`: writes the model zoo as ONNX files, or compiles it with heqc and prints a table.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use heq_bench::zoo::{self, Arch, Precision};
use std::path::PathBuf;
use std::process::ExitCode;

/// Architecture-shaped quantized ONNX models with seeded random weights, compiled by heqc.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write `<arch>_<precision>.onnx` files.
    Models {
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        select: Select,
    },
    /// Build each model in memory, compile it with heqc and print a table on stdout.
    Compile {
        #[command(flatten)]
        select: Select,
    },
}

/// Which models: every architecture and precision unless restricted.
#[derive(Debug, Args)]
struct Select {
    /// Architectures (repeat or comma-separate); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    arch: Vec<Arch>,
    /// Precisions (repeat or comma-separate); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    precision: Vec<Precision>,
    /// Seed of the weight generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Select {
    fn models(&self) -> Vec<(Arch, Precision)> {
        let archs = if self.arch.is_empty() {
            Arch::ALL.to_vec()
        } else {
            self.arch.clone()
        };
        let precs = if self.precision.is_empty() {
            Precision::ALL.to_vec()
        } else {
            self.precision.clone()
        };
        archs
            .iter()
            .flat_map(|&a| precs.iter().map(move |&p| (a, p)))
            .collect()
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.cmd {
        Command::Models { out, select } => {
            std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
            for (a, p) in select.models() {
                let name = zoo::model_name(a, p);
                let path = out.join(format!("{name}.onnx"));
                eprintln!("building {name}");
                let bytes = prost::Message::encode_to_vec(&zoo::build(a, p, select.seed));
                std::fs::write(&path, &bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
            }
        }
        Command::Compile { select } => {
            let mut rows = Vec::new();
            for (a, p) in select.models() {
                eprintln!("compiling {}", zoo::model_name(a, p));
                let model = zoo::build(a, p, select.seed);
                let (row, _) = heq_bench::compile(&model, a, p)?;
                eprintln!("  {:.2} s", row.compile_time.as_secs_f64());
                rows.push(row);
            }
            print!("{}", heq_bench::render_table(&rows));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
