//! `heq-run --mode plain` (and `--mode sim`) end to end: the real binary in a fresh directory, against plans and
//! `.npy` files this test writes (by hand, independently of the runtime's own `.npy` reader).
#![cfg(feature = "cli")]
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

use heq_runtime::plan::{
    EpilogueOp, EpilogueStep, IntType, Op, Plan, Requant, Rounding, TopKOutput, write_plan,
};
use heq_runtime::reference::testutil::{PlanBuilder, every_op_plan};
use ndarray::ArrayD;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty directory for one test.
fn test_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("heq-run-cli-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn heq_run(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_heq-run"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("runs heq-run")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An `.npy` v1.0 file: `descr`, C order, `shape`, raw little-endian `data`.
fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| format!("{d},")).collect();
    let mut h = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}), }}",
        dims.join(" ")
    );
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn write_f32(path: &Path, shape: &[usize], x: &[f32]) {
    let data: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, npy_bytes("<f4", shape, &data)).unwrap();
}

/// Input `[2, 2]` as i8 with zero point 1 and scale 0.5; output `y = round(3v / 2)` clamped to
/// the i8 values of zero point −3 and scale 0.25 (`v ∈ [−125, 130]`).
fn rescale_plan() -> Plan {
    let mut b = PlanBuilder::new(&[2, 2], (-129, 126));
    let t = b.tensor_mut(b.input());
    (t.ty, t.zero_point, t.scale) = (
        IntType {
            bits: 8,
            signed: true,
        },
        1,
        0.5,
    );
    let op = Op::Rescale(Requant {
        multipliers: vec![3],
        shift: 1,
        clamp: (-125, 130),
        rounding: Rounding::HalfEven,
    });
    let y = b.layer(op, &[b.input()], &[2, 2], (-125, 130));
    let t = b.tensor_mut(y);
    (t.ty, t.zero_point, t.scale) = (
        IntType {
            bits: 8,
            signed: true,
        },
        -3,
        0.25,
    );
    b.build(y).unwrap()
}

// x = [1, −0.75, 2.3, 100]: x/0.5 = 2, −1.5 → −2 (half to even), 4.6 → 5, 200; q = +1 → 3, −1,
// 6, 201 → 127 (saturated); v = q − 1 = 2, −2, 5, 126. 3v / 2 = 3, −3, 7.5 → 8, 189 → 130.
// Float: 0.25 · v = 0.75, −0.75, 2, 32.5. Raw: q = v − 3 = 0, −6, 5, 127.
const X: [f32; 4] = [1.0, -0.75, 2.3, 100.0];
const Y: [f32; 4] = [0.75, -0.75, 2.0, 32.5];
const Q: [i32; 4] = [0, -6, 5, 127];

fn setup(name: &str, plan: &Plan) -> PathBuf {
    let dir = test_dir(name);
    write_plan(plan, &dir.join("plan.bin")).unwrap();
    dir
}

const RUN: [&str; 8] = [
    "--plan", "plan.bin", "--mode", "plain", "--input", "x.npy", "--output", "y.npy",
];

#[test]
fn one_sample_dequantized() {
    let dir = setup("one", &rescale_plan());
    write_f32(&dir.join("x.npy"), &[2, 2], &X);
    let out = heq_run(&dir, &RUN);
    assert!(out.status.success(), "{}", stderr(&out));
    let y: ArrayD<f32> = ndarray_npy::read_npy(dir.join("y.npy")).unwrap();
    assert_eq!(y.shape(), [2, 2]);
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), Y);
}

#[test]
fn sim_mode_equals_plain_and_prints_the_traffic() {
    let dir = setup("sim", &rescale_plan());
    write_f32(&dir.join("x.npy"), &[2, 2], &X);
    let mut args = RUN.to_vec();
    args[3] = "sim";
    args.extend(["--seed", "1", "--report", "r.json"]);
    let out = heq_run(&dir, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let y: ArrayD<f32> = ndarray_npy::read_npy(dir.join("y.npy")).unwrap();
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), Y);
    let err = stderr(&out);
    assert!(err.contains("rescale") && err.contains("reveal"), "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(report["role"], "sim");
    assert_eq!(report["samples"], 1);
    assert_eq!(report["matches_prediction"], true);
    let rows: Vec<&str> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(rows, ["setup", "rescale", "reveal"]);
    assert_eq!(report["total"]["measured"], report["total"]["predicted"]);
    assert_eq!(report["ot_extension"]["source"], "predicted");
}

