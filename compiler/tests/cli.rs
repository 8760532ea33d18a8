//! The `heqc` binary: compile every quantized model, explain server and client plans in every
//! format, exit codes.
#![allow(clippy::unwrap_used)]

mod common;

use heq_bench::onnx::{ActQuant, ConvAttrs, GraphBuilder, QuantWeights};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_shape_proto::dimension;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, OperatorSetIdProto, type_proto};

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

/// `heqc compile model -o plan --client-out client`, which must succeed; returns its stdout.
fn compile_pair(model: &Path, plan: &Path, client: &Path) -> String {
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
        "{}: {}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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
        let summary = compile_pair(&path, &plan, &client);
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
    assert_eq!(
        err,
        "error: 2 unsupported node(s):\n  ai.onnx:Sigmoid ×1 (head_sigmoid)\n  \
         ai.onnx:Softmax ×1 (head_softmax): runs on the client after the output is revealed, \
         but its result feeds 'logits_QuantizeLinear' (QuantizeLinear), which does not\n"
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

/// A small QDQ model built in the test (onnxruntime's patterns, `heq_bench::onnx`): input
/// `[N, 1, 4, 4]` → Conv(1→2, 3×3, pad 1) → Flatten → Gemm(32→3), ai.onnx opset 13.
fn small_model() -> ModelProto {
    let mut b = GraphBuilder::new();
    let x = b.input("input", &[1, 4, 4], ActQuant::relu_range(8, 1.0));
    let ramp = |n: usize, div: f32| -> Vec<f32> {
        (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / div).collect()
    };
    let conv = ConvAttrs {
        kernel: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    };
    let w = QuantWeights::quantize(vec![2, 1, 3, 3], 8, &ramp(18, 10.0));
    let c = b.conv(
        "conv",
        &x,
        &w,
        &[0.1, -0.1],
        conv,
        ActQuant::relu_range(8, 4.0),
    );
    let f = b.flatten("flatten", &c);
    let w = QuantWeights::quantize(vec![3, 32], 8, &ramp(96, 20.0));
    let y = b.gemm("fc", &f, &w, &[0.0; 3], ActQuant::signed(8, 8.0));
    b.finish("small", &y, 13)
}

/// Writes `model` to a temporary file, runs `heqc compile` on it; returns the exit code and
/// stderr.
fn compile_model(tag: &str, model: &ModelProto) -> (Option<i32>, String) {
    let dir = temp_dir(tag);
    let path = dir.join("model.onnx");
    std::fs::write(&path, prost::Message::encode_to_vec(model)).unwrap();
    let out = heqc(&[
        "compile",
        path.to_str().unwrap(),
        "-o",
        dir.join("p.bin").to_str().unwrap(),
    ]);
    assert!(!dir.join("p.bin").exists() || out.status.success());
    std::fs::remove_dir_all(dir).unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

fn nodes(model: &mut ModelProto) -> &mut Vec<NodeProto> {
    &mut model.graph.as_mut().unwrap().node
}

/// An attribute of integers.
fn ints_attr(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}

/// A node of one input and one output.
fn node(domain: &str, op_type: &str, name: &str, input: &str, output: &str) -> NodeProto {
    NodeProto {
        domain: domain.into(),
        op_type: op_type.into(),
        name: name.into(),
        input: vec![input.into()],
        output: vec![output.into()],
        ..Default::default()
    }
}

/// Sets a float initializer (a scale) of `model`.
fn set_scale(model: &mut ModelProto, name: &str, value: f32) {
    let t = model
        .graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap();
    t.float_data = vec![value];
}

#[test]
fn the_small_model_compiles() {
    assert_eq!(
        compile_model("small", &small_model()),
        (Some(0), String::new())
    );
}

#[test]
fn many_unsupported_nodes_give_one_line_per_operator() {
    let mut m = small_model();
    let mut prev = "fc_output_DequantizeLinear_Output".to_string();
    let mut chain = |domain: &str, op: &str, name: String, nodes: &mut Vec<NodeProto>| {
        nodes.push(node(domain, op, &name, &prev, &format!("{name}_out")));
        prev = format!("{name}_out");
    };
    let nodes = nodes(&mut m);
    for i in 0..40 {
        chain("", "Sigmoid", format!("sig{i}"), nodes);
    }
    chain("", "Softmax", "head_softmax".into(), nodes);
    chain("com.example", "Gelu", "gelu".into(), nodes);
    chain("", "Sigmoid", "last_sig".into(), nodes);
    let (code, err) = compile_model("groups", &m);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "error: 43 unsupported node(s):\n  \
         ai.onnx:Sigmoid ×41 (sig0, sig1, sig2, …)\n  \
         ai.onnx:Softmax ×1 (head_softmax): runs on the client after the output is revealed, \
         but its result feeds 'gelu' (Gelu), which does not\n  \
         com.example:Gelu ×1 (gelu)\n"
    );
}

#[test]
fn unsupported_configurations_group_by_reason_and_are_all_reported() {
    // Two dilated max pools and one with an indices output, side branches of the conv output.
    let mut m = small_model();
    let nodes = nodes(&mut m);
    for (name, dilated) in [("pool_a", true), ("pool_b", false), ("pool_c", true)] {
        let mut n = node(
            "",
            "MaxPool",
            name,
            "conv_output_DequantizeLinear_Output",
            name,
        );
        n.attribute.push(ints_attr("kernel_shape", vec![2, 2]));
        if dilated {
            n.attribute.push(ints_attr("dilations", vec![2, 2]));
        } else {
            n.output.push(format!("{name}_indices"));
        }
        nodes.push(n);
    }
    let (code, err) = compile_model("configs", &m);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "error: 3 unsupported node(s):\n  \
         ai.onnx:MaxPool ×2 (pool_a, pool_c): dilation\n  \
         ai.onnx:MaxPool ×1 (pool_b): MaxPool indices output\n"
    );
}

#[test]
fn symbolic_dimensions_exit_2() {
    let mut m = small_model();
    let input = &mut m.graph.as_mut().unwrap().input[0];
    let Some(type_proto::Value::TensorType(t)) = input.r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!("the input is a tensor")
    };
    t.shape.as_mut().unwrap().dim[2].value = Some(dimension::Value::DimParam("H".into()));
    assert_eq!(
        compile_model("symbolic", &m),
        (
            Some(2),
            "error: unsupported model: graph input 'input': dimension 2 is symbolic ('H'); heqc \
             compiles a fixed sample shape (only the batch dimension may be symbolic)\n"
                .into()
        )
    );
}

