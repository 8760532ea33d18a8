//! Mixed precision end to end: a plan whose bit widths heqc lowered on calibration data runs
//! through both parties bit-exact with the reference executor, with the predicted traffic, and
//! its recorded agreement is what the reference executor measures against the original plan.

use heq_runtime::plan::{OtBackend, PrecisionBudget};
use heq_runtime::{npy, reference};
use heq_tests::{check_model, compile, init_rayon, models_dir};
use heqc::{CompileOptions, Strategy, precision};

#[test]
fn mixed_precision_plan_runs_bit_exact() {
    init_rayon();
    let x = npy::read_f32(&models_dir().join("inputs/digits_test_x.npy")).expect("fixture");
    let mut options = CompileOptions::new(Strategy::default());
    options.precision = Some(precision::Options::new(
        x.clone(),
        PrecisionBudget::AccuracyDrop(0.02),
    ));
    let path = models_dir().join("resnet_qdq_u8s8.onnx");
    let mixed = heqc::compile_path_opts(&path, &options)
        .expect("compiles")
        .selection
        .plan;
    let original = compile("resnet_qdq_u8s8").expect("compiles");
    let record = mixed.public.protocol.precision.clone().expect("a record");
    assert!(!record.lowered.is_empty(), "some layer is lowered");
    assert_eq!(record.samples, 64);
    // The recorded agreement is the measured one, within the budget.
    let len: usize = original.public.input.shape.iter().product();
    let top1 = |plan: &heq_runtime::plan::Plan, s: &[f32]| {
        let y = reference::run(plan, &reference::quantize_input(&plan.public, s)).expect("runs");
        let y = reference::dequantize_output(&plan.public, &y);
        let best = y.iter().copied().fold(f32::MIN, f32::max);
        (y.iter().position(|&v| v == best).expect("an output"), y)
    };
    let (mut agree, mut err) = (0usize, 0.0f64);
    for s in x.data.chunks(len) {
        let ((a, ya), (b, yb)) = (top1(&original, s), top1(&mixed, s));
        agree += usize::from(a == b);
        for (p, q) in ya.iter().zip(&yb) {
            err = err.max(f64::from((p - q).abs()));
        }
    }
    assert_eq!(record.top1_agreement, agree as f64 / 64.0);
    assert_eq!(record.max_output_error, err);
    assert!(record.top1_agreement >= 0.98);
    // Fewer predicted bytes than the model's own widths.
    let bytes = |p: &heq_runtime::plan::Plan| {
        heqc::optimize::predict(&p.public)
            .expect("priced")
            .channel()
            .total_bytes()
    };
    assert!(bytes(&mixed) < bytes(&original));
    // Both parties: output == reference, measured == predicted bytes.
    check_model(&mixed, 2, OtBackend::Silent).expect("two-party run");
}
