//! The reveal and the client-side epilogue in the frontend, on the fixture models and on edits
//! of them: what a float head reveals, where a float bias goes, which steps the client runs and
//! what is refused.
#![allow(clippy::unwrap_used)]

mod common;

use heq_runtime::plan::{ChannelScales, EpilogueOp, EpilogueStep, Op, Plan, TopKOutput};
use heqc::Error;
use heqc::frontend::tensor::{ConstData, decode, decode_model};
use tract_onnx::pb::{ModelProto, NodeProto};

fn model(name: &str) -> ModelProto {
    let bytes = std::fs::read(common::models_dir().join(format!("{name}.onnx"))).unwrap();
    decode_model(&bytes, name).unwrap()
}

fn compile(m: &ModelProto) -> heqc::Result<Plan> {
    Ok(heqc::compile_proto(m, "edited")?.selection.plan)
}

/// The float values of initializer `name`.
fn floats(m: &ModelProto, name: &str) -> Vec<f32> {
    let t = m
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name == name)
        .unwrap();
    match decode(t).unwrap().data {
        ConstData::Float(v) => v,
        ConstData::Int { .. } => panic!("{name} is not a float initializer"),
    }
}

fn steps(plan: &Plan) -> Vec<(&str, &EpilogueOp)> {
    plan.public
        .epilogue
        .steps
        .iter()
        .map(|EpilogueStep { name, op }| (name.as_str(), op))
        .collect()
}

/// The float head reveals the last Gemm's accumulator (no requantization), which the client
/// dequantizes by `s_x · s_w[c]`.
#[test]
fn a_float_head_reveals_its_accumulator() {
    let m = model("cnn_avg_qcdq_floathead");
    let plan = compile(&m).unwrap();
    let p = &plan.public;
    let last = p.layers.last().unwrap();
    let Op::MatMul(fc) = &last.op else {
        panic!("{:?}", last.op)
    };
    assert!(fc.requant.is_none());
    assert_eq!(p.output.tensor, last.output);
    assert_eq!(p.output.name, "logits");
    let s_x = p.tensors[last.inputs[0].0 as usize].scale;
    let s_w = floats(&m, "fc.weight.scale");
    assert_eq!(
        p.epilogue.dequantize,
        Some(ChannelScales {
            axis: 0,
            scales: s_w.iter().map(|s| s_x * s).collect(),
        })
    );
    assert!(p.epilogue.steps.is_empty());
}

/// A float bias added after the head is the server's: folded into the accumulator (rounded to
/// accumulator units), never in the client's plan; the scalar Mul runs on the client.
#[test]
fn a_float_bias_stays_with_the_server() {
    let m = model("cnn_avg_qcdq_floathead_ops");
    let plan = compile(&m).unwrap();
    let p = &plan.public;
    assert_eq!(steps(&plan), [("temperature_mul", &EpilogueOp::Mul(0.5))]);
    let last = p.layers.last().unwrap();
    assert_eq!(last.name, "fc+fc_bias_add");
    let scales = &p.epilogue.dequantize.as_ref().unwrap().scales;
    let bias = &plan.weights.as_ref().unwrap().get(last.id).unwrap().bias;
    let want: Vec<i64> = floats(&m, "fc.bias")
        .iter()
        .zip(scales)
        .map(|(b, s)| (f64::from(*b) / f64::from(*s)).round() as i64)
        .collect();
    assert_eq!(bias, &want);
    assert!(want.iter().any(|&b| b != 0));
}

