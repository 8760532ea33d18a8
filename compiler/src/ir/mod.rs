//! The layer IR: a DAG of integer layers on petgraph.
//!
//! Nodes are [`Layer`]s, an edge `a → b` carries the tensor `a` produces and `b` reads. Tensors
//! live in a side table indexed by [`TensorId`] and carry the plan's [`TensorInfo`] (lowering
//! copies them into the plan as they are). The graph input is a tensor without producer. Iteration order is [`LayerGraph::order`]: topological, ties broken by
//! insertion order, so that ids and printed text are stable.

mod layer;
pub mod text;
pub mod verify;

pub use heq_runtime::plan::{Epilogue, LayerId, Requant, TensorId, TensorInfo};
pub use layer::{AccBits, Layer, LayerOp, Linear, LinearShape};

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A model input or output: ONNX name and tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    /// ONNX graph input/output name.
    pub name: String,
    /// The tensor.
    pub tensor: TensorId,
}

/// The layer graph of one model.
#[derive(Clone, Debug)]
pub struct LayerGraph {
    /// Model name.
    pub name: String,
    graph: StableDiGraph<Layer, TensorId>,
    tensors: Vec<TensorInfo>,
    /// The model input.
    pub input: Port,
    /// The model output: the tensor revealed to the client (named after the ONNX graph
    /// output).
    pub output: Port,
    /// What the client computes in plaintext from the revealed output (the plan's epilogue).
    pub epilogue: Epilogue,
}

impl LayerGraph {
    /// An empty graph; the frontend sets [`LayerGraph::input`] and [`LayerGraph::output`].
    pub fn new(name: impl Into<String>) -> Self {
        let port = Port {
            name: String::new(),
            tensor: TensorId(0),
        };
        LayerGraph {
            name: name.into(),
            graph: StableDiGraph::new(),
            tensors: Vec::new(),
            input: port.clone(),
            output: port,
            epilogue: Epilogue::default(),
        }
    }

    /// Adds a tensor.
    pub fn add_tensor(&mut self, info: TensorInfo) -> TensorId {
        self.tensors.push(info);
        TensorId((self.tensors.len() - 1) as u32)
    }

    /// A tensor.
    ///
    /// # Panics
    /// If the tensor does not belong to this graph.
    pub fn tensor(&self, t: TensorId) -> &TensorInfo {
        &self.tensors[t.0 as usize]
    }

    /// A tensor, mutably.
    ///
    /// # Panics
    /// If the tensor does not belong to this graph.
    pub fn tensor_mut(&mut self, t: TensorId) -> &mut TensorInfo {
        &mut self.tensors[t.0 as usize]
    }

    /// Every tensor, indexed by id.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Adds a layer, with edges from the producers of its inputs.
    pub fn add_layer(&mut self, layer: Layer) -> NodeIndex {
        let inputs = layer.inputs.clone();
        let node = self.graph.add_node(layer);
        for t in inputs {
            if let Some(p) = self.producer(t) {
                self.graph.add_edge(p, node, t);
            }
        }
        node
    }

    /// The layer producing a tensor (`None` for the graph input or an unknown tensor).
    pub fn producer(&self, t: TensorId) -> Option<NodeIndex> {
        self.graph
            .node_indices()
            .find(|&n| self.graph[n].output == t)
    }

    /// Layers reading a tensor.
    pub fn consumers(&self, t: TensorId) -> Vec<NodeIndex> {
        self.graph
            .node_indices()
            .filter(|&n| self.graph[n].inputs.contains(&t))
            .collect()
    }

    /// A layer.
    ///
    /// # Panics
    /// If the node was removed.
    pub fn layer(&self, n: NodeIndex) -> &Layer {
        &self.graph[n]
    }

    /// A layer, mutably. Changing its inputs requires [`LayerGraph::rewire`].
    ///
    /// # Panics
    /// If the node was removed.
    pub fn layer_mut(&mut self, n: NodeIndex) -> &mut Layer {
        &mut self.graph[n]
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether the graph has no layer.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Removes a layer whose output equals its only input in value, redirecting every use of
    /// its output (and the graph output) to that input.
    pub fn bypass(&mut self, n: NodeIndex) {
        let Some(layer) = self.graph.remove_node(n) else {
            return;
        };
        let (old, new) = (layer.output, layer.inputs[0]);
        for node in self.graph.node_indices().collect::<Vec<_>>() {
            for t in &mut self.graph[node].inputs {
                if *t == old {
                    *t = new;
                }
            }
        }
        if self.output.tensor == old {
            self.output.tensor = new;
        }
        self.rewire();
    }

    /// Rebuilds every edge from the layers' inputs.
    pub fn rewire(&mut self) {
        self.graph.clear_edges();
        for node in self.graph.node_indices().collect::<Vec<_>>() {
            for t in self.graph[node].inputs.clone() {
                if let Some(p) = self.producer(t) {
                    self.graph.add_edge(p, node, t);
                }
            }
        }
    }

    /// Layers in topological order, ties broken by insertion order. `None` if there is a cycle.
    pub fn order(&self) -> Option<Vec<NodeIndex>> {
        let mut indegree: std::collections::HashMap<NodeIndex, usize> = self
            .graph
            .node_indices()
            .map(|n| {
                (
                    n,
                    self.graph
                        .neighbors_directed(n, Direction::Incoming)
                        .count(),
                )
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<NodeIndex>> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| Reverse(*n))
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(n);
            for m in self.graph.neighbors_directed(n, Direction::Outgoing) {
                let d = indegree
                    .get_mut(&m)
                    .expect("every node has an indegree entry");
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(m));
                }
            }
        }
        (order.len() == self.graph.node_count()).then_some(order)
    }
}
