//! The IR verifier and the pass manager on deliberately broken layer graphs.
//!
//! A small valid graph holds one layer of every kind; each test breaks one invariant of
//! `heqc::ir::verify` (in the order its module doc lists them) and checks that the verifier reports
//! exactly that violation, and one test breaks several at once to check that every violation is
//! gathered, not just the first. The pass manager tests check that a pass leaving the IR broken,
//! or failing, stops the pipeline with an error that names the pass.

use heq_runtime::plan::{
    AddSpec, AffineShape, AvgPoolSpec, ConvShape, IntType, MatMulShape, PoolShape, Rounding,
};
use heqc::Error;
use heqc::ir::verify::verify;
use heqc::ir::{
    Layer, LayerGraph, LayerOp, Linear, LinearShape, Port, Requant, TensorId, TensorInfo,
};
use heqc::passes::{InferRanges, Pass, PassManager};
use petgraph::stable_graph::NodeIndex;
use std::cell::Cell;
use std::rc::Rc;

const I8: IntType = IntType {
    bits: 8,
    signed: true,
};
const I8_CLAMP: (i64, i64) = (-128, 127);

/// An 8-bit tensor of one sample's `shape`.
fn tensor(name: &str, shape: &[usize]) -> TensorInfo {
    TensorInfo::new(name, shape.to_vec(), I8, 0, 1.0)
}

/// A requantization to 8 bits with one multiplier per channel.
fn requant(channels: usize) -> Requant {
    Requant {
        multipliers: vec![3; channels],
        shift: 2,
        clamp: I8_CLAMP,
        rounding: Rounding::HalfEven,
    }
}

/// A 2×2 window with stride 2 over `channels` channels of 4×4.
fn pool(channels: usize) -> PoolShape {
    PoolShape {
        channels,
        in_hw: [4, 4],
        kernel: [2, 2],
        stride: [2, 2],
        pads: [0; 4],
    }
}