/// [`rescale_plan`] with a client-side epilogue of `ops`.
fn epilogue_plan(ops: Vec<EpilogueOp>) -> Plan {
    let mut plan = rescale_plan();
    plan.public.epilogue.steps = ops
        .into_iter()
        .map(|op| EpilogueStep {
            name: op.kind().into(),
            op,
        })
        .collect();
    plan
}

/// Two samples, X and −X, as float32 `[2, 2, 2]`. The outputs before the epilogue are Y and
/// 0.25 · (−3, 3, −8, −125) = (−0.75, 0.75, −2, −31.25) (see `batch_raw_float64`).
fn write_two_samples(dir: &Path) {
    let x: Vec<f32> = X.iter().copied().chain(X.iter().map(|v| -v)).collect();
    write_f32(&dir.join("x.npy"), &[2, 2, 2], &x);
}

#[test]
fn epilogue_indices_are_int64() {
    let plan = epilogue_plan(vec![
        EpilogueOp::Mul(2.0),
        EpilogueOp::Reshape(vec![4]),
        EpilogueOp::TopK {
            axis: 0,
            k: 2,
            largest: true,
            output: TopKOutput::Indices,
        },
    ]);
    let dir = setup("topk", &plan);
    write_two_samples(&dir);
    let out = heq_run(&dir, &RUN);
    assert!(out.status.success(), "{}", stderr(&out));
    let y: ArrayD<i64> = ndarray_npy::read_npy(dir.join("y.npy")).unwrap();
    assert_eq!(y.shape(), [2, 2]);
    // 2Y = (1.5, −1.5, 4, 65): 3, 2; 2·(−0.75, 0.75, −2, −31.25): 1, 0.
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), [3, 2, 1, 0]);
    // --raw: the revealed integers, before the epilogue.
    let mut args = RUN.to_vec();
    args.push("--raw");
    let out = heq_run(&dir, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let q: ArrayD<i32> = ndarray_npy::read_npy(dir.join("y.npy")).unwrap();
    assert_eq!(q.shape(), [2, 2, 2]);
    assert_eq!(q.iter().take(4).copied().collect::<Vec<_>>(), Q);
}

#[test]
fn sim_applies_the_same_epilogue_as_plain() {
    let plan = epilogue_plan(vec![EpilogueOp::Add(-1.0), EpilogueOp::Softmax { axis: 1 }]);
    let dir = setup("softmax", &plan);
    write_two_samples(&dir);
    let out = heq_run(&dir, &RUN);
    assert!(out.status.success(), "{}", stderr(&out));
    let plain = std::fs::read(dir.join("y.npy")).unwrap();
    let y: ArrayD<f32> = ndarray_npy::read_npy(dir.join("y.npy")).unwrap();
    assert_eq!(y.shape(), [2, 2, 2]);
    // Softmax of the rows (0.75, −0.75) and (2, 32.5), less 1 each: the shift cancels.
    let row0 = 1.0 / (1.0 + (-1.5f32).exp());
    assert!((y[[0, 0, 0]] - row0).abs() < 1e-6 && (y[[0, 0, 1]] - (1.0 - row0)).abs() < 1e-6);
    assert!(y[[0, 1, 1]] > 0.999_999);
    let mut args = RUN.to_vec();
    args[3] = "sim";
    args.extend(["--seed", "3"]);
    let out = heq_run(&dir, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.join("y.npy")).unwrap(), plain);
}