#[test]
fn trailing_operators_become_epilogue_steps() {
    let cases: [(&str, EpilogueOp); 3] = [
        ("mpdw_qdq_u8s8_softmax", EpilogueOp::Softmax { axis: 0 }),
        (
            "mpdw_qdq_u8s8_argmax",
            EpilogueOp::ArgMax {
                axis: 0,
                keep_dims: false,
                last_index: false,
            },
        ),
        (
            "mpdw_qdq_u8s8_topk",
            EpilogueOp::TopK {
                axis: 0,
                k: 3,
                largest: true,
                output: TopKOutput::Indices,
            },
        ),
    ];
    let base = compile(&model("mpdw_qdq_u8s8")).unwrap();
    for (name, op) in cases {
        let plan = compile(&model(name)).unwrap();
        let ops: Vec<&EpilogueOp> = steps(&plan).into_iter().map(|(_, op)| op).collect();
        assert_eq!(ops, [&op], "{name}");
        assert!(plan.public.epilogue.dequantize.is_none(), "{name}");
        // The two-party part is the base model's, layer for layer.
        assert_eq!(plan.public.layers, base.public.layers, "{name}");
        assert_eq!(plan.weights, base.weights, "{name}");
    }
}

/// The node producing `output` in a graph.
fn producer<'a>(m: &'a mut ModelProto, output: &str) -> &'a mut NodeProto {
    m.graph
        .as_mut()
        .unwrap()
        .node
        .iter_mut()
        .find(|n| n.output.iter().any(|o| o == output))
        .unwrap()
}

fn unsupported_reason(e: Error) -> String {
    match e {
        Error::Unsupported(nodes) => nodes[0].reason.clone().unwrap_or_default(),
        e => panic!("not an unsupported-model error: {e}"),
    }
}

#[test]
fn a_per_element_constant_after_the_reveal_is_refused() {
    let mut m = model("cnn_avg_qcdq_floathead_ops");
    let g = m.graph.as_mut().unwrap();
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.name == "temperature")
        .unwrap();
    let values: Vec<f32> = (1..=10).map(|i| i as f32 / 8.0).collect();
    t.dims = vec![10];
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.float_data.clear();
    let reason = unsupported_reason(compile(&m).unwrap_err());
    assert!(reason.contains("per-element constant"), "{reason}");
}

/// A Softmax whose result flows back into the network is refused before anything is built.
#[test]
fn a_client_side_operator_in_the_middle_is_refused() {
    let mut m = model("mpdw_qdq_u8s8_softmax");
    // Quantize the Softmax's output again (with the parameters of another QuantizeLinear).
    let g = m.graph.as_mut().unwrap();
    let softmax = g.node.iter().position(|n| n.op_type == "Softmax").unwrap();
    let quantize = g
        .node
        .iter()
        .find(|n| n.op_type == "QuantizeLinear" && n.input.len() == 3)
        .unwrap()
        .clone();
    let mut requantize = quantize;
    requantize.name = "requantize_probs".into();
    requantize.input[0] = g.node[softmax].output[0].clone();
    requantize.output = vec!["probs_q".into()];
    g.node.push(requantize);
    g.output[0].name = "probs_q".into();
    let e = compile(&m).unwrap_err();
    let Error::Unsupported(nodes) = &e else {
        panic!("{e}")
    };
    assert_eq!(nodes.len(), 1, "{e}");
    assert_eq!(nodes[0].name, "head_softmax");
    assert!(
        nodes[0]
            .reason
            .as_deref()
            .unwrap()
            .ends_with("feeds 'requantize_probs' (QuantizeLinear), which does not"),
        "{e}"
    );
}

/// A ReLU after a float head would need a requantization: the output is refused with the
/// reason.
#[test]
fn a_float_output_after_an_activation_is_refused() {
    let mut m = model("cnn_avg_qcdq_floathead");
    producer(&mut m, "logits").output[0] = "fc_out".into();
    let g = m.graph.as_mut().unwrap();
    g.node.push(NodeProto {
        name: "head_relu".into(),
        op_type: "Relu".into(),
        input: vec!["fc_out".into()],
        output: vec!["logits".into()],
        ..NodeProto::default()
    });
    let e = compile(&m).unwrap_err();
    assert!(
        e.to_string()
            .contains("a float output after a fused ReLU/Clip needs a requantization"),
        "{e}"
    );
}
