//! Frontend tests on the fixture models: every quantized model compiles, the unsupported one
//! names every unsupported node, damaged files give errors (never panics), and snapshots of the
//! IR text and the explain report.

mod common;

use heqc::Error;

#[test]
fn every_quantized_model_compiles_and_float_models_are_refused() {
    for path in common::all_models() {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        match heqc::compile_path(&path) {
            Ok(c) => {
                assert!(
                    !common::is_float(&path) && stem != "unsupported",
                    "{stem} should not compile"
                );
                assert!(
                    c.selection
                        .plan
                        .public
                        .layers
                        .iter()
                        .any(|l| l.op.is_linear()),
                    "{stem}: no linear layer"
                );
            }
            Err(Error::Unsupported(nodes)) if common::is_float(&path) => {
                assert_eq!(
                    nodes[0].reason.as_deref(),
                    Some("the input is not a dequantized integer tensor"),
                    "{stem}"
                );
            }
            Err(Error::Unsupported(_)) if stem == "unsupported" => {}
            Err(e) => panic!("{stem}: {e}"),
        }
    }
}

#[test]
fn unsupported_nodes_are_reported_together() {
    let e = heqc::compile_path(&common::models_dir().join("unsupported.onnx")).unwrap_err();
    let Error::Unsupported(nodes) = &e else {
        panic!("{e}")
    };
    let names: Vec<_> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.op_type.as_str(), n.domain.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("head_sigmoid", "Sigmoid", "ai.onnx"),
            ("head_softmax", "Softmax", "ai.onnx")
        ]
    );
    // Sigmoid is unknown; Softmax is a client-side operator, but it sits before the reveal
    // (its result is quantized again), so it is refused too.
    assert_eq!(nodes[0].reason, None);
    assert_eq!(
        nodes[1].reason.as_deref(),
        Some(
            "runs on the client after the output is revealed, but its result feeds \
             'logits_QuantizeLinear' (QuantizeLinear), which does not"
        )
    );
    assert_eq!(
        e.to_string(),
        "2 unsupported node(s):\n  ai.onnx:Sigmoid ×1 (head_sigmoid)\n  \
         ai.onnx:Softmax ×1 (head_softmax): runs on the client after the output is revealed, \
         but its result feeds 'logits_QuantizeLinear' (QuantizeLinear), which does not"
    );
}

/// Deterministic xorshift, so that a failing mutation is reproducible.
fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn damaged_models_give_errors_not_panics() {
    for name in [
        "cnn_avg_qdq_u8s8",
        "resnet_qop",
        "cnn_avg_qcdq_w4a4",
        "resnet_qdq_mixed",
    ] {
        let bytes = std::fs::read(common::models_dir().join(format!("{name}.onnx"))).unwrap();
        let mut errors = 0;
        for len in (0..bytes.len()).step_by(bytes.len() / 150 + 1) {
            errors += usize::from(heqc::compile_bytes(&bytes[..len], name, "<truncated>").is_err());
        }
        assert!(errors > 100, "{name}: only {errors} truncations rejected");
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..400 {
            let mut m = bytes.clone();
            for _ in 0..1 + xorshift(&mut seed) % 4 {
                let i = (xorshift(&mut seed) % m.len() as u64) as usize;
                m[i] ^= 1 << (xorshift(&mut seed) % 8);
            }
            // Either outcome is fine; a panic fails the test.
            let _ = heqc::compile_bytes(&m, name, "<mutated>");
        }
    }
}

#[test]
fn not_onnx_is_a_decode_error() {
    let e = heqc::compile_bytes(b"\xff\xff\xff\xff garbage", "x", "x.onnx").unwrap_err();
    assert!(matches!(e, Error::Decode { .. }), "{e}");
}

#[test]
fn snapshots_of_ir_and_explain() {
    for name in ["cnn_avg_qdq_u8s8", "resnet_qdq_mixed", "cnn_avg_qcdq_w4a4"] {
        let c = heqc::compile_path(&common::models_dir().join(format!("{name}.onnx"))).unwrap();
        insta::assert_snapshot!(format!("{name}.ir"), c.ir_text);
        insta::assert_snapshot!(
            format!("{name}.explain"),
            heqc::explain::render_selection(&c.selection, heqc::explain::Format::Text).unwrap()
        );
        insta::assert_yaml_snapshot!(
            format!("{name}.report"),
            heqc::explain::report_selection(&c.selection, &heqc::explain::Timing::default())
        );
    }
}

/// Structural mutations of decoded models (attribute values, initializer dims, node inputs):
/// every one compiles or fails with an error, none panics.
#[test]
fn mutated_graph_structures_give_errors_not_panics() {
    let hostile = [0i64, -1, 1, 2, 3, 7, 1 << 20, i64::MAX, i64::MIN];
    for name in [
        "cnn_avg_qdq_u8s8",
        "resnet_qop",
        "mpdw_qdq_w4",
        "cnn_avg_qcdq_w4a4",
    ] {
        let bytes = std::fs::read(common::models_dir().join(format!("{name}.onnx"))).unwrap();
        let model = heqc::frontend::tensor::decode_model(&bytes, name).unwrap();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..300 {
            let mut m = model.clone();
            let g = m.graph.as_mut().unwrap();
            match xorshift(&mut seed) % 4 {
                0 => {
                    let n = (xorshift(&mut seed) % g.node.len() as u64) as usize;
                    if let Some(a) = g.node[n].attribute.first_mut() {
                        let v = hostile[(xorshift(&mut seed) % hostile.len() as u64) as usize];
                        a.i = v;
                        for x in &mut a.ints {
                            *x = v;
                        }
                    }
                }
                1 => {
                    let t = (xorshift(&mut seed) % g.initializer.len() as u64) as usize;
                    let v = hostile[(xorshift(&mut seed) % hostile.len() as u64) as usize];
                    if let Some(d) = g.initializer[t].dims.first_mut() {
                        *d = v;
                    } else {
                        g.initializer[t].dims.push(v);
                    }
                }
                2 => {
                    let n = (xorshift(&mut seed) % g.node.len() as u64) as usize;
                    let k = (xorshift(&mut seed) % g.node.len() as u64) as usize;
                    if let (Some(a), Some(b)) = (
                        g.node[n].input.first().cloned(),
                        g.node[k].input.last().cloned(),
                    ) {
                        g.node[n].input[0] = b;
                        let last = g.node[k].input.len() - 1;
                        g.node[k].input[last] = a;
                    }
                }
                _ => {
                    let n = (xorshift(&mut seed) % g.node.len() as u64) as usize;
                    g.node.remove(n);
                }
            }
            let _ = heqc::compile_proto(&m, name);
        }
    }
}
