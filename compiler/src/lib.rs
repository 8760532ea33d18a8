//! heqc: compiles quantized ONNX models into two-party private-inference plans.
//!
//! Pipeline (each phase is timed; `heqc compile -v` prints them):
//!
//! 1. **decode**: the raw ONNX `ModelProto` (tract-onnx's protobuf types, never decluttered);
//! 2. **frontend** ([`frontend`]): QDQ, QCDQ and QOperator graphs → a [`ir::LayerGraph`] of
//!    integer layers on centred values, with requantization multipliers fused into linear layers;
//! 3. **passes** ([`passes`]): range analysis ([`analysis::ranges`]: tensor ranges and sound
//!    accumulator widths) and identity removal, the IR verified after each pass;
//! 4. **precision** ([`precision`], with [`CompileOptions::precision`] only): lower bit widths
//!    per layer within an accuracy budget measured on calibration data (HEQuant's mixed
//!    precision), then **requantization compression** ([`passes::CompressRequant`], unless
//!    [`CompileOptions::compress_requant`] is off): the smallest shifts and multipliers with
//!    bit-identical outputs over the proven ranges, on the final graph; then, with
//!    [`precision::Options::faithful`], faithful truncations within the same budget
//!    ([`precision::choose_faithful`]);
//! 5. **lower** ([`lower`]): the [`lower::Skeleton`], the plan of `heq_runtime::plan` without
//!    protocol choices;
//! 6. **select** ([`select`]): every linear layer's protocol, by the [`Strategy`]: the Cheetah
//!    baseline ([`optimize::baseline`]) or per-layer HE configurations chosen by an ILP over
//!    exact costs ([`optimize`]); the [`select::Selection`] holds the plan, its predicted cost,
//!    the baseline's and the runner-up configurations, which [`explain`] reports.
//!
//! ```text
//! ONNX ─decode→ ModelProto ─frontend→ LayerGraph ─passes→ LayerGraph ─(precision)→ LayerGraph
//!      ─lower→ Skeleton ─select(Strategy)→ Selection { plan, cost, baseline, runner_ups }
//!      ─explain→ Report ─render→ text / YAML / JSON
//! ```
//!
//! ```no_run
//! let compiled = heqc::compile_path(std::path::Path::new("models/cnn_avg_qdq_u8s8.onnx"))?;
//! println!("{} layers", compiled.selection.plan.public.layers.len());
//! print!("{}", heqc::explain::render_selection(&compiled.selection, heqc::explain::Format::Text)?);
//! # Ok::<(), heqc::Error>(())
//! ```

pub mod analysis;
pub mod chart;
pub mod error;
pub mod explain;
pub mod frontend;
pub mod ir;
pub mod lower;
pub mod optimize;
pub mod passes;
pub mod precision;
pub mod select;

pub use error::{Error, Result, UnsupportedNode};
pub use select::Strategy;

use heq_runtime::cost::compute::ComputeProfile;
use heq_runtime::cost::plan::default_chunk_rots;
use select::Selection;
use std::path::Path;
use std::time::{Duration, Instant};
use tract_onnx::pb::ModelProto;

/// Everything a compilation can be asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct CompileOptions {
    /// How the linear layers' protocols are chosen.
    pub strategy: Strategy,
    /// Compute times of the latency objective.
    pub profile: ComputeProfile,
    /// Mixed precision on calibration data (`None`: the model's bit widths, exactly).
    pub precision: Option<precision::Options>,
    /// Most random OTs per direction in one OT-extension batch, instead of the objective's
    /// choice ([`select::choose_ot_batch`]), with its default chunks
    /// ([`heq_runtime::cost::plan::default_chunk_rots`]) unless `chunk_rots` is set; within
    /// `1..=`[`heq_runtime::cost::plan::MAX_OT_BATCH_ROTS`].
    pub ot_batch: Option<u64>,
    /// Most random OTs per direction one chunk of a nonlinear protocol consumes, instead of
    /// the objective's choice ([`select::choose_chunk_rots`]); within
    /// `1..=`[`heq_runtime::cost::plan::MAX_CHUNK_ROTS`]. It bounds the OT batch size too.
    pub chunk_rots: Option<u64>,
    /// Replace every requantization's multipliers and shift by the smallest ones with
    /// bit-identical outputs over the proven ranges ([`passes::CompressRequant`]); `false` keeps
    /// the frontend's literal 24-bit multipliers ([`CompileOptions::new`] does so for
    /// [`Strategy::Baseline`]: Cheetah as it would run the model).
    pub compress_requant: bool,
}

