//! Fidelity against onnxruntime: every quantized fixture model, compiled and run by the
//! reference executor on the 64 fixture images, matches its reference output: top-1 identical on
//! every sample and at most 1 LSB of the output scale on at most 0.1 % of the output elements
//! (a few models have a documented weaker bar, see [`bar`]).
//! The traced run also checks every tensor range and every accumulator width (the executor errors
//! on overflow), so the range analysis is sound on every fixture input.
//!
//! The reference is `<model>.expected.npy` (onnxruntime, no graph optimisation), except for
//! models with an average pool re-quantized at its input scale: there onnxruntime's float32
//! evaluation of the QDQ graph decides exact rounding ties (a 2×2 window sum ≡ 2 mod 4) by float
//! noise, while the plan rounds them to even like an integer kernel (docs/semantics.md,
//! "Fidelity reference"). For those models the reference is
//! `<model>.expected_exact_pools.npy`: onnxruntime with those pools computed exactly
//! (models/README.md). The comparison with the raw onnxruntime output is printed for information.
//!
//! A plan with a client-side epilogue (a float head, Softmax, ArgMax, TopK) is compared after
//! its epilogue, as the client computes its output: indices (int64) must equal onnxruntime's
//! on every sample; float outputs must have the same top-1 on every sample and differ by at
//! most [`FLOAT_TOLERANCE`] of the sample's largest magnitude (at least 1; `f32` rounding, in
//! Softmax say) plus, for a float head, the rounding of a folded float bias: half an
//! accumulator step in output units (`docs/semantics.md` §5, [`folded_bias_allowance`]).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use heq_runtime::plan::{ElementKind, EpilogueOp, Op, Plan};
use heq_runtime::reference::{self, epilogue};
use ndarray::{Array2, Array4, ArrayD, Axis};
use ndarray_npy::read_npy;

/// Largest difference of a float output after an epilogue from onnxruntime's, relative to the
/// sample's largest magnitude (at least 1).
const FLOAT_TOLERANCE: f32 = 1e-4;

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
}

/// One sample's output: quantized, and dequantized as the client reads it.
struct Output {
    quantized: Vec<i64>,
    dequantized: Vec<f32>,
}

/// How far the plan's quantized outputs are from a float reference, in output LSBs.
#[derive(Debug, Default)]
struct Agreement {
    top1_identical: usize,
    samples: usize,
    max_lsb: i64,
    differing: usize,
    elements: usize,
}

impl Agreement {
    /// Compares the outputs `ours` (one per sample, output scale `scale`) with the rows of
    /// `expected`.
    fn measure(ours: &[Output], expected: &Array2<f32>, scale: f32) -> Self {
        let mut a = Agreement::default();
        for (y, want) in ours.iter().zip(expected.rows()) {
            let want: Vec<f32> = want.to_vec();
            for (v, w) in y.quantized.iter().zip(&want) {
                let d = (v - (w / scale).round() as i64).abs();
                a.max_lsb = a.max_lsb.max(d);
                a.differing += usize::from(d != 0);
                a.elements += 1;
            }
            a.top1_identical += usize::from(argmax(&y.dequantized) == argmax(&want));
            a.samples += 1;
        }
        a
    }

    fn percent_differing(&self) -> f64 {
        100.0 * self.differing as f64 / self.elements as f64
    }

    /// The bar: top-1 identical on every sample, at most `bar.max_lsb` LSB on at most
    /// `bar.percent` % of the elements.
    fn meets(&self, bar: &Bar) -> bool {
        self.top1_identical == self.samples
            && self.max_lsb <= bar.max_lsb
            && self.percent_differing() <= bar.percent
    }

    fn summary(&self) -> String {
        format!(
            "top-1 {}/{} identical, max {} LSB, {}/{} elements differ ({:.3} %)",
            self.top1_identical,
            self.samples,
            self.max_lsb,
            self.differing,
            self.elements,
            self.percent_differing()
        )
    }
}

