//! Building the layer graph of a model: checks the opset imports, looks every node up in the
//! registry (reporting all unknown operators, and client-side operators in the middle of the
//! network, at once), binds the initializers and the graph input, runs each node's builder in
//! file order (collecting every unsupported configuration), and binds the graph output (with
//! the client's epilogue, [`super::reveal`]).

use super::context::Ctx;
use super::registry::{Builder, KNOWN_OPSETS, ONNX, OpRegistry};
use super::value::Value;
use super::{domain_name, tensor};
use crate::error::{Error, Result, UnsupportedNode};
use crate::ir::{LayerGraph, Port};
use std::collections::HashMap;
use tract_onnx::pb::{
    GraphProto, ModelProto, NodeProto, ValueInfoProto, tensor_shape_proto::dimension, type_proto,
};

/// Largest input sample heqc compiles (elements).
const MAX_INPUT_ELEMENTS: usize = 1 << 28;

/// Builds the layer graph of a model.
///
/// # Errors
/// An opset newer than the frontend knows or a symbolic input dimension
/// ([`Error::UnsupportedModel`]), every unsupported node at once ([`Error::Unsupported`]), or
/// the first malformed node.
pub fn build(model: &ModelProto, name: &str) -> Result<LayerGraph> {
    let graph = model.graph.as_ref().ok_or_else(|| Error::Decode {
        path: name.to_string(),
        reason: "the model has no graph".into(),
    })?;
    check_opsets(model)?;
    let builders = node_builders(graph, &super::ops::standard_registry())?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(21);
    let mut cx = Ctx::new(name, opset);
    for t in &graph.initializer {
        cx.values
            .insert(t.name.clone(), Value::Const(tensor::decode(t)?));
    }
    let input = graph_input(graph, &cx, name)?;
    bind_input(&mut cx, input)?;
    // A node whose configuration is unsupported does not stop the walk: its outputs, and
    // everything computed from them, are skipped, so that one error names every such node.
    let mut unsupported = Vec::new();
    let mut skipped = std::collections::HashSet::new();
    for (node, build_node) in graph.node.iter().zip(builders) {
        if node.input.iter().any(|i| skipped.contains(i)) {
            skipped.extend(node.output.iter().cloned());
            continue;
        }
        match build_node(&mut cx, node) {
            Err(Error::Unsupported(nodes)) => {
                unsupported.extend(nodes);
                skipped.extend(node.output.iter().cloned());
            }
            other => other?,
        }
    }
    if !unsupported.is_empty() {
        return Err(Error::Unsupported(unsupported));
    }
    bind_output(&mut cx, graph, name)?;
    if cx.graph.tensors().is_empty() {
        return Err(input_error(input, "the float input is never quantized"));
    }
    Ok(cx.graph)
}

/// Refuses opset imports newer than [`KNOWN_OPSETS`] (other domains are left to the operator
/// lookup: a node of an unknown domain is unsupported anyway).
///
/// # Errors
/// [`Error::UnsupportedModel`] naming the domain, its version and the newest known.
fn check_opsets(model: &ModelProto) -> Result<()> {
    for o in &model.opset_import {
        let domain = domain_name(&o.domain);
        if let Some((_, known)) = KNOWN_OPSETS.iter().find(|(d, _)| *d == domain)
            && o.version > *known
        {
            return Err(Error::UnsupportedModel {
                what: "opset import".into(),
                reason: format!(
                    "{domain} opset {} is newer than the newest heqc knows ({known}); \
                     export the model with opset {known} or older",
                    o.version
                ),
            });
        }
    }
    Ok(())
}

/// The builder of every node, in order.
///
/// # Errors
/// [`Error::Unsupported`] naming every node whose operator is not registered and every
/// client-side operator in the middle of the network ([`misplaced_client_ops`]), in node order.
fn node_builders(graph: &GraphProto, registry: &OpRegistry) -> Result<Vec<Builder>> {
    let mut builders = Vec::with_capacity(graph.node.len());
    let mut refused = Vec::new();
    let misplaced = misplaced_client_ops(graph, registry);
    for (i, n) in graph.node.iter().enumerate() {
        let reason = match (registry.get(&n.domain, &n.op_type), &misplaced[i]) {
            (Some(b), None) => {
                builders.push(b);
                continue;
            }
            (Some(_), Some(consumer)) => Some(format!(
                "runs on the client after the output is revealed, but its result feeds '{}' ({}), which does not",
                consumer.name, consumer.op_type
            )),
            (None, _) => None,
        };
        refused.push(UnsupportedNode {
            name: if n.name.is_empty() {
                format!("<unnamed #{i}>")
            } else {
                n.name.clone()
            },
            op_type: n.op_type.clone(),
            domain: domain_name(&n.domain).to_string(),
            reason,
        });
    }
    if refused.is_empty() {
        Ok(builders)
    } else {
        Err(Error::Unsupported(refused))
    }
}

/// Default-domain operators that may follow the reveal besides the client-side ones: they pass
/// a client value on (Identity, Flatten, Reshape) or add a public scalar to it (Add).
const AFTER_REVEAL: [&str; 4] = ["Identity", "Flatten", "Reshape", "Add"];