impl CompileOptions {
    /// `strategy` with the shipped compute profile and no mixed precision; requantizations
    /// compressed, except for the Cheetah baseline.
    pub fn new(strategy: Strategy) -> Self {
        CompileOptions {
            strategy,
            profile: ComputeProfile::builtin(),
            precision: None,
            ot_batch: None,
            chunk_rots: None,
            compress_requant: !matches!(strategy, Strategy::Baseline),
        }
    }
}

/// A compiled model: the selection (plan, predicted costs, runner-ups) and how long each phase
/// took.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The plan (public part and server weights) and what was predicted of it.
    pub selection: Selection,
    /// The layer graph after the passes, in the IR text form.
    pub ir_text: String,
    /// Phase name and wall time, in order.
    pub timings: Vec<(String, Duration)>,
    /// Mixed precision's result (`None` without [`CompileOptions::precision`]).
    pub precision: Option<precision::Outcome>,
}

/// Compiles an ONNX file with the optimizer; the model is named after the file stem.
///
/// # Errors
/// I/O errors, undecodable files, unsupported operators (all of them at once), models heqc
/// cannot express, optimizer failures and internal invariant violations.
pub fn compile_path(path: &Path) -> Result<Compiled> {
    compile_path_with(path, Strategy::default())
}

/// Compiles an ONNX file with `strategy`.
///
/// # Errors
/// As [`compile_path`].
pub fn compile_path_with(path: &Path, strategy: Strategy) -> Result<Compiled> {
    compile_path_opts(path, &CompileOptions::new(strategy))
}

/// Compiles an ONNX file with `options`.
///
/// # Errors
/// As [`compile_path`], and calibration failures.
pub fn compile_path_opts(path: &Path, options: &CompileOptions) -> Result<Compiled> {
    let start = Instant::now();
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        error: e,
    })?;
    let read = start.elapsed();
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let mut c = compile_bytes_opts(&bytes, &name, &path.display().to_string(), options)?;
    c.timings.insert(0, ("read".into(), read));
    Ok(c)
}

/// Compiles the bytes of an ONNX file with the optimizer; `path` only names the source in
/// errors.
///
/// # Errors
/// As [`compile_path`].
pub fn compile_bytes(bytes: &[u8], name: &str, path: &str) -> Result<Compiled> {
    compile_bytes_with(bytes, name, path, Strategy::default())
}

/// Compiles the bytes of an ONNX file with `strategy`.
///
/// # Errors
/// As [`compile_path`].
pub fn compile_bytes_with(
    bytes: &[u8],
    name: &str,
    path: &str,
    strategy: Strategy,
) -> Result<Compiled> {
    compile_bytes_opts(bytes, name, path, &CompileOptions::new(strategy))
}

/// Compiles the bytes of an ONNX file with `options`.
///
/// # Errors
/// As [`compile_path_opts`].
pub fn compile_bytes_opts(
    bytes: &[u8],
    name: &str,
    path: &str,
    options: &CompileOptions,
) -> Result<Compiled> {
    let start = Instant::now();
    let model = frontend::tensor::decode_model(bytes, path)?;
    let decode = start.elapsed();
    let mut c = compile_proto_opts(&model, name, options)?;
    c.timings.insert(0, ("decode".into(), decode));
    Ok(c)
}