/// How far a model may be from its reference (top-1 is always identical).
struct Bar {
    max_lsb: i64,
    percent: f64,
}

/// The standard bar: at most 1 LSB on at most 0.1 % of the output elements.
const STANDARD: Bar = Bar {
    max_lsb: 1,
    percent: 0.1,
};

/// Models held to a weaker bar, and why.
///
/// * 16-bit activations and output (`mpdw_qdq_a16_ms`, `mpdw_qdq_a16s_ms`): an output LSB is
///   2^-16 of the range, where onnxruntime's float32 evaluation of every Conv/Gemm (relative
///   error ~2^-24 per operation) decides the last bit of some 16-bit requantizations; the flips
///   propagate. Measured: 1 LSB on 2.3 % of the elements; the plan's last layer rounds its own
///   accumulator exactly in every case.
/// * The `ceil_mode` fixtures (`ceil_qdq_u8s8`, `ceil_cip_qdq_u8s8`): their head amplifies one
///   feature LSB to several output LSBs (output scale 0.0057 vs feature scale 0.055), and one
///   sample (29) has a second-convolution output 4.7e-6 above a tie (exact 34.5000047 output
///   steps, which the plan rounds to 35), which onnxruntime's float32 Conv puts at 34.4999999
///   and rounds to 34. Measured: 1–2 LSB on 3 and 5 of 640 elements, all in that sample. The
///   pools themselves, windows of 6 included, round exactly as the exact-pool reference
///   ([`heq_runtime::plan::Rounding::HalfEvenWithin`]).
fn bar(stem: &str) -> Bar {
    match stem {
        "mpdw_qdq_a16_ms" | "mpdw_qdq_a16s_ms" => Bar {
            max_lsb: 1,
            percent: 3.0,
        },
        "ceil_qdq_u8s8" | "ceil_cip_qdq_u8s8" => Bar {
            max_lsb: 2,
            percent: 1.0,
        },
        _ => STANDARD,
    }
}

/// The reference output of a fixture model: the exact-pool file where there is one.
fn reference_file(dir: &Path, stem: &str) -> std::path::PathBuf {
    let exact = dir.join(format!("{stem}.expected_exact_pools.npy"));
    if exact.exists() {
        exact
    } else {
        dir.join(format!("{stem}.expected.npy"))
    }
}

