//! `heq-bench`: writes the model zoo as ONNX files, compiles it with heqc and prints a table,
//! or runs the benchmark against the Cheetah baseline (`all`) and writes `results/` and
//! `docs/benchmarks.{md,svg}`.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use heq_bench::cost::{self, LATENCY_MODEL, NetProfile};
use heq_bench::machine::{self, Machine};
use heq_bench::party::{self, Parties};
use heq_bench::results::{self, Comparison, ModelResult, PlanKind, Summary};
use heq_bench::zoo::{self, Arch, Precision};
use std::path::{Path, PathBuf};
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
    /// The benchmark: compile each model with heqc and with `--baseline cheetah`, predict both
    /// plans' cost, run the selected ones with both parties, write `results/*.json`,
    /// `docs/benchmarks.md` (between its markers) and `docs/benchmarks.svg`.
    All(AllArgs),
}

/// Arguments of `heq-bench all`.
#[derive(Debug, Args)]
struct AllArgs {
    #[command(flatten)]
    select: Select,
    /// Models to run with both parties (repeat or comma-separate): an architecture (at every
    /// `--measure-precision`) or one model `<arch>_<precision>`.
    #[arg(long, value_delimiter = ',', default_values_t = Measure::DEFAULT)]
    measure: Vec<Measure>,
    /// Precisions to run with both parties, for the `--measure` entries that name only an
    /// architecture.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Precision::W8A8, Precision::W4A4])]
    measure_precision: Vec<Precision>,
    /// Plans to run with both parties.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = PlanKind::ALL)]
    measure_plan: Vec<PlanKind>,
    /// Predict only: no two-party runs.
    #[arg(long)]
    predict_only: bool,
    /// How the parties of a measured run are executed.
    #[arg(long, value_enum, default_value_t = Parties::Network)]
    parties: Parties,
    /// The `heq-run` binary (default: the one next to this binary, built first when this runs
    /// under cargo).
    #[arg(long)]
    heq_run: Option<PathBuf>,
    /// A smoke run: ResNet-20 W4A4 only, predicted and measured (both plans).
    #[arg(long, conflicts_with_all = ["arch", "precision", "measure", "measure_precision"])]
    quick: bool,
    /// Directory of the JSON results.
    #[arg(long, default_value_os_t = workspace().join("results"))]
    results: PathBuf,
    /// Directory of `benchmarks.md` and `benchmarks.svg`.
    #[arg(long, default_value_os_t = workspace().join("docs"))]
    docs: PathBuf,
}

/// A model of the zoo.
type Model = (Arch, Precision);

/// A `--measure` entry: an architecture at every `--measure-precision`, or one model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Measure {
    arch: Arch,
    /// `None`: every precision of `--measure-precision`.
    precision: Option<Precision>,
}

impl Measure {
    /// What `all` runs with both parties by default: the CIFAR and Tiny-ImageNet networks and
    /// SqueezeNet at W8A8 and W4A4, and ResNet-50 at W4A4 (the model OpenCheetah's latency is
    /// quoted for).
    const DEFAULT: [Measure; 6] = [
        Measure::arch(Arch::ResNet20),
        Measure::arch(Arch::ResNet32),
        Measure::arch(Arch::ResNet18Cifar),
        Measure::arch(Arch::MobileNetV2),
        Measure::arch(Arch::SqueezeNet),
        Measure {
            arch: Arch::ResNet50,
            precision: Some(Precision::W4A4),
        },
    ];

    /// Every `--measure-precision` of `arch`.
    const fn arch(arch: Arch) -> Self {
        Measure {
            arch,
            precision: None,
        }
    }
}

impl std::str::FromStr for Measure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        use clap::ValueEnum as _;
        let (arch, precision) = match s.split_once('_') {
            Some((a, p)) => (a, Some(Precision::from_str(p, true)?)),
            None => (s, None),
        };
        let arch = Arch::from_str(arch, true)
            .map_err(|_| format!("unknown architecture `{arch}` in `{s}` (an architecture or `<arch>_<precision>`, e.g. resnet50_w4a4)"))?;
        Ok(Measure { arch, precision })
    }
}