/// For every node: when it is a client-side operator whose result feeds (directly or through
/// other nodes) a node that cannot run on the client after the reveal, that first such
/// consumer; `None` otherwise. ONNX lists nodes in topological order, so every consumer of a
/// node comes after it.
fn misplaced_client_ops<'a>(
    graph: &'a GraphProto,
    registry: &OpRegistry,
) -> Vec<Option<&'a NodeProto>> {
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for input in &n.input {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let nodes = &graph.node;
    // Whether a node and everything computed from it can run on the client.
    let mut after_reveal = vec![false; nodes.len()];
    let mut misplaced = vec![None; nodes.len()];
    for i in (0..nodes.len()).rev() {
        let n = &nodes[i];
        let blocker = n
            .output
            .iter()
            .filter_map(|o| consumers.get(o.as_str()))
            .flatten()
            .find(|&&j| !after_reveal.get(j).copied().unwrap_or(false));
        let client_side = registry.is_client_side(&n.domain, &n.op_type);
        let may_follow = client_side
            || (domain_name(&n.domain) == ONNX && AFTER_REVEAL.contains(&n.op_type.as_str()));
        after_reveal[i] = may_follow && blocker.is_none();
        if client_side {
            misplaced[i] = blocker.map(|&j| &nodes[j]);
        }
    }
    misplaced
}

/// An error about the graph input.
fn input_error(input: &ValueInfoProto, reason: &str) -> Error {
    Error::model(&input.name, "graph input", reason.to_string())
}

/// The one graph input that is not an initializer.
///
/// # Errors
/// No such input, or more than one.
fn graph_input<'a>(graph: &'a GraphProto, cx: &Ctx, name: &str) -> Result<&'a ValueInfoProto> {
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !cx.values.contains_key(&i.name))
        .collect();
    match inputs.as_slice() {
        [input] => Ok(input),
        _ => Err(Error::model(
            name,
            "graph",
            format!(
                "{} graph inputs besides initializers; heqc compiles models with exactly one",
                inputs.len()
            ),
        )),
    }
}

/// Binds the graph input: a float input waits for its QuantizeLinear, an integer input becomes
/// the input tensor (scale 1 until a DequantizeLinear says otherwise).
///
/// # Errors
/// A symbolic or oversized sample shape ([`Error::UnsupportedModel`]); a shape without a batch
/// dimension or with a negative dimension, or an element type that is neither float nor
/// integer.
fn bind_input(cx: &mut Ctx, input: &ValueInfoProto) -> Result<()> {
    let Some(type_proto::Value::TensorType(tt)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(input_error(input, "not a tensor"));
    };
    let dims = tt
        .shape
        .as_ref()
        .map(|s| s.dim.as_slice())
        .unwrap_or_default();
    let unsupported_input = |reason: String| Error::UnsupportedModel {
        what: format!("graph input '{}'", input.name),
        reason,
    };
    let mut shape = Vec::new();
    for (i, d) in dims.iter().enumerate() {
        match &d.value {
            _ if i == 0 => shape.push(1),
            Some(dimension::Value::DimValue(v)) if *v < 0 => {
                return Err(input_error(input, &format!("negative dimension {v}")));
            }
            Some(dimension::Value::DimValue(v)) if *v >= 1 << 24 => {
                return Err(unsupported_input(format!(
                    "dimension {i} is {v}, more than 2^24"
                )));
            }
            Some(dimension::Value::DimValue(v)) => shape.push(*v as usize),
            Some(dimension::Value::DimParam(p)) => {
                return Err(unsupported_input(format!(
                    "dimension {i} is symbolic ('{p}'); heqc compiles a fixed sample shape \
                     (only the batch dimension may be symbolic)"
                )));
            }
            None => {
                return Err(unsupported_input(format!(
                    "dimension {i} has no size; heqc compiles a fixed sample shape \
                     (only the batch dimension may be symbolic)"
                )));
            }
        }
    }
    if shape.is_empty() {
        return Err(input_error(input, "a scalar input has no batch dimension"));
    }
    let sample = shape[1..].to_vec();
    if sample
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .is_none_or(|n| n > MAX_INPUT_ELEMENTS)
    {
        return Err(unsupported_input(
            "more than 2^28 elements per sample".into(),
        ));
    }
    let v = if tt.elem_type == tensor::dtype::FLOAT {
        Value::FloatInput(sample)
    } else if let Some(ty) = tensor::int_type(tt.elem_type) {
        let t = cx.tensor(&input.name, sample, ty, 0, 1.0);
        cx.graph.input = Port {
            name: input.name.clone(),
            tensor: t,
        };
        Value::Quant(t)
    } else {
        return Err(input_error(
            input,
            "element type is neither float nor an integer type",
        ));
    };
    cx.values.insert(input.name.clone(), v);
    Ok(())
}

/// Binds the graph output to the tensor the server reveals and the client's epilogue: an
/// integer tensor (no epilogue), a client value, or the float output of a linear layer (a
/// float head, revealed as its accumulator).
///
/// # Errors
/// Not exactly one output, or an output that is none of these.
fn bind_output(cx: &mut Ctx, graph: &GraphProto, name: &str) -> Result<()> {
    let [output] = graph.output.as_slice() else {
        return Err(Error::model(
            name,
            "graph",
            format!(
                "{} graph outputs; heqc compiles models with exactly one",
                graph.output.len()
            ),
        ));
    };
    let output_error = |reason: &str| Error::model(&output.name, "graph output", reason);
    let t = match cx.values.get(&output.name) {
        Some(Value::Real(t) | Value::Quant(t)) => *t,
        Some(Value::Client(_) | Value::Pending(_)) => {
            let revealed = cx.reveal(&output.name).map_err(output_error)?;
            cx.graph.epilogue = revealed.epilogue;
            revealed.source
        }
        Some(_) => return Err(output_error("the output is not a quantized tensor")),
        None => return Err(output_error("no node computes the output")),
    };
    cx.graph.output = Port {
        name: output.name.clone(),
        tensor: t,
    };
    Ok(())
}