#[test]
fn every_quantized_model_matches_onnxruntime() {
    let dir = common::models_dir();
    let x: Array4<f32> = read_npy(dir.join("inputs/digits_test_x.npy")).unwrap();
    let mut failures = Vec::new();
    for path in common::quantized_models() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let plan = heqc::compile_path(&path)
            .unwrap_or_else(|e| panic!("{stem}: {e}"))
            .selection
            .plan;
        let out = &plan.public.tensors[plan.public.output.tensor.0 as usize];
        let (scale, zp) = (out.scale, out.zero_point);
        let mut acc_seen: std::collections::BTreeMap<u32, (i64, i64)> = Default::default();
        let mut outputs = Vec::new();
        for (i, sample) in x.axis_iter(Axis(0)).enumerate() {
            let flat: Vec<f32> = sample.iter().copied().collect();
            let input = reference::quantize_input(&plan.public, &flat);
            let trace = reference::run_traced(&plan, &input)
                .unwrap_or_else(|e| panic!("{stem} sample {i}: {e}"));
            for (id, accs) in &trace.accumulators {
                let e = acc_seen.entry(id.0).or_insert((0, 0));
                for &a in accs {
                    *e = (e.0.min(a), e.1.max(a));
                }
            }
            let quantized = trace.tensors[plan.public.output.tensor.0 as usize].clone();
            let dequantized = reference::dequantize_output(&plan.public, &quantized);
            outputs.push(Output {
                quantized,
                dequantized,
            });
        }
        let widths: Vec<String> = acc_seen
            .iter()
            .map(|(id, (lo, hi))| {
                let used = heqc::analysis::ranges::signed_bits(*lo, *hi);
                let (sound, naive) = match &plan.public.layers[*id as usize].op {
                    Op::Conv(l) => (l.acc_bits, l.acc_bits_naive),
                    Op::MatMul(l) => (l.acc_bits, l.acc_bits_naive),
                    Op::Affine(l) => (l.acc_bits, l.acc_bits_naive),
                    _ => (0, 0),
                };
                format!("l{id} {used}/{sound}/{naive}")
            })
            .collect();
        println!(
            "{stem}: accumulator bits used/declared/naive: {}",
            widths.join(", ")
        );
        let reference = reference_file(&dir, &stem);
        if !plan.public.epilogue.is_empty() {
            match after_epilogue(&plan, &outputs, &reference) {
                Ok(summary) => println!("{stem}: after the epilogue: {summary}"),
                Err(failure) => failures.push(format!("{stem}: {failure}")),
            }
            continue;
        }
        let expected: Array2<f32> = read_npy(&reference).unwrap();
        let agreement = Agreement::measure(&outputs, &expected, scale);
        let name = reference.file_name().unwrap().to_string_lossy();
        println!("{stem}: vs {name}: {}, output zp {zp}", agreement.summary());
        let raw = dir.join(format!("{stem}.expected.npy"));
        if reference != raw {
            let raw_expected: Array2<f32> = read_npy(&raw).unwrap();
            let informative = Agreement::measure(&outputs, &raw_expected, scale);
            println!(
                "{stem}: vs {stem}.expected.npy (informative, float32 ties): {}",
                informative.summary()
            );
        }
        if !agreement.meets(&bar(&stem)) {
            failures.push(format!("{stem} vs {name}: {}", agreement.summary()));
        }
    }
    assert!(
        failures.is_empty(),
        "fidelity failures:\n{}",
        failures.join("\n")
    );
}

/// How far a float head's output may be from float arithmetic because its float bias was
/// rounded to accumulator units: half the largest accumulator step, times the factors of later
/// `Mul` steps (Softmax is 1/2-Lipschitz in the max norm, the other steps do not widen it); 0
/// without a float head.
fn folded_bias_allowance(plan: &Plan) -> f32 {
    let e = &plan.public.epilogue;
    let Some(d) = &e.dequantize else {
        return 0.0;
    };
    let half_step = 0.5 * d.scales.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    e.steps.iter().fold(half_step, |a, step| match step.op {
        EpilogueOp::Mul(c) => a * c.abs(),
        _ => a,
    })
}

/// Compares the model outputs after the epilogue (the client's view) with the reference file:
/// identical indices, or floats with the same top-1 within [`FLOAT_TOLERANCE`] of the
/// magnitude plus [`folded_bias_allowance`]. `Ok` is a summary, `Err` a failure.
fn after_epilogue(plan: &Plan, outputs: &[Output], reference: &Path) -> Result<String, String> {
    let p = &plan.public;
    let kind = p.epilogue.output(&p.output.shape).unwrap().kind;
    let finished: Vec<epilogue::OutputData> = outputs
        .iter()
        .map(|y| epilogue::finish(p, &y.quantized).unwrap().data)
        .collect();
    let samples = outputs.len();
    match kind {
        ElementKind::Index => {
            let expected: ArrayD<i64> = read_npy(reference).unwrap();
            let ours: Vec<i64> = finished
                .into_iter()
                .flat_map(|d| match d {
                    epilogue::OutputData::Index(v) => v,
                    epilogue::OutputData::Float(_) => panic!("floats where indices were expected"),
                })
                .collect();
            let want: Vec<i64> = expected.iter().copied().collect();
            let differing = ours.iter().zip(&want).filter(|(a, b)| a != b).count();
            let summary = format!(
                "{differing}/{} indices differ on {samples} samples",
                want.len()
            );
            if ours.len() == want.len() && differing == 0 {
                Ok(summary)
            } else {
                Err(summary)
            }
        }
        ElementKind::Float => {
            let expected: ArrayD<f32> = read_npy(reference).unwrap();
            let rows: Vec<Vec<f32>> = expected
                .axis_iter(Axis(0))
                .map(|r| r.iter().copied().collect())
                .collect();
            let allowance = folded_bias_allowance(plan);
            let (mut top1_identical, mut worst, mut beyond) = (0, 0.0f32, 0);
            for (d, want) in finished.iter().zip(&rows) {
                let epilogue::OutputData::Float(ours) = d else {
                    panic!("indices where floats were expected");
                };
                top1_identical += usize::from(argmax(ours) == argmax(want));
                let magnitude = want.iter().fold(1.0f32, |m, w| m.max(w.abs()));
                for (a, b) in ours.iter().zip(want) {
                    worst = worst.max((a - b).abs());
                    beyond += usize::from((a - b).abs() > FLOAT_TOLERANCE * magnitude + allowance);
                }
            }
            let summary = format!(
                "top-1 {top1_identical}/{samples} identical, largest difference {worst:e} \
                 (folded-bias allowance {allowance:e}), {beyond} elements beyond the bar"
            );
            if rows.len() == samples && top1_identical == samples && beyond == 0 {
                Ok(summary)
            } else {
                Err(summary)
            }
        }
    }
}