/// A valid graph with one layer of every kind (tensor ids in brackets):
///
/// ```text
/// x[0] ─ conv[1] ─ add[2] ─┬─ maxpool[3] ─┬─ concat[5] ─ affine[6] ─ rescale[7] ─ reshape[8] ─ fc[9]
///   └──────────────┘       └─ avgpool[4] ─┘
/// ```
fn valid_graph() -> LayerGraph {
    let mut g = LayerGraph::new("every_op");
    let x = g.add_tensor(tensor("x", &[2, 4, 4]));
    let conv_out = g.add_tensor(tensor("conv_out", &[2, 4, 4]));
    let add_out = g.add_tensor(tensor("add_out", &[2, 4, 4]));
    let max_out = g.add_tensor(tensor("max_out", &[2, 2, 2]));
    let avg_out = g.add_tensor(tensor("avg_out", &[2, 2, 2]));
    let cat_out = g.add_tensor(tensor("cat_out", &[4, 2, 2]));
    let affine_out = g.add_tensor(tensor("affine_out", &[4, 2, 2]));
    let rescale_out = g.add_tensor(tensor("rescale_out", &[4, 2, 2]));
    let flat = g.add_tensor(tensor("flat", &[16]));
    let y = g.add_tensor(tensor("y", &[3]));
    g.input = Port {
        name: "x".into(),
        tensor: x,
    };
    g.output = Port {
        name: "y".into(),
        tensor: y,
    };
    let layers = [
        (
            "conv",
            LayerOp::Linear(Linear {
                shape: LinearShape::Conv(ConvShape {
                    in_channels: 2,
                    in_hw: [4, 4],
                    out_channels: 2,
                    kernel: [3, 3],
                    stride: [1, 1],
                    pads: [1; 4],
                    groups: 1,
                }),
                weight_ty: I8,
                weights: vec![1; 2 * 2 * 3 * 3],
                bias: vec![0; 2],
                requant: Some(requant(2)),
                acc: None,
            }),
            vec![x],
            conv_out,
        ),
        (
            "add",
            LayerOp::Add(AddSpec {
                m_a: 1,
                m_b: 1,
                shift: 1,
                clamp: I8_CLAMP,
                rounding: Rounding::HalfEven,
            }),
            vec![conv_out, x],
            add_out,
        ),
        ("maxpool", LayerOp::MaxPool(pool(2)), vec![add_out], max_out),
        (
            "avgpool",
            LayerOp::AvgPool(AvgPoolSpec {
                pool: pool(2),
                count_include_pad: false,
                requant: Requant {
                    multipliers: vec![4, 2, 1, 1],
                    shift: 2,
                    clamp: I8_CLAMP,
                    rounding: Rounding::HalfEven,
                },
                ceil_pads: [0, 0],
            }),
            vec![add_out],
            avg_out,
        ),
        ("concat", LayerOp::Concat, vec![max_out, avg_out], cat_out),
        (
            "affine",
            LayerOp::Linear(Linear {
                shape: LinearShape::Affine(AffineShape {
                    channels: 4,
                    per_channel: 4,
                }),
                weight_ty: I8,
                weights: vec![1; 4],
                bias: vec![0; 4],
                requant: Some(requant(4)),
                acc: None,
            }),
            vec![cat_out],
            affine_out,
        ),
        (
            "rescale",
            LayerOp::Rescale(Requant {
                multipliers: vec![3],
                shift: 2,
                clamp: I8_CLAMP,
                rounding: Rounding::HalfEven,
            }),
            vec![affine_out],
            rescale_out,
        ),
        ("reshape", LayerOp::Reshape, vec![rescale_out], flat),
        (
            "fc",
            LayerOp::Linear(Linear {
                shape: LinearShape::MatMul(MatMulShape {
                    rows: 1,
                    inner: 16,
                    cols: 3,
                }),
                weight_ty: I8,
                weights: vec![1; 16 * 3],
                bias: vec![0; 3],
                requant: None,
                acc: None,
            }),
            vec![flat],
            y,
        ),
    ];
    for (name, op, inputs, output) in layers {
        g.add_layer(Layer {
            name: name.into(),
            op,
            inputs,
            output,
        });
    }
    g
}

/// The node of the layer called `name`.
fn node(g: &LayerGraph, name: &str) -> NodeIndex {
    let order = g.order().expect("the graph is acyclic");
    order
        .into_iter()
        .find(|&n| g.layer(n).name == name)
        .unwrap_or_else(|| panic!("no layer '{name}'"))
}

/// The layer called `name`, to break in place.
fn layer<'g>(g: &'g mut LayerGraph, name: &str) -> &'g mut Layer {
    let n = node(g, name);
    g.layer_mut(n)
}

#[test]
fn the_valid_graph_has_no_violation_and_survives_the_standard_pipeline() {
    let mut g = valid_graph();
    assert_eq!(verify(&g), Vec::<String>::new());
    let mut pm = PassManager::standard();
    pm.run(&mut g).unwrap();
    let passes: Vec<_> = pm.timings.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        passes,
        [
            "infer_ranges",
            "drop_identity",
            "infer_ranges",
            "prove_no_ties"
        ]
    );
}

#[test]
fn a_cycle_is_reported_alone() {
    let mut g = valid_graph();
    // The convolution now reads the classifier's output, which depends on the convolution.
    layer(&mut g, "conv").inputs = vec![TensorId(9)];
    g.rewire();
    assert_eq!(verify(&g), ["the layer graph has a cycle"]);
}

#[test]
fn a_layer_naming_a_missing_tensor() {
    let mut g = valid_graph();
    layer(&mut g, "maxpool").inputs = vec![TensorId(99)];
    layer(&mut g, "rescale").output = TensorId(42);
    g.rewire();
    assert_eq!(
        verify(&g),
        [
            "'maxpool' (maxpool): refers to a missing tensor",
            "'rescale' (rescale): refers to a missing tensor",
            // The rescale's old output is now produced by nobody.
            "'reshape' (reshape): input t7 has no producer",
        ]
    );
}

