//! Faithful truncation end to end: heqc keeps faithful requantizations where the calibration
//! data allows, records the agreement it measured with simulated share splits, and the plan
//! runs through both parties with exactly the predicted traffic; with one faithful layer, the
//! two-party output is within 1 of the reference executor's exact value.

use heq_runtime::party::{DEFAULT_KERNEL_MEMORY, sim};
use heq_runtime::plan::{Op, OtBackend, Plan, PrecisionBudget, Rounding};
use heq_runtime::{npy, reference};
use heq_tests::{check_rows, compile, digits_inputs, init_rayon, models_dir};
use heqc::{CompileOptions, Strategy, precision};

const MODEL: &str = "resnet_qdq_u8s8";

/// The tie rule of a layer's requantization, mutably.
fn rounding_mut(op: &mut Op) -> Option<&mut Rounding> {
    match op {
        Op::Conv(l) => l.requant.as_mut().map(|r| &mut r.rounding),
        Op::MatMul(l) => l.requant.as_mut().map(|r| &mut r.rounding),
        Op::Affine(l) => l.requant.as_mut().map(|r| &mut r.rounding),
        Op::Rescale(r) => Some(&mut r.rounding),
        Op::AvgPool(a) => Some(&mut a.requant.rounding),
        Op::Add(a) => Some(&mut a.rounding),
        Op::MaxPool(_) | Op::Concat | Op::Reshape => None,
    }
}

fn faithful_layers(plan: &Plan) -> usize {
    let faithful = |op: &Op| match op {
        Op::Add(a) => a.rounding.is_faithful(),
        op => op.requant().is_some_and(|r| r.rounding.is_faithful()),
    };
    plan.public
        .layers
        .iter()
        .filter(|l| faithful(&l.op))
        .count()
}

fn predicted_bytes(plan: &Plan) -> u64 {
    heqc::optimize::predict(&plan.public)
        .expect("priced")
        .channel()
        .total_bytes()
}

/// `model` compiled with faithful truncation within `budget` on the digits samples, bit widths
/// kept.
fn compile_faithful(model: &str, budget: PrecisionBudget) -> Plan {
    let x = npy::read_f32(&models_dir().join("inputs/digits_test_x.npy")).expect("fixture");
    let mut options = CompileOptions::new(Strategy::default());
    let mut p = precision::Options::new(x, budget);
    p.faithful = true;
    p.widths.clear();
    options.precision = Some(p);
    let path = models_dir().join(format!("{model}.onnx"));
    heqc::compile_path_opts(&path, &options)
        .expect("compiles")
        .selection
        .plan
}

#[test]
fn faithful_plan_records_its_agreement_and_runs_with_the_predicted_traffic() {
    init_rayon();
    let x = npy::read_f32(&models_dir().join("inputs/digits_test_x.npy")).expect("fixture");
    let plan = compile_faithful(MODEL, PrecisionBudget::AccuracyDrop(0.05));
    let exact = compile(MODEL).expect("compiles");
    assert!(
        faithful_layers(&plan) > 0,
        "some requantization is faithful"
    );
    assert!(predicted_bytes(&plan) < predicted_bytes(&exact));
    // The recorded agreement is the one the simulated share splits give against the exact plan.
    let record = plan.public.protocol.precision.clone().expect("a record");
    assert_eq!(record.faithful_seed, Some(precision::FAITHFUL_SEED));
    assert!(record.lowered.is_empty());
    let len: usize = exact.public.input.shape.iter().product();
    let top1 = |y: &[f32]| {
        let best = y.iter().copied().fold(f32::MIN, f32::max);
        y.iter().position(|&v| v == best).expect("an output")
    };
    let mut agree = 0;
    for (s, i) in x.data.chunks(len).zip(0u64..) {
        let q = reference::quantize_input(&exact.public, s);
        let want = reference::run(&exact, &q).expect("runs");
        let seed = precision::FAITHFUL_SEED.wrapping_add(i);
        let got = reference::run_simulated(&plan, &q, seed).expect("runs");
        assert_eq!(
            reference::run(&plan, &q).expect("runs"),
            want,
            "run is exact"
        );
        agree += usize::from(
            top1(&reference::dequantize_output(&exact.public, &want))
                == top1(&reference::dequantize_output(&plan.public, &got)),
        );
    }
    assert_eq!(record.top1_agreement, agree as f64 / 64.0);
    assert!(record.top1_agreement >= 0.95);
    // Both parties: every layer's measured traffic is the predicted one.
    let inputs = digits_inputs(&plan, 2).expect("inputs");
    for run in sim::run(&plan, &inputs, OtBackend::Silent, DEFAULT_KERNEL_MEMORY, 7)
        .expect("two-party run")
    {
        check_rows(&run.server).expect("server traffic");
        check_rows(&run.client).expect("client traffic");
    }
}

#[test]
fn one_faithful_layer_is_within_one_of_the_reference() {
    init_rayon();
    let mut plan = compile(MODEL).expect("compiles");
    let exact = predicted_bytes(&plan);
    // The last requantization (the output's) faithful, every other exact.
    let last = plan
        .public
        .layers
        .iter_mut()
        .rev()
        .find_map(|l| rounding_mut(&mut l.op))
        .expect("a requantization");
    *last = Rounding::Faithful;
    assert!(predicted_bytes(&plan) < exact);
    let inputs = digits_inputs(&plan, 4).expect("inputs");
    let mut differ = 0;
    for (run, input) in sim::run(&plan, &inputs, OtBackend::Silent, DEFAULT_KERNEL_MEMORY, 7)
        .expect("two-party run")
        .iter()
        .zip(&inputs)
    {
        check_rows(&run.server).expect("server traffic");
        check_rows(&run.client).expect("client traffic");
        let want = reference::run(&plan, input).expect("reference");
        for (&y, &w) in run.output.iter().zip(&want) {
            assert!((y - w).abs() <= 1, "{y} against {w}");
            differ += usize::from(y != w);
        }
    }
    assert!(
        differ > 0,
        "the faithful layer rounded some value the other way"
    );
}

#[test]
fn a_tight_budget_keeps_faithful_truncation_on_the_last_layers_only() {
    // Every requantization faithful changes one top-1 of 64 on this model; with no drop allowed
    // the bisection keeps the last one (the classifier's) only.
    let plan = compile_faithful("cnn_avg_qcdq_w4a4", PrecisionBudget::AccuracyDrop(0.0));
    assert_eq!(faithful_layers(&plan), 1);
    let last = plan.public.layers.last().expect("a layer");
    assert!(last.op.requant().is_some_and(|r| r.rounding.is_faithful()));
    let record = plan.public.protocol.precision.expect("a record");
    assert_eq!(record.top1_agreement, 1.0);
    assert_eq!(record.faithful_seed, Some(precision::FAITHFUL_SEED));
}