#[test]
fn batch_raw_float64() {
    let dir = setup("batch", &rescale_plan());
    // Three samples: X, zeros, −X. Zeros: q = 1, v = 0 → (0 + 1) >> 1 = 0 → q = −3.
    // −X / 0.5 = −2, 1.5 → 2, −4.6 → −5, −200; q = +1 → −1, 3, −4, −128 (saturated);
    // v = −2, 2, −5, −129; 3v / 2 = −3, 3, −7.5 → −8 (tie to even), −193.5 → −125;
    // q = v − 3 = −6, 0, −11, −128.
    let x: Vec<f64> = X
        .iter()
        .map(|&v| f64::from(v))
        .chain([0.0; 4])
        .chain(X.iter().map(|&v| -f64::from(v)))
        .collect();
    let data: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("x.npy"), npy_bytes("<f8", &[3, 2, 2], &data)).unwrap();
    let mut args = RUN.to_vec();
    args.push("--raw");
    let out = heq_run(&dir, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let y: ArrayD<i32> = ndarray_npy::read_npy(dir.join("y.npy")).unwrap();
    assert_eq!(y.shape(), [3, 2, 2]);
    let mut want = Q.to_vec();
    want.extend([-3; 4]);
    want.extend([-6, 0, -11, -128]);
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), want);
}

#[test]
fn every_op_plan_runs_in_batches() {
    let dir = setup("every-op", &every_op_plan());
    write_f32(&dir.join("x.npy"), &[2, 2, 4, 4], &[0.0; 64]);
    let out = heq_run(&dir, &RUN);
    assert!(out.status.success(), "{}", stderr(&out));
    // Zero input: the output is 0 (see the reference unit test on every_op_plan).
    let y: ArrayD<f32> = ndarray_npy::read_npy(dir.join("y.npy")).unwrap();
    assert_eq!(y.shape(), [2, 1, 3]);
    assert!(y.iter().all(|&v| v == 0.0));
}