#[test]
fn a_port_naming_a_missing_tensor() {
    let mut g = valid_graph();
    g.output.tensor = TensorId(99);
    assert_eq!(verify(&g), ["output t99 is never computed"]);
    let mut g = valid_graph();
    g.input.tensor = TensorId(99);
    let violations = verify(&g);
    assert_eq!(violations[0], "input t99 is not a tensor of the graph");
}

#[test]
fn a_layer_input_without_producer() {
    let mut g = valid_graph();
    let orphan = g.add_tensor(tensor("orphan", &[2, 4, 4]));
    layer(&mut g, "add").inputs[1] = orphan;
    g.rewire();
    assert_eq!(verify(&g), ["'add' (add): input t10 has no producer"]);
}

#[test]
fn a_tensor_produced_twice() {
    let mut g = valid_graph();
    let fc = layer(&mut g, "fc").clone();
    g.add_layer(Layer {
        name: "fc_again".into(),
        ..fc
    });
    assert_eq!(
        verify(&g),
        ["'fc_again' (matmul): output t9 is produced twice"]
    );
}

#[test]
fn a_layer_writing_the_graph_input() {
    let mut g = valid_graph();
    // `add_layer` links the new layer to its input's producer only: the edges to the readers of
    // the graph input, which would close a cycle, are not drawn.
    let rescale = layer(&mut g, "rescale").op.clone();
    g.add_layer(Layer {
        name: "overwrite".into(),
        op: rescale,
        inputs: vec![TensorId(2)],
        output: TensorId(0),
    });
    assert_eq!(
        verify(&g),
        ["'overwrite' (rescale): output t0 is produced twice"]
    );
}

#[test]
fn the_graph_output_never_computed() {
    let mut g = valid_graph();
    let orphan = g.add_tensor(tensor("orphan", &[3]));
    g.output.tensor = orphan;
    assert_eq!(verify(&g), ["output t10 is never computed"]);
    // The graph input is a valid output (an empty model would compute it).
    g.output.tensor = g.input.tensor;
    assert_eq!(verify(&g), Vec::<String>::new());
}

#[test]
fn a_linear_layer_with_the_wrong_number_of_weights_or_biases() {
    let mut g = valid_graph();
    let LayerOp::Linear(conv) = &mut layer(&mut g, "conv").op else {
        unreachable!("the conv layer is a convolution")
    };
    conv.weights.pop();
    let LayerOp::Linear(fc) = &mut layer(&mut g, "fc").op else {
        unreachable!("the fc layer is a matrix product")
    };
    fc.bias.push(0);
    assert_eq!(
        verify(&g),
        [
            "'conv' (conv): 35 weights and 2 biases for 2 channels",
            "'fc' (matmul): 48 weights and 4 biases for 3 channels",
        ]
    );
}

#[test]
fn a_requantization_without_one_multiplier_per_output_channel() {
    let mut g = valid_graph();
    let LayerOp::Linear(affine) = &mut layer(&mut g, "affine").op else {
        unreachable!("the affine layer is an affine map")
    };
    affine.requant = Some(requant(3));
    assert_eq!(
        verify(&g),
        ["'affine' (affine): 3 multipliers for 4 channels, clamp (-128, 127)"]
    );
}

/// The verifier's message for a layer whose tensors do not fit its operation.
fn mismatch(name: &str, kind: &str) -> String {
    format!("'{name}' ({kind}): element counts do not fit the operation")
}

/// A layer name, its kind as the verifier prints it, and how to break it.
type Break = (&'static str, &'static str, fn(&mut LayerOp));

