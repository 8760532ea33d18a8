//! Mixed precision (`heqc compile --calibration`), networks and compute profiles
//! (`--net custom`, `--profile`): the library and the binary.
#![allow(clippy::unwrap_used)]

mod common;

use heq_runtime::cost::compute::ComputeProfile;
use heq_runtime::npy::NpyArray;
use heq_runtime::plan::{Plan, PrecisionBudget, PrecisionRecord};
use heqc::{CompileOptions, Error, Strategy, precision};
use std::path::PathBuf;
use std::process::{Command, Output};

fn digits() -> NpyArray<f32> {
    heq_runtime::npy::read_f32(&common::models_dir().join("inputs/digits_test_x.npy")).unwrap()
}

fn model(name: &str) -> PathBuf {
    common::models_dir().join(format!("{name}.onnx"))
}

fn mixed(name: &str, p: precision::Options) -> heqc::Result<Plan> {
    let mut o = CompileOptions::new(Strategy::default());
    o.precision = Some(p);
    heqc::compile_path_opts(&model(name), &o).map(|c| c.selection.plan)
}

fn record(plan: &Plan) -> PrecisionRecord {
    plan.public.protocol.precision.clone().unwrap()
}

fn bytes(plan: &Plan) -> u64 {
    heqc::optimize::predict(&plan.public)
        .unwrap()
        .channel()
        .total_bytes()
}

#[test]
fn output_error_budget_is_met_and_saves_bytes() {
    let original = heqc::compile_path(&model("cnn_avg_qdq_u8s8"))
        .unwrap()
        .selection
        .plan;
    assert_eq!(original.public.protocol.precision, None);
    let budget = PrecisionBudget::OutputError(3.0);
    let plan = mixed(
        "cnn_avg_qdq_u8s8",
        precision::Options::new(digits(), budget),
    )
    .unwrap();
    let r = record(&plan);
    assert_eq!((r.samples, r.budget), (64, budget));
    assert!(r.max_output_error <= 3.0, "{r:?}");
    assert!(!r.lowered.is_empty(), "{r:?}");
    assert!(bytes(&plan) < bytes(&original));
    for l in &r.lowered {
        assert!(l.weight_bits.1 < l.weight_bits.0 || l.output_bits.1 < l.output_bits.0);
    }
}

#[test]
fn zero_budget_keeps_the_outputs() {
    let budget = PrecisionBudget::OutputError(0.0);
    let r = record(
        &mixed(
            "cnn_avg_qdq_u8s8",
            precision::Options::new(digits(), budget),
        )
        .unwrap(),
    );
    assert_eq!((r.max_output_error, r.top1_agreement), (0.0, 1.0));
}

#[test]
fn keep_first_last_spares_the_ends() {
    let mut p = precision::Options::new(digits(), PrecisionBudget::AccuracyDrop(1.0));
    p.keep_ends = true;
    let plan = mixed("resnet_qdq_u8s8", p).unwrap();
    let r = record(&plan);
    let linear: Vec<&str> = plan
        .public
        .layers
        .iter()
        .filter(|l| l.op.is_linear())
        .map(|l| l.name.as_str())
        .collect();
    let names: Vec<&str> = r.lowered.iter().map(|l| l.name.as_str()).collect();
    assert!(!names.is_empty());
    assert!(!names.contains(&linear[0]) && !names.contains(linear.last().unwrap()));
}

/// The calibration error of mixed precision on `cnn_avg_qdq_u8s8` (input `[1, 16, 16]`).
fn calibration_error(shape: &[usize], data: Vec<f32>) -> String {
    let budget = PrecisionBudget::AccuracyDrop(0.1);
    let samples = NpyArray {
        shape: shape.to_vec(),
        data,
    };
    let err = mixed("cnn_avg_qdq_u8s8", precision::Options::new(samples, budget)).unwrap_err();
    assert!(matches!(err, Error::Calibration { .. }), "{err}");
    err.to_string()
}

#[test]
fn calibration_data_of_the_wrong_shape_is_an_error() {
    let wrong = "not [N, 1, 16, 16] (N >= 1 samples of the model input)";
    // 512 values are two samples' worth, but not of the input's shape.
    let err = calibration_error(&[2, 16, 16], vec![0.5; 512]);
    assert_eq!(
        err,
        format!("calibration: the data has shape [2, 16, 16], {wrong}")
    );
    let err = calibration_error(&[2, 1, 16, 8, 2], vec![0.5; 512]);
    assert!(err.contains("shape [2, 1, 16, 8, 2], not [N"), "{err}");
    let err = calibration_error(&[0, 1, 16, 16], vec![]);
    assert!(
        err.contains(&format!("shape [0, 1, 16, 16], {wrong}")),
        "{err}"
    );
    let err = calibration_error(&[2, 1, 16, 16], vec![0.5; 300]);
    assert_eq!(
        err,
        "calibration: 300 values do not fill the shape [2, 1, 16, 16]"
    );
}

#[test]
fn non_finite_calibration_data_is_an_error() {
    let mut data = vec![0.5; 512];
    data[300] = f32::NEG_INFINITY;
    assert_eq!(
        calibration_error(&[2, 1, 16, 16], data),
        "calibration: element 300 is -inf; calibration data must be finite"
    );
}