/// Runs `tests/data/<name>.onnx` on `<name>_x.npy`; returns (max LSB difference, elements
/// differing) against `<name>.expected.npy`.
fn synthetic(name: &str) -> (i64, usize) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let x: Array4<f32> = read_npy(dir.join(format!("{name}_x.npy"))).unwrap();
    let expected: Array2<f32> = read_npy(dir.join(format!("{name}.expected.npy"))).unwrap();
    let plan = heqc::compile_path(&dir.join(format!("{name}.onnx")))
        .unwrap()
        .selection
        .plan;
    let scale = plan.public.tensors[plan.public.output.tensor.0 as usize].scale;
    let (mut max_lsb, mut differing) = (0, 0);
    for (i, sample) in x.axis_iter(Axis(0)).enumerate() {
        let input =
            reference::quantize_input(&plan.public, &sample.iter().copied().collect::<Vec<_>>());
        let y = reference::run_traced(&plan, &input).unwrap().tensors
            [plan.public.output.tensor.0 as usize]
            .clone();
        for (v, w) in y.iter().zip(expected.row(i)) {
            let d = (v - (w / scale).round() as i64).abs();
            max_lsb = max_lsb.max(d);
            differing += usize::from(d != 0);
        }
    }
    println!(
        "{name}: max {max_lsb} LSB, {differing}/{} elements differ",
        expected.len()
    );
    (max_lsb, differing)
}

/// The hand-built QDQ graph of `tests/data/make_synthetic.py` (grouped strided conv with
/// SAME_UPPER padding, a float BatchNormalization folded into it, ReLU, MaxPool, a Concat of
/// differently quantized branches, MatMul + float bias, int8 output): identical to onnxruntime
/// on 16 random inputs.
#[test]
fn synthetic_qdq_graph_matches_onnxruntime() {
    assert_eq!(synthetic("synthetic"), (0, 0));
}

/// The hand-built QOperator graph (QLinearConv branches, com.microsoft QLinearConcat rescaling
/// them, MaxPool on uint8, Flatten, QLinearMatMul): identical to onnxruntime.
#[test]
fn synthetic_qoperator_graph_matches_onnxruntime() {
    assert_eq!(synthetic("synthetic_qop"), (0, 0));
}

/// The hand-built QCDQ graph (Clip after the input QuantizeLinear, 4- and 5-bit activations
/// from Clip bounds, 4-bit narrow weights, a residual Add of differently quantized branches,
/// AveragePool with counted padding, GlobalAveragePool, Gemm with transB, int8 output):
/// identical to onnxruntime.
#[test]
fn synthetic_qcdq_graph_matches_onnxruntime() {
    assert_eq!(synthetic("synthetic_qcdq"), (0, 0));
}
