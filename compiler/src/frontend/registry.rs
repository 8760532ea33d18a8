//! `OpRegistry`: ONNX (domain, op_type) → builder. Each op family registers its builders in
//! `ops/<family>.rs`; a node whose operator is not registered is reported, with every other such
//! node, before anything is built. Client-side operators (registered with
//! [`OpRegistry::register_client_side`]) run only in the plaintext epilogue after the reveal.

use super::context::Ctx;
use crate::error::Result;
use std::collections::{HashMap, HashSet};
use tract_onnx::pb::NodeProto;

/// Builds the layers of one node, reading and binding values in the context.
pub type Builder = fn(&mut Ctx, &NodeProto) -> Result<()>;

/// The default ONNX domain.
pub const ONNX: &str = "ai.onnx";
/// Microsoft's contrib domain (QLinearAdd, QGemm, ...).
pub const MICROSOFT: &str = "com.microsoft";

/// The newest opset of each domain whose operators the frontend knows (ai.onnx: the ONNX 1.23
/// node cases in `models/onnx_node_cases`; com.microsoft: onnxruntime's contrib opset). A model
/// importing a newer one is refused: an operator's semantics may have changed since.
pub const KNOWN_OPSETS: [(&str, i64); 2] = [(ONNX, 28), (MICROSOFT, 1)];

/// What a supported operator becomes and where its support ends (`heqc ops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpDoc {
    /// What the operator becomes in the layer IR and which protocol runs it.
    pub becomes: &'static str,
    /// What heqc refuses of it (with an error naming the node).
    pub limits: &'static str,
}

/// One supported operator, for the table of `heqc ops`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpEntry<'a> {
    /// ONNX domain.
    pub domain: &'a str,
    /// Operator type.
    pub op_type: &'a str,
    /// Its documentation.
    pub doc: OpDoc,
}

/// Operator table.
#[derive(Default)]
pub struct OpRegistry {
    builders: HashMap<(String, String), (Builder, OpDoc)>,
    client_side: HashSet<(String, String)>,
}

impl OpRegistry {
    /// Registers a builder with what the operator becomes and its limits.
    pub fn register(&mut self, domain: &str, op_type: &str, b: Builder, doc: OpDoc) {
        self.builders
            .insert((domain.to_string(), op_type.to_string()), (b, doc));
    }

    /// Registers an operator that runs only on the client, in plaintext, after the output is
    /// revealed (the epilogue: Softmax, ArgMax, ...); one in the middle of the network is
    /// reported as unsupported.
    pub fn register_client_side(&mut self, domain: &str, op_type: &str, b: Builder, doc: OpDoc) {
        self.register(domain, op_type, b, doc);
        self.client_side
            .insert((domain.to_string(), op_type.to_string()));
    }

    /// The builder of an operator (`""` and `ai.onnx` are the same domain).
    pub fn get(&self, domain: &str, op_type: &str) -> Option<Builder> {
        self.builders.get(&key(domain, op_type)).map(|(b, _)| *b)
    }

    /// Whether an operator was registered with [`OpRegistry::register_client_side`].
    pub fn is_client_side(&self, domain: &str, op_type: &str) -> bool {
        self.client_side.contains(&key(domain, op_type))
    }

    /// Every supported operator, sorted by domain and operator type.
    pub fn entries(&self) -> Vec<OpEntry<'_>> {
        let mut entries: Vec<OpEntry<'_>> = self
            .builders
            .iter()
            .map(|((domain, op_type), (_, doc))| OpEntry {
                domain,
                op_type,
                doc: *doc,
            })
            .collect();
        entries.sort_by_key(|e| (e.domain, e.op_type));
        entries
    }
}

/// The registry key of an operator (`""` is `ai.onnx`).
fn key(domain: &str, op_type: &str) -> (String, String) {
    let domain = if domain.is_empty() { ONNX } else { domain };
    (domain.to_string(), op_type.to_string())
}