#[test]
fn element_counts_that_do_not_fit_the_operation() {
    // Geometry changes: only the changed layer is wrong.
    let geometry: [Break; 5] = [
        ("conv", "conv", |op| {
            if let LayerOp::Linear(Linear {
                shape: LinearShape::Conv(s),
                ..
            }) = op
            {
                s.in_hw = [4, 5];
            }
        }),
        ("fc", "matmul", |op| {
            if let LayerOp::Linear(Linear {
                shape: LinearShape::MatMul(s),
                ..
            }) = op
            {
                s.rows = 2;
            }
        }),
        ("affine", "affine", |op| {
            if let LayerOp::Linear(Linear {
                shape: LinearShape::Affine(s),
                ..
            }) = op
            {
                s.per_channel = 3;
            }
        }),
        ("maxpool", "maxpool", |op| {
            if let LayerOp::MaxPool(p) = op {
                p.channels = 3;
            }
        }),
        ("avgpool", "avgpool", |op| {
            if let LayerOp::AvgPool(a) = op {
                a.pool.channels = 3;
            }
        }),
    ];
    for (name, kind, break_op) in geometry {
        let mut g = valid_graph();
        break_op(&mut layer(&mut g, name).op);
        assert_eq!(verify(&g), [mismatch(name, kind)], "{name}");
    }
    // Ops sized by their tensors: a longer tensor breaks its producer and its readers.
    let longer_tensor = [
        (
            2,
            vec![
                ("add", "add"),
                ("maxpool", "maxpool"),
                ("avgpool", "avgpool"),
            ],
        ),
        (5, vec![("concat", "concat"), ("affine", "affine")]),
        (7, vec![("rescale", "rescale"), ("reshape", "reshape")]),
        (8, vec![("reshape", "reshape"), ("fc", "matmul")]),
    ];
    for (t, layers) in longer_tensor {
        let mut g = valid_graph();
        g.tensor_mut(TensorId(t)).shape.push(2);
        let want: Vec<_> = layers.iter().map(|(n, k)| mismatch(n, k)).collect();
        assert_eq!(verify(&g), want, "t{t}");
    }
}

#[test]
fn an_empty_clamp() {
    let mut g = valid_graph();
    for name in ["conv", "add", "avgpool", "rescale"] {
        match &mut layer(&mut g, name).op {
            LayerOp::Linear(c) => c.requant.as_mut().expect("requantizes").clamp = (127, -128),
            LayerOp::Add(a) => a.clamp = (1, 0),
            LayerOp::AvgPool(a) => a.requant.clamp = (1, 0),
            LayerOp::Rescale(r) => r.clamp = (1, 0),
            _ => unreachable!("only layers with a clamp are broken"),
        }
    }
    assert_eq!(
        verify(&g),
        [
            "'conv' (conv): 2 multipliers for 2 channels, clamp (127, -128)",
            "'add' (add): clamp [1, 0] is empty",
            "'avgpool' (avgpool): clamp [1, 0] is empty",
            "'rescale' (rescale): clamp [1, 0] is empty",
        ]
    );
}

#[test]
fn an_empty_tensor_range() {
    let mut g = valid_graph();
    g.tensor_mut(TensorId(3)).range = (1, 0);
    assert_eq!(verify(&g), ["t3: empty range (1, 0)"]);
}

#[test]
fn a_layer_with_the_wrong_number_of_inputs() {
    let mut g = valid_graph();
    layer(&mut g, "add").inputs.pop();
    layer(&mut g, "concat").inputs.clear();
    layer(&mut g, "maxpool").inputs.push(TensorId(2));
    g.rewire();
    assert_eq!(
        verify(&g),
        [
            "'add' (add): 1 inputs",
            "'maxpool' (maxpool): 2 inputs",
            "'concat' (concat): 0 inputs",
        ]
    );
}

#[test]
fn every_violation_is_reported_not_just_the_first() {
    let mut g = valid_graph();
    g.tensor_mut(TensorId(4)).range = (1, 0);
    let orphan = g.add_tensor(tensor("orphan", &[2, 4, 4]));
    layer(&mut g, "add").inputs[1] = orphan;
    let LayerOp::Linear(affine) = &mut layer(&mut g, "affine").op else {
        unreachable!("the affine layer is an affine map")
    };
    affine.bias.pop();
    let LayerOp::Rescale(rescale) = &mut layer(&mut g, "rescale").op else {
        unreachable!("the rescale layer is a rescale")
    };
    rescale.clamp = (1, 0);
    layer(&mut g, "concat").inputs.clear();
    g.output.tensor = TensorId(99);
    g.rewire();
    assert_eq!(
        verify(&g),
        [
            "t4: empty range (1, 0)",
            "'add' (add): input t10 has no producer",
            "'concat' (concat): 0 inputs",
            "'affine' (affine): 4 weights and 3 biases for 4 channels",
            "'rescale' (rescale): clamp [1, 0] is empty",
            "output t99 is never computed",
        ]
    );
}