impl std::fmt::Display for Measure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.precision {
            Some(p) => write!(f, "{}", zoo::model_name(self.arch, p)),
            None => f.write_str(self.arch.name()),
        }
    }
}

impl AllArgs {
    /// The models to compile and the subset to measure.
    fn plan(&self) -> (Vec<Model>, Vec<Model>) {
        if self.quick {
            let m = vec![(Arch::ResNet20, Precision::W4A4)];
            return (m.clone(), if self.predict_only { Vec::new() } else { m });
        }
        let models = self.select.models();
        let measured = models
            .iter()
            .copied()
            .filter(|&(a, p)| {
                !self.predict_only
                    && self.measure.iter().any(|m| match m.precision {
                        Some(q) => (m.arch, q) == (a, p),
                        None => m.arch == a && self.measure_precision.contains(&p),
                    })
            })
            .collect();
        (models, measured)
    }
}

/// The workspace root (where `results/` and `docs/` live).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
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
        Command::All(args) => run_all(args)?,
    }
    Ok(())
}

/// `heq-bench all`.
fn run_all(args: &AllArgs) -> anyhow::Result<()> {
    let command = std::env::args()
        .skip(1)
        .fold("heq-bench".to_string(), |s, a| s + " " + &a);
    let machine = Machine::read(&workspace());
    eprintln!("{}", machine.describe());
    let heq_run = match (&args.heq_run, measured_any(args)) {
        (Some(path), _) => path.clone(),
        (None, true) => heq_run_binary()?,
        (None, false) => PathBuf::new(),
    };
    let work = std::env::temp_dir().join(format!("heq-bench-{}", std::process::id()));
    std::fs::create_dir_all(&args.results)
        .with_context(|| format!("creating {}", args.results.display()))?;
    let (models, measured) = args.plan();
    let mut comparisons = Vec::new();
    for (arch, precision) in models {
        let name = zoo::model_name(arch, precision);
        eprintln!("{name}: building");
        let model = zoo::build(arch, precision, args.select.seed);
        let mut pair = Vec::new();
        for kind in PlanKind::ALL {
            let strategy = match kind {
                PlanKind::Heqc => heqc::Strategy::default(),
                PlanKind::Cheetah => heqc::Strategy::Baseline,
            };
            let (row, plan) = heq_bench::compile_with(&model, arch, precision, strategy)?;
            let predicted = cost::predict(&plan.public)
                .with_context(|| format!("predicting the cost of {name} ({})", kind.name()))?;
            eprintln!(
                "{name} {}: compiled in {:.2} s, predicted {:.1} MB, {} rounds",
                kind.name(),
                row.compile_time.as_secs_f64(),
                predicted.total_bytes() as f64 / 1e6,
                predicted.rounds
            );
            let measured = if measured.contains(&(arch, precision))
                && args.measure_plan.contains(&kind)
            {
                let dir = work.join(format!("{name}_{}", kind.name()));
                let m = party::measure(&plan, args.parties, &heq_run, &dir, args.select.seed)
                    .with_context(|| format!("two-party run of {name} ({})", kind.name()))?;
                let peaks: Vec<String> = m
                    .reports
                    .iter()
                    .map(|r| {
                        let mb = r.peak_rss_bytes.unwrap_or(0) as f64 / 1e6;
                        format!("{} {mb:.0} MB", r.role)
                    })
                    .collect();
                eprintln!(
                    "{name} {}: measured {:.1} s wall, {} rows = predicted, peak {}",
                    kind.name(),
                    m.wall_s,
                    m.rows_checked,
                    peaks.join(", ")
                );
                Some(m)
            } else {
                None
            };
            let result = ModelResult {
                model: name.clone(),
                arch: arch.name().into(),
                precision: precision.name().into(),
                plan: kind,
                seed: args.select.seed,
                linear_layers: row.linear_layers,
                macs: row.macs,
                compile_s: row.compile_time.as_secs_f64(),
                predicted,
                measured,
                networks: NetProfile::all(),
                latency_model: LATENCY_MODEL.into(),
                machine: machine.clone(),
            };
            write_json(
                &args.results.join(format!("{name}_{}.json", kind.name())),
                &result,
            )?;
            pair.push(result);
        }
        comparisons.push(Comparison::of(&pair[0], &pair[1]));
    }
    let _ = std::fs::remove_dir_all(&work);
    let summary = Summary::new(command, machine, machine::load_avg(), comparisons);
    write_json(&args.results.join("summary.json"), &summary)?;
    let table = results::render_markdown(&summary);
    let md = args.docs.join("benchmarks.md");
    let doc = match std::fs::read_to_string(&md) {
        Ok(doc) => doc,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".into(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", md.display())),
    };
    let doc = results::splice(&doc, &table)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("updating {}", md.display()))?;
    std::fs::create_dir_all(&args.docs)
        .with_context(|| format!("creating {}", args.docs.display()))?;
    std::fs::write(&md, doc).with_context(|| format!("writing {}", md.display()))?;
    let svg = heq_bench::chart::render_svg(&summary.models)
        .map_err(anyhow::Error::msg)
        .context("drawing the chart")?;
    let chart = args.docs.join("benchmarks.svg");
    std::fs::write(&chart, svg).with_context(|| format!("writing {}", chart.display()))?;
    print!("{table}");
    eprintln!(
        "wrote {}, {} and {}",
        args.results.display(),
        md.display(),
        chart.display()
    );
    Ok(())
}