#[test]
fn out_of_range_scales_exit_2() {
    // Output scales 10^12 and 10^-30 for logits of a few units, an input scale of 10^-12.
    for (scale, value, node) in [
        ("fc_output_scale", 1e12, "fc_output_QuantizeLinear"),
        ("fc_output_scale", 1e-30, "fc_output_QuantizeLinear"),
        ("input_scale", 1e-12, "conv_output_QuantizeLinear"),
    ] {
        let mut m = small_model();
        set_scale(&mut m, scale, value);
        let (code, err) = compile_model("scales", &m);
        assert_eq!(code, Some(2), "{scale} = {value}: {err}");
        let prefix = format!(
            "error: 1 unsupported node(s):\n  ai.onnx:QuantizeLinear ×1 ({node}): scales out of \
             range: the requantization multiplier"
        );
        assert!(err.starts_with(&prefix), "{scale} = {value}: {err}");
    }
}

#[test]
fn opsets_newer_than_known_exit_2() {
    for (domain, version, text) in [
        (
            "",
            29,
            "ai.onnx opset 29 is newer than the newest heqc knows (28); export the model with opset 28 or older",
        ),
        (
            "com.microsoft",
            2,
            "com.microsoft opset 2 is newer than the newest heqc knows (1); export the model with opset 1 or older",
        ),
    ] {
        let mut m = small_model();
        m.opset_import.push(OperatorSetIdProto {
            domain: domain.into(),
            version,
        });
        m.opset_import
            .retain(|o| o.domain != domain || o.version == version);
        assert_eq!(
            compile_model("opset", &m),
            (
                Some(2),
                format!("error: unsupported model: opset import: {text}\n")
            )
        );
    }
}

