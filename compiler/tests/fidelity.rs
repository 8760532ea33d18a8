//! Fidelity against onnxruntime: every quantized fixture model, compiled and run by the
//! reference executor on the 64 fixture images, matches `<model>.expected.npy` (onnxruntime,
//! no graph optimisation): top-1 identical on every sample and at most 1 LSB of the output
//! scale on at most 0.1 % of the output elements. The traced run also checks every tensor
//! range and every accumulator width (the executor errors on overflow), so the range analysis
//! is sound on every fixture input.
//!
//! Known gap: onnxruntime evaluates a QDQ graph in float32. Where the exact result is a
//! rounding tie — a 2×2 average pool re-quantized at its input scale (a window sum ≡ 2 mod 4) —
//! float32 rounding error in `DequantizeLinear`, the pool sum and the division decides the
//! direction, element by element; the plan rounds exact ties to even. With power-of-two scales
//! (the `_p2` and `tiny` QCDQ models) float32 is exact and the outputs agree bit for bit; with
//! arbitrary scales and such pools ([`FLOAT_TIES`]) the test holds the measured bounds, so any
//! further drift fails.
#![allow(clippy::unwrap_used)]

mod common;

use heq_runtime::plan::Op;
use heq_runtime::reference;
use ndarray::{Array2, Array4, Axis};
use ndarray_npy::read_npy;

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
}

/// Models whose onnxruntime outputs depend on float32 tie-breaking: (name, minimum identical
/// top-1 of 64, maximum LSB).
const FLOAT_TIES: &[(&str, usize, i64)] = &[
    ("cnn_avg_qcdq_w4a4", 64, 5),
    ("cnn_avg_qdq_u8s8", 64, 1),
    ("cnn_avg_qdq_w4", 64, 1),
];

#[test]
fn every_quantized_model_matches_onnxruntime() {
    let dir = common::models_dir();
    let x: Array4<f32> = read_npy(dir.join("inputs/digits_test_x.npy")).unwrap();
    let mut failures = Vec::new();
    for path in common::quantized_models() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected: Array2<f32> = read_npy(dir.join(format!("{stem}.expected.npy"))).unwrap();
        let plan = heqc::compile_path(&path)
            .unwrap_or_else(|e| panic!("{stem}: {e}"))
            .selection
            .plan;
        let out = &plan.public.tensors[plan.public.output.tensor.0 as usize];
        let (scale, zp) = (out.scale, out.zero_point);
        let (mut max_lsb, mut differing, mut top1_agree, mut total) =
            (0i64, 0usize, 0usize, 0usize);
        let mut acc_seen: std::collections::BTreeMap<u32, (i64, i64)> = Default::default();
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
            let y = &trace.tensors[plan.public.output.tensor.0 as usize];
            let ours = reference::dequantize_output(&plan.public, y);
            let want: Vec<f32> = expected.row(i).to_vec();
            for (v, w) in y.iter().zip(&want) {
                let wv = (w / scale).round() as i64;
                let d = (v - wv).abs();
                max_lsb = max_lsb.max(d);
                differing += usize::from(d != 0);
                total += 1;
            }
            top1_agree += usize::from(argmax(&ours) == argmax(&want));
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
        let pct = 100.0 * differing as f64 / total as f64;
        println!(
            "{stem}: top-1 {top1_agree}/{} identical, max {max_lsb} LSB, {differing}/{total} elements differ ({pct:.3} %), output zp {zp}",
            x.len_of(Axis(0))
        );
        let (min_top1, max_allowed, max_pct) = match FLOAT_TIES.iter().find(|(n, _, _)| *n == stem)
        {
            Some((_, t, m)) => (*t, *m, 100.0),
            None => (x.len_of(Axis(0)), 1, 0.1),
        };
        if top1_agree < min_top1 || max_lsb > max_allowed || pct > max_pct {
            failures.push(format!("{stem}: top-1 {top1_agree}/64, max {max_lsb} LSB, {differing}/{total} ({pct:.3} %) differ"));
        }
    }
    assert!(
        failures.is_empty(),
        "fidelity failures:\n{}",
        failures.join("\n")
    );
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
