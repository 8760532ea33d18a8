//! `OpRegistry`: ONNX (domain, op_type) → builder. Each op family registers its builders in
//! `ops/<family>.rs`; a node whose operator is not registered is reported, with every other such
//! node, before anything is built.

use super::Ctx;
use crate::error::Result;
use std::collections::HashMap;
use tract_onnx::pb::NodeProto;

/// Builds the layers of one node, reading and binding values in the context.
pub type Builder = fn(&mut Ctx, &NodeProto) -> Result<()>;

/// The default ONNX domain.
pub const ONNX: &str = "ai.onnx";
/// Microsoft's contrib domain (QLinearAdd, QGemm, ...).
pub const MICROSOFT: &str = "com.microsoft";

/// Operator table.
#[derive(Default)]
pub struct OpRegistry {
    builders: HashMap<(String, String), Builder>,
}

impl OpRegistry {
    /// Registers a builder.
    pub fn register(&mut self, domain: &str, op_type: &str, b: Builder) {
        self.builders
            .insert((domain.to_string(), op_type.to_string()), b);
    }

    /// The builder of an operator (`""` and `ai.onnx` are the same domain).
    pub fn get(&self, domain: &str, op_type: &str) -> Option<Builder> {
        let domain = if domain.is_empty() { ONNX } else { domain };
        self.builders
            .get(&(domain.to_string(), op_type.to_string()))
            .copied()
    }

    /// The registry with every op family.
    pub fn standard() -> Self {
        let mut r = OpRegistry::default();
        super::ops::register_all(&mut r);
        r
    }
}
