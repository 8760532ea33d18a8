//! The `heqc` binary: compile every quantized model, explain server and client plans in every
//! format, exit codes.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

fn heqc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_heqc"))
        .args(args)
        .output()
        .unwrap()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("heqc-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// ONNX node names of the linear operators of a model.
fn linear_node_names(path: &std::path::Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let m = heqc::frontend::tensor::decode_model(&bytes, "m").unwrap();
    let linear = [
        "Conv",
        "Gemm",
        "MatMul",
        "QLinearConv",
        "QLinearMatMul",
        "QGemm",
        "ConvInteger",
        "MatMulInteger",
    ];
    m.graph
        .unwrap()
        .node
        .iter()
        .filter(|n| linear.contains(&n.op_type.as_str()))
        .map(|n| n.name.clone())
        .collect()
}

#[test]
fn compile_then_explain_every_model() {
    let dir = temp_dir("all");
    for path in common::quantized_models() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let (plan, client) = (
            dir.join(format!("{stem}.bin")),
            dir.join(format!("{stem}.client")),
        );
        let out = heqc(&[
            "compile",
            path.to_str().unwrap(),
            "-o",
            plan.to_str().unwrap(),
            "--client-out",
            client.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{stem}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = String::from_utf8(out.stdout).unwrap();
        assert!(
            summary.starts_with(&format!("{stem}: ")) && summary.contains(" linear), "),
            "{summary}"
        );
        let out = heqc(&["explain", plan.to_str().unwrap(), "--format", "json"]);
        assert!(
            out.status.success(),
            "{stem}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let layers = report["layers"].as_array().unwrap();
        for node in linear_node_names(&path) {
            let row = layers
                .iter()
                .find(|l| l["name"].as_str().unwrap().split('+').any(|n| n == node))
                .unwrap_or_else(|| panic!("{stem}: no layer for node {node}"));
            for key in [
                "weight_bits",
                "acc_bits",
                "acc_bits_naive",
                "output_bits",
                "multiplier_bits",
                "shift",
            ] {
                assert!(!row[key].is_null(), "{stem} {node}: {key} missing");
            }
            assert!(
                row["acc_bits"].as_u64() <= row["acc_bits_naive"].as_u64(),
                "{stem} {node}"
            );
        }
        for format in ["text", "yaml"] {
            let out = heqc(&["explain", client.to_str().unwrap(), "--format", format]);
            assert!(out.status.success(), "{stem} client {format}");
        }
        // The text table fits 120 columns; --wide shows every column, wider.
        let width = |args: &[&str]| {
            let out = heqc(args);
            assert!(out.status.success(), "{stem} {args:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            text.lines().map(|l| l.chars().count()).max().unwrap()
        };
        let plan = plan.to_str().unwrap();
        assert!(width(&["explain", plan]) <= 120, "{stem}");
        assert!(width(&["explain", plan, "--wide"]) > 120, "{stem}");
        let text = String::from_utf8(heqc(&["explain", client.to_str().unwrap()]).stdout).unwrap();
        assert!(
            text.contains("client plan") && text.contains(" - weights, "),
            "{text}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unsupported_model_exits_2_naming_every_node() {
    let dir = temp_dir("unsupported");
    let model = common::models_dir().join("unsupported.onnx");
    let out = heqc(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        dir.join("p.bin").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(
        err.contains("'head_sigmoid' (ai.onnx:Sigmoid)")
            && err.contains("'head_softmax' (ai.onnx:Softmax)"),
        "{err}"
    );
    assert!(!dir.join("p.bin").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn failures_exit_1_and_verbose_prints_phases() {
    let dir = temp_dir("fail");
    let out = heqc(&[
        "compile",
        "/nonexistent/model.onnx",
        "-o",
        dir.join("p.bin").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let out = heqc(&[
        "explain",
        common::models_dir()
            .join("cnn_avg_qop.onnx")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: reading plan ")
            && err.contains("cnn_avg_qop.onnx: not a heqc plan file"),
        "{err}"
    );
    let model = common::models_dir().join("mpdw_qop.onnx");
    let out = heqc(&[
        "-v",
        "compile",
        model.to_str().unwrap(),
        "-o",
        dir.join("p.bin").to_str().unwrap(),
    ]);
    let err = String::from_utf8(out.stderr).unwrap();
    for phase in [
        "phase 1: read",
        "frontend",
        "pass infer_ranges",
        "pass drop_identity",
        "lower",
    ] {
        assert!(err.contains(phase), "{phase} missing in {err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn ir_prints_the_layer_graph() {
    let model = common::models_dir().join("mpdw_qdq_u8s8.onnx");
    let out = heqc(&["ir", model.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, heqc::compile_path(&model).unwrap().ir_text);
    assert!(
        text.lines().any(|l| l.starts_with("l1 maxpool 'pool1'")),
        "{text}"
    );
}

#[test]
fn unwritable_or_clashing_plan_paths_are_usage_errors_before_compiling() {
    let dir = temp_dir("outputs");
    let model = common::models_dir().join("mpdw_qdq_u8s8.onnx");
    let model = model.to_str().unwrap();
    let usage = |args: &[&str], needle: &str| {
        let out = heqc(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err, format!("error: {needle}\n"));
    };
    let plan = dir.join("x.plan");
    let same = dir.join(".").join("x.plan");
    let (plan, same) = (plan.to_str().unwrap(), same.to_str().unwrap());
    usage(
        &["compile", model, "-o", plan, "--client-out", same],
        &format!("-o and --client-out: {plan} and {same} are the same file"),
    );
    let missing = dir.join("missing").join("x.plan");
    let missing = missing.to_str().unwrap();
    let missing_dir = dir.join("missing");
    let missing_dir = missing_dir.display();
    usage(
        &["compile", model, "-o", missing],
        &format!("-o: cannot write {missing}: the directory {missing_dir} does not exist"),
    );
    usage(
        &["compile", model, "-o", plan, "--client-out", missing],
        &format!(
            "--client-out: cannot write {missing}: the directory {missing_dir} does not exist"
        ),
    );
    let folder = dir.to_str().unwrap();
    usage(
        &["compile", model, "-o", folder],
        &format!("-o: cannot write {folder}: it is a directory"),
    );
    let entries = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(entries, 0, "nothing written");
    let out = heqc(&["compile", model, "-o", plan]);
    assert!(out.status.success());
    let svg = dir.join("missing").join("c.svg");
    let svg = svg.to_str().unwrap();
    usage(
        &["explain", plan, "--svg", svg],
        &format!("--svg: cannot write {svg}: the directory {missing_dir} does not exist"),
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn calibration_data_must_be_samples_of_the_input_shape() {
    let dir = temp_dir("calibration");
    let model = common::models_dir().join("cnn_avg_qdq_u8s8.onnx");
    // Two samples' worth of values (the input is [1, 16, 16]) in the wrong shape.
    let x = dir.join("x.npy");
    ndarray_npy::write_npy(&x, &ndarray::Array3::<f32>::zeros((2, 16, 16))).unwrap();
    let out = heqc(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        dir.join("p.plan").to_str().unwrap(),
        "--calibration",
        x.to_str().unwrap(),
        "--max-output-error",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(
            "calibration: the data has shape [2, 16, 16], not [N, 1, 16, 16] (N >= 1 samples of the model input)"
        ),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_missing_profile_field_is_named_once() {
    let dir = temp_dir("profile");
    let profile = dir.join("p.json");
    std::fs::write(&profile, "{}").unwrap();
    let model = common::models_dir().join("mpdw_qdq_u8s8.onnx");
    let out = heqc(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        dir.join("p.plan").to_str().unwrap(),
        "--profile",
        profile.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        format!(
            "error: profile {}: not a compute profile: missing field `machine` at line 1 column 2\n",
            profile.display()
        )
    );
    std::fs::remove_dir_all(dir).unwrap();
}