/// Compiles a decoded model with the optimizer.
///
/// # Errors
/// As [`compile_path`], except I/O and decoding.
pub fn compile_proto(model: &ModelProto, name: &str) -> Result<Compiled> {
    compile_proto_with(model, name, Strategy::default())
}

/// Compiles a decoded model with `strategy`.
///
/// # Errors
/// As [`compile_path`], except I/O and decoding.
pub fn compile_proto_with(model: &ModelProto, name: &str, strategy: Strategy) -> Result<Compiled> {
    compile_proto_opts(model, name, &CompileOptions::new(strategy))
}

/// Compiles a decoded model with `options`.
///
/// # Errors
/// As [`compile_path_opts`], except I/O and decoding.
pub fn compile_proto_opts(
    model: &ModelProto,
    name: &str,
    options: &CompileOptions,
) -> Result<Compiled> {
    let mut timings = Vec::new();
    let start = Instant::now();
    let mut graph = frontend::build(model, name)?;
    timings.push(("frontend".to_string(), start.elapsed()));
    tracing::info!(layers = graph.len(), "frontend done");
    let mut pm = passes::PassManager::standard();
    pm.run(&mut graph)?;
    timings.extend(pm.timings.iter().map(|(n, d)| (format!("pass {n}"), *d)));
    let mut precision = match &options.precision {
        Some(p) => {
            let start = Instant::now();
            let outcome = precision::choose(&graph, p, &options.profile)?;
            timings.push(("precision".to_string(), start.elapsed()));
            tracing::info!(
                candidates = outcome.candidates,
                rounds = outcome.rounds,
                lowered = outcome.record.lowered.len(),
                "mixed precision chosen"
            );
            graph = outcome.graph.clone();
            Some(outcome)
        }
        None => None,
    };
    if options.compress_requant {
        let mut pm = passes::PassManager::compression();
        pm.run(&mut graph)?;
        timings.extend(pm.timings.iter().map(|(n, d)| (format!("pass {n}"), *d)));
    }
    if let (Some(p), Some(outcome)) = (&options.precision, &mut precision)
        && p.faithful
    {
        let start = Instant::now();
        let f = precision::choose_faithful(&graph, outcome, p, &options.profile)?;
        timings.push(("faithful truncation".to_string(), start.elapsed()));
        tracing::info!(
            faithful = f.layers,
            candidates = f.candidates,
            measured = f.measured,
            "faithful truncation chosen"
        );
        if let Some((agree, err)) = f.agreement {
            outcome.record.top1_agreement = agree;
            outcome.record.max_output_error = err;
            outcome.record.faithful_seed = Some(precision::FAITHFUL_SEED);
        }
        graph = f.graph;
    }
    let start = Instant::now();
    let mut skeleton = lower::lower(&graph)?;
    if let Some(p) = &precision {
        skeleton.record_precision(p.record.clone());
    }
    timings.push(("lower".to_string(), start.elapsed()));
    let start = Instant::now();
    let mut selection = select::select(skeleton, options.strategy, &options.profile)?;
    if options.ot_batch.is_some() || options.chunk_rots.is_some() {
        let protocol = &mut selection.plan.public.protocol;
        if let Some(rots) = options.ot_batch {
            protocol.ot_batch_rots = rots;
            protocol.chunk_rots = default_chunk_rots(rots);
        }
        if let Some(rots) = options.chunk_rots {
            protocol.ot_batch_rots = protocol.ot_batch_rots.min(rots);
            protocol.chunk_rots = rots;
        }
        selection.cost = optimize::predict(&selection.plan.public)?;
    }
    timings.push(("select".to_string(), start.elapsed()));
    if let Some(s) = &selection.solution {
        tracing::info!(
            variables = s.stats.variables,
            constraints = s.stats.constraints,
            "ILP solved in {:.3} ms",
            s.stats.time.as_secs_f64() * 1e3
        );
    }
    Ok(Compiled {
        selection,
        ir_text: ir::text::print(&graph),
        timings,
        precision,
    })
}