#[test]
fn explain_shows_the_epilogue() {
    let dir = temp_dir("epilogue");
    let model = common::models_dir().join("mpdw_qdq_u8s8_topk.onnx");
    let (plan, client) = (dir.join("p.bin"), dir.join("p.client"));
    compile_pair(&model, &plan, &client);
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

#[test]
fn ot_batch_bounds_the_batches_and_is_checked() {
    let dir = temp_dir("ot-batch");
    let model = common::models_dir().join("cnn_avg_qdq_u8s8.onnx");
    let plan = dir.join("p.bin");
    let compile = |batch: &str| {
        heqc(&[
            "compile",
            model.to_str().unwrap(),
            "-o",
            plan.to_str().unwrap(),
            "--ot-batch",
            batch,
        ])
    };
    assert!(compile("65536").status.success());
    let plan = heq_runtime::plan::read_plan(&plan).unwrap();
    assert_eq!(plan.public.protocol.ot_batch_rots, 65536);
    // Its ~2^17.5 ROTs per direction need at least three such batches.
    let cost = heqc::optimize::predict(&plan.public).unwrap();
    assert!(cost.ot_batches.len() >= 3, "{:?}", cost.ot_batches);
    assert!(
        cost.ot_batches
            .iter()
            .all(|b| b.server_rots.max(b.client_rots) <= 65536)
    );
    for bad in ["0", "16777217", "many"] {
        let out = compile(bad);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("expected a number of ROTs from 1 to 16777216"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn faithful_truncation_needs_calibration_and_explain_marks_its_layers() {
    let dir = temp_dir("faithful");
    let model = common::models_dir().join("cnn_avg_qdq_u8s8.onnx");
    let plan = dir.join("p.plan");
    let out = heqc(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
        "--truncation",
        "faithful",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--truncation faithful needs --calibration data"),
        "{err}"
    );
    let x = common::models_dir().join("inputs/digits_test_x.npy");
    let out = heqc(&[
        "compile",
        model.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
        "--calibration",
        x.to_str().unwrap(),
        "--max-accuracy-drop",
        "0.02",
        "--truncation",
        "faithful",
        "--keep-bits",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("with faithful truncations"), "{stdout}");
    let out = heqc(&["explain", plan.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("truncation: faithful"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--chunk-rots` sets the plan's chunk bound (and bounds its OT batch), priced by the plan's
/// cost; a bound below `--ot-batch` or outside `1..=2^24` is refused.
#[test]
fn chunk_rots_sets_the_chunks_and_is_checked() {
    let dir = temp_dir("chunk-rots");
    let model = common::models_dir().join("cnn_avg_qdq_u8s8.onnx");
    let plan = dir.join("p.bin");
    let compile = |extra: &[&str]| {
        let mut args = vec![
            "compile",
            model.to_str().unwrap(),
            "-o",
            plan.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        heqc(&args)
    };
    assert!(compile(&["--chunk-rots", "4096"]).status.success());
    let read = heq_runtime::plan::read_plan(&plan).unwrap();
    assert_eq!(
        (
            read.public.protocol.ot_batch_rots,
            read.public.protocol.chunk_rots
        ),
        (4096, 4096)
    );
    let cost = heqc::optimize::predict(&read.public).unwrap();
    assert!(
        cost.layers
            .iter()
            .any(|l| l.stages.iter().any(|s| s.chunks() > 1))
    );
    assert!(
        compile(&["--ot-batch", "1024", "--chunk-rots", "8192"])
            .status
            .success()
    );
    let read = heq_runtime::plan::read_plan(&plan).unwrap();
    assert_eq!(
        (
            read.public.protocol.ot_batch_rots,
            read.public.protocol.chunk_rots
        ),
        (1024, 8192)
    );
    let out = compile(&["--ot-batch", "8192", "--chunk-rots", "1024"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--chunk-rots 1024 is below the OT batch of --ot-batch 8192"),
        "{err}"
    );
    for bad in ["0", "16777217", "many"] {
        let out = compile(&["--chunk-rots", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("expected a number of ROTs from 1 to 16777216"),
            "{bad}: {err}"
        );
    }
}