/// Whether `all` will run any model with both parties.
fn measured_any(args: &AllArgs) -> bool {
    !args.plan().1.is_empty() && !args.measure_plan.is_empty()
}

/// The `heq-run` next to this binary (`target/<profile>/`). Under cargo (`CARGO` set, as by
/// `cargo run` and `cargo test`), it is built first with this binary's profile, so the runs
/// never use a stale one.
fn heq_run_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating heq-bench")?;
    // `target/<profile>/heq-bench`, or `target/<profile>/deps/<test>` in tests.
    let mut dir = exe.parent().context("heq-bench has no directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().context("deps has no parent")?;
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile = if dir.ends_with("debug") {
            "dev"
        } else {
            "release"
        };
        eprintln!("building heq-run ({profile} profile)");
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "heq-runtime", "--bin", "heq-run"])
            .args(["--profile", profile])
            .arg("--manifest-path")
            .arg(workspace().join("Cargo.toml"))
            .status()
            .context("running cargo build for heq-run")?;
        anyhow::ensure!(status.success(), "cargo build of heq-run failed: {status}");
    }
    let path = dir.join("heq-run");
    anyhow::ensure!(
        path.exists(),
        "{} does not exist: build it (cargo build --release -p heq-runtime --bin heq-run) or \
         pass --heq-run",
        path.display()
    );
    Ok(path)
}

/// Writes `value` as pretty JSON.
fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(value).context("encoding JSON")?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
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

    /// The models `all` measures with the given arguments.
    fn measured(args: &[&str]) -> Vec<Model> {
        let cli = Cli::try_parse_from(["heq-bench", "all"].iter().chain(args)).unwrap();
        let Command::All(all) = cli.cmd else {
            unreachable!("parsed `all`")
        };
        all.plan().1
    }

    #[test]
    fn resnet50_w4a4_is_measured_by_default_and_only_at_w4a4() {
        let m = measured(&[]);
        assert!(m.contains(&(Arch::ResNet50, Precision::W4A4)));
        assert!(!m.contains(&(Arch::ResNet50, Precision::W8A8)));
        assert!(m.contains(&(Arch::SqueezeNet, Precision::W8A8)));
        assert!(!m.contains(&(Arch::ResNet20, Precision::W2A2)));
        assert_eq!(m.len(), 11);
    }

    #[test]
    fn measure_takes_architectures_and_models() {
        let m = measured(&[
            "--arch",
            "resnet20,resnet50",
            "--measure",
            "resnet20,resnet50_w2a2",
            "--measure-precision",
            "w8a8",
        ]);
        assert_eq!(
            m,
            [
                (Arch::ResNet20, Precision::W8A8),
                (Arch::ResNet50, Precision::W2A2)
            ]
        );
        let e = Cli::try_parse_from(["heq-bench", "all", "--measure", "resnet51_w4a4"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown architecture `resnet51`"), "{e}");
        assert!(Cli::try_parse_from(["heq-bench", "all", "--measure", "resnet50_w3a3"]).is_err());
    }
}
