//! `heqc ops`: the table of supported ONNX operators, generated from the frontend's registry
//! (the README's table is this output; a test keeps them equal).

use heqc::frontend::registry::OpEntry;

/// Arguments of `heqc ops`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: OpsFormat,
}

/// Output formats of `heqc ops`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OpsFormat {
    /// A markdown table (the README's).
    Markdown,
    /// One operator per line: domain, operator.
    List,
}

/// Prints the table on stdout.
///
/// # Errors
/// None today; the signature matches the other subcommands.
pub fn run(a: &Args) -> anyhow::Result<()> {
    let registry = heqc::frontend::ops::standard_registry();
    let entries = registry.entries();
    print!(
        "{}",
        match a.format {
            OpsFormat::Markdown => markdown(&entries),
            OpsFormat::List => list(&entries),
        }
    );
    Ok(())
}

fn markdown(entries: &[OpEntry<'_>]) -> String {
    let mut s = String::from("| domain | operator | becomes | refused |\n|---|---|---|---|\n");
    for e in entries {
        s += &format!(
            "| {} | {} | {} | {} |\n",
            e.domain, e.op_type, e.doc.becomes, e.doc.limits
        );
    }
    s
}

fn list(entries: &[OpEntry<'_>]) -> String {
    entries
        .iter()
        .map(|e| format!("{} {}\n", e.domain, e.op_type))
        .collect()
}