/// Runs `args` expecting failure with `code`, a message containing `needle`, and no output
/// file or temporary file left behind (only the plan and the input in `dir`).
fn fails(dir: &Path, args: &[&str], code: i32, needle: &str) {
    let out = heq_run(dir, args);
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    // One message; clap's usage errors have their own form, heq-run's start with its name.
    let messages = err.lines().filter(|l| l.starts_with("heq-run: ")).count();
    assert!(messages == 1 || (code == 2 && messages == 0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert!(
        files.iter().all(|f| f == "plan.bin" || f == "x.npy"),
        "{files:?}"
    );
}

#[test]
fn wrong_dtype_and_shape() {
    let dir = setup("dtype", &rescale_plan());
    std::fs::write(dir.join("x.npy"), npy_bytes("<i4", &[2, 2], &[0; 16])).unwrap();
    fails(
        &dir,
        &RUN,
        1,
        "heq-run: reading the input: unsupported dtype '<i4': heq-run reads float32 or float64 .npy files",
    );
    write_f32(&dir.join("x.npy"), &[4], &X);
    fails(
        &dir,
        &RUN,
        1,
        "heq-run: input x.npy: shape [4] is neither the plan's input shape [2, 2] nor [N, 2, 2]",
    );
    std::fs::write(dir.join("x.npy"), b"garbage").unwrap();
    fails(
        &dir,
        &RUN,
        1,
        "heq-run: reading the input: not an .npy file (bad magic)",
    );
    write_f32(&dir.join("x.npy"), &[2, 2], &[0.0, f32::NAN, 0.0, 0.0]);
    fails(
        &dir,
        &RUN,
        1,
        "heq-run: input x.npy: element 1 is NaN; inputs must be finite numbers",
    );
    // ±inf would be clamped to the extreme quantized values: rejected like NaN.
    write_f32(&dir.join("x.npy"), &[2, 2], &[0.0, 1.0, f32::INFINITY, 0.0]);
    fails(
        &dir,
        &RUN,
        1,
        "heq-run: input x.npy: element 2 is inf; inputs must be finite numbers",
    );
    write_f32(
        &dir.join("x.npy"),
        &[2, 2],
        &[f32::NEG_INFINITY, 1.0, 0.0, 0.0],
    );
    fails(
        &dir,
        &RUN,
        1,
        "heq-run: input x.npy: element 0 is -inf; inputs must be finite numbers",
    );
}

#[test]
fn missing_and_corrupt_files() {
    let dir = setup("missing", &rescale_plan());
    fails(
        &dir,
        &RUN,
        1,
        "heq-run: reading the input: x.npy: No such file or directory",
    );
    write_f32(&dir.join("x.npy"), &[2, 2], &X);
    let mut bytes = std::fs::read(dir.join("plan.bin")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(dir.join("plan.bin"), &bytes).unwrap();
    fails(
        &dir,
        &RUN,
        1,
        "heq-run: reading plan plan.bin: corrupt plan file: content hash mismatch",
    );
    std::fs::remove_file(dir.join("plan.bin")).unwrap();
    fails(
        &dir,
        &RUN,
        1,
        "heq-run: reading plan plan.bin: No such file or directory",
    );
}

#[test]
fn client_plan_and_range_violation_are_run_errors() {
    let dir = setup("client", &every_op_plan().to_client());
    write_f32(&dir.join("x.npy"), &[2, 4, 4], &[0.0; 32]);
    fails(
        &dir,
        &RUN,
        1,
        "heq-run: sample 0: layer l0 needs the server's weights, but this plan has none",
    );
    // The input range of rescale_plan ends at v = 126; a plan that promises [−1, 1] is broken
    // for X[0] (v = 2).
    let mut plan = rescale_plan();
    plan.public.tensors[0].range = (-1, 1);
    write_plan(&plan, &dir.join("plan.bin")).unwrap();
    write_f32(&dir.join("x.npy"), &[2, 2], &X);
    fails(
        &dir,
        &RUN,
        1,
        "heq-run: sample 0: tensor t0: value 2 outside its declared range [-1, 1]",
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = test_dir("usage");
    fails(&dir, &[], 2, "--plan <FILE>");
    fails(
        &dir,
        &[
            "--plan", "p", "--mode", "bogus", "--input", "x", "--output", "y",
        ],
        2,
        "invalid value 'bogus'",
    );
    fails(
        &dir,
        &[
            "--plan",
            "p",
            "--role",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--sessions",
            "0",
        ],
        2,
        "invalid value '0' for '--sessions <K>'",
    );
    let out = heq_run(&dir, &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--raw"));
}

/// `args` with `value` after the option `name` (replaced or appended).
fn with<S: AsRef<str>>(args: &[S], name: &str, value: &str) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
    match v.iter().position(|a| a == name) {
        Some(i) => v[i + 1] = value.to_string(),
        None => v.extend([name.to_string(), value.to_string()]),
    }
    v
}

#[test]
fn unwritable_outputs_are_usage_errors_before_any_work() {
    let dir = setup("unwritable", &rescale_plan());
    write_f32(&dir.join("x.npy"), &[2, 2], &X);
    let run = |args: Vec<String>, needle: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&dir, &args, 2, needle);
    };
    run(
        with(&RUN, "--output", "missing_dir/y.npy"),
        "heq-run: --output: cannot write missing_dir/y.npy: the directory missing_dir does not exist",
    );
    run(
        with(
            &with(&RUN, "--mode", "sim"),
            "--report",
            "missing_dir/r.json",
        ),
        "heq-run: --report: cannot write missing_dir/r.json: the directory missing_dir does not exist",
    );
    run(
        with(&RUN, "--output", "x.npy/y.npy"),
        "heq-run: --output: cannot write x.npy/y.npy: x.npy is not a directory",
    );
    run(
        with(&RUN, "--output", "."),
        "heq-run: --output: cannot write .: it is a directory",
    );
    run(
        with(&RUN, "--report", "./y.npy"),
        "heq-run: --output and --report: y.npy and ./y.npy are the same file",
    );
    run(
        vec![
            "calibrate".into(),
            "--out".into(),
            "missing_dir/p.json".into(),
        ],
        "heq-run: --out: cannot write missing_dir/p.json: the directory missing_dir does not exist",
    );
}

#[test]
fn a_client_checks_its_output_before_connecting() {
    let dir = setup("client-output", &rescale_plan().to_client());
    write_f32(&dir.join("x.npy"), &[2, 2], &X);
    // Nothing listens on the discard port: a client that connected first would fail with a
    // connection error (exit code 1) after the timeout instead.
    let args = [
        "--plan",
        "plan.bin",
        "--role",
        "client",
        "--connect",
        "127.0.0.1:9",
        "--timeout",
        "30",
        "--input",
        "x.npy",
        "--output",
        "missing_dir/y.npy",
    ];
    let start = std::time::Instant::now();
    fails(
        &dir,
        &args,
        2,
        "heq-run: --output: cannot write missing_dir/y.npy: the directory missing_dir does not exist",
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}
