//! Requantization compression changes no value: every bundled quantized model compiled with
//! compression (the default) and with the literal multipliers (`compress_requant: false`) gives
//! bit-identical tensors, every one of them, in the reference executor, on the 64 fixture
//! images, on random inputs over the whole input range and on the two constant extremes. The
//! reference executor also fails on a tie in a requantization the plan declares tie-free, so
//! this checks the re-derived tie rules too. And compression never lengthens a shift, and
//! shortens some on every model family.
#![allow(clippy::unwrap_used)]

mod common;

use heq_runtime::plan::{Op, Plan};
use heq_runtime::reference;
use heqc::{CompileOptions, Strategy};
use ndarray::{Array4, Axis};
use ndarray_npy::read_npy;

fn compile(path: &std::path::Path, compress_requant: bool) -> Plan {
    let mut options = CompileOptions::new(Strategy::default());
    options.compress_requant = compress_requant;
    heqc::compile_path_opts(path, &options)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .selection
        .plan
}

/// Every layer's shift (`None` for a layer without requantization).
fn shifts(plan: &Plan) -> Vec<Option<u32>> {
    plan.public
        .layers
        .iter()
        .map(|l| match &l.op {
            Op::Add(a) => Some(a.shift),
            op => op.requant().map(|r| r.shift),
        })
        .collect()
}

/// The fixture images, random inputs over the input range and both constant extremes, as
/// centred inputs of `plan`.
fn inputs(plan: &Plan) -> Vec<Vec<i64>> {
    let x: Array4<f32> = read_npy(common::models_dir().join("inputs/digits_test_x.npy")).unwrap();
    let mut all: Vec<Vec<i64>> = x
        .axis_iter(Axis(0))
        .map(|s| reference::quantize_input(&plan.public, &s.iter().copied().collect::<Vec<_>>()))
        .collect();
    let input = &plan.public.tensors[plan.public.input.tensor.0 as usize];
    let (lo, hi) = input.range;
    let len = all[0].len();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..32 {
        all.push(
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    lo + (state % (hi - lo + 1) as u64) as i64
                })
                .collect(),
        );
    }
    all.push(vec![lo; len]);
    all.push(vec![hi; len]);
    all
}

#[test]
fn compressed_plans_compute_the_same_tensors_as_literal_ones() {
    let mut shortened_total = 0;
    for path in common::quantized_models() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let compressed = compile(&path, true);
        let literal = compile(&path, false);
        let (ks, kl) = (shifts(&compressed), shifts(&literal));
        let mut shortened = 0;
        for (i, (c, l)) in ks.iter().zip(&kl).enumerate() {
            assert!(c <= l, "{stem} l{i}: shift {c:?} > literal {l:?}");
            shortened += u32::from(c < l);
        }
        shortened_total += shortened;
        for (n, input) in inputs(&literal).iter().enumerate() {
            let want = reference::run_traced(&literal, input)
                .unwrap_or_else(|e| panic!("{stem} input {n}, literal: {e}"));
            let got = reference::run_traced(&compressed, input)
                .unwrap_or_else(|e| panic!("{stem} input {n}, compressed: {e}"));
            for (t, (g, w)) in got.tensors.iter().zip(&want.tensors).enumerate() {
                assert_eq!(g, w, "{stem} input {n}: tensor t{t} differs");
            }
        }
        println!("{stem}: {shortened} of {} shifts shortened", ks.len());
    }
    assert!(
        shortened_total > 20,
        "only {shortened_total} shifts shortened"
    );
}