/// A test pass that points the graph output at a tensor nothing computes.
struct DetachOutput;

impl Pass for DetachOutput {
    fn name(&self) -> &'static str {
        "detach_output"
    }

    fn run(&mut self, g: &mut LayerGraph) -> heqc::Result<bool> {
        g.output.tensor = g.add_tensor(tensor("detached", &[3]));
        Ok(true)
    }
}

/// A test pass that fails without touching the graph.
struct Refuse;

impl Pass for Refuse {
    fn name(&self) -> &'static str {
        "refuse"
    }

    fn run(&mut self, _: &mut LayerGraph) -> heqc::Result<bool> {
        Err(Error::Model {
            node: "fc".into(),
            op_type: "MatMul".into(),
            reason: "refused by a test pass".into(),
        })
    }
}

/// A test pass that counts its runs.
struct Count(Rc<Cell<usize>>);

impl Pass for Count {
    fn name(&self) -> &'static str {
        "count"
    }

    fn run(&mut self, _: &mut LayerGraph) -> heqc::Result<bool> {
        self.0.set(self.0.get() + 1);
        Ok(false)
    }
}

/// A pipeline of `InferRanges`, `pass` and a counting pass; returns it and the counter.
fn pipeline(pass: impl Pass + 'static) -> (PassManager, Rc<Cell<usize>>) {
    let runs = Rc::new(Cell::new(0));
    let mut pm = PassManager::default();
    pm.add(InferRanges);
    pm.add(pass);
    pm.add(Count(Rc::clone(&runs)));
    (pm, runs)
}

#[test]
fn a_pass_that_breaks_the_ir_is_named_and_stops_the_pipeline() {
    let (mut pm, later_runs) = pipeline(DetachOutput);
    let e = pm.run(&mut valid_graph()).unwrap_err();
    let Error::Invariant { pass, violations } = &e else {
        panic!("expected an invariant error, got {e:?}")
    };
    assert_eq!(*pass, "detach_output");
    assert_eq!(violations, &["output t10 is never computed"]);
    assert_eq!(
        e.to_string(),
        "internal error after pass 'detach_output': output t10 is never computed"
    );
    assert_eq!(later_runs.get(), 0);
    let ran: Vec<_> = pm.timings.iter().map(|(name, _)| *name).collect();
    assert_eq!(ran, ["infer_ranges", "detach_output"]);
}

#[test]
fn a_failing_pass_returns_its_own_error_and_stops_the_pipeline() {
    let (mut pm, later_runs) = pipeline(Refuse);
    let e = pm.run(&mut valid_graph()).unwrap_err();
    assert!(
        matches!(&e, Error::Model { reason, .. } if reason == "refused by a test pass"),
        "{e:?}"
    );
    assert_eq!(later_runs.get(), 0);
    let ran: Vec<_> = pm.timings.iter().map(|(name, _)| *name).collect();
    assert_eq!(ran, ["infer_ranges"]);
}

#[test]
fn a_broken_input_graph_is_blamed_on_the_frontend_before_any_pass_runs() {
    let (mut pm, later_runs) = pipeline(DetachOutput);
    let mut g = valid_graph();
    g.tensor_mut(TensorId(3)).range = (1, 0);
    let e = pm.run(&mut g).unwrap_err();
    assert!(
        matches!(&e, Error::Invariant { pass: "frontend", violations }
            if violations == &["t3: empty range (1, 0)"]),
        "{e:?}"
    );
    assert_eq!(later_runs.get(), 0);
    assert!(pm.timings.is_empty());
}
