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
        // A float head's last linear layer outputs its accumulator: no requantization.
        let float_head = report["epilogue"][0]["op"] == "dequantize";
        let nodes = linear_node_names(&path);
        for (i, node) in nodes.iter().enumerate() {
            let row = layers
                .iter()
                .find(|l| l["name"].as_str().unwrap().split('+').any(|n| n == node))
                .unwrap_or_else(|| panic!("{stem}: no layer for node {node}"));
            let requantizes = !(float_head && i + 1 == nodes.len());
            for key in ["weight_bits", "acc_bits", "acc_bits_naive", "output_bits"] {
                assert!(!row[key].is_null(), "{stem} {node}: {key} missing");
            }
            for key in ["multiplier_bits", "shift"] {
                assert_eq!(row[key].is_null(), !requantizes, "{stem} {node}: {key}");
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a heqc plan file"));
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
fn explain_shows_the_epilogue() {
    let dir = temp_dir("epilogue");
    let model = common::models_dir().join("mpdw_qdq_u8s8_topk.onnx");
    let (plan, client) = (dir.join("p.bin"), dir.join("p.client"));
    let out = heqc(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
        "--client-out",
        client.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The client plan carries the epilogue: it is public.
    let text = String::from_utf8(heqc(&["explain", client.to_str().unwrap()]).stdout).unwrap();
    assert!(
        text.contains("output top3_indices [3] i64 (client epilogue) from the revealed ")
            && text.contains("epilogue (on the client, in plaintext, after the reveal):"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("topk"))
        .unwrap();
    assert!(
        row.contains("head_topk")
            && row.contains("axis 0, k 3, largest, indices")
            && row.ends_with("-> [3] i64"),
        "{row}"
    );
    let out = heqc(&["explain", plan.to_str().unwrap(), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["epilogue"],
        serde_json::json!([{
            "name": "head_topk",
            "op": "topk",
            "detail": "axis 0, k 3, largest, indices",
            "output": [3],
            "element": "i64"
        }])
    );
    std::fs::remove_dir_all(dir).unwrap();
}