#[test]
fn compute_profile_scales_the_predicted_times() {
    let plan = heqc::compile_path(&model("cnn_avg_qdq_u8s8"))
        .unwrap()
        .selection
        .plan;
    let mut slow = ComputeProfile::builtin();
    for h in &mut slow.he {
        h.encrypt_ms *= 2.0;
        h.absorb_ms *= 2.0;
        h.product_ms *= 2.0;
        h.sanitize_ms *= 2.0;
        h.switch_ms *= 2.0;
        h.decrypt_ms *= 2.0;
    }
    slow.protocol_ns_per_rot *= 2.0;
    slow.silent_ns_per_rot *= 2.0;
    for r in &mut slow.silent_ns_per_rot_by_batch {
        r.ns_per_rot *= 2.0;
    }
    let timing = |profile| heqc::explain::Timing {
        net: heqc::optimize::Net::custom(100.0, 10.0),
        profile,
    };
    let a = heqc::explain::report_with(&plan, &timing(ComputeProfile::builtin()));
    let b = heqc::explain::report_with(&plan, &timing(slow));
    let (ta, tb) = (a.totals.time.unwrap(), b.totals.time.unwrap());
    assert!(
        (tb.compute_ms - 2.0 * ta.compute_ms).abs() < 0.01,
        "{ta:?} {tb:?}"
    );
    assert_eq!(ta.network_ms, tb.network_ms);
    assert_eq!(a.network, "custom (100 Mbps, 10 ms RTT)");
    // Per layer: compute + network = total, and the layers add up to the total compute.
    let compute: f64 = a.layers.iter().map(|l| l.time.unwrap().compute_ms).sum();
    assert!((compute - ta.compute_ms).abs() < 0.01);
    for l in &a.layers {
        let t = l.time.unwrap();
        assert!((t.compute_ms + t.network_ms - t.total_ms).abs() < 0.002);
    }
    assert!(a.totals.baseline_time.is_some());
}

fn heqc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heqc"))
        .args(args)
        .output()
        .unwrap()
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("heqc-precision-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn cli_mixed_precision_and_networks() {
    let (m, x) = (
        model("cnn_avg_qdq_u8s8"),
        common::models_dir().join("inputs/digits_test_x.npy"),
    );
    let plan = temp("mixed.plan");
    let out = heqc(&[
        "compile",
        m.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
        "--calibration",
        x.to_str().unwrap(),
        "--max-accuracy-drop",
        "0.05",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains(
            "mixed precision (top-1 drop <= 0.05) on 64 calibration samples: top-1 agreement"
        ),
        "{s}"
    );
    let out = heqc(&[
        "explain",
        plan.to_str().unwrap(),
        "--net",
        "custom",
        "--bandwidth",
        "100",
        "--rtt",
        "10",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("predicted time on custom (100 Mbps, 10 ms RTT)"),
        "{s}"
    );
    assert!(s.contains("cheetah baseline time: "), "{s}");
    assert!(s.contains("mixed precision (top-1 drop <= 0.05)"), "{s}");
    // A profile from a file.
    let profile = temp("profile.json");
    std::fs::write(&profile, ComputeProfile::builtin().to_json()).unwrap();
    let out = heqc(&[
        "explain",
        plan.to_str().unwrap(),
        "--net",
        "wan",
        "--profile",
        profile.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Usage errors.
    let fails = |args: &[&str], needle: &str| {
        let out = heqc(args);
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(needle), "{args:?}: {e}");
    };
    let (m, p, x) = (
        m.to_str().unwrap(),
        plan.to_str().unwrap(),
        x.to_str().unwrap(),
    );
    fails(
        &["compile", m, "-o", p, "--calibration", x],
        "--max-accuracy-drop or --max-output-error",
    );
    fails(
        &["compile", m, "-o", p, "--max-accuracy-drop", "0.1"],
        "--calibration",
    );
    fails(
        &[
            "compile",
            m,
            "-o",
            p,
            "--calibration",
            x,
            "--max-output-error=-1",
        ],
        "non-negative",
    );
    fails(
        &["explain", p, "--net", "custom"],
        "--net custom needs --bandwidth and --rtt",
    );
    fails(
        &[
            "explain",
            p,
            "--net",
            "custom",
            "--bandwidth",
            "0",
            "--rtt",
            "1",
        ],
        "positive",
    );
    fails(
        &["explain", p, "--bandwidth", "10", "--rtt", "1"],
        "go with --net custom",
    );
    fails(&["explain", p, "--profile", m], "profile");
}

#[test]
fn explain_svg_draws_every_layer() {
    let plan = temp("svg.plan");
    let svg = temp("cost.svg");
    let m = model("resnet_qdq_u8s8");
    let out = heqc(&["compile", m.to_str().unwrap(), "-o", plan.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = heqc(&[
        "explain",
        plan.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    let labels: Vec<&str> = text.lines().map(str::trim).collect();
    let plan = heq_runtime::plan::read_plan(&plan).unwrap();
    for l in &plan.public.layers {
        assert!(
            labels.contains(&l.id.to_string().as_str()),
            "no label {}",
            l.id
        );
    }
    for legend in [
        "bytes up",
        "bytes down",
        "baseline up",
        "baseline down",
        "resnet_qdq_u8s8",
    ] {
        assert!(text.contains(legend), "{legend}");
    }
    // Four bars per layer (up and down, plan and baseline), plus background and legend.
    let bars = text.matches("<rect").count();
    assert!(bars >= 4 * plan.public.layers.len(), "{bars} rectangles");
}
